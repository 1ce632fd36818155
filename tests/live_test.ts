/**
 * The live models' parts under Deno: the export keeps the artefacts' weights exactly, the
 * page's sampling code computes what the chapters' code computes, the files that carry them to
 * the page fail loudly when damaged, and the bundles the page loads use no Deno or Node API.
 * (tests/live_e2e_test.ts runs them in Chromium.)
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";
import { liveModelBytes } from "../lib/zoo/live_export.ts";
import {
  decodeLiveModel,
  type LiveDenoiser,
  type LiveTextEncoder,
} from "../lib/browser/live_model.ts";
import {
  checkLiveRequest,
  liveSample,
  type LiveSampleRequest,
  liveScheduler,
} from "../lib/browser/live_sampling.ts";
import { assetFiles, fromBase64, unpackAsset } from "../lib/browser/transport.ts";
import { DDIMScheduler, sample } from "../lib/core/samplers/mod.ts";
import { imageGrid, toRgbaImages } from "../lib/core/images.ts";
import { loadClipArtefact } from "../lib/zoo/clip_network.ts";
import { bundle, liveModelsOf } from "../scripts/book/live.ts";
import { loadStyleLora } from "../lib/zoo/fine_tunes.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

describe("live models", () => {
  it("carry the artefact's EMA weights exactly, with what the page needs to know", async () => {
    await selectBackend({ quiet: true });
    for (const name of ["emoji16-unet", "class16-unet"]) {
      const artefact = await loadPretrained(name, { root: ROOT });
      const live = decodeLiveModel(await liveModelBytes(name, ROOT), name) as LiveDenoiser;
      try {
        assert.equal(live.info.role, "denoiser");
        assert.deepEqual(live.info.schedule, artefact.spec.schedule);
        assert.equal(live.info.parameters, artefact.manifest.parameters);
        assert.equal(live.network.parameters.length, artefact.model.parameters.length);
        for (const [i, { name: p, variable }] of artefact.model.parameters.entries()) {
          const same = tf.tidy(() => tf.equal(variable, live.network.parameters[i].variable).all());
          assert.equal((await same.data())[0], 1, `${name}: ${p} differs`);
          same.dispose();
        }
        if (name === "class16-unet") {
          assert.equal(live.info.conditioning?.kind, "class");
          const labels = live.info.conditioning?.kind === "class"
            ? live.info.conditioning.labels
            : [];
          assert.equal(labels.length, artefact.model.contextDim);
        }
      } finally {
        artefact.model.dispose();
        live.network.dispose();
      }
    }
  });

  it("the text encoder alone computes the tiny CLIP's token states, to float16 rounding", async () => {
    await selectBackend({ quiet: true });
    const { clip, tokenizer } = await loadClipArtefact("tiny-clip", "full", ROOT);
    const live = decodeLiveModel(await liveModelBytes("tiny-clip", ROOT)) as LiveTextEncoder;
    try {
      assert.equal(live.info.role, "text-encoder");
      assert.deepEqual(live.tokenizer.words, tokenizer.words);
      const ids = tf.tensor2d(tokenizer.encodeBatch(["red apple", ""]), [
        2,
        tokenizer.contextLength,
      ], "int32");
      const [a, b] = [clip.text.encode(ids).states, live.encoder.encode(ids).states];
      // The tiny CLIP's artefact holds float32 weights, which the live model rounds to float16
      // (the denoisers' artefacts are float16 already, and kept exactly): the states of unit
      // scale (a LayerNorm's output) move by about 1e-3.
      const worst = (await tf.max(tf.abs(tf.sub(a, b))).data())[0];
      assert.ok(worst > 0 && worst < 5e-3, `token states moved by ${worst}`);
      tf.dispose([ids, a, b]);
    } finally {
      clip.dispose();
      live.encoder.dispose();
    }
  });

  it("the page's sampling draws the chapter's images from the same seed", async () => {
    await selectBackend({ quiet: true });
    const artefact = await loadPretrained("emoji16-unet", { root: ROOT });
    const live = decodeLiveModel(await liveModelBytes("emoji16-unet", ROOT)) as LiveDenoiser;
    try {
      const request: LiveSampleRequest = {
        count: 4,
        seed: 11,
        sampler: "ddim",
        steps: 4,
        condition: { kind: "none" },
      };
      const steps: number[] = [];
      const page = await liveSample(live, undefined, request, (s) => void steps.push(s.index));
      const { images } = await sample(artefact.model, new DDIMScheduler(artefact.schedule), {
        shape: [4, 16, 16, 3],
        seed: 11,
        steps: 4,
      });
      const chapter = imageGrid(await toRgbaImages(images), { columns: 2, padding: 1 });
      images.dispose();
      assert.deepEqual(steps, [0, 1, 2, 3]);
      assert.deepEqual(page.data, chapter.data);
    } finally {
      artefact.model.dispose();
      live.network.dispose();
    }
  });

  it("refuse a request they cannot honour, saying what is allowed", async () => {
    await selectBackend({ quiet: true });
    const live = decodeLiveModel(await liveModelBytes("class16-unet", ROOT)) as LiveDenoiser;
    const ok: LiveSampleRequest = {
      count: 4,
      seed: 0,
      sampler: "ddim",
      steps: 10,
      condition: { kind: "class", label: 0 },
    };
    try {
      checkLiveRequest(live, ok);
      const cases: [Partial<LiveSampleRequest>, RegExp][] = [
        [{ count: 0 }, /between 1 and 64 images/],
        [{ steps: 5000 }, /between 1 and 1000 steps/],
        [{ eta: 2 }, /η lies in \[0, 1\]/],
        [{ guidance: NaN }, /guidance scale lies in \[0, 20\]/],
        [{ condition: { kind: "class", label: 9 } }, /classes are 0…8, not 9/],
        [{ condition: { kind: "text", prompt: "cat" } }, /conditioned on class, not text/],
        [{ loraStrength: 0.5 }, /class16-unet has no LoRA whose strength could be set/],
      ];
      for (const [change, message] of cases) {
        assert.throws(() => checkLiveRequest(live, { ...ok, ...change }), message);
      }
      assert.throws(
        () => liveScheduler(live, { ...ok, sampler: "euler" as "ddim" }),
        /unknown sampler "euler": use one of ddpm, ddim, dpm-solver\+\+/,
      );
    } finally {
      live.network.dispose();
    }
  });

  it("a style LoRA arrives on its base, and the page's strength turns it from the base to the adapter", async () => {
    await selectBackend({ quiet: true });
    const name = "text16-lora-openmoji-r4";
    const live = decodeLiveModel(await liveModelBytes(name, ROOT), name) as LiveDenoiser;
    const plain = decodeLiveModel(await liveModelBytes("text16-unet", ROOT)) as LiveDenoiser;
    const text = decodeLiveModel(await liveModelBytes("tiny-clip", ROOT)) as LiveTextEncoder;
    const deno = await loadStyleLora(name, "full", ROOT);
    const request: LiveSampleRequest = {
      count: 2,
      seed: 3,
      sampler: "ddim",
      steps: 3,
      guidance: 3,
      condition: { kind: "text", prompt: "red apple, fruit" },
    };
    const draw = async (model: LiveDenoiser, change: Partial<LiveSampleRequest> = {}) =>
      (await liveSample(model, text, { ...request, ...change }, () => {})).data;
    try {
      assert.deepEqual(live.info.lora, { base: "text16-unet", rank: 4, alpha: 4 });
      assert.equal(live.network.lora?.parameterCount, deno.model.lora!.parameterCount);
      // The factors travel as float16: each within float16's rounding of Deno's.
      for (const layer of deno.model.lora!.layers) {
        const mine = live.network.lora!.layers.find((l) => l.name === layer.name)!;
        for (const [a, b] of [[layer.a, mine.a], [layer.b, mine.b]]) {
          const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
          const scale = tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0]);
          assert.ok(gap <= scale * 2 ** -10, `${layer.name}: ${gap} of ${scale}`);
        }
      }
      assert.deepEqual(await draw(live, { loraStrength: 0 }), await draw(plain));
      assert.notDeepEqual(await draw(live, { loraStrength: 1 }), await draw(plain));
      assert.deepEqual(await draw(live), await draw(live, { loraStrength: 1 }), "1 by default");
      assert.throws(
        () => checkLiveRequest(live, { ...request, loraStrength: 3 }),
        /the LoRA's strength lies in \[0, 2\], not 3/,
      );
      assert.deepEqual(
        liveModelsOf([
          `<div class="widget" data-widget="live-sampler"><script type="application/json">{"models":["${name}"]}</script></div>`,
        ]),
        [name, "tiny-clip"],
      );
    } finally {
      for (const m of [live.network, plain.network, deno.model]) m.dispose();
      text.encoder.dispose();
    }
  });

  it("arrive as scripts and .bin files that refuse to load when damaged", async () => {
    const bytes = new Uint8Array(10_000).map((_, i) => (i * 7919) % 251);
    const { script, binary } = await assetFiles("x", bytes);
    const text = /"([^"]*)";\n$/.exec(script)![1];
    assert.deepEqual(fromBase64(text), binary);
    assert.deepEqual(await unpackAsset(binary, "x"), bytes);
    assert.throws(
      () => fromBase64(text.slice(0, 101), "x.js"),
      /x\.js is not base64 of a whole file/,
    );
    await assert.rejects(unpackAsset(binary.slice(0, binary.length / 2), "x"), /x is damaged/);
    const model = await liveModelBytes("emoji16-unet", ROOT);
    const flipped = model.slice();
    flipped[flipped.length >> 1] ^= 1;
    assert.throws(() => decodeLiveModel(flipped, "m"), /m is corrupt: CRC-32/);
  });

  it("are the models the pages' widgets name, with the text encoders they read prompts by", () => {
    const page = (models: string[]) =>
      `<div class="widget" data-widget="live-sampler"><script type="application/json">${
        JSON.stringify({ models })
      }</script></div>`;
    assert.deepEqual(
      liveModelsOf([page(["emoji16-unet"]), page(["text16-unet", "class16-unet"])]),
      [
        "class16-unet",
        "emoji16-unet",
        "text16-unet",
        "tiny-clip",
      ],
    );
    assert.deepEqual(liveModelsOf(["no widget here"]), []);
    assert.throws(() => liveModelsOf([page([])]), /names no models/);
  });

  it("bundle for the browser with no Deno or Node API", async () => {
    for (const entry of ["worker.ts", "widget.ts"]) {
      const js = await bundle(entry, ROOT);
      assert.doesNotMatch(js, /\bDeno\.[a-z]/, `${entry}'s bundle uses the Deno API`);
      assert.doesNotMatch(js, /["']node:[a-z]/, `${entry}'s bundle imports a Node module`);
      if (entry === "widget.ts") {
        assert.ok(js.length < 40_000, `the page's own bundle stays small (${js.length} bytes)`);
      }
    }
  });
});
