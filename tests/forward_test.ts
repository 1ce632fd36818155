import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  addNoise,
  forwardStep,
  posteriorCoefficients,
  posteriorMean,
  posteriorVariance,
} from "../lib/core/forward.ts";
import { predictNoiseFromX0, predictX0FromNoise } from "../lib/core/parameterization.ts";
import { noiseSchedule, SCHEDULE_NAMES } from "../lib/core/schedules.ts";

await tf.setBackend("cpu");

/** Mean and standard deviation of all elements of `x`. */
function moments(x: tf.Tensor): { mean: number; std: number } {
  const [mean, variance] = tf.tidy(() => {
    const { mean, variance } = tf.moments(x);
    return [mean.dataSync()[0], variance.dataSync()[0]];
  });
  return { mean, std: Math.sqrt(variance) };
}

/** Elements of `x`, then disposes it. */
function take(x: tf.Tensor): Float32Array {
  const values = x.dataSync() as Float32Array;
  x.dispose();
  return values;
}

function assertClose(actual: number, expected: number, tolerance: number, what = "") {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} is not within ${tolerance} of ${expected}`,
  );
}

/** The step whose alphaBar is closest to `target`. */
function stepWithAlphaBar(alphaBars: Float64Array, target: number): number {
  let best = 0;
  for (let t = 1; t < alphaBars.length; t++) {
    if (Math.abs(alphaBars[t] - target) < Math.abs(alphaBars[best] - target)) best = t;
  }
  return best;
}

const linear = noiseSchedule("linear", 1000);

describe("addNoise", () => {
  it("x_t has mean sqrt(alphaBar) x_0 and std sqrt(1 - alphaBar) over 200k elements", () => {
    const x0 = tf.fill([50, 20, 20, 10], 0.5);
    const noise = tf.randomNormal([50, 20, 20, 10], 0, 1, "float32", 7);
    // At alphaBar = 0.3 the correct noise scale sqrt(0.7) = 0.837 and the widely copied
    // (1 - alphaBar) = 0.7 are far apart compared with the sampling error (~0.002).
    const t30 = stepWithAlphaBar(linear.alphaBars, 0.3);
    for (const t of [0, 100, t30, 999]) {
      const aB = linear.alphaBars[t];
      const xt = addNoise(x0, noise, t, linear);
      const { mean, std } = moments(xt);
      xt.dispose();
      assertClose(mean, Math.sqrt(aB) * 0.5, 0.01, `mean at t=${t}`);
      assertClose(std, Math.sqrt(1 - aB), 0.01 * Math.sqrt(1 - aB), `std at t=${t}`);
      if (t === t30) {
        assert.ok(Math.abs(std - (1 - aB)) > 0.1, `std ${std} must not be 1 - alphaBar`);
      }
    }
    tf.dispose([x0, noise]);
  });

  it("preserves unit variance: x_0 ~ N(0, 1) gives x_t ~ N(0, 1) at every step", () => {
    const x0 = tf.randomNormal([40, 50, 50], 0, 1, "float32", 1);
    const noise = tf.randomNormal([40, 50, 50], 0, 1, "float32", 2);
    for (const schedule of [linear, noiseSchedule("cosine")]) {
      for (const t of [10, stepWithAlphaBar(schedule.alphaBars, 0.5), 900]) {
        const xt = addNoise(x0, noise, t, schedule);
        assertClose(moments(xt).std, 1, 0.01, `${schedule.name} std at t=${t}`);
        // Covariance with x_0 is sqrt(alphaBar): the signal kept, not alphaBar.
        const covariance = tf.tidy(() => tf.mean(tf.mul(xt, x0)).dataSync()[0]);
        assertClose(covariance, schedule.sqrtAlphaBars[t], 0.01, `cov at t=${t}`);
        xt.dispose();
      }
    }
    tf.dispose([x0, noise]);
  });

  it("scales signal and noise by exactly sqrt(alphaBar_t) and sqrt(1 - alphaBar_t)", () => {
    const ones = tf.ones([3, 2, 2, 1]);
    const zeros = tf.zeros([3, 2, 2, 1]);
    const signal = take(addNoise(ones, zeros, 499, linear));
    const noise = take(addNoise(zeros, ones, 499, linear));
    for (let i = 0; i < 12; i++) {
      assertClose(signal[i], linear.sqrtAlphaBars[499], 1e-6, "signal scale");
      assertClose(noise[i], linear.sqrtOneMinusAlphaBars[499], 1e-6, "noise scale");
    }
    // Closed-form value, independent of the schedule object: sqrt(prod(1 - beta_s)).
    let alphaBar = 1;
    for (let s = 0; s <= 499; s++) alphaBar *= 1 - (1e-4 + (0.02 - 1e-4) * s / 999);
    assertClose(signal[0], Math.sqrt(alphaBar), 1e-6, "sqrt alphaBar_500");
    tf.dispose([ones, zeros]);
  });

  it("takes one step per batch element from an array, an Int32Array or a tensor", () => {
    const steps = [0, 10, 500, 999];
    const x0 = tf.ones([4, 3, 3, 2]);
    const noise = tf.fill([4, 3, 3, 2], 2);
    const tensorSteps = tf.tensor1d(steps, "int32");
    for (const t of [steps, Int32Array.from(steps), tensorSteps]) {
      const xt = addNoise(x0, noise, t, linear);
      assert.deepEqual(xt.shape, [4, 3, 3, 2]);
      const values = take(xt);
      steps.forEach((step, b) => {
        const expected = linear.sqrtAlphaBars[step] + 2 * linear.sqrtOneMinusAlphaBars[step];
        for (let i = 0; i < 18; i++) assertClose(values[b * 18 + i], expected, 1e-6, `b=${b}`);
      });
    }
    // Rank-2 data (points in the plane) broadcasts the same way.
    const points = take(addNoise(tf.ones([2, 2]), tf.zeros([2, 2]), [0, 999], linear));
    assertClose(points[1], linear.sqrtAlphaBars[0], 1e-6, "row 0");
    assertClose(points[2], linear.sqrtAlphaBars[999], 1e-6, "row 1");
    tf.dispose([x0, noise, tensorSteps]);
  });

  it("rejects a bad step, a step count that does not match the batch, and a noise shape", () => {
    const x0 = tf.zeros([2, 4, 4, 1]);
    const noise = tf.zeros([2, 4, 4, 1]);
    const before = tf.memory().numTensors;
    for (const t of [1000, -1, 1.5, NaN]) {
      assert.throws(
        () => addNoise(x0, noise, t, linear),
        /out of range: use an integer in \[0, 999\]/,
      );
    }
    assert.throws(() => addNoise(x0, noise, [3, 1000], linear), /t = 1000 is out of range/);
    assert.throws(() => addNoise(x0, noise, [1, 2, 3], linear), /one step per batch element/);
    const badSteps = tf.tensor1d([1, 2, 3], "int32");
    assert.throws(() => addNoise(x0, noise, badSteps, linear), /shape \[3\]/);
    badSteps.dispose();
    const wrongNoise = tf.zeros([2, 4, 4, 3]);
    assert.throws(
      () => addNoise(x0, wrongNoise, 5, linear),
      /same shape.*\[2,4,4,1\].*\[2,4,4,3\]/,
    );
    wrongNoise.dispose();
    assert.equal(tf.memory().numTensors, before, "a failed call leaks no tensors");
    tf.dispose([x0, noise]);
  });
});

describe("forwardStep", () => {
  it("without noise, t steps shrink x_0 by exactly sqrt(alphaBar_t)", () => {
    const schedule = noiseSchedule("cosine", 200);
    const zeros = tf.zeros([1, 2, 2, 1]);
    let x = tf.fill([1, 2, 2, 1], 0.8);
    for (let t = 0; t < 150; t++) {
      const next = forwardStep(x, zeros, t, schedule);
      x.dispose();
      x = next;
    }
    assertClose(take(x)[0], 0.8 * schedule.sqrtAlphaBars[149], 1e-5, "shrunk signal");
    zeros.dispose();
  });

  it("iterated step by step, matches the closed-form jump in distribution", () => {
    const schedule = noiseSchedule("cosine", 100);
    const steps = 60; // alphaBar about 0.34
    const shape = [20, 20, 20, 5];
    const x0 = tf.randomNormal(shape, 0.5, 0.5, "float32", 3);
    let x = x0.clone();
    for (let t = 0; t < steps; t++) {
      const next = tf.tidy(() =>
        forwardStep(x, tf.randomNormal(shape, 0, 1, "float32", 100 + t), t, schedule)
      );
      x.dispose();
      x = next;
    }
    const noise = tf.randomNormal(shape, 0, 1, "float32", 99);
    const jumped = addNoise(x0, noise, steps - 1, schedule);
    const iterated = moments(x);
    const closed = moments(jumped);
    const aB = schedule.alphaBars[steps - 1];
    // Theory: mean sqrt(aB) 0.5, variance aB 0.25 + (1 - aB).
    assertClose(iterated.mean, Math.sqrt(aB) * 0.5, 0.01, "iterated mean");
    assertClose(iterated.std, Math.sqrt(aB * 0.25 + 1 - aB), 0.01, "iterated std");
    assertClose(iterated.mean, closed.mean, 0.015, "means agree");
    assertClose(iterated.std, closed.std, 0.015, "stds agree");
    // Both keep sqrt(aB) of x_0: E[(x_t - E x_t)(x_0 - E x_0)] = sqrt(aB) Var x_0.
    const covariance = (xt: tf.Tensor) =>
      tf.tidy(() => {
        const centered0 = tf.sub(x0, tf.mean(x0));
        return tf.mean(tf.mul(tf.sub(xt, tf.mean(xt)), centered0)).dataSync()[0];
      });
    assertClose(covariance(x), Math.sqrt(aB) * 0.25, 0.01, "iterated covariance");
    assertClose(covariance(jumped), Math.sqrt(aB) * 0.25, 0.01, "jumped covariance");
    tf.dispose([x0, x, noise, jumped]);
  });

  it("scales by sqrt(1 - beta_t) and sqrt(beta_t), per batch element", () => {
    const values = take(
      forwardStep(tf.ones([2, 1, 1, 1]), tf.ones([2, 1, 1, 1]), [0, 999], linear),
    );
    assertClose(values[0], Math.sqrt(1 - 1e-4) + Math.sqrt(1e-4), 1e-6, "first step");
    assertClose(values[1], Math.sqrt(1 - 0.02) + Math.sqrt(0.02), 1e-6, "last step");
  });
});

/** Posterior of x_{t-1} given x_t and x_0 by the product of Gaussians, for 0-based t >= 1. */
function gaussianProductPosterior(
  alphaBarPrev: number,
  beta: number,
  x0: number,
  xt: number,
): { mean: number; variance: number } {
  // q(x_{t-1} | x_0) = N(sqrt(alphaBarPrev) x0, 1 - alphaBarPrev), and as a function of
  // x_{t-1}, q(x_t | x_{t-1}) = N(sqrt(1 - beta) x_{t-1}, beta) is proportional to
  // N(x_t / sqrt(1 - beta), beta / (1 - beta)). Precisions add; means weight by precision.
  const priorPrecision = 1 / (1 - alphaBarPrev);
  const likelihoodPrecision = (1 - beta) / beta;
  const variance = 1 / (priorPrecision + likelihoodPrecision);
  const mean = variance *
    (priorPrecision * Math.sqrt(alphaBarPrev) * x0 +
      likelihoodPrecision * xt / Math.sqrt(1 - beta));
  return { mean, variance };
}

/** The same posterior by Bayes' rule on a grid of x_{t-1} values. */
function gridPosterior(alphaBarPrev: number, beta: number, x0: number, xt: number) {
  const priorMean = Math.sqrt(alphaBarPrev) * x0;
  const priorStd = Math.sqrt(1 - alphaBarPrev);
  // Cover both where the prior and where the likelihood put x_{t-1}.
  const likelihoodMean = xt / Math.sqrt(1 - beta);
  const width = 12 * Math.max(priorStd, Math.sqrt(beta / (1 - beta)));
  const n = 400_001;
  const low = Math.min(priorMean, likelihoodMean) - width;
  const high = Math.max(priorMean, likelihoodMean) + width;
  const logDensity = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = low + (high - low) * i / (n - 1);
    logDensity[i] = -((x - priorMean) ** 2) / (2 * priorStd ** 2) -
      ((xt - Math.sqrt(1 - beta) * x) ** 2) / (2 * beta);
    max = Math.max(max, logDensity[i]);
  }
  let mass = 0, first = 0, second = 0;
  for (let i = 0; i < n; i++) {
    const x = low + (high - low) * i / (n - 1);
    const p = Math.exp(logDensity[i] - max);
    mass += p;
    first += p * x;
    second += p * x * x;
  }
  const mean = first / mass;
  return { mean, variance: second / mass - mean * mean };
}

describe("posterior q(x_{t-1} | x_t, x_0)", () => {
  it("matches the product of q(x_t | x_{t-1}) and q(x_{t-1} | x_0)", () => {
    for (const name of SCHEDULE_NAMES) {
      const schedule = noiseSchedule(name);
      const c = posteriorCoefficients(schedule);
      for (const t of [1, 5, 250, 700, 998]) {
        const alphaBarPrev = schedule.alphaBars[t - 1], beta = schedule.betas[t];
        // The mean is linear in (x0, xt): read its coefficients off unit inputs.
        const fromX0 = gaussianProductPosterior(alphaBarPrev, beta, 1, 0);
        const fromXt = gaussianProductPosterior(alphaBarPrev, beta, 0, 1);
        const what = `${name} t=${t}`;
        assertClose(c.meanCoefX0[t], fromX0.mean, 1e-9 * Math.max(1, fromX0.mean), what);
        assertClose(c.meanCoefXt[t], fromXt.mean, 1e-9, what);
        assertClose(c.variance[t] / fromX0.variance, 1, 1e-9, what);
      }
    }
  });

  it("matches Bayes' rule computed numerically on a grid", () => {
    const x0 = 0.3;
    const c = posteriorCoefficients(linear);
    for (const t of [1, 50, 500, 999]) {
      // A likely x_t (noise -0.7) and an unlikely one.
      for (
        const xt of [linear.sqrtAlphaBars[t] * x0 - 0.7 * linear.sqrtOneMinusAlphaBars[t], -0.4]
      ) {
        const grid = gridPosterior(linear.alphaBars[t - 1], linear.betas[t], x0, xt);
        const mean = c.meanCoefX0[t] * x0 + c.meanCoefXt[t] * xt;
        assertClose(mean, grid.mean, 1e-6, `mean at t=${t}`);
        assertClose(c.variance[t] / grid.variance, 1, 1e-4, `variance at t=${t}`);
      }
    }
  });

  it("is x_0 itself at the first step and never wider than beta_t", () => {
    for (const name of SCHEDULE_NAMES) {
      const schedule = noiseSchedule(name);
      const c = posteriorCoefficients(schedule);
      assert.equal(c.variance[0], 0);
      assertClose(c.meanCoefX0[0], 1, 1e-12, "x0 weight at step 0");
      assert.equal(c.meanCoefXt[0], 0);
      assert.equal(c.logVarianceClipped[0], Math.log(c.variance[1]));
      for (let t = 1; t < schedule.T; t++) {
        assert.ok(c.variance[t] > 0 && c.variance[t] <= schedule.betas[t], `${name} t=${t}`);
        assert.equal(c.logVarianceClipped[t], Math.log(c.variance[t]));
        assert.equal(posteriorVariance(t, schedule), c.variance[t]);
      }
      assert.equal(posteriorVariance(0, schedule), 0);
    }
    assert.throws(() => posteriorVariance(1000, linear), /t = 1000 is out of range/);
  });

  it("posteriorMean applies the coefficients, per batch element", () => {
    const c = posteriorCoefficients(linear);
    const x0 = tf.tensor4d([0.3, -0.5, 1, 0.25], [4, 1, 1, 1]);
    const xt = tf.tensor4d([-0.4, 0.7, -1.2, 2], [4, 1, 1, 1]);
    const steps = [0, 3, 400, 999];
    const tensorSteps = tf.tensor1d(steps, "int32");
    for (const t of [steps, tensorSteps]) {
      const means = take(posteriorMean(x0, xt, t, linear));
      const [a, b] = [x0.dataSync(), xt.dataSync()];
      steps.forEach((step, i) => {
        const expected = c.meanCoefX0[step] * a[i] + c.meanCoefXt[step] * b[i];
        assertClose(means[i], expected, 1e-6, `element ${i}`);
      });
    }
    const single = take(posteriorMean(x0, xt, 400, linear));
    assertClose(single[3], c.meanCoefX0[400] * 0.25 + c.meanCoefXt[400] * 2, 1e-6, "single t");
    tf.dispose([x0, xt, tensorSteps]);
  });
});

describe("predictX0FromNoise and predictNoiseFromX0", () => {
  it("invert addNoise, per batch element", () => {
    for (const schedule of [linear, noiseSchedule("scaled-linear")]) {
      const x0 = tf.randomUniform([4, 4, 4, 3], -1, 1, "float32", 11);
      const noise = tf.randomNormal([4, 4, 4, 3], 0, 1, "float32", 12);
      const steps = [0, 250, 700, 999];
      const xt = addNoise(x0, noise, steps, schedule);
      const x0Again = predictX0FromNoise(xt, noise, steps, schedule);
      const noiseAgain = predictNoiseFromX0(xt, x0, steps, schedule);
      // Recovering x0 at t = 999 amplifies float32 rounding by 1/sqrt(alphaBar) ~ 160.
      const x0Error = tf.tidy(() => tf.max(tf.abs(tf.sub(x0Again, x0))).dataSync()[0]);
      const noiseError = tf.tidy(() => tf.max(tf.abs(tf.sub(noiseAgain, noise))).dataSync()[0]);
      assert.ok(x0Error < 1e-3, `${schedule.name}: x0 recovered within ${x0Error}`);
      assert.ok(noiseError < 1e-3, `${schedule.name}: noise recovered within ${noiseError}`);
      tf.dispose([x0, noise, xt, x0Again, noiseAgain]);
    }
  });

  it("compute the closed forms at a single step", () => {
    const t = 300, aB = linear.alphaBars[300];
    const xt = tf.fill([1, 1, 1, 1], 0.9);
    const other = tf.fill([1, 1, 1, 1], -0.2);
    const x0 = take(predictX0FromNoise(xt, other, t, linear))[0];
    const eps = take(predictNoiseFromX0(xt, other, t, linear))[0];
    assertClose(x0, (0.9 - Math.sqrt(1 - aB) * -0.2) / Math.sqrt(aB), 1e-5, "x0");
    assertClose(eps, (0.9 - Math.sqrt(aB) * -0.2) / Math.sqrt(1 - aB), 1e-5, "eps");
    tf.dispose([xt, other]);
  });
});

describe("memory", () => {
  it("leaves no tensors behind", () => {
    const x = tf.randomNormal([2, 4, 4, 1], 0, 1, "float32", 5);
    const y = tf.randomNormal([2, 4, 4, 1], 0, 1, "float32", 6);
    const steps = tf.tensor1d([3, 900], "int32");
    const before = tf.memory().numTensors;
    for (const t of [7, [3, 900], steps]) {
      for (
        const result of [
          addNoise(x, y, t, linear),
          forwardStep(x, y, t, linear),
          posteriorMean(x, y, t, linear),
          predictX0FromNoise(x, y, t, linear),
          predictNoiseFromX0(x, y, t, linear),
        ]
      ) {
        assert.deepEqual(result.shape, [2, 4, 4, 1]);
        result.dispose();
      }
    }
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([x, y, steps]);
  });
});
