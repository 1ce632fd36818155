import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend, WEBGPU_ALLOW_SOFTWARE_ENV } from "../lib/runtime/backend.ts";
import { loadNativeBackend } from "../lib/runtime/native.ts";
import { Random } from "../lib/core/random.ts";
import {
  forwardFlops,
  groupNormSiLU,
  parameterShapes,
  REFERENCE_CONFIG,
  REFERENCE_PARAMETER_COUNT,
  ReferenceTrainer,
  ReferenceUNet,
  upsampleNearest2x,
} from "../bench/reference_unet.ts";

/** The reference U-Net shrunk for tests: C = 8 in 4 groups, on 16×16 images, batch 4. */
const SMALL = { ...REFERENCE_CONFIG, channels: 8, groups: 4 };
const [BATCH, SIZE, STEPS] = [4, 16, 3];
Deno.env.set(WEBGPU_ALLOW_SOFTWARE_ENV, "1");

interface Run {
  losses: number[];
  gradient: Float32Array;
  liveTensors: number[];
  leaked: number;
}

/** Three Adam steps of the small U-Net on `backend`, then the loss gradient at the result. */
async function train(backend: string): Promise<Run> {
  await selectBackend({ requested: backend, quiet: true });
  const before = tf.memory().numTensors;
  const model = new ReferenceUNet(SMALL, 7);
  const trainer = new ReferenceTrainer(model);
  const random = new Random(11);
  const images = () => tf.tensor4d(random.normals(BATCH * SIZE * SIZE * 3), [BATCH, SIZE, SIZE, 3]);
  const timesteps = () => Array.from({ length: BATCH }, () => random.int(0, 1000));
  const x0 = images();
  const losses: number[] = [], liveTensors: number[] = [];
  for (let k = 0; k < STEPS; k++) {
    const noise = images();
    const loss = trainer.step(x0, timesteps(), noise);
    losses.push((await loss.data())[0]);
    tf.dispose([loss, noise]);
    liveTensors.push(tf.memory().numTensors);
  }
  const noise = images();
  const { value, grad } = trainer.lossAndGradient(x0, timesteps(), noise);
  losses.push((await value.data())[0]);
  const gradient = await grad.data() as Float32Array;
  tf.dispose([value, grad, noise, x0]);
  trainer.dispose();
  model.dispose();
  return { losses, gradient, liveTensors, leaked: tf.memory().numTensors - before };
}

let cpuRun: Promise<Run> | undefined;
const reference = () => cpuRun ??= train("cpu");

function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

describe("the reference U-Net", () => {
  it("has exactly 522,048 parameters at C = 32", () => {
    const count = Object.values(parameterShapes()).reduce(
      (n, shape) => n + shape.reduce((a, b) => a * b, 1),
      0,
    );
    assert.equal(count, REFERENCE_PARAMETER_COUNT);
  });

  it("counts its forward FLOPs analytically", () => {
    // 16×16: convolutions 50,429,952 + time MLP and projections 2·(32·128 + 128·128 + 128·224).
    assert.equal(forwardFlops(16), 50_429_952 + 2 * (4096 + 16384 + 28672));
    // Convolutions scale with the pixel count; the time MLP does not.
    assert.equal(forwardFlops(32) - forwardFlops(16), 3 * 50_429_952);
  });

  it("groupNormSiLU's hand-written gradient equals autodiff of the plain formula", async () => {
    await selectBackend({ requested: "cpu", quiet: true });
    const random = new Random(3);
    const shape: [number, number, number, number] = [2, 4, 4, 8];
    const x = tf.tensor4d(random.normals(2 * 4 * 4 * 8), shape);
    const gamma = tf.tensor1d(random.normals(8));
    const beta = tf.tensor1d(random.normals(8));
    const weights = tf.tensor4d(random.normals(2 * 4 * 4 * 8), shape);
    const plain = (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => {
      const xg = tf.reshape(x, [2, 16, 4, 2]);
      const { mean, variance } = tf.moments(xg, [1, 3], true);
      const xhat = tf.reshape(tf.div(tf.sub(xg, mean), tf.sqrt(tf.add(variance, 1e-5))), shape);
      const y = tf.add(tf.mul(xhat, gamma), beta);
      return tf.mul(y, tf.sigmoid(y));
    };
    const fused = (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) =>
      groupNormSiLU(x as tf.Tensor4D, gamma, beta, 4);
    for (const [i, what] of ["x", "gamma", "beta"].entries()) {
      const [expected, actual] = [plain, fused].map((f) =>
        tf.tidy(() =>
          tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(xs[0], xs[1], xs[2]), weights)))(
            [x, gamma, beta],
          )[i].dataSync() as Float32Array
        )
      );
      assert.ok(relativeError(actual, expected) < 1e-5, `gradient of ${what}`);
    }
    const [a, b] = [plain, fused].map((f) => tf.tidy(() => f(x, gamma, beta).dataSync()));
    assert.ok(relativeError(b as Float32Array, a as Float32Array) < 1e-6);
    tf.dispose([x, gamma, beta, weights]);
  });

  it("upsamples by repetition, with the 2×2 block sum as gradient", async () => {
    await selectBackend({ requested: "cpu", quiet: true });
    tf.tidy(() => {
      const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2, 1]);
      assert.deepEqual(
        Array.from(upsampleNearest2x(x).dataSync().slice(0, 16)),
        [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4],
      );
      const dy = tf.range(0, 32).reshape([2, 4, 4, 1]);
      const dx = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(upsampleNearest2x(x as tf.Tensor4D), dy)))(
        x,
      );
      // Block (0, 0) of sample 0 holds 0, 1, 4, 5.
      assert.deepEqual(Array.from(dx.dataSync().slice(0, 4)), [10, 18, 42, 50]);
    });
  });
});

describe("training agrees across backends (cpu is the reference)", () => {
  it("cpu: the loss falls and the live tensor count stays flat over steps", async () => {
    const run = await reference();
    assert.ok(run.losses.every(Number.isFinite));
    assert.ok(run.losses[STEPS - 1] < run.losses[0], `losses ${run.losses}`);
    assert.equal(new Set(run.liveTensors).size, 1, `live tensors ${run.liveTensors}`);
    assert.equal(run.leaked, 0);
  });

  // webgpu runs on a hardware adapter where there is one, else on a software one (Mesa's
  // llvmpipe/lavapipe, ~15 s here) as a test of the code path: the suite allows software adapters
  // for itself, which automatic selection never picks.
  for (const backend of ["wasm", "tensorflow", "webgpu"]) {
    it(`${backend}: same losses and gradients after ${STEPS} Adam steps, no leaked tensors`, async (t) => {
      if (backend === "tensorflow") {
        const native = await loadNativeBackend();
        if (!native.ok) return t.skip(`native backend not set up: ${native.reason}`);
      }
      if (backend === "webgpu") {
        const why = await selectBackend({ requested: "webgpu", quiet: true }).then(
          () => undefined,
          (error: Error) => error.message,
        );
        if (why !== undefined) return t.skip(why);
      }
      const expected = await reference();
      const run = await train(backend);
      for (const [k, loss] of run.losses.entries()) {
        assert.ok(
          Math.abs(loss - expected.losses[k]) <= 1e-4 * expected.losses[k],
          `step ${k}: loss ${loss} on ${backend}, ${expected.losses[k]} on cpu`,
        );
      }
      const error = relativeError(run.gradient, expected.gradient);
      assert.ok(error < 1e-3, `gradient differs from cpu's by ${error} (relative L2)`);
      assert.equal(new Set(run.liveTensors).size, 1, `live tensors ${run.liveTensors}`);
      assert.equal(run.leaked, 0);
    });
  }
});
