/**
 * The zoo's models as live models for the reader's browser (lib/browser/live_model.ts): the
 * committed artefact's EMA weights θ̄ in float16 (its last weights θ when the run kept no EMA,
 * as the course's ContextUnet does not), with what the page needs to know about the model
 * (schedule, prediction, class names, the text encoder and its tokenizer).
 *
 * A text encoder ships alone, without the image tower and projections the tiny CLIP trained
 * with: a text-to-image page needs τ(y), the token states, and nothing else.
 *
 * A style LoRA ships on its base: the base's weights and the adapter's factors A, B in one
 * network whose configuration names the LoRA (lib/core/nn/lora.ts), so that the page builds the
 * adapted network and turns its strength s.
 *
 * @module
 */

import { TextEncoder } from "../core/models/text_encoder.ts";
import { ParameterStore } from "../core/nn/layers.ts";
import { UserError } from "../core/errors.ts";
import type { Checkpoint, CheckpointTensor } from "../training/checkpoint.ts";
import { loadCheckpoint, readVariables } from "../training/checkpoint.ts";
import { loadEmojiDataset } from "../data/emoji.ts";
import {
  encodeLiveModel,
  type LiveConditioning,
  type LiveModelInfo,
} from "../browser/live_model.ts";
import { artefactDir } from "./runs.ts";
import { MODEL_SPECS, type ModelSpec } from "./specs.ts";
import { CLIP_SPECS } from "./clip_network.ts";
import { loadStyleLora, STYLE_LORA_SPECS } from "./fine_tunes.ts";

/** The tensors under `from` (e.g. `ema/`), renamed to be under `to`. */
function renamed(tensors: Map<string, CheckpointTensor>, from: string, to: string) {
  return [...tensors].filter(([k]) => k.startsWith(from))
    .map(([k, v]) => [to + k.slice(from.length), v] as const);
}

/** The class names of a class-conditional spec's labels, in label order (its dataset's categories). */
async function categoryNames(data: ModelSpec["data"]): Promise<string[]> {
  return (await loadEmojiDataset(data)).categories;
}

/** The zoo's artefact files a live model of `name` is made from (what a cache of it must hash). */
export function liveModelSources(name: string, root = "."): string[] {
  const lora = STYLE_LORA_SPECS.get(name);
  if (lora) {
    return [
      `${artefactDir(lora.base, root)}/weights.ckpt`,
      `${artefactDir(name, root)}/adapter.lora`,
    ];
  }
  return [`${artefactDir(name, root)}/weights.ckpt`];
}

/** The text encoder the live model `name` reads prompts with, if it reads any. */
export function liveTextEncoderOf(name: string): string | undefined {
  const c = MODEL_SPECS.get(STYLE_LORA_SPECS.get(name)?.base ?? name)?.conditioning;
  return c?.kind === "text" ? c.encoder : undefined;
}

/** A style LoRA on its base, as one live denoiser whose strength the page sets. */
async function liveStyleLoraBytes(name: string, root: string): Promise<Uint8Array> {
  const { spec, model } = await loadStyleLora(name, "full", root);
  try {
    const base = MODEL_SPECS.get(spec.base)!;
    const tensors = await readVariables(model.parameters, "params/");
    await readVariables(model.buffers, "buffers/", tensors);
    const info: LiveModelInfo = {
      name,
      description: spec.description,
      role: "denoiser",
      parameters: model.parameterCount(),
      schedule: base.schedule,
      prediction: base.objective.prediction,
      imageShape: [model.config.imageSize, model.config.imageSize, model.config.inChannels],
      conditioning: { kind: "text", encoder: liveTextEncoderOf(name)! },
      lora: { base: spec.base, rank: spec.lora.rank, alpha: spec.lora.alpha },
    };
    return encodeLiveModel(info, model.config as Checkpoint["modelConfig"], tensors);
  } finally {
    model.dispose();
  }
}

/**
 * The live model of the zoo's `name`: a denoiser of `MODEL_SPECS`, a CLIP's text tower, or a
 * style LoRA on its base.
 */
export async function liveModelBytes(name: string, root = "."): Promise<Uint8Array> {
  if (STYLE_LORA_SPECS.has(name)) return await liveStyleLoraBytes(name, root);
  const path = `${artefactDir(name, root)}/weights.ckpt`;
  let checkpoint: Checkpoint;
  try {
    checkpoint = await loadCheckpoint(path);
  } catch (e) {
    throw new UserError(
      `no live model of ${name}: ${
        (e as Error).message
      } (make it with \`deno task train ${name}\`)`,
    );
  }
  if (CLIP_SPECS.has(name)) {
    const config =
      (checkpoint.modelConfig as unknown as { text: ConstructorParameters<typeof TextEncoder>[0] })
        .text;
    const encoder = new TextEncoder(config, { store: new ParameterStore(0), prefix: "text." });
    const wanted = new Set(encoder.parameters.map((p) => `params/${p.name}`));
    const parameters = encoder.parameters.reduce((s, p) => s + p.variable.size, 0);
    encoder.dispose();
    const info: LiveModelInfo = {
      name,
      description: `the text tower of ${name}: a prompt's token states τ(y)`,
      role: "text-encoder",
      parameters,
      tokenizer: checkpoint.state.tokenizer as LiveModelInfo["tokenizer"],
    };
    const tensors = new Map([...checkpoint.tensors].filter(([k]) => wanted.has(k)));
    return encodeLiveModel(info, config as unknown as Checkpoint["modelConfig"], tensors);
  }
  const spec = MODEL_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown live model "${name}": the zoo has ${
        [...MODEL_SPECS.keys(), ...CLIP_SPECS.keys(), ...STYLE_LORA_SPECS.keys()].join(", ")
      }`,
    );
  }
  const hasEma = [...checkpoint.tensors.keys()].some((k) => k.startsWith("ema/"));
  const tensors = new Map([
    ...renamed(checkpoint.tensors, hasEma ? "ema/" : "params/", "params/"),
    ...renamed(checkpoint.tensors, hasEma ? "emaBuffers/" : "buffers/", "buffers/"),
  ]);
  const config = checkpoint.modelConfig as unknown as { imageSize: number; inChannels?: number };
  const conditioning: LiveConditioning = spec.conditioning?.kind === "class"
    ? { kind: "class", labels: await categoryNames(spec.data) }
    : spec.conditioning?.kind === "text"
    ? { kind: "text", encoder: spec.conditioning.encoder }
    : { kind: "none" };
  const info: LiveModelInfo = {
    name,
    // A run without EMA (the course's ContextUnet trains the course's way) samples from θ.
    description: hasEma ? spec.description : `${spec.description}; its last weights (no EMA)`,
    role: "denoiser",
    parameters: [...tensors].filter(([k]) => k.startsWith("params/"))
      .reduce((s, [, t]) => s + t.values.length, 0),
    schedule: spec.schedule,
    prediction: spec.objective.prediction,
    imageShape: [config.imageSize, config.imageSize, config.inChannels ?? 3],
    conditioning,
  };
  return encodeLiveModel(info, checkpoint.modelConfig, tensors);
}
