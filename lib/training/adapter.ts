/**
 * A LoRA adapter on its own: the factors A and B of every adapted layer, the LoRA configuration,
 * and what identifies the base network it was trained on (its architecture, and a SHA-256 of its
 * weights), in the library's checkpoint format (lib/training/checkpoint_format.ts) under the
 * prefix `lora/`. The base's own weights are not in it, so the file is the size of the update,
 * Σ r(d_in + d_out) numbers: kilobytes beside the base's megabytes.
 *
 * Loading checks the adapter against the network it is loaded into and refuses, naming both, an
 * adapter of another architecture, of other base weights, or of another rank, α or targets than
 * the network's own LoRA.
 *
 * @module
 */
import { UserError } from "../core/errors.ts";
import type { LoraConfig } from "../core/nn/lora.ts";
import {
  adaptModel,
  baseParameters,
  type DiffusionModel,
  loraParameters,
  type ModelConfigBase,
} from "../core/models/mod.ts";
import {
  assignVariables,
  checkArchitecture,
  loadCheckpoint,
  readVariables,
  saveCheckpoint,
  type SaveOptions,
  variablesDigest,
} from "./checkpoint.ts";

/** Prefix of the factors' tensors in an adapter file. */
const PREFIX = "lora/";

/** What an adapter file records besides its tensors. */
export interface AdapterInfo {
  /** The LoRA configuration (rank, α, targets). */
  lora: LoraConfig;
  /** The base network: a name for messages and its weights' digest ({@link weightsDigest}). */
  base: { name: string; weights: string };
  /** Σ r(d_in + d_out), the numbers the adapter holds. */
  parameterCount: number;
  /** Anything else the caller records (training steps, learning rate, data). */
  notes?: Record<string, unknown>;
}

/** SHA-256 (hex) of a network's own weights, LoRA factors excluded: which base it is. */
export async function weightsDigest(model: DiffusionModel): Promise<string> {
  return await variablesDigest(baseParameters(model));
}

/**
 * Write the LoRA of `model` alone to `path`: its factors, configuration and base. Refused while
 * the LoRA is merged (the factors would no longer say what the weights hold apart from them).
 * Returns the file's size in bytes.
 */
export async function saveAdapter(
  path: string,
  model: DiffusionModel,
  options: SaveOptions & { baseName: string; notes?: Record<string, unknown> },
): Promise<number> {
  const lora = model.lora;
  if (!lora) throw new UserError("This network has no LoRA to save; adapt it with adaptModel.");
  if (lora.merged) {
    throw new UserError("Unmerge the LoRA before saving it: its factors are folded into W.");
  }
  const info: AdapterInfo = {
    lora: lora.config,
    base: { name: options.baseName, weights: await weightsDigest(model) },
    parameterCount: lora.parameterCount,
    ...(options.notes ? { notes: options.notes } : {}),
  };
  await saveCheckpoint(path, {
    step: 0,
    modelConfig: model.config,
    state: { adapter: info },
    tensors: await readVariables(loraParameters(model), PREFIX),
  }, options);
  return (await Deno.stat(path)).size;
}

/** The record of an adapter file, without loading it into a network. */
export async function readAdapterInfo(path: string): Promise<AdapterInfo> {
  const { state } = await loadCheckpoint(path);
  return adapterInfo(state, path);
}

/**
 * The network `target` with the adapter at `path` on it. A base network (no LoRA of its own) is
 * adapted with the file's configuration and left as it is; a network that already has a LoRA of
 * the same configuration gets the file's factors. Refused, naming both sides, when the adapter
 * was trained for another architecture, other base weights, or another LoRA configuration.
 *
 * @param options `baseName`: what to call `target` in messages
 */
export async function loadAdapter(
  path: string,
  target: DiffusionModel,
  options: { baseName?: string } = {},
): Promise<DiffusionModel> {
  const checkpoint = await loadCheckpoint(path);
  const info = adapterInfo(checkpoint.state, path);
  const here = options.baseName ?? "this network";
  const { lora: _stored, ...storedBase } = checkpoint.modelConfig as ModelConfigBase;
  const { lora: _own, ...ownBase } = target.config;
  try {
    checkArchitecture(storedBase as ModelConfigBase, ownBase as ModelConfigBase, path);
  } catch (e) {
    throw new UserError(
      `Adapter ${path} was trained on "${info.base.name}", whose architecture differs from ` +
        `${here}'s: ${(e as Error).message}`,
    );
  }
  if (target.lora?.merged) {
    throw new UserError(`Unmerge ${here}'s LoRA before loading other factors into it.`);
  }
  const digest = await weightsDigest(target);
  if (digest !== info.base.weights) {
    throw new UserError(
      `Adapter ${path} was trained on "${info.base.name}" (weights ${
        info.base.weights.slice(0, 12)
      }…), ` +
        `but ${here} has other weights (${digest.slice(0, 12)}…); load it into the base it was ` +
        `trained on, or train an adapter for this one.`,
    );
  }
  if (target.lora) {
    const differences = loraDifferences(info.lora, target.lora.config);
    if (differences.length > 0) {
      throw new UserError(
        `Adapter ${path} is a LoRA of ${differences.join(", ")} in the file but ` +
          `${loraDifferences(target.lora.config, info.lora).join(", ")} in ${here}; ` +
          `load it into the base network, which takes the file's configuration.`,
      );
    }
  }
  const adapted = target.lora ? target : adaptModel(target, info.lora);
  try {
    assignVariables(loraParameters(adapted), checkpoint.tensors, PREFIX, path);
  } catch (e) {
    if (adapted !== target) adapted.dispose();
    throw e;
  }
  return adapted;
}

/** The fields in which LoRA configuration `a` differs from `b`, as `a` has them. */
function loraDifferences(a: LoraConfig, b: LoraConfig): string[] {
  const out: string[] = [];
  if (a.rank !== b.rank) out.push(`rank ${a.rank}`);
  if (a.alpha !== b.alpha) out.push(`α ${a.alpha}`);
  if (JSON.stringify(a.targets) !== JSON.stringify(b.targets)) {
    out.push(`targets ${JSON.stringify(a.targets)}`);
  }
  return out;
}

function adapterInfo(state: Record<string, unknown>, path: string): AdapterInfo {
  const info = state.adapter as AdapterInfo | undefined;
  if (!info || typeof info.base?.weights !== "string" || !info.lora) {
    throw new UserError(
      `${path} is a checkpoint but not a LoRA adapter; load a network with loadModel, or ` +
        `save an adapter with saveAdapter.`,
    );
  }
  return info;
}
