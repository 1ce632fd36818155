/**
 * SiLU(GroupNorm(x)), the pair at the start of every residual block (Wu & He, 2018; Elfwing et
 * al., 2018), with its gradient written out:
 *
 *   μ, σ² = mean, variance of each sample's channel group over H, W and its channels,
 *   x̂ = (x − μ)/√(σ² + ε),  y = γ x̂ + β,  z = y σ(y).
 *
 * Where the active backend has the fused kernels (the native backend, with the ops of
 * group_norm_silu.c loaded: lib/runtime/kernels/native_fast_paths.ts registers them), forward and
 * backward are one kernel each; elsewhere it is the composite below, a few dozen ops.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { applyKernelPair, type KernelPair } from "./kernel_pair.ts";

/** Kernel names of the fused forward (x, γ, β → z, μ, r) and backward (∂z, x, γ, β, μ, r → ∂x, ∂γ, ∂β). */
export const GROUP_NORM_SILU = "GroupNormSiLU";
export const GROUP_NORM_SILU_GRAD = "GroupNormSiLUGrad";

const GROUP_NORM_PAIR: KernelPair = {
  forward: GROUP_NORM_SILU,
  backward: GROUP_NORM_SILU_GRAD,
  inputs: ["x", "gamma", "beta"],
  saved: ["x", "gamma", "beta"],
  extraOutputs: ["mean", "rstd"],
  gradient: "dz",
};

/** SiLU(GroupNorm(x)) for x [N, H, W, C], γ and β [C]: fused where the backend can. */
export function groupNormSiLU(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  epsilon = 1e-5,
): tf.Tensor4D {
  return tf.getKernel(GROUP_NORM_SILU, tf.getBackend()) === undefined
    ? composite(x, gamma, beta, groups, epsilon)
    : fused(x, gamma, beta, groups, epsilon, true);
}

/**
 * GroupNorm(x) alone (y = γ x̂ + β) through the same fused kernels with their SiLU switched off,
 * or undefined where the backend has none (the caller composes it: lib/core/nn/layers.ts).
 */
export function fusedGroupNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  epsilon = 1e-5,
): tf.Tensor4D | undefined {
  return tf.getKernel(GROUP_NORM_SILU, tf.getBackend()) === undefined
    ? undefined
    : fused(x, gamma, beta, groups, epsilon, false);
}

/**
 * One kernel forward, one backward; the statistics μ and r go from the first to the second.
 * Without `silu`, z = y.
 */
function fused(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  epsilon: number,
  silu: boolean,
): tf.Tensor4D {
  return applyKernelPair(GROUP_NORM_PAIR, [x, gamma, beta], {
    groups,
    epsilon,
    silu,
  }) as tf.Tensor4D;
}

/**
 * The composite: SiLU(GroupNorm(x)) in TensorFlow.js ops with its gradient written out, which
 * needs far fewer passes over the activations than automatic differentiation of the separate
 * ops. Per-(sample, channel) sums over H and W are averaged
 * within each group by a [C, C] matrix A (A_ij = 1/(H·W·C/G) when channels i and j share a
 * group), so every statistic is an [N, C] tensor:
 *
 *   μ = (Σ_hw x) A,  d = x − μ,  r = 1/√((Σ_hw d²) A + ε),  x̂ = d r,
 *   y = γ x̂ + β,  z = y σ(y);
 *
 *   ∂y = ∂z (σ(y) + z (1 − σ(y))),  ∂β = Σ_n Σ_hw ∂y,  ∂γ = Σ_n Σ_hw ∂y x̂,
 *   ∂x = r (γ ∂y − m₁ − x̂ m₂),  m₁ = (γ Σ_hw ∂y) A,  m₂ = (γ Σ_hw ∂y x̂) A.
 *
 * The variance is computed from the centred d (two passes), as PyTorch does, not as E[x²] − μ².
 */
function composite(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  epsilon = 1e-5,
): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const perGroup = c / groups;
  const block = new Float32Array(c * c);
  for (let i = 0; i < c; i++) {
    for (let j = 0; j < c; j++) {
      if (Math.floor(i / perGroup) === Math.floor(j / perGroup)) {
        block[i * c + j] = 1 / (h * w * perGroup);
      }
    }
  }
  const broadcast = (t: tf.Tensor) => tf.reshape(t, [n, 1, 1, c]);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const average = tf.tensor2d(block, [c, c]);
    const mean = tf.matMul(tf.sum(input, [1, 2]), average);
    const d = tf.sub(input, broadcast(mean));
    const r = tf.rsqrt(tf.add(tf.matMul(tf.sum(tf.square(d), [1, 2]), average), epsilon));
    const a = broadcast(tf.mul(g, r));
    const y = tf.add(tf.mul(d, a), b);
    const s = tf.sigmoid(y);
    const z = tf.mul(y, s);
    save([d, s, z, r, a, g, average]);
    const gradFunc = (dz: tf.Tensor, saved: tf.Tensor[]) => {
      const [d, s, z, r, a, g, average] = saved;
      const dy = tf.mul(dz, tf.add(s, tf.mul(z, tf.sub(1, s))));
      const sumDy = tf.sum(dy, [1, 2]);
      const sumDyXhat = tf.mul(tf.sum(tf.mul(dy, d), [1, 2]), r);
      const m1 = tf.matMul(tf.mul(g, sumDy), average);
      const m2 = tf.matMul(tf.mul(g, sumDyXhat), average);
      const dx = tf.sub(
        tf.sub(tf.mul(dy, a), tf.mul(d, broadcast(tf.mul(tf.square(r), m2)))),
        broadcast(tf.mul(r, m1)),
      );
      return [dx, tf.sum(sumDyXhat, 0), tf.sum(sumDy, 0)];
    };
    return { value: z, gradFunc };
  });
  return op(x, gamma, beta) as tf.Tensor4D;
}
