/**
 * The tiny CLIP's training and its zoo entry: a run stopped at a checkpoint resumes to the same
 * weights, retrieval is measured against chance, and the committed artefact scores its held-out
 * emoji as its manifest says.
 *
 * @module
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { Tokenizer } from "../lib/core/tokenizer.ts";
import {
  type CaptionedImages,
  type ClipTraining,
  retrieval,
  trainClip,
} from "../lib/training/contrastive.ts";
import { clipData, loadClipArtefact, TINY_CLIP } from "../lib/zoo/clip_network.ts";

await selectBackend({ quiet: true });
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** 8×8 images of plain colours, captioned with the colour's name. */
function colours(count: number): { data: CaptionedImages; tokenizer: Tokenizer } {
  const names = ["red", "green", "blue", "yellow"];
  const rgb = [[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]];
  const rng = new Random(2);
  const tokenizer = Tokenizer.fromCaptions(names, { contextLength: 4 });
  const images = new Float32Array(count * 64 * 3);
  const captions: string[] = [];
  for (let i = 0; i < count; i++) {
    const k = i % 4;
    captions.push(names[k]);
    for (let p = 0; p < 64; p++) {
      for (let c = 0; c < 3; c++) images[(i * 64 + p) * 3 + c] = rgb[k][c] + 0.1 * rng.normal();
    }
  }
  const all = Array.from({ length: count }, (_, i) => i);
  return {
    data: {
      images,
      count,
      ids: tokenizer.encodeBatch(captions),
      train: all.slice(4),
      heldOut: all.slice(0, 4),
    },
    tokenizer,
  };
}

const RECIPE: ClipTraining = {
  steps: 40,
  batchSize: 8,
  learningRate: 1e-2,
  minLearningRate: 1e-4,
  warmupSteps: 2,
  weightDecay: 0.01,
  maxShift: 1,
  checkpointEvery: 20,
  logEvery: 10,
  seed: 3,
};

describe("trainClip", () => {
  const work = `${ROOT}/.cache/test/clip-${crypto.randomUUID().slice(0, 8)}`;
  after(() => Deno.removeSync(work, { recursive: true }));

  it("matches colours to their names, and a run stopped at a checkpoint resumes to the same weights", async () => {
    const { data, tokenizer } = colours(36);
    const config = {
      image: { imageSize: 8, channels: [8, 16], groups: 4 },
      text: { vocabularySize: tokenizer.vocabularySize, contextLength: 4, width: 16, layers: 1 },
      embedDim: 8,
    };
    const paths = (name: string) => ({
      checkpointPath: `${work}/${name}/checkpoint.bin`,
      metricsPath: `${work}/${name}/metrics.jsonl`,
      progress: false,
    });
    await Deno.mkdir(`${work}/whole`, { recursive: true });
    await Deno.mkdir(`${work}/parts`, { recursive: true });
    const whole = await trainClip(config, data, RECIPE, paths("whole"));
    const first = await trainClip(config, data, RECIPE, { ...paths("parts"), minutes: 1e-9 });
    assert.equal(first.step, 20, "a spent budget stops at the first checkpoint");
    first.clip.dispose();
    const resumed = await trainClip(config, data, RECIPE, paths("parts"));
    assert.equal(resumed.step, 40);
    for (let i = 0; i < whole.clip.parameters.length; i++) {
      assert.deepEqual(
        await resumed.clip.parameters[i].variable.data(),
        await whole.clip.parameters[i].variable.data(),
        whole.clip.parameters[i].name,
      );
    }
    const scores = retrieval(whole.clip, data, data.heldOut);
    assert.equal(scores.chanceTop1, 1 / 4);
    assert.equal(scores.imageToTextTop1, 1, `the four held-out colours: ${JSON.stringify(scores)}`);
    const records = (await Deno.readTextFile(`${work}/whole/metrics.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(records.map((r) => r.step), [10, 20, 30, 40]);
    assert.ok(records[1].heldOut.imageToTextTop5 === 1, "top-5 of four is every one");
    whole.clip.dispose();
    resumed.clip.dispose();
  });
});

describe("tiny-clip, the zoo's artefact", () => {
  it("scores its held-out names with today's code as its manifest says, far above chance", async () => {
    const { clip, tokenizer, manifest } = await loadClipArtefact(TINY_CLIP.name, "full", ROOT);
    const data = await clipData(TINY_CLIP);
    assert.deepEqual(tokenizer.toJSON(), data.tokenizer.toJSON(), "the tokenizer is the data's");
    const scores = retrieval(
      clip,
      { images: data.dataset.images, ids: data.ids },
      data.split.heldOutNames,
    );
    const n = data.split.heldOutNames.length;
    for (const [key, value] of Object.entries(manifest.heldOutRetrieval!)) {
      // A backend may round a borderline similarity the other way: one emoji either side.
      assert.ok(
        Math.abs(scores[key] - value) <= 1.01 / n,
        `${key}: ${scores[key]} against ${value}`,
      );
    }
    assert.ok(scores.imageToTextTop5 > 5 * scores.chanceTop5, JSON.stringify(scores));
    clip.dispose();
  });
});
