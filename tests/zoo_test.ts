import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { sha256Hex } from "../lib/runtime/files.ts";
import { specTrainingData } from "../lib/zoo/spec_data.ts";
import { loadModel } from "../lib/training/checkpoint.ts";
import { exportArtefact, readManifest } from "../lib/zoo/artefacts.ts";
import { computeFingerprint, fingerprintDifferences } from "../lib/zoo/fingerprint.ts";
import { runDir, trainModel } from "../lib/zoo/runs.ts";
import { MODEL_SPECS, type ModelSpec, modelSpec, specHash } from "../lib/zoo/specs.ts";
import { holdoutSplit } from "../lib/data/holdouts.ts";
import { caption, loadEmojiKeywords } from "../lib/data/captions.ts";
import { loadClipArtefact } from "../lib/zoo/clip_network.ts";

await selectBackend({ requested: "cpu", quiet: true });
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

/** A spec small enough to train in a test: an 8-channel U-Net on 64 emoji, 4 steps. */
function tinySpec(overrides: Partial<ModelSpec["training"]["quick"]> = {}): ModelSpec {
  const network = {
    kind: "unet" as const,
    imageSize: 16,
    baseChannels: 8,
    channelMultipliers: [1, 2],
    resBlocksPerLevel: 1,
    middleAttention: false,
    groups: 4,
    seed: 0,
  };
  const training = {
    steps: 4,
    batchSize: 4,
    logEvery: 2,
    checkpointEvery: 2,
    sampleCount: 4,
    sampleSteps: 5,
    ...overrides,
  };
  return {
    name: "tiny-test",
    description: "a test's model",
    network: { quick: network, full: network },
    data: { size: 16, limit: 64 },
    schedule: { name: "cosine", T: 100 },
    objective: { prediction: "epsilon", minSnrGamma: null },
    training: { quick: training, full: training },
    dataLicence: "test",
  };
}

describe("the book's models are artefacts that today's code reproduces", () => {
  for (const spec of MODEL_SPECS.values()) {
    it(`${spec.name}: its artefact is complete, current and reproduced`, async () => {
      const dir = `${ROOT}/assets/models/${spec.name}`;
      const manifest = await readManifest(dir);
      assert.ok(manifest, `${spec.name} has no artefact in ${dir}; deno task train ${spec.name}`);
      assert.equal(
        manifest.specHash,
        await specHash(spec, "full"),
        `${spec.name}'s spec changed since it was trained; deno task train ${spec.name} --restart`,
      );
      for (const [file, hash] of Object.entries(manifest.files)) {
        assert.equal(
          await sha256Hex(await Deno.readFile(`${dir}/${file}`)),
          hash,
          `${dir}/${file} is not the file its manifest describes`,
        );
      }
      const { training: dataset } = await specTrainingData(spec);
      assert.equal(dataset.count, manifest.dataset.count, "the dataset changed");
      assert.equal(
        await sha256Hex(new Uint8Array(dataset.images.buffer)),
        manifest.dataset.sha256,
        `the training images of ${spec.name} changed; deno task train ${spec.name} --restart`,
      );
      const model = await loadModel(`${dir}/weights.ckpt`);
      const today = await computeFingerprint(spec, "full", model, dataset);
      model.dispose();
      const differences = fingerprintDifferences(manifest.fingerprint!, today);
      assert.deepEqual(
        differences,
        [],
        `${spec.name} is stale: today's code computes other numbers than the code that trained ` +
          `it (${differences.join("; ")}). Retrain it: deno task train ${spec.name} --restart`,
      );
    });
  }
});

describe("a spec's training set", () => {
  it("keeps the conditioning holdouts out of a conditional spec, labels aligned", async () => {
    const conditional = await specTrainingData(modelSpec("class16-unet"));
    const { dataset, indices, training } = conditional;
    const split = holdoutSplit(dataset.meta);
    assert.deepEqual(indices, split.train);
    const held = new Set([
      ...split.heldOutNames,
      ...split.unseenSubcategory,
      ...split.unseenSubject,
    ]);
    assert.ok(indices.every((i) => !held.has(i)), "no held-out image trains");
    assert.equal(training.count, indices.length);
    const k = 1234;
    assert.equal(training.labels![k], dataset.labels[indices[k]]);
    const pixels = 16 * 16 * 3;
    assert.deepEqual(
      training.images.subarray(k * pixels, (k + 1) * pixels),
      dataset.images.subarray(indices[k] * pixels, (indices[k] + 1) * pixels),
    );
    const unconditional = await specTrainingData(modelSpec("emoji16-unet"));
    assert.equal(unconditional.training.count, unconditional.dataset.count, "all images");
  });

  it("gives a text spec each image's own caption as the text tower's states, and the empty prompt's as the null", async () => {
    const { dataset, indices, training } = await specTrainingData(modelSpec("text16-unet"));
    const states = training.captionStates!;
    assert.equal(states.states.length, indices.length * states.length * states.width);
    const lexicon = await loadEmojiKeywords();
    const { clip, tokenizer } = await loadClipArtefact("tiny-clip", "full");
    try {
      const k = 777;
      const prompts = [caption(dataset.meta[indices[k]], lexicon, 3), ""];
      const ids = tf.tensor2d(
        tokenizer.encodeBatch(prompts),
        [2, tokenizer.contextLength],
        "int32",
      );
      const encoded = clip.text.encode(ids).states;
      const [own, empty] = tf.split(encoded, 2).map((t) => t.dataSync());
      const row = states.length * states.width;
      // The same encoder in batches of another size: equal up to float rounding.
      const farthest = (a: ArrayLike<number>, b: ArrayLike<number>) => {
        assert.equal(a.length, b.length);
        return Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
      };
      assert.ok(farthest(states.states.subarray(k * row, (k + 1) * row), own) < 1e-4);
      assert.ok(farthest(states.nullStates, empty) < 1e-4);
      assert.ok(farthest(states.states.subarray(0, row), own) > 0.01, "another caption differs");
      tf.dispose([ids, encoded]);
    } finally {
      clip.dispose();
    }
  });
});

describe("deno task train's runs", () => {
  it("continue a compatible run, refuse another spec's, and move a restarted run aside", async () => {
    await Deno.mkdir(`${ROOT}/.cache`, { recursive: true });
    const root = await Deno.makeTempDir({ dir: `${ROOT}/.cache` });
    try {
      await Deno.symlink(`${ROOT}/node_modules`, `${root}/node_modules`);
      const spec = tinySpec({ steps: 2 });
      const first = await trainModel(spec, { profile: "quick", root, progress: false });
      assert.equal(first.step, 2);
      const longer = tinySpec({ steps: 4 });
      await assert.rejects(
        () => trainModel(longer, { profile: "quick", root, progress: false }),
        /another spec of tiny-test.*training\.steps: 2 → 4.*--restart/s,
      );
      const again = await trainModel(longer, {
        profile: "quick",
        root,
        progress: false,
        restart: true,
      });
      assert.equal(again.step, 4);
      assert.ok(again.movedAside, "the old run was moved, not deleted");
      assert.ok((await Deno.stat(`${again.movedAside}/checkpoint.bin`)).isFile);
      // Exporting writes weights, metrics and a manifest that names the spec it came from.
      const out = await exportArtefact(longer, "quick", root);
      assert.equal(out, `${runDir("tiny-test", "quick", root)}/artefact`);
      const manifest = (await readManifest(out))!;
      assert.equal(manifest.steps, 4);
      assert.equal(manifest.specHash, await specHash(longer, "quick"));
      assert.deepEqual(Object.keys(manifest.files).sort(), [
        "metrics.jsonl",
        "samples-000004.png", // the grid of the last step
        "weights.ckpt",
      ]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });

  it("go back to a kept checkpoint under a changed recipe with --resume-from, recording it", async () => {
    await Deno.mkdir(`${ROOT}/.cache`, { recursive: true });
    const root = await Deno.makeTempDir({ dir: `${ROOT}/.cache` });
    try {
      await Deno.symlink(`${ROOT}/node_modules`, `${root}/node_modules`);
      const options = { profile: "quick" as const, root, progress: false };
      const spec = tinySpec({ steps: 4, checkpointEvery: 1 });
      await trainModel(spec, options);
      const gentler = tinySpec({ steps: 5, checkpointEvery: 1, learningRate: 1e-4 });
      const rescued = await trainModel(gentler, { ...options, resumeFrom: 3 });
      assert.equal(rescued.step, 5);
      assert.match(rescued.movedAside!, /after-step-3-/);
      const aside = (await loadModel(`${rescued.movedAside}/checkpoint.bin`)).parameterCount();
      assert.ok(aside > 0, "the step-4 checkpoint was kept aside");
      const record = JSON.parse(await Deno.readTextFile(`${rescued.dir}/run.json`));
      assert.equal(record.specHash, await specHash(gentler, "quick"));
      assert.deepEqual(record.lineage.map((l: { step: number }) => l.step), [3]);
      assert.equal(record.lineage[0].specHash, await specHash(spec, "quick"));
      assert.ok(
        record.lineage[0].changed.some((c: string) => c.startsWith("training.learningRate")),
      );
      const manifest = (await readManifest(await exportArtefact(gentler, "quick", root)))!;
      assert.deepEqual(manifest.lineage, record.lineage);
      // A step the run does not keep is an error that changes nothing, run.json included.
      const before = await Deno.readTextFile(`${rescued.dir}/run.json`);
      const other = tinySpec({ steps: 6, checkpointEvery: 1, learningRate: 5e-5 });
      await assert.rejects(
        () => trainModel(other, { ...options, resumeFrom: 1 }),
        /no usable checkpoint of step 1/,
      );
      assert.equal(await Deno.readTextFile(`${rescued.dir}/run.json`), before);
      // Another network is another model: no going back for it.
      const wider = tinySpec({ steps: 5, checkpointEvery: 1, learningRate: 1e-4 });
      wider.network.quick = {
        ...wider.network.quick,
        baseChannels: 16,
      } as typeof wider.network.quick;
      await assert.rejects(
        () => trainModel(wider, { ...options, resumeFrom: 4 }),
        /another spec of tiny-test.*network\.baseChannels/s,
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });

  it("a fingerprint moves when the network computes something else", async () => {
    const spec = tinySpec();
    const { training: dataset } = await specTrainingData(spec);
    const { createModel, completeModelConfig } = await import("../lib/core/models/mod.ts");
    const model = createModel(completeModelConfig(spec.network.full));
    const base = await computeFingerprint(spec, "full", model, dataset);
    assert.deepEqual(fingerprintDifferences(base, base), []);
    const again = await computeFingerprint(spec, "full", model, dataset);
    assert.deepEqual(fingerprintDifferences(base, again), [], "the same code, the same numbers");
    // Perturb one weight by 1 % and the probe loss moves beyond the tolerance.
    const weight = model.parameters.find((p) => p.name === "output.conv.bias")!.variable;
    weight.assign(tf.add(weight, 0.01));
    const changed = await computeFingerprint(spec, "full", model, dataset);
    assert.match(fingerprintDifferences(base, changed).join(), /probe loss/);
    model.dispose();
  });

  it("deno task train refuses unknown options and models before doing anything", async () => {
    for (const args of [["emoji16-unet", "--reusme"], ["no-such-model"], ["--profile"]]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}/scripts/train.ts`, ...args],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 2, args.join(" "));
      assert.match(new TextDecoder().decode(out.stderr), /usage: deno task train/);
    }
  });
});
