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
 * - input gradient: ∂L/∂x[n, h, w, c] = Σ_{i, j, a, b, o : s·i + a − p_t = h, s·j + b − p_l = w}
 *   dy[n, i, j, o] · w[a, b, c, o]. Split by the residues of h + p_t and w + p_l modulo s, each
 *   residue is a stride-1 convolution of dy with a few taps of w, flipped and transposed; all
 *   s² of them run as one convolution with s²·C_in output channels, shuffled back into place
 *   (a sub-pixel convolution, see conv2DBackpropInputAsConv).
 *
 * Backends whose forward convolution is fast and whose gradient kernels are missing or slow
 * (wasm, cpu) run these instead. The kernels call the backend's own Conv2D, Transpose, Reshape,
 * PadV2 and Slice kernels on tensor infos and free every intermediate.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type KernelBackend, KernelRunner, type Pad4 } from "./registry.ts";

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
export function convGeometry(
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
 * x [N, H, W, C] → [C, H, W, N] as two transposes that move contiguous runs, [N, H·W·C] →
 * [H·W·C, N] and [H·W, C, N] → [C, H·W, N]: on wasm, twice as fast as the one 4-D transpose.
 */
function batchToChannels(runner: KernelRunner, x: tf.TensorInfo): tf.TensorInfo {
  const [n, h, w, c] = x.shape;
  const flat = runner.reshape(x, [n, h * w * c]);
  const rows = runner.transpose(flat, [1, 0]);
  const split = runner.reshape(rows, [h * w, c, n]);
  const moved = runner.transpose(split, [1, 0, 2]);
  const out = runner.reshape(moved, [c, h, w, n]);
  runner.dispose(flat, rows, split, moved);
  return out;
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

    const xT = batchToChannels(runner, x); // [Ci, H, W, N]
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
 * convolution) as one stride-1 forward convolution on dy, whatever the stride: a sub-pixel
 * decomposition.
 *
 * Along one spatial axis (kernel k, stride s, top padding p), ∂L/∂x[h] gathers the taps a with
 * s·i + a − p = h. Writing h + p = s·q + r (0 ≤ r < s), those taps are a = r + s·m, and
 *
 *   ∂L/∂x[s·q + r − p] = Σ_{j<M} dyP[q + j] · G_r[j],   G_r[j] = w[r + s·(M − 1 − j)] (0 if ≥ k),
 *
 * with M = ⌈k/s⌉ and dyP dy padded by M − 1 in front: for each residue r a stride-1
 * convolution of dy with an M-tap filter. The s_h·s_w residues become the output channels of
 * one convolution with G [M_h, M_w, C_out, s_h·s_w·C_in], and a depth-to-space shuffle puts
 * each back at its place:
 *
 *   ∂L/∂x = crop( depthToSpace_s( conv2d(pad(dy), G) ) ).
 *
 * At stride 1 this is the familiar convolution of dy with w flipped in space and transposed
 * (G[j] = w[k − 1 − j]). At stride 2 it does a quarter of the work of convolving a
 * zero-dilated dy, which multiplies three zeros for every value. Inputs `{dy, filter}`, attrs
 * `{strides, pad, dimRoundingMode, inputShape}` as tfjs' Conv2DBackpropInput kernel.
 */
export function conv2DBackpropInputAsConv(backendName: string): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const runner = new KernelRunner(backendName, backend as KernelBackend);
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const inputShape = (attrs as { inputShape: number[] }).inputShape;
    const info = convGeometry("Conv2DBackpropInput", inputShape, filter.shape, attrs ?? {});
    const [n, ho, wo] = dy.shape;
    const [kh, kw, ci] = filter.shape;
    const rows = subPixelAxis(inputShape[1], kh, info.strideHeight, info.padInfo.top, ho);
    const cols = subPixelAxis(inputShape[2], kw, info.strideWidth, info.padInfo.left, wo);

    const g = subPixelFilter(runner, filter, rows, cols);
    const padded = cropNegativePadding(
      runner,
      dy,
      rows.before,
      rows.after,
      cols.before,
      cols.after,
    );
    const conv = runner.conv2d(padded.x, g, [1, 1], padded.pad); // [N, Q_h, Q_w, s_h·s_w·C_in]
    if (padded.x !== dy) runner.dispose(padded.x);
    runner.dispose(g);

    const [sh, sw] = [rows.stride, cols.stride];
    let grid = conv; // → [N, Q_h·s_h, Q_w·s_w, C_in]
    if (sh * sw > 1) {
      const split = runner.reshape(conv, [n * rows.count, cols.count, sh, sw * ci]);
      const shuffled = runner.transpose(split, [0, 2, 1, 3]);
      grid = runner.reshape(shuffled, [n, rows.count * sh, cols.count * sw, ci]);
      runner.dispose(conv, split, shuffled);
    }
    const [h, w] = [inputShape[1], inputShape[2]];
    if (rows.crop === 0 && cols.crop === 0 && grid.shape[1] === h && grid.shape[2] === w) {
      return grid;
    }
    const dx = runner.slice(grid, [0, rows.crop, cols.crop, 0], [n, h, w, ci]);
    runner.dispose(grid);
    return dx;
  };
  return { kernelName: "Conv2DBackpropInput", backendName, kernelFunc };
}

/**
 * The sub-pixel geometry of one axis of length `size` (kernel k, stride s, top padding p, dy
 * of length `outSize`): M taps per residue; Q = the residue convolution's output length,
 * from q₀ = ⌊p/s⌋ to ⌊(p + size − 1)/s⌋; dy's padding before and after (negative: rows to
 * crop), and where x starts in the shuffled grid of length Q·s.
 */
function subPixelAxis(size: number, k: number, s: number, p: number, outSize: number) {
  const taps = Math.ceil(k / s);
  const q0 = Math.floor(p / s);
  const count = Math.floor((p + size - 1) / s) - q0 + 1;
  return {
    stride: s,
    taps,
    count,
    before: taps - 1 - q0,
    after: count - outSize + q0,
    crop: p - s * q0,
  };
}

type SubPixelAxis = ReturnType<typeof subPixelAxis>;

/**
 * G [M_h, M_w, C_out, s_h·s_w·C_in] from w [k_h, k_w, C_in, C_out]:
 *
 *   G[j_h, j_w, o, (r_h, r_w, c)] = w[r_h + s_h(M_h − 1 − j_h), r_w + s_w(M_w − 1 − j_w), c, o],
 *
 * zero where a tap falls past the kernel's end. Filters are small (at most a few hundred
 * thousand values), so the values are rearranged on the host in one pass; as kernels (a
 * reverse or a gather, then transposes) wasm took longer than the convolution itself.
 */
function subPixelFilter(
  runner: KernelRunner,
  filter: tf.TensorInfo,
  rows: SubPixelAxis,
  cols: SubPixelAxis,
): tf.TensorInfo {
  const [kh, kw, ci, co] = filter.shape;
  const w = runner.read(filter);
  const phases = rows.stride * cols.stride;
  const shape = [rows.taps, cols.taps, co, phases * ci];
  const g = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let jh = 0; jh < rows.taps; jh++) {
    for (let jw = 0; jw < cols.taps; jw++) {
      for (let rh = 0; rh < rows.stride; rh++) {
        const a = rh + rows.stride * (rows.taps - 1 - jh);
        for (let rw = 0; rw < cols.stride; rw++) {
          const b = rw + cols.stride * (cols.taps - 1 - jw);
          if (a >= kh || b >= kw) continue;
          const phase = rh * cols.stride + rw;
          for (let o = 0; o < co; o++) {
            const to = ((jh * cols.taps + jw) * co + o) * phases * ci + phase * ci;
            const from = (a * kw + b) * ci * co + o;
            for (let c = 0; c < ci; c++) g[to + c] = w[from + c * co];
          }
        }
      }
    }
  }
  return runner.write(g, shape, "float32");
}
