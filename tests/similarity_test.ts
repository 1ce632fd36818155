import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Random } from "../lib/core/random.ts";
import { meanCosine } from "../lib/metrics/similarity.ts";

/** The definition: every pair's cosine, averaged. */
function bruteForce(g: Float32Array, r: Float32Array, dim: number): number {
  const rows = (x: Float32Array) =>
    Array.from({ length: x.length / dim }, (_, i) => x.subarray(i * dim, (i + 1) * dim));
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  let sum = 0, pairs = 0;
  for (const a of rows(g)) {
    for (const b of rows(r)) {
      sum += a.reduce((s, x, k) => s + x * b[k], 0) / (norm(a) * norm(b));
      pairs++;
    }
  }
  return sum / pairs;
}

describe("DreamBooth's subject fidelity, the mean cosine similarity of two sets", () => {
  it("equals the mean over every pair, is 1 for a set against itself scaled, and −1 for its negation", () => {
    const rng = new Random(3);
    const dim = 7;
    const g = Float32Array.from(rng.normals(5 * dim));
    const r = Float32Array.from(rng.normals(3 * dim));
    const of = (features: Float32Array) => ({ count: features.length / dim, dim, features });
    assert.ok(Math.abs(meanCosine(of(g), of(r)) - bruteForce(g, r, dim)) < 1e-6);
    const one = g.subarray(0, dim);
    const scaled = Float32Array.from([...one, ...one.map((v) => 3 * v)]);
    assert.ok(Math.abs(meanCosine(of(one), of(scaled)) - 1) < 1e-6);
    assert.ok(Math.abs(meanCosine(of(one), of(one.map((v) => -v))) + 1) < 1e-6);
    assert.throws(() => meanCosine(of(g), { count: 1, dim: 3, features: new Float32Array(3) }));
  });
});
