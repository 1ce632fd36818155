/**
 * The interface every sampler follows (diffusers' scheduler design), and what they share:
 * timestep spacings and the conversion of a network's output into x̂₀ and ε̂.
 *
 * A reverse step goes from x_t at timestep t to x_{t′} at the next (smaller) timestep t′ of
 * `timesteps`; t = 0…T−1 indexes the noise schedule (index t is the paper's step t + 1), and
 * after the last timestep the sample is clean (ᾱ = 1).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { addNoise } from "../forward.ts";
import { type PredictionType, toOriginalAndNoise } from "../parameterization.ts";
import type { NoiseSchedule } from "../schedules.ts";
import type { Random } from "../random.ts";

/** How n sampling timesteps are picked out of T (the definitions of diffusers). */
export type TimestepSpacing = "linspace" | "leading" | "trailing";

/** Result of one reverse step. */
export interface SchedulerStepOutput {
  /** x_{t′}: the sample at the next timestep (x₀ after the last one). */
  prevSample: tf.Tensor4D;
  /** x̂₀: the clean image the step believes in. */
  predOriginalSample: tf.Tensor4D;
}

/** A sampler: swap DDPM for DDIM or DPM-Solver++ in one line. */
export interface Scheduler {
  /** Short name, e.g. "DDPM (β̃)". */
  readonly name: string;
  /** The noise schedule the network was trained with. */
  readonly schedule: NoiseSchedule;
  /** What the network outputs. */
  readonly predictionType: PredictionType;
  /** Timesteps of the reverse process, decreasing; set by {@link Scheduler.setTimesteps}. */
  readonly timesteps: readonly number[];
  /** Choose `n` sampling timesteps (and reset any multistep history). */
  setTimesteps(n: number): void;
  /**
   * One reverse step from x_t at `t` (an element of `timesteps`).
   * Stochastic samplers draw their noise z from `rng` (an internal seeded generator when absent).
   */
  step(modelOutput: tf.Tensor4D, t: number, xt: tf.Tensor4D, rng?: Random): SchedulerStepOutput;
  /** The forward process q(x_t | x₀): x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε. */
  addNoise(x0: tf.Tensor4D, noise: tf.Tensor4D, t: number | number[] | tf.Tensor1D): tf.Tensor4D;
}

/** Common options of the schedulers. */
export interface SchedulerOptions {
  /** What the network outputs (default "epsilon"). */
  predictionType?: PredictionType;
  /** How fewer than T timesteps are spaced (default "trailing": starts at T − 1). */
  timestepSpacing?: TimestepSpacing;
  /**
   * Clip x̂₀ to [−clipRange, clipRange] before using it (default true, as diffusers' DDPM and
   * DDIM: images live in [−1, 1]). Pass false for data outside the clip range (toy
   * distributions, latents).
   */
  clipSample?: boolean;
  /** Range of the clip (default 1: images in [−1, 1]). */
  clipRange?: number;
}

/** {@link SchedulerOptions} with their defaults applied. */
export interface ResolvedSchedulerOptions {
  /** What the network outputs. */
  predictionType: PredictionType;
  /** How the timesteps are spaced. */
  spacing: TimestepSpacing;
  /** x̂₀ is clipped to [−clipRange, clipRange]; undefined: no clipping. */
  clipRange: number | undefined;
}

/**
 * The common options with their defaults: "epsilon" prediction, "trailing" spacing, x̂₀
 * clipped to [−1, 1] (`clipRange` 1 unless given; `clipSample: false` turns it off).
 */
export function resolveSchedulerOptions(options: SchedulerOptions): ResolvedSchedulerOptions {
  return {
    predictionType: options.predictionType ?? "epsilon",
    spacing: options.timestepSpacing ?? "trailing",
    clipRange: options.clipSample ?? true ? options.clipRange ?? 1 : undefined,
  };
}

/** Round half to even, as numpy's `round`. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * n of the T training timesteps, decreasing, with diffusers' definitions
 * (table 2 of Lin et al., 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"):
 *
 *   linspace: round(linspace(0, T − 1, n))                (T = 1000, n = 10: 999, 888, …, 111, 0)
 *   leading:  k · ⌊T / n⌋ for k = 0…n − 1                 (900, 800, …, 100, 0)
 *   trailing: round(T − k · T/n) − 1 for k = 0…n − 1      (999, 899, …, 199, 99)
 */
export function spacedTimesteps(
  T: number,
  n: number,
  spacing: TimestepSpacing = "trailing",
): number[] {
  if (!Number.isInteger(n) || n < 1 || n > T) {
    throw new Error(`Number of sampling steps must be an integer from 1 to T = ${T}; got ${n}.`);
  }
  const steps: number[] = [];
  switch (spacing) {
    case "linspace":
      for (let k = 0; k < n; k++) steps.push(roundHalfEven(n === 1 ? 0 : (k * (T - 1)) / (n - 1)));
      break;
    case "leading": {
      const ratio = Math.floor(T / n);
      for (let k = 0; k < n; k++) steps.push(k * ratio);
      break;
    }
    case "trailing": {
      const ratio = T / n;
      for (let k = 0; k < n; k++) steps.push(roundHalfEven(T - k * ratio) - 1);
      return steps; // already decreasing
    }
    default:
      throw new Error(
        `Unknown timestep spacing "${spacing}"; use "linspace", "leading" or "trailing".`,
      );
  }
  return steps.reverse();
}

/** ᾱ at timestep t, with ᾱ = 1 before the first step (t < 0: the clean image). */
export function alphaBarAt(schedule: NoiseSchedule, t: number): number {
  if (t < 0) return 1;
  if (!Number.isInteger(t) || t >= schedule.T) {
    throw new Error(`Timestep ${t} is outside the schedule's 0…${schedule.T - 1}.`);
  }
  return schedule.alphaBars[t];
}

/** The index of `t` in `timesteps`, with a clear error when it is not one of them. */
export function indexOfTimestep(timesteps: readonly number[], t: number, name: string): number {
  const i = timesteps.indexOf(t);
  if (i < 0) {
    throw new Error(
      `${name}: timestep ${t} is not one of this scheduler's timesteps; call setTimesteps(n) ` +
        `and step through scheduler.timesteps in order.`,
    );
  }
  return i;
}

/**
 * What every scheduler shares: the schedule and the common options, the timesteps (spaced as
 * `timestepSpacing` says), the step t → t′ they are at, x̂₀ and ε̂ from the network's output, and
 * the forward process for `addNoise`. A scheduler adds its `step`.
 */
export abstract class BaseScheduler implements Scheduler {
  /** Short name for figures. */
  abstract readonly name: string;
  /** The noise schedule the network was trained with. */
  readonly schedule: NoiseSchedule;
  /** What the network outputs. */
  readonly predictionType: PredictionType;
  /** Timesteps of the reverse process, decreasing. */
  timesteps: number[];
  /** How `setTimesteps` spaces the timesteps. */
  protected readonly spacing: TimestepSpacing;
  /** x̂₀ is clipped to [−clipRange, clipRange]; undefined: no clipping. */
  protected readonly clipRange: number | undefined;

  /** `steps`: how many timesteps before any `setTimesteps` (at most T). */
  protected constructor(schedule: NoiseSchedule, options: SchedulerOptions, steps: number) {
    const common = resolveSchedulerOptions(options);
    this.schedule = schedule;
    this.predictionType = common.predictionType;
    this.spacing = common.spacing;
    this.clipRange = common.clipRange;
    this.timesteps = spacedTimesteps(schedule.T, Math.min(steps, schedule.T), this.spacing);
  }

  /** Use `n` of the T timesteps. */
  setTimesteps(n: number): void {
    this.timesteps = spacedTimesteps(this.schedule.T, n, this.spacing);
  }

  abstract step(
    modelOutput: tf.Tensor4D,
    t: number,
    xt: tf.Tensor4D,
    rng?: Random,
  ): SchedulerStepOutput;

  /** q(x_t | x₀): x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε. */
  addNoise(x0: tf.Tensor4D, noise: tf.Tensor4D, t: number | number[] | tf.Tensor1D): tf.Tensor4D {
    return addNoise(x0, noise, t, this.schedule) as tf.Tensor4D;
  }

  /**
   * The step from timestep `t`: its index in `timesteps`, the next timestep t′ (−1 after the
   * last), ᾱ_t and ᾱ_{t′} (1 after the last). Throws for a t that is not one of `timesteps`.
   */
  protected transition(t: number): {
    index: number;
    prev: number;
    alphaBarT: number;
    alphaBarPrev: number;
  } {
    const index = indexOfTimestep(this.timesteps, t, this.name);
    const prev = index + 1 < this.timesteps.length ? this.timesteps[index + 1] : -1;
    return {
      index,
      prev,
      alphaBarT: alphaBarAt(this.schedule, t),
      alphaBarPrev: alphaBarAt(this.schedule, prev),
    };
  }

  /** x̂₀ (clipped as configured) and ε̂ from the network's output at x_t, timestep with ᾱ_t. */
  protected predict(
    modelOutput: tf.Tensor4D,
    xt: tf.Tensor4D,
    alphaBarT: number,
  ): { x0: tf.Tensor4D; eps: tf.Tensor4D } {
    return toOriginalAndNoise(modelOutput, xt, alphaBarT, this.predictionType, this.clipRange);
  }
}
