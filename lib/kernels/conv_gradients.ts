/**
 * The two gradients of a 2-D convolution, written as forward convolutions.
 *
 * A convolution (NHWC, stride s, top/left padding p_t, p_l, dilation 1)
 *
 *   y[n, i, j, o] = Σ_{a, b, c} x[n, s·i + a − p_t, s·j + b − p_l, c] · w[a, b, c, o]
 *
 * has two gradients, and both are convolutions again:
 *
 * - filter gradient: ∂L/∂w[a, b, c, o] = Σ_{n, i, j} x[n, s·i + a − p_t, s·j + b − p_l, c] · dy[n, i, j, o].
 *   Read x as a batch of c images with n channels, dy as a filter of size Ho×Wo from n to o
 *   channels: it is a stride-1 convolution whose dilation is s.
 * - input gradient: ∂L/∂x[n, h, w, c] = Σ_{a, b, o} D[n, h + p_t − a, w + p_l − b, o] · w[a, b, c, o],
 *   where D is dy with s − 1 zeros inserted between its rows and columns: a stride-1
 *   convolution of D with the filter flipped in space and transposed from (c, o) to (o, c).
 *
 * Backends whose forward convolution is fast and whose gradient kernels are missing or slow
 * (wasm, cpu) run these instead. The kernels call the backend's own Conv2D, Transpose, Reshape,
 * PadV2, Reverse and Slice kernels on tensor infos and free every intermediate.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

/** The kernel-level view of a backend: what every tfjs backend implements. */
interface KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Calls the kernels registered for one backend, and frees what they made. */
class KernelRunner {
  constructor(readonly backendName: string, readonly backend: KernelBackend) {}

  run(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap): tf.TensorInfo {
    const config = tf.getKernel(kernelName, this.backendName);
    if (config === undefined) {
      throw new Error(
        `the ${this.backendName} backend has no '${kernelName}' kernel, which the convolution ` +
          `gradients need: use a backend that registers it (cpu, wasm)`,
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

  dispose(...infos: tf.TensorInfo[]) {
    for (const info of infos) this.backend.disposeData(info.dataId);
  }
}

/**
 * The padding of a stride-1 convolution, where a negative amount means rows to crop: crops
 * `x` (NHWC) where needed and returns the cropped tensor with the non-negative padding left.
 * The caller frees the returned tensor when it differs from `x`.
 */
function cropNegativePadding(
  runner: KernelRunner,
  x: tf.TensorInfo,
  top: number,
  bottom: number,
  left: number,
  right: number,
): { x: tf.TensorInfo; pad: Pad4 } {
  const [t, b, l, r] = [top, bottom, left, right].map((p) => Math.max(p, 0));
  const pad: Pad4 = [[0, 0], [t, b], [l, r], [0, 0]];
  if (top >= 0 && bottom >= 0 && left >= 0 && right >= 0) return { x, pad };
  const [n, h, w, c] = x.shape;
  const cropTop = Math.max(-top, 0), cropLeft = Math.max(-left, 0);
  const size = [n, h - cropTop - Math.max(-bottom, 0), w - cropLeft - Math.max(-right, 0), c];
  return { x: runner.slice(x, [0, cropTop, cropLeft, 0], size), pad };
}

/** Padding and output size of the convolution whose gradient is asked for. */
function convGeometry(
  kernelName: string,
  xShape: number[],
  filterShape: number[],
  attrs: tf.NamedAttrMap,
) {
  const { strides, pad, dimRoundingMode, dataFormat } = attrs as unknown as {
    strides: number | [number, number];
    pad: "same" | "valid" | number | Pad4;
    dimRoundingMode?: "floor" | "round" | "ceil";
    dataFormat?: "NHWC" | "NCHW";
  };
  if (dataFormat === "NCHW") {
    throw new Error(`${kernelName}: only NHWC (channels last) is supported; got NCHW`);
  }
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
  );
}

/**
 * The filter gradient of a 2-D convolution as one forward convolution:
 *
 *   ∂L/∂w = transpose₍₁,₂,₀,₃₎( conv2d( transpose₍₃,₁,₂,₀₎(x), transpose₍₁,₂,₀,₃₎(dy),
 *                                       stride 1, dilation s, padding (p_t, p_l) ) )
 *
 * Inputs `{x, dy}`, attrs `{strides, pad, dimRoundingMode, filterShape}` as tfjs'
 * Conv2DBackpropFilter kernel.
 */
export function conv2DBackpropFilterAsConv(backendName: string): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const runner = new KernelRunner(backendName, backend as KernelBackend);
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const filterShape = (attrs as { filterShape: number[] }).filterShape;
    const info = convGeometry("Conv2DBackpropFilter", x.shape, filterShape, attrs ?? {});
    const { top, left } = info.padInfo;
    // Rows of x the convolution reads past its end (negative: rows it never reads).
    const bottom = (info.outHeight - 1) * info.strideHeight + info.filterHeight - top - x.shape[1];
    const right = (info.outWidth - 1) * info.strideWidth + info.filterWidth - left - x.shape[2];

    const xT = runner.transpose(x, [3, 1, 2, 0]); // [Ci, H, W, N]
    const dyT = runner.transpose(dy, [1, 2, 0, 3]); // [Ho, Wo, N, Co]
    const cropped = cropNegativePadding(runner, xT, top, bottom, left, right);
    const conv = runner.conv2d(
      cropped.x,
      dyT,
      [info.strideHeight, info.strideWidth],
      cropped.pad,
    ); // [Ci, kh, kw, Co]
    const dw = runner.transpose(conv, [1, 2, 0, 3]); // [kh, kw, Ci, Co]
    if (cropped.x !== xT) runner.dispose(cropped.x);
    runner.dispose(xT, dyT, conv);
    return dw;
  };
  return { kernelName: "Conv2DBackpropFilter", backendName, kernelFunc };
}

/**
 * The input gradient of a 2-D convolution (also the forward pass of a transposed
 * convolution) as one forward convolution:
 *
 *   ∂L/∂x = conv2d( D, transpose₍₀,₁,₃,₂₎(reverse₍₀,₁₎(w)), stride 1,
 *                   padding (kh − 1 − p_t, kw − 1 − p_l) )
 *
 * where D is dy with s − 1 zeros inserted after each row and column. Inputs `{dy, filter}`,
 * attrs `{strides, pad, dimRoundingMode, inputShape}` as tfjs' Conv2DBackpropInput kernel.
 */
export function conv2DBackpropInputAsConv(backendName: string): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const runner = new KernelRunner(backendName, backend as KernelBackend);
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const inputShape = (attrs as { inputShape: number[] }).inputShape;
    const info = convGeometry("Conv2DBackpropInput", inputShape, filter.shape, attrs ?? {});
    const sh = info.strideHeight, sw = info.strideWidth;
    const kh = info.filterHeight, kw = info.filterWidth;
    const [n, ho, wo, co] = dy.shape;

    // D: dy with s − 1 zeros after every row and column, [N, Ho·sh, Wo·sw, Co].
    let dilated = dy;
    if (sh > 1 || sw > 1) {
      const split = runner.reshape(dy, [n, ho, 1, wo, 1, co]);
      const padded = runner.run("PadV2", { x: split }, {
        paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]],
        constantValue: 0,
      });
      dilated = runner.reshape(padded, [n, ho * sh, wo * sw, co]);
      runner.dispose(split, padded);
    }
    const top = kh - 1 - info.padInfo.top;
    const left = kw - 1 - info.padInfo.left;
    // Output rows = rows(D) + top + bottom − kh + 1 must equal the input's height.
    const bottom = inputShape[1] + kh - 1 - dilated.shape[1] - top;
    const right = inputShape[2] + kw - 1 - dilated.shape[2] - left;
    const cropped = cropNegativePadding(runner, dilated, top, bottom, left, right);

    const flipped = runner.run("Reverse", { x: filter }, { dims: [0, 1] });
    const filterT = runner.transpose(flipped, [0, 1, 3, 2]); // [kh, kw, Co, Ci]
    const dx = runner.conv2d(cropped.x, filterT, [1, 1], cropped.pad);
    if (cropped.x !== dilated) runner.dispose(cropped.x);
    if (dilated !== dy) runner.dispose(dilated);
    runner.dispose(flipped, filterT);
    return dx;
  };
  return { kernelName: "Conv2DBackpropInput", backendName, kernelFunc };
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
