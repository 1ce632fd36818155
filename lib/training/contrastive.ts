/**
 * CLIP's symmetric contrastive loss (InfoNCE; Radford et al., 2021, Figure 3), for a batch of N
 * images and their N captions: with the embeddings normalised and a learned temperature,
 *
 *   zᵢ = Iᵢ/‖Iᵢ‖,  uⱼ = Tⱼ/‖Tⱼ‖,  S = e^τ · z uᵀ  [N, N],
 *   L = ½ (CE(S) + CE(Sᵀ)),  CE(S) = −(1/N) Σᵢ log softmax(Sᵢ)ᵢ,
 *
 * each image pulled towards its own caption and away from the batch's N − 1 others, and each
 * caption likewise. τ is the log of the inverse temperature: CLIP starts it at ln(1/0.07) and
 * clips e^τ at 100, as {@link logitScale} does. {@link trainClip} trains the tiny CLIP
 * (lib/core/models/clip.ts) on captioned emoji with it, and {@link retrieval} scores it on emoji
 * it never saw.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { TinyClip, unitRows } from "../core/models/clip.ts";
import type { Random } from "../core/random.ts";
import { shift } from "../data/distortions.ts";
import { type SupervisedRecipe, type SupervisedRunOptions, trainSupervised } from "./supervised.ts";
export { INITIAL_LOG_SCALE } from "../core/models/clip.ts";

/** The largest inverse temperature e^τ CLIP lets the scale reach. */
export const MAX_SCALE = 100;

/** e^τ, clipped to at most {@link MAX_SCALE}. */
export function logitScale(logScale: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.minimum(tf.exp(logScale), MAX_SCALE) as tf.Scalar);
}

/** The similarity matrix S = e^τ z uᵀ of the module comment [N, N] (images × captions). */
export function similarities(
  images: tf.Tensor2D,
  texts: tf.Tensor2D,
  logScale: tf.Tensor,
): tf.Tensor2D {
  return tf.tidy(() =>
    tf.mul(tf.matMul(unitRows(images), unitRows(texts), false, true), logitScale(logScale))
  );
}

/** L of the module comment, for images [N, d] and texts [N, d] whose i-th rows belong together. */
export function clipLoss(images: tf.Tensor2D, texts: tf.Tensor2D, logScale: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const s = similarities(images, texts, logScale);
    const n = s.shape[0];
    const target = tf.oneHot(tf.range(0, n, 1, "int32"), n);
    const ce = (logits: tf.Tensor2D) => tf.losses.softmaxCrossEntropy(target, logits);
    return tf.mul(tf.add(ce(s), ce(tf.transpose(s))), 0.5) as tf.Scalar;
  });
}

/** Images with their captions' token ids, and which of them train. */
export interface CaptionedImages {
  /** NHWC float32 in [−1, 1], `count · H · W · C` values. */
  images: Float32Array;
  /** Number of images. */
  count: number;
  /** Each image's caption as L token ids (`count · L`, the tokenizer's `encodeBatch`). */
  ids: Int32Array;
  /** The images the model trains on. */
  train: readonly number[];
  /** The held-out images its retrieval is measured on. */
  heldOut: readonly number[];
}

/** The tiny CLIP's recipe: the supervised run's, and the augmentation's largest shift. */
export interface ClipTraining extends SupervisedRecipe {
  /** Largest shift of an image, in pixels (no flips: a caption may say "facing right"). */
  maxShift: number;
}

/**
 * The loss of a batch of B distinct training images (shifted) and their captions, drawn from
 * `rng` (call inside `tf.variableGrads`).
 */
function captionedBatchLoss(
  data: CaptionedImages,
  clip: TinyClip,
  batchSize: number,
  maxShift: number,
  rng: Random,
): () => tf.Scalar {
  const chosen = new Set<number>();
  while (chosen.size < Math.min(batchSize, data.train.length)) {
    chosen.add(data.train[rng.int(0, data.train.length)]);
  }
  const { imageSize: s, inChannels: c } = clip.image.config;
  const { x, ids } = pairsTensors(clip, data, [...chosen], (image) => {
    const dy = rng.int(-maxShift, maxShift + 1);
    const dx = rng.int(-maxShift, maxShift + 1);
    return shift(image, [s, s, c], dy, dx);
  });
  return () => clipLoss(clip.imageEmbeddings(x()), clip.textEmbeddings(ids()), clip.logScale);
}

/**
 * The images at `indices` (each passed through `transform`, in order) and their captions' ids,
 * gathered on the host; the tensors are made when called (inside the caller's tidy).
 */
function pairsTensors(
  clip: TinyClip,
  data: Pick<CaptionedImages, "images" | "ids">,
  indices: readonly number[],
  transform: (image: Float32Array) => Float32Array = (image) => image,
): { x: () => tf.Tensor4D; ids: () => tf.Tensor2D } {
  const { imageSize: s, inChannels: c } = clip.image.config;
  const L = clip.text.config.contextLength;
  const size = s * s * c;
  const n = indices.length;
  const x = new Float32Array(n * size);
  const ids = new Int32Array(n * L);
  indices.forEach((i, b) => {
    x.set(transform(data.images.subarray(i * size, (i + 1) * size)), b * size);
    ids.set(data.ids.subarray(i * L, (i + 1) * L), b * L);
  });
  return {
    x: () => tf.tensor4d(x, [n, s, s, c]),
    ids: () => tf.tensor2d(ids, [n, L], "int32"),
  };
}

/**
 * Retrieval among the images at `indices` and their captions: the share of images whose own
 * caption is the most similar of all theirs (image → text top-1), or among the 5 most similar
 * (top-5), the same from captions to images, and chance (1/N, 5/N).
 */
export function retrieval(
  clip: TinyClip,
  data: Pick<CaptionedImages, "images" | "ids">,
  indices: readonly number[],
): Record<string, number> {
  const n = indices.length;
  const { x, ids } = pairsTensors(clip, data, indices);
  const cos = tf.tidy(() => clip.cosines(x(), ids()));
  const m = cos.dataSync();
  cos.dispose();
  /** The rank (0 = best) of entry i in row i, rows read along `byRow` or columns. */
  const rank = (i: number, byRow: boolean) => {
    const at = (j: number) => byRow ? m[i * n + j] : m[j * n + i];
    let above = 0;
    for (let j = 0; j < n; j++) if (at(j) > at(i)) above++;
    return above;
  };
  const share = (byRow: boolean, k: number) =>
    indices.filter((_, i) => rank(i, byRow) < k).length / n;
  return {
    imageToTextTop1: share(true, 1),
    imageToTextTop5: share(true, 5),
    textToImageTop1: share(false, 1),
    textToImageTop5: share(false, 5),
    chanceTop1: 1 / n,
    chanceTop5: Math.min(1, 5 / n),
  };
}

/** What {@link trainClip} ends with: the network (the caller disposes it) and its step. */
export interface ClipRun {
  clip: TinyClip;
  step: number;
}

/**
 * Train a tiny CLIP of `config` on `data` with L of the module comment, as a supervised run
 * (lib/training/supervised.ts), resuming the run at `options.checkpointPath` when there is one.
 */
export async function trainClip(
  config: ConstructorParameters<typeof TinyClip>[0],
  data: CaptionedImages,
  training: ClipTraining,
  options: SupervisedRunOptions,
): Promise<ClipRun> {
  const clip = new TinyClip(config);
  try {
    const step = await trainSupervised(clip, training, {
      what: "tiny CLIP",
      batchLoss: (rng) =>
        captionedBatchLoss(data, clip, training.batchSize, training.maxShift, rng),
      evaluate: () => Promise.resolve(retrieval(clip, data, data.heldOut)),
    }, options);
    return { clip, step };
  } catch (e) {
    clip.dispose();
    throw e;
  }
}
