/**
 * `deno task bench --fast-paths`: what each of the native backend's own kernels saves, on one
 * zoo network's training step. The network trains through lib/training/trainer.ts on the
 * `tensorflow` backend while the project's kernels are switched on one after another, in
 * interleaved rounds (each round times every variant, so that a change in the machine's speed
 * falls on all of them alike):
 *
 *   stock              tfjs-node's kernels for the convolution's input gradient, fused.matMul's
 *                      batched products for the dense layers, the optimiser composed of ops;
 *   + input gradient   a wide convolution's input gradient as the forward convolution it mirrors;
 *   + Adam step        the optimiser update as one op (lib/runtime/kernels/adam_step.c);
 *   + 2-D dense        the dense layers as 2-D MatMul + BiasAdd (lib/core/nn/linear.ts).
 *
 * For each: the median and fastest step time, and the kernels of one step (Identity, which
 * moves no data, aside). The fused GroupNorm + SiLU and the constant shape operands stay on
 * throughout.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "../../lib/zoo/specs.ts";
import { benchmarkTrainer, zooNetworks } from "./zoo.ts";
import { ADAM_STEP } from "../../lib/runtime/kernels/native_fast_paths.ts";
import { LINEAR, LINEAR_GRAD } from "../../lib/core/nn/linear.ts";
import { UserError } from "../../lib/core/errors.ts";

/** One variant's times. */
export interface FastPathRow {
  variant: string;
  medianMs: number;
  fastestMs: number;
  kernels: number;
}

const INPUT_GRADIENT = "Conv2DBackpropInput";

/** tfjs-node's own kernel for the input gradient, which the fast path replaces. */
async function stockInputGradient(): Promise<tf.KernelConfig> {
  const module = await import(
    "@tensorflow/tfjs-node/dist/kernels/Conv2DBackpropInput.js"
  ) as { conv2DBackpropInputConfig: tf.KernelConfig };
  return module.conv2DBackpropInputConfig;
}

/** Times `spec`'s full-profile network on the active `tensorflow` backend, variant by variant. */
export async function timeFastPaths(
  spec: ModelSpec,
  plan: { rounds: number; steps: number },
): Promise<FastPathRow[]> {
  if (tf.getBackend() !== "tensorflow") {
    throw new UserError("--fast-paths times the native backend's kernels: set it up first");
  }
  const ours = Object.fromEntries(
    [ADAM_STEP, LINEAR, LINEAR_GRAD, INPUT_GRADIENT].map((name) => {
      const kernel = tf.getKernel(name, "tensorflow");
      if (!kernel) {
        throw new UserError(`the native backend has no ${name} kernel (deno task setup)`);
      }
      return [name, kernel];
    }),
  );
  const stock = await stockInputGradient();
  const use = (...kernels: (tf.KernelConfig | string)[]) => {
    for (const k of kernels) {
      const name = typeof k === "string" ? k : k.kernelName;
      if (tf.getKernel(name, "tensorflow")) tf.unregisterKernel(name, "tensorflow");
      if (typeof k !== "string") tf.registerKernel(k);
    }
  };
  const variants: [string, () => void][] = [
    ["stock", () => use(stock, ADAM_STEP, LINEAR, LINEAR_GRAD)],
    [
      "+ input gradient as a convolution",
      () => use(ours[INPUT_GRADIENT], ADAM_STEP, LINEAR, LINEAR_GRAD),
    ],
    [
      "+ Adam step as one op",
      () => use(ours[INPUT_GRADIENT], ours[ADAM_STEP], LINEAR, LINEAR_GRAD),
    ],
    ["+ 2-D dense layers (all)", () => use(...Object.values(ours))],
  ];
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
    use(...Object.values(ours));
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
