/**
 * A trained network with a LoRA on it (lib/core/nn/lora.ts): the same architecture rebuilt with
 * `config.lora`, the base's weights copied in by name, and the factors A (Gaussian) and B (zero)
 * added beside the layers the targets name. Because B = 0 the adapted network computes exactly
 * what the base computes until the factors train; `loraParameters` are the only variables a
 * fine-tuning run should hand the optimizer.
 *
 * ```ts
 * const adapted = adaptModel(base, { rank: 4, alpha: 4, targets: ATTENTION_PROJECTIONS });
 * train(adapted, styleImages, schedule, { learningRate: 1e-4 }, {
 *   parameters: loraParameters(adapted),
 * });
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../errors.ts";
import { LORA_A, LORA_B, type LoraConfig, matchesTarget } from "../nn/lora.ts";
import type { NamedVariable } from "../nn/layers.ts";
import type { DiffusionModel } from "./network.ts";
import { createModel } from "./registry.ts";

/** True for the name of a LoRA factor (`….lora_A`, `….lora_B`). */
export function isLoraParameter(name: string): boolean {
  return name.endsWith(`.${LORA_A}`) || name.endsWith(`.${LORA_B}`);
}

/** The base network's own parameters: every one that is not a LoRA factor. */
export function baseParameters(model: DiffusionModel): NamedVariable[] {
  return model.parameters.filter((p) => !isLoraParameter(p.name));
}

/** The LoRA factors of an adapted network, in creation order (A then B of each layer). */
export function loraParameters(model: DiffusionModel): NamedVariable[] {
  return model.parameters.filter((p) => isLoraParameter(p.name));
}

/** The dotted names of a network's linear layers: what LoRA targets can name. */
export function linearLayerNames(model: DiffusionModel): string[] {
  return baseParameters(model)
    .filter((p) => p.name.endsWith(".weight") && p.variable.rank === 2)
    .map((p) => p.name.slice(0, -".weight".length));
}

/**
 * `base` rebuilt with `lora` on the linear layers its targets name, the base's weights copied
 * in (the base itself is left as it is). Refused when the base already has a LoRA, when its
 * kind takes none, or when no linear layer matches a target (the message lists the names).
 */
export function adaptModel(base: DiffusionModel, lora: LoraConfig): DiffusionModel {
  if (base.lora) {
    throw new UserError(
      "This network already has a LoRA; merge it and adapt the merged network, or adapt its base.",
    );
  }
  const names = linearLayerNames(base);
  const unmatched = lora.targets.filter((t) => !names.some((n) => matchesTarget(n, t)));
  if (unmatched.length > 0) {
    throw new UserError(
      `LoRA target${unmatched.length > 1 ? "s" : ""} ${
        unmatched.map((t) => `"${t}"`).join(", ")
      } ` +
        `match${unmatched.length > 1 ? "" : "es"} no linear layer of this ${base.config.kind}; ` +
        `its linear layers are ${summariseNames(names)}.`,
    );
  }
  const adapted = createModel({ ...base.config, lora: { ...lora, targets: [...lora.targets] } });
  if (!adapted.lora) {
    adapted.dispose();
    throw new UserError(`A network of kind "${base.config.kind}" does not take a LoRA.`);
  }
  const own = new Map(baseParameters(adapted).map((p) => [p.name, p.variable]));
  tf.tidy(() => {
    for (const p of base.parameters) {
      const target = own.get(p.name);
      if (!target) throw new Error(`adaptModel: the rebuilt network has no "${p.name}".`);
      target.assign(p.variable);
    }
  });
  tf.tidy(() => base.buffers.forEach((p, i) => adapted.buffers[i].variable.assign(p.variable)));
  return adapted;
}

/** The first 16 layer names and how many there are. */
function summariseNames(names: readonly string[]): string {
  const shown = names.length > 16 ? [...names.slice(0, 16), `… (${names.length} in all)`] : names;
  return shown.join(", ");
}
