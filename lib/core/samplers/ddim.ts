/**
 * DDIM (Song, Meng & Ermon, 2021, eq. 12), a non-Markovian reverse process with the same
 * marginals as DDPM, on any subset of timesteps:
 *
 *   x_{t′} = √ᾱ_{t′} x̂₀ + √(1 − ᾱ_{t′} − σ²) ε̂ + σ z,
 *   σ = η √((1 − ᾱ_{t′})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t′}).
 *
 * η = 0 is deterministic (an ODE solver: the same x_T always gives the same x₀); η = 1 with
 * all T steps is DDPM with σ² = β̃. After the last timestep ᾱ_{t′} = 1 (diffusers'
 * `set_alpha_to_one`), so the final sample is x̂₀.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Random } from "../random.ts";
import type { NoiseSchedule } from "../schedules.ts";
import { BaseScheduler, type SchedulerOptions, type SchedulerStepOutput } from "./scheduler.ts";

/** Options of {@link DDIMScheduler}. */
export interface DDIMOptions extends SchedulerOptions {
  /** η: 0 deterministic (default), 1 DDPM-like. */
  eta?: number;
  /** Seed of the step noise when η > 0 and `step` gets no generator (default 0). */
  seed?: number;
}

/** DDIM; see the module comment for the equation. */
export class DDIMScheduler extends BaseScheduler {
  /** Short name for figures. */
  readonly name: string;
  /** η: the amount of fresh noise per step. */
  readonly eta: number;
  readonly #rng: Random;

  /** 50 timesteps until `setTimesteps` says otherwise. */
  constructor(schedule: NoiseSchedule, options: DDIMOptions = {}) {
    super(schedule, options, 50);
    this.eta = options.eta ?? 0;
    this.#rng = new Random(options.seed ?? 0);
    this.name = `DDIM (η = ${this.eta})`;
  }

  /** x_t → x_{t′} by eq. 12 of the DDIM paper. */
  step(modelOutput: tf.Tensor4D, t: number, xt: tf.Tensor4D, rng?: Random): SchedulerStepOutput {
    const { alphaBarT, alphaBarPrev } = this.transition(t);
    const sigma = this.eta *
      Math.sqrt((1 - alphaBarPrev) / (1 - alphaBarT)) * Math.sqrt(1 - alphaBarT / alphaBarPrev);
    const z = sigma > 0 ? (rng ?? this.#rng).normals(xt.size) : null;
    return tf.tidy(() => {
      const { x0, eps } = this.predict(modelOutput, xt, alphaBarT);
      const direction = tf.mul(eps, Math.sqrt(Math.max(0, 1 - alphaBarPrev - sigma * sigma)));
      let prevSample = tf.add(tf.mul(x0, Math.sqrt(alphaBarPrev)), direction);
      if (z) prevSample = tf.add(prevSample, tf.mul(tf.tensor(z, xt.shape), sigma));
      return { prevSample: prevSample as tf.Tensor4D, predOriginalSample: x0 };
    });
  }
}
