/**
 * The DDPM sampler (Ho et al., 2020, Algorithm 2), on any subset of the training timesteps:
 *
 *   x_{t′} = 1/√α · (x_t − β/√(1 − ᾱ_t) · ε̂) + σ z,   z ~ N(0, I),
 *
 * where t′ is the next timestep, β = 1 − ᾱ_t/ᾱ_{t′}, α = 1 − β (β = β_t when all T steps
 * are used), and the variance is either
 *
 *   "beta":      σ² = β                               (the upper bound, DDPM's σ² = β_t)
 *   "betaTilde": σ² = β̃ = (1 − ᾱ_{t′})/(1 − ᾱ_t) · β  (the posterior's, the lower bound).
 *
 * No noise is added on the last step (t′ = −1, ᾱ = 1), as in the paper.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Random } from "../random.ts";
import type { NoiseSchedule } from "../schedules.ts";
import { BaseScheduler, type SchedulerOptions, type SchedulerStepOutput } from "./scheduler.ts";

/** Variance of the DDPM reverse step: σ² = β ("beta") or σ² = β̃ ("betaTilde"). */
export type DDPMVariance = "beta" | "betaTilde";

/** Options of {@link DDPMScheduler}. */
export interface DDPMOptions extends SchedulerOptions {
  /** σ² = β ("beta", default, as the course and DDPM's samples) or β̃ ("betaTilde"). */
  variance?: DDPMVariance;
  /** Seed of the step noise z when `step` gets no generator (default 0). */
  seed?: number;
}

/** Ancestral sampling of DDPM; see the module comment for the equation. */
export class DDPMScheduler extends BaseScheduler {
  /** Short name for figures. */
  readonly name: string;
  /** Which σ². */
  readonly variance: DDPMVariance;
  protected readonly rng: Random;

  /** All T timesteps until `setTimesteps` says otherwise. */
  constructor(schedule: NoiseSchedule, options: DDPMOptions = {}) {
    super(schedule, options, schedule.T);
    this.variance = options.variance ?? "beta";
    this.rng = new Random(options.seed ?? 0);
    this.name = this.variance === "beta" ? "DDPM (σ² = β)" : "DDPM (σ² = β̃)";
  }

  /** σ for the step t → t′ (zero on the last step). */
  protected sigma(alphaBarT: number, alphaBarPrev: number, isLast: boolean): number {
    if (isLast) return 0;
    const beta = 1 - alphaBarT / alphaBarPrev;
    const variance = this.variance === "beta"
      ? beta
      : ((1 - alphaBarPrev) / (1 - alphaBarT)) * beta;
    return Math.sqrt(variance);
  }

  /** x_t → x_{t′}: the DDPM mean plus σ z (z drawn from `rng`). */
  step(modelOutput: tf.Tensor4D, t: number, xt: tf.Tensor4D, rng?: Random): SchedulerStepOutput {
    const { prev, alphaBarT, alphaBarPrev } = this.transition(t);
    const beta = 1 - alphaBarT / alphaBarPrev;
    const sigma = this.sigma(alphaBarT, alphaBarPrev, prev < 0);
    const z = sigma > 0 ? (rng ?? this.rng).normals(xt.size) : null;
    return tf.tidy(() => {
      const { x0, eps } = this.predict(modelOutput, xt, alphaBarT);
      const mean = tf.div(
        tf.sub(xt, tf.mul(eps, beta / Math.sqrt(1 - alphaBarT))),
        Math.sqrt(1 - beta),
      );
      const prevSample = z ? tf.add(mean, tf.mul(tf.tensor(z, xt.shape), sigma)) : mean;
      return { prevSample: prevSample as tf.Tensor4D, predOriginalSample: x0 };
    });
  }
}
