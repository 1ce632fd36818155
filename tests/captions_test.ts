/**
 * The conditional models' data: captions from emojilib, the holdouts kept out of every training
 * set, and the word-level tokenizer.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { caption, emojiKey, loadEmojiKeywords } from "../lib/data/captions.ts";
import { CONDITIONING_HOLDOUTS, holdoutSplit } from "../lib/data/holdouts.ts";
import { BOS, EOS, PAD, textWords, Tokenizer, UNK } from "../lib/core/tokenizer.ts";
import { type EmojiMeta, loadEmojiDataset } from "../lib/data/emoji.ts";
import { emojiIdentity } from "../lib/data/splits.ts";
import { UserError } from "../lib/core/errors.ts";

const lexicon = await loadEmojiKeywords();
const dataset = await loadEmojiDataset({ size: 16 });
const meta = (unified: string, vendor: EmojiMeta["vendor"] = "google") => ({
  unified,
  vendor,
  name: "UNICODE NAME",
});

describe("captions", () => {
  it("name the emoji as CLDR does, add new keywords, and end with the image set", () => {
    assert.equal(caption(meta("1F34E"), lexicon), "red apple, fruit, mac, school, noto");
    assert.equal(
      caption(meta("2764-FE0F", "twitter"), lexicon),
      "red heart, love, like, valentines, twemoji",
    );
    assert.equal(caption(meta("1F34E"), lexicon, 1), "red apple, fruit, noto");
    assert.equal(emojiKey("2764-FE0F"), "\u2764");
  });

  it("skip keywords that are not words or add nothing, and fall back to the Unicode name", () => {
    // 😀's keywords include ":D" and "face" comes after "grinning face".
    const smile = caption(meta("1F600"), lexicon, 10);
    assert.ok(!smile.includes(":d") && !smile.includes(":D"), smile);
    assert.equal(smile.split(", ").filter((p) => p === "face").length, 0, smile);
    assert.equal(caption(meta("E000"), lexicon), "unicode name, noto");
  });

  it("cover every emoji of the dataset, each caption unique to its emoji and vendor", () => {
    const captions = dataset.meta.map((m) => caption(m, lexicon));
    const missing = dataset.meta.filter((m) => !lexicon.has(emojiKey(m.unified)));
    assert.equal(missing.length, 0, missing.slice(0, 5).map((m) => m.name).join(", "));
    const byCaption = new Map<string, Set<string>>();
    captions.forEach((c, i) => {
      const who = `${emojiIdentity(dataset.meta[i])} ${dataset.meta[i].vendor}`;
      byCaption.set(c, (byCaption.get(c) ?? new Set()).add(who));
    });
    const shared = [...byCaption].filter(([, who]) => who.size > 1);
    assert.ok(shared.length < 0.02 * byCaption.size, `${shared.length} captions are shared`);
  });

  it("tell how to restore a missing keyword package", async () => {
    const empty = await Deno.makeTempDir();
    try {
      await assert.rejects(
        loadEmojiKeywords(empty),
        (e) =>
          e instanceof UserError && /"emojilib" is not installed/.test(e.message) &&
          /deno install/.test(e.message),
      );
    } finally {
      await Deno.remove(empty, { recursive: true });
    }
  });
});

describe("the holdouts", () => {
  const split = holdoutSplit(dataset.meta);

  it("partition the images; no training image shares an identity with a held-out one", () => {
    const sides = [split.train, split.heldOutNames, split.unseenSubcategory, split.unseenSubject];
    const all = sides.flat().sort((a, b) => a - b);
    assert.deepEqual(all, dataset.meta.map((_, i) => i));
    const identities = (side: number[]) => new Set(side.map((i) => emojiIdentity(dataset.meta[i])));
    const train = identities(split.train);
    for (const side of sides.slice(1)) {
      for (const id of identities(side)) assert.ok(!train.has(id), `${id} is on both sides`);
    }
  });

  it("hold out about a tenth of the names, the cat faces and the teddy bear, both vendors", () => {
    const fraction = split.heldOutNames.length / dataset.count;
    assert.ok(fraction > 0.06 && fraction < 0.14, `held-out names: ${fraction}`);
    assert.ok(split.unseenSubcategory.every((i) => dataset.meta[i].subcategory === "cat-face"));
    assert.equal(split.unseenSubcategory.length, 18, "nine cat faces, two vendors");
    assert.deepEqual(
      split.unseenSubject.map((i) => [dataset.meta[i].name, dataset.meta[i].vendor]),
      [["TEDDY BEAR", "twitter"], ["TEDDY BEAR", "google"]],
    );
    const vendors = new Set(split.heldOutNames.map((i) => dataset.meta[i].vendor));
    assert.deepEqual([...vendors].sort(), ["google", "twitter"]);
  });

  it("refuse a subcategory or subject that the data does not have", () => {
    assert.throws(
      () =>
        holdoutSplit(dataset.meta, { ...CONDITIONING_HOLDOUTS, unseenSubcategory: "cat-faces" }),
      /no image is of the unseen subcategory "cat-faces"/,
    );
    assert.throws(
      () => holdoutSplit(dataset.meta, { ...CONDITIONING_HOLDOUTS, unseenSubject: "E000" }),
      /no image draws the unseen subject E000/,
    );
  });
});

describe("the tokenizer", () => {
  const tokenizer = Tokenizer.fromCaptions(
    ["red apple, fruit, noto", "green apple, fruit, twemoji", "red heart, love, noto"],
    { contextLength: 8 },
  );

  it("builds its vocabulary by count, then alphabetically, after the four special tokens", () => {
    assert.deepEqual(tokenizer.words.slice(0, 4), ["apple", "fruit", "noto", "red"]);
    assert.equal(tokenizer.vocabularySize, 4 + 8);
    assert.equal(tokenizer.id("apple"), 4);
  });

  it("encodes BOS, the words, EOS and padding, with a mask; decodes back", () => {
    const e = tokenizer.encode("Red apple, noto");
    assert.deepEqual(Array.from(e.ids), [BOS, 7, 4, 6, EOS, PAD, PAD, PAD]);
    assert.deepEqual(Array.from(e.mask), [1, 1, 1, 1, 1, 0, 0, 0]);
    assert.equal(tokenizer.decode(e.ids), "red apple noto");
    assert.deepEqual(e.unknown, []);
    assert.equal(e.truncated, false);
  });

  it("maps unseen words to UNK and names them; the empty prompt is BOS, EOS", () => {
    const e = tokenizer.encode("blue apple");
    assert.deepEqual(Array.from(e.ids.slice(0, 4)), [BOS, UNK, 4, EOS]);
    assert.deepEqual(e.unknown, ["blue"]);
    assert.equal(tokenizer.decode(e.ids), "[UNK] apple");
    assert.deepEqual(Array.from(tokenizer.encode("").ids.slice(0, 3)), [BOS, EOS, PAD]);
    assert.deepEqual(Array.from(tokenizer.encode("  ,, ").mask), [1, 1, 0, 0, 0, 0, 0, 0]);
  });

  it("keeps the first L − 2 words of a longer prompt and says so", () => {
    const e = tokenizer.encode("red red red red red red red apple");
    assert.equal(e.truncated, true);
    assert.deepEqual(Array.from(e.ids), [BOS, 7, 7, 7, 7, 7, 7, EOS]);
  });

  it("drops rare words with minCount, round-trips through JSON, refuses a context below 3", () => {
    const common = Tokenizer.fromCaptions(["a b", "a c"], { contextLength: 4, minCount: 2 });
    assert.deepEqual(common.words, ["a"]);
    const copy = Tokenizer.fromJSON(JSON.parse(JSON.stringify(tokenizer)));
    assert.deepEqual(copy.encode("green apple").ids, tokenizer.encode("green apple").ids);
    assert.throws(() => new Tokenizer(["a"], 2), /context length is a whole number of at least 3/);
    assert.deepEqual(textWords("Yo-yo, Piñata's!"), ["yo", "yo", "piñata's"]);
  });
});
