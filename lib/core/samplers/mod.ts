/**
 * Samplers in one interface (diffusers' scheduler design): DDPM, the course's noiseless DDPM,
 * DDIM and DPM-Solver++(2M), and the `sample` loop.
 *
 * ```ts
 * import { DDIMScheduler, sample } from "../../lib/samplers/mod.ts";
 * const { images } = await sample(model, new DDIMScheduler(schedule, { eta: 0 }), { shape, steps: 50 });
 * ```
 *
 * @module
 */

export * from "./scheduler.ts";
export { type PredictionType, toOriginalAndNoise } from "../parameterization.ts";
export * from "./ddpm.ts";
export * from "./noiseless.ts";
export * from "./ddim.ts";
export * from "./dpm_solver.ts";
export * from "./sample.ts";
