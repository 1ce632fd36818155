/**
 * Kernels and ops that make training exact and fast on every backend: the convolution
 * gradients as forward convolutions (registered for wasm and cpu), nearest-neighbour upsampling
 * with an exact gradient, faster Slice, SplitV, Sum and Identity for wasm, the native backend's
 * kernels with their shape operands made once, and SiLU(GroupNorm(x)), fused on the native
 * backend by the project's own TensorFlow ops.
 *
 * @module
 */

export { conv2DBackpropFilterAsConv, conv2DBackpropInputAsConv } from "./conv_gradients.ts";
export { KernelRunner, registerFastPaths, replaceKernel } from "./registry.ts";
export { registerWasmGradientKernels, WASM_GRADIENT_KERNELS } from "./wasm_gradients.ts";
export { registerWasmFastPaths } from "./wasm_fast_paths.ts";
export { registerNativeFastPaths } from "./native_fast_paths.ts";
export {
  GROUP_NORM_SILU,
  GROUP_NORM_SILU_GRAD,
  groupNormSiLU,
} from "../../core/nn/group_norm_silu.ts";
export { CPU_GRADIENT_KERNELS, registerCpuGradientKernels } from "./cpu_gradients.ts";
export { upsampleNearest2x } from "../../core/nn/upsample.ts";
