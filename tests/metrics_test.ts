/**
 * The metrics against an independent reference (bench/metrics_reference.py: numpy and scipy, the
 * formulas of pytorch-fid, torch-fidelity and Kynkäänniemi et al., fixture
 * tests/fixtures/metrics_reference.json) and against the properties that define them.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Random } from "../lib/core/random.ts";
import {
  frechetDistance,
  gaussianStatistics,
  inceptionScore,
  kernelDistance,
  kernelDistanceDifference,
  mmd2,
  precisionRecall,
} from "../lib/metrics/mod.ts";
import { meanAndCovariance, multiply, sqrtPsd, symmetricEigen } from "../lib/metrics/linalg.ts";

const FIXTURE = new URL("./fixtures/metrics_reference.json", import.meta.url);

function close(actual: number, expected: number, relative: number, what: string) {
  const scale = Math.max(Math.abs(expected), 1e-12);
  assert.ok(
    Math.abs(actual - expected) <= relative * scale,
    `${what}: ${actual} against ${expected} (relative ${
      (Math.abs(actual - expected) / scale).toExponential(2)
    })`,
  );
}

const flat = (rows: number[][]) => Float64Array.from(rows.flat());

function normals(rng: Random, count: number, dim: number, shift = 0): Float64Array {
  return Float64Array.from({ length: count * dim }, () => rng.normal() + shift);
}

describe("float64 linear algebra", () => {
  it("decomposes a symmetric matrix and takes the square root of a PSD one", () => {
    const rng = new Random(3);
    const d = 12;
    const { covariance } = meanAndCovariance(normals(rng, 40, d), 40, d);
    const { values, vectors } = symmetricEigen(covariance, d);
    // A v = λ v for every pair.
    for (let k = 0; k < d; k++) {
      for (let i = 0; i < d; i++) {
        let av = 0;
        for (let j = 0; j < d; j++) av += covariance[i * d + j] * vectors[j * d + k];
        close(av, values[k] * vectors[i * d + k], 1e-9, `row ${i} of A v${k}`);
      }
    }
    const root = sqrtPsd(covariance, d);
    const square = multiply(root, root, d);
    square.forEach((x, i) => assert.ok(Math.abs(x - covariance[i]) < 1e-12, `S² ≠ A at ${i}`));
  });
});

describe("the metrics' defining properties", () => {
  const rng = new Random(11);
  const d = 6;
  const x = normals(rng, 200, d);
  const y = normals(rng, 180, d, 0.4);

  it("FID(X, X) = 0 and FID is symmetric", () => {
    const a = gaussianStatistics(x, 200, d), b = gaussianStatistics(y, 180, d);
    assert.ok(Math.abs(frechetDistance(a, a).distance) < 1e-10);
    close(frechetDistance(a, b).distance, frechetDistance(b, a).distance, 1e-10, "symmetry");
    assert.ok(frechetDistance(a, b).distance > 0.5, "a shift of 0.4 in six dimensions shows");
  });

  it("IS is 1 for one posterior repeated and K for balanced certain ones", () => {
    close(inceptionScore(new Float64Array(40).fill(0.25), 4, 2).mean, 1, 1e-12, "uniform");
    const oneHot = Float64Array.from(
      { length: 50 * 5 },
      (_, i) => i % 5 === Math.floor(i / 5) % 5 ? 1 : 0,
    );
    close(inceptionScore(oneHot, 5, 1).mean, 5, 1e-12, "one-hot");
  });

  it("KID of two halves of one set scatters around 0, and can be negative", () => {
    const whole = normals(rng, 400, d);
    const kid = kernelDistance(whole.subarray(0, 200 * d), whole.subarray(200 * d), d, {
      subsets: 20,
      subsetSize: 100,
    });
    assert.ok(Math.abs(kid.mean) < 3 * kid.std + 1e-3, `${kid.mean} ± ${kid.std}`);
    assert.ok(kid.subsets.some((v) => v < 0), "an unbiased estimate dips below 0");
    assert.ok(kernelDistance(x, y, d, { subsets: 5, subsetSize: 100 }).mean > 0.05);
  });

  it("precision and recall of a set against itself are 1; a collapsed model keeps precision, loses recall", () => {
    assert.deepEqual(precisionRecall(x, x, d), { precision: 1, recall: 1 });
    const few = Float64Array.from(
      { length: 100 * d },
      (_, i) => x[(Math.floor(i / d) % 5) * d + (i % d)] + 1e-3 * rng.normal(),
    );
    const { precision, recall } = precisionRecall(x, few, d);
    assert.ok(precision > 0.9 && recall < 0.2, `precision ${precision}, recall ${recall}`);
  });

  it("the u-statistic needs paired sets, the unbiased estimator does not", () => {
    assert.throws(() => mmd2(x, y, d, { estimator: "u-statistic" }), /equal sizes/);
    assert.ok(Number.isFinite(mmd2(x, y, d)));
  });
});

describe("the metrics match numpy and scipy", () => {
  it("on the fixture of bench/metrics_reference.py", async () => {
    const reference = JSON.parse(await Deno.readTextFile(FIXTURE));
    for (const c of reference.fid) {
      const dim = c.x[0].length;
      const a = gaussianStatistics(flat(c.x), c.x.length, dim);
      const b = gaussianStatistics(flat(c.y), c.y.length, dim);
      const fid = frechetDistance(a, b);
      const tolerance = Math.max(1e-6 * Math.abs(c.fidEigen), 1e-9);
      assert.ok(
        Math.abs(fid.distance - c.fidEigen) <= tolerance,
        `FID ${c.name}: ${fid.distance} against ${c.fidEigen}`,
      );
      close(fid.meanTerm, c.muDiffSquared, 1e-9, `FID ${c.name}, ‖Δμ‖²`);
      close(fid.crossTerm, c.traceSqrt, 1e-6, `FID ${c.name}, tr √`);
      if (c.name !== "rank-deficient") {
        assert.ok(
          Math.abs(fid.distance - c.fidSqrtm) <= Math.max(1e-6 * Math.abs(c.fidSqrtm), 1e-9),
          `FID ${c.name} against sqrtm: ${fid.distance} vs ${c.fidSqrtm}`,
        );
      }
    }
    for (const c of reference.kid) {
      const dim = c.x[0].length;
      const [x, y] = [flat(c.x), flat(c.y)];
      close(mmd2(x, y, dim), c.mmd2Unbiased, 1e-9, `MMD² ${c.name}`);
      const perSubset = c.subsets.map((xi: number[], s: number) =>
        mmd2(x, y, dim, { xi, yi: c.subsetIndicesY[s] })
      );
      perSubset.forEach((v: number, s: number) =>
        close(v, c.subsetMmd2[s], 1e-9, `MMD² ${c.name}, subset ${s}`)
      );
    }
    for (const c of reference.inceptionScore) {
      const K = c.posteriors[0].length;
      const score = inceptionScore(flat(c.posteriors), K, c.splits);
      close(score.mean, c.mean, 1e-9, `IS ${c.name}`);
      close(score.std + 1, c.std + 1, 1e-9, `IS ${c.name}, std`);
    }
    for (const c of reference.precisionRecall) {
      const dim = c.real[0].length;
      const result = precisionRecall(flat(c.real), flat(c.fake), dim, c.k);
      assert.deepEqual(result, { precision: c.precision, recall: c.recall }, `P/R ${c.name}`);
    }
  });
});

describe("KID differences over paired subsets", () => {
  it("do not separate two draws of one distribution, and do separate a shifted one", () => {
    const rng = new Random(21);
    const dim = 8;
    const reference = normals(rng, 400, dim);
    const a = normals(rng, 200, dim);
    const b = normals(rng, 200, dim);
    const shifted = normals(rng, 200, dim, 0.5);
    const same = kernelDistanceDifference(a, b, reference, dim, { subsets: 30 });
    assert.ok(Math.abs(same.mean) <= 2 * same.std, `same: ${same.mean} ± ${same.std}`);
    assert.equal(same.subsetSize, 100, "half of the smaller set by default");
    const apart = kernelDistanceDifference(shifted, a, reference, dim, { subsets: 30 });
    assert.ok(apart.mean > 2 * apart.std, `shifted: ${apart.mean} ± ${apart.std}`);
  });
});
