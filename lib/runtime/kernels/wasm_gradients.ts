/**
 * The gradient kernels the wasm backend lacks or runs slowly.
 *
 * tfjs-backend-wasm 4.22 ships no `Conv2DBackpropFilter`, so a conv net cannot train on it,
 * and its `Conv2DBackpropInput` is slow. Both become forward convolutions, which wasm runs
 * with XNNPACK (see conv_gradients.ts for the equations):
 *
 *   ∂L/∂w = conv2d(xᵀ, dyᵀ, dilation = stride),   ∂L/∂x = depthToSpace(conv2d(dy, G(w))).
 *
 * Nor does it ship `UnsortedSegmentSum`, the gradient of a gather, so an embedding table (the
 * tiny CLIP's token embedding) cannot train on it either. Rows of x are summed by segment,
 *
 *   out[s, …] = Σ_{i : ids[i] = s} x[i, …],   s < numSegments,
 *
 * with one id a row of x; a row whose id lies outside [0, numSegments) is dropped, as in
 * TensorFlow.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { conv2DBackpropFilterAsConv, conv2DBackpropInputAsConv } from "./conv_gradients.ts";
import { type KernelBackend, KernelRunner, replaceKernel } from "./registry.ts";

/** `UnsortedSegmentSum` for `backendName`, on host copies of its inputs (see the module comment). */
export function unsortedSegmentSumOnHost(backendName: string): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const runner = new KernelRunner(backendName, backend as KernelBackend);
    const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
    const { numSegments } = attrs as unknown as { numSegments: number };
    const rows = segmentIds.shape.reduce((a, b) => a * b, 1);
    const rowSize = x.shape.slice(segmentIds.shape.length).reduce((a, b) => a * b, 1);
    const values = runner.backend.readSync(x.dataId) as tf.TypedArray;
    const ids = runner.backend.readSync(segmentIds.dataId) as tf.TypedArray;
    const out = x.dtype === "int32"
      ? new Int32Array(numSegments * rowSize)
      : new Float32Array(numSegments * rowSize);
    for (let i = 0; i < rows; i++) {
      const s = ids[i];
      if (s < 0 || s >= numSegments) continue;
      for (let j = 0; j < rowSize; j++) out[s * rowSize + j] += values[i * rowSize + j];
    }
    return runner.write(out, [numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  };
  return { kernelName: tf.UnsortedSegmentSum, backendName, kernelFunc };
}

/**
 * The kernels registered for "wasm": the filter and input gradients of conv2d, and the
 * segment sum of a gather's gradient.
 */
export const WASM_GRADIENT_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterAsConv("wasm"),
  conv2DBackpropInputAsConv("wasm"),
  unsortedSegmentSumOnHost("wasm"),
];

/**
 * Registers the gradient kernels for the wasm backend (idempotent). Call it once
 * the wasm backend package is imported, before training on "wasm".
 */
export function registerWasmGradientKernels(): void {
  for (const config of WASM_GRADIENT_KERNELS) replaceKernel(config);
}
