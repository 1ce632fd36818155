/**
 * Kernels and ops that make training exact and fast on every backend: the convolution
 * gradients as forward convolutions (registered for wasm and cpu) and nearest-neighbour
 * upsampling with an exact gradient, and faster Slice, SplitV, Sum and Identity for wasm.
 *
 * @module
 */

export {
  conv2DBackpropFilterAsConv,
  conv2DBackpropInputAsConv,
  replaceKernel,
} from "./conv_gradients.ts";
export { registerWasmGradientKernels, WASM_GRADIENT_KERNELS } from "./wasm_gradients.ts";
export { registerWasmFastPaths } from "./wasm_fast_paths.ts";
export { CPU_GRADIENT_KERNELS, registerCpuGradientKernels } from "./cpu_gradients.ts";
export { upsampleNearest2x } from "./upsample.ts";
