/**
 * The DeepLearning.AI course's "incorrect" sampler: DDPM's mean without the added noise,
 *
 *   x_{t′} = 1/√α · (x_t − β/√(1 − ᾱ_t) · ε̂)      (σ = 0),
 *
 * shown in the course to explain why the noise is needed: every step moves x_t towards the
 * average of what it could be, and the samples collapse to blurry, washed-out blobs near the
 * data mean instead of landing on the data distribution.
 *
 * @module
 */

import type { NoiseSchedule } from "../schedules.ts";
import { type DDPMOptions, DDPMScheduler } from "./ddpm.ts";

/** DDPM without the noise term (the course's `sample_ddpm_incorrect`). */
export class NoiselessDDPMScheduler extends DDPMScheduler {
  /** Short name for figures. */
  override readonly name = "DDPM without noise (incorrect)";

  constructor(schedule: NoiseSchedule, options: Omit<DDPMOptions, "variance" | "seed"> = {}) {
    super(schedule, options);
  }

  /** σ = 0 on every step. */
  protected override sigma(): number {
    return 0;
  }
}
