import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { opSeed } from "../lib/core/random.ts";
import { dropout, type LayerRecord } from "../lib/core/nn/layers.ts";

await selectBackend({ requested: "cpu", quiet: true });

describe("seeds of TensorFlow.js's random ops", () => {
  it("a seed of 0 means no seed to TensorFlow.js: opSeed never gives one", () => {
    const twice = (seed: number) =>
      [0, 1].map(() => Array.from(tf.randomNormal([64], 0, 1, "float32", seed).dataSync()));
    const [a, b] = twice(0);
    assert.notDeepEqual(a, b, "TensorFlow.js now honours seed 0: opSeed may be simplified");
    const [c, d] = twice(opSeed(0));
    assert.deepEqual(c, d);
    assert.equal(opSeed(0), 2 ** 31 - 1);
    assert.equal(opSeed(12345), 12345);
    assert.equal(opSeed(-1), 2 ** 31 - 2);
    assert.equal(opSeed(2 ** 31 - 1), 2 ** 31 - 1);
  });

  it("dropout masks repeat even when a layer's seed sums to a multiple of 2³¹ − 1", () => {
    const layer = { index: 0 } as LayerRecord;
    const ctx = { training: true, seed: 2 ** 31 - 1 - 7919 };
    const x = tf.ones([256]);
    const masks = [0, 1].map(() => Array.from(dropout(x, 0.5, ctx, layer).dataSync()));
    assert.deepEqual(masks[0], masks[1]);
  });
});
