/**
 * The text side of chapter 6: LayerNorm, the transformer text encoder (shapes, parameter count,
 * padding that no token attends to, EOS pooling, gradients to every weight) and CLIP's
 * symmetric contrastive loss against a hand computation.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { ParameterStore } from "../lib/core/nn/layers.ts";
import { LayerNorm } from "../lib/core/nn/layer_norm.ts";
import { TextEncoder } from "../lib/core/models/text_encoder.ts";
import { Tokenizer } from "../lib/core/tokenizer.ts";
import { clipLoss, INITIAL_LOG_SCALE, similarities } from "../lib/training/contrastive.ts";
import { TinyClip } from "../lib/core/models/clip.ts";
import { FeatureClassifier } from "../lib/core/models/classifier.ts";
import { Adam, flatGradient } from "../lib/training/optim.ts";

await selectBackend({ quiet: true });
const random = new Random(9);
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tolerance: number, what: string) => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tolerance, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
};

describe("LayerNorm", () => {
  it("normalises each token over its last axis, then scales and shifts", () => {
    const norm = new LayerNorm(new ParameterStore(0), "ln", 4);
    norm.gamma.assign(tf.tensor1d([1, 2, 1, 0.5]));
    norm.beta.assign(tf.tensor1d([0, 0, 1, 0]));
    const x = [1, 2, 3, 4, -2, 0, 2, 8];
    const y = norm.apply(tf.tensor3d(x, [1, 2, 4])).dataSync();
    const expected: number[] = [];
    for (const row of [x.slice(0, 4), x.slice(4)]) {
      const mean = row.reduce((a, b) => a + b, 0) / 4;
      const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
      row.forEach((v, i) =>
        expected.push([1, 2, 1, 0.5][i] * (v - mean) / Math.sqrt(variance + 1e-5) + [0, 0, 1, 0][i])
      );
    }
    close(y, expected, 1e-5, "LayerNorm");
  });
});

describe("the text encoder", () => {
  const tokenizer = Tokenizer.fromCaptions(
    ["red apple, fruit, noto", "green apple, fruit, twemoji", "red heart, love, noto"],
    { contextLength: 8 },
  );
  const config = {
    vocabularySize: tokenizer.vocabularySize,
    contextLength: 8,
    width: 16,
    layers: 2,
    heads: 4,
  };
  const ids = (texts: string[]) =>
    tf.tensor2d(tokenizer.encodeBatch(texts), [texts.length, 8], "int32");

  it("gives token states [N, L, D] and a pooled state [N, D], with CLIP's parameter count", () => {
    const encoder = new TextEncoder(config);
    const { states, pooled } = encoder.encode(ids(["red apple", "love"]));
    assert.deepEqual(states.shape, [2, 8, 16]);
    assert.deepEqual(pooled.shape, [2, 16]);
    const [V, L, D] = [config.vocabularySize, 8, 16];
    const block = 2 * 2 * D + 4 * (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D);
    assert.equal(encoder.parameterCount(), V * D + L * D + 2 * block + 2 * D);
    // The pooled state is the EOS token's: after "red apple", at position 3.
    close(pooled.dataSync().slice(0, 16), states.dataSync().slice(3 * 16, 4 * 16), 0, "EOS state");
    tf.dispose([states, pooled]);
    encoder.dispose();
  });

  it("attends to no padding: the words' states do not change with the PAD embedding", () => {
    const encoder = new TextEncoder(config);
    const batch = ids(["red apple, noto"]);
    const before = encoder.encode(batch);
    const tokens = encoder.parameters.find((p) => p.name === "token.embedding")!.variable;
    tokens.assign(tf.tidy(() => tf.concat([tf.fill([1, 16], 5), tokens.slice([1, 0])])));
    const after = encoder.encode(batch);
    // BOS, three words and EOS: the first 5 tokens.
    close(
      after.states.dataSync().slice(0, 5 * 16),
      before.states.dataSync().slice(0, 5 * 16),
      1e-5,
      "words",
    );
    close(after.pooled.dataSync(), before.pooled.dataSync(), 1e-5, "pooled");
    tf.dispose([batch, before.states, before.pooled, after.states, after.pooled]);
    encoder.dispose();
  });

  it("passes a gradient to every weight, and refuses ids outside the vocabulary", () => {
    const encoder = new TextEncoder(config);
    const batch = ids(["red apple, fruit", "green heart"]);
    const { grads } = tf.variableGrads(() => {
      const { states, pooled } = encoder.encode(batch);
      return tf.add(tf.sum(tf.square(pooled)), tf.sum(tf.mul(states, 0.1))) as tf.Scalar;
    }, encoder.parameters.map((p) => p.variable));
    for (const p of encoder.parameters) {
      const g = grads[p.variable.name];
      assert.ok(g && tf.any(tf.notEqual(g, 0)).dataSync()[0], `no gradient reaches ${p.name}`);
    }
    tf.dispose(Object.values(grads));
    const bad = tf.tensor2d([[2, 99, 3, 0, 0, 0, 0, 0]], [1, 8], "int32");
    assert.throws(() => encoder.encode(bad), /token id 99 is outside the vocabulary/);
    assert.throws(() => new TextEncoder({ ...config, heads: 3 }), /do not split into 3 heads/);
    tf.dispose([batch, bad]);
    encoder.dispose();
  });
});

describe("CLIP's contrastive loss", () => {
  it("is the mean of the two directions' cross-entropies over cosine similarities times e^τ", () => {
    const [n, d] = [4, 3];
    const I = random.normals(n * d), T = random.normals(n * d);
    const tau = 1.3;
    const got = clipLoss(tf.tensor2d(I, [n, d]), tf.tensor2d(T, [n, d]), tf.scalar(tau));
    const unit = (x: Float32Array, i: number) => {
      const row = Array.from(x.subarray(i * d, (i + 1) * d));
      const norm = Math.hypot(...row);
      return row.map((v) => v / norm);
    };
    const S = Array.from(
      { length: n },
      (_, i) =>
        Array.from(
          { length: n },
          (_, j) => Math.exp(tau) * unit(I, i).reduce((a, v, k) => a + v * unit(T, j)[k], 0),
        ),
    );
    const ce = (rows: number[][]) =>
      -rows.reduce(
        (a, row, i) => a + row[i] - Math.log(row.reduce((b, v) => b + Math.exp(v), 0)),
        0,
      ) /
      n;
    const transposed = S[0].map((_, j) => S.map((row) => row[j]));
    close(got.dataSync(), [(ce(S) + ce(transposed)) / 2], 1e-5, "loss");
    got.dispose();
  });

  it("is near 0 for matched orthogonal pairs at the largest scale, and clips e^τ at 100", () => {
    const eye = tf.eye(3) as tf.Tensor2D;
    const loss = clipLoss(eye, eye, tf.scalar(10));
    assert.ok(loss.dataSync()[0] < 1e-6, `loss ${loss.dataSync()[0]}`);
    const s = similarities(eye, eye, tf.scalar(10));
    close(s.dataSync(), [100, 0, 0, 0, 100, 0, 0, 0, 100], 1e-4, "clipped scale");
    const start = similarities(eye, eye, tf.scalar(INITIAL_LOG_SCALE));
    assert.ok(Math.abs(start.dataSync()[0] - 1 / 0.07) < 1e-3);
    tf.dispose([eye, loss, s, start]);
  });
});

describe("the tiny CLIP", () => {
  const tokenizer = Tokenizer.fromCaptions(["red", "blue", "green"], { contextLength: 4 });
  const config = {
    image: { imageSize: 8, channels: [8, 16], groups: 4 },
    text: { vocabularySize: tokenizer.vocabularySize, contextLength: 4, width: 16, layers: 1 },
    embedDim: 8,
    seed: 1,
  };
  /** Eight 8×8 images of a plain colour each, and the colour's name. */
  const colours = { red: [1, -1, -1], blue: [-1, -1, 1], green: [-1, 1, -1] };
  const names = Object.keys(colours) as (keyof typeof colours)[];
  const batch = Array.from({ length: 6 }, (_, i) => names[i % 3]);
  const images = () =>
    tf.tensor4d(batch.flatMap((c) => Array.from({ length: 64 }, () => colours[c]).flat()), [
      6,
      8,
      8,
      3,
    ]);
  const ids = () => tf.tensor2d(tokenizer.encodeBatch(batch), [6, 4], "int32");

  it("keeps both towers' parameters under their prefixes, plus two projections and τ", () => {
    const clip = new TinyClip(config);
    const names = clip.parameters.map((p) => p.name);
    assert.equal(new Set(names).size, names.length);
    assert.ok(
      names.includes("image.stage0.conv1.filter") && names.includes("text.token.embedding"),
    );
    assert.ok(names.includes("logit.logScale"));
    const tower = new FeatureClassifier({ ...config.image, heads: [] });
    const text = new TextEncoder(config.text);
    assert.equal(
      clip.parameterCount(),
      tower.parameterCount() + text.parameterCount() + (16 * 8 + 8) + (16 * 8 + 8) + 1,
    );
    tf.dispose([tower, text].flatMap((m) => m.parameters.map((p) => p.variable)));
    clip.dispose();
  });

  it("learns to match plain colours with their names: the loss falls, the right pairs score highest", async () => {
    const clip = new TinyClip(config);
    const adam = new Adam(clip.parameters, {
      optimizer: "adam",
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      weightDecay: 0,
    });
    const [x, y] = [images(), ids()];
    const losses: number[] = [];
    for (let k = 1; k <= 40; k++) {
      const { value, grads } = tf.variableGrads(
        () => clipLoss(clip.imageEmbeddings(x), clip.textEmbeddings(y), clip.logScale),
        clip.parameters.map((p) => p.variable),
      );
      losses.push((await value.data())[0]);
      tf.tidy(() => adam.update(flatGradient(grads, clip.parameters), 3e-3, k));
      tf.dispose([value, ...Object.values(grads)]);
    }
    assert.ok(losses[39] < 0.5 * losses[0], `losses ${losses[0]} → ${losses[39]}`);
    const cos = clip.cosines(x, y).arraySync() as number[][];
    cos.forEach((row, i) => {
      const best = row.indexOf(Math.max(...row));
      assert.equal(batch[best], batch[i], `image ${i} (${batch[i]}) matches ${batch[best]}`);
    });
    const scores = Array.from(clip.clipScore(x, y).dataSync());
    assert.ok(scores.every((s) => s >= 0 && s <= 100), `${scores}`);
    tf.dispose([x, y]);
    adam.dispose();
    clip.dispose();
  });
});
