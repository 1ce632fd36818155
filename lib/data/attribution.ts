/**
 * Credits for the image sets the book trains on. Twemoji's licence (CC-BY 4.0) requires
 * attribution wherever its images, or images derived from them, are shown.
 *
 * @module
 */

/** One published set of images, its owner, licence and the package that carries it. */
export interface ImageSet {
  /** The set's own name. */
  name: string;
  /** Who publishes it. */
  vendor: string;
  /** Licence of the images (SPDX-like short name). */
  licence: string;
  /** Full text of the licence. */
  licenceUrl: string;
  /** Where the images come from. */
  url: string;
  /** The npm package the images are read from. */
  package: string;
  /** That package's version, read from its package.json when installed. */
  version: string;
}

const PINNED_VERSION = "16.0.0";

function installedVersion(pkg: string): string {
  try {
    if (typeof Deno === "undefined") return PINNED_VERSION;
    const url = new URL(`../../node_modules/${pkg}/package.json`, import.meta.url);
    if (url.protocol !== "file:") return PINNED_VERSION;
    const version = JSON.parse(Deno.readTextFileSync(url)).version;
    return typeof version === "string" ? version : PINNED_VERSION;
  } catch {
    return PINNED_VERSION;
  }
}

/** The emoji image sets of the dataset (see `lib/data/emoji.ts`), keyed by vendor. */
export const IMAGE_SETS: Readonly<Record<"twitter" | "google", ImageSet>> = {
  twitter: {
    name: "Twemoji",
    vendor: "Twitter",
    licence: "CC-BY 4.0",
    licenceUrl: "https://creativecommons.org/licenses/by/4.0/",
    url: "https://github.com/twitter/twemoji",
    package: "emoji-datasource-twitter",
    version: installedVersion("emoji-datasource-twitter"),
  },
  google: {
    name: "Noto Emoji",
    vendor: "Google",
    licence: "Apache-2.0",
    licenceUrl: "https://www.apache.org/licenses/LICENSE-2.0",
    url: "https://github.com/googlefonts/noto-emoji",
    package: "emoji-datasource-google",
    version: installedVersion("emoji-datasource-google"),
  },
};

/**
 * OpenMoji, the style the fine-tuning chapter teaches (lib/data/openmoji.ts): shown in that
 * chapter's figures, never trained on by a base model. CC BY-SA 4.0 asks for its credit too.
 */
export const OPENMOJI_SET: ImageSet = {
  name: "OpenMoji",
  vendor: "HfG Schwäbisch Gmünd",
  licence: "CC BY-SA 4.0",
  licenceUrl: "https://creativecommons.org/licenses/by-sa/4.0/",
  url: "https://openmoji.org",
  package: "@iconify-json/openmoji",
  version: installedVersion("@iconify-json/openmoji"),
};

/** The one line of credits the book's footer shows. */
export function attributionText(): string {
  const sets = [...Object.values(IMAGE_SETS), OPENMOJI_SET].map((s) =>
    `${s.name} © ${s.vendor}, ${s.licence} (${s.url}), via ${s.package} ${s.version}`
  );
  return `Emoji images: ${sets.join("; ")}.`;
}
