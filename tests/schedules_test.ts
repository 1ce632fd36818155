import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { noiseSchedule, SCHEDULE_NAMES } from "../lib/core/schedules.ts";

/** |actual − expected| ≤ relative · |expected|. */
function assertRelClose(actual: number, expected: number, relative: number, what = "") {
  assert.ok(
    Math.abs(actual - expected) <= relative * Math.abs(expected),
    `${what}: ${actual} is not within ${relative * 100}% of ${expected}`,
  );
}

/** ᾱ at the paper's step t (1-based) of the cosine schedule, straight from Nichol & Dhariwal. */
function cosineAlphaBar(t: number, T: number): number {
  const s = 0.008;
  const f = (u: number) => Math.cos((u / T + s) / (1 + s) * Math.PI / 2) ** 2;
  return f(t) / f(0);
}

describe("noiseSchedule", () => {
  it("knows every listed name and gives arrays of length T", () => {
    assert.deepEqual([...SCHEDULE_NAMES], [
      "linear",
      "scaled-linear",
      "quadratic",
      "cosine",
      "sigmoid",
    ]);
    for (const name of SCHEDULE_NAMES) {
      const s = noiseSchedule(name, 37);
      assert.equal(s.name, name);
      assert.equal(s.T, 37);
      for (
        const a of [
          s.betas,
          s.alphas,
          s.alphaBars,
          s.sqrtAlphaBars,
          s.sqrtOneMinusAlphaBars,
          s.snr,
          s.logSnr,
        ]
      ) {
        assert.ok(a instanceof Float64Array);
        assert.equal(a.length, 37);
      }
    }
    assert.equal(noiseSchedule("linear").T, 1000);
  });

  it("linear is DDPM's: beta from 1e-4 to 0.02, alphaBar_T about 4.04e-5", () => {
    const s = noiseSchedule("linear", 1000);
    assertRelClose(s.betas[0], 1e-4, 1e-12, "beta_1");
    assertRelClose(s.betas[999], 0.02, 1e-12, "beta_T");
    assertRelClose(s.betas[500] - s.betas[499], (0.02 - 1e-4) / 999, 1e-9, "beta step");
    assertRelClose(s.alphaBars[999], 4.0e-5, 0.05, "alphaBar_T");
    // DDPM's schedule leaves sqrt(alphaBar_T) = 0.00635 of the signal.
    assertRelClose(s.sqrtAlphaBars[999], 0.006353, 0.001, "sqrt alphaBar_T");
    // alphaBar after the first step is 1 - beta_1, after the second (1 - beta_1)(1 - beta_2).
    assertRelClose(s.alphaBars[0], 1 - 1e-4, 1e-14, "alphaBar_1");
    const beta2 = 1e-4 + (0.02 - 1e-4) / 999;
    assertRelClose(s.alphaBars[1], (1 - 1e-4) * (1 - beta2), 1e-14, "alphaBar_2");
    // ln alphaBar_t = sum ln(1 - beta_s), each beta from the linspace formula.
    for (const t of [10, 250, 600, 1000]) {
      let logAlphaBar = 0;
      for (let s2 = 1; s2 <= t; s2++) {
        logAlphaBar += Math.log1p(-(1e-4 + (0.02 - 1e-4) * (s2 - 1) / 999));
      }
      assertRelClose(s.alphaBars[t - 1], Math.exp(logAlphaBar), 1e-9, `alphaBar_${t}`);
    }
  });

  it("scaled-linear is Stable Diffusion's: sqrt(alphaBar_T) = 0.068265", () => {
    const s = noiseSchedule("scaled-linear");
    assertRelClose(s.betas[0], 0.00085, 1e-12, "beta_1");
    assertRelClose(s.betas[999], 0.012, 1e-12, "beta_T");
    // Lin et al. 2024 report sqrt(alphaBar_T) = 0.068265 for Stable Diffusion's schedule.
    assertRelClose(s.sqrtAlphaBars[999], 0.068265, 1e-4, "sqrt alphaBar_T");
    const mid = (Math.sqrt(0.00085) + Math.sqrt(0.012)) / 2;
    const s2 = noiseSchedule("scaled-linear", 3);
    assertRelClose(s2.betas[1], mid * mid, 1e-12, "middle beta");
  });

  it("quadratic has sqrt(beta) linear from 1e-2 to sqrt(0.02)", () => {
    const s = noiseSchedule("quadratic");
    assertRelClose(s.betas[0], 1e-4, 1e-12, "beta_1");
    assertRelClose(s.betas[999], 0.02, 1e-12, "beta_T");
    const step = (Math.sqrt(0.02) - 0.01) / 999;
    for (const t of [1, 300, 998]) {
      assertRelClose(Math.sqrt(s.betas[t]) - Math.sqrt(s.betas[t - 1]), step, 1e-8, "sqrt step");
    }
    // Quadratic, so beta in the middle sits below the linear schedule's.
    assert.ok(s.betas[500] < noiseSchedule("linear").betas[500]);
  });

  it("cosine follows Nichol & Dhariwal's closed form, with beta clipped at 0.999", () => {
    for (const T of [1000, 50]) {
      const s = noiseSchedule("cosine", T);
      for (const t of [1, 2, Math.floor(T / 4), Math.floor(T / 2), T - 5, T - 1]) {
        assertRelClose(s.alphaBars[t - 1], cosineAlphaBar(t, T), 1e-9, `cosine alphaBar_${t}`);
      }
      assert.ok(s.betas.every((b) => b > 0 && b <= 0.999));
      // f(T) = cos(pi/2)^2 is ~0, so the last step is the one that clips.
      assert.equal(s.betas[T - 1], 0.999);
      assertRelClose(s.alphaBars[T - 1], 0.001 * cosineAlphaBar(T - 1, T), 1e-9, "alphaBar_T");
    }
    // Half way, cos^2(0.504 pi/2) / cos^2(0.0079 pi/2) = 0.4938: about half the signal is left.
    assert.ok(Math.abs(noiseSchedule("cosine").alphaBars[499] - 0.4938) < 1e-4);
  });

  it("sigmoid: beta = sigmoid(linspace(-6, 6)) scaled into [1e-4, 0.02]", () => {
    const T = 1000;
    const s = noiseSchedule("sigmoid", T);
    const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
    assertRelClose(s.betas[0], sigmoid(-6) * (0.02 - 1e-4) + 1e-4, 1e-12, "beta_1");
    assertRelClose(s.betas[T - 1], sigmoid(6) * (0.02 - 1e-4) + 1e-4, 1e-12, "beta_T");
    // sigmoid(x) + sigmoid(-x) = 1, so betas pair up around the middle.
    for (const t of [0, 100, 499]) {
      assertRelClose(s.betas[t] + s.betas[T - 1 - t], 0.02 + 1e-4, 1e-12, "symmetry");
    }
  });

  it("alphaBar and logSnr strictly decrease, and snr, logSnr and the square roots agree", () => {
    for (const name of SCHEDULE_NAMES) {
      for (const T of [1000, 10]) {
        const s = noiseSchedule(name, T);
        for (let t = 0; t < T; t++) {
          assert.ok(s.betas[t] > 0 && s.betas[t] < 1, `${name} beta in (0, 1)`);
          assertRelClose(s.alphas[t], 1 - s.betas[t], 1e-15, `${name} alpha`);
          if (t > 0) {
            assert.ok(s.alphaBars[t] < s.alphaBars[t - 1], `${name} T=${T}: alphaBar at ${t}`);
            assert.ok(s.logSnr[t] < s.logSnr[t - 1], `${name} T=${T}: logSnr at ${t}`);
            assertRelClose(s.alphaBars[t], s.alphaBars[t - 1] * s.alphas[t], 1e-14, "cumprod");
          }
          const aB = s.alphaBars[t];
          assertRelClose(s.snr[t], aB / (1 - aB), 1e-12, `${name} snr`);
          assertRelClose(Math.exp(s.logSnr[t]), s.snr[t], 1e-9, `${name} logSnr`);
          assertRelClose(s.sqrtAlphaBars[t] ** 2, aB, 1e-14, `${name} sqrtAlphaBar`);
          assertRelClose(
            s.sqrtAlphaBars[t] ** 2 + s.sqrtOneMinusAlphaBars[t] ** 2,
            1,
            1e-14,
            `${name} variance preserved`,
          );
        }
        assertRelClose(s.alphaBars[0], s.alphas[0], 1e-15, "alphaBar_1 = alpha_1");
      }
    }
  });

  it("an unknown name fails with the bad name and the known ones", () => {
    assert.throws(() => noiseSchedule("cosnie"), (error: Error) => {
      assert.match(error.message, /"cosnie"/);
      for (const name of SCHEDULE_NAMES) assert.ok(error.message.includes(`"${name}"`), name);
      return true;
    });
  });

  it("a bad T fails and says what T must be", () => {
    for (const T of [1, 0, -5, 2.5, NaN, Infinity]) {
      assert.throws(() => noiseSchedule("linear", T), (error: Error) => {
        assert.match(error.message, /integer number of steps T >= 2/);
        assert.ok(error.message.includes(`T = ${T}`), error.message);
        return true;
      });
    }
    const s = noiseSchedule("linear", 2);
    assert.deepEqual([...s.betas], [1e-4, 0.02]);
  });
});
