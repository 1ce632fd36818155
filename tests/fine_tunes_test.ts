import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { sha256Hex } from "../lib/runtime/files.ts";
import { readManifest } from "../lib/zoo/manifest.ts";
import {
  conceptImages,
  loadStyleLora,
  loadToken,
  STYLE_LORA_SPECS,
  styleData,
  styleLoraHash,
  styleLoraSpec,
  TOKEN_SPECS,
  tokenSpecHash,
} from "../lib/zoo/fine_tunes.ts";
import { loadAdapter } from "../lib/training/adapter.ts";
import { adaptModel, type DiffusionModel } from "../lib/core/models/mod.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";

await selectBackend({ requested: "cpu", quiet: true });

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** ε_θ of a fixed batch under fixed tokens of the network's width. */
async function output(model: DiffusionModel): Promise<Float32Array> {
  const y = tf.tidy(() =>
    model.apply(
      tf.randomNormal([2, 16, 16, 3], 0, 1, "float32", 5) as tf.Tensor4D,
      tf.tensor1d([50, 500]),
      {
        encoderHiddenStates: tf.randomNormal(
          [2, 4, model.crossAttentionDim],
          0,
          1,
          "float32",
          2,
        ) as tf.Tensor3D,
      },
    )
  );
  const values = await y.data() as Float32Array;
  y.dispose();
  return values;
}

describe("the zoo's fine-tunes (chapter 9)", () => {
  for (const spec of STYLE_LORA_SPECS.values()) {
    it(`${spec.name}: a current artefact of a few kB that loads onto its base`, async () => {
      const dir = `${ROOT}/assets/models/${spec.name}`;
      const manifest = await readManifest(dir);
      assert.ok(manifest, `${spec.name} has no artefact; deno task train ${spec.name}`);
      assert.equal(
        manifest.specHash,
        await styleLoraHash(spec, "full"),
        `${spec.name} is stale; deno task train ${spec.name} --restart`,
      );
      for (const [file, hash] of Object.entries(manifest.files)) {
        assert.equal(await sha256Hex(await Deno.readFile(`${dir}/${file}`)), hash, file);
      }
      const loaded = await loadStyleLora(spec.name, "full", ROOT);
      const lora = loaded.model.lora!;
      assert.deepEqual(lora.config, spec.lora);
      // Σ r(d_in + d_out) over the adapted layers, from the base's own weight shapes.
      const expected = lora.layers.reduce(
        (s, l) => s + spec.lora.rank * (l.weight.shape[0]! + l.weight.shape[1]!),
        0,
      );
      assert.equal(lora.parameterCount, expected);
      assert.equal(manifest.parameters, expected);
      const bytes = (await Deno.stat(`${dir}/adapter.lora`)).size;
      assert.ok(bytes < 4 * expected + 32_768, `${bytes} bytes for ${expected} numbers`);
      // Strength 0 is the base exactly; 1 is not.
      const plain = (await loadPretrained(spec.base, { root: ROOT })).model;
      const full = await output(loaded.model);
      lora.setStrength(0);
      assert.deepEqual(await output(loaded.model), await output(plain));
      assert.notDeepEqual(full, await output(plain));
      plain.dispose();
      loaded.model.dispose();
    });
  }

  it("text16-ti-catface: one current word of a few hundred bytes, every tensor of the encoder as it was", async () => {
    const spec = TOKEN_SPECS.get("text16-ti-catface")!;
    const dir = `${ROOT}/assets/models/${spec.name}`;
    const manifest = await readManifest(dir);
    assert.ok(manifest, `${spec.name} has no artefact; deno task train ${spec.name}`);
    assert.equal(manifest.specHash, await tokenSpecHash(spec, "full"), "stale");
    for (const [file, hash] of Object.entries(manifest.files)) {
      assert.equal(await sha256Hex(await Deno.readFile(`${dir}/${file}`)), hash, file);
    }
    const { token, clip } = await loadToken(spec.name, "full", ROOT);
    assert.equal(token.word, "ktn");
    assert.equal(token.vector.size, clip.text.config.width);
    assert.equal(manifest.parameters, clip.text.config.width);
    assert.ok((await Deno.stat(`${dir}/token.ckpt`)).size < 4096);
    assert.equal(token.tokenizer.id("ktn"), clip.text.config.vocabularySize, "one id past E");
    const concept = await conceptImages(spec);
    assert.equal(concept.count, 18, "nine cat faces, two vendors");
    token.dispose();
    clip.dispose();
  });

  it("keeps the held-out emoji out of training, and refuses an adapter of another rank", async () => {
    const spec = styleLoraSpec("text16-lora-openmoji-r2");
    const { train, heldOut, trainCaptions } = await styleData(spec);
    assert.equal(heldOut.count, spec.heldOut.count);
    assert.equal(trainCaptions.length, train.count);
    assert.ok(trainCaptions.every((c) => !/twemoji|noto/.test(c)), "no style word");
    const r4 = await loadStyleLora("text16-lora-openmoji-r4", "full", ROOT);
    await assert.rejects(
      loadAdapter(`${ROOT}/assets/models/${spec.name}/adapter.lora`, r4.model, {
        baseName: "the rank-4 model",
      }),
      /a LoRA of rank 2, α 2 in the file but rank 4, α 4 in the rank-4 model/,
    );
    assert.throws(() => adaptModel(r4.model, spec.lora), /already has a LoRA/);
    r4.model.dispose();
    assert.throws(() => styleLoraSpec("text16-lora-twemoji"), /unknown fine-tune/);
  });
});
