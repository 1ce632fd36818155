import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type EmojiDataset, loadEmojiDataset } from "../lib/data/emoji.ts";
import { attributionText, IMAGE_SETS } from "../lib/data/attribution.ts";

await tf.setBackend("cpu");

const nodeModules = new URL("../node_modules/", import.meta.url).pathname;

/** Pixel (x, y) of image i as [r, g, b] in [-1, 1]. */
function pixel(data: EmojiDataset, i: number, x: number, y: number): number[] {
  const s = ((i * data.size + y) * data.size + x) * 3;
  return [...data.images.subarray(s, s + 3)];
}

function find(data: EmojiDataset, unified: string, vendor: string): number {
  const i = data.meta.findIndex((m) => m.unified.toLowerCase() === unified && m.vendor === vendor);
  assert.ok(i >= 0, `${unified} from ${vendor} is in the dataset`);
  return i;
}

/** A package root holding only emoji-datasource-twitter's emoji.json and 16 px sheet. */
async function twitterCopy(): Promise<{ root: string; sheet: string }> {
  const root = await Deno.makeTempDir({ prefix: "emoji-data-test-" });
  const from = join(nodeModules, "emoji-datasource-twitter");
  const to = join(root, "emoji-datasource-twitter");
  await Deno.mkdir(join(to, "img", "twitter", "sheets"), { recursive: true });
  await Deno.copyFile(join(from, "emoji.json"), join(to, "emoji.json"));
  const sheet = join(to, "img", "twitter", "sheets", "16.png");
  await Deno.copyFile(join(from, "img", "twitter", "sheets", "16.png"), sheet);
  return { root, sheet };
}

describe("loadEmojiDataset", () => {
  it("loads both vendors at 16 px with category labels and no skin tones", async () => {
    const data = await loadEmojiDataset();
    assert.equal(data.size, 16);
    // emoji-datasource 16.0.0: 1,906 emoji a vendor once "Component" is left out.
    assert.ok(data.count >= 3000 && data.count <= 4500, `count ${data.count}`);
    assert.equal(data.count, 3812);
    assert.equal(data.meta.filter((m) => m.vendor === "twitter").length, 1906);
    assert.equal(data.images.length, data.count * 16 * 16 * 3);
    assert.equal(data.meta.length, data.count);
    assert.equal(data.labels.length, data.count);
    assert.deepEqual(data.categories, [
      "Smileys & Emotion",
      "People & Body",
      "Animals & Nature",
      "Food & Drink",
      "Travel & Places",
      "Activities",
      "Objects",
      "Symbols",
      "Flags",
    ]);
    data.labels.forEach((label, i) => {
      assert.ok(label >= 0 && label < data.categories.length);
      assert.equal(data.categories[label], data.meta[i].category);
    });
    assert.ok(
      data.meta.every((m) => !/1F3F[B-F]/.test(m.unified) && !m.shortName.includes("skin")),
    );
    // Ordered by vendor, then Unicode order: twitter's grinning face first, google's after.
    assert.equal(data.meta[0].unified, "1F600");
    assert.equal(data.meta[0].vendor, "twitter");
    assert.equal(data.meta[1906].unified, "1F600");
    assert.equal(data.meta[1906].vendor, "google");
    let min = Infinity, max = -Infinity;
    for (const v of data.images) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    assert.ok(min >= -1 && max <= 1, `range [${min}, ${max}]`);
    assert.ok(min < -0.9 && max === 1, "the images use the whole range");

    for (const vendor of ["twitter", "google"]) {
      const heart = find(data, "2764-fe0f", vendor);
      let red = 0;
      for (let y = 5; y < 10; y++) {
        for (let x = 5; x < 11; x++) {
          const [r, g, b] = pixel(data, heart, x, y);
          if (r > 0.4 && g < 0 && b < 0) red++;
        }
      }
      assert.ok(red >= 24, `${vendor} heart: ${red} of 30 centre pixels red`);
      for (const [x, y] of [[0, 0], [15, 0], [0, 15], [15, 15]]) {
        assert.ok(pixel(data, heart, x, y).every((v) => v > 0.95), "white corners");
      }
    }

    const before = tf.memory().numTensors;
    const batch = data.toTensor([find(data, "2764-fe0f", "google"), 0]);
    assert.deepEqual(batch.shape, [2, 16, 16, 3]);
    const values = await batch.data();
    assert.deepEqual(values.subarray(768), data.images.subarray(0, 768));
    batch.dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.throws(() => data.toTensor([data.count]), /outside/);
  });

  it("composites over the background colour and filters categories", async () => {
    const data = await loadEmojiDataset({
      vendors: ["twitter"],
      background: [0, 0, 0],
      categories: ["Symbols", "Smileys & Emotion"],
    });
    assert.deepEqual(data.categories, ["Symbols", "Smileys & Emotion"]);
    assert.ok(data.count > 300 && data.count < 800, `count ${data.count}`);
    assert.ok(data.meta.every((m) => m.vendor === "twitter"));
    const heart = find(data, "2764-fe0f", "twitter");
    assert.equal(data.categories[data.labels[heart]], "Smileys & Emotion");
    assert.ok(pixel(data, heart, 0, 0).every((v) => v < -0.95), "black corners");
    const grey = await loadEmojiDataset({
      vendors: ["twitter"],
      background: [0, 255, 0],
      limit: 3,
    });
    assert.equal(grey.count, 3);
    assert.deepEqual(pixel(grey, 0, 0, 0), [-1, 1, -1]);
  });

  it("includes skin-tone variants only when asked, right after their base", async () => {
    const data = await loadEmojiDataset({ vendors: ["google"], includeSkinTones: true });
    assert.ok(data.count > 3000 && data.count < 4500, `count ${data.count}`);
    const wave = data.meta.findIndex((m) => m.shortName === "wave");
    assert.deepEqual(
      data.meta.slice(wave, wave + 6).map((m) => m.shortName),
      ["wave", 2, 3, 4, 5, 6].map((n) => n === "wave" ? n : `wave::skin-tone-${n}`),
    );
    assert.equal(data.meta[wave + 1].unified, "1F44B-1F3FB");
    assert.match(data.meta[wave + 5].name, /DARK SKIN TONE$/);
    assert.ok(!data.categories.includes("Component"));
  });

  it("writes the decoded sheet to the cache, reuses it, and rebuilds a damaged one", async () => {
    const { root, sheet } = await twitterCopy();
    const cacheDir = join(root, "cache");
    try {
      const first = await loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir });
      const cacheFile = join(cacheDir, "twitter-16.bin");
      const full = (await Deno.stat(cacheFile)).size;
      assert.equal(full, 32 + 62 * 62 * 16 * 16 * 4);
      assert.deepEqual([...Deno.readDirSync(cacheDir)].map((e) => e.name), ["twitter-16.bin"]);

      // Garbage of the sheet's length: only a cache hit (no decode) can still load.
      const original = await Deno.readFile(sheet);
      await Deno.writeFile(sheet, new Uint8Array(original.length).fill(7));
      const cached = await loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir });
      assert.deepEqual(cached.images, first.images);

      // A truncated cache is not used: the loader decodes the (garbage) sheet and says which.
      const bytes = await Deno.readFile(cacheFile);
      await Deno.writeFile(cacheFile, bytes.subarray(0, bytes.length - 1000));
      await assert.rejects(
        loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir }),
        (error: Error) => error.message.includes(sheet) && /cannot be decoded/.test(error.message),
      );

      // With the sheet back it is rebuilt in full.
      await Deno.writeFile(sheet, original);
      const rebuilt = await loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir });
      assert.equal((await Deno.stat(cacheFile)).size, full);
      assert.deepEqual(rebuilt.images, first.images);

      // A flipped byte fails the checksum and is rebuilt too.
      const good = await Deno.readFile(cacheFile);
      good[100_000] ^= 0xff;
      await Deno.writeFile(cacheFile, good);
      const again = await loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir });
      assert.deepEqual(again.images, first.images);
      assert.notEqual((await Deno.readFile(cacheFile))[100_000], good[100_000]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });

  it("says how to install a missing package", async () => {
    const root = await Deno.makeTempDir({ prefix: "emoji-data-test-" });
    try {
      await assert.rejects(
        loadEmojiDataset({ packageRoot: root, cacheDir: root }),
        (error: Error) =>
          error.message.includes('"emoji-datasource-twitter"') &&
          error.message.includes("deno install"),
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });

  it("names a corrupt emoji.json", async () => {
    const root = await Deno.makeTempDir({ prefix: "emoji-data-test-" });
    try {
      const file = join(root, "emoji-datasource-twitter", "emoji.json");
      await Deno.mkdir(join(root, "emoji-datasource-twitter"));
      await Deno.writeTextFile(file, '[{"unified": "1F600", "categ');
      await assert.rejects(
        loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir: root }),
        (error: Error) => error.message.includes(file) && /not valid JSON/.test(error.message),
      );
      await Deno.writeTextFile(file, '[{"name": "X"}]');
      await assert.rejects(
        loadEmojiDataset({ vendors: ["twitter"], packageRoot: root, cacheDir: root }),
        (error: Error) => error.message.includes(file),
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });

  it("rejects unknown sizes, vendors and categories with the valid choices", async () => {
    await assert.rejects(loadEmojiDataset({ size: 24 as 16 }), /16, 20, 32, 64/);
    await assert.rejects(loadEmojiDataset({ vendors: ["apple" as "google"] }), /twitter, google/);
    await assert.rejects(loadEmojiDataset({ categories: ["Smileys"] }), /Smileys & Emotion/);
  });
});

describe("attribution", () => {
  it("credits Twemoji, Noto and OpenMoji with licences and the installed versions", () => {
    assert.equal(IMAGE_SETS.twitter.licence, "CC-BY 4.0");
    assert.equal(IMAGE_SETS.google.licence, "Apache-2.0");
    assert.equal(IMAGE_SETS.twitter.version, "16.0.0");
    const text = attributionText();
    assert.ok(!text.includes("\n"));
    for (
      const part of [
        "Twemoji",
        "Noto Emoji",
        "CC-BY 4.0",
        "Apache-2.0",
        "16.0.0",
        "OpenMoji",
        "CC BY-SA 4.0",
        "@iconify-json/openmoji 1.2.29",
      ]
    ) {
      assert.ok(text.includes(part), `${part} in "${text}"`);
    }
  });
});
