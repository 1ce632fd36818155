/**
 * A learned perceptual distance in the recipe of LPIPS (Zhang et al., 2018), on the feature
 * classifier's stage outputs instead of AlexNet's or VGG's: each layer's feature map is
 * unit-normalised over channels, the squared differences are weighted per channel by w_l ≥ 0,
 * averaged over space and summed over layers,
 *
 *   d(x, x') = Σ_l 1/(H_l W_l) Σ_{i,j} Σ_c w_{l,c} (ĥ_l[i,j,c] − ĥ'_l[i,j,c])²,
 *   ĥ_l = h_l / (‖h_l[i, j, :]‖₂ + ε).
 *
 * With every w = 1 this is LPIPS's uncalibrated "baseline"; the weights are calibrated on
 * two-alternative forced-choice triplets (lib/training/perceptual_calibration.ts). It is not
 * LPIPS: its network, and its judgements (distortions of known order, not people), are the
 * book's own.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { FeatureClassifier } from "./classifier.ts";

const EPSILON = 1e-10;

/**
 * The per-channel terms of d for pairs (x, x'): for each layer l, [N, C_l] of
 * 1/(H_l W_l) Σ_{i,j} (ĥ_l − ĥ'_l)², concatenated to [N, Σ_l C_l]. d is their dot product with
 * the concatenated weights, so calibration can work on these terms alone.
 */
export function channelDifferences(
  classifier: FeatureClassifier,
  x: tf.Tensor4D,
  y: tf.Tensor4D,
): tf.Tensor2D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const maps = classifier.featureMaps(tf.concat([x, y]));
    const unit = (h: tf.Tensor4D) => tf.div(h, tf.add(tf.norm(h, "euclidean", 3, true), EPSILON));
    return tf.concat(
      maps.map((h) => {
        const normalised = unit(h);
        const a = tf.slice(normalised, [0, 0, 0, 0], [n, -1, -1, -1]);
        const b = tf.slice(normalised, [n, 0, 0, 0], [n, -1, -1, -1]);
        return tf.mean(tf.squaredDifference(a, b), [1, 2]);
      }),
      1,
    ) as tf.Tensor2D;
  });
}

/** The distance d with its channel weights w (all layers', concatenated, each ≥ 0). */
export class PerceptualDistance {
  /** w, [Σ_l C_l]. */
  readonly weights: tf.Tensor1D;

  /** @param weights w, or undefined for the uncalibrated baseline (every w = 1) */
  constructor(readonly classifier: FeatureClassifier, weights?: Float32Array) {
    const size = classifier.config.channels.reduce((a, b) => a + b, 0);
    if (weights && weights.length !== size) {
      throw new Error(
        `PerceptualDistance: ${weights.length} weights for a classifier with ${size} channels ` +
          `in its stages; calibrate the distance on this classifier.`,
      );
    }
    if (weights?.some((w) => !(w >= 0))) {
      throw new Error("PerceptualDistance: the channel weights must be non-negative numbers");
    }
    this.weights = tf.tensor1d(weights ?? new Float32Array(size).fill(1));
  }

  /** d(x_n, y_n) for each pair, [N]. */
  distance(x: tf.Tensor4D, y: tf.Tensor4D): tf.Tensor1D {
    return tf.tidy(() =>
      tf.squeeze(
        tf.matMul(channelDifferences(this.classifier, x, y), tf.reshape(this.weights, [-1, 1])),
        [1],
      )
    ) as tf.Tensor1D;
  }

  /** Free the weights (the classifier stays with its owner). */
  dispose(): void {
    this.weights.dispose();
  }
}
