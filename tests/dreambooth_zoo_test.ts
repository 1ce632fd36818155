import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { selectBackend } from "../lib/runtime/backend.ts";
import { sha256Hex } from "../lib/runtime/files.ts";
import { readManifest } from "../lib/zoo/manifest.ts";
import {
  augmentedSubject,
  DREAMBOOTH_SPECS,
  dreamBoothHash,
  dreamBoothSpec,
  loadDreamBooth,
  subjectImages,
  subjectPrompt,
} from "../lib/zoo/dreambooth.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";
import { loadClipArtefact } from "../lib/zoo/clip_network.ts";
import { CONDITIONING_HOLDOUTS } from "../lib/data/holdouts.ts";

await selectBackend({ requested: "cpu", quiet: true });

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

describe("the zoo's DreamBooth fine-tunes (chapter 9)", () => {
  for (const spec of DREAMBOOTH_SPECS.values()) {
    it(`${spec.name}: a current float16 network of its base's architecture, with other weights`, async () => {
      const dir = `${ROOT}/assets/models/${spec.name}`;
      const manifest = await readManifest(dir);
      assert.ok(manifest, `${spec.name} has no artefact; deno task train ${spec.name}`);
      assert.equal(
        manifest.specHash,
        await dreamBoothHash(spec, "full"),
        `${spec.name} is stale; deno task train ${spec.name} --restart`,
      );
      for (const [file, hash] of Object.entries(manifest.files)) {
        assert.equal(await sha256Hex(await Deno.readFile(`${dir}/${file}`)), hash, file);
      }
      const { model } = await loadDreamBooth(spec.name, "full", ROOT);
      const base = (await loadPretrained(spec.base, { root: ROOT })).model;
      assert.deepEqual(model.config, base.config);
      assert.equal(manifest.parameters, base.parameterCount());
      // float16: about two bytes a parameter.
      assert.ok(Math.abs(manifest.weightBytes! / (2 * manifest.parameters) - 1) < 0.05);
      const changed = model.parameters.filter((p, i) => {
        const a = p.variable.dataSync(), b = base.parameters[i].variable.dataSync();
        return a.some((v, k) => Math.abs(v - b[k]) > 1e-3);
      });
      assert.ok(changed.length > model.parameters.length / 2, "the whole network trained");
      model.dispose();
      base.dispose();
    });
  }

  it("trains on the unseen subject, mirrored and shifted, named by a word the encoder has", async () => {
    const spec = dreamBoothSpec("text16-dreambooth-teddy");
    const subject = await subjectImages(spec);
    assert.equal(subject.count, 2, "the teddy bear of each vendor");
    assert.equal(CONDITIONING_HOLDOUTS.unseenSubject, "1F9F8");
    const data = augmentedSubject(spec, subject);
    assert.equal(data.count, 2 * 2 * spec.shifts.length);
    assert.deepEqual(new Set(data.captions), new Set(["xk bear, twemoji", "xk bear, noto"]));
    assert.equal(subjectPrompt(spec, "noto", false), "bear, noto");
    // The mirror image of the unshifted drawing is the drawing mirrored.
    const size = 16 * 16 * 3;
    const first = data.images.subarray(0, size);
    const mirrored = data.images.subarray(
      spec.shifts.length * size,
      (spec.shifts.length + 1) * size,
    );
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        assert.equal(mirrored[(y * 16 + x) * 3], first[(y * 16 + 15 - x) * 3]);
      }
    }
    const { tokenizer, clip } = await loadClipArtefact("tiny-clip", "full", ROOT);
    assert.ok(tokenizer.words.includes(spec.identifier) && tokenizer.words.includes("bear"));
    clip.dispose();
    assert.throws(() => dreamBoothSpec("text16-dreambooth-cat"), /unknown DreamBooth fine-tune/);
  });
});
