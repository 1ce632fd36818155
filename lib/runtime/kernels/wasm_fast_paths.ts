/**
 * Kernels that replace slow stock ones of tfjs-backend-wasm 4.22.
 *
 * - `Slice` and `SplitV`: the stock kernels read their input with `readSync`, which copies the
 *   whole input out of the wasm heap on every call: cutting the 40 parameters of a
 *   522,048-value vector copies it 40 times (about 8 ms a step, more than any elementwise op).
 *   These take views of the heap instead, and copy each contiguous run of the result once:
 *
 *     out[i₀, …, i_{r−1}] = x[b₀ + i₀, …, b_{r−1} + i_{r−1}],
 *
 *   where the trailing axes taken whole, and the one before them, form runs that are
 *   contiguous in both x and out.
 * - `Sum` over a block of middle axes, such as Σ_{h,w} x[n, h, w, c] of GroupNorm: the stock
 *   kernel first transposes the reduced axes to the end. Viewed as [outer, R, 1, inner], the
 *   sum is R times XNNPACK's average pooling over an R×1 window, which reads x once in place
 *   (seven times faster on a [32, 16, 16, 32] activation):
 *
 *     Σ_{r<R} x[o, r, i] = R · avgPool_{R×1}(x)[o, 0, 0, i].
 *
 * - `Identity`: the stock kernel copies; this one shares the buffer (see identityKernel).
 * - `Tile`: the stock kernel computes every output element's source index one at a time; the
 *   U-Net's nearest-neighbour upsampling (lib/core/nn/upsample.ts) tiles its activations twice,
 *   a quarter of a sampling step. With shape S, repetitions R and output shape O = S·R,
 *
 *     out[o₀, …, o_{r−1}] = x[o₀ mod S₀, …, o_{r−1} mod S_{r−1}],
 *
 *   filled axis by axis: each innermost row of x is copied R_{r−1} times, then the block of every
 *   outer axis (its S_d sub-blocks, already tiled) is copied R_d − 1 times after itself.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type FastPath, type KernelBackend, KernelRunner, registerFastPaths } from "./registry.ts";

/** The part of tfjs-backend-wasm's BackendWasm these kernels use. */
interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.TypedArray;
  incRef(dataId: object): void;
}

/** Copies x[begin : begin + size] (any rank) into a new tensor, reading the heap in place. */
function sliceFromHeap(
  backend: WasmHeapBackend,
  x: tf.TensorInfo,
  begin: number[],
  size: number[],
): tf.TensorInfo {
  // makeOutput may grow the heap, which detaches earlier views: take them afterwards.
  const out = backend.makeOutput(size, x.dtype);
  const count = size.reduce((a, b) => a * b, 1);
  if (count === 0) return out;
  const xValues = backend.typedArrayFromHeap(x);
  const outValues = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  if (rank === 0) {
    outValues.set(xValues);
    return out;
  }
  const strides = tf.util.computeStrides(x.shape);
  // The run: the trailing axes taken whole, and the axis before them.
  let axis = rank - 1;
  while (axis > 0 && size[axis] === x.shape[axis] && begin[axis] === 0) axis--;
  const run = axis === rank - 1 ? size[axis] : size[axis] * strides[axis];
  const runStart = axis === rank - 1 ? begin[axis] : begin[axis] * strides[axis];
  // Odometer over the axes before the run.
  const index = new Array<number>(axis).fill(0);
  for (let offset = 0; offset < count; offset += run) {
    let from = runStart;
    for (let d = 0; d < axis; d++) from += (begin[d] + index[d]) * strides[d];
    outValues.set(xValues.subarray(from, from + run), offset);
    for (let d = axis - 1; d >= 0 && ++index[d] === size[d]; d--) index[d] = 0;
  }
  return out;
}

/** `Slice` (inputs `{x}`, attrs `{begin, size}` with −1 for "to the end"). */
const sliceKernel: FastPath = (fallback) => (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === "string") return fallback(args);
  const { begin, size } = args.attrs as unknown as { begin: number | number[]; size: number[] };
  const [begin_, size_] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  return sliceFromHeap(args.backend as WasmHeapBackend, x, begin_, size_);
};

/** `SplitV` (inputs `{x}`, attrs `{numOrSizeSplits, axis}`). */
const splitVKernel: FastPath = (fallback) => (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === "string") return fallback(args);
  const { numOrSizeSplits, axis } = args.attrs as unknown as {
    numOrSizeSplits: number | number[];
    axis: number | number[];
  };
  const along = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, along);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = [...x.shape];
    size[along] = s;
    const part = sliceFromHeap(args.backend as WasmHeapBackend, x, begin, size);
    begin[along] += s;
    return part;
  });
};

/**
 * `Sum` (inputs `{x}`, attrs `{axis, keepDims}`) of float32 tensors over contiguous axes that
 * leave the last axis out, as average pooling times the count; anything else goes to the stock
 * kernel.
 */
const sumKernel: FastPath = (fallback) => (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { axis, keepDims } = args.attrs as unknown as {
    axis: number | number[];
    keepDims: boolean;
  };
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
  const rank = x.shape.length;
  const first = axes[0], last = axes[axes.length - 1];
  const contiguous = axes.length > 0 && last - first === axes.length - 1 && last < rank - 1;
  if (x.dtype !== "float32" || !contiguous || tf.util.sizeFromShape(x.shape) === 0) {
    return fallback(args);
  }
  const runner = new KernelRunner("wasm", args.backend as unknown as KernelBackend);
  const product = (from: number, to: number) => x.shape.slice(from, to).reduce((a, b) => a * b, 1);
  const [outer, count, inner] = [
    product(0, first),
    product(first, last + 1),
    product(last + 1, rank),
  ];
  const view = { ...x, shape: [outer, count, 1, inner] };
  const pooled = runner.run("AvgPool", { x: view }, {
    filterSize: [count, 1],
    strides: [1, 1],
    pad: "valid",
    dimRoundingMode: undefined,
  } as unknown as tf.NamedAttrMap);
  const scale = runner.write(new Float32Array([count]), [], "float32");
  const sum = runner.run("Multiply", { a: pooled, b: scale }, {});
  runner.dispose(pooled, scale);
  const kept = x.shape.map((size, d) => (d >= first && d <= last ? 1 : size));
  const shape = keepDims ? kept : kept.filter((_, d) => d < first || d > last);
  return { ...sum, shape };
};

/**
 * `Identity` that shares its input's buffer, as cpu's does and wasm's own `Reshape`: tensors
 * are immutable, so a second reference is as good as a copy. The engine clones every tensor a
 * gradient will need (inputs of Conv2D, Multiply, …) with it, 60-odd a training step.
 */
const identityKernel: FastPath = (fallback) => (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === "string") return fallback(args);
  (args.backend as WasmHeapBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
};

/** `Tile` (inputs `{x}`, attrs `{reps}`). */
const tileKernel: FastPath = (fallback) => (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { reps } = args.attrs as unknown as { reps: number[] };
  const S = x.shape;
  const rank = S.length;
  if (x.dtype === "string" || rank === 0 || reps.length !== rank) return fallback(args);
  const backend = args.backend as WasmHeapBackend;
  const O = S.map((s, d) => s * reps[d]);
  // makeOutput may grow the heap, which detaches earlier views: take them afterwards.
  const result = backend.makeOutput(O, x.dtype);
  if (tf.util.sizeFromShape(O) === 0) return result;
  const xValues = backend.typedArrayFromHeap(x);
  const out = backend.typedArrayFromHeap(result);
  const xStrides = [...tf.util.computeStrides(S), 1];
  const outStrides = [...tf.util.computeStrides(O), 1];
  const fill = (d: number, from: number, to: number) => {
    if (d === rank - 1) {
      const row = xValues.subarray(from, from + S[d]);
      for (let k = 0; k < reps[d]; k++) out.set(row, to + k * S[d]);
      return;
    }
    for (let i = 0; i < S[d]; i++) fill(d + 1, from + i * xStrides[d], to + i * outStrides[d]);
    const span = S[d] * outStrides[d];
    for (let k = 1; k < reps[d]; k++) out.copyWithin(to + k * span, to, to + span);
  };
  fill(0, 0, 0);
  return result;
};

/** The replacements, by kernel name. */
const FAST_PATHS: [string, FastPath][] = [
  ["Slice", sliceKernel],
  ["SplitV", splitVKernel],
  ["Sum", sumKernel],
  ["Identity", identityKernel],
  ["Tile", tileKernel],
];

/**
 * Registers the fast `Slice`, `SplitV`, `Sum`, `Identity` and `Tile` for wasm (idempotent). Call it once
 * the wasm backend package is imported.
 */
export function registerWasmFastPaths(): void {
  registerFastPaths("wasm", FAST_PATHS);
}
