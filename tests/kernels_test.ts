import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import {
  CPU_GRADIENT_KERNELS,
  registerCpuGradientKernels,
} from "../lib/runtime/kernels/cpu_gradients.ts";
import {
  registerWasmGradientKernels,
  WASM_GRADIENT_KERNELS,
} from "../lib/runtime/kernels/wasm_gradients.ts";
import { upsampleNearest2x } from "../lib/core/nn/upsample.ts";
import { maxPool2x } from "../lib/core/nn/layers.ts";
import { conv2DBackpropInputAsConv } from "../lib/runtime/kernels/conv_gradients.ts";
import { replaceKernel } from "../lib/runtime/kernels/registry.ts";
import { registerWasmFastPaths } from "../lib/runtime/kernels/wasm_fast_paths.ts";
import { Random } from "../lib/core/random.ts";

type Shape4 = [number, number, number, number];
type Pad = "same" | "valid" | number;
type Stride = number | [number, number];

await tf.setBackend("cpu");
const random = new Random(7);
const values = (shape: number[]) =>
  Float32Array.from(random.normals(shape.reduce((a, b) => a * b, 1)));

/** max |a − b| / max |b|: the error relative to the reference's scale. */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  assert.equal(actual.length, expected.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

function assertClose(actual: Float32Array[], expected: Float32Array[], tolerance: number) {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => {
    const error = relativeError(a, expected[i]);
    assert.ok(error <= tolerance, `gradient ${i}: relative error ${error} > ${tolerance}`);
  });
}

// A small conv net: strides 1 and 2, same and valid padding, batch 3, and a transposed
// convolution (whose forward pass is Conv2DBackpropInput and whose filter gradient is
// Conv2DBackpropFilter with input and dy swapped).
const net = {
  x: [3, 8, 8, 2] as Shape4,
  w1: [3, 3, 2, 4] as Shape4, // stride 1, same  → [3, 8, 8, 4]
  w2: [3, 3, 4, 6] as Shape4, // stride 2, same  → [3, 4, 4, 6]
  w3: [2, 2, 6, 5] as Shape4, // stride 1, valid → [3, 3, 3, 5]
  w4: [3, 3, 4, 5] as Shape4, // transposed, stride 2, valid → [3, 7, 7, 4]
  target: [3, 7, 7, 4] as Shape4,
};
const netValues = Object.fromEntries(
  Object.entries(net).map(([name, shape]) => [name, values(shape)]),
) as Record<keyof typeof net, Float32Array>;

/** Gradients of the net's loss with respect to its input and its four filters. */
function netGradients(): Float32Array[] {
  return tf.tidy(() => {
    const t = (name: keyof typeof net) => tf.tensor4d(netValues[name], net[name]);
    const target = t("target");
    const loss = (
      x: tf.Tensor4D,
      w1: tf.Tensor4D,
      w2: tf.Tensor4D,
      w3: tf.Tensor4D,
      w4: tf.Tensor4D,
    ) => {
      let h = tf.tanh(tf.conv2d(x, w1, 1, "same"));
      h = tf.tanh(tf.conv2d(h, w2, 2, "same"));
      h = tf.tanh(tf.conv2d(h, w3, 1, "valid"));
      const y = tf.conv2dTranspose(h, w4, net.target, 2, "valid");
      return tf.sum(tf.square(tf.sub(y, target)));
    };
    const grads = tf.grads((...p: tf.Tensor[]) =>
      loss(...(p as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D]))
    );
    return grads([t("x"), t("w1"), t("w2"), t("w3"), t("w4")]).map((g) =>
      g.dataSync() as Float32Array
    );
  });
}

// Single convolutions of every geometry the kernels handle: odd sizes, strides 1–3, same,
// valid and explicit padding, including paddings that make the rewrite crop.
const cases: { x: Shape4; w: Shape4; stride: Stride; pad: Pad }[] = [
  { x: [3, 8, 8, 2], w: [3, 3, 2, 4], stride: 1, pad: "same" },
  { x: [3, 9, 7, 2], w: [3, 3, 2, 4], stride: 2, pad: "same" },
  { x: [3, 9, 7, 2], w: [3, 3, 2, 4], stride: 2, pad: "valid" },
  { x: [2, 15, 15, 3], w: [2, 2, 3, 2], stride: 2, pad: "same" },
  { x: [2, 10, 11, 3], w: [4, 3, 3, 2], stride: 3, pad: "valid" },
  { x: [2, 8, 8, 3], w: [3, 3, 3, 2], stride: 2, pad: 1 },
  { x: [2, 6, 6, 3], w: [1, 1, 3, 2], stride: 1, pad: 2 },
  // Strides past the kernel (residues without a tap) and unequal strides.
  { x: [2, 7, 8, 3], w: [1, 1, 3, 2], stride: 2, pad: "valid" },
  { x: [2, 11, 10, 2], w: [2, 2, 2, 3], stride: 3, pad: "same" },
  { x: [2, 9, 8, 3], w: [3, 2, 3, 2], stride: [2, 1], pad: "same" },
  { x: [1, 16, 16, 4], w: [3, 3, 4, 8], stride: 2, pad: "same" },
];
const caseValues = cases.map((c) => {
  const y = tf.tidy(() =>
    tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.w) as tf.Tensor4D, c.stride, c.pad)
  );
  const dy = values(y.shape);
  y.dispose();
  return { x: values(c.x), w: values(c.w), dy, dyShape: y.shape as Shape4 };
});

/** Gradients of Σ conv2d(x, w)·dy with respect to x and w, case by case. */
function caseGradients(): Float32Array[][] {
  return cases.map((c, i) =>
    tf.tidy(() => {
      const v = caseValues[i];
      const dy = tf.tensor4d(v.dy, v.dyShape);
      const grads = tf.grads((x: tf.Tensor, w: tf.Tensor) =>
        tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad), dy))
      );
      return grads([tf.tensor4d(v.x, c.x), tf.tensor4d(v.w, c.w)]).map((g) =>
        g.dataSync() as Float32Array
      );
    })
  );
}

/**
 * The filter gradient by its definition, loop by loop:
 * ∂L/∂w[a, b, c, o] = Σ_{n, i, j} x[n, s·i + a − p_t, s·j + b − p_l, c] · dy[n, i, j, o].
 */
function naiveFilterGradient(
  x: Float32Array,
  [n, h, w, ci]: Shape4,
  dy: Float32Array,
  [, ho, wo, co]: Shape4,
  [kh, kw]: Shape4,
  stride: number,
  padTop: number,
  padLeft: number,
): Float32Array {
  const dw = new Float32Array(kh * kw * ci * co);
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      for (let c = 0; c < ci; c++) {
        for (let o = 0; o < co; o++) {
          let sum = 0;
          for (let m = 0; m < n; m++) {
            for (let i = 0; i < ho; i++) {
              const r = stride * i + a - padTop;
              if (r < 0 || r >= h) continue;
              for (let j = 0; j < wo; j++) {
                const q = stride * j + b - padLeft;
                if (q < 0 || q >= w) continue;
                sum += x[((m * h + r) * w + q) * ci + c] * dy[((m * ho + i) * wo + j) * co + o];
              }
            }
          }
          dw[((a * kw + b) * ci + c) * co + o] = sum;
        }
      }
    }
  }
  return dw;
}

/** Runs `body` and checks that it left no tensor and no backend buffer behind. */
function withoutLeaks<T>(body: () => T): T {
  const backend = tf.backend();
  const tensors = tf.memory().numTensors, buffers = backend.numDataIds();
  const result = body();
  assert.equal(tf.memory().numTensors, tensors, "tensors leaked");
  assert.equal(backend.numDataIds(), buffers, "backend buffers leaked");
  return result;
}

// References from the cpu backend's stock kernels, computed before any kernel is replaced.
const stockNet = netGradients();
const stockCases = caseGradients();

describe("cpu filter gradient as a forward convolution", () => {
  it("matches its definition, loop by loop", () => {
    // Case 3: 2×2 filter, stride 2, "same" padding of a 15×15 input: p_t = p_l = 0.
    const c = cases[3], v = caseValues[3];
    const naive = naiveFilterGradient(v.x, c.x, v.dy, v.dyShape, c.w, c.stride as number, 0, 0);
    assert.ok(relativeError(stockCases[3][1], naive) < 1e-5, "stock kernel vs definition");
    // Case 5: explicit padding 1.
    const c5 = cases[5], v5 = caseValues[5];
    const naive5 = naiveFilterGradient(
      v5.x,
      c5.x,
      v5.dy,
      v5.dyShape,
      c5.w,
      c5.stride as number,
      1,
      1,
    );
    assert.ok(relativeError(stockCases[5][1], naive5) < 1e-5, "stock kernel vs definition");
  });

  it("matches the stock cpu kernel on a conv net and on every geometry", async () => {
    await tf.setBackend("cpu");
    registerCpuGradientKernels();
    registerCpuGradientKernels(); // idempotent
    assert.equal(tf.getKernel("Conv2DBackpropFilter", "cpu"), CPU_GRADIENT_KERNELS[0]);
    const replaced = withoutLeaks(netGradients);
    assertClose(replaced, stockNet, 1e-5);
    const replacedCases = withoutLeaks(caseGradients);
    replacedCases.forEach((grads, i) => assertClose(grads, stockCases[i], 1e-5));
    const c = cases[3], v = caseValues[3];
    const naive = naiveFilterGradient(v.x, c.x, v.dy, v.dyShape, c.w, c.stride as number, 0, 0);
    assert.ok(relativeError(replacedCases[3][1], naive) < 1e-5);
  });
});

describe("the sub-pixel input gradient", () => {
  it("matches the stock cpu kernel on a conv net and on every geometry, run on cpu", async () => {
    await tf.setBackend("cpu");
    const previous = replaceKernel(conv2DBackpropInputAsConv("cpu"));
    try {
      assertClose(withoutLeaks(netGradients), stockNet, 1e-5);
      withoutLeaks(caseGradients).forEach((grads, i) => assertClose(grads, stockCases[i], 1e-5));
    } finally {
      tf.unregisterKernel("Conv2DBackpropInput", "cpu");
      if (previous !== undefined) tf.registerKernel(previous);
    }
  });
});

describe("wasm convolution gradients", () => {
  it("are missing from wasm as shipped, and registered by registerWasmGradientKernels", async () => {
    await tf.setBackend("wasm");
    assert.equal(tf.getKernel("Conv2DBackpropFilter", "wasm"), undefined);
    assert.equal(tf.getKernel("UnsortedSegmentSum", "wasm"), undefined);
    registerWasmGradientKernels();
    registerWasmGradientKernels(); // idempotent
    for (const config of WASM_GRADIENT_KERNELS) {
      assert.equal(tf.getKernel(config.kernelName, "wasm"), config);
    }
  });

  it("match cpu's stock gradients on a conv net within 1e-4", async () => {
    await tf.setBackend("wasm");
    assertClose(withoutLeaks(netGradients), stockNet, 1e-4);
  });

  it("match cpu's stock gradients on every geometry within 1e-4", async () => {
    await tf.setBackend("wasm");
    withoutLeaks(caseGradients).forEach((grads, i) => assertClose(grads, stockCases[i], 1e-4));
  });
});

describe("wasm segment sum (the gradient of a gather)", () => {
  // Rows of rank 1 and 2, empty segments, ids out of range, int32 values.
  const cases: { shape: number[]; ids: number[]; segments: number }[] = [
    { shape: [6, 3], ids: [2, 0, 2, 4, 0, 2], segments: 5 },
    { shape: [4, 3, 2], ids: [1, 0, 1, 3], segments: 5 },
    { shape: [5, 2], ids: [0, -1, 7, 1, 1], segments: 3 },
  ];
  const inputs = cases.map(({ shape }) => values(shape));
  const readout = values([4, 3]);
  const compute = () =>
    tf.tidy(() => {
      const sums = cases.map(({ shape, ids, segments }, k) =>
        tf.unsortedSegmentSum(tf.tensor(inputs[k], shape), tf.tensor1d(ids, "int32"), segments)
          .dataSync() as Float32Array
      );
      const integers = tf.unsortedSegmentSum(
        tf.tensor([[1, 2], [3, 4], [5, 6]], [3, 2], "int32"),
        tf.tensor1d([1, 1, 0], "int32"),
        2,
      );
      // An embedding table's gradient: ∂/∂E of Σ (E[tokens] · w).
      const table = tf.tensor2d(inputs[0], [6, 3]);
      const tokens = tf.tensor1d([5, 1, 5, 0], "int32");
      const weight = tf.tensor2d(readout, [4, 3]);
      const grad = tf.grad((e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, tokens), weight)))(table);
      return { sums, integers: Array.from(integers.dataSync()), grad: grad.dataSync() };
    });

  it("matches cpu's stock kernel, on float and int32 values and as an embedding's gradient", async () => {
    await tf.setBackend("cpu");
    const stock = compute();
    await tf.setBackend("wasm");
    registerWasmGradientKernels();
    const ours = withoutLeaks(compute);
    ours.sums.forEach((sum, k) => assertClose([sum], [stock.sums[k] as Float32Array], 1e-6));
    assert.deepEqual(ours.integers, [5, 6, 4, 6]);
    assert.deepEqual(stock.integers, [5, 6, 4, 6]);
    assertClose([ours.grad as Float32Array], [stock.grad as Float32Array], 1e-6);
  });
});

describe("wasm fast paths: Slice, SplitV, Sum and Tile", () => {
  // Every kind of slice: whole trailing axes (one run), a cut last axis (short runs), rank 1
  // to 5, "to the end" (−1), empty, int32 and bool.
  const slices: { shape: number[]; begin: number[]; size: number[]; dtype?: tf.DataType }[] = [
    { shape: [522], begin: [100], size: [300] },
    { shape: [4, 5, 6], begin: [1, 0, 0], size: [2, 5, 6] },
    { shape: [4, 5, 6], begin: [1, 2, 0], size: [2, 3, 6] },
    { shape: [4, 5, 6], begin: [0, 1, 2], size: [4, 3, 3] },
    { shape: [3, 4, 5, 6], begin: [1, 1, 1, 1], size: [-1, 2, -1, 4] },
    { shape: [2, 3, 4, 5, 6], begin: [0, 1, 0, 2, 0], size: [2, 2, 4, 1, 6] },
    { shape: [3, 4], begin: [1, 1], size: [0, 2] },
    { shape: [6, 7], begin: [2, 3], size: [3, 4], dtype: "int32" },
    { shape: [6, 7], begin: [0, 3], size: [6, 1], dtype: "bool" },
  ];
  // Sums over middle axes (average pooling), and others (the stock kernel).
  const sums: { shape: number[]; axis: number[]; keepDims?: boolean }[] = [
    { shape: [3, 5, 6, 4], axis: [1, 2] },
    { shape: [3, 5, 6, 4], axis: [2, 1], keepDims: true },
    { shape: [7, 4], axis: [0] },
    { shape: [2, 3, 4, 5, 6], axis: [1, 2, 3] },
    { shape: [3, 5, 6, 4], axis: [3] },
    { shape: [3, 5, 6, 4], axis: [0, 2] },
  ];
  const splits: { shape: number[]; sizes: number[]; axis: number }[] = [
    { shape: [40], sizes: [3, 30, 7], axis: 0 },
    { shape: [3, 4, 8], sizes: [2, 6], axis: 2 },
    { shape: [3, 4, 8], sizes: [1, 3], axis: 1 },
  ];
  // The upsampling's two tiles, every axis repeated, rank 1, an int32 tensor, an empty axis.
  const tiles: { shape: number[]; reps: number[]; dtype?: tf.DataType }[] = [
    { shape: [32, 4, 1, 8], reps: [1, 1, 2, 1] },
    { shape: [32, 1, 64], reps: [1, 2, 1] },
    { shape: [3, 4, 1, 5], reps: [2, 1, 3, 2] },
    { shape: [7], reps: [3] },
    { shape: [2, 3], reps: [2, 3], dtype: "int32" },
    { shape: [2, 0, 3], reps: [2, 2, 1] },
  ];
  // Integers, so that the cast to int32 gives the same values everywhere.
  const sliceInputs = slices.map(({ shape }) => values(shape).map((v) => Math.round(4 * v)));
  const splitInputs = splits.map(({ shape }) => values(shape));
  const sumInputs = sums.map(({ shape }) => values(shape));
  const tileInputs = tiles.map(({ shape }) => values(shape).map((v) => Math.round(4 * v)));
  const compute = () =>
    tf.tidy(() => {
      const exact: number[][] = [];
      slices.forEach(({ shape, begin, size, dtype }, i) => {
        const numbers = tf.tensor(sliceInputs[i], shape);
        // (wasm's cast to bool keeps the bytes of the integers: compare instead.)
        const x = dtype === "bool" ? tf.greater(numbers, 0) : tf.cast(numbers, dtype ?? "float32");
        const y = tf.slice(x, begin, size);
        exact.push([...y.shape, ...y.dataSync()]);
      });
      splits.forEach(({ shape, sizes, axis }, i) => {
        for (const part of tf.split(tf.tensor(splitInputs[i], shape), sizes, axis)) {
          exact.push([...part.shape, ...part.dataSync()]);
        }
      });
      tiles.forEach(({ shape, reps, dtype }, i) => {
        const y = tf.tile(tf.tensor(tileInputs[i], shape, dtype ?? "float32"), reps);
        exact.push([...y.shape, ...y.dataSync()]);
      });
      const summed = sums.map(({ shape, axis, keepDims }, i) => {
        const y = tf.sum(tf.tensor(sumInputs[i], shape), axis, keepDims);
        return { shape: y.shape, values: y.dataSync() as Float32Array };
      });
      return { exact, summed };
    });

  it("give what cpu gives, without a leak, and registering twice changes nothing", async () => {
    await tf.setBackend("cpu");
    const expected = compute();
    await tf.setBackend("wasm");
    registerWasmFastPaths();
    const slice = tf.getKernel("Slice", "wasm");
    registerWasmFastPaths();
    assert.equal(tf.getKernel("Slice", "wasm"), slice);
    const actual = withoutLeaks(compute);
    assert.deepEqual(actual.exact, expected.exact);
    actual.summed.forEach(({ shape, values }, i) => {
      assert.deepEqual(shape, expected.summed[i].shape);
      assert.ok(relativeError(values, expected.summed[i].values) < 1e-6, `sum ${i}`);
    });
  });

  it("Identity shares the buffer: a clone outlives its original, and both are freed", async () => {
    await tf.setBackend("wasm");
    registerWasmFastPaths();
    withoutLeaks(() => {
      const x = tf.tensor([1, 2, 3, 4], [2, 2]);
      const y = tf.clone(x);
      x.dispose();
      assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4]);
      y.dispose();
    });
  });
});

describe("upsampleNearest2x", () => {
  const shape: Shape4 = [2, 3, 4, 3];
  const x = values(shape);
  const weights = values([2, 6, 8, 3]);

  /** ∂/∂x Σ up(x)·weights = 2×2 sum pooling of the weights. */
  function sumPool2x(dy: Float32Array, [n, h, w, c]: Shape4): Float32Array {
    const out = new Float32Array(n * h * w * c);
    for (let m = 0; m < n; m++) {
      for (let i = 0; i < 2 * h; i++) {
        for (let j = 0; j < 2 * w; j++) {
          for (let k = 0; k < c; k++) {
            const from = ((m * 2 * h + i) * 2 * w + j) * c + k;
            out[((m * h + (i >> 1)) * w + (j >> 1)) * c + k] += dy[from];
          }
        }
      }
    }
    return out;
  }

  for (const backend of ["cpu", "wasm"]) {
    it(`on ${backend}: equals resizeNearestNeighbor, and its gradient is the 2×2 sum pooling`, async () => {
      await tf.setBackend(backend);
      const [up, resized, grad] = withoutLeaks(() =>
        tf.tidy(() => {
          const input = tf.tensor4d(x, shape);
          const w = tf.tensor4d(weights, [2, 6, 8, 3]);
          const grad = tf.grad((t: tf.Tensor) =>
            tf.sum(tf.mul(upsampleNearest2x(t as tf.Tensor4D), w))
          );
          return [
            upsampleNearest2x(input),
            tf.image.resizeNearestNeighbor(input, [6, 8]),
            grad(input),
          ].map((t) => t.dataSync() as Float32Array);
        })
      );
      assert.deepEqual(up, resized);
      assert.equal(up[((1 * 6 + 5) * 8 + 7) * 3 + 2], x[((1 * 3 + 2) * 4 + 3) * 3 + 2]);
      assert.ok(relativeError(grad, sumPool2x(weights, shape)) < 1e-6);
    });
  }

  it("rejects a tensor that is not NHWC", () => {
    const matrix = tf.zeros([2, 3]);
    assert.throws(() => upsampleNearest2x(matrix as unknown as tf.Tensor4D), /rank 4/);
    matrix.dispose();
  });
});

describe("maxPool2x", () => {
  const shape: Shape4 = [3, 4, 6, 5];
  // Values on a coarse grid, so that many windows hold their maximum twice or more (+ 0: no −0,
  // whose max with 0 either kernel may give as either zero).
  const x = Float32Array.from(values(shape), (v) => Math.round(v * 2) / 2 + 0);
  const weights = values([3, 2, 3, 5]);

  /** The pooling as a max over the reshaped window axes, and the gradient `tf.max` gives it. */
  const composite = (t: tf.Tensor4D) =>
    tf.max(tf.reshape(t, [3, 2, 2, 3, 2, 5]), [2, 4]) as tf.Tensor4D;

  for (const backend of ["cpu", "wasm"]) {
    it(`on ${backend}: equals the max over each window and its gradient, ties included`, async () => {
      await tf.setBackend(backend);
      const [pooled, expected, grad, expectedGrad] = withoutLeaks(() =>
        tf.tidy(() => {
          const input = tf.tensor4d(x, shape);
          const w = tf.tensor4d(weights, [3, 2, 3, 5]);
          const gradOf = (pool: (t: tf.Tensor4D) => tf.Tensor4D) =>
            tf.grad((t: tf.Tensor) => tf.sum(tf.mul(pool(t as tf.Tensor4D), w)))(input);
          return [maxPool2x(input), composite(input), gradOf(maxPool2x), gradOf(composite)]
            .map((t) => t.dataSync() as Float32Array);
        })
      );
      assert.deepEqual(pooled, expected);
      assert.deepEqual(grad, expectedGrad);
      // Some window has a tie, and each of its maxima gets the whole gradient.
      const tied = grad.filter((g) => g !== 0).length;
      assert.ok(tied > pooled.length, `${tied} nonzero gradients for ${pooled.length} windows`);
    });
  }
});
