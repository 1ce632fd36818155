/**
 * A fast filter gradient for the pure-JavaScript cpu backend.
 *
 * The stock cpu `Conv2DBackpropFilter` loops over every output element per filter tap and
 * takes minutes per U-Net step; as a forward convolution (see conv_gradients.ts)
 *
 *   ∂L/∂w = transpose(conv2d(transpose(x), transpose(dy), dilation = stride))
 *
 * it runs on the cpu's convolution loop, over twenty times faster.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";
import { conv2DBackpropFilterAsConv } from "./conv_gradients.ts";
import { replaceKernel } from "./registry.ts";

/** The kernels registered for "cpu": the filter gradient of conv2d. */
export const CPU_GRADIENT_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterAsConv("cpu"),
];

/** Registers the fast filter gradient kernel for the cpu backend (idempotent). */
export function registerCpuGradientKernels(): void {
  for (const config of CPU_GRADIENT_KERNELS) replaceKernel(config);
}
