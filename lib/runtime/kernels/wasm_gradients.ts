/**
 * The convolution gradients the wasm backend lacks or runs slowly.
 *
 * tfjs-backend-wasm 4.22 ships no `Conv2DBackpropFilter`, so a conv net cannot train on it,
 * and its `Conv2DBackpropInput` is slow. Both become forward convolutions, which wasm runs
 * with XNNPACK (see conv_gradients.ts for the equations):
 *
 *   ∂L/∂w = conv2d(xᵀ, dyᵀ, dilation = stride),   ∂L/∂x = depthToSpace(conv2d(dy, G(w))).
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";
import { conv2DBackpropFilterAsConv, conv2DBackpropInputAsConv } from "./conv_gradients.ts";
import { replaceKernel } from "./registry.ts";

/** The kernels registered for "wasm": the filter and input gradients of conv2d. */
export const WASM_GRADIENT_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterAsConv("wasm"),
  conv2DBackpropInputAsConv("wasm"),
];

/**
 * Registers the convolution gradient kernels for the wasm backend (idempotent). Call it once
 * the wasm backend package is imported, before training on "wasm".
 */
export function registerWasmGradientKernels(): void {
  for (const config of WASM_GRADIENT_KERNELS) replaceKernel(config);
}
