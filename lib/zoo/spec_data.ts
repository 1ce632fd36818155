/**
 * The training set of a zoo spec: the emoji its `data` names, less its `holdouts`, with what its
 * network is conditioned on.
 *
 * - Unconditional specs train on every image (their `labels` are there, unused).
 * - Class-conditional specs (`conditioning: { kind: "class" }`) train on the category labels y;
 *   a label is replaced by −1, the network's null class ∅, with the run's `contextDropout`.
 * - Text-conditional specs (`conditioning: { kind: "text", encoder }`) train on the token states
 *   of each image's caption from the frozen text tower of the zoo's CLIP `encoder`, τ(caption);
 *   dropped captions become the empty prompt's states τ("").
 * - Latent specs (`latent: { autoencoder }`) train on the scaled latents z·s of the images, not
 *   on their pixels (lib/zoo/autoencoder.ts's `scaledLatents`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Profile } from "../runtime/options.ts";
import { type EmojiDataset, loadEmojiDataset } from "../data/emoji.ts";
import { holdoutSplit } from "../data/holdouts.ts";
import { caption, loadEmojiKeywords } from "../data/captions.ts";
import type { CaptionStates, TrainingData } from "../training/trainer.ts";
import type { ModelSpec } from "./specs.ts";
import { loadClipArtefact } from "./clip_network.ts";
import { scaledLatents } from "./autoencoder.ts";

/** A spec's training set, and where each of its images is in the whole dataset. */
export interface SpecData {
  /** The whole dataset the spec's `data` loads (holdouts included). */
  dataset: EmojiDataset;
  /** Dataset indices of the training images, in training order. */
  indices: number[];
  /** The training images (or latents) with their conditioning. */
  training: TrainingData;
}

/** Rows `indices` of `source`, each `rowSize` values long, one after another. */
export function gatherRows(
  source: Float32Array,
  rowSize: number,
  indices: readonly number[],
): Float32Array {
  const out = new Float32Array(indices.length * rowSize);
  indices.forEach((i, k) => out.set(source.subarray(i * rowSize, (i + 1) * rowSize), k * rowSize));
  return out;
}

/**
 * Load the training set of `spec` (see the module comment).
 *
 * @param profile the profile whose text encoder (or autoencoder) a spec uses (trained first in
 *   `quick`, like every quick model)
 */
export async function specTrainingData(
  spec: ModelSpec,
  profile: Profile = "full",
  root = ".",
): Promise<SpecData> {
  const dataset = await loadEmojiDataset(spec.data);
  const indices = spec.holdouts
    ? holdoutSplit(dataset.meta, spec.holdouts).train
    : dataset.meta.map((_, i) => i);
  const source = spec.latent
    ? await scaledLatents(spec.latent.autoencoder, dataset.images, dataset.count, profile, root)
    : dataset.images;
  const training: TrainingData = {
    images: gatherRows(source, source.length / dataset.count, indices),
    count: indices.length,
    labels: Int32Array.from(indices, (i) => dataset.labels[i]),
  };
  if (spec.conditioning?.kind === "text") {
    const lexicon = await loadEmojiKeywords();
    const { encoder, keywords } = spec.conditioning;
    const captions = indices.map((i) => caption(dataset.meta[i], lexicon, keywords));
    training.captionStates = await captionStates(encoder, captions, profile, root);
  }
  return { dataset, indices, training };
}

/** τ(caption) of every caption and τ(""), from the text tower of the zoo's CLIP `encoder`. */
export async function captionStates(
  encoder: string,
  captions: readonly string[],
  profile: Profile = "full",
  root = ".",
): Promise<CaptionStates> {
  const { clip, tokenizer } = await loadClipArtefact(encoder, profile, root);
  try {
    const { contextLength: L, width: D } = clip.text.config;
    const states = new Float32Array(captions.length * L * D);
    const chunk = 256;
    for (let start = 0; start < captions.length; start += chunk) {
      const part = captions.slice(start, start + chunk);
      const encoded = tf.tidy(() => {
        const ids = tf.tensor2d(tokenizer.encodeBatch(part), [part.length, L], "int32");
        return clip.text.encode(ids).states;
      });
      states.set(await encoded.data() as Float32Array, start * L * D);
      encoded.dispose();
    }
    const empty = tf.tidy(() =>
      clip.text.encode(tf.tensor2d(tokenizer.encodeBatch([""]), [1, L], "int32")).states
    );
    const nullStates = await empty.data() as Float32Array;
    empty.dispose();
    return { states, length: L, width: D, nullStates };
  } finally {
    clip.dispose();
  }
}
