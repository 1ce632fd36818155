/**
 * The forward (noising) process of a diffusion model and its posterior (Ho et al. 2020).
 *
 * - one step:        q(x_t | x_{t-1}) = N(√(1 − β_t) x_{t-1}, β_t I)
 * - closed-form jump: q(x_t | x_0)     = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
 * - posterior:       q(x_{t-1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)
 *
 * Tensors are float32, images NHWC with values in [−1, 1]; any rank ≥ 1 with the batch first
 * works. A step `t` is either one number for the whole batch or one integer per batch element
 * (an array or an int32 `tf.Tensor1D`). Steps use the index convention of `schedules.ts`:
 * index t is the paper's step t + 1, so t = 0 is the first, least noisy step and t = T − 1 the
 * last; ᾱ before the first step (the paper's ᾱ_0) is 1.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { NoiseSchedule } from "./schedules.ts";

/**
 * Diffusion step(s), 0-based (index t is the paper's step t + 1): one number for the whole
 * batch, or one integer per batch element. Steps in a tensor are not range-checked (reading
 * them back would stall the GPU): keep them in [0, T).
 */
export type Timesteps = number | readonly number[] | Int32Array | tf.Tensor1D;

/** Throws unless `t` is an integer step of `schedule`. */
function checkStep(t: number, schedule: NoiseSchedule): void {
  if (!Number.isInteger(t) || t < 0 || t >= schedule.T) {
    throw new Error(
      `Diffusion step t = ${t} is out of range: use an integer in [0, ${
        schedule.T - 1
      }] (index t is the paper's step t + 1).`,
    );
  }
}

/** Throws unless `a` and `b` have the same shape. */
export function checkSameShape(a: tf.Tensor, b: tf.Tensor, names: string): void {
  if (!tf.util.arraysEqual(a.shape, b.shape)) {
    throw new Error(
      `${names} must have the same shape, got [${a.shape}] and [${b.shape}]: ` +
        `draw the noise with the data's shape.`,
    );
  }
}

/**
 * The coefficient `valueAt(t)` as a tensor that broadcasts against `x`: a scalar for a single
 * step, a [B, 1, …, 1] tensor for one step per batch element. Call inside `tf.tidy`.
 */
export function coefficient(
  x: tf.Tensor,
  t: Timesteps,
  schedule: NoiseSchedule,
  valueAt: (t: number) => number,
): tf.Tensor {
  if (typeof t === "number") {
    checkStep(t, schedule);
    return tf.scalar(valueAt(t));
  }
  const batch = x.rank > 0 ? x.shape[0] : 0;
  const shape = [batch, ...new Array<number>(Math.max(x.rank - 1, 0)).fill(1)];
  const length = t instanceof tf.Tensor ? (t.rank === 1 ? t.shape[0] : -1) : t.length;
  if (x.rank === 0 || length !== batch) {
    throw new Error(
      `Per-element steps need one step per batch element: got ${
        t instanceof tf.Tensor ? `a tensor of shape [${t.shape}]` : `${length} steps`
      } for data of shape [${x.shape}]; pass ${batch || "B"} steps or a single number.`,
    );
  }
  if (t instanceof tf.Tensor) {
    const table = Float32Array.from({ length: schedule.T }, (_, i) => valueAt(i));
    return tf.gather(tf.tensor1d(table), tf.cast(t, "int32")).reshape(shape);
  }
  return tf.tensor1d(Float32Array.from(t, (step) => {
    checkStep(step, schedule);
    return valueAt(step);
  })).reshape(shape);
}

/**
 * Samples x_t ~ q(x_t | x_0) in one jump (Ho et al. 2020, eq. 4), given the noise ε ~ N(0, I):
 *
 *   x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
 *
 * @param x0 clean data x_0, batch first
 * @param noise ε, the same shape as `x0`
 * @param t step(s), 0-based (see {@link Timesteps})
 */
export function addNoise<X extends tf.Tensor>(
  x0: X,
  noise: tf.Tensor,
  t: Timesteps,
  schedule: NoiseSchedule,
): X {
  checkSameShape(x0, noise, "x0 and noise");
  return tf.tidy(() => {
    const signal = coefficient(x0, t, schedule, (i) => schedule.sqrtAlphaBars[i]);
    const noiseScale = coefficient(x0, t, schedule, (i) => schedule.sqrtOneMinusAlphaBars[i]);
    return tf.add(tf.mul(x0, signal), tf.mul(noise, noiseScale)) as X;
  });
}

/**
 * Takes one step of the forward process, x_t ~ q(x_t | x_{t-1}), given ε ~ N(0, I):
 *
 *   x_t = √(1 − β_t) x_{t-1} + √β_t ε
 *
 * Iterating it from x_0 through steps 0 … t samples the same distribution as
 * {@link addNoise} at step t.
 *
 * @param xPrev x_{t-1}, batch first
 * @param noise ε, the same shape as `xPrev`
 * @param t step(s), 0-based: t = 0 turns x_0 into the paper's x_1
 */
export function forwardStep<X extends tf.Tensor>(
  xPrev: X,
  noise: tf.Tensor,
  t: Timesteps,
  schedule: NoiseSchedule,
): X {
  checkSameShape(xPrev, noise, "xPrev and noise");
  return tf.tidy(() => {
    const signal = coefficient(xPrev, t, schedule, (i) => Math.sqrt(schedule.alphas[i]));
    const noiseScale = coefficient(xPrev, t, schedule, (i) => Math.sqrt(schedule.betas[i]));
    return tf.add(tf.mul(xPrev, signal), tf.mul(noise, noiseScale)) as X;
  });
}

/** Coefficients of the forward-process posterior q(x_{t-1} | x_t, x_0), one entry per step. */
export interface PosteriorCoefficients {
  /** √ᾱ_{t-1} β_t / (1 − ᾱ_t), the weight of x_0 in the posterior mean. */
  meanCoefX0: Float64Array;
  /** √α_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t), the weight of x_t in the posterior mean. */
  meanCoefXt: Float64Array;
  /** β̃_t = (1 − ᾱ_{t-1}) / (1 − ᾱ_t) · β_t, the posterior variance (0 at the first step). */
  variance: Float64Array;
  /** ln β̃_t, with β̃ of the second step standing in at the first (where β̃ = 0). */
  logVarianceClipped: Float64Array;
}

/** The posterior's coefficients at 0-based step i, with ᾱ before the first step = 1. */
function posteriorAt(schedule: NoiseSchedule, i: number) {
  const alphaBarPrev = i === 0 ? 1 : schedule.alphaBars[i - 1];
  const oneMinusAlphaBar = 1 - schedule.alphaBars[i];
  const beta = schedule.betas[i];
  return {
    meanCoefX0: Math.sqrt(alphaBarPrev) * beta / oneMinusAlphaBar,
    meanCoefXt: Math.sqrt(schedule.alphas[i]) * (1 - alphaBarPrev) / oneMinusAlphaBar,
    variance: (1 - alphaBarPrev) / oneMinusAlphaBar * beta,
  };
}

/**
 * The coefficients of the forward-process posterior (Ho et al. 2020, eqs. 6–7):
 *
 *   q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I),
 *   μ̃_t = [√ᾱ_{t-1} β_t / (1 − ᾱ_t)] x_0 + [√α_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t)] x_t,
 *   β̃_t = (1 − ᾱ_{t-1}) / (1 − ᾱ_t) · β_t,
 *
 * with ᾱ before the first step equal to 1, so at the first step (index 0) the posterior is
 * x_0 itself: mean coefficients 1 and 0, variance 0. `logVarianceClipped` replaces the
 * first step's ln 0 with ln β̃ of the second step, as Ho et al.'s code does.
 */
export function posteriorCoefficients(schedule: NoiseSchedule): PosteriorCoefficients {
  const { T } = schedule;
  const meanCoefX0 = new Float64Array(T);
  const meanCoefXt = new Float64Array(T);
  const variance = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    const at = posteriorAt(schedule, i);
    meanCoefX0[i] = at.meanCoefX0;
    meanCoefXt[i] = at.meanCoefXt;
    variance[i] = at.variance;
  }
  const logVarianceClipped = variance.map((v, i) => Math.log(i === 0 ? variance[1] : v));
  return { meanCoefX0, meanCoefXt, variance, logVarianceClipped };
}

/**
 * The mean of the forward-process posterior q(x_{t-1} | x_t, x_0):
 *
 *   μ̃_t(x_t, x_0) = [√ᾱ_{t-1} β_t / (1 − ᾱ_t)] x_0 + [√α_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t)] x_t
 *
 * @param x0 x_0 (in a sampler, the network's estimate of it)
 * @param xt x_t, the same shape as `x0`
 * @param t step(s), 0-based (see {@link Timesteps})
 */
export function posteriorMean<X extends tf.Tensor>(
  x0: X,
  xt: tf.Tensor,
  t: Timesteps,
  schedule: NoiseSchedule,
): X {
  checkSameShape(x0, xt, "x0 and xt");
  return tf.tidy(() => {
    const coefX0 = coefficient(x0, t, schedule, (i) => posteriorAt(schedule, i).meanCoefX0);
    const coefXt = coefficient(x0, t, schedule, (i) => posteriorAt(schedule, i).meanCoefXt);
    return tf.add(tf.mul(x0, coefX0), tf.mul(xt, coefXt)) as X;
  });
}

/**
 * The variance of the forward-process posterior at 0-based step t:
 *
 *   β̃_t = (1 − ᾱ_{t-1}) / (1 − ᾱ_t) · β_t   (0 at t = 0, and always ≤ β_t)
 */
export function posteriorVariance(t: number, schedule: NoiseSchedule): number {
  checkStep(t, schedule);
  return posteriorAt(schedule, t).variance;
}
