import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import {
  diffusedMixture,
  type GaussianMixture2D,
  mixtureNoisePredictor,
  sampleMixture,
} from "../lib/core/mixture.ts";
import { Random } from "../lib/core/random.ts";
import {
  DDIMScheduler,
  DDPMScheduler,
  NoiselessDDPMScheduler,
  sample,
  type Scheduler,
} from "../lib/core/samplers/mod.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";

await selectBackend({ requested: "wasm", quiet: true });

const threeBlobs: GaussianMixture2D = [
  { weight: 1, mean: [-1.5, 0.5], std: 0.3 },
  { weight: 2, mean: [1.2, 1], std: 0.5 },
  { weight: 1, mean: [0, -1.4], std: 0.2 },
];

describe("diffusedMixture", () => {
  it("has a score equal to the gradient of its log-density", () => {
    const h = 1e-5;
    for (const alphaBar of [1, 0.7, 0.2, 0.01]) {
      for (const x of [[0.1, 0.2], [-1.2, 0.7], [2, -1]] as [number, number][]) {
        const { score } = diffusedMixture(threeBlobs, x, alphaBar);
        const f = (p: [number, number]) => diffusedMixture(threeBlobs, p, alphaBar).logDensity;
        const gx = (f([x[0] + h, x[1]]) - f([x[0] - h, x[1]])) / (2 * h);
        const gy = (f([x[0], x[1] + h]) - f([x[0], x[1] - h])) / (2 * h);
        assert.ok(Math.abs(score[0] - gx) < 1e-4 * (1 + Math.abs(gx)), `ᾱ ${alphaBar}, x ${x}`);
        assert.ok(Math.abs(score[1] - gy) < 1e-4 * (1 + Math.abs(gy)), `ᾱ ${alphaBar}, x ${x}`);
      }
    }
  });

  it("is the standard normal at ᾱ = 0, whatever the mixture", () => {
    const { logDensity, score } = diffusedMixture(threeBlobs, [0.6, -0.8], 0);
    assert.ok(Math.abs(score[0] + 0.6) < 1e-12 && Math.abs(score[1] - 0.8) < 1e-12);
    assert.ok(Math.abs(logDensity - (-Math.log(2 * Math.PI) - 0.5)) < 1e-12);
  });

  it("matches the closed form of one Gaussian: (√ᾱ μ − x) / (ᾱ s² + 1 − ᾱ)", () => {
    const one: GaussianMixture2D = [{ weight: 3, mean: [1, -2], std: 0.4 }];
    const alphaBar = 0.6;
    const v = alphaBar * 0.16 + 1 - alphaBar;
    const { score } = diffusedMixture(one, [0.5, 0.5], alphaBar);
    assert.ok(Math.abs(score[0] - (Math.sqrt(alphaBar) * 1 - 0.5) / v) < 1e-12);
    assert.ok(Math.abs(score[1] - (Math.sqrt(alphaBar) * -2 - 0.5) / v) < 1e-12);
  });

  it("refuses bad components and ᾱ outside [0, 1]", () => {
    assert.throws(() => diffusedMixture([], [0, 0], 0.5), /at least one component/);
    assert.throws(
      () => diffusedMixture([{ weight: 1, mean: [0, 0], std: 0 }], [0, 0], 0.5),
      /must be positive/,
    );
    assert.throws(() => diffusedMixture(threeBlobs, [0, 0], 1.5), /\[0, 1\]/);
  });
});

describe("sampleMixture", () => {
  it("draws each component in proportion to its weight", () => {
    const points = sampleMixture(threeBlobs, 4000, new Random(3));
    const nearThird = points.filter(([x, y]) => Math.hypot(x, y + 1.4) < 0.8).length / 4000;
    assert.ok(Math.abs(nearThird - 0.25) < 0.03, `fraction ${nearThird}`);
  });
});

describe("mixtureNoisePredictor", () => {
  const schedule = noiseSchedule("cosine", 1000);
  const predictor = mixtureNoisePredictor(threeBlobs, schedule);

  it("is −√(1 − ᾱ_t) times the exact score", async () => {
    const points: [number, number][] = [[0.1, 0.2], [-1.2, 0.7], [2, -1], [0, -1.3]];
    const steps = [0, 150, 600, 999];
    const x = tf.tensor4d(points.flat(), [points.length, 1, 1, 2]);
    const t = tf.tensor1d(steps, "int32");
    const eps = predictor(x, t);
    const values = await eps.data();
    tf.dispose([x, t, eps]);
    points.forEach((p, i) => {
      const alphaBar = schedule.alphaBars[steps[i]];
      const { score } = diffusedMixture(threeBlobs, p, alphaBar);
      for (const d of [0, 1]) {
        const expected = -Math.sqrt(1 - alphaBar) * score[d];
        assert.ok(
          Math.abs(values[2 * i + d] - expected) < 1e-4 * (1 + Math.abs(expected)),
          `t ${steps[i]}: ${values[2 * i + d]} vs ${expected}`,
        );
      }
    });
  });

  it("takes points as [N, 1, 1, 2] only", () => {
    const x = tf.zeros([2, 2, 2, 3]) as tf.Tensor4D;
    const t = tf.tensor1d([0, 0], "int32");
    assert.throws(() => predictor(x, t), /\[N, 1, 1, 2\]/);
    tf.dispose([x, t]);
  });

  // Two blobs at ±2 with s = 0.3: samplers driven by the exact ε* should land on them.
  const twoBlobs: GaussianMixture2D = [
    { weight: 1, mean: [-2, 0], std: 0.3 },
    { weight: 1, mean: [2, 0], std: 0.3 },
  ];
  /** Where 1000 samples land: the share left of 0, mean |x| (the blobs sit at ±2), and the std of y. */
  async function spread(scheduler: Scheduler) {
    const n = 1000;
    const { images } = await sample(mixtureNoisePredictor(twoBlobs, schedule), scheduler, {
      shape: [n, 1, 1, 2],
      steps: 100,
      seed: 5,
    });
    const v = await images.data();
    images.dispose();
    let left = 0;
    let meanAbsX = 0;
    let squaresY = 0;
    for (let i = 0; i < n; i++) {
      if (v[2 * i] < 0) left++;
      meanAbsX += Math.abs(v[2 * i]) / n;
      squaresY += v[2 * i + 1] ** 2;
    }
    return { left: left / n, meanAbsX, stdY: Math.sqrt(squaresY / n) };
  }

  it("drives DDPM and DDIM to the data, and noiseless DDPM to a collapsed average", async () => {
    const before = tf.memory().numTensors;
    const ddpm = await spread(
      new DDPMScheduler(schedule, { variance: "betaTilde", clipSample: false }),
    );
    const ddim = await spread(new DDIMScheduler(schedule, { clipSample: false }));
    const noiseless = await spread(new NoiselessDDPMScheduler(schedule, { clipSample: false }));
    assert.equal(tf.memory().numTensors, before);
    for (const { left, meanAbsX, stdY } of [ddpm, ddim]) {
      assert.ok(Math.abs(left - 0.5) < 0.06, `left fraction ${left}`);
      assert.ok(Math.abs(meanAbsX - 2) < 0.06, `mean |x| ${meanAbsX}`);
      assert.ok(Math.abs(stdY - 0.3) < 0.04, `std of y ${stdY}`);
    }
    // Without the added noise every point is pulled to the blobs' centre line and inwards.
    assert.ok(noiseless.stdY < 0.05, `noiseless DDPM std of y ${noiseless.stdY}`);
    assert.ok(noiseless.meanAbsX < 1.8, `noiseless DDPM mean |x| ${noiseless.meanAbsX}`);
  });
});
