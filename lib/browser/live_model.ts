/**
 * Live models: a zoo model as the reader's browser receives it, and how the page turns it back
 * into the library's own network.
 *
 * A live model is a diffusion checkpoint (lib/training/checkpoint_format.ts) in float16, holding
 * only what sampling needs: the sampling weights under `params/` and `buffers/` (the EMA weights
 * θ̄ where the run kept them), the network's configuration, and in its state a
 * {@link LiveModelInfo} (schedule, prediction, what it is conditioned on, and for a text encoder
 * its tokenizer). The denoisers' artefacts store float16 already, so their live weights are the
 * same values; a float32 artefact (the tiny CLIP's) is rounded, by at most 2⁻¹¹ of each weight.
 * The page receives it as `assets/live/NAME.bin` or `NAME.js` (lib/browser/transport.ts).
 *
 * No Deno or Node API: the browser bundle imports it.
 *
 * @module
 */

import { createModel, type DiffusionModel } from "../core/models/mod.ts";
import { TextEncoder } from "../core/models/text_encoder.ts";
import { ParameterStore } from "../core/nn/layers.ts";
import type { PredictionType } from "../core/parameterization.ts";
import { type NoiseSchedule, noiseSchedule } from "../core/schedules.ts";
import { Tokenizer, type TokenizerJson } from "../core/tokenizer.ts";
import { UserError } from "../core/errors.ts";
import {
  assignVariables,
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
} from "../training/checkpoint_format.ts";

/** What a denoiser is conditioned on, as the page offers it to the reader. */
export type LiveConditioning =
  | { kind: "none" }
  /** Class labels y (and context vectors mixing them); `labels[k]` names class k. */
  | { kind: "class"; labels: string[] }
  /** A prompt, read by the live text encoder `encoder`. */
  | { kind: "text"; encoder: string };

/** What a live model says about itself (its checkpoint's `state.live`). */
export interface LiveModelInfo {
  /** The zoo name. */
  name: string;
  /** One line: what it is. */
  description: string;
  /** A denoising network, or the text tower that conditions one. */
  role: "denoiser" | "text-encoder";
  /** Its parameters. */
  parameters: number;
  /** Denoisers: the schedule it was trained with. */
  schedule?: { name: string; T: number };
  /** Denoisers: what the network predicts. */
  prediction?: PredictionType;
  /** Denoisers: the image shape [H, W, C]. */
  imageShape?: [number, number, number];
  /** Denoisers: what it is conditioned on. */
  conditioning?: LiveConditioning;
  /** Text encoders: the tokenizer. */
  tokenizer?: TokenizerJson;
  /**
   * Denoisers with a LoRA adapter in their weights (lib/core/nn/lora.ts): the base it adapts,
   * its rank and α; the page sets its strength s.
   */
  lora?: { base: string; rank: number; alpha: number };
}

/** What the page knows of a live model before loading it (the build writes it beside the widget). */
export type LivePageInfo = Pick<
  LiveModelInfo,
  "description" | "conditioning" | "parameters" | "lora"
>;

/** A live denoiser, built. */
export interface LiveDenoiser {
  info: LiveModelInfo;
  /** The network with the live weights. */
  network: DiffusionModel;
  /** Its noise schedule. */
  schedule: NoiseSchedule;
}

/** A live text encoder, built: τ(y), the token states a text model cross-attends to. */
export interface LiveTextEncoder {
  info: LiveModelInfo;
  encoder: TextEncoder;
  tokenizer: Tokenizer;
}

/** Either kind of live model. */
export type LiveModel = LiveDenoiser | LiveTextEncoder;

/** Free a live model's variables. */
export function disposeLiveModel(model: LiveModel): void {
  if ("network" in model) model.network.dispose();
  else model.encoder.dispose();
}

/**
 * The bytes of a live model: `tensors` (the sampling weights, named as the network names
 * them, `params/…` and `buffers/…`) in float16, with `info` in the state.
 */
export function encodeLiveModel(
  info: LiveModelInfo,
  modelConfig: Checkpoint["modelConfig"],
  tensors: Checkpoint["tensors"],
): Uint8Array {
  return encodeCheckpoint({ step: 0, modelConfig, state: { live: info }, tensors }, {
    dtype: "float16",
  });
}

/**
 * Build the network (or text encoder) a live model holds, with its weights.
 *
 * @throws UserError naming `source` when the bytes are not a live model, are truncated or
 *   corrupt, or describe a network this library cannot build.
 */
export function decodeLiveModel(bytes: Uint8Array, source = "live model"): LiveModel {
  const checkpoint = decodeCheckpoint(bytes, source);
  const info = checkpoint.state.live as LiveModelInfo | undefined;
  if (
    !info || typeof info !== "object" || (info.role !== "denoiser" && info.role !== "text-encoder")
  ) {
    throw new UserError(
      `${source} is a checkpoint but not a live model (its state has no "live"); make live ` +
        "models with liveModelBytes (lib/zoo/live_export.ts), as the book's build does.",
    );
  }
  if (info.role === "text-encoder") {
    if (!info.tokenizer) throw new UserError(`${source} is a text encoder without its tokenizer.`);
    const store = new ParameterStore(0);
    const encoder = new TextEncoder(
      checkpoint.modelConfig as unknown as ConstructorParameters<typeof TextEncoder>[0],
      { store, prefix: "text." },
    );
    assignOrDispose(
      () => assignVariables(encoder.parameters, checkpoint.tensors, "params/", source),
      () => encoder.dispose(),
    );
    return { info, encoder, tokenizer: Tokenizer.fromJSON(info.tokenizer) };
  }
  let network: DiffusionModel;
  try {
    network = createModel(checkpoint.modelConfig);
  } catch (e) {
    throw new UserError(
      `${source} describes a network this library cannot build: ${(e as Error).message}`,
    );
  }
  assignOrDispose(() => {
    assignVariables(network.parameters, checkpoint.tensors, "params/", source);
    assignVariables(network.buffers, checkpoint.tensors, "buffers/", source);
  }, () => network.dispose());
  const { name, T } = info.schedule ?? { name: "cosine", T: 1000 };
  return { info, network, schedule: noiseSchedule(name, T) };
}

function assignOrDispose(assign: () => void, dispose: () => void): void {
  try {
    assign();
  } catch (e) {
    dispose();
    throw e;
  }
}
