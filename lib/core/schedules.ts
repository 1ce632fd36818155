/**
 * Noise schedules: how much noise the forward process adds at each of its T steps.
 *
 * A schedule is the sequence of variances β_1 … β_T of the forward process
 * q(x_t | x_{t-1}) = N(√(1 − β_t) x_{t-1}, β_t I) (Ho et al. 2020), and the quantities every
 * other module derives from it:
 *
 *   α_t = 1 − β_t,   ᾱ_t = ∏_{s=1..t} α_s,   SNR(t) = ᾱ_t / (1 − ᾱ_t),   logSNR(t) = ln SNR(t).
 *
 * ## INDEX CONVENTION: array index `t` is the paper's step `t + 1`
 *
 * Every array here has length T and is indexed from 0, the convention of Hugging Face
 * diffusers: `betas[0]` is the paper's β_1, `alphaBars[0]` is ᾱ_1 and `alphaBars[T - 1]` is
 * ᾱ_T, the last, noisiest step. The paper's x_0 (clean data) has no entry; where a formula
 * needs ᾱ_0 it is 1 by definition. A network conditioned on "timestep t" sees this 0-based t.
 *
 * This module is plain TypeScript with no tfjs import, so the same code ships to the
 * browser as data for interactive figures.
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** The schedules this module knows, by name. */
export type ScheduleName = "linear" | "scaled-linear" | "quadratic" | "cosine" | "sigmoid";

/** Every known schedule name, in the order the book introduces them. */
export const SCHEDULE_NAMES: readonly ScheduleName[] = [
  "linear",
  "scaled-linear",
  "quadratic",
  "cosine",
  "sigmoid",
];

/**
 * A noise schedule and its derived quantities, each an array of length T.
 *
 * Index t (0-based) holds the paper's step t + 1: `betas[t]` = β_{t+1}, `alphaBars[t]` =
 * ᾱ_{t+1} and so on (see the module doc).
 */
export interface NoiseSchedule {
  /** Which schedule this is. */
  name: ScheduleName;
  /** Number of diffusion steps. */
  T: number;
  /** β_t, the variance of the noise added at step t. */
  betas: Float64Array;
  /** α_t = 1 − β_t. */
  alphas: Float64Array;
  /** ᾱ_t = ∏_{s ≤ t} α_s, the signal variance left after t steps. */
  alphaBars: Float64Array;
  /** √ᾱ_t, the scale of x_0 in q(x_t | x_0). */
  sqrtAlphaBars: Float64Array;
  /** √(1 − ᾱ_t), the scale of the noise in q(x_t | x_0). */
  sqrtOneMinusAlphaBars: Float64Array;
  /** Signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t). */
  snr: Float64Array;
  /** logSNR(t) = ln(ᾱ_t / (1 − ᾱ_t)). */
  logSnr: Float64Array;
}

/** Offset s of the cosine schedule, which keeps β_1 from being vanishingly small. */
const COSINE_S = 0.008;

/** Largest β the cosine schedule allows, so that steps near t = T stay invertible. */
const COSINE_MAX_BETA = 0.999;

/** T numbers spaced evenly from `start` to `stop`, both included. */
function linspace(start: number, stop: number, T: number): Float64Array {
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = start + (stop - start) * (i / (T - 1));
  return out;
}

/** β_t for the schedule `name`, with T steps. */
function betasOf(name: ScheduleName, T: number): Float64Array {
  switch (name) {
    case "linear":
      return linspace(1e-4, 0.02, T);
    case "scaled-linear":
      return linspace(Math.sqrt(0.00085), Math.sqrt(0.012), T).map((r) => r * r);
    case "quadratic":
      return linspace(Math.sqrt(1e-4), Math.sqrt(0.02), T).map((r) => r * r);
    case "cosine": {
      const f = (t: number) => Math.cos(((t / T + COSINE_S) / (1 + COSINE_S)) * Math.PI / 2) ** 2;
      const betas = new Float64Array(T);
      for (let t = 1; t <= T; t++) {
        betas[t - 1] = Math.min(1 - f(t) / f(t - 1), COSINE_MAX_BETA);
      }
      return betas;
    }
    case "sigmoid":
      return linspace(-6, 6, T).map((x) => (0.02 - 1e-4) / (1 + Math.exp(-x)) + 1e-4);
  }
}

/**
 * Builds the named noise schedule with T steps.
 *
 * - `linear` (DDPM, Ho et al. 2020): β_t = linspace(1e-4, 0.02, T). The end points do not
 *   scale with T: with few steps the process stops short of pure noise (ᾱ_T ≈ 0.36 at T = 100).
 * - `scaled-linear` (Stable Diffusion): √β_t = linspace(√0.00085, √0.012, T).
 * - `quadratic`: √β_t = linspace(√1e-4, √0.02, T).
 * - `cosine` (Nichol & Dhariwal 2021): ᾱ(t) = f(t)/f(0) with
 *   f(t) = cos²(((t/T + s)/(1 + s)) · π/2), s = 0.008, and
 *   β_t = min(1 − ᾱ(t)/ᾱ(t−1), 0.999); the clipping only bites at the last step.
 * - `sigmoid`: β_t = σ(linspace(−6, 6, T)) · (0.02 − 1e-4) + 1e-4, with σ(x) = 1/(1 + e^{−x}).
 *
 * Then α_t = 1 − β_t, ᾱ_t = ∏_{s ≤ t} α_s, SNR = ᾱ/(1 − ᾱ), logSNR = ln SNR.
 * Index t of every array is the paper's step t + 1 (see the module doc).
 *
 * @param name one of {@link SCHEDULE_NAMES}
 * @param T number of diffusion steps, an integer ≥ 2
 * @throws Error naming the bad value when `name` is unknown or T is not an integer ≥ 2
 */
export function noiseSchedule(name: string, T = 1000): NoiseSchedule {
  if (!(SCHEDULE_NAMES as readonly string[]).includes(name)) {
    throw new UserError(
      `Unknown noise schedule "${name}": use one of ${
        SCHEDULE_NAMES.map((n) => `"${n}"`).join(", ")
      }.`,
    );
  }
  if (typeof T !== "number" || !Number.isInteger(T) || T < 2) {
    throw new UserError(
      `A noise schedule needs an integer number of steps T >= 2, got T = ${T}: pass e.g. 1000.`,
    );
  }
  const betas = betasOf(name as ScheduleName, T);
  const alphas = betas.map((beta) => 1 - beta);
  const alphaBars = new Float64Array(T);
  let product = 1;
  for (let t = 0; t < T; t++) alphaBars[t] = product *= alphas[t];
  const snr = alphaBars.map((alphaBar) => alphaBar / (1 - alphaBar));
  return {
    name: name as ScheduleName,
    T,
    betas,
    alphas,
    alphaBars,
    sqrtAlphaBars: alphaBars.map(Math.sqrt),
    sqrtOneMinusAlphaBars: alphaBars.map((alphaBar) => Math.sqrt(1 - alphaBar)),
    snr,
    logSnr: alphaBars.map((alphaBar) => Math.log(alphaBar) - Math.log1p(-alphaBar)),
  };
}
