/**
 * `deno task bench --fast-paths`: what each of the native backend's own kernels saves, on one
 * zoo network's training step. The network trains through lib/training/trainer.ts on the
 * `tensorflow` backend while the project's kernels are switched on one after another, in
 * interleaved rounds (each round times every variant, so that a change in the machine's speed
 * falls on all of them alike):
 *
 *   stock              tfjs-node's kernels for the convolutions and their gradients, fused.matMul's
 *                      batched products for the dense layers, the optimiser and the attention
 *                      core composed of ops;
 *   + input gradient   a wide convolution's input gradient as the forward convolution it mirrors;
 *   + Adam step        the optimiser update as one op (lib/runtime/kernels/adam_step.c);
 *   + 2-D dense        the dense layers as 2-D MatMul + BiasAdd (lib/core/nn/linear.ts);
 *   + convolutions     the convolutions and their filter gradients as the project's ops, a
 *                      layer's backward as one (lib/runtime/kernels/conv2d.c, lib/core/nn/conv.ts);
 *   + attention core   scores, softmax and weighted values as one op each way (attention.c).
 *
 * For each: the median and fastest step time, and the kernels of one step (Identity, which
 * moves no data, aside). The fused GroupNorm (+ SiLU), the constant shape operands and
 * TensorFlow's one intra-op thread (lib/runtime/native.ts) stay on throughout.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "../../lib/zoo/specs.ts";
import { benchmarkTrainer, zooNetworks } from "./zoo.ts";
import { ADAM_STEP } from "../../lib/runtime/kernels/native_fast_paths.ts";
import { LINEAR, LINEAR_GRAD } from "../../lib/core/nn/linear.ts";
import { CONV2D, CONV2D_GRAD } from "../../lib/core/nn/conv.ts";
import { ATTENTION, ATTENTION_GRAD } from "../../lib/core/nn/attention.ts";
import { UserError } from "../../lib/core/errors.ts";

/** One variant's times. */
export interface FastPathRow {
  variant: string;
  medianMs: number;
  fastestMs: number;
  kernels: number;
}

/** tfjs-node's convolution kernels, which the fast paths replace, by the file that has each. */
const STOCK_CONVOLUTIONS = {
  Conv2D: "conv2DConfig",
  FusedConv2D: "fusedConv2DConfig",
  Conv2DBackpropFilter: "conv2DBackpropFilterConfig",
  Conv2DBackpropInput: "conv2DBackpropInputConfig",
} as const;

type Convolution = keyof typeof STOCK_CONVOLUTIONS;

/** tfjs-node's own kernel `name`. */
async function stockKernel(name: Convolution): Promise<tf.KernelConfig> {
  const module = await import(`@tensorflow/tfjs-node/dist/kernels/${name}.js`) as Record<
    string,
    tf.KernelConfig
  >;
  return module[STOCK_CONVOLUTIONS[name]];
}

/** Times `spec`'s full-profile network on the active `tensorflow` backend, variant by variant. */
export async function timeFastPaths(
  spec: ModelSpec,
  plan: { rounds: number; steps: number },
): Promise<FastPathRow[]> {
  if (tf.getBackend() !== "tensorflow") {
    throw new UserError("--fast-paths times the native backend's kernels: set it up first");
  }
  const convolutions = Object.keys(STOCK_CONVOLUTIONS) as Convolution[];
  const ours = Object.fromEntries(
    [
      ADAM_STEP,
      LINEAR,
      LINEAR_GRAD,
      CONV2D,
      CONV2D_GRAD,
      ATTENTION,
      ATTENTION_GRAD,
      ...convolutions,
    ]
      .map((name) => {
        const kernel = tf.getKernel(name, "tensorflow");
        if (!kernel) {
          throw new UserError(`the native backend has no ${name} kernel (deno task setup)`);
        }
        return [name, kernel];
      }),
  );
  const stock = Object.fromEntries(
    await Promise.all(convolutions.map(async (name) => [name, await stockKernel(name)] as const)),
  ) as Record<Convolution, tf.KernelConfig>;
  /** Registers the named kernels of ours, the stock convolutions otherwise, and no others. */
  const use = (...names: string[]) => {
    for (const name of Object.keys(ours)) {
      if (tf.getKernel(name, "tensorflow")) tf.unregisterKernel(name, "tensorflow");
      if (names.includes(name)) tf.registerKernel(ours[name]);
      else if (name in stock) tf.registerKernel(stock[name as Convolution]);
    }
  };
  const steps = [
    ["+ input gradient as a convolution", ["Conv2DBackpropInput"]],
    ["+ Adam step as one op", [ADAM_STEP]],
    ["+ 2-D dense layers", [LINEAR, LINEAR_GRAD]],
    ["+ convolutions as the project's ops", [
      CONV2D,
      CONV2D_GRAD,
      "Conv2D",
      "FusedConv2D",
      "Conv2DBackpropFilter",
    ]],
    ["+ attention core as one op", [ATTENTION, ATTENTION_GRAD]],
  ] as const;
  const variants: [string, () => void][] = [["stock", () => use()]];
  steps.forEach(([name], i) => {
    const on = steps.slice(0, i + 1).flatMap(([, kernels]) => kernels);
    variants.push([name, () => use(...on)]);
  });
  const { trainer } = benchmarkTrainer(zooNetworks([spec])[0]);
  const times = new Map<string, number[]>();
  const kernels = new Map<string, number>();
  try {
    for (let round = 0; round < plan.rounds; round++) {
      for (const [name, apply] of variants) {
        apply();
        await trainer.trainStep(); // a warm-up after the switch
        if (round === 0) {
          const info = await tf.profile(async () => {
            await trainer.trainStep();
            return [];
          });
          kernels.set(
            name,
            info.kernels.filter((k) => !/^(Identity|unnamed scope)$/.test(k.name)).length,
          );
        }
        for (let i = 0; i < plan.steps; i++) {
          const started = performance.now();
          await trainer.trainStep();
          times.set(name, [...times.get(name) ?? [], performance.now() - started]);
        }
      }
    }
  } finally {
    use(...Object.keys(ours));
    trainer.model.dispose();
    trainer.dispose();
  }
  return variants.map(([variant]) => {
    const sorted = [...times.get(variant)!].sort((a, b) => a - b);
    return {
      variant,
      medianMs: Math.round(sorted[sorted.length >> 1]),
      fastestMs: Math.round(sorted[0]),
      kernels: kernels.get(variant)!,
    };
  });
}
