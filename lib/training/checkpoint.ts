/**
 * Checkpoint files: a model's weights, EMA weights, optimizer state, step, RNG state and
 * configuration in one file (the format of lib/training/checkpoint_format.ts, re-exported
 * here), written atomically and checked when read.
 *
 * A file is first written to a temporary name in the same folder and then renamed, so a run
 * killed while saving leaves the previous checkpoint intact.
 *
 * @module
 */

import { sha256Hex, writeFileAtomic } from "../runtime/files.ts";
import type { NamedVariable } from "../core/nn/layers.ts";
import {
  completeModelConfig,
  createModel,
  type DiffusionModel,
  type ModelConfigBase,
} from "../core/models/mod.ts";
import { UserError } from "../core/errors.ts";
import {
  assignVariables,
  type Checkpoint,
  type CheckpointHeader,
  type CheckpointTensor,
  decodeCheckpoint,
  encodeCheckpoint,
  type SaveOptions,
  verifyCheckpoint,
} from "./checkpoint_format.ts";

export * from "./checkpoint_format.ts";

/**
 * Write a checkpoint file atomically: to `path.tmp-…` in the same folder, then rename.
 * Creates the folder when missing.
 */
export async function saveCheckpoint(
  path: string,
  checkpoint: Checkpoint,
  options: SaveOptions = {},
): Promise<void> {
  const bytes = encodeCheckpoint(checkpoint, options);
  try {
    await writeFileAtomic(path, bytes);
  } catch (e) {
    throw new Error(`Could not write checkpoint ${path}: ${(e as Error).message}`);
  }
}

/** The bytes of a checkpoint file; errors name the file and say what to do. */
async function readCheckpointFile(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(`Checkpoint ${path} does not exist; check the path or train first.`);
    }
    throw new UserError(`Could not read checkpoint ${path}: ${(e as Error).message}`);
  }
}

/**
 * Read and verify a checkpoint file.
 *
 * @throws Error naming the file when it is missing, not a checkpoint, truncated or corrupt.
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  return decodeCheckpoint(await readCheckpointFile(path), path);
}

/**
 * Verify a checkpoint file whole and return its header (step, configuration, state), without
 * decoding its tensors.
 *
 * @throws Error naming the file when it is missing, not a checkpoint, truncated or corrupt.
 */
export async function readCheckpointHeader(path: string): Promise<CheckpointHeader> {
  return verifyCheckpoint(await readCheckpointFile(path), path);
}

/** Read variables' values (asynchronously: works on every backend) into checkpoint tensors. */
export async function readVariables(
  variables: readonly NamedVariable[],
  prefix: string,
  into: Map<string, CheckpointTensor> = new Map(),
): Promise<Map<string, CheckpointTensor>> {
  for (const { name, variable } of variables) {
    const values = await variable.data();
    into.set(`${prefix}${name}`, {
      shape: variable.shape.slice(),
      values: Float32Array.from(values as Float32Array),
    });
  }
  return into;
}

/** SHA-256 (hex) of variables' float32 values, in order: which weights they are. */
export async function variablesDigest(variables: readonly NamedVariable[]): Promise<string> {
  const parts = await Promise.all(variables.map(async (p) => {
    const v = await p.variable.data() as Float32Array;
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }));
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    bytes.set(p, offset);
    offset += p.length;
  }
  return await sha256Hex(bytes);
}

/**
 * Check that a checkpoint's model configuration equals `config` (ignoring `seed`).
 *
 * @throws Error naming `source` and every differing field.
 */
export function checkArchitecture(
  stored: ModelConfigBase,
  config: ModelConfigBase,
  source = "checkpoint",
): void {
  // A file from an older library lacks the fields added since; they take today's defaults,
  // which are chosen to compute what the older network computed.
  const a = completeStored(stored) as unknown as Record<string, unknown>;
  const b = config as unknown as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => k !== "seed");
  const differences = keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k}: ${JSON.stringify(a[k])} in the file, ${JSON.stringify(b[k])} in the model`);
  if (differences.length > 0) {
    throw new Error(
      `${source} was saved from a different architecture (${differences.join("; ")}). ` +
        `Build the model from the checkpoint's modelConfig, or point to the right file.`,
    );
  }
}

function completeStored(stored: ModelConfigBase): ModelConfigBase {
  try {
    return completeModelConfig(stored);
  } catch {
    return stored; // an unknown kind: compared as it is, and reported as different
  }
}

/** Save a model (and optionally its EMA copy) alone, for sampling or sharing. */
export async function saveModel(
  path: string,
  model: DiffusionModel,
  options: SaveOptions & { ema?: DiffusionModel; step?: number; state?: Record<string, unknown> } =
    {},
): Promise<void> {
  const tensors = await readVariables(model.parameters, "params/");
  await readVariables(model.buffers, "buffers/", tensors);
  if (options.ema) {
    await readVariables(options.ema.parameters, "ema/", tensors);
    await readVariables(options.ema.buffers, "emaBuffers/", tensors);
  }
  await saveCheckpoint(path, {
    step: options.step ?? 0,
    modelConfig: model.config,
    state: options.state ?? {},
    tensors,
  }, options);
}

/**
 * Build the network a checkpoint describes and load its weights: the EMA weights when the
 * file has them (what sampling should use), unless `weights: "params"`.
 */
export async function loadModel(
  path: string,
  options: { weights?: "ema" | "params" } = {},
): Promise<DiffusionModel> {
  const checkpoint = await loadCheckpoint(path);
  const hasEma = [...checkpoint.tensors.keys()].some((k) => k.startsWith("ema/"));
  const useEma = (options.weights ?? (hasEma ? "ema" : "params")) === "ema";
  if (useEma && !hasEma) {
    throw new Error(`${path} holds no EMA weights; load with weights: "params".`);
  }
  let model: DiffusionModel;
  try {
    model = createModel(checkpoint.modelConfig);
  } catch (e) {
    throw new Error(
      `${path} describes a network this library cannot build: ${(e as Error).message}`,
    );
  }
  try {
    assignVariables(model.parameters, checkpoint.tensors, useEma ? "ema/" : "params/", path);
    assignVariables(model.buffers, checkpoint.tensors, useEma ? "emaBuffers/" : "buffers/", path);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
