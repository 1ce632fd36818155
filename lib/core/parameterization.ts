/**
 * What a denoiser predicts, and the conversions between its three parameterisations. With
 * x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε (lib/core/forward.ts), a network may predict
 *
 *   ε (Ho et al., 2020),   x₀ ("sample"),   or   v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ (Salimans & Ho, 2022),
 *
 * and any one of them, with x_t, gives the other two. Training takes the target from here,
 * sampling converts the network's output here: one place for the algebra.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkSameShape, coefficient, type Timesteps } from "./forward.ts";
import type { NoiseSchedule } from "./schedules.ts";

/** What the network predicts: the noise ε, the clean image x₀ ("sample"), or v = √ᾱ ε − √(1−ᾱ) x₀. */
export type PredictionType = "epsilon" | "sample" | "v";

/**
 * The regression target of a training pair (x₀, ε) at step t: ε, x₀, or
 * v = √ᾱ_t ε − √(1 − ᾱ_t) x₀. Call inside `tf.tidy`.
 */
export function predictionTarget(
  prediction: PredictionType,
  x0: tf.Tensor4D,
  noise: tf.Tensor4D,
  t: Timesteps,
  schedule: NoiseSchedule,
): tf.Tensor4D {
  switch (prediction) {
    case "epsilon":
      return noise;
    case "sample":
      return x0;
    case "v": {
      const signal = coefficient(x0, t, schedule, (i) => schedule.sqrtAlphaBars[i]);
      const noiseScale = coefficient(x0, t, schedule, (i) => schedule.sqrtOneMinusAlphaBars[i]);
      return tf.sub(tf.mul(noise, signal), tf.mul(x0, noiseScale)) as tf.Tensor4D;
    }
    default:
      throw new Error(`Unknown prediction "${prediction}"; use "epsilon", "sample" or "v".`);
  }
}

/**
 * The network's output as a pair (x̂₀, ε̂), given ᾱ = ᾱ_t:
 *
 *   epsilon: x̂₀ = (x_t − √(1−ᾱ) ε̂) / √ᾱ
 *   sample:  ε̂ = (x_t − √ᾱ x̂₀) / √(1−ᾱ)
 *   v:       x̂₀ = √ᾱ x_t − √(1−ᾱ) v̂,  ε̂ = √(1−ᾱ) x_t + √ᾱ v̂
 *
 * With `clipRange`, x̂₀ is clipped and ε̂ recomputed from the clipped x̂₀.
 * Call inside `tf.tidy`.
 */
export function toOriginalAndNoise(
  modelOutput: tf.Tensor4D,
  xt: tf.Tensor4D,
  alphaBar: number,
  predictionType: PredictionType,
  clipRange?: number,
): { x0: tf.Tensor4D; eps: tf.Tensor4D } {
  const a = Math.sqrt(alphaBar);
  const s = Math.sqrt(1 - alphaBar);
  let x0: tf.Tensor4D;
  let eps: tf.Tensor4D;
  switch (predictionType) {
    case "epsilon":
      eps = modelOutput;
      x0 = tf.div(tf.sub(xt, tf.mul(modelOutput, s)), a);
      break;
    case "sample":
      x0 = modelOutput;
      eps = tf.div(tf.sub(xt, tf.mul(modelOutput, a)), s);
      break;
    case "v":
      x0 = tf.sub(tf.mul(xt, a), tf.mul(modelOutput, s));
      eps = tf.add(tf.mul(xt, s), tf.mul(modelOutput, a));
      break;
    default:
      throw new Error(
        `Unknown prediction type "${predictionType}"; use "epsilon", "sample" or "v".`,
      );
  }
  if (clipRange !== undefined) {
    x0 = tf.clipByValue(x0, -clipRange, clipRange);
    eps = tf.div(tf.sub(xt, tf.mul(x0, a)), s);
  }
  return { x0, eps };
}

/**
 * Recovers x_0 from x_t and the noise in it, inverting {@link addNoise}:
 *
 *   x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t
 *
 * With a network's ε estimate this is its prediction of x_0; errors grow as 1/√ᾱ_t at
 * the noisiest steps.
 */
export function predictX0FromNoise<X extends tf.Tensor>(
  xt: X,
  noise: tf.Tensor,
  t: Timesteps,
  schedule: NoiseSchedule,
): X {
  checkSameShape(xt, noise, "xt and noise");
  return tf.tidy(() => {
    const coefXt = coefficient(xt, t, schedule, (i) => 1 / schedule.sqrtAlphaBars[i]);
    const coefNoise = coefficient(
      xt,
      t,
      schedule,
      (i) => schedule.sqrtOneMinusAlphaBars[i] / schedule.sqrtAlphaBars[i],
    );
    return tf.sub(tf.mul(xt, coefXt), tf.mul(noise, coefNoise)) as X;
  });
}

/**
 * Recovers the noise in x_t from x_t and x_0, inverting {@link addNoise}:
 *
 *   ε = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t)
 */
export function predictNoiseFromX0<X extends tf.Tensor>(
  xt: X,
  x0: tf.Tensor,
  t: Timesteps,
  schedule: NoiseSchedule,
): X {
  checkSameShape(xt, x0, "xt and x0");
  return tf.tidy(() => {
    const coefXt = coefficient(xt, t, schedule, (i) => 1 / schedule.sqrtOneMinusAlphaBars[i]);
    const coefX0 = coefficient(
      xt,
      t,
      schedule,
      (i) => schedule.sqrtAlphaBars[i] / schedule.sqrtOneMinusAlphaBars[i],
    );
    return tf.sub(tf.mul(xt, coefXt), tf.mul(x0, coefX0)) as X;
  });
}
