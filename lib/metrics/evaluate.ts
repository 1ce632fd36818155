/**
 * Sample quality through the feature classifier, in one call: images are embedded once (the
 * classifier's 128-d features φ(x) and its category posteriors p(y | x)), and a sample set is
 * compared with a reference set by every metric of this folder:
 *
 *   FID  = ‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2(Σ_r^½ Σ_g Σ_r^½)^½)   on φ,
 *   KID  = unbiased MMD² with k(x, y) = (x·y/d + 1)³             on φ, over subsets,
 *   IS   = exp E_x KL(p(y | x) ‖ p(y))                            on the category posteriors,
 *   precision, recall (k-NN manifolds, k = 3)                     on φ.
 *
 * Every number is reported with the N it was computed from: FID is biased upwards for small N
 * (chapter 7 measures how much), so two FIDs compare only at equal N.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { FeatureClassifier } from "../core/models/classifier.ts";
import { type Denoiser, sampleMany, type SampleManyOptions } from "../core/samplers/sample.ts";
import type { Scheduler } from "../core/samplers/scheduler.ts";
import { frechetDistance, gaussianStatistics } from "./fid.ts";
import { kernelDistance } from "./kid.ts";
import { inceptionScore } from "./inception_score.ts";
import { kthNeighbourRadii, precisionRecall } from "./precision_recall.ts";

/** Images as the classifier sees them: features and category posteriors, row by row. */
export interface Embedding {
  count: number;
  /** Feature dimension d. */
  dim: number;
  /** φ(x), `count · dim` values. */
  features: Float32Array;
  /** Number of categories K. */
  classes: number;
  /** p(y | x) of the first head, `count · classes` values. */
  posteriors: Float32Array;
}

/** One batch as a feature network sees it. */
export interface BatchFeatures {
  /** φ(x) [N, d]. */
  features: tf.Tensor2D;
  /** p(y | x) [N, K], or null when the network has no classes. */
  posteriors: tf.Tensor2D | null;
}

/**
 * What the metrics look through: a network's features φ(x) and, for IS, its class posteriors
 * p(y | x), of images [N, H, W, 3] in [−1, 1], in one forward pass. The emoji classifier is one
 * ({@link classifierFeatures}); a real InceptionV3 is another (lib/metrics/inception.ts).
 */
export interface FeatureExtractor {
  /** d, the size of φ(x). */
  readonly featureDim: number;
  /** K, the number of classes of p(y | x) (0 when there are none). */
  readonly classes: number;
  /** φ(x) and p(y | x) of a batch (the caller disposes them). */
  apply(x: tf.Tensor4D): BatchFeatures;
}

/** The emoji classifier as a feature extractor: φ(x), and its first head's (category) posteriors. */
export function classifierFeatures(classifier: FeatureClassifier): FeatureExtractor {
  return {
    featureDim: classifier.featureDim,
    classes: classifier.config.heads[0].classes,
    apply: (x) => {
      const [features, posteriors] = tf.tidy(() => {
        const phi = classifier.features(x);
        return [phi, tf.softmax(classifier.logits(phi)[0]) as tf.Tensor2D];
      });
      return { features, posteriors };
    },
  };
}

/**
 * A feature extractor that sees images larger than its own input averaged down to `size` first
 * (2×2 average pooling brings 32×32 emoji to the emoji classifier's 16×16): what lets the 16×16
 * classifier's metrics compare 32×32 models, at the cost of the details the pooling removes.
 */
export function pooledTo(
  network: FeatureClassifier | FeatureExtractor,
  size: number,
): FeatureExtractor {
  const extractor = network instanceof FeatureClassifier ? classifierFeatures(network) : network;
  return {
    featureDim: extractor.featureDim,
    classes: extractor.classes,
    apply: (x) => {
      const factor = x.shape[1] / size;
      if (factor === 1) return extractor.apply(x);
      if (!Number.isInteger(factor)) {
        throw new Error(
          `pooledTo: ${x.shape[1]}×${x.shape[2]} images do not pool to ${size}×${size}`,
        );
      }
      const pooled = tf.avgPool(x, factor, factor, "valid") as tf.Tensor4D;
      try {
        return extractor.apply(pooled);
      } finally {
        pooled.dispose();
      }
    },
  };
}

/**
 * Embed NHWC RGB images in [−1, 1]: a tensor [N, H, W, 3], or `count` square images as one
 * Float32Array.
 */
export async function embed(
  network: FeatureClassifier | FeatureExtractor,
  images: Float32Array | tf.Tensor4D,
  count?: number,
  batchSize = 256,
): Promise<Embedding> {
  const extractor = network instanceof FeatureClassifier ? classifierFeatures(network) : network;
  const values = images instanceof Float32Array ? images : await images.data() as Float32Array;
  const n = images instanceof Float32Array ? count : images.shape[0];
  if (n === undefined || !(n > 0)) throw new Error("embed: say how many images the array holds");
  const s = Math.round(Math.sqrt(values.length / n / 3));
  if (s * s * 3 * n !== values.length) {
    throw new Error(`embed: ${values.length} values are not ${n} square RGB images`);
  }
  const size = s * s * 3;
  const { featureDim: dim, classes } = extractor;
  const features = new Float32Array(n * dim);
  const posteriors = new Float32Array(n * classes);
  for (let start = 0; start < n; start += batchSize) {
    const b = Math.min(batchSize, n - start);
    const x = tf.tensor4d(values.subarray(start * size, (start + b) * size), [b, s, s, 3]);
    const out = extractor.apply(x);
    features.set(await out.features.data() as Float32Array, start * dim);
    if (out.posteriors) {
      posteriors.set(await out.posteriors.data() as Float32Array, start * classes);
    }
    tf.dispose([x, out.features, ...(out.posteriors ? [out.posteriors] : [])]);
  }
  return { count: n, dim, features, classes, posteriors };
}

/** Every metric of a sample set against a reference set, with the sizes they came from. */
export interface SampleQuality {
  /** Samples N. */
  count: number;
  /** Reference images. */
  referenceCount: number;
  fid: number;
  /** KID's mean and standard deviation over subsets, and the subsets' size. */
  kid: { mean: number; std: number; subsetSize: number; subsets: number };
  /** IS of the samples (category posteriors), over splits; NaN without posteriors. */
  inceptionScore: { mean: number; std: number; splits: number };
  precision: number;
  recall: number;
}

/** Options of {@link sampleQuality}. */
export interface QualityOptions {
  /** KID subsets (default 50) and their size (default min(1000, both sets)). */
  kidSubsets?: number;
  kidSubsetSize?: number;
  /** IS splits (default 10). */
  splits?: number;
  /** k of precision and recall (default 3). */
  k?: number;
  /** Seed of KID's subsets (default 0). */
  kidSeed?: number;
}

const RADII = new WeakMap<Embedding, Map<number, Float64Array>>();

/** The reference's k-NN radii, computed once per embedding and k (a reference meets many sets). */
function referenceRadii(reference: Embedding, k: number): Float64Array {
  const byK = RADII.get(reference) ?? new Map<number, Float64Array>();
  RADII.set(reference, byK);
  let radii = byK.get(k);
  if (!radii) {
    radii = kthNeighbourRadii(reference.features, reference.count, reference.dim, k);
    byK.set(k, radii);
  }
  return radii;
}

/** Compare `samples` with `reference` (see the module comment). */
export function sampleQuality(
  reference: Embedding,
  samples: Embedding,
  options: QualityOptions = {},
): SampleQuality {
  const dim = reference.dim;
  const fid = frechetDistance(
    gaussianStatistics(reference.features, reference.count, dim),
    gaussianStatistics(samples.features, samples.count, dim),
  ).distance;
  const subsets = options.kidSubsets ?? 50;
  const kid = kernelDistance(samples.features, reference.features, dim, {
    subsets,
    subsetSize: options.kidSubsetSize,
    seed: options.kidSeed ?? 0,
  });
  const splits = Math.min(options.splits ?? 10, samples.count);
  const is = samples.classes > 0
    ? inceptionScore(samples.posteriors, samples.classes, splits)
    : { mean: NaN, std: NaN };
  const k = options.k ?? 3;
  const { precision, recall } = precisionRecall(
    reference.features,
    samples.features,
    dim,
    k,
    referenceRadii(reference, k),
  );
  return {
    count: samples.count,
    referenceCount: reference.count,
    fid,
    kid: { mean: kid.mean, std: kid.std, subsetSize: kid.subsetSize, subsets },
    inceptionScore: { mean: is.mean, std: is.std, splits },
    precision,
    recall,
  };
}

/** The rows of an embedding at `indices`. */
export function subset(embedding: Embedding, indices: readonly number[]): Embedding {
  const { dim, classes } = embedding;
  const features = new Float32Array(indices.length * dim);
  const posteriors = new Float32Array(indices.length * classes);
  indices.forEach((i, k) => {
    features.set(embedding.features.subarray(i * dim, (i + 1) * dim), k * dim);
    posteriors.set(embedding.posteriors.subarray(i * classes, (i + 1) * classes), k * classes);
  });
  return { count: indices.length, dim, features, classes, posteriors };
}

/** What {@link measureSamples} returns. */
export interface MeasuredSamples {
  quality: SampleQuality;
  /** The samples, NHWC in [−1, 1], and as the classifier sees them. */
  images: Float32Array;
  embedding: Embedding;
  /** Wall time of the sampling alone. */
  seconds: number;
}

/**
 * Draw `options.count` samples of `model` with `scheduler` and measure them against `reference`
 * through `network`: the one call behind every quality table of the book.
 */
export async function measureSamples(
  network: FeatureClassifier | FeatureExtractor,
  reference: Embedding,
  model: Denoiser,
  scheduler: Scheduler,
  options: SampleManyOptions & QualityOptions,
): Promise<MeasuredSamples> {
  const started = performance.now();
  const images = await sampleMany(model, scheduler, options);
  const seconds = (performance.now() - started) / 1000;
  const embedding = await embed(network, images, options.count);
  return { quality: sampleQuality(reference, embedding, options), images, embedding, seconds };
}

/** A query's nearest row of a pool: its index and Euclidean distance. */
export interface Neighbour {
  index: number;
  distance: number;
}

/**
 * For each row of `query`, the nearest row of `pool` in feature space (Euclidean), skipping the
 * pairs `exclude(q, p)` says to (a real image's own twin, when real images are the query): the
 * memorisation test of chapter 7.
 */
export function nearestNeighbours(
  query: Embedding,
  pool: Embedding,
  exclude: (q: number, p: number) => boolean = () => false,
): Neighbour[] {
  const d = query.dim;
  return Array.from({ length: query.count }, (_, a) => {
    let best = Infinity;
    let index = -1;
    for (let b = 0; b < pool.count; b++) {
      if (exclude(a, b)) continue;
      let s = 0;
      for (let k = 0; k < d; k++) s += (query.features[a * d + k] - pool.features[b * d + k]) ** 2;
      if (s < best) [best, index] = [s, b];
    }
    return { index, distance: Math.sqrt(best) };
  });
}

/**
 * Spearman's rank correlation ρ = 1 − 6 Σ (r_i − s_i)² / (n (n² − 1)) of two lists without ties:
 * 1 when they order their items alike, −1 when in reverse.
 */
export function spearmanRho(a: readonly number[], b: readonly number[]): number {
  const ranks = (v: readonly number[]) => v.map((x) => v.filter((y) => y < x).length);
  const [ra, rb] = [ranks(a), ranks(b)];
  const n = a.length;
  return 1 - (6 * ra.reduce((s, r, i) => s + (r - rb[i]) ** 2, 0)) / (n * (n * n - 1));
}
