/**
 * The affine map of a fully connected layer, y = x W + b for x [B, in], W [in, out], b [out],
 * with its gradient
 *
 *   ∂x = ∂y Wᵀ,   ∂W = xᵀ ∂y,   ∂b = Σ_B ∂y.
 *
 * TensorFlow.js's `fused.matMul` works on batches of matrices: it reshapes both operands to 3-D
 * and back, and on the native backend adds the bias as a separate op, about 15 dispatches
 * forward and backward for one layer. Where the backend has the project's kernels for the
 * 2-D product (lib/runtime/kernels/native_fast_paths.ts registers them), the layer costs two
 * forward and three backward; elsewhere it is `fused.matMul`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { applyKernelPair, type KernelPair } from "./kernel_pair.ts";

/** Kernel names of the 2-D forward (x, w, b → y) and backward (∂y, x, w → ∂x, ∂w, ∂b). */
export const LINEAR = "DiffusionLinear";
export const LINEAR_GRAD = "DiffusionLinearGrad";

const LINEAR_PAIR: KernelPair = {
  forward: LINEAR,
  backward: LINEAR_GRAD,
  inputs: ["x", "weight", "bias"],
  saved: ["x", "weight"],
  gradient: "dy",
};

/** y = x W + b, through the backend's 2-D kernels where it has them. */
export function linear(x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  if (tf.getKernel(LINEAR, tf.getBackend()) === undefined) {
    return tf.fused.matMul({ a: x, b: weight, bias }) as tf.Tensor2D;
  }
  return applyKernelPair(LINEAR_PAIR, [x, weight, bias]) as tf.Tensor2D;
}
