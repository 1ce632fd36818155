/**
 * Calling and registering TensorFlow.js kernels below the op level: a runner that calls a
 * backend's kernels on tensor infos (the convolution gradients and the wasm fast paths are
 * written with it), and the registration of the project's kernels in place of stock ones.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** Explicit NHWC padding, [[0, 0], [top, bottom], [left, right], [0, 0]]. */
export type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

/** The kernel-level view of a backend: what every tfjs backend implements. */
export interface KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
  readSync(dataId: object): tf.BackendValues;
  write(values: tf.TypedArray, shape: number[], dtype: tf.DataType): object;
}

/** Calls the kernels registered for one backend, and frees what they made. */
export class KernelRunner {
  constructor(readonly backendName: string, readonly backend: KernelBackend) {}

  run(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap): tf.TensorInfo {
    const config = tf.getKernel(kernelName, this.backendName);
    if (config === undefined) {
      throw new Error(
        `the ${this.backendName} backend has no '${kernelName}' kernel, which the project's ` +
          `kernels need: use a backend that registers it (cpu, wasm)`,
      );
    }
    const out = config.kernelFunc({ inputs, backend: this.backend, attrs });
    return Array.isArray(out) ? out[0] : out;
  }

  transpose(x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
    return this.run("Transpose", { x }, { perm });
  }

  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.run("Reshape", { x }, { shape });
  }

  slice(x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
    return this.run("Slice", { x }, { begin, size });
  }

  conv2d(x: tf.TensorInfo, filter: tf.TensorInfo, dilations: [number, number], pad: Pad4) {
    return this.run("Conv2D", { x, filter }, {
      strides: [1, 1],
      pad,
      dataFormat: "NHWC",
      dilations,
      dimRoundingMode: undefined,
    } as unknown as tf.NamedAttrMap);
  }

  /** The values of a float32 tensor, on the host. */
  read(x: tf.TensorInfo): Float32Array {
    return this.backend.readSync(x.dataId) as Float32Array;
  }

  /** A new tensor on the backend holding `values`. */
  write(values: tf.TypedArray, shape: number[], dtype: tf.DataType): tf.TensorInfo {
    return { dataId: this.backend.write(values, shape, dtype), shape, dtype };
  }

  dispose(...infos: tf.TensorInfo[]) {
    for (const info of infos) this.backend.disposeData(info.dataId);
  }
}

/**
 * Registers `config` in place of whatever kernel of that name the backend has, and returns
 * the kernel it replaced (undefined when there was none). Registering the same function
 * again is a no-op.
 */
export function replaceKernel(config: tf.KernelConfig): tf.KernelConfig | undefined {
  const previous = tf.getKernel(config.kernelName, config.backendName);
  if (previous?.kernelFunc === config.kernelFunc) return previous;
  if (previous !== undefined) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
  return previous;
}

/** A kernel built around the stock one it replaces, which it may call for the cases it leaves. */
export type FastPath = (stock: tf.KernelFunc) => tf.KernelFunc;

/**
 * Registers each fast path in place of the backend's kernel of that name, built around that
 * kernel (idempotent: a kernel already replaced stays). The stock kernel's setup still runs
 * when the backend starts (wasm's binds its functions there), as only the replacement is
 * registered by then.
 */
export function registerFastPaths(
  backendName: string,
  paths: readonly (readonly [string, FastPath])[],
): void {
  for (const [kernelName, make] of paths) {
    const stock = tf.getKernel(kernelName, backendName);
    if (stock === undefined) {
      throw new Error(
        `the ${backendName} backend has no '${kernelName}' kernel: import its package first`,
      );
    }
    if ((stock as { fastPath?: boolean }).fastPath) continue;
    replaceKernel({
      kernelName,
      backendName,
      kernelFunc: make(stock.kernelFunc),
      setupFunc: stock.setupFunc,
      fastPath: true,
    } as tf.KernelConfig);
  }
}
