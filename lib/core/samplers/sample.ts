/**
 * The sampling loop: start from pure noise x_T ~ N(0, I) and apply a scheduler's reverse
 * step at each of its timesteps,
 *
 *   for t in scheduler.timesteps:  ε̂ = ε_θ(x_t, t[, c]);  x_{t′} = scheduler.step(ε̂, t, x_t).
 *
 * A conditional network samples under its conditioning c (class labels, a text encoder's token
 * states, or a context vector); with classifier-free guidance (lib/core/guidance.ts) it runs on
 * c and on the null condition ∅ (or a negative prompt) in one batched call, and
 * ε̂ = ε̂_∅ + s (ε̂_c − ε̂_∅), diffusers' scale s.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Random } from "../random.ts";
import {
  type ImageBatch,
  imageGrid,
  type ImageGridOptions,
  type RgbaImage,
  toRgbaImages,
} from "../images.ts";
import type { Conditioning, DiffusionModel } from "../models/mod.ts";
import type { Scheduler } from "./scheduler.ts";
import { checkGuidance, type GuidanceOptions, guidedDenoiser } from "../guidance.ts";
import { checkClassLabels } from "../nn/embeddings.ts";

/** A network, or any function with its signature (an oracle in tests). */
export type Denoiser =
  | DiffusionModel
  | ((xt: tf.Tensor4D, t: tf.Tensor1D, conditioning?: Conditioning) => tf.Tensor4D);

/** Classifier-free guidance of a sampling run: the scale (and rescale), and what ∅ is. */
export interface SampleGuidance extends GuidanceOptions {
  /** The null condition (labels −1, the empty prompt's states) or a negative prompt's. */
  unconditional: Conditioning;
}

/** Options of {@link sample}. */
export interface SampleOptions {
  /** Shape of the batch, [N, H, W, C]. */
  shape: [number, number, number, number];
  /** Seed of x_T and of the steps' noise (default 0): the same seed gives the same images. */
  seed?: number;
  /** Number of sampling steps: calls `scheduler.setTimesteps(steps)` (default: keep its timesteps). */
  steps?: number;
  /** Record x_t and x̂₀ along the way (default false). */
  returnTrajectory?: boolean;
  /** Record every k-th step (and always the last), default 1. */
  trajectoryEvery?: number;
  /** The conditioning c of a conditional network, for the whole batch (not disposed). */
  conditioning?: Conditioning;
  /** Classifier-free guidance towards `conditioning` (needs it; scale 1 = none). */
  guidance?: SampleGuidance;
  /** Start from this x_T instead of drawing it from `seed` (not disposed). */
  xT?: tf.Tensor4D;
  /** Called after each step with the new sample and the step's x̂₀ (tensors freed afterwards). */
  onStep?: (
    info: { index: number; t: number; xt: tf.Tensor4D; predX0: tf.Tensor4D },
  ) => void | Promise<void>;
}

/** The path of a batch through the reverse process. */
export interface Trajectory {
  /** The timestep of each record (decreasing). */
  timesteps: number[];
  /** x_t at each recorded timestep, before the step (the first is x_T). */
  xt: ImageBatch[];
  /** x̂₀ predicted at each recorded timestep. */
  predX0: ImageBatch[];
}

/** What {@link sample} returns. */
export interface SampleResult {
  /** The final samples x₀ [N, H, W, C] (the caller disposes them). */
  images: tf.Tensor4D;
  /** The trajectory, when asked for. */
  trajectory?: Trajectory;
}

async function toBatch(x: tf.Tensor4D): Promise<ImageBatch> {
  return {
    data: Float32Array.from(await x.data() as Float32Array),
    shape: x.shape.slice() as ImageBatch["shape"],
  };
}

/** ε̂(x_t, t), what the sampler steps with: the network under the conditioning, guided if asked. */
function predictor(
  model: Denoiser,
  options: SampleOptions,
): (xt: tf.Tensor4D, t: tf.Tensor1D) => tf.Tensor4D {
  const network = typeof model === "function"
    ? model
    : (x: tf.Tensor4D, tv: tf.Tensor1D, c?: Conditioning) => model.apply(x, tv, c);
  const { conditioning = {}, guidance } = options;
  return guidance
    ? guidedDenoiser(network, conditioning, guidance.unconditional, guidance)
    : (xt, t) => network(xt, t, conditioning);
}

/**
 * Generate a batch: x_T from `seed`, then `scheduler.step` at each timestep.
 *
 * ```ts
 * const { images } = await sample(model, new DDIMScheduler(schedule), { shape: [16, 16, 16, 3], steps: 50 });
 * ```
 */
export async function sample(
  model: Denoiser,
  scheduler: Scheduler,
  options: SampleOptions,
): Promise<SampleResult> {
  const { shape } = options;
  if (options.guidance) {
    if (!options.conditioning) {
      throw new Error("sample: guidance needs a conditioning (the condition to guide towards).");
    }
    checkGuidance(options.guidance);
  }
  if (typeof model !== "function" && model.contextDim > 0) {
    for (const c of [options.conditioning, options.guidance?.unconditional]) {
      if (c?.classLabels) checkClassLabels(await c.classLabels.data(), model.contextDim);
    }
  }
  if (options.steps !== undefined) scheduler.setTimesteps(options.steps);
  const rng = new Random(options.seed ?? 0);
  const size = shape.reduce((a, b) => a * b, 1);
  let xt: tf.Tensor4D = options.xT
    ? tf.clone(options.xT)
    : tf.tensor(rng.normals(size), shape) as tf.Tensor4D;
  const every = Math.max(1, options.trajectoryEvery ?? 1);
  const trajectory: Trajectory | undefined = options.returnTrajectory
    ? { timesteps: [], xt: [], predX0: [] }
    : undefined;
  const timesteps = scheduler.timesteps.slice();
  const predict = predictor(model, options);
  try {
    for (let index = 0; index < timesteps.length; index++) {
      const t = timesteps[index];
      const output = tf.tidy(() => predict(xt, tf.fill([xt.shape[0]], t) as tf.Tensor1D));
      const { prevSample, predOriginalSample } = scheduler.step(output, t, xt, rng);
      output.dispose();
      if (trajectory && (index % every === 0 || index === timesteps.length - 1)) {
        trajectory.timesteps.push(t);
        trajectory.xt.push(await toBatch(xt));
        trajectory.predX0.push(await toBatch(predOriginalSample));
      }
      xt.dispose();
      xt = prevSample;
      try {
        // A callback that throws (a cancelled run) still frees this step's x̂₀.
        if (options.onStep) await options.onStep({ index, t, xt, predX0: predOriginalSample });
      } finally {
        predOriginalSample.dispose();
      }
    }
  } catch (e) {
    xt.dispose();
    throw e;
  }
  return { images: xt, trajectory };
}

/**
 * {@link sample}, laid out as one grid image (8 columns at 2× unless `grid` says otherwise):
 * what the chapters show when they compare networks or samplers on the same noise.
 */
export async function sampleImageGrid(
  model: Denoiser,
  scheduler: Scheduler,
  options: SampleOptions,
  grid: ImageGridOptions = { columns: 8, scale: 2 },
): Promise<RgbaImage> {
  const { images } = await sample(model, scheduler, options);
  try {
    return imageGrid(await toRgbaImages(images), grid);
  } finally {
    images.dispose();
  }
}

/** Options of {@link sampleMany}. */
export interface SampleManyOptions {
  /** How many images. */
  count: number;
  /** Images per batch (default 64). */
  batchSize?: number;
  /** Image side and channels of the network. */
  imageSize: number;
  channels?: number;
  /** Sampling steps (`scheduler.setTimesteps`). */
  steps: number;
  /** Seed of the first batch; batch b uses seed + b (default 0). */
  seed?: number;
  /** Called after each batch with the images done so far. */
  onBatch?: (done: number) => void;
  /**
   * The conditioning of images `start` … `start + n − 1`, and its guidance, for a conditional
   * network (their tensors are disposed after the batch).
   */
  condition?: (start: number, n: number) => Pick<SampleOptions, "conditioning" | "guidance">;
}

/**
 * `count` samples in batches, as one NHWC Float32Array in [−1, 1]: what a metric over many
 * samples (chapter 7's FID) needs, without holding every batch as a tensor.
 */
export async function sampleMany(
  model: Denoiser,
  scheduler: Scheduler,
  options: SampleManyOptions,
): Promise<Float32Array> {
  const s = options.imageSize;
  const c = options.channels ?? 3;
  const batch = options.batchSize ?? 64;
  const out = new Float32Array(options.count * s * s * c);
  for (let start = 0, b = 0; start < options.count; start += batch, b++) {
    const n = Math.min(batch, options.count - start);
    const condition = options.condition?.(start, n) ?? {};
    try {
      const { images } = await sample(model, scheduler, {
        shape: [n, s, s, c],
        seed: (options.seed ?? 0) + b,
        steps: options.steps,
        ...condition,
      });
      out.set(await images.data() as Float32Array, start * s * s * c);
      images.dispose();
    } finally {
      tf.dispose([
        ...Object.values(condition.conditioning ?? {}),
        ...Object.values(condition.guidance?.unconditional ?? {}),
      ]);
    }
    options.onBatch?.(start + n);
  }
  return out;
}
