/**
 * A `Tile` for tfjs-backend-wasm 4.22 that copies runs instead of elements. The stock kernel
 * computes every output element's source index one at a time; the U-Net's nearest-neighbour
 * upsampling (lib/core/nn/upsample.ts) tiles its activations twice, and on wasm that was a
 * quarter of a sampling step. With shape S, repetitions R and output shape O = S·R,
 *
 *   out[o₀, …, o_{r−1}] = x[o₀ mod S₀, …, o_{r−1} mod S_{r−1}],
 *
 * which is filled axis by axis: the innermost rows of x are copied R_{r−1} times each, then the
 * block of every outer axis (its S_d sub-blocks, already tiled) is copied R_d − 1 times after
 * itself, all on views of the wasm heap.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type FastPath, registerFastPaths } from "./registry.ts";

/** The part of tfjs-backend-wasm's BackendWasm this kernel uses. */
interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.TypedArray;
}

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

/** Registers the run-copying `Tile` for wasm (idempotent), once the wasm package is imported. */
export function registerWasmTile(): void {
  registerFastPaths("wasm", [["Tile", tileKernel]]);
}
