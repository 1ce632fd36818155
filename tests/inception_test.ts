/**
 * The optional real-InceptionV3 path (lib/metrics/inception.ts) on a small TensorFlow.js graph
 * model that the test writes itself, with Inception's interface: images in, a pooled feature
 * vector and class logits out. Its outputs are known in closed form, so the test checks the
 * pinned preprocessing (bilinear resize, [−1, 1] → [0, 1]) and the metrics on top of it.
 *
 * @module
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { loadGraphFeatures } from "../lib/metrics/inception.ts";
import { embed, inceptionScore, sampleQuality } from "../lib/metrics/mod.ts";

await selectBackend({ quiet: true });
const ROOT = new URL("..", import.meta.url).pathname;

/** features = mean over pixels of the input, times W [3, 4]; logits = features · V [4, 5]. */
const W = [[1, 0, 0, 1], [0, 1, 0, -1], [0, 0, 1, 0.5]];
const V = [[1, 0, 0, 0, 1], [0, 1, 0, 0, 1], [0, 0, 1, 0, 1], [0, 0, 0, 1, 1]];

function float(): { type: string } {
  return { type: "DT_FLOAT" };
}
function constNode(name: string, shape: number[], dtype = "DT_FLOAT") {
  return {
    name,
    op: "Const",
    attr: {
      value: {
        tensor: { dtype, tensorShape: { dim: shape.map((size) => ({ size: String(size) })) } },
      },
      dtype: { type: dtype },
    },
  };
}

async function writeGraphModel(dir: string, inputSize: number): Promise<void> {
  const node = [
    {
      name: "images",
      op: "Placeholder",
      attr: {
        dtype: float(),
        shape: {
          shape: { dim: [-1, inputSize, inputSize, 3].map((size) => ({ size: String(size) })) },
        },
      },
    },
    constNode("pool/axes", [2], "DT_INT32"),
    {
      name: "pool",
      op: "Mean",
      input: ["images", "pool/axes"],
      attr: { keep_dims: { b: false }, T: float(), Tidx: { type: "DT_INT32" } },
    },
    constNode("W", [3, 4]),
    {
      name: "features",
      op: "MatMul",
      input: ["pool", "W"],
      attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: float() },
    },
    constNode("V", [4, 5]),
    {
      name: "logits",
      op: "MatMul",
      input: ["features", "V"],
      attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: float() },
    },
  ];
  const weights = [
    { name: "pool/axes", shape: [2], dtype: "int32" },
    { name: "W", shape: [3, 4], dtype: "float32" },
    { name: "V", shape: [4, 5], dtype: "float32" },
  ];
  const data = new Uint8Array([
    ...new Uint8Array(Int32Array.from([1, 2]).buffer),
    ...new Uint8Array(Float32Array.from(W.flat()).buffer),
    ...new Uint8Array(Float32Array.from(V.flat()).buffer),
  ]);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(`${dir}/group1-shard1of1.bin`, data);
  await Deno.writeTextFile(
    `${dir}/model.json`,
    JSON.stringify({
      format: "graph-model",
      generatedBy: "tests/inception_test.ts",
      convertedBy: null,
      modelTopology: { node, library: {}, versions: {} },
      weightsManifest: [{ paths: ["group1-shard1of1.bin"], weights }],
    }),
  );
}

describe("a graph model with Inception's interface", () => {
  const dir = `${ROOT}.cache/test/graph-model-${crypto.randomUUID().slice(0, 8)}`;
  after(() => Deno.removeSync(dir, { recursive: true }));

  it("resizes bilinearly, maps [−1, 1] to [0, 1], and gives features and posteriors", async () => {
    await writeGraphModel(dir, 12);
    const network = await loadGraphFeatures({
      path: dir,
      inputSize: 12,
      featuresNode: "features",
      logitsNode: "logits",
    });
    assert.equal(network.featureDim, 4);
    assert.equal(network.classes, 5);
    // A flat image of colour c ∈ [−1, 1]: any bilinear resize keeps it flat, so the pooled
    // input is (c + 1)/2 exactly, and φ = ((c + 1)/2) · W.
    const colour = [-1, 0, 0.5];
    const x = tf.tidy(() => tf.mul(tf.ones([2, 16, 16, 3]), tf.tensor1d(colour)) as tf.Tensor4D);
    const out = network.apply(x);
    const phi = await out.features.data();
    const pooled = colour.map((c) => (c + 1) / 2);
    const expected = [0, 1, 2, 3].map((j) => pooled.reduce((s, p, i) => s + p * W[i][j], 0));
    for (let j = 0; j < 4; j++) assert.ok(Math.abs(phi[j] - expected[j]) < 1e-6, `φ_${j}`);
    const p = Array.from(await out.posteriors!.data());
    tf.dispose([out.features, out.posteriors!]);
    assert.ok(Math.abs(p.slice(0, 5).reduce((a, b) => a + b, 0) - 1) < 1e-6, "posteriors sum to 1");

    // A ramp tells the pinned resize (TensorFlow 1's: no half-pixel centres) from the other one.
    const ramp = tf.tidy(() =>
      tf.tile(tf.reshape(tf.linspace(-1, 1, 16), [1, 1, 16, 1]), [1, 16, 1, 3]) as tf.Tensor4D
    );
    const pooledBy = (halfPixel: boolean) =>
      tf.tidy(() =>
        tf.mean(tf.add(tf.mul(tf.image.resizeBilinear(ramp, [12, 12], false, halfPixel), 0.5), 0.5))
          .dataSync()[0]
      );
    const rampOut = network.apply(ramp);
    const rampFeature = (await rampOut.features.data())[0]; // φ₀ = pooled red
    tf.dispose([rampOut.features, rampOut.posteriors!]);
    assert.ok(Math.abs(rampFeature - pooledBy(false)) < 1e-6, "bilinear, TensorFlow 1's sampling");
    assert.ok(Math.abs(pooledBy(true) - pooledBy(false)) > 1e-3, "the two resizes differ here");
    ramp.dispose();

    // The metrics run on it unchanged: a set against itself has FID 0.
    const images = tf.randomUniform([40, 16, 16, 3], -1, 1, "float32", 3) as tf.Tensor4D;
    const e = await embed(network, images);
    assert.equal(e.dim, 4);
    const q = sampleQuality(e, e, { kidSubsets: 2, kidSubsetSize: 20 });
    assert.ok(Math.abs(q.fid) < 1e-9);
    assert.equal(q.inceptionScore.mean, inceptionScore(e.posteriors, 5, 10).mean);
    assert.ok(e.posteriors.some((v) => Math.abs(v - 0.2) > 1e-3), "posteriors are not uniform");
    tf.dispose([x, images]);
    network.dispose();
  });

  it("says what to do when the folder holds no model or the nodes are wrong", async () => {
    await assert.rejects(
      loadGraphFeatures({ path: `${dir}/missing`, featuresNode: "features" }),
      /holds no TensorFlow\.js graph model.*tensorflowjs_converter/,
    );
    await writeGraphModel(dir, 12);
    await assert.rejects(
      loadGraphFeatures({ path: dir, inputSize: 12, featuresNode: "avg_pool" }),
      /has no output avg_pool/,
    );
  });
});
