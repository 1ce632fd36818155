/**
 * A toy data distribution whose diffused score is known exactly: a mixture of isotropic
 * Gaussians in the plane. Noising it with q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I) keeps it a
 * mixture,
 *
 *   q_t(x) = Σ_k w_k N(x; √ᾱ_t μ_k, v_k I),   v_k = ᾱ_t s_k² + 1 − ᾱ_t,
 *
 * so its score is a weighted pull towards the shrunken means,
 *
 *   ∇ log q_t(x) = Σ_k r_k(x) (√ᾱ_t μ_k − x) / v_k,   r_k = w_k N_k(x) / Σ_j w_j N_j(x),
 *
 * and the ideal noise predictor of a diffusion model is ε*(x_t, t) = −√(1 − ᾱ_t) ∇ log q_t(x_t).
 * With ε* in place of a network, every sampler of `lib/samplers` can be run and checked against
 * a distribution it should reproduce.
 *
 * Points travel through the samplers as tensors [N, 1, 1, 2]: one "pixel" with two channels.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { Random } from "./random.ts";
import type { NoiseSchedule } from "./schedules.ts";

/** One isotropic Gaussian component: weight w_k, mean μ_k and standard deviation s_k. */
export interface MixtureComponent {
  /** Mixing weight w_k (the weights are normalised to sum to 1). */
  weight: number;
  /** Mean μ_k = [x, y]. */
  mean: [number, number];
  /** Standard deviation s_k of each coordinate. */
  std: number;
}

/** A mixture of isotropic Gaussians in the plane. */
export type GaussianMixture2D = readonly MixtureComponent[];

function checkMixture(mixture: GaussianMixture2D): number {
  if (mixture.length === 0) throw new Error("A Gaussian mixture needs at least one component.");
  let total = 0;
  for (const [k, c] of mixture.entries()) {
    if (!(c.weight > 0) || !(c.std > 0) || c.mean.length !== 2) {
      throw new Error(
        `Mixture component ${k} is invalid (weight ${c.weight}, std ${c.std}, mean [${c.mean}]): ` +
          `weights and standard deviations must be positive and means two numbers.`,
      );
    }
    total += c.weight;
  }
  return total;
}

function checkAlphaBar(alphaBar: number): void {
  if (!(alphaBar >= 0 && alphaBar <= 1)) {
    throw new Error(`ᾱ must lie in [0, 1]; got ${alphaBar}.`);
  }
}

/**
 * The log-density and score of the diffused mixture q_t at point `x`, given ᾱ = ᾱ_t
 * (ᾱ = 1 is the data itself, ᾱ = 0 pure noise N(0, I)):
 *
 *   log q_t(x) = log Σ_k w_k N(x; √ᾱ μ_k, v_k I),   ∇ log q_t(x) = Σ_k r_k (√ᾱ μ_k − x) / v_k.
 */
export function diffusedMixture(
  mixture: GaussianMixture2D,
  x: readonly [number, number],
  alphaBar: number,
): { logDensity: number; score: [number, number] } {
  const total = checkMixture(mixture);
  checkAlphaBar(alphaBar);
  const a = Math.sqrt(alphaBar);
  const terms = mixture.map((c) => {
    const v = alphaBar * c.std * c.std + 1 - alphaBar;
    const dx = a * c.mean[0] - x[0];
    const dy = a * c.mean[1] - x[1];
    const logN = -Math.log(2 * Math.PI * v) - (dx * dx + dy * dy) / (2 * v);
    return { logWN: Math.log(c.weight / total) + logN, dx, dy, v };
  });
  const top = Math.max(...terms.map((term) => term.logWN));
  const sum = terms.reduce((s, term) => s + Math.exp(term.logWN - top), 0);
  const score: [number, number] = [0, 0];
  for (const term of terms) {
    const r = Math.exp(term.logWN - top) / sum;
    score[0] += (r * term.dx) / term.v;
    score[1] += (r * term.dy) / term.v;
  }
  return { logDensity: top + Math.log(sum), score };
}

/** `n` points drawn from the mixture (ᾱ = 1), as [x, y] pairs. */
export function sampleMixture(
  mixture: GaussianMixture2D,
  n: number,
  rng: Random,
): [number, number][] {
  const total = checkMixture(mixture);
  const points: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    let u = rng.uniform() * total;
    let k = 0;
    while (k < mixture.length - 1 && u >= mixture[k].weight) u -= mixture[k++].weight;
    const c = mixture[k];
    points.push([c.mean[0] + c.std * rng.normal(), c.mean[1] + c.std * rng.normal()]);
  }
  return points;
}

/**
 * The ideal noise predictor for the mixture under `schedule`, with a network's signature
 * (a `Denoiser` of `lib/samplers`):
 *
 *   ε*(x_t, t) = −√(1 − ᾱ_t) ∇ log q_t(x_t) = √(1 − ᾱ_t) Σ_k r_k (x_t − √ᾱ_t μ_k) / v_k.
 *
 * `x` is [N, 1, 1, 2] (one point per batch entry), `t` holds N integer timesteps 0…T − 1.
 */
export function mixtureNoisePredictor(
  mixture: GaussianMixture2D,
  schedule: NoiseSchedule,
): (x: tf.Tensor4D, t: tf.Tensor1D) => tf.Tensor4D {
  const total = checkMixture(mixture);
  const logWeights = mixture.map((c) => Math.log(c.weight / total));
  const means = mixture.map((c) => c.mean);
  const variances = mixture.map((c) => c.std * c.std);
  return (x, t) => {
    const [n, h, w, channels] = x.shape;
    if (h !== 1 || w !== 1 || channels !== 2) {
      throw new Error(
        `The mixture's noise predictor takes points as [N, 1, 1, 2]; got [${x.shape}].`,
      );
    }
    return tf.tidy(() => {
      const alphaBar = tf.gather(
        tf.tensor1d(Float32Array.from(schedule.alphaBars)),
        tf.cast(t, "int32"),
      )
        .reshape([n, 1]);
      const points = x.reshape([n, 1, 2]);
      // v_k = ᾱ s_k² + 1 − ᾱ, [N, K]; shrunken means √ᾱ μ_k, [N, K, 2].
      const v = tf.add(tf.mul(alphaBar, tf.sub(tf.tensor2d([variances]), 1)), 1);
      const shrunk = tf.mul(tf.sqrt(alphaBar).reshape([n, 1, 1]), tf.tensor3d([means]));
      const offset = tf.sub(points, shrunk); // x − √ᾱ μ_k
      const squared = tf.sum(tf.square(offset), 2); // [N, K]
      const logWN = tf.sub(
        tf.add(tf.tensor2d([logWeights]), tf.neg(tf.log(tf.mul(v, 2 * Math.PI)))),
        tf.div(squared, tf.mul(v, 2)),
      );
      const r = tf.softmax(logWN, 1); // responsibilities r_k
      const pull = tf.sum(tf.mul(tf.div(r, v).reshape([n, -1, 1]), offset), 1); // −score, [N, 2]
      return tf.mul(pull, tf.sqrt(tf.sub(1, alphaBar))).reshape([n, 1, 1, 2]) as tf.Tensor4D;
    });
  };
}
