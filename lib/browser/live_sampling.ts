/**
 * What the page asks of a live model, answered with the library's own samplers:
 *
 *   x_T ~ N(0, I) from the seed;  for t in scheduler.timesteps:  x_{t′} = scheduler.step(ε̂(x_t, t), t, x_t)
 *
 * with ε̂ the network under the reader's condition, guided by classifier-free guidance
 * ε̂ = ε̂_∅ + s (ε̂_c − ε̂_∅) when s ≠ 1, ∅ being the null condition or the negative prompt, and
 * a LoRA's update applied at the reader's strength, W′ = W + s_LoRA (α/r) A B.
 * The same functions run under Deno in the tests, so the page is checked against them.
 *
 * No Deno or Node API: the browser bundle imports it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { UserError } from "../core/errors.ts";
import { imageGrid, type RgbaImage, toRgbaImages } from "../core/images.ts";
import type { Conditioning } from "../core/models/mod.ts";
import { Random } from "../core/random.ts";
import { guide } from "../core/guidance.ts";
import {
  DDIMScheduler,
  DDPMScheduler,
  type Denoiser,
  DPMSolverMultistepScheduler,
  sample,
  type Scheduler,
} from "../core/samplers/mod.ts";
import type { LiveDenoiser, LiveTextEncoder } from "./live_model.ts";

/** The samplers the page offers. */
export const LIVE_SAMPLERS = ["ddpm", "ddim", "dpm-solver++"] as const;
/** One of {@link LIVE_SAMPLERS}. */
export type LiveSamplerName = typeof LIVE_SAMPLERS[number];

/** The reader's condition. */
export type LiveCondition =
  | { kind: "none" }
  /** Class `label`; with `mixWith`, the context c = w·onehot(label) + (1 − w)·onehot(mixWith). */
  | { kind: "class"; label: number; mixWith?: number; weight?: number }
  /** A prompt, and the negative prompt guidance steers away from ("" is the null). */
  | { kind: "text"; prompt: string; negativePrompt?: string };

/** One sampling request from the page. */
export interface LiveSampleRequest {
  /** Images in the batch. */
  count: number;
  /** Seed of x_T and of the steps' noise. */
  seed: number;
  sampler: LiveSamplerName;
  /** Sampling steps. */
  steps: number;
  /** DDIM's η (0 deterministic, 1 DDPM-like); ignored by the others. */
  eta?: number;
  /** Guidance scale s (1: none); conditional models only. */
  guidance?: number;
  /** A LoRA's strength (0: the base, 1: as trained; default 1); models with a LoRA only. */
  loraStrength?: number;
  condition: LiveCondition;
}

/** The range of a LoRA's strength the page offers: past it the update is extrapolated far. */
export const LIVE_LORA_STRENGTH = { min: 0, max: 2 } as const;

/** Limits of a request, so that a typo cannot hang the page. */
export const LIVE_LIMITS = { count: 64, steps: 1000 } as const;

/** What a step reports to the page: x_t and x̂₀ as image grids. */
export interface LiveStep {
  index: number;
  total: number;
  /** The timestep just taken. */
  t: number;
  xt: RgbaImage;
  predX0: RgbaImage;
}

/** The scheduler of a request. */
export function liveScheduler(model: LiveDenoiser, request: LiveSampleRequest): Scheduler {
  const options = { predictionType: model.info.prediction ?? "epsilon", seed: request.seed };
  switch (request.sampler) {
    case "ddpm":
      return new DDPMScheduler(model.schedule, options);
    case "ddim":
      return new DDIMScheduler(model.schedule, { ...options, eta: request.eta ?? 0 });
    case "dpm-solver++":
      return new DPMSolverMultistepScheduler(model.schedule, options);
    default:
      throw new UserError(
        `unknown sampler "${request.sampler}": use one of ${LIVE_SAMPLERS.join(", ")}`,
      );
  }
}

/**
 * Check a request against the model, in words the page can show.
 *
 * @throws UserError that says what is allowed
 */
export function checkLiveRequest(model: LiveDenoiser, request: LiveSampleRequest): void {
  const whole = (v: number, lo: number, hi: number) => Number.isInteger(v) && v >= lo && v <= hi;
  if (!whole(request.count, 1, LIVE_LIMITS.count)) {
    throw new UserError(`draw between 1 and ${LIVE_LIMITS.count} images, not ${request.count}`);
  }
  const T = model.schedule.T;
  if (!whole(request.steps, 1, Math.min(T, LIVE_LIMITS.steps))) {
    throw new UserError(
      `take between 1 and ${Math.min(T, LIVE_LIMITS.steps)} steps, not ${request.steps}`,
    );
  }
  if (!Number.isSafeInteger(request.seed) || request.seed < 0) {
    throw new UserError(`the seed is a whole number ≥ 0, not ${request.seed}`);
  }
  const eta = request.eta ?? 0;
  if (!(eta >= 0 && eta <= 1)) throw new UserError(`η lies in [0, 1], not ${request.eta}`);
  const s = request.guidance ?? 1;
  if (!(s >= 0 && s <= 20)) throw new UserError(`the guidance scale lies in [0, 20], not ${s}`);
  if (request.loraStrength !== undefined) {
    const { min, max } = LIVE_LORA_STRENGTH;
    if (!model.network.lora) {
      throw new UserError(`${model.info.name} has no LoRA whose strength could be set`);
    }
    if (!(request.loraStrength >= min && request.loraStrength <= max)) {
      throw new UserError(
        `the LoRA's strength lies in [${min}, ${max}], not ${request.loraStrength}`,
      );
    }
  }
  const wanted = model.info.conditioning?.kind ?? "none";
  if (request.condition.kind !== wanted) {
    throw new UserError(
      `${model.info.name} is conditioned on ${
        wanted === "none" ? "nothing" : wanted
      }, not ${request.condition.kind}`,
    );
  }
  if (request.condition.kind === "class") {
    const n = model.info.conditioning?.kind === "class" ? model.info.conditioning.labels.length : 0;
    const { label, mixWith, weight = 1 } = request.condition;
    for (const k of mixWith === undefined ? [label] : [label, mixWith]) {
      if (!whole(k, 0, n - 1)) throw new UserError(`classes are 0…${n - 1}, not ${k}`);
    }
    if (!(weight >= 0 && weight <= 1)) throw new UserError(`the mix lies in [0, 1], not ${weight}`);
  }
}

/** The condition c and the null ∅ (or negative prompt) of a request, for `n` images. */
export function liveConditioning(
  model: LiveDenoiser,
  text: LiveTextEncoder | undefined,
  condition: LiveCondition,
  n: number,
): { conditioning?: Conditioning; unconditional?: Conditioning } {
  switch (condition.kind) {
    case "none":
      return {};
    case "class": {
      const unconditional = { classLabels: tf.fill([n], -1, "int32") as tf.Tensor1D };
      if (condition.mixWith === undefined) {
        return {
          conditioning: { classLabels: tf.fill([n], condition.label, "int32") as tf.Tensor1D },
          unconditional,
        };
      }
      const size = model.network.contextDim;
      const c = new Float32Array(size);
      const w = condition.weight ?? 1;
      c[condition.label] += w;
      c[condition.mixWith] += 1 - w;
      return {
        conditioning: {
          context: tf.tidy(() => tf.tile(tf.tensor2d(c, [1, size]), [n, 1]) as tf.Tensor2D),
        },
        unconditional,
      };
    }
    case "text": {
      if (!text) throw new UserError(`${model.info.name} needs its text encoder to read a prompt`);
      const states = (prompt: string) =>
        tf.tidy(() => {
          const ids = tf.tensor2d(
            text.tokenizer.encodeBatch(Array(n).fill(prompt)),
            [n, text.tokenizer.contextLength],
            "int32",
          );
          return text.encoder.encode(ids).states;
        });
      const conditional = states(condition.prompt);
      try {
        return {
          conditioning: { encoderHiddenStates: conditional },
          unconditional: { encoderHiddenStates: states(condition.negativePrompt ?? "") },
        };
      } catch (e) {
        conditional.dispose();
        throw e;
      }
    }
  }
}

/** Thrown out of a run the page cancelled (a newer request replaced it). */
export class Cancelled extends Error {
  constructor() {
    super("cancelled");
  }
}

/**
 * Draw the request's images, reporting each step; `cancelled()` is asked after every step, and
 * a run it stops throws {@link Cancelled}. Returns the final grid.
 */
export async function liveSample(
  model: LiveDenoiser,
  text: LiveTextEncoder | undefined,
  request: LiveSampleRequest,
  onStep: (step: LiveStep) => void | Promise<void>,
  cancelled: () => boolean = () => false,
): Promise<RgbaImage> {
  checkLiveRequest(model, request);
  model.network.lora?.setStrength(request.loraStrength ?? 1);
  const [h, w, c] = model.info.imageShape ?? [16, 16, 3];
  const scheduler = liveScheduler(model, request);
  const { conditioning, unconditional } = liveConditioning(
    model,
    text,
    request.condition,
    request.count,
  );
  const s = request.guidance ?? 1;
  const grid = async (x: tf.Tensor4D) =>
    imageGrid(await toRgbaImages(x), { columns: Math.ceil(Math.sqrt(request.count)), padding: 1 });
  const guided = conditioning && unconditional && s !== 1;
  // A mixed context c and the null label ∅ are different fields, which one batched pass cannot
  // take: guide a mixture with two passes, ε̂_∅ + s (ε̂_c − ε̂_∅).
  const twoPasses = guided && conditioning.context !== undefined;
  const denoiser: Denoiser = twoPasses
    ? (xt, t) =>
      tf.tidy(() =>
        guide(
          model.network.apply(xt, t, conditioning),
          model.network.apply(xt, t, unconditional),
          s,
        )
      )
    : model.network;
  try {
    const { images } = await sample(denoiser, scheduler, {
      shape: [request.count, h, w, c],
      seed: request.seed,
      steps: request.steps,
      conditioning: twoPasses ? undefined : conditioning,
      guidance: guided && !twoPasses ? { scale: s, unconditional } : undefined,
      onStep: async ({ index, t, xt, predX0 }) => {
        if (cancelled()) throw new Cancelled();
        await onStep({
          index,
          total: scheduler.timesteps.length,
          t,
          xt: await grid(xt),
          predX0: await grid(predX0),
        });
        if (cancelled()) throw new Cancelled();
      },
    });
    try {
      return await grid(images);
    } finally {
      images.dispose();
    }
  } finally {
    tf.dispose([conditioning, unconditional].flatMap((x) => Object.values(x ?? {})));
    if (scheduler instanceof DPMSolverMultistepScheduler) scheduler.reset();
  }
}

/**
 * The fixed input on which the page's network is compared with Deno's: x_t ~ N(0, I) from
 * seed 7 and t spread over the schedule, for n images; a class model gets the labels −1 (the
 * null), 0, 1, …, a text model the prompt "red apple". Returns ε̂(x_t, t, c), flattened.
 */
export async function liveProbe(
  model: LiveDenoiser,
  text: LiveTextEncoder | undefined,
  n = 4,
): Promise<Float32Array> {
  const [h, w, c] = model.info.imageShape ?? [16, 16, 3];
  const kind = model.info.conditioning?.kind ?? "none";
  const T = model.schedule.T;
  const made: tf.Tensor[] = [];
  try {
    const conditioning: Conditioning = {};
    if (kind === "class") {
      conditioning.classLabels = tf.tensor1d(Array.from({ length: n }, (_, i) => i - 1), "int32");
    } else if (kind === "text") {
      const both = liveConditioning(model, text, { kind: "text", prompt: "red apple" }, n);
      made.push(...Object.values(both.unconditional ?? {}));
      conditioning.encoderHiddenStates = both.conditioning?.encoderHiddenStates;
    }
    made.push(...Object.values(conditioning));
    const xt = tf.tensor4d(new Random(7).normals(n * h * w * c), [n, h, w, c]);
    const t = tf.tensor1d(
      Array.from({ length: n }, (_, i) => Math.round(((i + 0.5) / n) * (T - 1))),
    );
    made.push(xt, t);
    const out = model.network.apply(xt, t, conditioning);
    made.push(out);
    return Float32Array.from(await out.data() as Float32Array);
  } finally {
    tf.dispose(made);
  }
}
