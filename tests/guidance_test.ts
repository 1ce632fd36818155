/**
 * Classifier-free guidance (lib/core/guidance.ts): its two ends exact, the two conventions the
 * same, rescale as diffusers computes it, one batched call of the network, and scales out of
 * range refused.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import {
  checkGuidance,
  concatConditioning,
  guide,
  guidedDenoiser,
  rescaleGuidance,
} from "../lib/core/guidance.ts";
import type { ApplyOptions, DiffusionModel } from "../lib/core/models/network.ts";
import { UserError } from "../lib/core/errors.ts";
import {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  sample,
  sampleMany,
} from "../lib/core/samplers/mod.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";

await selectBackend({ quiet: true });
const random = new Random(3);
const shape = [3, 4, 4, 2];
const tensor = () =>
  tf.tensor4d(random.normals(3 * 4 * 4 * 2), shape as [number, number, number, number]);

describe("guide", () => {
  it("is exactly the conditional prediction at s = 1 and the unconditional at s = 0", () => {
    const [c, u] = [tensor(), tensor()];
    assert.deepEqual(guide(c, u, 1).dataSync(), c.dataSync());
    assert.deepEqual(guide(c, u, 0).dataSync(), u.dataSync());
    tf.dispose([c, u]);
  });

  it("extrapolates ε_∅ + s (ε_c − ε_∅), the paper's (1 + w) ε_c − w ε_∅ with w = s − 1", () => {
    const [c, u] = [tensor(), tensor()];
    const [cs, us] = [c.dataSync(), u.dataSync()];
    for (const s of [0.5, 3, 7.5]) {
      const got = guide(c, u, s).dataSync();
      const w = s - 1;
      for (let i = 0; i < got.length; i++) {
        assert.ok(Math.abs(got[i] - (us[i] + s * (cs[i] - us[i]))) < 1e-5);
        assert.ok(Math.abs(got[i] - ((1 + w) * cs[i] - w * us[i])) < 1e-5);
      }
    }
    tf.dispose([c, u]);
  });
});

describe("rescaleGuidance", () => {
  it("is the identity at φ = 0", () => {
    const [g, c] = [tensor(), tensor()];
    assert.deepEqual(rescaleGuidance(g, c, 0).dataSync(), g.dataSync());
    tf.dispose([g, c]);
  });

  it("mixes ε̃ σ(ε_c)/σ(ε̃) with ε̃ per sample, σ Bessel-corrected as torch.std", () => {
    const [g, c] = [tensor(), tensor()];
    const phi = 0.7;
    const got = rescaleGuidance(g, c, phi).dataSync();
    const [gs, cs] = [g.dataSync() as Float32Array, c.dataSync() as Float32Array];
    const per = gs.length / 3;
    const std = (x: Float32Array, b: number) => {
      const v = Array.from(x.subarray(b * per, (b + 1) * per));
      const mean = v.reduce((a, y) => a + y, 0) / per;
      return Math.sqrt(v.reduce((a, y) => a + (y - mean) ** 2, 0) / (per - 1));
    };
    for (let b = 0; b < 3; b++) {
      const ratio = std(cs, b) / std(gs, b);
      for (let i = b * per; i < (b + 1) * per; i++) {
        const expected = phi * gs[i] * ratio + (1 - phi) * gs[i];
        assert.ok(Math.abs(got[i] - expected) < 1e-5, `${got[i]} vs ${expected}`);
      }
    }
    // At φ = 1 each sample has ε_c's spread.
    const full = rescaleGuidance(g, c, 1);
    const spread = full.dataSync() as Float32Array;
    for (let b = 0; b < 3; b++) assert.ok(Math.abs(std(spread, b) - std(cs, b)) < 1e-5);
    tf.dispose([g, c, full]);
  });
});

describe("guidedDenoiser", () => {
  /** A network whose prediction is x + 10 · label, counting its calls and batch sizes. */
  function fakeModel(): DiffusionModel & { calls: number[] } {
    const calls: number[] = [];
    return {
      calls,
      contextDim: 4,
      apply(x: tf.Tensor4D, _t: tf.Tensor1D, options: ApplyOptions = {}) {
        calls.push(x.shape[0]);
        const labels = tf.reshape(tf.cast(options.classLabels!, "float32"), [-1, 1, 1, 1]);
        return tf.add(x, tf.mul(labels, 10)) as tf.Tensor4D;
      },
    } as unknown as DiffusionModel & { calls: number[] };
  }

  it("makes both predictions in one batched call and guides between them", () => {
    const model = fakeModel();
    const xt = tensor();
    const t = tf.tensor1d([5, 5, 5], "int32");
    const c = { classLabels: tf.tensor1d([2, 0, 3], "int32") };
    const u = { classLabels: tf.tensor1d([-1, -1, -1], "int32") };
    const guided = guidedDenoiser(model, c, u, { scale: 3 })(xt, t);
    assert.deepEqual(model.calls, [6]);
    const expected = tf.tidy(() => guide(model.apply(xt, t, c), model.apply(xt, t, u), 3));
    const [a, b] = [guided.dataSync(), expected.dataSync()];
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-4);
    // s = 1 without rescale: the conditional pass alone.
    const plain = guidedDenoiser(model, c, u, { scale: 1 })(xt, t);
    assert.deepEqual(model.calls.at(-1), 3);
    assert.deepEqual(plain.dataSync(), model.apply(xt, t, c).dataSync());
    tf.dispose([xt, t, c.classLabels, u.classLabels, guided, expected, plain]);
  });

  it("guides sampleMany batch by batch, each batch under its own labels, leaking no tensor", async () => {
    const model = fakeModel();
    const schedule = noiseSchedule("linear", 100);
    const labelsOf = (start: number, n: number) =>
      tf.tensor1d(Array.from({ length: n }, (_, i) => (start + i) % 4), "int32");
    const before = tf.memory().numTensors;
    const many = await sampleMany(model, new DDIMScheduler(schedule), {
      count: 5,
      batchSize: 2,
      imageSize: 4,
      channels: 2,
      steps: 5,
      seed: 9,
      condition: (start, n) => ({
        conditioning: { classLabels: labelsOf(start, n) },
        guidance: { scale: 2, unconditional: { classLabels: tf.fill([n], -1, "int32") } },
      }),
    });
    assert.equal(tf.memory().numTensors, before, "sampleMany disposed every batch's labels");
    // The third batch (image 4, label 0) is what sample() gives that batch alone.
    const [labels, nulls] = [labelsOf(4, 1), tf.fill([1], -1, "int32") as tf.Tensor1D];
    const alone = await sample(model, new DDIMScheduler(schedule), {
      shape: [1, 4, 4, 2],
      steps: 5,
      seed: 9 + 2,
      conditioning: { classLabels: labels },
      guidance: { scale: 2, unconditional: { classLabels: nulls } },
    });
    assert.deepEqual(many.subarray(4 * 32), alone.images.dataSync());
    tf.dispose([labels, nulls, alone.images]);
  });

  it("runs under every sampler: at s = 1 it samples what the conditional network samples", async () => {
    const model = fakeModel();
    const labels = { classLabels: tf.tensor1d([1, 0, 2], "int32") };
    const nulls = { classLabels: tf.tensor1d([-1, -1, -1], "int32") };
    const schedule = noiseSchedule("linear", 100);
    const shape = [3, 4, 4, 2] as [number, number, number, number];
    for (
      const make of [
        () => new DDPMScheduler(schedule),
        () => new DDIMScheduler(schedule),
        () => new DPMSolverMultistepScheduler(schedule),
      ]
    ) {
      const conditional = (x: tf.Tensor4D, t: tf.Tensor1D) => model.apply(x, t, labels);
      const plain = await sample(conditional, make(), { shape, steps: 10, seed: 4 });
      const guided = await sample(guidedDenoiser(model, labels, nulls, { scale: 1 }), make(), {
        shape,
        steps: 10,
        seed: 4,
      });
      const strong = await sample(guidedDenoiser(model, labels, nulls, { scale: 4 }), make(), {
        shape,
        steps: 10,
        seed: 4,
      });
      // The same through sample's own options.
      const viaOptions = await sample(model, make(), {
        shape,
        steps: 10,
        seed: 4,
        conditioning: labels,
        guidance: { scale: 4, unconditional: nulls },
      });
      assert.deepEqual(guided.images.dataSync(), plain.images.dataSync());
      assert.notDeepEqual(strong.images.dataSync(), plain.images.dataSync());
      assert.deepEqual(viaOptions.images.dataSync(), strong.images.dataSync());
      tf.dispose([plain.images, guided.images, strong.images, viaOptions.images]);
    }
    const ddim = new DDIMScheduler(schedule);
    await assert.rejects(
      sample(model, ddim, { shape, steps: 2, guidance: { scale: 2, unconditional: nulls } }),
      /guidance needs a conditioning/,
    );
    await assert.rejects(
      sample(model, ddim, {
        shape,
        steps: 2,
        conditioning: labels,
        guidance: { scale: -2, unconditional: nulls },
      }),
      /guidance scale must be a number ≥ 0/,
    );
    const outside = { classLabels: tf.tensor1d([1, 7, 0], "int32") };
    await assert.rejects(
      sample(model, ddim, { shape, steps: 2, conditioning: outside }),
      (e) =>
        e instanceof UserError &&
        /class label 7 \(at 1\) is out of range: this network knows classes 0…3/.test(e.message),
    );
    tf.dispose([labels.classLabels, nulls.classLabels, outside.classLabels]);
  });

  it("refuses a scale that is negative or not a number, and a rescale outside [0, 1]", () => {
    for (const scale of [-1, NaN, Infinity]) {
      assert.throws(
        () => checkGuidance({ scale }),
        (e) => e instanceof UserError && /guidance scale must be a number ≥ 0/.test(e.message),
      );
    }
    assert.throws(() => checkGuidance({ scale: 2, rescale: 1.5 }), /rescale φ must be .* \[0, 1\]/);
    assert.doesNotThrow(() => checkGuidance({ scale: 0, rescale: 0.7 }));
  });

  it("joins two batches' conditionings field by field, and refuses a field on one side only", () => {
    const a = { classLabels: tf.tensor1d([1, 2], "int32") };
    const b = { classLabels: tf.tensor1d([-1, -1], "int32") };
    const joined = concatConditioning(a, b);
    assert.deepEqual(Array.from(joined.classLabels!.dataSync()), [1, 2, -1, -1]);
    assert.throws(
      () => concatConditioning(a, { context: tf.zeros([2, 3]) as tf.Tensor2D }),
      /classLabels is given for one batch and not the other/,
    );
    tf.dispose([a.classLabels, b.classLabels, joined.classLabels!]);
  });
});
