/**
 * The registry of network kinds: how to complete a configuration of each kind and build the
 * network it describes. It is open: a module that defines a new kind (a VAE, a text encoder, a
 * classifier) registers it, and checkpoints and the model zoo build it by its `kind` like the
 * built-in ones (lib/core/models/mod.ts imports those).
 *
 * @module
 */
import type { DiffusionModel, ModelConfigBase } from "./network.ts";

/** One kind of network. */
export interface ModelKind<C extends ModelConfigBase = ModelConfigBase> {
  /** Fill a partial configuration with the kind's defaults and check it. */
  complete(partial: Partial<C>): C;
  /** Build the network (`trainable: false` for a copy that holds EMA weights). */
  build(config: C, options: { trainable?: boolean }): DiffusionModel;
}

const KINDS = new Map<string, ModelKind>();

/** Register a network kind under `kind` (the `kind` field of its configurations). */
export function registerModelKind<C extends ModelConfigBase>(kind: string, entry: ModelKind<C>) {
  KINDS.set(kind, entry as unknown as ModelKind);
}

function kindOf(kind: string | undefined): ModelKind {
  const entry = kind === undefined ? undefined : KINDS.get(kind);
  if (!entry) {
    throw new Error(
      `unknown model kind "${kind}"; the registered kinds are ${[...KINDS.keys()].join(", ")} ` +
        `(import the module that defines a kind before building it).`,
    );
  }
  return entry;
}

/** Fill a partial configuration of any registered kind with that kind's defaults. */
export function completeModelConfig(partial: { kind: string }): ModelConfigBase {
  return kindOf(partial.kind).complete(partial as Partial<ModelConfigBase>);
}

/** Build the network a (complete) configuration describes, as stored in a checkpoint. */
export function createModel(
  config: ModelConfigBase,
  options: { trainable?: boolean } = {},
): DiffusionModel {
  return kindOf((config as { kind?: string }).kind).build(config, options);
}
