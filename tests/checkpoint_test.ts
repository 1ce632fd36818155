import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { ContextUNet, type DiffusionModel, UNet, type UNetConfig } from "../lib/core/models/mod.ts";
import { Trainer, type TrainingData } from "../lib/training/trainer.ts";
import {
  assignVariables,
  type Checkpoint,
  crc32,
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  loadModel,
  saveCheckpoint,
  saveModel,
} from "../lib/training/checkpoint.ts";
import { TINY_UNET } from "./helpers.ts";

await selectBackend({ requested: "wasm", quiet: true });

const schedule = noiseSchedule("linear", 100);
const MODEL: Partial<UNetConfig> = { ...TINY_UNET, attentionResolutions: [4], attentionHeads: 2 };

function randomData(count: number, size: number): TrainingData {
  const rng = new Random(11);
  const images = Float32Array.from(
    { length: count * size * size * 3 },
    () => rng.uniform() * 2 - 1,
  );
  return { images, count, labels: Int32Array.from({ length: count }, (_, i) => i % 5) };
}

function snapshot(model: DiffusionModel): Float32Array[] {
  return [...model.parameters, ...model.buffers].map((p) =>
    p.variable.dataSync().slice() as Float32Array
  );
}

function sampleCheckpoint(): Checkpoint {
  return {
    step: 42,
    modelConfig: new UNet(MODEL).config,
    state: { note: "x", rngState: 123456789 },
    tensors: new Map([
      ["params/a", {
        shape: [2, 3],
        values: Float32Array.of(0, -0, 1.5, -3.25e-38, 3.4e38, Infinity),
      }],
      ["params/b", { shape: [1], values: Float32Array.of(Math.PI) }],
      ["optimizer/m/a", { shape: [3], values: Float32Array.of(1e-8, 2e-8, -7) }],
    ]),
  };
}

describe("checkpoint format", () => {
  it("round-trips float32 tensors, step and state exactly", () => {
    const original = sampleCheckpoint();
    const copy = decodeCheckpoint(encodeCheckpoint(original));
    assert.equal(copy.step, 42);
    assert.deepEqual(copy.modelConfig, original.modelConfig);
    assert.deepEqual(copy.state, original.state);
    assert.deepEqual([...copy.tensors.keys()], [...original.tensors.keys()]);
    for (const [name, t] of original.tensors) {
      assert.deepEqual(copy.tensors.get(name)!.shape, t.shape);
      assert.deepEqual(copy.tensors.get(name)!.values, t.values, name);
    }
  });

  it("stores float16 with IEEE half rounding", () => {
    const values = Float32Array.of(
      1,
      0.5,
      -2,
      65504,
      1 / 3,
      1e-8,
      1e5,
      2 ** -24,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
    );
    const checkpoint = {
      ...sampleCheckpoint(),
      tensors: new Map([["p/x", { shape: [10], values }]]),
    };
    const bytes = encodeCheckpoint(checkpoint, { dtype: "float16" });
    const back = decodeCheckpoint(bytes).tensors.get("p/x")!.values;
    // 1/3 → 0x3555 = 0.333251953125; 1e-8 underflows; 1e5 overflows; 2⁻²⁴ is the smallest
    // subnormal; 1 + 2⁻¹¹ is a tie that rounds to even (1), 1 + 3·2⁻¹¹ rounds up to 1 + 2⁻⁹.
    assert.deepEqual(Array.from(back), [
      1,
      0.5,
      -2,
      65504,
      0.333251953125,
      0,
      Infinity,
      2 ** -24,
      1,
      1 + 2 ** -9,
    ]);
    assert.ok(bytes.length < encodeCheckpoint(checkpoint).length);
  });

  it("computes the standard CRC-32", () => {
    assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  });
});

describe("checkpoint files", () => {
  it("name the file and what is wrong when corrupt, truncated, foreign or missing", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/model.ckpt`;
    await saveCheckpoint(path, sampleCheckpoint());
    const bytes = await Deno.readFile(path);
    assert.deepEqual(Array.from(Deno.readDirSync(dir), (e) => e.name), ["model.ckpt"]); // no temp file left

    const corrupt = bytes.slice();
    corrupt[corrupt.length - 20] ^= 0x40; // a bit of the payload
    await Deno.writeFile(path, corrupt);
    await assert.rejects(
      loadCheckpoint(path),
      (e: Error) => e.message.startsWith(path) && /corrupt: CRC-32/.test(e.message),
    );

    await Deno.writeFile(path, bytes.slice(0, bytes.length - 8));
    await assert.rejects(
      loadCheckpoint(path),
      (e: Error) => e.message.startsWith(`${path} is truncated: the header promises`),
    );

    await Deno.writeFile(path, bytes.slice(0, 30));
    await assert.rejects(loadCheckpoint(path), /is truncated: its header alone needs/);

    await Deno.writeFile(path, new TextEncoder().encode("just some text, not a checkpoint"));
    await assert.rejects(loadCheckpoint(path), /is not a diffusion checkpoint/);

    await assert.rejects(loadCheckpoint(`${dir}/nothing.ckpt`), /nothing\.ckpt does not exist/);
    await Deno.remove(dir, { recursive: true });
  });

  it("saves a model with its EMA and loads either, rebuilding the network from the file", async () => {
    const dir = await Deno.makeTempDir();
    const model = new UNet({ ...MODEL, contextDim: 5 });
    const trainer = new Trainer(model, randomData(4, 8), schedule, { steps: 2, batchSize: 2 }, {
      progress: false,
    });
    await trainer.run();
    await saveModel(`${dir}/m.ckpt`, model, { ema: trainer.ema, step: 2 });
    const ema = await loadModel(`${dir}/m.ckpt`);
    const raw = await loadModel(`${dir}/m.ckpt`, { weights: "params" });
    assert.deepEqual(ema.config, model.config);
    assert.deepEqual(snapshot(ema), snapshot(trainer.ema));
    assert.deepEqual(snapshot(raw), snapshot(model));
    assert.notDeepEqual(snapshot(ema), snapshot(model));
    const x = tf.tensor4d(new Random(1).normals(192), [1, 8, 8, 3]);
    const t = tf.tensor1d([40]);
    assert.deepEqual(raw.apply(x, t).dataSync(), model.apply(x, t).dataSync());
    tf.dispose([x, t]);
    for (const m of [ema, raw, model]) m.dispose();
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  });

  it("refuses to load into a different architecture, naming the file and the difference", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/run.ckpt`;
    const model = new UNet(MODEL);
    const trainer = new Trainer(model, randomData(4, 8), schedule, {
      steps: 1,
      batchSize: 2,
      checkpointPath: path,
    }, { progress: false });
    await trainer.run();
    const other = new UNet({ ...MODEL, baseChannels: 16 });
    await assert.rejects(
      Trainer.resume(path, randomData(4, 8), { model: other, progress: false }),
      (e: Error) =>
        e.message.includes(path) &&
        /different architecture \(baseChannels: 8 in the file, 16/.test(e.message),
    );
    const checkpoint = await loadCheckpoint(path);
    assert.throws(
      () => assignVariables(other.parameters, checkpoint.tensors, "params/", path),
      /"params\/time\.linear1\.weight" has shape \[8,32\] in the file but \[16,64\] in the model/,
    );
    await saveModel(`${dir}/weights.ckpt`, model);
    await assert.rejects(
      Trainer.resume(`${dir}/weights.ckpt`, randomData(4, 8)),
      /holds weights only/,
    );
    await assert.rejects(
      Trainer.resume(path, randomData(5, 8)),
      /was trained on 4 images but 5 were given/,
    );
    for (const m of [model, other]) m.dispose();
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  });
});

describe("resume", () => {
  async function resumeMatches(
    makeModel: () => DiffusionModel,
    data: TrainingData,
    total: number,
    saveAt: number,
    killAt: number,
  ) {
    const dir = await Deno.makeTempDir();
    const config = {
      steps: total,
      batchSize: 3,
      learningRate: 2e-3,
      warmupSteps: 2,
      emaDecay: 0.9,
      contextDropout: 0.3,
      weightDecay: 0.01,
      optimizer: "adamw" as const,
    };
    // uninterrupted
    const modelA = makeModel();
    const a = new Trainer(modelA, data, schedule, config, { progress: false });
    const lossesA = (await a.run()).losses;
    // killed after `killAt` steps, with its last checkpoint at `saveAt`
    const path = `${dir}/run.ckpt`;
    const modelB = makeModel();
    const b = new Trainer(modelB, data, schedule, {
      ...config,
      checkpointPath: path,
      checkpointEvery: saveAt,
    }, {
      progress: false,
    });
    await b.run({ until: killAt });
    b.dispose();
    modelB.dispose();
    const c = await Trainer.resume(path, data, { progress: false });
    assert.equal(c.step, saveAt);
    const lossesC = (await c.run()).losses;
    assert.deepEqual(lossesC, lossesA.slice(saveAt));
    assert.deepEqual(snapshot(c.model), snapshot(modelA));
    assert.deepEqual(snapshot(c.ema), snapshot(a.ema));
    assert.equal(c.rngState, a.rngState);
    for (const t of [a, c]) t.dispose();
    modelA.dispose();
    c.model.dispose();
    await Deno.remove(dir, { recursive: true });
  }

  it("continues a killed U-Net run bit for bit: same losses, weights, EMA and RNG state", async () => {
    await resumeMatches(() => new UNet({ ...MODEL, contextDim: 5 }), randomData(5, 8), 7, 3, 5);
  });

  it("restores BatchNorm running statistics of the course's network too", async () => {
    await resumeMatches(
      () => new ContextUNet({ nFeat: 8, nCFeat: 5, seed: 2 }),
      randomData(4, 16),
      4,
      2,
      3,
    );
  });
});
