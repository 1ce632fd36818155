import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { Tokenizer } from "../lib/core/tokenizer.ts";
import { TextEncoder } from "../lib/core/models/text_encoder.ts";
import { UNet } from "../lib/core/models/mod.ts";
import {
  LearnedToken,
  learnToken,
  loadLearnedToken,
  saveLearnedToken,
} from "../lib/training/textual_inversion.ts";
import { denoisingLoss } from "../lib/training/objective.ts";

await selectBackend({ requested: "cpu", quiet: true });

const WIDTH = 8;
const tokenizer = new Tokenizer(["cat", "dog", "red", "apple", "twemoji", "noto"], 6);

function encoder(seed = 1): TextEncoder {
  return new TextEncoder({
    vocabularySize: tokenizer.vocabularySize,
    contextLength: 6,
    width: WIDTH,
    layers: 1,
    heads: 2,
    seed,
  });
}

function unet(): UNet {
  const model = new UNet({
    imageSize: 8,
    baseChannels: 8,
    channelMultipliers: [1, 2],
    resBlocksPerLevel: 1,
    groups: 4,
    crossAttentionDim: WIDTH,
    crossAttentionResolutions: [4],
    middleCrossAttention: true,
    seed: 2,
  });
  const out = model.parameters.find((p) => p.name === "output.conv.filter")!;
  out.variable.assign(tf.randomNormal(out.variable.shape, 0, 0.1, "float32", 1));
  return model;
}

/** Four 8×8 images of one colour pattern: the concept to learn. */
function concept(): { images: Float32Array; count: number } {
  const rng = new Random(9);
  const images = new Float32Array(4 * 8 * 8 * 3);
  for (let i = 0; i < images.length; i++) {
    images[i] = (i % 3 === 0 ? 0.8 : -0.5) + 0.05 * rng.normal();
  }
  return { images, count: 4 };
}

/** The denoising loss of the concept's images at fixed timesteps and noise, prompt "sks". */
async function probeLoss(token: LearnedToken, model: UNet): Promise<number> {
  const { images } = concept();
  const loss = tf.tidy(() =>
    denoisingLoss(model, noiseSchedule("linear", 100), {
      x0: tf.tensor4d(images, [4, 8, 8, 3]),
      noise: tf.randomNormal([4, 8, 8, 3], 0, 1, "float32", 3) as tf.Tensor4D,
      timesteps: Int32Array.from([10, 30, 50, 70]),
      encoderHiddenStates: token.encode(["sks", "sks", "sks", "sks"]),
    }, { prediction: "epsilon" }).loss
  );
  const value = (await loss.data())[0];
  loss.dispose();
  return value;
}

async function snapshot(vars: readonly { variable: tf.Variable }[]): Promise<Float32Array[]> {
  return await Promise.all(vars.map(async (p) => Float32Array.from(await p.variable.data())));
}

describe("textual inversion: one new word's embedding, everything else frozen", () => {
  it("starts the word at its initializer's embedding and appends it to the vocabulary", async () => {
    const text = encoder();
    const token = new LearnedToken("sks", "cat", text, tokenizer);
    assert.equal(token.tokenizer.id("sks"), tokenizer.vocabularySize, "one id past E");
    assert.equal(tokenizer.id("sks"), 1, "the base tokenizer is unchanged (UNK)");
    // "sks" and "cat" give the same states until v moves.
    const [a, b] = [token.encode(["sks, twemoji"]), token.encode(["cat, twemoji"])];
    assert.deepEqual(await a.data(), await b.data());
    assert.equal(token.nearestWords(1)[0].word, "cat");
    assert.ok(Math.abs(token.nearestWords(1)[0].cosine - 1) < 1e-5);
    tf.dispose([a, b]);
    token.dispose();
    text.dispose();
  });

  it("learns v while every other tensor, every row of E included, stays bit-identical", async () => {
    const text = encoder();
    const model = unet();
    const token = new LearnedToken("sks", "dog", text, tokenizer);
    const before = await snapshot([...text.parameters, ...model.parameters]);
    const v0 = Float32Array.from(token.vector.dataSync());
    const before0 = await probeLoss(token, model);
    const losses = await learnToken(token, model, noiseSchedule("linear", 100), concept(), {
      templates: ["{}, twemoji", "a {}"],
      steps: 30,
      batchSize: 4,
      learningRate: 5e-2,
    }, { progress: false });
    assert.equal(losses.length, 30);
    const after = await snapshot([...text.parameters, ...model.parameters]);
    after.forEach((values, i) => assert.deepEqual(values, before[i], `tensor ${i} moved`));
    const v1 = token.vector.dataSync();
    assert.ok(v1.some((x, i) => x !== v0[i]), "v moved");
    const probe = await probeLoss(token, model);
    assert.ok(probe < before0, `the loss of a fixed batch fell: ${before0} → ${probe}`);
    token.dispose();
    model.dispose();
    text.dispose();
  });

  it("saves v alone and refuses another encoder or a word the vocabulary has, naming both", async () => {
    const dir = await Deno.makeTempDir();
    const text = encoder();
    const token = new LearnedToken("sks", "cat", text, tokenizer);
    token.vector.assign(tf.randomNormal([1, WIDTH], 0, 1, "float32", 4));
    const bytes = await saveLearnedToken(`${dir}/sks.token`, token, { encoderName: "tiny-clip" });
    assert.ok(bytes < 4096, `${bytes} bytes`);
    const loaded = await loadLearnedToken(`${dir}/sks.token`, text, tokenizer);
    assert.deepEqual(loaded.vector.dataSync(), token.vector.dataSync());
    assert.equal(loaded.word, "sks");
    const other = encoder(5);
    await assert.rejects(
      loadLearnedToken(`${dir}/sks.token`, other, tokenizer, { encoderName: "other-clip" }),
      /learned in "tiny-clip" \(weights [0-9a-f]{12}…\), but other-clip has other weights/,
    );
    assert.throws(() => new LearnedToken("cat", "dog", text, tokenizer), /already word 4/);
    assert.throws(() => new LearnedToken("s*", "dog", text, tokenizer), /not one lower-case word/);
    assert.throws(() => new LearnedToken("sks", "tiger", text, tokenizer), /initializer "tiger"/);
    const model = unet();
    await assert.rejects(
      learnToken(token, model, noiseSchedule("linear", 100), concept(), { templates: ["a"] }),
      /needs "\{\}".*"a" has none/,
    );
    await assert.rejects(
      learnToken(token, model, noiseSchedule("linear", 100), concept(), {
        templates: ["{}"],
        learningrate: 1,
      } as never),
      /Unknown textual inversion option "learningrate"/,
    );
    for (const t of [token, loaded]) t.dispose();
    for (const t of [text, other]) t.dispose();
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  });
});
