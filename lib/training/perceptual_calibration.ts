/**
 * Calibrating the perceptual distance's channel weights (lib/core/models/perceptual.ts) on
 * two-alternative forced-choice (2AFC) triplets, as LPIPS does with human judgements. There are
 * no people here, so every triplet's answer is known by construction:
 *
 * - **strength**: a reference x and two distortions of it of one kind (blur, noise, colour
 *   quantisation, shift) at two of its four strengths: the milder one is closer;
 * - **identity**: x, x under one of the two mildest strengths of a kind, and the emoji nearest to x in pixels among those of
 *   another identity: the distorted x is closer (a shifted heart is still that heart; a
 *   different heart with the same colours is not), which is where plain L2 fails.
 *
 * The weights w ≥ 0 minimise the logistic loss of the answer y (1: the first is closer),
 *
 *   L(w) = −mean[y log σ(Δ·w) + (1 − y) log(1 − σ(Δ·w))],  Δ = D(x, x₁) − D(x, x₀),
 *
 * with D the per-channel terms of the distance, by Adam, projecting onto w ≥ 0 after each step
 * (LPIPS clamps its weights the same way). A 2AFC score is the fraction of triplets a distance
 * answers rightly.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { FeatureClassifier } from "../core/models/classifier.ts";
import { channelDifferences } from "../core/models/perceptual.ts";
import type { Random } from "../core/random.ts";
import {
  distort,
  DISTORTION_KINDS,
  distortionAt,
  type ImageShape,
  STRENGTHS,
} from "../data/distortions.ts";

/** Triplets (x, x₀, x₁) with their answers. */
export interface Triplets {
  /** Number of triplets. */
  count: number;
  /** The shape of each image. */
  shape: ImageShape;
  /** x, x₀, x₁: `count` images each, NHWC. */
  reference: Float32Array;
  first: Float32Array;
  second: Float32Array;
  /** 1 where x₀ is the closer one, 0 where x₁ is. */
  firstCloser: Uint8Array;
  /** How each was made: "strength:blur", "identity:shift", … */
  kinds: string[];
}

/**
 * For each of `indices`, the index (from `indices`) of the image nearest to it in pixels
 * (squared L2) whose identity differs.
 */
export function nearestOtherIdentity(
  images: Float32Array,
  size: number,
  indices: readonly number[],
  identity: (i: number) => string,
): number[] {
  const n = indices.length;
  const x = new Float32Array(n * size);
  indices.forEach((i, k) => x.set(images.subarray(i * size, (i + 1) * size), k * size));
  const d2 = tf.tidy(() => {
    const X = tf.tensor2d(x, [n, size]);
    const sq = tf.sum(tf.square(X), 1);
    return tf.sub(
      tf.add(tf.reshape(sq, [-1, 1]), tf.reshape(sq, [1, -1])),
      tf.mul(2, tf.matMul(X, X, false, true)),
    );
  });
  const values = d2.dataSync();
  d2.dispose();
  return indices.map((i, a) => {
    let best = -1;
    let bestD = Infinity;
    for (let b = 0; b < n; b++) {
      if (b !== a && values[a * n + b] < bestD && identity(indices[b]) !== identity(i)) {
        bestD = values[a * n + b];
        best = b;
      }
    }
    return indices[best];
  });
}

/**
 * `count` triplets from the images at `indices` (half of each type, the kinds in turn, the
 * closer image first or second at random).
 */
export function makeTriplets(
  images: Float32Array,
  shape: ImageShape,
  indices: readonly number[],
  identity: (i: number) => string,
  count: number,
  rng: Random,
): Triplets {
  const size = shape[0] * shape[1] * shape[2];
  const neighbour = new Map<number, number>();
  nearestOtherIdentity(images, size, indices, identity).forEach((j, k) =>
    neighbour.set(indices[k], j)
  );
  const t: Triplets = {
    count,
    shape,
    reference: new Float32Array(count * size),
    first: new Float32Array(count * size),
    second: new Float32Array(count * size),
    firstCloser: new Uint8Array(count),
    kinds: [],
  };
  const image = (i: number) => images.subarray(i * size, (i + 1) * size);
  for (let n = 0; n < count; n++) {
    const i = indices[rng.int(0, indices.length)];
    const x = image(i);
    const kind = DISTORTION_KINDS[Math.floor(n / 2) % DISTORTION_KINDS.length];
    let closer: Float32Array;
    let further: Float32Array;
    const direction = rng.int(0, 8);
    if (n % 2 === 0) {
      const a = rng.int(0, STRENGTHS.length - 1);
      const b = rng.int(a + 1, STRENGTHS.length);
      closer = distort(x, shape, distortionAt(kind, STRENGTHS[a], direction), rng);
      further = distort(x, shape, distortionAt(kind, STRENGTHS[b], direction), rng);
      t.kinds.push(`strength:${kind}`);
    } else {
      const mild = STRENGTHS[rng.int(0, 2)];
      closer = distort(x, shape, distortionAt(kind, mild, direction), rng);
      further = image(neighbour.get(i)!).slice();
      t.kinds.push(`identity:${kind}`);
    }
    const firstCloser = rng.uniform() < 0.5;
    t.reference.set(x, n * size);
    t.first.set(firstCloser ? closer : further, n * size);
    t.second.set(firstCloser ? further : closer, n * size);
    t.firstCloser[n] = firstCloser ? 1 : 0;
  }
  return t;
}

/** D(x, x₀) and D(x, x₁) of every triplet, [count, Σ C_l] each, in batches. */
export async function tripletDifferences(
  classifier: FeatureClassifier,
  triplets: Triplets,
  batchSize = 256,
): Promise<{ toFirst: Float32Array; toSecond: Float32Array; channels: number }> {
  const [H, W, C] = triplets.shape;
  const size = H * W * C;
  const channels = classifier.config.channels.reduce((a, b) => a + b, 0);
  const toFirst = new Float32Array(triplets.count * channels);
  const toSecond = new Float32Array(triplets.count * channels);
  for (let start = 0; start < triplets.count; start += batchSize) {
    const n = Math.min(batchSize, triplets.count - start);
    const slice = (a: Float32Array) =>
      tf.tensor4d(a.subarray(start * size, (start + n) * size), [n, H, W, C]);
    for (const [from, into] of [[triplets.first, toFirst], [triplets.second, toSecond]] as const) {
      const d = tf.tidy(() =>
        channelDifferences(classifier, slice(triplets.reference), slice(from))
      );
      into.set(await d.data() as Float32Array, start * channels);
      d.dispose();
    }
  }
  return { toFirst, toSecond, channels };
}

/** The fraction of triplets where `d0 < d1` agrees with the answer (ties count half). */
export function twoAfcScore(
  d0: ArrayLike<number>,
  d1: ArrayLike<number>,
  firstCloser: Uint8Array,
): number {
  let right = 0;
  for (let n = 0; n < firstCloser.length; n++) {
    if (d0[n] === d1[n]) right += 0.5;
    else if ((d0[n] < d1[n]) === (firstCloser[n] === 1)) right++;
  }
  return right / firstCloser.length;
}

/** Squared L2 between the reference and each candidate, per triplet. */
export function pixelDistances(triplets: Triplets): { d0: Float64Array; d1: Float64Array } {
  const size = triplets.shape[0] * triplets.shape[1] * triplets.shape[2];
  const d0 = new Float64Array(triplets.count);
  const d1 = new Float64Array(triplets.count);
  for (let n = 0; n < triplets.count; n++) {
    for (let k = n * size; k < (n + 1) * size; k++) {
      d0[n] += (triplets.reference[k] - triplets.first[k]) ** 2;
      d1[n] += (triplets.reference[k] - triplets.second[k]) ** 2;
    }
  }
  return { d0, d1 };
}

/** Weighted distances Σ_c w_c D[n, c] of per-channel differences [count, channels]. */
export function weightedDistances(D: Float32Array, weights: Float32Array): Float64Array {
  const channels = weights.length;
  const out = new Float64Array(D.length / channels);
  for (let n = 0; n < out.length; n++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += weights[c] * D[n * channels + c];
    out[n] = s;
  }
  return out;
}

/** Options of {@link calibrateWeights}. */
export interface CalibrationOptions {
  /** Adam steps over the whole set of triplets. */
  steps: number;
  /** Adam's learning rate. */
  learningRate: number;
}

/**
 * The channel weights w ≥ 0 that minimise the module comment's logistic loss, starting from
 * w = 1 (the uncalibrated distance). Returns w and the loss at each step.
 */
export function calibrateWeights(
  differences: { toFirst: Float32Array; toSecond: Float32Array; channels: number },
  firstCloser: Uint8Array,
  options: CalibrationOptions,
): { weights: Float32Array; losses: number[] } {
  const { channels } = differences;
  const count = firstCloser.length;
  const w = tf.variable(tf.ones([channels, 1]));
  const optimizer = tf.train.adam(options.learningRate);
  const losses: number[] = [];
  const delta = tf.tidy(() =>
    tf.sub(
      tf.tensor2d(differences.toSecond, [count, channels]),
      tf.tensor2d(differences.toFirst, [count, channels]),
    )
  );
  const labels = tf.tensor2d(Float32Array.from(firstCloser), [count, 1]);
  try {
    for (let step = 0; step < options.steps; step++) {
      const loss = optimizer.minimize(
        () => tf.losses.sigmoidCrossEntropy(labels, tf.matMul(delta, w)) as tf.Scalar,
        true,
        [w],
      )!;
      losses.push(loss.dataSync()[0]);
      loss.dispose();
      tf.tidy(() => w.assign(tf.relu(w)));
    }
    return { weights: w.dataSync() as Float32Array, losses };
  } finally {
    tf.dispose([w, delta, labels]);
    optimizer.dispose();
  }
}
