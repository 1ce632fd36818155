// %% [markdown]
// # Fine-tuning
//
// Training chapter 6's text-conditional U-Net took half an hour; a large model's pretraining
// takes months. Once a model exists, the cheaper question is how to teach it something new
// without training it again: a style, one particular subject, a concept it has no word for. This
// chapter runs the three methods that answer it on the book's own model, `text16-unet`, and on
// things it provably never saw, because they were kept out of its data before it trained
// (`lib/data/holdouts.ts`):
//
// - **a style**: OpenMoji's emoji, outlined in black, which none of the book's models has seen
//   (the base trained on Twemoji and Noto), taught by **LoRA** [@hu2021];
// - **a subject**: the teddy bear, whose drawings no model of the book trained on, taught by
//   **DreamBooth** [@ruiz2023];
// - **a concept**: the cat faces (😺 😸 😹 …), a Unicode subcategory held out of every
//   conditional model, given a new word by **textual inversion** [@gal2022].
//
// Each method trains something different — two small matrices per attention projection, the
// whole network, one word's embedding — and the chapter measures what each costs and what each
// learned, with chapter 7's metrics.

// %% [setup]
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { imageGrid, type RgbaImage, toRgbaImages } from "../lib/core/images.ts";
import { labelledRows } from "../lib/book/layout.ts";
import { panelLines, type PanelPoint } from "../lib/book/figures.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { caption, loadEmojiKeywords } from "../lib/data/captions.ts";
import { holdoutSplit } from "../lib/data/holdouts.ts";
import { Random } from "../lib/core/random.ts";
import { OPENMOJI_CREDIT } from "../lib/data/openmoji.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";
import { gatherRows } from "../lib/zoo/spec_data.ts";
import { loadClipArtefact } from "../lib/zoo/clip_network.ts";
import { loadClassifierArtefact } from "../lib/zoo/feature_networks.ts";
import { promptEncoder, samplePrompts } from "../lib/zoo/prompts.ts";
import {
  conceptImages,
  loadStyleLora,
  loadToken,
  STYLE_LORA_RANKS,
  styleData,
  styleLoraSpec,
  TOKEN_SPECS,
} from "../lib/zoo/fine_tunes.ts";
import {
  augmentedSubject,
  DREAMBOOTH_SPECS,
  loadDreamBooth,
  STYLES,
  subjectImages,
  subjectPrompt,
} from "../lib/zoo/dreambooth.ts";
import { embed, type Embedding } from "../lib/metrics/evaluate.ts";
import { kernelDistance } from "../lib/metrics/kid.ts";
import { frechetDistance, gaussianStatistics } from "../lib/metrics/fid.ts";
import { clipImageFeatures, meanCosine } from "../lib/metrics/similarity.ts";
import type { DiffusionModel } from "../lib/core/models/mod.ts";
import type { ArtefactManifest } from "../lib/zoo/manifest.ts";

await selectBackend();
const quick = book.profile === "quick";
const profile = book.profile;
const base = await loadPretrained("text16-unet", { profile });
const { clip, tokenizer } = await loadClipArtefact("tiny-clip", profile);
const encoder = promptEncoder(clip.text, tokenizer);
const { classifier } = await loadClassifierArtefact({ profile });
const clipImages = clipImageFeatures(clip);
const side = base.model.config.imageSize;
const size = side * side * 3;
const guidanceScale = 3;
const ddimSteps = book.pick({ quick: 10, full: 25 });

/** One image a prompt from `model`, guided at w = 3 (DDIM). */
const draw = (model: DiffusionModel, prompts: readonly string[], seed: number) =>
  samplePrompts(model, base, encoder, prompts, { seed, steps: ddimSteps, guidanceScale });
/** The first `n` images of a batch (a tensor or NHWC values), as one row of cells. */
const row = async (images: tf.Tensor4D | Float32Array, n: number): Promise<RgbaImage> => {
  const values = images instanceof Float32Array ? images : await images.data() as Float32Array;
  const cells = await toRgbaImages({
    data: values.subarray(0, n * size),
    shape: [n, side, side, 3],
  });
  return imageGrid(cells, { columns: n, scale: 3, padding: 1 });
};
const percent = (fraction: number) =>
  `${fraction >= 0.1 ? (100 * fraction).toFixed(0) : (100 * fraction).toPrecision(2)} %`;
/** A KID as the tables show it: mean ± spread over the subsets, × 10³. */
const kidCell = (k: { mean: number; std: number }) =>
  `${(1000 * k.mean).toFixed(0)} ± ${(1000 * k.std).toFixed(0)}`;
const trainingSeconds = (m: ArtefactManifest) => m.training.reduce((s, t) => s + t.seconds, 0);
const where = (m: ArtefactManifest) => [...new Set(m.training.map((t) => t.where))].join(", ");
const fileSize = (bytes: number) =>
  bytes >= 1e6
    ? `${(bytes / 1e6).toFixed(1)} MB`
    : `${(bytes / 1024).toFixed(bytes < 10_240 ? 1 : 0)} kB`;

// %% [markdown]
// ## What the base model never saw
//
// The three held-out sets, as they are. The OpenMoji images are rasterised from the project's
// SVGs at 4× and box-averaged to 16 px, as the Twemoji and Noto images were
// (`lib/data/openmoji.ts`); 400 of them, drawn at random, never train an adapter either, so that
// the style's FID/KID below is measured on OpenMoji drawings the adapter did not see.

// %%
const styleSpec = styleLoraSpec("text16-lora-openmoji-r4");
const style = await styleData(styleSpec, profile);
const heldOutCount = book.pick({ quick: 48, full: style.heldOut.count });
const heldCaptions = style.heldOut.captions.slice(0, heldOutCount);
const heldImages = style.heldOut.images.subarray(0, heldOutCount * size);
const teddySpec = DREAMBOOTH_SPECS.get("text16-dreambooth-teddy")!;
const subject = await subjectImages(teddySpec);
const tokenSpec = TOKEN_SPECS.get("text16-ti-catface")!;
const concept = await conceptImages(tokenSpec);
await book.figure(
  labelledRows([
    { label: "OpenMoji (held out)", image: await row(heldImages, 12) },
    { label: "teddy bear (both vendors)", image: await row(subject.images, subject.count) },
    { label: "cat faces (Twemoji)", image: await row(concept.images, 9) },
  ]),
  {
    caption: `The style, the subject and the concept. OpenMoji images: ${OPENMOJI_CREDIT}.`,
  },
);

// %% [markdown]
// ## LoRA: a low-rank update of the attention
//
// LoRA freezes every weight $W \in \mathbb{R}^{d_\text{in} \times d_\text{out}}$ of the base and
// trains, beside each chosen linear layer, two factors of a small rank $r$:
//
// $$y = xW + s\,\frac{\alpha}{r}\,x A B, \qquad A \in \mathbb{R}^{d_\text{in} \times r},\;
// B \in \mathbb{R}^{r \times d_\text{out}},$$
//
// $A$ drawn from $\mathcal{N}(0, 1/r^2)$ and $B = 0$, so that at initialisation the adapted
// network is the base exactly (a test checks it bit for bit). The LoRA paper keeps $\alpha$ at the
// first $r$ it tries, so that a change of rank does not change the update's scale; diffusers'
// training script sets $\alpha = r$ at every rank, as here, so that $\alpha/r = 1$ and the rank
// sweep below changes the scale along with the rank. $s$ is a strength to turn at inference: $s = 0$ is the base, $s = 1$ the adapter as trained. The layers are chosen
// by name, as PEFT's `target_modules`: here every attention projection of the U-Net, `q`, `k`,
// `v` and `out` of its self- and cross-attention blocks (at 8×8 and 4×4 and in the middle).
// Training updates only $A$ and $B$: $\sum r(d_\text{in} + d_\text{out})$ numbers.

// %%
await book.listing("lib/core/nn/lora.ts", "LoraLayer", {
  caption: "One adapted layer: the update beside the frozen weight (lib/core/nn/lora.ts).",
});

// %% [markdown]
// The adapters train on the other 1,506 OpenMoji images, each captioned as the base's captions
// describe the same emoji but without a style word ("red apple, fruit"): the tokenizer has no
// word for OpenMoji, and the style is what the adapter must add. The recipe starts from diffusers'
// LoRA script (Adam, constant learning rate 1e-4, α = r) and is scaled to this small model and
// short run: 1e-3, 1000 steps of 32 images, guidance's null prompt kept by dropping 10 % of the
// captions. One adapter a rank, r ∈ {1, 2, 4, 8}, and for comparison the cost of fine-tuning
// every weight (the DreamBooth runs below do).

// %% {#tbl-fine-tune-sizes}
const loras = new Map<number, Awaited<ReturnType<typeof loadStyleLora>>>();
for (const rank of STYLE_LORA_RANKS) {
  loras.set(rank, await loadStyleLora(`text16-lora-openmoji-r${rank}`, profile));
}
const dreamBooths = new Map<string, Awaited<ReturnType<typeof loadDreamBooth>>>();
for (const name of DREAMBOOTH_SPECS.keys()) {
  dreamBooths.set(name, await loadDreamBooth(name, profile));
}
const withPrior = dreamBooths.get("text16-dreambooth-teddy")!;
const token = await loadToken(tokenSpec.name, profile);
const fullCount = base.model.parameterCount();
/** One row of the size table: what a fine-tune trains, and its artefact's file. */
const sizeRow = (method: string, trains: string, m: ArtefactManifest, bytes: string) => ({
  method,
  trains,
  parameters: m.parameters.toLocaleString("en"),
  "of the base": percent(m.parameters / fullCount),
  file: bytes,
  "training (s)": trainingSeconds(m).toFixed(0),
});
await book.table([
  ...[...loras].map(([rank, lora]) =>
    sizeRow(
      `LoRA, r = ${rank}`,
      `A, B of ${lora.model.lora!.layers.length} projections`,
      lora.manifest,
      fileSize(lora.manifest.adapterBytes!),
    )
  ),
  sizeRow(
    "textual inversion",
    "one word's embedding",
    token.manifest,
    fileSize(token.manifest.tokenBytes!),
  ),
  sizeRow(
    "DreamBooth (full fine-tune)",
    "every weight of the U-Net",
    withPrior.manifest,
    `${fileSize(withPrior.manifest.weightBytes!)} (float16)`,
  ),
], {
  caption: `What each fine-tune trains and stores, beside the base's ` +
    `${fullCount.toLocaleString("en")} parameters (${
      fileSize(fullCount * 4)
    } as float32). Training ` +
    `times are the artefacts' own (${where(withPrior.manifest)}); an adapter's file holds its ` +
    `factors as float32 and a header of about 10 kB naming its base's weights.`,
  measuredColumns: ["training (s)"],
});
for (const [rank, lora] of loras) {
  const expected = lora.model.lora!.layers.reduce(
    (s, l) => s + rank * (l.weight.shape[0]! + l.weight.shape[1]!),
    0,
  );
  if (lora.manifest.parameters !== expected) {
    throw new Error(
      `rank ${rank}: ${lora.manifest.parameters} trainable, Σ r(d_in + d_out) = ${expected}`,
    );
  }
}

// %% [markdown]
// ### Strength
//
// The same held-out captions, the same noise, the rank-4 adapter at strengths
// $s \in \{0, 0.5, 1, 1.5\}$. At $s = 0$ the network is the base, which has never drawn an
// outline.

// %% {#fig-lora-strength #tbl-lora-strength}
const strengths = [0, 0.5, 1, 1.5];
const r4 = loras.get(4)!.model;
const classifierEmbedding = (images: Float32Array, count: number) =>
  embed(classifier, images, count);
const openMojiReference = await classifierEmbedding(heldImages, heldOutCount);
// Twemoji's drawings of the same emoji, as many of the first ones as Twemoji has.
const heldCodes = new Set(style.heldOut.unified.slice(0, heldOutCount));
const twemojiOfHeld = style.heldOutTwemoji.unified.flatMap((u, i) => heldCodes.has(u) ? [i] : []);
const twemojiReference = await classifierEmbedding(
  gatherRows(style.heldOutTwemoji.images, size, twemojiOfHeld),
  twemojiOfHeld.length,
);
const kidOptions = {
  subsets: book.pick({ quick: 5, full: 50 }),
  subsetSize: Math.min(200, heldOutCount),
  seed: 0,
};
const statistics = (e: Embedding) => gaussianStatistics(e.features, e.count, e.dim);
const openMojiStatistics = statistics(openMojiReference);
const kid = (samples: Embedding, reference: Embedding, subsetSize = kidOptions.subsetSize) =>
  kernelDistance(samples.features, reference.features, samples.dim, {
    ...kidOptions,
    subsetSize,
  });
const strengthRows: { label: string; image: RgbaImage }[] = [];
const strengthTable: Record<string, string>[] = [];
const kidByStrength = new Map<number, number>();
let r4Samples: Embedding | undefined; // at s = 1, for the rank sweep below
for (const s of strengths) {
  r4.lora!.setStrength(s);
  const samples = await draw(r4, heldCaptions, 5);
  strengthRows.push({ label: `s = ${s}`, image: await row(samples, 12) });
  const e = await embed(classifier, samples);
  if (s === 1) r4Samples = e;
  samples.dispose();
  const toOpenMoji = kid(e, openMojiReference), toTwemoji = kid(e, twemojiReference);
  kidByStrength.set(s, toOpenMoji.mean);
  strengthTable.push({
    strength: String(s),
    "FID to held-out OpenMoji": frechetDistance(statistics(e), openMojiStatistics).distance
      .toFixed(1),
    "KID × 10³ to held-out OpenMoji": kidCell(toOpenMoji),
    "KID × 10³ to their Twemoji": kidCell(toTwemoji),
  });
}
r4.lora!.setStrength(1);
strengthRows.push({ label: "OpenMoji (held out)", image: await row(heldImages, 12) });
await book.figure(labelledRows(strengthRows), {
  caption:
    `The rank-4 adapter at four strengths on twelve held-out captions ("${
      heldCaptions.slice(0, 3).join('", "')
    }", …), the same x_T in every row (DDIM ${ddimSteps} steps, w = ${guidanceScale}); the last ` +
    `row is what OpenMoji draws for those captions. ${OPENMOJI_CREDIT}.`,
});
await book.table(strengthTable, {
  caption: `FID and KID (chapter 7, on the emoji classifier's features) of ${heldOutCount} ` +
    `samples, one ` +
    `a held-out caption, against the ${heldOutCount} held-out OpenMoji images and against ` +
    `Twemoji's drawings of the same emoji (${twemojiOfHeld.length}), mean ± spread over ` +
    `${kidOptions.subsets} subsets of ${kidOptions.subsetSize}.`,
});
if (!quick && !(kidByStrength.get(1)! < 0.5 * kidByStrength.get(0)!)) {
  throw new Error(
    `the adapter did not bring the samples to OpenMoji: KID ${kidByStrength.get(0)} at s = 0, ` +
      `${kidByStrength.get(1)} at s = 1`,
  );
}
if (!quick && !(kidByStrength.get(1.5)! > kidByStrength.get(1)!)) {
  throw new Error(`s = 1.5 is not worse than s = 1 (KID ${kidByStrength.get(1.5)})`);
}

// %% [markdown]
// The measured story (@fig-lora-strength, @tbl-lora-strength): the base's samples sit near
// Twemoji and far from OpenMoji; at $s = 1$ it is the other way round (the chapter checks that KID
// to OpenMoji at least halves). At $s = 0.5$ the samples are half-way to OpenMoji by KID (545)
// while they stay as near Twemoji as the base's (88 against 110). Past 1 the update is
// extrapolated and the drawings come apart into dark speckles: KID to OpenMoji grows again
// (checked), and so does KID to Twemoji. FID, biased at 400 samples (chapter 7), disagrees on that
// last row and puts $s = 1.5$ nearer OpenMoji than the base; KID, unbiased, puts it farther. What the adapter learned is mostly OpenMoji's
// palette and its dark strokes; its clean black outline, one pixel wide at 16 px, is drawn by the
// U-Net's 16×16 convolutions, which these adapters leave alone (its attention runs at 8×8 and
// 4×4 only). An adapter of the convolutions as well (LoCon, in the LyCORIS family) would reach it,
// at a few times the size.
//
// The adapter runs in this page too: the rank-4 adapter ships on its base (the base's float16
// weights and the 26,112 factors, rounded to float16), and each move of the slider draws the
// batch again at the new $s$. $s = 0$ draws exactly what `text16-unet` draws from the same seed;
// pick it from the menu to compare. Prompts read best without a style word, as the
// adapter was trained.
//
// <div class="widget" data-widget="live-sampler"><script type="application/json">{"models":["text16-lora-openmoji-r4","text16-unet"],"sampler":"ddim","steps":25,"guidance":3,"loraStrength":1,"prompt":"red apple, fruit","title":"The OpenMoji LoRA on text16-unet, sampled in this page"}</script></div>
//
// ### Merging
//
// An adapter can be folded into the weights, $W \leftarrow W + s\frac{\alpha}{r}AB$, after which
// inference costs exactly the base's; unmerging subtracts it again. Both are exact up to float32
// round-off, which the chapter measures on one batch.

// %%
const probe = tf.tidy(() => ({
  x: tf.randomNormal([4, side, side, 3], 0, 1, "float32", 3) as tf.Tensor4D,
  t: tf.tensor1d([10, 200, 500, 900]),
  states: encoder.encode(heldCaptions.slice(0, 4)),
}));
const epsilon = async (model: DiffusionModel) => {
  const y = tf.tidy(() => model.apply(probe.x, probe.t, { encoderHiddenStates: probe.states }));
  const values = await y.data() as Float32Array;
  y.dispose();
  return values;
};
const maxDifference = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const unmergedOutput = await epsilon(r4);
r4.lora!.merge();
const mergedOutput = await epsilon(r4);
r4.lora!.unmerge();
const unmergedAgain = await epsilon(r4);
const mergeError = maxDifference(unmergedOutput, mergedOutput);
await book.table([
  { comparison: "merged vs beside the weights", "largest |Δε|": mergeError.toExponential(1) },
  {
    comparison: "unmerged again vs before",
    "largest |Δε|": maxDifference(unmergedOutput, unmergedAgain).toExponential(1),
  },
], { caption: "ε_θ of four noisy images under the rank-4 adapter; |ε| is about 1." });
if (mergeError > 1e-3) throw new Error(`merging changed ε by ${mergeError}`);

// %% [markdown]
// ### Rank
//
// Rank is the adapter's capacity: $r$ directions of change per layer, and the file grows with it.
// The four adapters trained the same steps on the same batches; each is measured at $s = 1$
// against the same held-out set, from the same noise.

// %% {#tbl-lora-rank}
const rankPoints: PanelPoint[] = [];
const rankTable: Record<string, string>[] = [];
for (const [rank, lora] of loras) {
  let e = r4Samples!;
  if (rank !== 4) {
    const samples = await draw(lora.model, heldCaptions, 5);
    e = await embed(classifier, samples);
    samples.dispose();
  }
  const k = kid(e, openMojiReference);
  rankPoints.push({ x: rank, value: 1000 * k.mean, panel: "KID × 10³", series: "to OpenMoji" });
  rankTable.push({
    rank: String(rank),
    parameters: lora.manifest.parameters.toLocaleString("en"),
    file: fileSize(lora.manifest.adapterBytes!),
    "final training loss": lora.manifest.finalLoss.toFixed(4),
    "KID × 10³ to held-out OpenMoji": kidCell(k),
  });
}
await book.table(rankTable, {
  caption: `The rank sweep at s = 1, KID as above (${heldOutCount} samples).`,
});
await book.figure(panelLines(rankPoints, { xLabel: "rank r", logX: true }), {
  caption: "KID to held-out OpenMoji by the adapter's rank.",
});
const rankKid = new Map(rankPoints.map((p) => [p.x, p.value]));
const rankLoss = new Map([...loras].map(([r, l]) => [r, l.manifest.finalLoss]));
if (
  !quick &&
  !(rankKid.get(1)! > rankKid.get(4)! && rankKid.get(8)! > rankKid.get(4)! &&
    rankLoss.get(8)! < rankLoss.get(4)!)
) {
  throw new Error(`the rank sweep changed: KID ${[...rankKid]}, loss ${[...rankLoss]}`);
}

// %% [markdown]
// Rank 1 already does half of the work (@tbl-lora-rank), with 6,528 numbers; rank 4 fits the held-out drawings
// best. Rank 8 trains to the lowest loss of the four and is worse than rank 4 on drawings it did
// not see (all checked): its extra capacity went into the 1,506 training drawings rather than
// the style. cloneofsimo's advice of rank 1–4 for a style holds here as well.

// %% [markdown]
// ## DreamBooth: one subject, one rare word
//
// DreamBooth fine-tunes every weight of the U-Net on a handful of pictures of one subject, each
// captioned with a rare word $[V]$ and the subject's class, "$[V]$ bear". Trained on the subject
// alone, the model learns it, and also learns that *every* bear is this bear: the class word
// drifts. **Prior preservation** trains on two sets at once, the subject's images $x$ and class
// images $x'$ the base itself drew for the class prompt, so that the class keeps its meaning:
//
// $$\mathcal{L}(\theta) = \mathbb{E}\,\lVert \epsilon - \epsilon_\theta(x_t, t, \tau(\text{“}[V]\text{ bear”}))\rVert^2
//   + \lambda\,\mathbb{E}\,\lVert \epsilon' - \epsilon_\theta(x'_{t'}, t', \tau(\text{“bear”}))\rVert^2 .$$
//
// Here $[V]$ is "xk": the identifier must be a word the frozen text encoder already has (an
// unknown word would be `[UNK]`, shared with every other unknown word), with as weak a prior as
// possible. The paper picks rare tokens of T5's vocabulary; the tiny CLIP's rarest words are
// country codes that only a flag's captions use, and "xk" is one ("flag kosovo, xk, nation,
// country", in both vendors' captions). The subject is the two
// vendors' drawings of the teddy bear, mirrored and shifted by a pixel (20 images), captioned
// "xk bear, twemoji" and "xk bear, noto"; the class images are 200 samples of "bear, twemoji"
// and "bear, noto" from the base (the number in diffusers' DreamBooth example), and λ = 1.
// diffusers' rate, 5e-6, is a twentieth of the rate its model was pretrained at; this model was
// pretrained at 1e-3, and the run uses a tenth of that, 1e-4, for 300 steps of 4 subject and 4
// class images, with the last step's weights (no EMA, unlike the LoRA runs). As in the base's
// own training, a tenth of the captions are dropped to "", so the model's unconditional
// prediction, which guidance needs, trains on the subject too.

// %% {#fig-dreambooth-data #fig-dreambooth-samples #tbl-dreambooth}
const shownSubject = augmentedSubject(teddySpec, subject, side);
await book.figure(
  labelledRows([
    { label: "the 20 training images", image: await row(shownSubject.images, shownSubject.count) },
  ]),
  { caption: "DreamBooth's training set: two drawings, mirrored, shifted by one pixel each way." },
);
const sampleCount = book.pick({ quick: 16, full: 128 });
const subjectPrompts = Array.from(
  { length: sampleCount },
  (_, i) => subjectPrompt(teddySpec, STYLES[i % STYLES.length]),
);
const classPrompts = subjectPrompts.map((_, i) =>
  subjectPrompt(teddySpec, STYLES[i % STYLES.length], false)
);
const subjectReference = {
  clip: await embed(clipImages, subject.images, subject.count),
  classifier: await embed(classifier, subject.images, subject.count),
};
const models: [string, DiffusionModel][] = [
  ["base", base.model],
  ["prior λ = 1", withPrior.model],
  ["no prior", dreamBooths.get("text16-dreambooth-teddy-noprior")!.model],
];
const dreamRows: { label: string; image: RgbaImage }[] = [];
const dreamTable: Record<string, string>[] = [];
const measuredDrift = new Map<string, { fidelity: number; drift: number }>();
for (const [label, model] of models) {
  const ofSubject = await draw(model, subjectPrompts, 7);
  const ofClass = await draw(model, classPrompts, 7);
  dreamRows.push({ label: `${label}: "xk bear"`, image: await row(ofSubject, 12) });
  dreamRows.push({ label: `${label}: "bear"`, image: await row(ofClass, 12) });
  const score = tf.tidy(() =>
    tf.mean(clip.clipScore(
      ofSubject,
      tf.tensor2d(
        tokenizer.encodeBatch(classPrompts),
        [classPrompts.length, tokenizer.contextLength],
        "int32",
      ),
    ))
  );
  const clipScore = (await score.data())[0];
  score.dispose();
  const subjectClip = await embed(clipImages, ofSubject);
  const subjectFeatures = await embed(classifier, ofSubject);
  const classClip = await embed(clipImages, ofClass);
  ofSubject.dispose();
  ofClass.dispose();
  const fidelity = meanCosine(subjectClip, subjectReference.clip);
  const drift = meanCosine(classClip, subjectReference.clip);
  measuredDrift.set(label, { fidelity, drift });
  dreamTable.push({
    model: label === "base" ? "base (text16-unet)" : `DreamBooth, ${label}`,
    "CLIP-I, “xk bear” to the subject": fidelity.toFixed(3),
    "classifier cosine, “xk bear” to the subject": meanCosine(
      subjectFeatures,
      subjectReference.classifier,
    ).toFixed(3),
    "CLIP score, “xk bear” to “bear”": clipScore.toFixed(1),
    "CLIP-I, “bear” to the subject (drift)": drift.toFixed(3),
  });
}
// Six of each vendor's training images.
const perVendor = shownSubject.count / subject.count;
const bothVendors = new Float32Array(12 * size);
bothVendors.set(shownSubject.images.subarray(0, 6 * size), 0);
bothVendors.set(shownSubject.images.subarray(perVendor * size, (perVendor + 6) * size), 6 * size);
dreamRows.push({ label: "the subject", image: await row(bothVendors, 12) });
await book.figure(labelledRows(dreamRows), {
  caption: `The base and the two DreamBooth runs (with the prior, λ = 1, and without). Twelve ` +
    `of ${sampleCount} samples a row, "xk bear, twemoji" and "xk bear, noto" ` +
    `alternating (and "bear, …" likewise), the same x_T in every row (DDIM ${ddimSteps} steps, ` +
    `w = ${guidanceScale}).`,
});
await book.table(dreamTable, {
  caption: `Subject fidelity as the DreamBooth paper measures it, the mean cosine similarity of ` +
    `every sample's image embedding with every real drawing of the subject (its CLIP-I, here on ` +
    `the tiny CLIP's image tower, and, in place of its DINO, on the emoji classifier's ` +
    `features); the tiny CLIP's score of those samples against their prompt without the ` +
    `identifier ("bear, twemoji"), 100·max(cos, 0), for whether they still read as bears; ` +
    `and the class's drift: how much "bear" now looks like the subject (${sampleCount} ` +
    `samples each).`,
});
const [db0, dbPrior, dbNone] = models.map(([label]) => measuredDrift.get(label)!);
if (!quick) {
  if (!(dbPrior.fidelity > db0.fidelity + 0.3 && dbNone.fidelity > db0.fidelity + 0.3)) {
    throw new Error(
      `DreamBooth did not learn the subject: CLIP-I ${db0.fidelity} → ${dbPrior.fidelity}, ${dbNone.fidelity}`,
    );
  }
  if (!(dbPrior.drift < dbNone.drift)) {
    throw new Error(
      `prior preservation did not keep the class: CLIP-I to the subject ${dbPrior.drift} ` +
        `with, ${dbNone.drift} without`,
    );
  }
}

// %% [markdown]
// The base reads "xk bear" as what "xk" meant in its captions, Kosovo's flag: blue squares. Both
// fine-tunes learned the subject: "xk bear" now draws a brown bear with a body and a red or
// yellow bow, in each vendor's palette, and the similarity to the real drawings went from below
// zero to about 0.7 (checked: up by at least 0.3). Without the prior, "bear" drifted: its
// samples became teddies too (their similarity to the subject rose from about 0 to about 0.36),
// where with the prior "bear" still draws dark bear heads, not teddies (checked: less drift
// towards the subject with the prior than without). They are not the base's heads, though: the
// drift table below finds them far from the base's "bear" samples.
//
// The paper's prompt fidelity, CLIP-T, scores a sample against a prompt that describes it; the
// tiny CLIP has no word for this subject ("teddy" and "plush" appear in no training caption,
// being the held-out subject's) and the identifier means nothing to it, so the table scores the
// samples against their class prompt, "bear". That score fails here as a measure: the base's
// "xk bear" samples, Kosovo's flags, score highest of all (39.1), above the teddies (18–20). The
// tiny CLIP, trained on 3,462 captions, does not separate a bear from a flag by this prompt, and
// the chapter leaves prompt fidelity unmeasured rather than read it off this column.
//
// ## Textual inversion: a word for a concept
//
// Textual inversion changes nothing of the network. It adds one word $S_*$ ("ktn") to the text
// encoder's vocabulary and learns only its embedding $v$, from images of the concept and prompt
// templates ("ktn, twemoji", "ktn, face, noto", …):
//
// $$v_* = \arg\min_v \mathbb{E}_{x, \epsilon, t}\,\lVert \epsilon - \epsilon_\theta(x_t, t, \tau(y; S_* \mapsto v))\rVert^2 ,$$
//
// starting from an initializer word's embedding ("cat"). Everything else, every other row of
// the embedding table included, stays bit-identical (a test checks it), so the artefact is one
// vector of 128 numbers. diffusers' recipe (5e-4, 3000 steps of 4) is scaled to the 18 images:
// 600 steps of 8 at 5e-4.

// %%
const nearest = token.token.nearestWords(6);
await book.table(nearest.map((n) => ({ word: n.word, "cosine to v": n.cosine.toFixed(3) })), {
  caption: `The words of the tiny CLIP's vocabulary nearest the learned embedding v of "ktn" ` +
    `(it started at "cat", cosine 1).`,
});
const tiPrompts = ["ktn, twemoji", "ktn, noto", "cat, twemoji", "cat face, twemoji"];
const tiRows: { label: string; image: RgbaImage }[] = [];
const tiTable: Record<string, string>[] = [];
const conceptReference = {
  clip: await embed(clipImages, concept.images, concept.count),
  classifier: await embed(classifier, concept.images, concept.count),
};
const tiCount = book.pick({ quick: 16, full: 64 });
for (const prompt of tiPrompts) {
  const samples = await samplePrompts(base.model, base, token.token, Array(tiCount).fill(prompt), {
    seed: 9,
    steps: ddimSteps,
    guidanceScale,
  });
  tiRows.push({ label: `"${prompt}"`, image: await row(samples, 12) });
  tiTable.push({
    prompt,
    "CLIP-I to the cat faces": meanCosine(await embed(clipImages, samples), conceptReference.clip)
      .toFixed(3),
    "classifier cosine to the cat faces": meanCosine(
      await embed(classifier, samples),
      conceptReference.classifier,
    ).toFixed(3),
  });
  samples.dispose();
}
tiRows.push({ label: "the cat faces", image: await row(concept.images, 12) });
await book.figure(labelledRows(tiRows), {
  caption: `The learned word against the words the base has, the same x_T in every row ` +
    `(DDIM ${ddimSteps} steps, w = ${guidanceScale}).`,
});
const similarity = (prompt: string, column: string) =>
  Number(tiTable.find((r) => r.prompt === prompt)![column]);
if (!quick) {
  const columns = ["CLIP-I to the cat faces", "classifier cosine to the cat faces"];
  if (!columns.every((c) => similarity("ktn, twemoji", c) > similarity("cat, twemoji", c) + 0.1)) {
    throw new Error(`"ktn" is not closer to the cat faces than "cat": ${JSON.stringify(tiTable)}`);
  }
  if (nearest.some((n) => n.word === tokenSpec.initializer)) {
    throw new Error(`"ktn" is still nearest its initializer: ${JSON.stringify(nearest)}`);
  }
}
await book.table(tiTable, {
  caption: `How close ${tiCount} samples of each prompt are to the ${concept.count} real cat ` +
    `faces, by the mean cosine similarity of their embeddings.`,
});

// %% [markdown]
// Textual inversion is the weakest of the three here, and the measurements say how. The learned
// vector left "cat" far behind: its nearest words are unrelated ones, at cosines well below 1
// (checked: "cat" is not among them). It did learn: samples of "ktn" are much closer to the cat
// faces than samples of its initializer "cat" by both measures (checked). By eye they carry the
// concept's colours, orange and yellow, and little of its shape, and the words the model already
// has, composed ("cat face"), draw round yellow faces that the classifier's features place
// closer to the concept than either "ktn" prompt (0.572 against 0.481 and 0.551), while the tiny
// CLIP's image tower, which leans on colour, prefers "ktn".
// The frozen U-Net can only draw what some point of its conditioning space already makes it
// draw, and a 1.3 M-parameter network that learned from 3,000 captions has few such points; the
// method shines on large models whose conditioning space holds a new concept somewhere.

// %% [markdown]
// ## What each method costs the base
//
// A fine-tune should change what it was asked to change and nothing else. The measure of the
// rest is drift: the same prompts, the same noise, before and after, and the distance between
// the two sets of samples. The prompts are the class prompt ("bear, twemoji", "bear, noto") and
// unrelated prompts, captions of emoji the base trained on ("red apple, fruit, twemoji", …); the
// distance is KID on the classifier's features, with the base against a second draw of itself
// (other seeds) as the floor. Each fine-tune's sample starts from the same $x_T$ as a base sample
// and is paired with it, while KID's estimator assumes two independent sets: a pair's likeness
// pulls the rows below down a little, so they understate the drift, and the floor, drawn
// unpaired, is not quite their zero. Textual inversion needs no measurement: prompts without the new
// word read the same embedding rows and run the same frozen network, so their samples are the
// base's, bit for bit (checked below on a batch).

// %% {#tbl-drift}
const lexicon = await loadEmojiKeywords();
const emoji = await loadEmojiDataset({ size: 16 });
const driftCount = book.pick({ quick: 16, full: 128 });
const unrelatedPrompts = new Random(13).shuffle([...holdoutSplit(emoji.meta).train])
  .slice(0, driftCount).map((i) => caption(emoji.meta[i], lexicon));
const driftClassPrompts = classPrompts.slice(0, driftCount);
const driftOf = async (model: DiffusionModel, prompts: string[], seed: number) => {
  const images = await draw(model, prompts, seed);
  const e = await embed(classifier, images);
  images.dispose();
  return e;
};
const baseDrawn = {
  class: await driftOf(base.model, driftClassPrompts, 21),
  unrelated: await driftOf(base.model, unrelatedPrompts, 22),
};
const driftModels: [string, DiffusionModel][] = [
  ["base, a second draw (the floor)", base.model],
  ["LoRA r = 4, s = 1", r4],
  ["DreamBooth, prior λ = 1", withPrior.model],
  ["DreamBooth, no prior", dreamBooths.get("text16-dreambooth-teddy-noprior")!.model],
];
const driftTable: Record<string, string>[] = [];
const driftKid = new Map<string, { class: number; unrelated: number }>();
for (const [label, model] of driftModels) {
  const floor = model === base.model;
  const subsetSize = Math.min(100, driftCount);
  const ofClass = kid(
    await driftOf(model, driftClassPrompts, floor ? 31 : 21),
    baseDrawn.class,
    subsetSize,
  );
  const ofUnrelated = kid(
    await driftOf(model, unrelatedPrompts, floor ? 32 : 22),
    baseDrawn.unrelated,
    subsetSize,
  );
  driftKid.set(label, { class: ofClass.mean, unrelated: ofUnrelated.mean });
  driftTable.push({
    "fine-tune": label,
    "KID × 10³, class prompt": kidCell(ofClass),
    "KID × 10³, unrelated prompts": kidCell(ofUnrelated),
  });
}
// Textual inversion: the learned word's encoder on prompts without it, against the base's.
const probePrompts = unrelatedPrompts.slice(0, 8);
const viaToken = await samplePrompts(base.model, base, token.token, probePrompts, {
  seed: 41,
  steps: ddimSteps,
  guidanceScale,
});
const viaBase = await draw(base.model, probePrompts, 41);
const tiDifference = maxDifference(
  await viaToken.data() as Float32Array,
  await viaBase.data() as Float32Array,
);
tf.dispose([viaToken, viaBase]);
driftTable.push({
  "fine-tune": "textual inversion",
  "KID × 10³, class prompt": "0 (the same samples)",
  "KID × 10³, unrelated prompts": `0 (largest pixel difference ${tiDifference})`,
});
if (tiDifference !== 0) throw new Error(`textual inversion changed prompts without its word`);
await book.table(driftTable, {
  caption: `Drift: KID of ${driftCount} samples of each fine-tune against the base's samples of ` +
    `the same prompts and noise, for the class prompt and for ${driftCount} captions the base ` +
    `trained on (mean ± spread over ${kidOptions.subsets} subsets of ${
      Math.min(100, driftCount)
    }). KID is unbiased, so the floor can be below 0.`,
});
const priorKid = driftKid.get("DreamBooth, prior λ = 1")!;
const noPriorKid = driftKid.get("DreamBooth, no prior")!;
const loraKid = driftKid.get("LoRA r = 4, s = 1")!;
if (
  !quick &&
  !(priorKid.class < 0.5 * noPriorKid.class && priorKid.unrelated < noPriorKid.unrelated &&
    loraKid.unrelated > noPriorKid.unrelated)
) {
  throw new Error(`the drift table changed its story: ${JSON.stringify([...driftKid])}`);
}

// %% [markdown]
// Each method's price, measured (@tbl-drift). The LoRA at full strength moves every prompt, unrelated ones
// included, because a style is what it was trained to apply everywhere; at $s = 0$ it costs
// nothing. DreamBooth without the prior moves its class most of all,
// and unrelated prompts too: a full fine-tune on 20 images pulls the whole network towards them.
// The prior cuts the class's drift to under half (checked; 1,661 against 5,473) and keeps
// unrelated prompts closer to the base than either, though neither is at the floor: the class's
// samples with the prior are still farther from the base's than the LoRA's restyled ones, and
// 300 steps on a handful of images leave a trace in every prompt. Textual inversion moves nothing it was not asked to.
//
// ## What to use when
//
// | method | trains | stores | learns | costs the base |
// |---|---|---|---|---|
// | LoRA | a low-rank update of chosen layers | kB | a style, across every prompt | nothing at s = 0; at s = 1, every prompt's look |
// | DreamBooth | every weight | the whole network | one subject, bound to a word | the class's meaning, a third as much with the prior |
// | textual inversion | one word's embedding | one vector | what the frozen model can already draw | nothing |
//
// The three combine: diffusers trains DreamBooth *through* a LoRA (`train_dreambooth_lora.py`),
// which keeps the subject in an adapter of kilobytes instead of a copy of the network.

// %%
for (const lora of loras.values()) lora.model.dispose();
for (const db of dreamBooths.values()) db.model.dispose();
tf.dispose([probe.x, probe.t, probe.states]);
token.token.dispose();
token.clip.dispose();
clip.dispose();
base.model.dispose();
