/**
 * What the conditional models keep out of training, from the start, so that later chapters can
 * show what they never saw without retraining them:
 *
 * - held-out names: about 10 % of the emoji, split by identity (lib/data/splits.ts: both
 *   vendors' drawings, skin tones and gendered variants together), whose names and pictures no
 *   conditional model trains on (chapter 6 prompts for them);
 * - an unseen subcategory (the cat faces), which the fine-tuning chapter teaches a model;
 * - an unseen subject (the teddy bear), the fine-tuning chapter's single new emoji.
 *
 * The training side is every image on none of the three.
 *
 * @module
 */
import type { EmojiMeta } from "./emoji.ts";
import { emojiIdentity, splitByIdentity } from "./splits.ts";
import { UserError } from "../core/errors.ts";

/** The data spec of the holdouts. */
export interface Holdouts {
  /** The emoji whose names no conditional model trains on: a fraction of identities, a seed. */
  heldOutNames: { fraction: number; seed: number };
  /** A Unicode subcategory no conditional model trains on (`EmojiMeta.subcategory`). */
  unseenSubcategory: string;
  /** One emoji no model trains on, as code points (`EmojiMeta.unified`, any variant of it). */
  unseenSubject: string;
}

/** The holdouts of every conditional model of the zoo. */
export const CONDITIONING_HOLDOUTS: Holdouts = {
  heldOutNames: { fraction: 0.1, seed: 6 },
  unseenSubcategory: "cat-face",
  unseenSubject: "1F9F8", // TEDDY BEAR
};

/** The images on each side, as indices into the dataset. */
export interface HoldoutSplit {
  train: number[];
  heldOutNames: number[];
  unseenSubcategory: number[];
  unseenSubject: number[];
}

/**
 * Split `meta`'s images by `holdouts`: the subject first, then the subcategory, then the
 * held-out names, the rest train.
 *
 * @throws UserError when the subcategory or the subject matches no image
 */
export function holdoutSplit(
  meta: readonly EmojiMeta[],
  holdouts: Holdouts = CONDITIONING_HOLDOUTS,
): HoldoutSplit {
  const subject = emojiIdentity({ unified: holdouts.unseenSubject });
  const names = new Set(
    splitByIdentity(meta, holdouts.heldOutNames.fraction, holdouts.heldOutNames.seed).heldOut,
  );
  const split: HoldoutSplit = {
    train: [],
    heldOutNames: [],
    unseenSubcategory: [],
    unseenSubject: [],
  };
  meta.forEach((m, i) => {
    if (emojiIdentity(m) === subject) split.unseenSubject.push(i);
    else if (m.subcategory === holdouts.unseenSubcategory) split.unseenSubcategory.push(i);
    else if (names.has(i)) split.heldOutNames.push(i);
    else split.train.push(i);
  });
  if (split.unseenSubcategory.length === 0) {
    const known = [...new Set(meta.map((m) => m.subcategory))].slice(0, 8).join(", ");
    throw new UserError(
      `no image is of the unseen subcategory "${holdouts.unseenSubcategory}"; name one the data ` +
        `has (${known}, …)`,
    );
  }
  if (split.unseenSubject.length === 0) {
    throw new UserError(
      `no image draws the unseen subject ${holdouts.unseenSubject}; give the code points of an ` +
        `emoji the data has (EmojiMeta.unified, e.g. 1F9F8 for the teddy bear)`,
    );
  }
  return split;
}
