/**
 * The stride-1 "same" convolution of a layer, y = conv(x, W) + b for x [N, H, W, C_in],
 * W [k, k, C_in, C_out], b [C_out] (k odd, padding (k − 1)/2), with its gradient
 *
 *   ∂x = conv(∂y, W̃),  W̃[a, b, o, c] = W[k − 1 − a, k − 1 − b, c, o],
 *   ∂W[a, b, c, o] = Σ_{n, i, j} x[n, i + a − p, j + b − p, c] · ∂y[n, i, j, o],
 *   ∂b = Σ_{n, i, j} ∂y.
 *
 * TensorFlow.js's `fused.conv2d` runs its backward as three kernels (input gradient, filter
 * gradient, and a sum for the bias) with the bookkeeping of each. Where the backend has the
 * project's kernels for it (lib/runtime/kernels/native_fast_paths.ts registers them on the
 * native backend, over lib/runtime/kernels/conv2d.c), the layer is one kernel forward and one
 * backward; elsewhere, and for strides other than 1, it is `fused.conv2d`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { applyKernelPair, type KernelPair } from "./kernel_pair.ts";

/** Kernel names of the forward (x, filter, bias → y) and backward (∂y, x, filter → ∂x, ∂W, ∂b). */
export const CONV2D = "DiffusionConv2d";
export const CONV2D_GRAD = "DiffusionConv2dGrad";

const CONV2D_PAIR: KernelPair = {
  forward: CONV2D,
  backward: CONV2D_GRAD,
  inputs: ["x", "filter", "bias"],
  saved: ["x", "filter"],
  gradient: "dy",
};

/** y = conv(x, W) + b at stride 1, "same" padding, through the backend's kernels where it has them. */
export function conv2dSame(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D): tf.Tensor4D {
  if (tf.getKernel(CONV2D, tf.getBackend()) === undefined) {
    return tf.fused.conv2d({ x, filter, bias, strides: 1, pad: "same" });
  }
  return applyKernelPair(CONV2D_PAIR, [x, filter, bias]) as tf.Tensor4D;
}
