/**
 * Samples of the zoo's text-conditional models from prompts, with classifier-free guidance
 * (Ho & Salimans 2022):
 *
 *   ε̃ = ε_θ(x_t, t, τ("")) + w · (ε_θ(x_t, t, τ(prompt)) − ε_θ(x_t, t, τ(""))),
 *
 * τ the frozen text encoder's token states, "" its null prompt, by DDIM (η = 0) in the base's
 * schedule. What the fine-tuning chapter draws, and what DreamBooth's class images are drawn by.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { DiffusionModel } from "../core/models/mod.ts";
import type { TextEncoder } from "../core/models/text_encoder.ts";
import type { Tokenizer } from "../core/tokenizer.ts";
import { DDIMScheduler, sample } from "../core/samplers/mod.ts";
import type { Pretrained } from "./pretrained.ts";

/** How {@link PromptSampler.sample} draws. */
export interface PromptSampling {
  /** The seed of x_T (default 0). */
  seed?: number;
  /** DDIM steps (default 50). */
  steps?: number;
  /** The guidance scale w (default 3; 1: no guidance). */
  guidanceScale?: number;
  /** At most this many images a network call (default 200). */
  chunk?: number;
}

/** Anything that turns prompts into token states: a text tower with its tokenizer, or a learned word. */
export interface PromptEncoder {
  /** τ(texts): [N, L, D] token states. */
  encode(texts: readonly string[]): tf.Tensor3D;
}

/** The prompt encoder of a text tower τ and its tokenizer. */
export function promptEncoder(encoder: TextEncoder, tokenizer: Tokenizer): PromptEncoder {
  const L = encoder.config.contextLength;
  return {
    encode: (texts) =>
      tf.tidy(() =>
        encoder.encode(tf.tensor2d(tokenizer.encodeBatch(texts), [texts.length, L], "int32"))
          .states
      ),
  };
}

/**
 * One image a prompt, from `model` in `base`'s schedule and prediction, guided by w; the prompts
 * are drawn in chunks, each from its own seed (seed + the chunk's index).
 */
export async function samplePrompts(
  model: DiffusionModel,
  base: Pick<Pretrained, "schedule" | "predictionType" | "clipRange">,
  encoder: PromptEncoder,
  prompts: readonly string[],
  options: PromptSampling = {},
): Promise<tf.Tensor4D> {
  const { seed = 0, steps = 50, guidanceScale = 3, chunk = 200 } = options;
  const ddim = new DDIMScheduler(base.schedule, {
    predictionType: base.predictionType,
    clipSample: base.clipRange !== undefined,
    clipRange: base.clipRange ?? 1,
  });
  const { imageSize: size, inChannels: channels } = model.config;
  const parts: tf.Tensor4D[] = [];
  try {
    for (let start = 0; start < prompts.length; start += chunk) {
      const part = prompts.slice(start, start + chunk);
      const cond = encoder.encode(part);
      const uncond = encoder.encode(part.map(() => ""));
      try {
        const { images } = await sample(model, ddim, {
          shape: [part.length, size, size, channels],
          seed: seed + start / chunk,
          steps,
          conditioning: { encoderHiddenStates: cond },
          guidance: guidanceScale === 1 ? undefined : {
            scale: guidanceScale,
            unconditional: { encoderHiddenStates: uncond },
          },
        });
        parts.push(images);
      } finally {
        cond.dispose();
        uncond.dispose();
      }
    }
    return parts.length === 1 ? parts[0] : tf.concat(parts) as tf.Tensor4D;
  } finally {
    if (parts.length > 1) parts.forEach((p) => p.dispose());
  }
}
