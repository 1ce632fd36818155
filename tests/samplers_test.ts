import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { type NoiseSchedule, noiseSchedule } from "../lib/core/schedules.ts";
import { addNoise } from "../lib/core/forward.ts";
import { Random } from "../lib/core/random.ts";
import {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  NoiselessDDPMScheduler,
  sample,
  type Scheduler,
  spacedTimesteps,
} from "../lib/core/samplers/mod.ts";

await selectBackend({ requested: "wasm", quiet: true });

const linear = noiseSchedule("linear", 1000);

/**
 * Data x₀ ~ N(μ, s²) in every pixel. Then x_t ~ N(√ᾱ μ, ᾱ s² + 1 − ᾱ) and the exact
 * noise predictor is E[ε | x_t] = √(1 − ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ).
 */
const MU = 0.3;
const S = 0.5;
function gaussianOracleFor(schedule: NoiseSchedule) {
  return (xt: tf.Tensor4D, t: tf.Tensor1D): tf.Tensor4D => {
    const aB = schedule.alphaBars[t.dataSync()[0]];
    return tf.tidy(() =>
      tf.mul(
        tf.sub(xt, Math.sqrt(aB) * MU),
        Math.sqrt(1 - aB) / (aB * S * S + 1 - aB),
      ) as tf.Tensor4D
    );
  };
}
const gaussianOracle = gaussianOracleFor(linear);

/** The probability-flow ODE maps x_T to μ + s·z, z = (x_T − √ᾱ_T μ)/√(ᾱ_T s² + 1 − ᾱ_T). */
function exactOdeEndpoint(xT: Float32Array, alphaBarStart: number): Float32Array {
  const aB = alphaBarStart;
  const scale = Math.sqrt(aB * S * S + 1 - aB);
  return xT.map((x) => MU + (S * (x - Math.sqrt(aB) * MU)) / scale);
}

/** A NoiseSchedule with the given ᾱ_t (for toy problems). */
function lambdaLinearSchedule(alphaBars: Float64Array): NoiseSchedule {
  const T = alphaBars.length;
  const alphas = alphaBars.map((a, t) => (t === 0 ? a : a / alphaBars[t - 1]));
  return {
    name: "linear",
    T,
    betas: alphas.map((a) => 1 - a),
    alphas,
    alphaBars,
    sqrtAlphaBars: alphaBars.map(Math.sqrt),
    sqrtOneMinusAlphaBars: alphaBars.map((a) => Math.sqrt(1 - a)),
    snr: alphaBars.map((a) => a / (1 - a)),
    logSnr: alphaBars.map((a) => Math.log(a / (1 - a))),
  };
}

function stats(values: Float32Array): { mean: number; std: number } {
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  let sq = 0;
  for (const v of values) sq += (v - mean) ** 2;
  return { mean, std: Math.sqrt(sq / values.length) };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function run(
  scheduler: Scheduler,
  shape: [number, number, number, number],
  seed: number,
  steps?: number,
) {
  const { images } = await sample(gaussianOracle, scheduler, { shape, seed, steps });
  const values = await images.data() as Float32Array;
  images.dispose();
  return values;
}

describe("timestep spacing", () => {
  it("matches diffusers' linspace, leading and trailing for T = 1000, n = 10", () => {
    assert.deepEqual(spacedTimesteps(1000, 10, "linspace"), [
      999,
      888,
      777,
      666,
      555,
      444,
      333,
      222,
      111,
      0,
    ]);
    assert.deepEqual(spacedTimesteps(1000, 10, "leading"), [
      900,
      800,
      700,
      600,
      500,
      400,
      300,
      200,
      100,
      0,
    ]);
    assert.deepEqual(spacedTimesteps(1000, 10, "trailing"), [
      999,
      899,
      799,
      699,
      599,
      499,
      399,
      299,
      199,
      99,
    ]);
  });

  it("rounds halves to even as numpy does", () => {
    // linspace(0, 9, 3) = [0, 4.5, 9] → np.round → [0, 4, 9]
    assert.deepEqual(spacedTimesteps(10, 3, "linspace"), [9, 4, 0]);
    // arange(10, 0, -2.5) = [10, 7.5, 5, 2.5] → np.round → [10, 8, 5, 2] → −1
    assert.deepEqual(spacedTimesteps(10, 4, "trailing"), [9, 7, 4, 1]);
    assert.deepEqual(spacedTimesteps(10, 3, "leading"), [6, 3, 0]);
  });

  it("uses all T steps when n = T and rejects impossible counts", () => {
    for (const spacing of ["linspace", "leading", "trailing"] as const) {
      assert.deepEqual(
        spacedTimesteps(50, 50, spacing),
        Array.from({ length: 50 }, (_, i) => 49 - i),
      );
    }
    assert.throws(() => spacedTimesteps(50, 51), /from 1 to T = 50/);
  });
});

describe("DDIM and DDPM", () => {
  it("DDIM with η = 1 over all T steps is DDPM with σ² = β̃", async () => {
    const shape: [number, number, number, number] = [2, 4, 4, 3];
    const ddpm = await run(
      new DDPMScheduler(linear, { variance: "betaTilde", clipSample: false }),
      shape,
      11,
    );
    const ddim = new DDIMScheduler(linear, { eta: 1, clipSample: false });
    const viaDdim = await run(ddim, shape, 11, 1000);
    assert.ok(
      maxAbsDiff(ddpm, viaDdim) < 1e-3,
      `max |DDPM − DDIM(η=1)| = ${maxAbsDiff(ddpm, viaDdim)}`,
    );
    // …and differs from DDPM with σ² = β (the other variance).
    const beta = await run(
      new DDPMScheduler(linear, { variance: "beta", clipSample: false }),
      shape,
      11,
    );
    assert.ok(maxAbsDiff(ddpm, beta) > 1e-2);
  });

  it("DDIM with η = 0 is deterministic: the same x_T gives the same x_0 whatever the generator", async () => {
    const shape: [number, number, number, number] = [1, 4, 4, 3];
    const xT = tf.tensor4d(new Random(3).normals(48), shape);
    const outputs: Float32Array[] = [];
    for (const seed of [1, 2]) {
      const { images } = await sample(
        gaussianOracle,
        new DDIMScheduler(linear, { eta: 0, clipSample: false }),
        {
          shape,
          seed,
          xT,
          steps: 20,
        },
      );
      outputs.push(await images.data() as Float32Array);
      images.dispose();
    }
    // stepping by hand with two different generators gives the same result too
    const scheduler = new DDIMScheduler(linear, { eta: 0, clipSample: false });
    scheduler.setTimesteps(20);
    const eps = gaussianOracle(xT, tf.tensor1d([scheduler.timesteps[0]]));
    const a = scheduler.step(eps, scheduler.timesteps[0], xT, new Random(1));
    const b = scheduler.step(eps, scheduler.timesteps[0], xT, new Random(99));
    assert.deepEqual(await a.prevSample.data(), await b.prevSample.data());
    tf.dispose([xT, eps, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample]);
    assert.deepEqual(outputs[0], outputs[1]);
    // and with η = 1 the generator matters
    const noisy1 = await run(
      new DDIMScheduler(linear, { eta: 1, clipSample: false }),
      shape,
      1,
      20,
    );
    const noisy2 = await run(
      new DDIMScheduler(linear, { eta: 1, clipSample: false }),
      shape,
      2,
      20,
    );
    assert.ok(maxAbsDiff(noisy1, noisy2) > 1e-2);
  });

  it("DDPM with the exact ε of Gaussian data recovers the data's mean and standard deviation", async () => {
    const shape: [number, number, number, number] = [1, 32, 32, 4]; // 4096 samples of a pixel
    for (const variance of ["betaTilde", "beta"] as const) {
      const { mean, std } = stats(
        await run(new DDPMScheduler(linear, { variance, clipSample: false }), shape, 5),
      );
      assert.ok(Math.abs(mean - MU) < 0.03, `${variance}: mean ${mean} ≠ ${MU}`);
      assert.ok(Math.abs(std - S) < 0.03, `${variance}: std ${std} ≠ ${S}`);
    }
  });

  it("without the noise (the course's incorrect sampler) the samples collapse towards the mean", async () => {
    const shape: [number, number, number, number] = [1, 32, 32, 4];
    const { mean, std } = stats(
      await run(new NoiselessDDPMScheduler(linear, { clipSample: false }), shape, 5),
    );
    assert.ok(Math.abs(mean - MU) < 0.05, `mean ${mean}`);
    assert.ok(std < S / 2, `std ${std} should be far below the data's ${S}`);
  });
});

describe("DPM-Solver++(2M)", () => {
  it("is second order on a Gaussian toy with exact ε: error ÷4 per doubling, far below DDIM's", async () => {
    // A schedule with λ = log(α/σ) linear in t from 5 down to −5, so that "linspace"
    // timesteps are evenly spaced in λ (the variable the solver steps in).
    const T = 1001;
    const alphaBars = new Float64Array(T);
    for (let t = 0; t < T; t++) alphaBars[t] = 1 / (1 + Math.exp(-2 * (5 - (10 * t) / (T - 1))));
    const schedule = lambdaLinearSchedule(alphaBars);
    const oracle = gaussianOracleFor(schedule);
    const shape: [number, number, number, number] = [1, 8, 8, 4];
    const xT = new Random(21).normals(256);
    const errors: Record<string, number> = {};
    for (const steps of [11, 26, 51]) {
      for (
        const [name, scheduler] of [
          [
            "dpm",
            new DPMSolverMultistepScheduler(schedule, {
              timestepSpacing: "linspace",
              clipSample: false,
            }),
          ],
          ["ddim", new DDIMScheduler(schedule, { timestepSpacing: "linspace", clipSample: false })],
        ] as const
      ) {
        const x = tf.tensor4d(xT, shape);
        const { images } = await sample(oracle, scheduler, { shape, xT: x, steps });
        const exact = exactOdeEndpoint(xT, schedule.alphaBars[scheduler.timesteps[0]]);
        errors[`${name}${steps}`] = maxAbsDiff(await images.data() as Float32Array, exact);
        tf.dispose([x, images]);
      }
    }
    const report = JSON.stringify(errors);
    assert.ok(errors.dpm51 < 0.01, report);
    assert.ok(errors.dpm26 / errors.dpm51 > 3, `second order: ${report}`);
    assert.ok(errors.ddim26 / errors.ddim51 < 2.5, `DDIM is first order: ${report}`);
    for (const n of [11, 26, 51]) assert.ok(errors[`dpm${n}`] < errors[`ddim${n}`] / 5, report);
  });
});

describe("sample", () => {
  it("returns the trajectory, starts from x_T of the seed and leaks no tensors", async () => {
    const shape: [number, number, number, number] = [2, 4, 4, 1];
    const before = tf.memory().numTensors;
    const scheduler = new DDPMScheduler(linear);
    const { images, trajectory } = await sample(gaussianOracle, scheduler, {
      shape,
      seed: 4,
      steps: 10,
      returnTrajectory: true,
      trajectoryEvery: 3,
    });
    assert.equal(tf.memory().numTensors, before + 1);
    assert.deepEqual(trajectory!.timesteps, [999, 699, 399, 99]);
    assert.equal(trajectory!.xt.length, 4);
    assert.deepEqual(trajectory!.xt[0].shape, shape);
    assert.deepEqual(trajectory!.xt[0].data, new Random(4).normals(32));
    // the last recorded x̂₀ is what the last step returns (no noise on the last step)
    assert.deepEqual(await images.data(), trajectory!.predX0[3].data);
    images.dispose();
  });

  it("addNoise is the forward process", () => {
    const x0 = tf.fill([1, 2, 2, 1], 0.5) as tf.Tensor4D;
    const noise = tf.fill([1, 2, 2, 1], -1) as tf.Tensor4D;
    const fromScheduler = new DDIMScheduler(linear).addNoise(x0, noise, 500);
    const expected = 0.5 * linear.sqrtAlphaBars[500] - linear.sqrtOneMinusAlphaBars[500];
    for (const v of fromScheduler.dataSync()) assert.ok(Math.abs(v - expected) < 1e-6);
    assert.deepEqual(fromScheduler.dataSync(), addNoise(x0, noise, 500, linear).dataSync());
  });

  it("clips x̂₀ to [−1, 1] by default, as diffusers does; clipSample: false keeps it", () => {
    // At t = 999, x̂₀ = (x_t − √(1−ᾱ) ε̂)/√ᾱ is far outside the image range for ε̂ = −x_t.
    const x = tf.fill([1, 2, 2, 1], 1) as tf.Tensor4D;
    const eps = tf.fill([1, 2, 2, 1], -1) as tf.Tensor4D;
    const predicted = (options: { clipSample?: boolean }) => {
      const scheduler = new DDIMScheduler(linear, options);
      scheduler.setTimesteps(10);
      const out = scheduler.step(eps, 999, x);
      const values = Array.from(out.predOriginalSample.dataSync());
      tf.dispose([out.prevSample, out.predOriginalSample]);
      return values;
    };
    assert.deepEqual(predicted({}), [1, 1, 1, 1]);
    const unclipped = predicted({ clipSample: false })[0];
    assert.ok(unclipped > 100, `unclipped x̂₀ = ${unclipped}`);
    tf.dispose([x, eps]);
  });

  it("refuses a timestep that is not the scheduler's", () => {
    const scheduler = new DDIMScheduler(linear);
    scheduler.setTimesteps(10);
    const x = tf.zeros([1, 1, 1, 1]) as tf.Tensor4D;
    assert.throws(() => scheduler.step(x, 500, x), /not one of this scheduler's timesteps/);
  });
});
