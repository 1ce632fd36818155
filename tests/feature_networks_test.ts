/**
 * The feature networks of the metrics: the classifier (its features, its training and exact
 * resume), the identity split, the distortions of known order, the perceptual distance's defining
 * properties and its calibration, and the committed artefacts against today's code.
 *
 * @module
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { FeatureClassifier } from "../lib/core/models/classifier.ts";
import { channelDifferences, PerceptualDistance } from "../lib/core/models/perceptual.ts";
import { emojiIdentity, splitByIdentity } from "../lib/data/splits.ts";
import type { EmojiMeta } from "../lib/data/emoji.ts";
import { blur, quantise, shift } from "../lib/data/distortions.ts";
import {
  classifierStep,
  type ClassifierTraining,
  heldOutAccuracy,
  type LabelledImages,
  trainClassifier,
} from "../lib/training/classification.ts";
import { adamW } from "../lib/training/supervised.ts";
import { calibrateWeights, twoAfcScore } from "../lib/training/perceptual_calibration.ts";
import {
  classifierData,
  EMOJI_PERCEPTUAL,
  loadClassifierArtefact,
  loadPerceptualArtefact,
  perceptualTriplets,
  twoAfcScores,
} from "../lib/zoo/feature_networks.ts";
import { embed, sampleQuality } from "../lib/metrics/mod.ts";

await selectBackend({ quiet: true });
const ROOT = new URL("..", import.meta.url).pathname;

/** 8×8 images of two classes: reddish or bluish, with noise. */
function twoColours(count: number, seed: number): LabelledImages {
  const rng = new Random(seed);
  const size = 8 * 8 * 3;
  const images = new Float32Array(count * size);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = i % 2;
    for (let p = 0; p < 64; p++) {
      images[i * size + p * 3 + (labels[i] === 0 ? 0 : 2)] = 0.8;
      for (let c = 0; c < 3; c++) images[i * size + p * 3 + c] += 0.2 * rng.normal();
    }
  }
  const all = Array.from({ length: count }, (_, i) => i);
  return {
    images,
    count,
    labels: [labels],
    train: all.slice(0, count - 16),
    heldOut: all.slice(-16),
  };
}

const TINY = { imageSize: 8, channels: [8, 8], groups: 4, heads: [{ name: "colour", classes: 2 }] };
const RECIPE: ClassifierTraining = {
  steps: 20,
  batchSize: 8,
  learningRate: 5e-3,
  minLearningRate: 1e-4,
  warmupSteps: 2,
  weightDecay: 1e-4,
  maxShift: 1,
  checkpointEvery: 10,
  logEvery: 5,
  seed: 1,
};

describe("the feature classifier", () => {
  const work = `${ROOT}.cache/test/classifier-${crypto.randomUUID().slice(0, 8)}`;
  after(() => Deno.removeSync(work, { recursive: true }));

  it("gives one feature map a stage, features of the last stage's width, logits a head", () => {
    const net = new FeatureClassifier({
      ...TINY,
      channels: [8, 16],
      heads: [{ name: "a", classes: 3 }, { name: "b", classes: 5 }],
    });
    const x = tf.randomUniform([2, 8, 8, 3], -1, 1) as tf.Tensor4D;
    const maps = net.featureMaps(x);
    assert.deepEqual(maps.map((m) => m.shape), [[2, 8, 8, 8], [2, 4, 4, 16]]);
    const phi = net.features(x);
    assert.deepEqual(phi.shape, [2, 16]);
    assert.deepEqual(net.logits(phi).map((l) => l.shape), [[2, 3], [2, 5]]);
    tf.dispose([x, phi, ...maps]);
    net.dispose();
  });

  it("learns a separable task, and a run stopped at a checkpoint resumes to the same weights", async () => {
    const data = twoColours(96, 0);
    const paths = (name: string) => ({
      checkpointPath: `${work}/${name}/checkpoint.bin`,
      metricsPath: `${work}/${name}/metrics.jsonl`,
      progress: false,
    });
    await Deno.mkdir(`${work}/whole`, { recursive: true });
    await Deno.mkdir(`${work}/parts`, { recursive: true });
    const whole = await trainClassifier(TINY, data, RECIPE, paths("whole"));
    const first = await trainClassifier(TINY, data, RECIPE, { ...paths("parts"), minutes: 1e-9 });
    assert.equal(first.step, 10, "a spent budget stops at the first checkpoint");
    first.classifier.dispose();
    const resumed = await trainClassifier(TINY, data, RECIPE, paths("parts"));
    assert.equal(resumed.step, 20);
    for (let i = 0; i < whole.classifier.parameters.length; i++) {
      assert.deepEqual(
        await resumed.classifier.parameters[i].variable.data(),
        await whole.classifier.parameters[i].variable.data(),
        whole.classifier.parameters[i].name,
      );
    }
    const accuracy = await heldOutAccuracy(whole.classifier, data, data.heldOut);
    assert.ok(accuracy.colour >= 0.9, `held-out accuracy ${accuracy.colour}`);
    whole.classifier.dispose();
    resumed.classifier.dispose();
  });
});

describe("classifierStep", () => {
  it("lowers the loss of a batch it repeats, and a step whose loss is NaN changes nothing", async () => {
    const classifier = new FeatureClassifier(TINY);
    const adam = adamW(classifier.parameters, RECIPE.weightDecay);
    const data = twoColours(8, 3);
    const batch = { x: data.images, labels: data.labels };
    const losses: number[] = [];
    for (let t = 1; t <= 5; t++) {
      const step = await classifierStep(classifier, adam, batch, 5e-3, t);
      assert.ok(step.applied && step.gradNorm > 0);
      losses.push(step.loss);
    }
    assert.ok(losses[4] < losses[0], `losses ${losses}`);
    const before = await Promise.all(
      [...classifier.parameters.map((p) => p.variable), adam.m, adam.v].map((v) => v.data()),
    );
    const poisoned = { x: data.images.map((v, i) => i === 5 ? NaN : v), labels: data.labels };
    const step = await classifierStep(classifier, adam, poisoned, 5e-3, 6);
    assert.ok(Number.isNaN(step.loss) && !step.applied);
    const after = await Promise.all(
      [...classifier.parameters.map((p) => p.variable), adam.m, adam.v].map((v) => v.data()),
    );
    assert.deepEqual(after, before);
    adam.dispose();
    classifier.dispose();
  });
});

describe("the identity split", () => {
  it("keeps the skin tones (and, sharing a code, both vendors' drawings) of an emoji on one side", () => {
    const meta: EmojiMeta[] = [];
    for (let k = 0; k < 400; k++) {
      const unified = (0x1f600 + k).toString(16).toUpperCase();
      for (const vendor of ["twitter", "google"] as const) {
        for (const tone of ["", "-1F3FB", "-1F3FF"]) {
          meta.push({
            name: "",
            shortName: "",
            unified: unified + tone,
            category: "",
            subcategory: "",
            vendor,
          });
        }
      }
    }
    const split = splitByIdentity(meta, 0.2);
    const side = new Map<string, string>();
    for (const [name, indices] of Object.entries(split)) {
      for (const i of indices) {
        const id = emojiIdentity(meta[i]);
        assert.ok(!side.has(id) || side.get(id) === name, `${id} is on both sides`);
        side.set(id, name);
      }
    }
    const heldOut = [...side.values()].filter((s) => s === "heldOut").length / side.size;
    assert.ok(heldOut > 0.14 && heldOut < 0.26, `held out ${heldOut} of the emoji`);
    assert.equal(emojiIdentity({ unified: "1F44D-1F3FD" }), "1F44D");
    assert.equal(
      emojiIdentity({ unified: "1F469-1F3FB-200D-1F4BB" }),
      emojiIdentity({ unified: "1F468-200D-1F4BB" }),
      "a woman technologist of a skin tone and a man technologist are one identity",
    );
    assert.equal(
      emojiIdentity({ unified: "1F1FA-1F1F8" }),
      "1F1FA-1F1F8",
      "flags keep both letters",
    );
  });
});

describe("distortions of known order", () => {
  const shape = [4, 4, 3] as const;
  const image = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i) * 0.9);
  it("blur of σ 0 is the image, and blur keeps a flat image flat", () => {
    assert.deepEqual(blur(image, shape, 0), image);
    const flat = new Float32Array(48).fill(0.25);
    for (const v of blur(flat, shape, 1.5)) assert.ok(Math.abs(v - 0.25) < 1e-6);
  });
  it("quantises to the given levels and shifts in white", () => {
    assert.deepEqual(new Set(quantise(image, 2)), new Set([-1, 1]));
    const moved = shift(image, shape, 1, 0);
    assert.deepEqual(moved.subarray(0, 12), new Float32Array(12).fill(1));
    assert.deepEqual(moved.subarray(12, 24), image.subarray(0, 12));
  });
});

describe("the 2AFC calibration", () => {
  it("weighs the informative channel and scores ties as half", () => {
    const rng = new Random(4);
    const count = 400;
    const channels = 3;
    const toFirst = new Float32Array(count * channels);
    const toSecond = new Float32Array(count * channels);
    const answers = new Uint8Array(count);
    for (let n = 0; n < count; n++) {
      answers[n] = n % 2;
      for (let c = 0; c < channels; c++) {
        const [a, b] = [rng.uniform(), rng.uniform()];
        // Channel 1 alone knows the answer; channels 0 and 2 are noise, and larger.
        const informative = c === 1;
        toFirst[n * channels + c] = informative ? (answers[n] ? 0.1 : 0.5) * a : 3 * a;
        toSecond[n * channels + c] = informative ? (answers[n] ? 0.5 : 0.1) * b : 3 * b;
      }
    }
    const { weights, losses } = calibrateWeights({ toFirst, toSecond, channels }, answers, {
      steps: 200,
      learningRate: 0.05,
    });
    assert.ok(losses.at(-1)! < losses[0], "the loss falls");
    assert.ok(weights.every((w) => w >= 0), "the weights stay non-negative");
    assert.ok(weights[1] > 5 * Math.max(weights[0], weights[2]), `weights ${weights}`);
    assert.equal(twoAfcScore([1, 2, 3], [1, 3, 2], Uint8Array.from([1, 1, 1])), 0.5);
  });
});

describe("the zoo's feature networks, quick profile", () => {
  it("the perceptual distance is 0 on equal images, symmetric, ≥ 0, and grows with blur", async () => {
    const perceptual = await loadPerceptualArtefact({ profile: "quick", root: ROOT });
    const { dataset } = await classifierData();
    const n = 200;
    const images = dataset.toTensor(Array.from({ length: n }, (_, i) => i * 17 % dataset.count));
    const values = await images.data() as Float32Array;
    const size = 16 * 16 * 3;
    const blurred = (sigma: number) => {
      const out = new Float32Array(n * size);
      for (let i = 0; i < n; i++) {
        out.set(blur(values.subarray(i * size, (i + 1) * size), [16, 16, 3], sigma), i * size);
      }
      return tf.tensor4d(out, [n, 16, 16, 3]);
    };
    const d = perceptual.distance;
    const self = await d.distance(images, images).data();
    assert.ok(self.every((v) => Math.abs(v) < 1e-6), "d(x, x) = 0");
    const [mild, strong] = [blurred(0.7), blurred(1.6)];
    const ab = await d.distance(images, mild).data();
    const ba = await d.distance(mild, images).data();
    ab.forEach((v, i) => assert.ok(Math.abs(v - ba[i]) <= 1e-5 * Math.max(1, v), "symmetric"));
    assert.ok(ab.every((v) => v >= 0), "non-negative");
    const far = await d.distance(images, strong).data();
    const grows = ab.filter((v, i) => far[i] > v).length / n;
    assert.ok(grows >= 0.95, `the distance grows with blur on ${grows} of the images`);
    const diffs = channelDifferences(perceptual.classifier.classifier, images, mild);
    assert.deepEqual(diffs.shape, [
      n,
      perceptual.classifier.classifier.config.channels.reduce((a, b) => a + b),
    ]);
    tf.dispose([images, mild, strong, diffs]);
    assert.throws(
      () => new PerceptualDistance(perceptual.classifier.classifier, new Float32Array(3)),
      /3 weights/,
    );
    perceptual.dispose();
  });

  it("real images against themselves: FID 0, precision and recall 1", async () => {
    const { classifier } = await loadClassifierArtefact({ profile: "quick", root: ROOT });
    const { dataset } = await classifierData();
    const real = await embed(classifier, dataset.images.subarray(0, 300 * 768), 300);
    const q = sampleQuality(real, real, { kidSubsets: 5, kidSubsetSize: 100 });
    assert.ok(Math.abs(q.fid) < 1e-6, `FID ${q.fid}`);
    assert.equal(q.precision, 1);
    assert.equal(q.recall, 1);
    assert.equal(q.count, 300);
    classifier.dispose();
  });
});

describe("the committed feature networks", () => {
  it("emoji-classifier: today's code scores its held-out images as its manifest says", async () => {
    const { classifier, manifest } = await loadClassifierArtefact({ root: ROOT });
    const data = await classifierData();
    const accuracy = await heldOutAccuracy(
      classifier,
      { images: data.dataset.images, labels: data.labels },
      data.split.heldOut,
    );
    const n = data.split.heldOut.length;
    for (const [head, value] of Object.entries(manifest.heldOutAccuracy!)) {
      // A backend may round a borderline logit the other way: one image either side.
      assert.ok(
        Math.abs(accuracy[head] - value) <= 1.01 / n,
        `${head}: ${accuracy[head]} vs ${value}`,
      );
    }
    classifier.dispose();
  });

  it("emoji-perceptual: today's code scores its held-out triplets as its manifest says, above L2", async () => {
    const perceptual = await loadPerceptualArtefact({ root: ROOT });
    const weights = await perceptual.distance.weights.data() as Float32Array;
    assert.ok(weights.every((w) => w >= 0));
    const { heldOut } = await perceptualTriplets(EMOJI_PERCEPTUAL, "full");
    const scores = await twoAfcScores(perceptual.classifier.classifier, weights, heldOut);
    const recorded = perceptual.manifest.twoAfc;
    assert.equal(scores.pixelL2, recorded.pixelL2, "the triplets are the ones it was scored on");
    assert.ok(Math.abs(scores.calibrated - recorded.calibrated) <= 2 / heldOut.count);
    assert.ok(scores.calibrated > scores.pixelL2, `${scores.calibrated} vs ${scores.pixelL2}`);
    perceptual.dispose();
  });
});
