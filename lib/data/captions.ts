/**
 * Captions of the emoji, for the text-conditional models (chapter 6): each image's name, a few of
 * its keywords, and the image set it was drawn for as a style word,
 *
 *   caption = name, k₁, …, k_K, style        e.g. "red apple, fruit, mac, school, noto"
 *
 * The name and keywords are emojilib's (the `emojilib` npm package, MIT, © Mu-An Chiou): its
 * first entry for an emoji is the CLDR short name ("red_heart" where Unicode says "HEAVY BLACK
 * HEART"), the rest are keywords in its order. A keyword is kept when, lower-cased and with
 * underscores as spaces, it is made of letters, digits, apostrophes, hyphens and spaces (":D" and
 * "3:00" are not) and adds a word the caption does not have yet; the first K are used. The style
 * word is "twemoji" or "noto". An emoji emojilib does not list is captioned by its Unicode name.
 *
 * @module
 */
import { join } from "node:path";
import type { EmojiMeta, EmojiVendor } from "./emoji.ts";
import { UserError } from "../core/errors.ts";
import { exists } from "../runtime/files.ts";
import { reinstallCommand } from "../runtime/packages.ts";
import { textWords } from "../core/tokenizer.ts";

/** The style word of each image set. */
export const STYLE_WORDS: Record<EmojiVendor, string> = { twitter: "twemoji", google: "noto" };

/** The path of emojilib's English keywords inside its package. */
const KEYWORDS_FILE = "emojilib/dist/emoji-en-US.json";

/** emojilib's entries by emoji, the variation selector FE0F removed from the keys. */
export type EmojiKeywords = ReadonlyMap<string, readonly string[]>;

/** An emoji's characters without the variation selector (how {@link EmojiKeywords} is keyed). */
export function emojiKey(unified: string): string {
  return String.fromCodePoint(...unified.split("-").map((hex) => parseInt(hex, 16)))
    .replaceAll("\uFE0F", "");
}

/**
 * emojilib's keywords, read from the package in `packageRoot` (default the repository's
 * node_modules).
 *
 * @throws UserError that says how to restore a missing or damaged package
 */
export async function loadEmojiKeywords(
  packageRoot = new URL("../../node_modules", import.meta.url).pathname,
): Promise<EmojiKeywords> {
  const path = join(packageRoot, KEYWORDS_FILE);
  const restore = `restore it, in the repository root: ${
    reinstallCommand(packageRoot, "emojilib")
  }`;
  if (!(await exists(path))) {
    throw new UserError(
      `The emoji keyword package "emojilib" is not installed (no ${path}); ${restore}`,
    );
  }
  let entries: unknown;
  try {
    entries = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new UserError(`${path} is not valid JSON (${(error as Error).message}); ${restore}`);
  }
  const valid = typeof entries === "object" && entries !== null &&
    Object.values(entries).every((v) =>
      Array.isArray(v) && v.length > 0 && v.every((k) => typeof k === "string")
    );
  if (!valid) {
    throw new UserError(`${path} does not map emoji to lists of keywords; ${restore}`);
  }
  return new Map(
    Object.entries(entries as Record<string, string[]>).map(([emoji, words]) => [
      emoji.replaceAll("\uFE0F", ""),
      words,
    ]),
  );
}

/** A name or keyword as a caption writes it: lower case, spaces for underscores; null if unfit. */
function phrase(keyword: string): string | null {
  const text = keyword.toLowerCase().replace(/[_\u00A0]/g, " ").replace(/\s+/g, " ").trim();
  return /^[\p{L}\p{N}][\p{L}\p{N}' -]*$/u.test(text) ? text : null;
}

/**
 * The caption of an image (see the module comment), with at most `keywords` keywords (default
 * 3).
 */
export function caption(
  meta: Pick<EmojiMeta, "unified" | "name" | "vendor">,
  lexicon: EmojiKeywords,
  keywords = 3,
): string {
  const entry = lexicon.get(emojiKey(meta.unified));
  const name = (entry && phrase(entry[0])) ?? meta.name.toLowerCase();
  const parts = [name];
  const seen = new Set(textWords(name));
  for (const keyword of entry?.slice(1) ?? []) {
    if (parts.length > keywords) break;
    const text = phrase(keyword);
    if (text === null) continue;
    const words = textWords(text);
    if (words.every((w) => seen.has(w))) continue;
    words.forEach((w) => seen.add(w));
    parts.push(text);
  }
  parts.push(STYLE_WORDS[meta.vendor]);
  return parts.join(", ");
}
