import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { UNet, type UNetConfig } from "../lib/core/models/mod.ts";
import {
  learningRateAt,
  type MetricsRecord,
  minSnrWeight,
  train,
  Trainer,
  type TrainingData,
  TrainingDivergedError,
} from "../lib/training/trainer.ts";
import { loadCheckpoint } from "../lib/training/checkpoint.ts";
import { listCheckpoints, saneCheckpoint } from "../lib/training/checkpoint_history.ts";
import { formatDuration, ProgressBar } from "../lib/runtime/progress.ts";
import { TINY_UNET } from "./helpers.ts";

await selectBackend({ requested: "wasm", quiet: true });

const schedule = noiseSchedule("linear", 100);
const MODEL: Partial<UNetConfig> = { ...TINY_UNET, middleAttention: false };

/** Eight 8×8 images: two-colour halves, a pattern a tiny network learns in a few steps. */
function tinyData(count = 8): TrainingData {
  const rng = new Random(5);
  const images = new Float32Array(count * 8 * 8 * 3);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const colour = [rng.uniform() * 2 - 1, rng.uniform() * 2 - 1, rng.uniform() * 2 - 1];
    labels[i] = i % 3;
    for (let p = 0; p < 64; p++) {
      for (let k = 0; k < 3; k++) images[(i * 64 + p) * 3 + k] = p % 8 < 4 ? colour[k] : -colour[k];
    }
  }
  return { images, count, labels };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("Trainer", () => {
  it("lowers the loss on a tiny dataset within 30 steps", async () => {
    const model = new UNet(MODEL);
    const trainer = new Trainer(model, tinyData(), schedule, {
      steps: 30,
      batchSize: 8,
      learningRate: 3e-3,
      lrSchedule: "constant",
    }, { progress: false });
    const { losses } = await trainer.run();
    assert.equal(losses.length, 30);
    const first = mean(losses.slice(0, 5));
    const last = mean(losses.slice(-5));
    assert.ok(last < 0.8 * first, `loss went from ${first} to ${last}`);
    trainer.dispose();
    model.dispose();
  });

  it("trains only the parameters it is given, and resumes such a run exactly", async () => {
    const model = new UNet(MODEL);
    const chosen = model.parameters.filter((p) => p.name.startsWith("output."));
    const before = await Promise.all(model.parameters.map((p) => p.variable.data()));
    const path = await Deno.makeTempFile({ suffix: ".ckpt" });
    const config = { steps: 6, batchSize: 4, learningRate: 1e-2, checkpointPath: path };
    const trainer = new Trainer(model, tinyData(), schedule, config, {
      progress: false,
      parameters: chosen,
    });
    await trainer.run({ until: 3 });
    const atStep3 = `${path}.3`;
    await trainer.saveCheckpoint(atStep3);
    await trainer.run();
    const after = await Promise.all(model.parameters.map((p) => p.variable.data()));
    model.parameters.forEach((p, i) => {
      const changed = after[i].some((v, j) => v !== before[i][j]);
      assert.equal(changed, p.name.startsWith("output."), `${p.name} changed: ${changed}`);
    });
    const stored = await loadCheckpoint(path);
    const moments = [...stored.tensors.keys()].filter((k) => k.startsWith("optimizer/m/"));
    assert.deepEqual(moments, chosen.map((p) => `optimizer/m/${p.name}`));
    // A fresh trainer over the same subset continues from step 3 to the same weights.
    const again = new UNet(MODEL);
    const resumed = await Trainer.resume(atStep3, tinyData(), {
      model: again,
      progress: false,
      parameters: again.parameters.filter((p) => p.name.startsWith("output.")),
    });
    assert.equal(resumed.step, 3);
    await resumed.run();
    const final = await Promise.all(again.parameters.map((p) => p.variable.data()));
    final.forEach((values, i) => assert.deepEqual(values, after[i], model.parameters[i].name));
    for (const t of [trainer, resumed]) t.dispose();
    model.dispose();
    again.dispose();
    await Deno.remove(path);
    await Deno.remove(atStep3);
  });

  it("stops a time-boxed run on the first checkpoint after its budget, naming its backend", async () => {
    const dir = await Deno.makeTempDir();
    const model = new UNet(MODEL);
    const records: MetricsRecord[] = [];
    const trainer = new Trainer(model, tinyData(), schedule, {
      steps: 40,
      batchSize: 4,
      checkpointPath: `${dir}/run.ckpt`,
      checkpointEvery: 8,
      logEvery: 4,
    }, { progress: false, onMetrics: (r) => records.push(r) });
    try {
      // A budget already spent: the run ends at the first checkpoint, step 8, not at 40.
      const { step } = await trainer.run({ minutes: 0 });
      assert.equal(step, 8);
      assert.equal((await loadCheckpoint(`${dir}/run.ckpt`)).step, 8);
      assert.match(records[0].backend, /^wasm \(/);
    } finally {
      trainer.dispose();
      model.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });

  it("keeps tf.memory().numTensors flat over training steps", async () => {
    const model = new UNet({
      ...MODEL,
      attentionResolutions: [4],
      middleAttention: true,
      contextDim: 3,
    });
    const trainer = new Trainer(model, tinyData(), schedule, {
      steps: 10,
      batchSize: 4,
      contextDropout: 0.2,
    }, {
      progress: false,
    });
    await trainer.trainStep();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) await trainer.trainStep();
    assert.equal(tf.memory().numTensors, before);
    trainer.dispose();
    model.dispose();
  });

  it("trains the learned null class only when labels are dropped (classifier-free guidance)", async () => {
    // The common bug: a guided model whose condition is never dropped in training has a null
    // context that never learns, and ε_∅ is then the untrained c_∅ = 0's prediction.
    const nullAfter = async (contextDropout: number) => {
      const model = new UNet({ ...MODEL, contextDim: 3, nullContext: "learned" });
      const trainer = new Trainer(model, tinyData(), schedule, {
        steps: 5,
        batchSize: 8,
        learningRate: 3e-3,
        contextDropout,
      }, { progress: false });
      await trainer.run();
      const vector = model.parameters.find((p) => p.name === "context.null.vector")!;
      const values = Array.from(await vector.variable.data());
      trainer.dispose();
      model.dispose();
      return values;
    };
    assert.deepEqual(await nullAfter(0), [0, 0, 0], "never dropped: c_∅ keeps its initial zeros");
    const dropped = await nullAfter(0.5);
    assert.ok(dropped.some((v) => Math.abs(v) > 1e-4), `dropped half the time: c_∅ = ${dropped}`);
  });

  it("gives identical losses for the same seed and different ones for another seed", async () => {
    const runLosses = async (seed: number) => {
      const model = new UNet(MODEL);
      const trainer = new Trainer(model, tinyData(), schedule, { steps: 4, batchSize: 4, seed }, {
        progress: false,
      });
      const { losses } = await trainer.run();
      trainer.dispose();
      model.dispose();
      return losses;
    };
    const a = await runLosses(7);
    const b = await runLosses(7);
    const c = await runLosses(8);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it("stops on a NaN loss with the step, the last finite loss and a hint, leaving the weights and checkpoint intact", async () => {
    const dir = await Deno.makeTempDir();
    const data = tinyData(4);
    data.images.fill(NaN, 2 * 192, 3 * 192); // image 2 is broken
    const model = new UNet(MODEL);
    const path = `${dir}/run.ckpt`;
    const trainer = new Trainer(model, data, schedule, {
      steps: 20,
      batchSize: 1,
      checkpointPath: path,
      checkpointEvery: 1,
    }, { progress: false });
    let bad = 0;
    while (!trainer.batchIndices(bad).includes(2)) bad++;
    assert.ok(bad > 0, "the broken image should not come first with this seed");
    let error: unknown;
    let weightsBefore: Float32Array | undefined;
    try {
      await trainer.run({ until: bad });
      weightsBefore = model.parameters[5].variable.dataSync().slice() as Float32Array;
      await trainer.run();
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof TrainingDivergedError, String(error));
    assert.equal(error.step, bad + 1);
    assert.equal(error.lastFiniteLoss, trainer.losses[bad - 1]);
    assert.match(error.message, new RegExp(`diverged at step ${bad + 1}: the loss is NaN`));
    assert.match(error.message, /Lower the learning rate/);
    assert.deepEqual(model.parameters[5].variable.dataSync(), weightsBefore);
    assert.equal(trainer.step, bad);
    const saved = await loadCheckpoint(path);
    assert.equal(saved.step, bad);
    assert.ok([...saved.tensors.values()].every((t) => t.values.every(Number.isFinite)));
    trainer.dispose();
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  });

  it("keeps the last three checkpoints, names the newest sane one on divergence, and resumes from it", async () => {
    const dir = await Deno.makeTempDir();
    const data = tinyData(4);
    const good = data.images.slice(2 * 192, 3 * 192);
    data.images.fill(NaN, 2 * 192, 3 * 192); // image 2 is broken
    const path = `${dir}/run.ckpt`;
    const config = { steps: 40, batchSize: 1, checkpointPath: path, checkpointEvery: 1 };
    // A killed write of another process, and one of a process still running (this one).
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    await Deno.writeTextFile(`${path}.${dead.pid}-abc.tmp`, "half a checkpoint");
    await Deno.writeTextFile(`${path}.${Deno.pid}-abc.tmp`, "being written");
    const model = new UNet(MODEL);
    const trainer = new Trainer(model, data, schedule, config, { progress: false });
    let bad = 0;
    while (!trainer.batchIndices(bad).includes(2)) bad++;
    assert.ok(bad >= 3, "the broken image should not come in the first three steps");
    const error = await trainer.run().then(() => undefined, (e) => e);
    assert.ok(error instanceof TrainingDivergedError, String(error));
    assert.deepEqual(error.checkpoints.map((c) => c.step), [bad, bad - 1, bad - 2]);
    assert.equal(error.sane?.step, bad);
    assert.match(error.message, new RegExp(`newest with a sane loss is step ${bad}`));
    assert.match(error.message, new RegExp(`resumeFrom: ${bad}`));
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(
      names,
      [
        "run.ckpt",
        `run.ckpt.${Deno.pid}-abc.tmp`,
        `run.step-${String(bad - 2).padStart(6, "0")}.ckpt`,
        `run.step-${String(bad - 1).padStart(6, "0")}.ckpt`,
      ].sort(),
    );
    trainer.dispose();
    model.dispose();

    // Going back one step moves the later checkpoint aside; with the image mended, it trains on.
    data.images.set(good, 2 * 192);
    const resumed = await train(new UNet(MODEL), data, schedule, { ...config, steps: bad + 2 }, {
      resume: true,
      resumeFrom: bad - 1,
      progress: false,
    });
    assert.equal(resumed.step, bad + 2);
    const aside = [...Deno.readDirSync(dir)].find((e) => e.name.startsWith("after-step-"));
    assert.ok(aside, "the later checkpoint was moved aside");
    assert.deepEqual([...Deno.readDirSync(`${dir}/${aside.name}`)].map((e) => e.name), [
      "run.ckpt",
    ]);
    assert.equal((await loadCheckpoint(`${dir}/${aside.name}/run.ckpt`)).step, bad);
    assert.deepEqual((await listCheckpoints(path)).map((c) => c.step), [bad + 2, bad + 1, bad]);
    await assert.rejects(
      train(new UNet(MODEL), data, schedule, config, { resume: true, resumeFrom: 1 }),
      /no usable checkpoint of step 1 .*the run keeps step/,
    );
    resumed.model.dispose();
    resumed.dispose();
    await Deno.remove(dir, { recursive: true });
  });

  it("calls a checkpoint sane when its mean loss is within twice the run's best", () => {
    const kept = (step: number, meanLoss: number, bestMeanLoss: number) => ({
      step,
      path: `c${step}`,
      latest: false,
      meanLoss,
      bestMeanLoss,
    });
    assert.equal(
      saneCheckpoint([kept(3, 5.1, 0.1), kept(2, 0.3, 0.1), kept(1, 0.15, 0.1)])?.step,
      1,
    );
    assert.equal(saneCheckpoint([kept(3, 0.19, 0.1), kept(2, 0.3, 0.1)])?.step, 3);
    assert.equal(saneCheckpoint([{ ...kept(3, 0.1, 0.1), problem: "damaged" }]), undefined);
    assert.equal(saneCheckpoint([kept(3, 9, 0.2), kept(2, 8, 0.2)]), undefined);
  });

  it("writes metrics as JSON lines and hands sample grids from the EMA weights to a callback", async () => {
    const dir = await Deno.makeTempDir();
    const model = new UNet({ ...MODEL, contextDim: 3 });
    const records: MetricsRecord[] = [];
    const grids: { step: number; shape: number[] }[] = [];
    const trainer = new Trainer(model, tinyData(), schedule, {
      steps: 6,
      batchSize: 4,
      logEvery: 2,
      timestepBuckets: 4,
      metricsPath: `${dir}/metrics.jsonl`,
      sampleEvery: 3,
      sampleCount: 3,
      sampleSteps: 5,
    }, {
      progress: false,
      onMetrics: (r) => records.push(r),
      onSamples: ({ step, images }) => {
        grids.push({ step, shape: images.shape });
      },
    });
    await trainer.run();
    const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(lines.map((l) => l.step), [2, 4, 6]);
    assert.deepEqual(lines, JSON.parse(JSON.stringify(records)));
    for (const l of lines) {
      assert.equal(l.bucketLoss.length, 4);
      assert.ok(l.loss > 0 && l.lr > 0 && l.stepsPerSecond > 0 && l.gradNorm > 0);
      const bucketed = l.bucketLoss.filter((b: number | null) => b !== null);
      assert.ok(bucketed.length > 0);
    }
    assert.deepEqual(grids, [{ step: 3, shape: [3, 8, 8, 3] }, { step: 6, shape: [3, 8, 8, 3] }]);
    trainer.dispose();
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  });

  it("trains a text network on its caption states, and on the empty prompt's where captions drop", async () => {
    const [L, D] = [3, 4];
    const data = tinyData();
    const captions = (seed: number) => ({
      states: Float32Array.from(new Random(seed).normals(data.count * L * D)),
      length: L,
      width: D,
      nullStates: new Float32Array(L * D).fill(0.5),
    });
    const lossesWith = async (
      captionStates: ReturnType<typeof captions>,
      contextDropout: number,
    ) => {
      const model = new UNet({ ...MODEL, crossAttentionDim: D, crossAttentionResolutions: [4] });
      const trainer = new Trainer(model, { ...data, captionStates }, schedule, {
        steps: 3,
        batchSize: 8,
        contextDropout,
      }, { progress: false });
      const { losses } = await trainer.run();
      trainer.dispose();
      model.dispose();
      return losses;
    };
    assert.notDeepEqual(
      await lossesWith(captions(1), 0),
      await lossesWith(captions(2), 0),
      "the captions' states reach the loss",
    );
    assert.deepEqual(
      await lossesWith(captions(1), 1),
      await lossesWith(captions(2), 1),
      'every caption dropped: only τ("") is seen',
    );
    const model = new UNet({ ...MODEL, crossAttentionDim: D, crossAttentionResolutions: [4] });
    assert.throws(() => new Trainer(model, data, schedule), /has no captionStates/);
    assert.throws(
      () => new Trainer(model, { ...data, captionStates: { ...captions(1), width: 5 } }, schedule),
      /width 5 do not fit the network's crossAttentionDim 4/,
    );
    assert.throws(
      () =>
        new Trainer(model, {
          ...data,
          captionStates: { ...captions(1), states: new Float32Array(7) },
        }, schedule),
      /8 images of 3 tokens × 4 need 96/,
    );
    model.dispose();
  });

  it("rejects data that does not fit the network, with the reason", () => {
    const model = new UNet({ ...MODEL, contextDim: 2 });
    assert.throws(
      () => new Trainer(model, { images: new Float32Array(10), count: 1 }, schedule),
      /Load the dataset at the model's imageSize/,
    );
    assert.throws(
      () => new Trainer(model, tinyData(), schedule),
      /class label 2 \(at 2\) is out of range: this network knows classes 0…1/,
    );
    assert.throws(
      () => new Trainer(model, tinyData(), schedule, { batchsize: 3 } as never),
      /Unknown training option "batchsize"/,
    );
    model.dispose();
  });
});

describe("learning rate and loss weights", () => {
  it("warms up linearly, then follows the cosine or linear decay to its end points", () => {
    const config = {
      learningRate: 1e-3,
      minLearningRate: 1e-5,
      warmupSteps: 10,
      steps: 110,
      lrSchedule: "cosine" as const,
    };
    assert.equal(learningRateAt(config, 0), 1e-4);
    assert.equal(learningRateAt(config, 9), 1e-3);
    assert.equal(learningRateAt(config, 10), 1e-3);
    assert.ok(Math.abs(learningRateAt(config, 60) - (1e-3 + 1e-5) / 2) < 1e-12);
    assert.ok(Math.abs(learningRateAt(config, 110) - 1e-5) < 1e-12);
    const linear = {
      ...config,
      lrSchedule: "linear" as const,
      warmupSteps: 0,
      minLearningRate: 0,
      steps: 100,
    };
    assert.ok(Math.abs(learningRateAt(linear, 25) - 0.75e-3) < 1e-12);
    assert.equal(learningRateAt({ ...linear, lrSchedule: "constant" }, 99), 1e-3);
  });

  it("weights Min-SNR-γ as min(SNR, γ)/SNR, min(SNR, γ) and min(SNR, γ)/(SNR + 1)", () => {
    assert.equal(minSnrWeight(10, 5, "epsilon"), 0.5);
    assert.equal(minSnrWeight(2, 5, "epsilon"), 1);
    assert.equal(minSnrWeight(10, 5, "sample"), 5);
    assert.equal(minSnrWeight(2, 5, "sample"), 2);
    assert.equal(minSnrWeight(4, 5, "v"), 4 / 5);
    assert.equal(minSnrWeight(9, 5, "v"), 0.5);
  });
});

describe("ProgressBar", () => {
  it("prints plain lines with steps/s and time left off a terminal, and redraws with \\r on one", () => {
    let now = 0;
    const plain: string[] = [];
    const bar = new ProgressBar(100, {
      label: "train",
      intervalSeconds: 10,
      now: () => now,
      sink: { write: (t) => plain.push(t), isTerminal: false },
    });
    for (let step = 1; step <= 100; step++) {
      now = step * 500; // two steps a second
      bar.update(step, { loss: 1 / step });
    }
    bar.done();
    // a line at the first step, then every 10 s (20 steps), then the last one
    assert.deepEqual(plain.map((l) => Number(/ (\d+)\/100/.exec(l)![1])), [1, 21, 41, 61, 81, 100]);
    assert.match(
      plain[1],
      /train {2}█+░+ 21\/100 {2}loss 0\.0476 {2}2\.00 steps\/s {2}0:40 left\n$/,
    );
    assert.match(plain[5], /0:00 left\n$/);
    const tty: string[] = [];
    const live = new ProgressBar(10, {
      now: () => now,
      sink: { write: (t) => tty.push(t), isTerminal: true },
    });
    live.update(5);
    live.done();
    assert.ok(tty.every((t) => t.startsWith("\r")));
    assert.ok(tty.at(-1)!.endsWith("\n"));
    assert.equal(formatDuration(3725), "1:02:05");
  });
});
