import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadOpenMojiDataset } from "../lib/data/openmoji.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";

/** Fraction of pixels darker than −0.6 in every channel: outlines. */
function darkFraction(images: Float32Array, index: number, size: number): number {
  const n = size * size;
  let dark = 0;
  for (let p = 0; p < n; p++) {
    const o = (index * n + p) * 3;
    if (images[o] < -0.6 && images[o + 1] < -0.6 && images[o + 2] < -0.6) dark++;
  }
  return dark / n;
}

describe("OpenMoji, the held-out style", () => {
  it("renders the Unicode emoji in [−1, 1] with the emoji dataset's names, outlined in black", async () => {
    const openmoji = await loadOpenMojiDataset();
    assert.ok(openmoji.count > 1500, `${openmoji.count} emoji`);
    assert.equal(openmoji.images.length, openmoji.count * 16 * 16 * 3);
    assert.ok(openmoji.images.every((v) => v >= -1 - 1e-6 && v <= 1 + 1e-6));
    const apple = openmoji.meta.findIndex((m) => m.shortName === "apple");
    assert.ok(apple >= 0, "the red apple is there");
    assert.equal(openmoji.meta[apple].subcategory, "food-fruit");
    assert.equal(openmoji.meta[apple].icon, "red-apple");
    const twemoji = await loadEmojiDataset({ vendors: ["twitter"] });
    const byCode = new Map(twemoji.meta.map((m, i) => [m.unified, i]));
    let ours = 0, theirs = 0, pairs = 0;
    openmoji.meta.forEach((m, i) => {
      const j = byCode.get(m.unified);
      if (j === undefined) return;
      ours += darkFraction(openmoji.images, i, 16);
      theirs += darkFraction(twemoji.images, j, 16);
      pairs++;
    });
    assert.ok(pairs > 1000);
    assert.ok(ours > 2 * theirs, `dark outline pixels: ${ours / pairs} against ${theirs / pairs}`);
    // A second load reads the cache and gives the same images.
    const again = await loadOpenMojiDataset();
    assert.deepEqual(again.images.subarray(0, 4096), openmoji.images.subarray(0, 4096));
  });

  it("says how to restore a missing package", async () => {
    const empty = await Deno.makeTempDir();
    await assert.rejects(
      loadOpenMojiDataset({ packageRoot: empty, cacheDir: empty }),
      /"@iconify-json\/openmoji" is not installed.*deno install/,
    );
    await assert.rejects(loadOpenMojiDataset({ margin: 40 }), /margin is in \[0, 36\)/);
    await Deno.remove(empty, { recursive: true });
  });
});
