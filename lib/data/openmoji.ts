/**
 * OpenMoji (HfG Schwäbisch Gmünd, CC BY-SA 4.0): an emoji set drawn in another style than the
 * Twemoji and Noto sprites the book's base models train on (black outlines, a flat palette), so
 * a fine-tuned model can show it learned a style it never saw (chapter 9).
 *
 * The icons are the colour SVGs of the npm package `@iconify-json/openmoji`, rasterised with
 * resvg (`@resvg/resvg-wasm`) at `supersample` × the target size, composited over the
 * background and box-averaged down:
 *
 *   c = (α·s + (255 − α)·b) / 255   per pixel of the large render,
 *   x = mean over each supersample² block of c / 127.5 − 1.
 *
 * OpenMoji's 72-unit frame has padding (the median icon spans units 11–60) where a Twemoji
 * sprite fills its cell, so the view box is cropped by `margin` units a side to draw the
 * shapes at about the sprites' scale. Only icons of Unicode emoji are kept (not OpenMoji's
 * extras), with the names and (sub)categories of `emoji-datasource-twitter`'s emoji.json, so
 * that the same captions describe them; the rendered set is cached under `.cache/openmoji/`.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../core/errors.ts";
import { reinstallCommand } from "../runtime/packages.ts";
import { exists, sha256Hex, writeFileAtomic } from "../runtime/files.ts";
import { type EmojiMeta, loadEmojiDataset } from "./emoji.ts";
import { caption, type EmojiKeywords, STYLE_WORDS } from "./captions.ts";

/** What is known of one OpenMoji image: the Unicode emoji's metadata, drawn by OpenMoji. */
export interface OpenMojiMeta extends Omit<EmojiMeta, "vendor"> {
  vendor: "openmoji";
  /** The icon's name in the Iconify set, e.g. "red-apple". */
  icon: string;
}

/** The rendered set. */
export interface OpenMojiDataset {
  /** Height and width of every image. */
  size: number;
  /** Number of images. */
  count: number;
  /** NHWC RGB float32 in [−1, 1], `count · size · size · 3` values. */
  images: Float32Array;
  /** Metadata of image i at index i (Unicode order, as the emoji dataset). */
  meta: OpenMojiMeta[];
}

/** Options of {@link loadOpenMojiDataset}. */
export interface OpenMojiOptions {
  /** Image side in px (default 16). */
  size?: number;
  /** The render is this many times larger, then box-averaged (default 4). */
  supersample?: number;
  /** Units of OpenMoji's 72-unit frame cropped off each side (default 5). */
  margin?: number;
  /** Colour the transparency is composited over, 0..255 (default white). */
  background?: [number, number, number];
  /** Folder holding the npm packages (default the repository's node_modules). */
  packageRoot?: string;
  /** Folder of the rendered-set cache (default `.cache/openmoji` in the repository). */
  cacheDir?: string;
}

/** The licences of the set and of the captions, as a manifest records them. */
export const OPENMOJI_LICENCE =
  "OpenMoji images CC BY-SA 4.0 (HfG Schwäbisch Gmünd); captions from emojilib (MIT)";

/**
 * The caption the base models' captions give the same emoji ("red apple, fruit, twemoji"),
 * without the style word: the tokenizer has no word for OpenMoji's style.
 */
export function openMojiCaption(meta: OpenMojiMeta, lexicon: EmojiKeywords): string {
  const suffix = `, ${STYLE_WORDS.twitter}`;
  return caption({ ...meta, vendor: "twitter" }, lexicon).slice(0, -suffix.length);
}

/** The set's credit line (CC BY-SA 4.0 asks for it wherever its images, or derived ones, show). */
export const OPENMOJI_CREDIT =
  "OpenMoji, the open-source emoji and icon project (HfG Schwäbisch Gmünd), CC BY-SA 4.0: " +
  "https://openmoji.org";

const ICONS = "@iconify-json/openmoji";
const RESVG = "@resvg/resvg-wasm";
const FRAME = 72;
const CACHE_VERSION = 1;

interface IconifySet {
  icons: Record<string, { body: string; width?: number; height?: number }>;
  width?: number;
  height?: number;
}

const REPOSITORY = fileURLToPath(new URL("../..", import.meta.url));

async function readJson<T>(packageRoot: string, pkg: string, file: string): Promise<T> {
  const path = join(packageRoot, pkg, file);
  if (!(await exists(path))) {
    throw new UserError(
      `The package "${pkg}" is not installed (no ${path}). Restore it, in the repository root: ` +
        reinstallCommand(packageRoot, pkg),
    );
  }
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (error) {
    throw new UserError(
      `${path} is not valid JSON (${(error as Error).message}); restore the package, in the ` +
        `repository root: ${reinstallCommand(packageRoot, pkg)}`,
    );
  }
}

/** The Iconify key of a code-point sequence: lower-case hex joined by "-", without FE0F. */
function codeKey(unified: string): string {
  return unified.toLowerCase().split("-").filter((c) => c !== "fe0f").join("-");
}

/**
 * Render OpenMoji's Unicode emoji (see the module comment), in the emoji dataset's order.
 *
 * @throws UserError naming the command that restores a missing or broken package
 */
export async function loadOpenMojiDataset(options: OpenMojiOptions = {}): Promise<OpenMojiDataset> {
  const size = options.size ?? 16;
  const supersample = options.supersample ?? 4;
  const margin = options.margin ?? 5;
  const background = options.background ?? [255, 255, 255];
  if (!Number.isInteger(size) || size < 1 || !Number.isInteger(supersample) || supersample < 1) {
    throw new UserError(
      `OpenMoji size and supersample are whole numbers ≥ 1, not ${size} and ${supersample}`,
    );
  }
  if (!(margin >= 0 && margin < FRAME / 2)) {
    throw new UserError(`OpenMoji margin is in [0, ${FRAME / 2}) units, not ${margin}`);
  }
  const packageRoot = options.packageRoot ?? join(REPOSITORY, "node_modules");
  const cacheDir = options.cacheDir ?? join(REPOSITORY, ".cache", "openmoji");
  const chars = await readJson<Record<string, string>>(packageRoot, ICONS, "chars.json");
  // Names and categories of the Unicode emoji, from the dataset the base models train on.
  const reference = await loadEmojiDataset({ vendors: ["twitter"], size: 16 });
  const selected: OpenMojiMeta[] = [];
  for (const meta of reference.meta) {
    const icon = chars[codeKey(meta.unified)];
    if (icon) selected.push({ ...meta, vendor: "openmoji", icon });
  }
  const key = (await sha256Hex(
    JSON.stringify({
      version: CACHE_VERSION,
      icons: (await Deno.stat(join(packageRoot, ICONS, "icons.json"))).size,
      size,
      supersample,
      margin,
      background,
      selected: selected.map((m) => m.icon),
    }),
  )).slice(0, 16);
  const cachePath = join(cacheDir, `openmoji-${size}-${key}.f32`);
  const expected = selected.length * size * size * 3;
  try {
    const bytes = await Deno.readFile(cachePath);
    if (bytes.byteLength === expected * 4) {
      return {
        size,
        count: selected.length,
        images: new Float32Array(bytes.buffer),
        meta: selected,
      };
    }
  } catch {
    // not rendered yet
  }
  const set = await readJson<IconifySet>(packageRoot, ICONS, "icons.json");
  const images = await render(
    set,
    selected,
    { size, supersample, margin, background },
    packageRoot,
  );
  await Deno.mkdir(cacheDir, { recursive: true });
  await writeFileAtomic(cachePath, new Uint8Array(images.buffer));
  return { size, count: selected.length, images, meta: selected };
}

async function render(
  set: IconifySet,
  selected: readonly OpenMojiMeta[],
  o: { size: number; supersample: number; margin: number; background: number[] },
  packageRoot: string,
): Promise<Float32Array> {
  const { initWasm, Resvg } = await import(RESVG);
  const wasmPath = join(packageRoot, RESVG, "index_bg.wasm");
  try {
    await initWasm(await Deno.readFile(wasmPath));
  } catch (error) {
    // A second initialisation in one process is refused; the first one serves.
    if (!/already initialized/i.test((error as Error).message)) {
      throw new UserError(
        `resvg could not start from ${wasmPath} (${(error as Error).message}); restore it, in ` +
          `the repository root: ${reinstallCommand(packageRoot, RESVG)}`,
      );
    }
  }
  const big = o.size * o.supersample;
  const view = `${o.margin} ${o.margin} ${FRAME - 2 * o.margin} ${FRAME - 2 * o.margin}`;
  const out = new Float32Array(selected.length * o.size * o.size * 3);
  const block = o.supersample * o.supersample;
  selected.forEach((meta, n) => {
    const icon = set.icons[meta.icon];
    if (!icon) throw new UserError(`OpenMoji has no icon "${meta.icon}"; restore ${ICONS}.`);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="${view}">${icon.body}</svg>`;
    const resvg = new Resvg(svg, { fitTo: { mode: "width", value: big } });
    const rendered = resvg.render();
    const rgba: Uint8Array = rendered.pixels;
    for (let y = 0; y < o.size; y++) {
      for (let x = 0; x < o.size; x++) {
        const sums = [0, 0, 0];
        for (let dy = 0; dy < o.supersample; dy++) {
          for (let dx = 0; dx < o.supersample; dx++) {
            const p = ((y * o.supersample + dy) * big + x * o.supersample + dx) * 4;
            const alpha = rgba[p + 3];
            // resvg's pixels are premultiplied: s·α/255 is stored.
            for (let k = 0; k < 3; k++) {
              sums[k] += rgba[p + k] + ((255 - alpha) * o.background[k]) / 255;
            }
          }
        }
        const q = ((n * o.size + y) * o.size + x) * 3;
        for (let k = 0; k < 3; k++) out[q + k] = sums[k] / block / 127.5 - 1;
      }
    }
    rendered.free();
    resvg.free();
  });
  return out;
}
