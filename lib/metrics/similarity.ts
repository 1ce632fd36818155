/**
 * How close generated images are to a few real ones, as DreamBooth measures subject fidelity
 * (Ruiz et al. 2023, §4.1): the mean cosine similarity of the embeddings of every generated
 * image g_i with every real image r_j,
 *
 *   sim(G, R) = 1/(|G||R|) Σ_i Σ_j ĝ_i · r̂_j = (mean_i ĝ_i) · (mean_j r̂_j),   x̂ = x/‖x‖,
 *
 * through CLIP's image tower (their CLIP-I; here the book's tiny CLIP, {@link clipImageFeatures})
 * or a self-supervised network's features (their DINO; here the emoji classifier's φ). A score
 * of the set, not of an image: it needs no more real images than the handful a subject has.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type TinyClip, unitRows } from "../core/models/clip.ts";
import type { Embedding, FeatureExtractor } from "./evaluate.ts";

/** The tiny CLIP's image tower as a feature extractor: its unit image embeddings f(x)/‖f(x)‖. */
export function clipImageFeatures(clip: TinyClip): FeatureExtractor {
  return {
    featureDim: clip.config.embedDim,
    classes: 0,
    apply: (x) => ({
      features: tf.tidy(() => unitRows(clip.imageEmbeddings(x))),
      posteriors: null,
    }),
  };
}

/** The mean of the rows of `e`, each first scaled to unit length. */
function meanDirection(e: Pick<Embedding, "count" | "dim" | "features">): Float64Array {
  const mean = new Float64Array(e.dim);
  for (let i = 0; i < e.count; i++) {
    const row = e.features.subarray(i * e.dim, (i + 1) * e.dim);
    let norm = 0;
    for (const v of row) norm += v * v;
    norm = Math.sqrt(norm) || 1;
    for (let k = 0; k < e.dim; k++) mean[k] += row[k] / norm / e.count;
  }
  return mean;
}

/** sim(G, R): the mean cosine similarity over all pairs of a row of `g` and a row of `r`. */
export function meanCosine(
  g: Pick<Embedding, "count" | "dim" | "features">,
  r: Pick<Embedding, "count" | "dim" | "features">,
): number {
  if (g.dim !== r.dim) throw new Error(`meanCosine: features of ${g.dim} and ${r.dim} dimensions`);
  const a = meanDirection(g), b = meanDirection(r);
  let dot = 0;
  for (let k = 0; k < a.length; k++) dot += a[k] * b[k];
  return dot;
}
