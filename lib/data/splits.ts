/**
 * Held-out splits of the emoji by identity: both vendors' drawings of one emoji, its skin tones
 * and its gendered variants fall on the same side, so a held-out image is never a redrawing of a
 * training image. An emoji goes to the held-out side when a hash of its identity
 * ({@link emojiIdentity}) and the seed, read as a number in [0, 1), is below `fraction` (FNV-1a,
 * 32 bits, finalised as MurmurHash3 does): the split depends on nothing but the emoji, so adding
 * images never moves an old one.
 *
 * @module
 */
import type { EmojiMeta } from "./emoji.ts";

/** The two sides of a split, as indices into the dataset. */
export interface Split {
  train: number[];
  heldOut: number[];
}

/** FNV-1a of a string with MurmurHash3's finaliser (so that similar codes spread), in [0, 1). */
function unitHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/**
 * Code points that make variants of one emoji rather than another emoji: skin tones (1F3FB–1F3FF),
 * the variation selector FE0F, the zero-width joiner 200D, and the man, woman and person bases and
 * gender signs that ZWJ sequences combine with a role ("woman technologist", "man technologist"
 * and "technologist" draw the same laptop).
 */
const VARIANT_CODES = new Set([
  "1F3FB",
  "1F3FC",
  "1F3FD",
  "1F3FE",
  "1F3FF",
  "FE0F",
  "200D",
  "1F468",
  "1F469",
  "1F9D1",
  "2640",
  "2642",
]);

/**
 * The emoji an image draws, without vendor, skin tone, gender or the person it is combined with:
 * its code points less {@link VARIANT_CODES} ("PERSON" for the bare man, woman and adult). A role's
 * variants share one identity, so none of them is held out while another trains.
 */
export function emojiIdentity(meta: Pick<EmojiMeta, "unified">): string {
  const codes = meta.unified.split("-").filter((c) => !VARIANT_CODES.has(c));
  return codes.length > 0 ? codes.join("-") : "PERSON";
}

/** Split `meta`'s images by identity, about `fraction` of the emoji held out. */
export function splitByIdentity(meta: readonly EmojiMeta[], fraction: number, seed = 0): Split {
  if (!(fraction > 0 && fraction < 1)) {
    throw new Error(`splitByIdentity: the held-out fraction must be in (0, 1), not ${fraction}`);
  }
  const split: Split = { train: [], heldOut: [] };
  meta.forEach((m, i) => {
    const side = unitHash(`${seed}:${emojiIdentity(m)}`) < fraction ? split.heldOut : split.train;
    side.push(i);
  });
  return split;
}
