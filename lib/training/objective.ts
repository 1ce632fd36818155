/**
 * The denoising objective of one batch (Ho et al., 2020, Algorithm 1, line 5):
 *
 *   x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε,    L = mean_b w_b ‖target_b − f_θ(x_t, t)_b‖²,
 *
 * with target ε (prediction "epsilon"), x₀ ("sample") or v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ ("v",
 * Salimans & Ho, 2022), and per-sample weights w (all 1, or Min-SNR-γ).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { addNoise } from "../core/forward.ts";
import { predictionTarget, type PredictionType } from "../core/parameterization.ts";
import type { NoiseSchedule } from "../core/schedules.ts";
import type { DiffusionModel } from "../core/models/mod.ts";
import type { BufferUpdate } from "../core/nn/layers.ts";

/** One batch of the objective: images, their timesteps and noise, all drawn by the caller. */
export interface DenoisingBatch {
  /** Clean images x₀, NHWC in [−1, 1]. */
  x0: tf.Tensor4D;
  /** Timesteps t, one per image (0-based). */
  timesteps: Int32Array;
  /** Noise ε ~ N(0, I), shaped as x0. */
  noise: tf.Tensor4D;
  /** Per-image loss weights w (default 1). */
  weights?: Float32Array;
  /** Class labels for a conditional network (−1: no condition). */
  classLabels?: Int32Array;
  /** Token states [N, L, D] of each image's condition, for a cross-attending network. */
  encoderHiddenStates?: tf.Tensor3D;
}

/** How the network is run inside the objective. */
export interface ObjectiveOptions {
  /** What the network predicts. */
  prediction: PredictionType;
  /** Training mode (dropout on) with this dropout seed; absent: inference. */
  training?: { seed: number; updates?: BufferUpdate[] };
}

/**
 * The weighted batch loss L and the unweighted per-sample losses ‖target − f_θ‖² (mean over
 * pixels). Call inside `tf.variableGrads` to train, or inside `tf.tidy` to evaluate.
 */
export function denoisingLoss(
  model: DiffusionModel,
  schedule: NoiseSchedule,
  batch: DenoisingBatch,
  options: ObjectiveOptions,
): { loss: tf.Scalar; perSample: tf.Tensor1D } {
  const { x0, noise, timesteps } = batch;
  const xt = addNoise(x0, noise, timesteps, schedule);
  const target = predictionTarget(options.prediction, x0, noise, timesteps, schedule);
  const output = model.apply(xt, tf.tensor1d(Float32Array.from(timesteps)), {
    training: options.training !== undefined,
    seed: options.training?.seed ?? 0,
    classLabels: batch.classLabels ? tf.tensor1d(batch.classLabels, "int32") : undefined,
    encoderHiddenStates: batch.encoderHiddenStates,
    updates: options.training?.updates,
  });
  const perSample = tf.mean(tf.squaredDifference(output, target), [1, 2, 3]) as tf.Tensor1D;
  const weights = batch.weights ?? new Float32Array(timesteps.length).fill(1);
  const loss = tf.mean(tf.mul(perSample, tf.tensor1d(weights))) as tf.Scalar;
  return { loss, perSample };
}
