import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { loadNativeBackend, nativeDir, projectOpsStatus } from "../lib/runtime/native.ts";
import {
  GROUP_NORM_SILU,
  GROUP_NORM_SILU_GRAD,
  groupNormSiLU,
} from "../lib/core/nn/group_norm_silu.ts";
import { CONV2D, CONV2D_GRAD, conv2dSame } from "../lib/core/nn/conv.ts";
import { ATTENTION, ATTENTION_GRAD, attentionCore } from "../lib/core/nn/attention.ts";
import { GroupNorm, maxPool2x, ParameterStore } from "../lib/core/nn/layers.ts";
import { ADAM_STEP } from "../lib/runtime/kernels/native_fast_paths.ts";
import { LINEAR, linear, LINEAR_GRAD } from "../lib/core/nn/linear.ts";
import { UNet } from "../lib/core/models/mod.ts";
import { Trainer } from "../lib/training/trainer.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { TINY_UNET } from "./helpers.ts";
import { registerNativeFastPaths } from "../lib/runtime/kernels/native_fast_paths.ts";

/** Runs `lib/runtime/native.ts`'s loader in a fresh process with `env` and returns its result. */
async function loadInSubprocess(env: Record<string, string>): Promise<Record<string, unknown>> {
  const native = new URL("../lib/runtime/native.ts", import.meta.url).href;
  const code = `import { loadNativeBackend } from "${native}";
    console.log(JSON.stringify(await loadNativeBackend()));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    cwd: new URL("..", import.meta.url).pathname,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `the loader threw instead of reporting: ${stderr}`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

describe("loadNativeBackend without a binding", () => {
  it("reports ok: false with the place it looked, rather than throwing", async () => {
    const empty = await Deno.makeTempDir();
    try {
      const result = await loadInSubprocess({ TFJS_NATIVE_DIR: empty });
      assert.equal(result.ok, false);
      assert.match(String(result.reason), /not set up/);
      assert.ok(String(result.reason).includes(`${empty}/tfjs_binding.node`));
      assert.match(String(result.reason), /deno task setup/);
    } finally {
      await Deno.remove(empty, { recursive: true });
    }
  });

  it("reports ok: false when the binding is not a loadable library", async () => {
    const broken = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${broken}/tfjs_binding.node`, "not a shared object\n");
      const result = await loadInSubprocess({ TFJS_NATIVE_DIR: broken });
      assert.equal(result.ok, false);
      assert.match(String(result.reason), /failed to load/);
    } finally {
      await Deno.remove(broken, { recursive: true });
    }
  });

  it("looks in TFJS_NATIVE_DIR when set, else in .native/ at the project root", () => {
    const saved = Deno.env.get("TFJS_NATIVE_DIR");
    try {
      Deno.env.set("TFJS_NATIVE_DIR", "/somewhere/else");
      assert.equal(nativeDir(), "/somewhere/else");
      Deno.env.delete("TFJS_NATIVE_DIR");
      assert.equal(nativeDir(), new URL("../.native", import.meta.url).pathname);
    } finally {
      if (saved === undefined) Deno.env.delete("TFJS_NATIVE_DIR");
      else Deno.env.set("TFJS_NATIVE_DIR", saved);
    }
  });
});

const native = await loadNativeBackend();
const whenSetUp = native.ok ? it : it.skip;
if (!native.ok) console.log(`native backend not set up, its checks are skipped: ${native.reason}`);

/** The value of `f` and the gradients of its sum with respect to `xs`, on `backend`. */
async function valueAndGrads(
  backend: string,
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.TensorLike[][],
  shapes: number[][],
): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((values, i) => tf.tensor(values as number[], shapes[i]));
    const value = f(...xs);
    const grads = tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.square(f(...ys))))(xs);
    return [value, ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

function assertClose(actual: Float32Array, expected: Float32Array, what: string) {
  assert.equal(actual.length, expected.length, `${what}: sizes differ`);
  let worst = 0;
  const scale = Math.max(...expected.map(Math.abs), 1e-6);
  for (let i = 0; i < actual.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  }
  assert.ok(worst <= 1e-4 * scale, `${what}: off by ${worst} (scale ${scale})`);
}

describe("the native backend, when set up", () => {
  whenSetUp("names libtensorflow and its version", () => {
    assert.ok(native.ok);
    assert.match(native.detail, /^libtensorflow \d+\.\d+\.\d+ \((CPU|GPU)\)$|GPU/);
  });

  whenSetUp("is loaded once: a second call returns the same result", async () => {
    assert.deepEqual(await loadNativeBackend(), native);
    assert.ok(tf.findBackend("tensorflow"));
  });

  whenSetUp("matches cpu on conv2d (stride 1 and 2) and both its gradients", async () => {
    const x = Array.from({ length: 2 * 6 * 6 * 3 }, (_, i) => Math.sin(i * 0.37));
    const w = Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.cos(i * 0.11) * 0.3);
    for (const stride of [1, 2] as const) {
      const conv = (a: tf.Tensor, b: tf.Tensor) =>
        tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, "same");
      const shapes = [[2, 6, 6, 3], [3, 3, 3, 4]];
      const expected = await valueAndGrads("cpu", conv, [x, w], shapes);
      const actual = await valueAndGrads("tensorflow", conv, [x, w], shapes);
      for (const [i, what] of ["value", "input gradient", "filter gradient"].entries()) {
        assertClose(actual[i], expected[i], `conv2d stride ${stride} ${what}`);
      }
    }
  });

  whenSetUp("matches cpu on conv2dTranspose, matMul and the GroupNorm reductions", async () => {
    const x = Array.from({ length: 2 * 3 * 3 * 4 }, (_, i) => Math.sin(i * 0.7));
    const w = Array.from({ length: 3 * 3 * 2 * 4 }, (_, i) => Math.cos(i * 0.3) * 0.2);
    const ops = (a: tf.Tensor, b: tf.Tensor) => {
      const up = tf.conv2dTranspose(a as tf.Tensor4D, b as tf.Tensor4D, [2, 6, 6, 2], 2, "same");
      const grouped = tf.reshape(up, [2, 36, 1, 2]);
      const centred = tf.sub(grouped, tf.mean(grouped, [1, 3], true));
      return tf.matMul(tf.reshape(tf.sigmoid(centred), [24, 6]), tf.ones([6, 2]));
    };
    const shapes = [[2, 3, 3, 4], [3, 3, 2, 4]];
    const expected = await valueAndGrads("cpu", ops, [x, w], shapes);
    const actual = await valueAndGrads("tensorflow", ops, [x, w], shapes);
    for (const [i, what] of ["value", "input gradient", "filter gradient"].entries()) {
      assertClose(actual[i], expected[i], `conv2dTranspose chain ${what}`);
    }
  });

  whenSetUp("computes on libtensorflow: a known convolution of ones", async () => {
    await tf.setBackend("tensorflow");
    const sum = tf.tidy(() =>
      tf.sum(
        tf.conv2d(
          tf.ones([1, 4, 4, 2]) as tf.Tensor4D,
          tf.ones([3, 3, 2, 1]) as tf.Tensor4D,
          1,
          "same",
        ),
      )
        .dataSync()[0]
    );
    // Each output counts its in-image 3×3 neighbours (4·4 + 2·4·6 + 4·9 = 100) times 2 channels.
    assert.equal(sum, 200);
  });

  whenSetUp("fast paths give what tfjs-node's own kernels give, bit for bit", async () => {
    await tf.setBackend("tensorflow");
    const names = ["Reshape", "Sum", "Conv2DBackpropFilter", "Conv2DBackpropInput", "SplitV"];
    const stock = [...names, "Concat"].map((name) => tf.getKernel(name, "tensorflow")!);
    const x = tf.tensor4d(Array.from({ length: 2 * 7 * 6 * 3 }, (_, i) => Math.sin(i)), [
      2,
      7,
      6,
      3,
    ]);
    const w = tf.tensor4d(Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.cos(i)), [
      3,
      3,
      3,
      4,
    ]);
    const ints = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], "int32");
    const results = () =>
      tf.tidy(() => {
        const out: tf.Tensor[] = [
          tf.reshape(x, [2, -1, 3]),
          tf.sum(x, [1, 2]),
          tf.sum(x, [0, 3], true),
          tf.sum(ints, 1),
          ...tf.split(x, [2, 4, 1], 1),
          tf.concat([x, x], 3),
          tf.concat([ints, ints], 0),
        ];
        for (const [stride, pad] of [[1, "same"], [2, "same"], [2, "valid"]] as const) {
          const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad)))
          );
          out.push(...grads([x, w]));
        }
        return out.map((t) => [t.shape, Array.from(t.dataSync())]);
      });
    const expected = results();
    registerNativeFastPaths();
    registerNativeFastPaths(); // idempotent
    stock.forEach((config) =>
      assert.notEqual(tf.getKernel(config.kernelName, "tensorflow"), config)
    );
    const tensors = tf.memory().numTensors;
    assert.deepEqual(results(), expected);
    assert.deepEqual(results(), expected); // the shape operands, made once, are reused
    assert.equal(tf.memory().numTensors, tensors);
    tf.dispose([x, w, ints]);
  });

  whenSetUp(
    "runs the input gradient of a wide convolution as a forward one, within rounding of TensorFlow's",
    async () => {
      await tf.setBackend("tensorflow");
      // tfjs-node's own kernel: earlier tests registered the fast paths in its place.
      const { conv2DBackpropInputConfig: stock } = await import(
        "@tensorflow/tfjs-node/dist/kernels/Conv2DBackpropInput.js"
      ) as { conv2DBackpropInputConfig: tf.KernelConfig };
      const dxOf = (stride: 1 | 2, pad: "same" | "valid", [n, h, ci, co]: number[]) =>
        tf.tidy(() => {
          const w = tf.tensor4d(
            Array.from({ length: 9 * ci * co }, (_, i) => Math.cos(i * 0.7)),
            [3, 3, ci, co],
          );
          const out = tf.conv2d(tf.zeros([n, h, h, ci]) as tf.Tensor4D, w, stride, pad).shape;
          const dy = tf.tensor4d(
            Array.from({ length: out.reduce((a, b) => a * b) }, (_, i) => Math.sin(i * 0.3)),
            out as [number, number, number, number],
          );
          return tf.conv2dTranspose(dy, w, [n, h, h, ci], stride, pad).dataSync() as Float32Array;
        });
      const cases = [[1, "same", [2, 8, 16, 8]], [2, "same", [2, 8, 24, 16]], [
        2,
        "valid",
        [1, 9, 16, 16],
      ], [1, "valid", [2, 6, 32, 4]]] as const;
      registerNativeFastPaths();
      const ours = cases.map(([s, p, shape]) => dxOf(s, p, [...shape]));
      const fast = tf.getKernel("Conv2DBackpropInput", "tensorflow")!;
      tf.unregisterKernel("Conv2DBackpropInput", "tensorflow");
      tf.registerKernel(stock);
      const theirs = cases.map(([s, p, shape]) => dxOf(s, p, [...shape]));
      tf.unregisterKernel("Conv2DBackpropInput", "tensorflow");
      tf.registerKernel(fast);
      cases.forEach(([s, p, shape], i) =>
        assertClose(ours[i], theirs[i], `∂x of a ${shape} conv, stride ${s}, ${p}`)
      );
    },
  );

  whenSetUp("runs convolutions as the project's ops, equal to cpu's", async () => {
    assert.ok(projectOpsStatus().loaded, `project ops not loaded: ${projectOpsStatus().reason}`);
    await tf.setBackend("tensorflow");
    registerNativeFastPaths();
    const conv = (a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
      conv2dSame(a as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D);
    // [N, H, W, C_in], k, C_out: the project's ops both ways, with a partial block of pixels and a
    // last block of 8 output channels; a 1×1 filter; C_in = 3 (its own forward, TensorFlow's
    // gradients); C_out = 3 (TensorFlow's kernels both ways).
    const cases = [[[2, 5, 7, 16], 3, 24], [[3, 4, 4, 8], 1, 8], [[2, 6, 6, 3], 3, 8], [
      [2, 6, 6, 16],
      3,
      3,
    ]] as const;
    for (const [shape, k, out] of cases) {
      const size = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
      const filterShape = [k, k, shape[3], out];
      const x = Array.from({ length: size(shape) }, (_, i) => Math.sin(i * 0.37));
      const w = Array.from({ length: size(filterShape) }, (_, i) => Math.cos(i * 0.11) * 0.3);
      const b = Array.from({ length: out }, (_, i) => Math.sin(2 * i));
      const shapes = [[...shape], filterShape, [out]];
      const expected = await valueAndGrads("cpu", conv, [x, w, b], shapes);
      const actual = await valueAndGrads("tensorflow", conv, [x, w, b], shapes);
      for (const [i, what] of ["value", "∂x", "∂W", "∂b"].entries()) {
        assertClose(actual[i], expected[i], `${what} of ${shape} * ${k}×${k} → ${out}`);
      }
    }
    // Strided and "valid" convolutions (the U-Net's downsampling) through tf.conv2d.
    for (
      const [shape, stride, pad] of [[[2, 8, 8, 16], 2, "same"], [
        [2, 7, 7, 8],
        2,
        "valid",
      ]] as const
    ) {
      const strided = (a: tf.Tensor, w: tf.Tensor) =>
        tf.conv2d(a as tf.Tensor4D, w as tf.Tensor4D, stride, pad);
      const filterShape = [3, 3, shape[3], 16];
      const x = Array.from(
        { length: shape.reduce((a, b) => a * b, 1) },
        (_, i) => Math.sin(i * 0.37),
      );
      const w = Array.from({ length: 3 * 3 * shape[3] * 16 }, (_, i) => Math.cos(i * 0.11) * 0.3);
      const expected = await valueAndGrads("cpu", strided, [x, w], [[...shape], filterShape]);
      const actual = await valueAndGrads("tensorflow", strided, [x, w], [[...shape], filterShape]);
      for (const [i, what] of ["value", "∂x", "∂W"].entries()) {
        assertClose(actual[i], expected[i], `${what} of ${shape} at stride ${stride}, ${pad}`);
      }
    }
    await tf.setBackend("tensorflow");
    const kernels = (await tf.profile(() => {
      const [x, w, b] = [tf.ones([1, 4, 4, 8]), tf.ones([3, 3, 8, 8]), tf.zeros([8])];
      return tf.grads((a: tf.Tensor) => tf.sum(conv(a, w, b)))([x]);
    })).kernels.map((k) => k.name);
    assert.ok(kernels.includes(CONV2D) && kernels.includes(CONV2D_GRAD), kernels.join(" "));
  });

  whenSetUp("runs the attention core as the project's fused ops, equal to the composite", () => {
    tf.setBackend("tensorflow");
    registerNativeFastPaths();
    const fused = [ATTENTION, ATTENTION_GRAD].map((name) => tf.getKernel(name, "tensorflow")!);
    assert.ok(fused.every((k) => k !== undefined), "the fused attention kernels are registered");
    // Self-attention over 16 tokens in 4 heads; cross-attention, 6 queries to 5 keys in 2 heads.
    for (const [batch, lq, lk, c, heads] of [[3, 16, 16, 16, 4], [2, 6, 5, 8, 2]]) {
      const values = (rows: number, seed: number) =>
        tf.tensor2d(
          Array.from({ length: rows * c }, (_, i) => Math.sin(i * 0.37 + seed)),
          [rows, c],
        );
      const [q, k, v] = [values(batch * lq, 0), values(batch * lk, 1), values(batch * lk, 2)];
      const weights = values(batch * lq, 3);
      const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
        tf.sum(
          tf.mul(
            attentionCore(a as tf.Tensor2D, b as tf.Tensor2D, d as tf.Tensor2D, batch, heads),
            weights,
          ),
        );
      const outputs = () =>
        tf.tidy(() =>
          [attentionCore(q, k, v, batch, heads), ...tf.grads(f)([q, k, v])].map((t) =>
            t.dataSync() as Float32Array
          )
        );
      const actual = outputs();
      fused.forEach((kernel) => tf.unregisterKernel(kernel.kernelName, "tensorflow"));
      const expected = outputs();
      fused.forEach((kernel) => tf.registerKernel(kernel));
      for (const [i, what] of ["value", "∂q", "∂k", "∂v"].entries()) {
        assertClose(actual[i], expected[i], `attention ${what} at ${[batch, lq, lk, c, heads]}`);
      }
      tf.dispose([q, k, v, weights]);
    }
  });

  whenSetUp("pools 2×2 with MaxPool to the bit of the reshaped max, gradient included", () => {
    tf.setBackend("tensorflow");
    // A coarse grid: many windows hold their maximum more than once.
    const x = tf.tensor4d(
      Array.from({ length: 2 * 8 * 6 * 16 }, (_, i) => Math.round(4 * Math.sin(i * 0.37)) / 4 + 0),
      [2, 8, 6, 16],
    );
    const weights = tf.tensor4d(Array.from({ length: 2 * 4 * 3 * 16 }, (_, i) => Math.cos(i)), [
      2,
      4,
      3,
      16,
    ]);
    const composite = (t: tf.Tensor4D) =>
      tf.max(tf.reshape(t, [2, 4, 2, 3, 2, 16]), [2, 4]) as tf.Tensor4D;
    const outputs = (pool: (t: tf.Tensor4D) => tf.Tensor4D) =>
      tf.tidy(() =>
        [pool(x), tf.grad((t: tf.Tensor) => tf.sum(tf.mul(pool(t as tf.Tensor4D), weights)))(x)]
          .map((t) => t.dataSync() as Float32Array)
      );
    const [actual, expected] = [outputs(maxPool2x), outputs(composite)];
    assert.deepEqual(actual[0], expected[0]);
    assert.deepEqual(actual[1], expected[1]);
    tf.dispose([x, weights]);
  });

  whenSetUp("runs GroupNorm alone as the fused ops without their SiLU", () => {
    tf.setBackend("tensorflow");
    registerNativeFastPaths();
    const norm = new GroupNorm(new ParameterStore(0), "norm", 16, 4);
    norm.gamma.assign(tf.tensor1d(Array.from({ length: 16 }, (_, i) => 1 + Math.cos(i))));
    norm.beta.assign(tf.tensor1d(Array.from({ length: 16 }, (_, i) => Math.sin(3 * i))));
    const x = tf.tensor4d(
      Array.from({ length: 2 * 3 * 5 * 16 }, (_, i) => 2 + Math.sin(i * 0.61)),
      [
        2,
        3,
        5,
        16,
      ],
    );
    const loss = (a: tf.Tensor) => tf.sum(tf.square(tf.sin(norm.apply(a as tf.Tensor4D))));
    const outputs = () =>
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => loss(x) as tf.Scalar, [norm.gamma, norm.beta]);
        return [norm.apply(x), tf.grad(loss)(x), grads[norm.gamma.name], grads[norm.beta.name]]
          .map((t) => t.dataSync() as Float32Array);
      });
    const fused = [GROUP_NORM_SILU, GROUP_NORM_SILU_GRAD].map((name) =>
      tf.getKernel(name, "tensorflow")!
    );
    const actual = outputs();
    fused.forEach((k) => tf.unregisterKernel(k.kernelName, "tensorflow"));
    const expected = outputs();
    fused.forEach((k) => tf.registerKernel(k));
    for (const [i, what] of ["value", "∂x", "∂γ", "∂β"].entries()) {
      assertClose(actual[i], expected[i], `GroupNorm ${what}`);
    }
    tf.dispose([x, norm.gamma, norm.beta]);
  });

  whenSetUp("runs a 2-D affine map in five dispatches, equal to fused.matMul", async () => {
    await tf.setBackend("tensorflow");
    registerNativeFastPaths();
    const x = tf.tensor2d(Array.from({ length: 7 * 5 }, (_, i) => Math.sin(i)), [7, 5]);
    const w = tf.tensor2d(Array.from({ length: 5 * 3 }, (_, i) => Math.cos(i)), [5, 3]);
    const b = tf.tensor1d([0.5, -1, 2]);
    const outputs = () =>
      tf.tidy(() => {
        const f = (...ts: tf.Tensor[]) =>
          tf.sum(
            tf.square(linear(ts[0] as tf.Tensor2D, ts[1] as tf.Tensor2D, ts[2] as tf.Tensor1D)),
          );
        return [linear(x, w, b), ...tf.grads(f)([x, w, b])].map((t) =>
          t.dataSync() as Float32Array
        );
      });
    const kernels = (await tf.profile(() =>
      tf.grads((a: tf.Tensor) =>
        tf.sum(linear(a as tf.Tensor2D, w, b))
      )([x])
    )).kernels
      .map((k) => k.name).filter((name) => name !== "Identity");
    assert.ok(kernels.includes(LINEAR) && kernels.includes(LINEAR_GRAD), kernels.join(" "));
    const fused = [LINEAR, LINEAR_GRAD].map((name) => tf.getKernel(name, "tensorflow")!);
    const actual = outputs();
    fused.forEach((k) => tf.unregisterKernel(k.kernelName, "tensorflow"));
    const expected = outputs();
    fused.forEach((k) => tf.registerKernel(k));
    for (const [i, what] of ["y", "∂x", "∂W", "∂b"].entries()) {
      assertClose(actual[i], expected[i], what);
    }
    tf.dispose([x, w, b]);
  });

  whenSetUp(
    "runs GroupNorm + SiLU as the project's fused ops, equal to the composite",
    async () => {
      assert.ok(projectOpsStatus().loaded, `fused ops not loaded: ${projectOpsStatus().reason}`);
      await tf.setBackend("tensorflow");
      registerNativeFastPaths();
      const fused = tf.getKernel(GROUP_NORM_SILU, "tensorflow");
      assert.ok(fused, "the fused kernel is registered");
      // Channel counts with and without a tail past the eight-lane vectors; 1 to 8 groups.
      for (const [n, h, w, c, groups] of [[3, 5, 6, 16, 4], [2, 4, 4, 12, 3], [1, 3, 2, 5, 1]]) {
        const size = n * h * w * c;
        const x = tf.tensor4d(Array.from({ length: size }, (_, i) => 2 + Math.sin(i * 0.61)), [
          n,
          h,
          w,
          c,
        ]);
        const gamma = tf.tensor1d(Array.from({ length: c }, (_, i) => 1 + Math.cos(i)));
        const beta = tf.tensor1d(Array.from({ length: c }, (_, i) => Math.sin(3 * i)));
        const weights = tf.tensor4d(Array.from({ length: size }, (_, i) => Math.cos(i * 0.3)), [
          n,
          h,
          w,
          c,
        ]);
        const outputs = () =>
          tf.tidy(() => {
            const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
              tf.sum(tf.mul(groupNormSiLU(a as tf.Tensor4D, g, b, groups), weights));
            return [groupNormSiLU(x, gamma, beta, groups), ...tf.grads(f)([x, gamma, beta])]
              .map((t) => t.dataSync() as Float32Array);
          });
        const actual = outputs();
        tf.unregisterKernel(GROUP_NORM_SILU, "tensorflow");
        const expected = outputs();
        tf.registerKernel(fused);
        for (const [i, what] of ["value", "∂x", "∂γ", "∂β"].entries()) {
          assertClose(actual[i], expected[i], `${what} at ${[n, h, w, c]}, ${groups} groups`);
        }
        tf.dispose([x, gamma, beta, weights]);
      }
      // NaN goes through (the trainer's check sees it), and a bad group count is a clear error.
      const nan = tf.tensor4d([NaN, 1, 2, 3, 4, 5, 6, 7], [1, 1, 1, 8]);
      assert.ok(Number.isNaN(groupNormSiLU(nan, tf.ones([8]), tf.zeros([8]), 1).dataSync()[0]));
      assert.throws(
        () => groupNormSiLU(nan, tf.ones([8]), tf.zeros([8]), 3),
        /do not split into 3/,
      );
      nan.dispose();
    },
  );

  whenSetUp(
    "runs the optimiser step as the project's fused op, equal to the composite",
    async () => {
      assert.ok(projectOpsStatus().loaded, `fused ops not loaded: ${projectOpsStatus().reason}`);
      await tf.setBackend("tensorflow");
      registerNativeFastPaths();
      const fused = tf.getKernel(ADAM_STEP, "tensorflow");
      assert.ok(fused, "the fused kernel is registered");
      const data = {
        images: Float32Array.from({ length: 6 * 8 * 8 * 3 }, (_, i) => Math.sin(i * 0.37)),
        count: 6,
      };
      // Clipping at work (a norm of 0.05), warm-up, the EMA's warm-up, Adam's and AdamW's decay.
      const runs = [
        { optimizer: "adam" as const, weightDecay: 0.01, gradClipNorm: 0.05 },
        { optimizer: "adamw" as const, weightDecay: 0.1, gradClipNorm: null },
      ];
      for (const settings of runs) {
        const weights = async () => {
          const model = new UNet({ ...TINY_UNET, middleAttention: false });
          const trainer = new Trainer(model, data, noiseSchedule("cosine", 50), {
            steps: 4,
            batchSize: 3,
            learningRate: 3e-3,
            warmupSteps: 2,
            ...settings,
          }, { progress: false });
          const { losses } = await trainer.run();
          const values = [...model.parameters, ...trainer.ema.parameters].map((p) =>
            p.variable.dataSync() as Float32Array
          );
          trainer.dispose();
          model.dispose();
          return { losses, values };
        };
        const actual = await weights();
        tf.unregisterKernel(ADAM_STEP, "tensorflow");
        const expected = await weights();
        tf.registerKernel(fused);
        assertClose(Float32Array.from(actual.losses), Float32Array.from(expected.losses), "losses");
        actual.values.forEach((v, i) =>
          assertClose(v, expected.values[i], `${settings.optimizer}: tensor ${i}`)
        );
      }
    },
  );
});
