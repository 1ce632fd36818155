import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import {
  adaptModel,
  baseParameters,
  type DiffusionModel,
  linearLayerNames,
  loraParameters,
  UNet,
} from "../lib/core/models/mod.ts";
import { ATTENTION_PROJECTIONS, matchesTarget } from "../lib/core/nn/lora.ts";
import { Trainer } from "../lib/training/trainer.ts";
import { loadAdapter, readAdapterInfo, saveAdapter } from "../lib/training/adapter.ts";

await selectBackend({ requested: "cpu", quiet: true });

/** A text U-Net like the book's: self-attention at 4×4 and in the middle, cross-attention. */
const TEXT_UNET = {
  imageSize: 8,
  baseChannels: 8,
  channelMultipliers: [1, 2],
  resBlocksPerLevel: 1,
  groups: 4,
  attentionResolutions: [4],
  crossAttentionDim: 6,
  crossAttentionResolutions: [4],
  middleCrossAttention: true,
  nullContext: "learned" as const,
  seed: 3,
};
const LORA = { rank: 2, alpha: 2, targets: ATTENTION_PROJECTIONS };

/** A base whose zero-initialised output convolution has weights, so that the body shows. */
function base(seed = 3): UNet {
  const model = new UNet({ ...TEXT_UNET, seed });
  const out = model.parameters.find((p) => p.name === "output.conv.filter")!;
  out.variable.assign(tf.randomNormal(out.variable.shape, 0, 0.1, "float32", 1));
  return model;
}

/** ε_θ of a fixed batch: four 8×8 images, timesteps, and five context tokens each. */
async function output(model: DiffusionModel): Promise<Float32Array> {
  const y = tf.tidy(() =>
    model.apply(
      tf.randomNormal([4, 8, 8, 3], 0, 1, "float32", 5) as tf.Tensor4D,
      tf.tensor1d([1, 10, 50, 99]),
      { encoderHiddenStates: tf.randomNormal([4, 5, 6], 0, 1, "float32", 2) as tf.Tensor3D },
    )
  );
  const values = await y.data() as Float32Array;
  y.dispose();
  return values;
}

const maxDifference = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

/** Give every B factor small random values, as training would. */
function perturb(model: DiffusionModel): void {
  for (const p of loraParameters(model).filter((p) => p.name.endsWith(".lora_B"))) {
    p.variable.assign(tf.randomNormal(p.variable.shape, 0, 0.05, "float32", 7));
  }
}

async function valuesOf(params: readonly { variable: tf.Variable }[]): Promise<Float32Array[]> {
  return await Promise.all(params.map(async (p) => await p.variable.data() as Float32Array));
}

describe("LoRA: W′ = W + s(α/r)·AB on layers chosen by name", () => {
  it("matches targets by the names' last segments, * for any one", () => {
    assert.ok(matchesTarget("mid.attn.q", "q"));
    assert.ok(matchesTarget("down.1.cross.0.k", "cross.*.k"));
    assert.ok(!matchesTarget("down.1.cross.0.k", "attn.*.k"));
    assert.ok(!matchesTarget("mid.attn.q", "mid.attn.q.extra"));
    assert.ok(!matchesTarget("time.linear1", "q"));
  });

  it("computes exactly what the base computes at initialisation, from the base's own weights", async () => {
    const plain = base();
    const adapted = adaptModel(plain, LORA);
    assert.equal(maxDifference(await output(plain), await output(adapted)), 0, "B = 0: unchanged");
    // The base parameters are the base's, and a network built with the LoRA draws them alike.
    const built = new UNet({ ...TEXT_UNET, lora: LORA });
    const fresh = new UNet(TEXT_UNET);
    assert.deepEqual(
      await valuesOf(baseParameters(built)),
      await valuesOf(fresh.parameters),
      "adding a LoRA does not move the base's initial values",
    );
    assert.deepEqual(await valuesOf(baseParameters(adapted)), await valuesOf(plain.parameters));
    for (const m of [plain, adapted, built, fresh]) m.dispose();
  });

  it("adapts every attention projection and trains Σ r(d_in + d_out) numbers", () => {
    const plain = base();
    const adapted = adaptModel(plain, LORA);
    const lora = adapted.lora!;
    const expected = linearLayerNames(plain).filter((n) =>
      /\.(attn|cross)(\.\d+)?\.(q|k|v|out)$/.test(n)
    );
    assert.ok(expected.length >= 12, `${expected.length} projections`);
    assert.deepEqual(lora.layers.map((l) => l.name).sort(), expected.sort());
    const sum = lora.layers.reduce((s, l) => s + 2 * (l.weight.shape[0]! + l.weight.shape[1]!), 0);
    assert.equal(lora.parameterCount, sum);
    assert.equal(loraParameters(adapted).reduce((s, p) => s + p.variable.size, 0), sum);
    assert.ok(sum < 0.1 * plain.parameterCount(), "a small fraction of the network");
    // A in N(0, 1/r²), B zero: over every layer's A, the spread tells 1/r = 0.5 from 1/√r = 0.71.
    const a = lora.layers.flatMap((l) => Array.from(l.a.dataSync() as Float32Array));
    const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    assert.ok(a.length > 500 && std > 0.45 && std < 0.55, `std of A = ${std}, 1/r = 0.5`);
    assert.ok(lora.layers.every((l) => l.b.dataSync().every((v) => v === 0)));
    plain.dispose();
    adapted.dispose();
  });

  it("adds s(α/r)·xAB to a layer's output, α and s each counted once, merged or beside W", async () => {
    const plain = base();
    const adapted = adaptModel(plain, { ...LORA, alpha: 8 }); // α/r = 4
    perturb(adapted);
    const lora = adapted.lora!;
    assert.equal(lora.scale, 4);
    lora.setStrength(0.5);
    const layer = lora.layers[0];
    const x = tf.randomNormal([3, layer.weight.shape[0]!], 0, 1, "float32", 9) as tf.Tensor2D;
    const w = layer.weight as tf.Tensor2D;
    const update = tf.tidy(() =>
      tf.mul(tf.matMul(layer.a as tf.Tensor2D, layer.b as tf.Tensor2D), 2)
    );
    const expected = tf.tidy(() => tf.matMul(x, tf.add(w, update) as tf.Tensor2D));
    const beside = tf.tidy(() => layer.addUpdate(x, tf.matMul(x, w)));
    const want = await expected.data() as Float32Array;
    assert.ok(maxDifference(await beside.data() as Float32Array, want) < 1e-5, "y = x(W + 2AB)");
    lora.merge();
    const merged = tf.tidy(() => layer.addUpdate(x, tf.matMul(x, layer.weight as tf.Tensor2D)));
    assert.ok(maxDifference(await merged.data() as Float32Array, want) < 1e-5, "W′ = W + 2AB");
    tf.dispose([x, update, expected, beside, merged]);
    plain.dispose();
    adapted.dispose();
  });

  it("scales by the strength, merges into W and unmerges, and refuses a second merge", async () => {
    const plain = base();
    const baseOut = await output(plain);
    const adapted = adaptModel(plain, LORA);
    perturb(adapted);
    const lora = adapted.lora!;
    const full = await output(adapted);
    assert.ok(maxDifference(full, baseOut) > 1e-3, "the update changes the output");
    lora.setStrength(0);
    assert.equal(maxDifference(await output(adapted), baseOut), 0, "strength 0 is the base");
    lora.setStrength(0.5);
    const half = await output(adapted);
    assert.ok(maxDifference(half, baseOut) > 1e-4 && maxDifference(half, full) > 1e-4);
    // The update is linear in s while it is small: half the strength, about half the change.
    const change = (o: Float32Array) =>
      Math.sqrt(o.reduce((t, v, i) => t + (v - baseOut[i]) ** 2, 0));
    const ratio = change(half) / change(full);
    assert.ok(ratio > 0.4 && ratio < 0.6, `the change at s = 0.5 is ${ratio} of the change at 1`);
    lora.setStrength(1);
    const weightsBefore = await valuesOf(baseParameters(adapted));
    lora.merge();
    assert.ok(lora.merged);
    assert.ok(maxDifference(await output(adapted), full) < 1e-5, "merged computes the same");
    assert.throws(() => lora.merge(), /already merged.*twice/);
    assert.throws(() => lora.setStrength(0.5), /unmerge it before changing its strength/);
    assert.ok(maxDifference(await output(adapted), full) < 1e-5, "the refused merge did nothing");
    lora.unmerge();
    const weightsAfter = await valuesOf(baseParameters(adapted));
    weightsAfter.forEach((w, i) => assert.ok(maxDifference(w, weightsBefore[i]) < 1e-6));
    assert.ok(maxDifference(await output(adapted), full) < 1e-5);
    assert.throws(() => lora.unmerge(), /not merged/);
    plain.dispose();
    adapted.dispose();
  });

  it("refuses an unknown target, a bad rank and a second LoRA, saying what to do", () => {
    const plain = base();
    assert.throws(
      () => adaptModel(plain, { ...LORA, targets: ["q", "query"] }),
      /target "query" matches no linear layer of this unet; its linear layers are time\.linear1/,
    );
    assert.throws(() => adaptModel(plain, { ...LORA, rank: 0 }), /rank must be a positive integer/);
    assert.throws(() => adaptModel(plain, { ...LORA, targets: [] }), /at least one target/);
    const adapted = adaptModel(plain, LORA);
    assert.throws(() => adaptModel(adapted, LORA), /already has a LoRA/);
    assert.throws(() => adapted.lora!.setStrength(NaN), /finite/);
    plain.dispose();
    adapted.dispose();
  });

  it("trains only the factors: every base tensor stays bit-identical", async () => {
    const plain = base();
    const adapted = adaptModel(plain, LORA);
    const before = await valuesOf(adapted.parameters);
    const rng = new Random(4);
    const count = 8;
    const data = {
      images: Float32Array.from(rng.normals(count * 8 * 8 * 3)).map((v) => Math.tanh(v)),
      count,
      captionStates: {
        states: Float32Array.from(rng.normals(count * 5 * 6)),
        length: 5,
        width: 6,
        nullStates: new Float32Array(5 * 6),
      },
    };
    const trainer = new Trainer(adapted, data, noiseSchedule("linear", 100), {
      steps: 4,
      batchSize: 4,
      learningRate: 1e-2,
      lrSchedule: "constant",
    }, { progress: false, parameters: loraParameters(adapted) });
    await trainer.run();
    const after = await valuesOf(adapted.parameters);
    adapted.parameters.forEach((p, i) => {
      const changed = after[i].some((v, j) => v !== before[i][j]);
      assert.equal(changed, p.name.endsWith(".lora_A") || p.name.endsWith(".lora_B"), p.name);
    });
    trainer.dispose();
    plain.dispose();
    adapted.dispose();
  });
});

describe("a LoRA adapter saved on its own", () => {
  it("round-trips in kilobytes and computes what it computed", async () => {
    const dir = await Deno.makeTempDir();
    const plain = base();
    const adapted = adaptModel(plain, LORA);
    perturb(adapted);
    const expected = await output(adapted);
    const bytes = await saveAdapter(`${dir}/style.lora`, adapted, { baseName: "tiny-text-unet" });
    const info = await readAdapterInfo(`${dir}/style.lora`);
    assert.equal(info.parameterCount, adapted.lora!.parameterCount);
    const tensors = loraParameters(adapted).length;
    assert.ok(
      bytes > 4 * info.parameterCount && bytes < 4 * info.parameterCount + 256 * tensors + 4096,
      `${bytes} bytes: the factors' float32 values and a header naming them`,
    );
    assert.ok(bytes < 0.2 * 4 * plain.parameterCount(), "a fraction of the base's size");
    const loaded = await loadAdapter(`${dir}/style.lora`, plain);
    assert.equal(maxDifference(await output(loaded), expected), 0);
    assert.equal(maxDifference(await output(plain), await output(base())), 0, "base untouched");
    // Into a network that already has a LoRA of the same configuration: its factors replaced.
    const other = adaptModel(plain, LORA);
    await loadAdapter(`${dir}/style.lora`, other);
    assert.equal(maxDifference(await output(other), expected), 0);
    for (const m of [plain, adapted, loaded, other]) m.dispose();
    await Deno.remove(dir, { recursive: true });
  });

  it("refuses an adapter of another base, architecture or configuration, naming both", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/style.lora`;
    const plain = base();
    const adapted = adaptModel(plain, LORA);
    await saveAdapter(path, adapted, { baseName: "text-unet-a" });
    const retrained = base(4);
    await assert.rejects(
      loadAdapter(path, retrained, { baseName: "text-unet-b" }),
      /trained on "text-unet-a" \(weights [0-9a-f]{12}…\), but text-unet-b has other weights/,
    );
    const wider = new UNet({ ...TEXT_UNET, baseChannels: 16 });
    await assert.rejects(
      loadAdapter(path, wider),
      /trained on "text-unet-a", whose architecture differs.*baseChannels: 8 in the file, 16/,
    );
    const rank4 = adaptModel(plain, { ...LORA, rank: 4 });
    await assert.rejects(
      loadAdapter(path, rank4, { baseName: "the rank-4 model" }),
      /a LoRA of rank 2 in the file but rank 4 in the rank-4 model/,
    );
    const queries = adaptModel(plain, { ...LORA, targets: ["q"] });
    await assert.rejects(loadAdapter(path, queries), /targets \["q","k","v","out"\] in the file/);
    adapted.lora!.merge();
    await assert.rejects(saveAdapter(path, adapted, { baseName: "x" }), /Unmerge the LoRA/);
    await assert.rejects(loadAdapter(path, adapted), /Unmerge this network's LoRA/);
    for (const m of [plain, adapted, retrained, wider, rank4, queries]) m.dispose();
    await Deno.remove(dir, { recursive: true });
  });
});
