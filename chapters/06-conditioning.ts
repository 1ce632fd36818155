// %% [markdown]
// # Conditioning: telling the model what to draw
//
// Every model so far draws whatever it likes: an emoji, from the whole distribution at once.
// Useful generators take an instruction. This chapter gives the denoiser one, a **condition**
// $c$, and trains it to model $p(x \mid c)$ instead of $p(x)$. The network becomes
// $\epsilon_\theta(x_t, t, c)$; the forward process, the loss and the samplers stay what chapters
// 1–5 made them.
//
// The condition here is the emoji's Unicode **category**, one of nine (smileys, people, animals,
// food, travel, activities, objects, symbols, flags). The chapter trains two networks on it, the
// book's U-Net with a class embedding and the DeepLearning.AI course's ContextUnet, and then turns
// the condition up with **classifier-free guidance** [@ho2022], measuring what that
// buys and what it costs with chapter 7's metrics. It ends with text: a tiny CLIP, trained here,
// whose text tower turns a caption into token states, and a U-Net that attends to them, asked
// for captions it trained on, names it never saw and combinations no emoji has.

// %% [setup]
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { CONDITIONING_HOLDOUTS, holdoutSplit } from "../lib/data/holdouts.ts";
import { caption, loadEmojiKeywords } from "../lib/data/captions.ts";
import { imageGrid, type RgbaImage, toRgbaImages } from "../lib/core/images.ts";
import { Random } from "../lib/core/random.ts";
import type { Conditioning, DiffusionModel } from "../lib/core/models/mod.ts";
import { DDIMScheduler, sample, type SampleGuidance } from "../lib/core/samplers/mod.ts";
import { guide, rescaleGuidance } from "../lib/core/guidance.ts";
import { addNoise } from "../lib/core/forward.ts";
import { labelledRows } from "../lib/book/layout.ts";
import { panelLines, type PanelPoint, qualityColumns } from "../lib/book/figures.ts";
import { heatmap, heatmapImage } from "../lib/book/heatmap.ts";
import { loadPretrained, type Pretrained } from "../lib/zoo/pretrained.ts";
import { loadClassifierArtefact } from "../lib/zoo/feature_networks.ts";
import { loadClipArtefact } from "../lib/zoo/clip_network.ts";
import { gatherRows } from "../lib/zoo/spec_data.ts";
import { embed, meanAndStd, measureSamples } from "../lib/metrics/mod.ts";

await selectBackend();
const quick = book.profile === "quick";
const dataset = await loadEmojiDataset({ size: 16 });
const split = holdoutSplit(dataset.meta);
const pixels = dataset.size * dataset.size * 3;
/** Short names of the nine categories, in label order. */
const names = dataset.categories.map((c) => c.split(/[ &]/)[0].toLowerCase());

// %% [markdown]
// ## What the conditional models never see
//
// A conditional model can be asked for things it was never shown, and the book wants to show
// what happens then, honestly. So every conditional model of the zoo keeps the same images out of
// training, named in one data spec (`lib/data/holdouts.ts`):
//
// - a tenth of the emoji **by identity** (both vendors' drawings of an emoji go together), whose
//   names the text prompts below ask for;
// - one whole subcategory, the **cat faces**, and one single emoji, the **teddy bear**, which the
//   fine-tuning chapter teaches a trained model later, without retraining it from scratch.

// %%
await book.table([
  { images: "training", count: split.train.length, "used for": "every conditional model" },
  {
    images: "held-out names",
    count: split.heldOutNames.length,
    "used for": `prompts never seen (${
      CONDITIONING_HOLDOUTS.heldOutNames.fraction * 100
    } % of identities)`,
  },
  {
    images: `subcategory "${CONDITIONING_HOLDOUTS.unseenSubcategory}"`,
    count: split.unseenSubcategory.length,
    "used for": "fine-tuning: a new concept",
  },
  {
    images: `subject ${CONDITIONING_HOLDOUTS.unseenSubject} (${
      dataset.meta[split.unseenSubject[0]].name.toLowerCase()
    })`,
    count: split.unseenSubject.length,
    "used for": "fine-tuning: one new subject",
  },
], { caption: `The ${dataset.count} emoji, split by what the conditional models may train on.` });

// %% [markdown]
// ## A class embedding
//
// The simplest condition is a class label $y \in \{0, \dots, K-1\}$. The book's U-Net already
// turns the timestep into a vector that every residual block adds to its features (chapter 3);
// a class is one more vector added to it:
//
// $$e = \mathrm{MLP}_t\big(\mathrm{PE}(t)\big) + \mathrm{MLP}_y\big(\mathrm{onehot}(y)\big).$$
//
// Every block sees $e$, so every block knows what it is drawing. Guidance (below) needs the same
// network to also model $p(x)$, with no label. That is one more "class", the **null class**
// $\varnothing$: a learned vector $c_\varnothing$ in place of $\mathrm{onehot}(y)$. Training
// replaces each sample's label by $\varnothing$ with probability $p_\text{uncond} = 0.15$, **per
// sample**, so that every batch teaches both $\epsilon_\theta(x_t, t, y)$ and
// $\epsilon_\theta(x_t, t, \varnothing)$. (A test, `tests/train_test.ts`, checks that
// $c_\varnothing$ stays at its initial zeros when nothing is dropped: the common bug of a guided
// model whose null never learns.)

// %%
await book.listing("lib/core/nn/embeddings.ts", "classContext", {
  caption: "The context vector of a batch of labels: one-hot, or c_∅ where the label is −1.",
});

// %% [markdown]
// The course's **ContextUnet** takes its condition differently: a context vector $c$ (one-hot
// here) passes through two small MLPs whose outputs **multiply** the features of the two
// upsampling stages, $h \leftarrow \mathrm{MLP}_c(c) \odot h + \mathrm{MLP}_t(t)$, and its
// "context mask" zeroes $c$ with probability 0.1. It trains the course's way: the linear schedule
// with $T = 500$, Adam with a linearly decaying rate, and no EMA. Both networks are zoo models
// (`deno task train class16-unet`, `deno task train context16-unet`), trained for the same wall
// time on the same images.

// %%
const classModel = await loadPretrained("class16-unet", { profile: book.profile });
const courseModel = await loadPretrained("context16-unet", { profile: book.profile });
const trainingRow = (p: Pretrained) => {
  const seconds = p.manifest.training.reduce((s, t) => s + t.seconds, 0);
  return {
    model: p.spec.name,
    parameters: p.manifest.parameters.toLocaleString("en"),
    schedule: `${p.schedule.name}, T = ${p.schedule.T}`,
    steps: `${p.manifest.steps.toLocaleString("en")} × ${p.manifest.batchSize}`,
    "training time": `${(seconds / 60).toFixed(1)} min`,
    where: p.manifest.training.map((t) => t.where).join(", "),
  };
};
await book.table([trainingRow(classModel), trainingRow(courseModel)], {
  caption: `Both class-conditional networks, trained on the ${split.train.length} training ` +
    "images (a CPU shared with other work makes a run slower, never faster).",
  measuredColumns: ["training time", "where"],
});

// %% [markdown]
// ## One network, nine classes
//
// The same eight noise images $x_T$, sampled under each of the nine labels with DDIM (50 steps,
// $\eta = 0$, so that the only difference between the rows is the label) and guidance $s = 3$
// (explained in the next section). A column is one starting point: what changes along it is
// what the label decides.

// %%
const ddim = (p: Pretrained) => new DDIMScheduler(p.schedule, { predictionType: p.predictionType });
const seeds = 8;
const noise = (n: number, seed: number) =>
  tf.tensor4d(new Random(seed).normals(n * pixels), [n, 16, 16, 3]);
const xT = noise(seeds, 6);

/** The null class of n samples, y = −1. */
const noLabel = (n: number): Conditioning => ({
  classLabels: tf.fill([n], -1, "int32") as tf.Tensor1D,
});

/**
 * Sample `rows` from the same x_T, each row under its own conditioning, guided at `scale`
 * towards it from `nullCondition`; a row's `reference` image [1, 16, 16, 3] goes first.
 */
async function conditionRows(
  p: Pretrained,
  rows: { label: string; conditioning: (n: number) => Conditioning; reference?: tf.Tensor4D }[],
  scale: number,
  nullCondition = noLabel,
): Promise<{ label: string; image: RgbaImage }[]> {
  const out = [];
  for (const row of rows) {
    const conditioning = row.conditioning(seeds);
    const unconditional = nullCondition(seeds);
    const { images } = await sample(p.model, ddim(p), {
      shape: [seeds, 16, 16, 3],
      xT,
      steps: 50,
      conditioning,
      guidance: scale === 1 ? undefined : { scale, unconditional },
    });
    const cells = await toRgbaImages(images);
    if (row.reference) cells.unshift(...await toRgbaImages(row.reference));
    out.push({
      label: row.label,
      image: imageGrid(cells, { columns: cells.length, scale: 3, padding: 2 }),
    });
    tf.dispose([images, ...Object.values(conditioning), ...Object.values(unconditional)]);
  }
  return out;
}
const labels = (k: number) => (n: number) => ({
  classLabels: tf.fill([n], k, "int32") as tf.Tensor1D,
});
const classRows = names.map((name, k) => ({ label: name, conditioning: labels(k) }));
await book.figure(labelledRows(await conditionRows(classModel, classRows, 3)), {
  caption: "class16-unet: one row per category, the same eight x_T in every row (DDIM, 50 " +
    "steps, s = 3).",
});

// %% [markdown]
// ## Classifier-free guidance
//
// Sampling with $\epsilon_\theta(x_t, t, y)$ alone follows the model's $p(x \mid y)$, and a small
// model's is broad: many of its samples of one class could pass for another's (@tbl-guidance
// counts how many). Classifier-free guidance sharpens it by stepping further in the direction
// the label pushes. With the same
// network run twice, with the label and with $\varnothing$,
//
// $$\tilde\epsilon = \epsilon_\theta(x_t, \varnothing) + s\,\big(\epsilon_\theta(x_t, y) - \epsilon_\theta(x_t, \varnothing)\big).$$
//
// This is **diffusers' scale $s$**, and every number in this book uses it: $s = 0$ is the
// unconditional model, $s = 1$ the conditional one, $s > 1$ guidance. Ho & Salimans write the
// same thing as $\tilde\epsilon = (1 + w)\,\epsilon_\theta(x_t, y) - w\,\epsilon_\theta(x_t, \varnothing)$,
// so their $w$ is $s - 1$ (their $w = 0$ is our $s = 1$). Since $\epsilon_\theta = -\sigma_t \nabla_x
// \log p_t$, $\tilde\epsilon$ is $-\sigma_t$ times the score of $p(x)\,p(y \mid x)^{s}$: the
// model's own implicit classifier $p(y \mid x) \propto p(x \mid y)/p(x)$, raised to the power $s$. The library runs both
// halves in **one batched call** ($[x_t; x_t]$ with $[y; \varnothing]$), for every sampler.

// %%
await book.listing("lib/core/guidance.ts", "guide", {
  caption: "The guidance formula, exact at s = 0 and s = 1 (lib/core/guidance.ts).",
});

// %% [markdown]
// The strip below holds everything fixed but $s$: one $x_T$, one column per category.

// %%
const strip = [0, 1, 2, 3, 5, 7];
const everyClass = { classLabels: tf.tensor1d(names.map((_, k) => k), "int32") };
const noClass = { classLabels: tf.fill([names.length], -1, "int32") as tf.Tensor1D };
const stripNoise = tf.tile(noise(1, 11), [names.length, 1, 1, 1]) as tf.Tensor4D;
const stripRows = [];
for (const scale of strip) {
  const { images } = await sample(classModel.model, ddim(classModel), {
    shape: [names.length, 16, 16, 3],
    xT: stripNoise,
    steps: 50,
    conditioning: everyClass,
    guidance: { scale, unconditional: noClass },
  });
  stripRows.push({
    label: `s = ${scale}`,
    image: imageGrid(await toRgbaImages(images), { columns: names.length, scale: 3, padding: 2 }),
  });
  images.dispose();
}
await book.figure(labelledRows(stripRows), {
  caption: `One x_T under the nine labels (${names.join(", ")}), guided at s = ` +
    `${strip.join(", ")}. s = 0 ignores the label, so its row is nine copies of one image.`,
});

// %% [markdown]
// ### The trade-off, measured
//
// What guidance is said to do: samples look more like their class (accuracy up) and less like
// each other (diversity, and with it recall, down), so that the distance to the real images (FID)
// is best at a small $s$ and worse beyond. The chapter measures it. For each $s$ it draws the
// same samples (the same seeds, the same labels) and scores them with chapter 7's classifier and
// metrics against the training images. The labels are drawn as often as the training set has
// them (there are 4.6 times as many people as activities), so that at $s = 1$ a perfect model's
// samples would have the training set's distribution, and FID measures the model rather than a
// mismatch of class frequencies. **Accuracy** is how often the classifier names the category a
// sample was asked for; FID, KID, precision and recall are as in chapter 7, on its 128-d
// features. The prose above is checked below against these numbers.

// %% {#tbl-guidance}
const { classifier, categories, manifest: classifierManifest } = await loadClassifierArtefact({
  profile: book.profile,
});
const heldOutAccuracy = classifierManifest.heldOutAccuracy!.category;
if (categories.join() !== dataset.categories.join()) {
  throw new Error("the classifier's categories are not the dataset's: retrain emoji-classifier");
}
const trainingPixels = gatherRows(dataset.images, pixels, split.train);
const realSaturation = trainingPixels.reduce((n, v) => n + (Math.abs(v) > 0.98 ? 1 : 0), 0) /
  trainingPixels.length;
const reference = await embed(classifier, trainingPixels, split.train.length);
const count = book.pick({ quick: 72, full: 360 });
const measureSteps = book.pick({ quick: 10, full: 25 });
/** The label of sample i: the labels of `count` training images in a seeded random order. */
const sampleLabels = new Random(3).shuffle(split.train.slice()).slice(0, count)
  .map((i) => dataset.labels[i]);

/** How often the classifier's most probable category (rows of `posteriors`) is `asked`'s. */
function accuracyOf(posteriors: Float32Array, asked: readonly number[]): number {
  const classes = posteriors.length / asked.length;
  let correct = 0;
  asked.forEach((label, i) => {
    const row = posteriors.subarray(i * classes, (i + 1) * classes);
    if (row.indexOf(Math.max(...row)) === label) correct++;
  });
  return correct / asked.length;
}

/** N samples of `p` under `sampleLabels`, guided at `scale`, with their accuracy on the label. */
async function measureGuided(p: Pretrained, scale: number, rescale = 0) {
  const measured = await measureSamples(classifier, reference, p.model, ddim(p), {
    count,
    imageSize: 16,
    steps: measureSteps,
    seed: 2000,
    kidSubsets: 20,
    condition: (start, n): { conditioning: Conditioning; guidance: SampleGuidance } => ({
      conditioning: {
        classLabels: tf.tensor1d(sampleLabels.slice(start, start + n), "int32"),
      },
      guidance: {
        scale,
        rescale,
        unconditional: noLabel(n),
      },
    }),
  });
  const accuracy = accuracyOf(measured.embedding.posteriors, sampleLabels);
  // Pixels at the edge of the data range, |x| > 0.98: what over-saturated colours are made of.
  const saturated = measured.images.reduce((n, v) => n + (Math.abs(v) > 0.98 ? 1 : 0), 0);
  return {
    scale,
    ...measured,
    accuracy,
    saturation: saturated / measured.images.length,
  };
}

type GuidedMeasurement = Awaited<ReturnType<typeof measureGuided>>;
/** A table row of a measurement: accuracy, FID, KID, precision, recall. */
const measuredRow = (r: GuidedMeasurement) => ({
  "class accuracy": `${(100 * r.accuracy).toFixed(1)} %`,
  ...qualityColumns(r.quality),
  "saturated pixels": `${(100 * r.saturation).toFixed(1)} %`,
});
const tradeOff: GuidedMeasurement[] = [];
for (const scale of strip) tradeOff.push(await measureGuided(classModel, scale));
await book.table(
  tradeOff.map((r) => ({ s: r.scale, ...measuredRow(r) })),
  {
    caption: `class16-unet under guidance: ${count} samples per scale (DDIM ` +
      `${measureSteps} steps, the same seeds and labels at every s) against the ` +
      `${split.train.length} training images; accuracy by the emoji classifier, whose own ` +
      `held-out accuracy on real emoji is ${(100 * heldOutAccuracy).toFixed(1)} %.`,
  },
);
const points: PanelPoint[] = tradeOff.flatMap((r) => [
  { x: r.scale, value: 100 * r.accuracy, panel: "class accuracy (%)" },
  { x: r.scale, value: r.quality.fid, panel: "FID" },
  { x: r.scale, value: r.quality.precision, panel: "precision and recall", series: "precision" },
  { x: r.scale, value: r.quality.recall, panel: "precision and recall", series: "recall" },
]);
// One figure each: accuracy, FID and precision/recall have scales of their own.
const panels = [
  [
    "class accuracy (%)",
    "What guidance buys: how often a sample is of the class it was asked for.",
  ],
  ["FID", "The distance of the samples' features to the training images': best at a small s."],
  ["precision and recall", "What it costs: recall, the share of real images a sample lies near."],
];
for (const [panel, caption] of panels) {
  await book.figure(
    panelLines(points.filter((p) => p.panel === panel), {
      xLabel: "guidance scale s (diffusers')",
      height: 200,
    }),
    { caption: `${caption} From the table above.` },
  );
}

// The claims of this section, checked against the run (the quick profile's models are too
// small to show them).
const at = (s: number) => tradeOff.find((r) => r.scale === s)!;
const best = tradeOff.reduce((a, b) => (b.quality.fid < a.quality.fid ? b : a));
const claims = {
  "accuracy rises from s = 1 to s = 7": at(7).accuracy > at(1).accuracy,
  "recall falls from s = 1 to s = 7": at(7).quality.recall < at(1).quality.recall,
  "FID is best at a small s (1 to 3)": best.scale >= 1 && best.scale <= 3,
};
await book.table(
  Object.entries(claims).map(([claim, holds]) => ({
    claim,
    "in this run": holds ? "holds" : "FAILS",
  })),
  { caption: `The section's claims against its own numbers (FID is best at s = ${best.scale}).` },
);
if (!quick && Object.values(claims).some((holds) => !holds)) {
  throw new Error(`a claim of the guidance section fails in this run: ${JSON.stringify(claims)}`);
}

// %% [markdown]
// The shape is the one the papers report, at emoji scale: the label is obeyed more and more
// often as $s$ grows, while the samples crowd into fewer, more typical images of each class, so
// that recall (the share of real images with a sample near them) falls. FID weighs both, and its
// best is where the gain in fidelity stops paying for the loss in spread.
//
// ### Guidance rescale
//
// Large scales also inflate the prediction itself: $\tilde\epsilon$ is an extrapolation, so its
// standard deviation grows with $s$ beyond that of a real noise prediction. @lin2023
// found this over-exposes images; **guidance rescale** brings $\tilde\epsilon$ back to the
// standard deviation of the conditional prediction and blends,
// $\epsilon = \phi\,\tilde\epsilon\,\sigma_c/\sigma_{\tilde\epsilon} + (1 - \phi)\,\tilde\epsilon$,
// with $\phi = 0.7$ in diffusers. How much there is to undo here, measured on 64 training images
// noised to $t = 500$, each under its own label:

// %%
const probeIndices = split.train.filter((_, j) => j % 54 === 0).slice(0, 64);
const probe = tf.tidy(() => {
  const x0 = tf.tensor4d(gatherRows(dataset.images, pixels, probeIndices), [64, 16, 16, 3]);
  const xt = addNoise(x0, noise(64, 21), 500, classModel.schedule);
  const t = tf.fill([64], 500) as tf.Tensor1D;
  const y = tf.tensor1d(probeIndices.map((i) => dataset.labels[i]), "int32");
  const c = classModel.model.apply(xt, t, { classLabels: y });
  const u = classModel.model.apply(xt, t, { classLabels: tf.fill([64], -1, "int32") });
  const std = (e: tf.Tensor) => tf.moments(e).variance.sqrt().dataSync()[0];
  const sigmaC = std(c);
  const rows = strip.map((scale) => ({
    s: scale,
    "σ(ε̃) / σ(ε_c)": (std(guide(c, u, scale)) / sigmaC).toFixed(3),
    "with φ = 0.7": (std(rescaleGuidance(guide(c, u, scale), c, 0.7)) / sigmaC).toFixed(3),
  }));
  return rows;
});
await book.table(probe, {
  caption: "The spread of the guided prediction against the conditional one's, by scale, plain " +
    "and rescaled (64 training images at t = 500).",
});
// The prose below: the spread grows with s, by a few per cent at s = 7, and rescale shrinks it.
const spread = probe.map((r) => Number(r["σ(ε̃) / σ(ε_c)"]));
const growth = spread.at(-1)!;
const growsWithS = spread.slice(1).every((v, i) => v >= spread[i]);
const shrunk = Number(probe.at(-1)!["with φ = 0.7"]) < growth;
if (!quick && !(growsWithS && growth > 1 && growth < 1.1 && shrunk)) {
  throw new Error(`the spread of ε̃ is ${spread.join(", ")} by scale: not what the prose says`);
}

// %% [markdown]
// The spread grows with $s$, but at this model's scale only by a few per cent at $s = 7$: its
// conditional and unconditional predictions have almost the same spread, so rescale has little to
// take back. In the samples the book's sampler also clips $\hat x_0$ to $[-1, 1]$ at every step
// (chapter 5), which keeps pixel values in range whatever $s$: the "saturated pixels" column of the
// trade-off (the share beyond ±0.98, for real emoji mostly their white background) shows what
// reaches the images. The effect of rescale on the samples themselves, at $s = 7$ on the same
// seeds:

// %%
const rescaled = await measureGuided(classModel, 7, 0.7);
await book.table([
  { "s = 7": "φ = 0 (plain guidance)", ...measuredRow(at(7)) },
  { "s = 7": "φ = 0.7", ...measuredRow(rescaled) },
], {
  caption: `Guidance rescale at s = 7, the same ${count} seeds and labels; the real training ` +
    `images have ${(100 * realSaturation).toFixed(1)} % saturated pixels.`,
});

// %% [markdown]
// ## The course's ContextUnet beside it
//
// The course's network takes a context *vector*, so it can be given things no training image
// had: a **mixture** of classes, $c = 0.6\,\mathrm{onehot}(\text{food}) + 0.4\,\mathrm{onehot}(\text{animals})$,
// the course's trick for blending concepts. Below, the same eight $x_T$ for two pure contexts and
// two mixtures (no guidance, $s = 1$).

// %%
const k = (name: string) => names.indexOf(name);
const mix = (parts: [string, number][]) => (n: number) => {
  const c = new Float32Array(names.length);
  for (const [name, weight] of parts) c[k(name)] = weight;
  return { context: tf.tile(tf.tensor2d(c, [1, names.length]), [n, 1]) as tf.Tensor2D };
};
await book.figure(
  labelledRows(
    await conditionRows(courseModel, [
      { label: "food", conditioning: mix([["food", 1]]) },
      { label: "animals", conditioning: mix([["animals", 1]]) },
      { label: "0.6 food + 0.4 animals", conditioning: mix([["food", 0.6], ["animals", 0.4]]) },
      { label: "0.5 smileys + 0.5 flags", conditioning: mix([["smileys", 0.5], ["flags", 0.5]]) },
    ], 1),
  ),
  { caption: "context16-unet (the course's ContextUnet) under pure and mixed contexts, s = 1." },
);

// %% [markdown]
// After the same half hour as the class model, the course's network follows its context far less
// (@tbl-context-vs-class counts how often): its rows, mixtures included, share most of their picture
// with each other. The course trains it for 32 epochs of 89,400 sprites; the mixture trick needs
// a network that has learned what each pure context means first.

// %% [markdown]
// At equal training time, the two networks against each other, unguided and at the scale the
// class model's FID liked best:

// %% {#tbl-context-vs-class}
const comparison = [];
for (const scale of new Set([1, best.scale])) {
  comparison.push({ p: classModel, r: scale === 1 ? at(1) : best });
  comparison.push({ p: courseModel, r: await measureGuided(courseModel, scale) });
}
await book.table(
  comparison.map(({ p, r }) => ({ model: p.spec.name, s: r.scale, ...measuredRow(r) })),
  {
    caption: `The two class-conditional networks after the same training time, ${count} ` +
      `samples each (DDIM ${measureSteps} steps, the same seeds).`,
  },
);
// The prose: at equal time the book's network is ahead on class accuracy, FID and recall.
for (let i = 0; i < comparison.length; i += 2) {
  const [ours, course] = [comparison[i].r, comparison[i + 1].r];
  const ahead = ours.accuracy > course.accuracy && ours.quality.fid < course.quality.fid &&
    ours.quality.recall > course.quality.recall;
  if (!quick && !ahead) throw new Error(`at s = ${ours.scale} the ContextUnet is not behind`);
}

// %% [markdown]
// At equal wall time the book's network is ahead on class accuracy, FID and recall at both
// scales. Part of that is speed: it takes 6,000 steps in the time the course's network takes
// 2,100 (the appendix's benchmark times both networks). Part is the recipe: the EMA of the
// weights and the cosine schedule.

// %% [markdown]
// ## Text: a tiny CLIP
//
// A class is a closed list. A prompt is open: "red apple, fruit, noto" names an emoji, its
// keywords and its drawing style. To condition on text, the network needs the text as numbers
// that mean something about images, and the standard source is CLIP [@radford2021]: an
// image encoder and a text encoder trained together so that an image and its caption land on the
// same point of a shared space. Its text encoder's **token states**, one vector per word, are what
// a text-conditional U-Net attends to.
//
// The book trains its own (`deno task train tiny-clip`). The captions are the emoji's CLDR name
// and keywords from emojilib (MIT) and the image set as a style word; the tokenizer
// (`lib/core/tokenizer.ts`) is word-level over the training captions, so a word it never saw
// becomes `[UNK]`. The image tower is the classifier's CNN; the text tower a two-block
// transformer over the tokens, pooled at the end-of-text token. Both map to a 128-d space, and
// the loss is CLIP's symmetric InfoNCE over a batch of $B$ pairs, with a learned temperature
// $\tau$: with $S_{ij} = \cos(f(x_i), g(t_j))/\tau$,
//
// $$\mathcal{L} = \tfrac{1}{2}\Big(\mathrm{CE}(S, I) + \mathrm{CE}(S^\top, I)\Big),$$
//
// the cross-entropy of picking each image's own caption among the batch's, and each caption's
// own image.

// %%
const { clip, tokenizer, manifest: clipManifest } = await loadClipArtefact(
  "tiny-clip",
  book.profile,
);
const r = clipManifest.heldOutRetrieval!;
const percent = (v: number) => `${(100 * v).toFixed(1)} %`;
await book.table([
  {
    direction: "image → text",
    "top-1": percent(r.imageToTextTop1),
    "top-5": percent(r.imageToTextTop5),
    "chance top-1": percent(r.chanceTop1),
    "chance top-5": percent(r.chanceTop5),
  },
  {
    direction: "text → image",
    "top-1": percent(r.textToImageTop1),
    "top-5": percent(r.textToImageTop5),
    "chance top-1": percent(r.chanceTop1),
    "chance top-5": percent(r.chanceTop5),
  },
], {
  caption: `The tiny CLIP (${clipManifest.parameters.toLocaleString("en")} parameters, ` +
    `${clipManifest.steps.toLocaleString("en")} steps of ${clipManifest.batchSize} pairs in ` +
    `${(clipManifest.training.reduce((s, t) => s + t.seconds, 0) / 60).toFixed(1)} min on ` +
    `${clipManifest.training.map((t) => t.where).join(", ")}) retrieving among the ` +
    `${split.heldOutNames.length} held-out emoji, which it never trained on.`,
});

// %% [markdown]
// Retrieval among 330 emoji it never saw is far above chance, and far from perfect: many
// held-out captions share their keywords with others ("face", "hand"). The similarity matrix
// of sixteen held-out emoji (Twitter's drawings) against their own captions shows where it is
// sure: the diagonal is the right pairing.

// %%
const lexicon = await loadEmojiKeywords();
const shownHeldOut = split.heldOutNames.filter((i) => dataset.meta[i].vendor === "twitter")
  .filter((_, j, all) => j % Math.max(1, Math.floor(all.length / 16)) === 0).slice(0, 16);
const shownCaptions = shownHeldOut.map((i) => caption(dataset.meta[i], lexicon));
/** Token ids [N, L] of prompts, as the tiny CLIP reads them. */
const promptIds = (prompts: readonly string[]) =>
  tf.tensor2d(tokenizer.encodeBatch(prompts), [prompts.length, tokenizer.contextLength], "int32");
const cosines = tf.tidy(() =>
  clip.cosines(dataset.toTensor(shownHeldOut), promptIds(shownCaptions))
);
const similarity = await cosines.data();
cosines.dispose();
const m = shownHeldOut.length;
await book.images(await toRgbaImages(dataset.toTensor(shownHeldOut)), {
  columns: m,
  scale: 3,
  caption: "The sixteen held-out emoji of the matrix, in its row order.",
});
await book.figure({
  width: 520,
  height: 440,
  marginLeft: 40,
  marginTop: 40,
  x: { label: "caption", ticks: [] },
  y: { label: "image", reverse: true, ticks: [] },
  marks: heatmap(similarity, {
    rows: m,
    columns: m,
    x: [0, m],
    y: [0, m],
    domain: [-1, 1],
    label: "cosine similarity",
  }),
}, {
  caption: `Cosine similarity of image i (row) and caption j (column): ${
    shownCaptions.slice(0, 4).map((c) => `"${c}"`).join(", ")
  }, … The diagonal pairs each emoji with its own caption.`,
});

// %% [markdown]
// ## Text to image
//
// The third network of the chapter, **text16-unet**, reads a caption. It is the book's U-Net
// with **cross-attention** after the residual blocks at 8×8 and 4×4 and in the middle
// [@rombach2022]. The tiny CLIP's text tower, frozen, turns a prompt $y$ into token states
// $\tau(y) \in \mathbb{R}^{L \times d}$, one row per token (BOS, the words, EOS and padding, to
// $L = 16$). At each of those places every pixel's features $h_i$ ask the tokens a question:
//
// $$\mathrm{CrossAttn}(h, \tau(y)) = h + \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt{d_k}}\Big) V\, W_O,$$
//
// $$Q = \mathrm{GN}(h)\, W_Q,\quad K = \tau(y)\, W_K,\quad V = \tau(y)\, W_V.$$
//
// Row $i$ of the softmax is how pixel $i$ spreads its attention over the tokens; the maps at the
// end of this section draw it. The null condition is the **empty prompt**: training replaces a
// caption's states with those of "" for one sample in ten, so classifier-free guidance works as
// above, with $\varnothing$ = "". The captions are the training images' own, three keywords each
// ("red apple, fruit, noto"), and the held-out names are never among them.

// %%
await book.listing("lib/core/nn/attention.ts", "Attention", {
  caption: "Self- and cross-attention in one layer: the context tokens, when given, supply the " +
    "keys and values (lib/core/nn/attention.ts).",
});
const textModel = await loadPretrained("text16-unet", { profile: book.profile });
await book.table([trainingRow(textModel)], {
  caption: `text16-unet, trained on the captions of the ${split.train.length} training images ` +
    "(its parameter count leaves out the frozen text tower).",
  measuredColumns: ["training time", "where"],
});

/** τ(y) [N, L, d]: the token states of `prompts` from the tiny CLIP's frozen text tower. */
const promptStates = (prompts: readonly string[]) =>
  tf.tidy(() => clip.text.encode(promptIds(prompts)).states);
/** The conditioning of n samples of one prompt. */
const prompted = (prompt: string) => (n: number): Conditioning => ({
  encoderHiddenStates: promptStates(Array(n).fill(prompt)),
});
/** The null condition of n samples: the empty prompt's token states. */
const emptyPrompt = prompted("");

// %% [markdown]
// Three kinds of prompt, each on the same eight $x_T$ at $s = 3$: captions the network trained
// on, the captions of held-out emoji (their names were never in a training caption, though most
// of their words were), and new combinations of known words that no emoji has. The first column
// is the real emoji of the caption, blank for the new combinations.

// %%
const textConditioning = textModel.spec.conditioning;
if (textConditioning?.kind !== "text") {
  throw new Error("text16-unet's spec is not conditioned on text");
}
const captionOf = (i: number) => caption(dataset.meta[i], lexicon, textConditioning.keywords);
const shownCategories = ["smileys", "animals", "food", "travel"].map(k);
/** One image of each shown category from `pool`, in a seeded order. */
const perCategory = (pool: number[], seed: number) => {
  const order = new Random(seed).shuffle(pool.slice());
  return shownCategories.map((c) => order.find((i) => dataset.labels[i] === c)!);
};
const newCombinations = ["blue apple", "green heart, noto", "red car, twemoji", "purple star"];
for (const prompt of newCombinations) {
  const unknown = tokenizer.encode(prompt).unknown;
  if (unknown.length > 0) throw new Error(`"${prompt}" has words the tokenizer lacks: ${unknown}`);
}
const white = tf.ones([1, 16, 16, 3]) as tf.Tensor4D;
const promptGroups = [
  { group: "training captions", images: perCategory(split.train, 7) },
  { group: "held-out names", images: perCategory(split.heldOutNames, 7) },
].map(({ group, images }) => ({ group, prompts: images.map(captionOf), images }));
const short = (prompt: string) => prompt.length > 25 ? `${prompt.slice(0, 24)}…` : prompt;
for (
  const { group, prompts, images } of [
    ...promptGroups,
    { group: "new combinations", prompts: newCombinations, images: [] as number[] },
  ]
) {
  const rows = prompts.map((prompt, j) => ({
    label: short(prompt),
    conditioning: prompted(prompt),
    reference: images.length > 0 ? dataset.toTensor([images[j]]) : white,
  }));
  await book.figure(labelledRows(await conditionRows(textModel, rows, 3, emptyPrompt)), {
    caption: `text16-unet on ${group} (DDIM 50, s = 3): ` +
      prompts.map((p) => `"${p}"`).join("; ") + ".",
  });
  rows.forEach((row) => row.reference !== white && row.reference.dispose());
}
white.dispose();

// %% [markdown]
// The training captions come out as their emoji. The held-out names come out as what their words
// suggest: a yellow face for "face holding back tears", though not that face; a brown animal-ish
// blob for the goat; a red and green fruit for the strawberry. The network has never seen those
// emoji drawn, only their words in other captions. The new combinations keep their colour word:
// the apple is blue and the heart green, and the heart is even heart-shaped, while the car is a
// red disc and the star a purple tile.
//
// ### CLIP score against the scale
//
// How well a sample matches its prompt is measured, as in the text-to-image papers, by the
// **CLIP score** $100 \cdot \max(\cos(f(x), g(y)), 0)$: the cosine of the image's and the
// prompt's CLIP embeddings. The judge here is the same tiny CLIP whose text tower the network
// reads (the papers use a far larger CLIP than the generator's), so the score says whether the
// samples land where that CLIP puts the prompt. A second judge knows nothing of text: chapter 7's
// classifier, asked whether the sample is of the category of the prompt's emoji (for the new
// combinations, of the object word: apple → food, heart → smileys, car → travel, star →
// travel, where Unicode files them). Each kind of prompt is scored on the same number of
// prompts, one sample each, on the same seeds at every $s$.

// %%
const scoreCount = book.pick({ quick: 16, full: 64 });
const combinationCategories = ["food", "smileys", "travel", "travel"].map(k);
/** The colour words of the new combinations, as RGB in [−1, 1]. */
const COLOURS: Record<string, [number, number, number]> = {
  blue: [-1, -1, 1],
  green: [-1, 1, -1],
  red: [1, -1, -1],
  purple: [0.2, -0.6, 1],
};
const colourWords = Object.keys(COLOURS);
/**
 * How often a sample's mean colour (over its pixels that are not near white, any channel below
 * 0.8) is nearer to its prompt's colour word than to the other three: chance is 1 in 4.
 */
function colourObeyed(pixels: Float32Array, prompts: readonly string[]): number {
  let obeyed = 0;
  prompts.forEach((prompt, i) => {
    const mean = [0, 0, 0];
    let n = 0;
    for (let p = i * 256; p < (i + 1) * 256; p++) {
      const rgb = pixels.subarray(3 * p, 3 * p + 3);
      if (Math.min(...rgb) >= 0.8) continue;
      rgb.forEach((v, c) => mean[c] += v);
      n++;
    }
    const distance = (word: string) =>
      COLOURS[word].reduce((d, v, c) => d + (v - mean[c] / Math.max(n, 1)) ** 2, 0);
    const nearest = colourWords.reduce((a, b) => (distance(b) < distance(a) ? b : a));
    if (prompt.startsWith(nearest)) obeyed++;
  });
  return obeyed / prompts.length;
}
const scoredGroups = [
  { group: "training captions", images: new Random(8).shuffle(split.train.slice()) },
  { group: "held-out names", images: new Random(8).shuffle(split.heldOutNames.slice()) },
].map(({ group, images }) => {
  const chosen = images.slice(0, scoreCount);
  return {
    group,
    prompts: chosen.map(captionOf),
    categories: chosen.map((i) => dataset.labels[i]),
    images: chosen,
  };
});
scoredGroups.push({
  group: "new combinations",
  prompts: Array.from({ length: scoreCount }, (_, j) => newCombinations[j % 4]),
  categories: Array.from({ length: scoreCount }, (_, j) => combinationCategories[j % 4]),
  images: [],
});
/** The mean CLIP score of images [N, 16, 16, 3] with their prompts, and its standard error. */
async function meanClipScore(images: tf.Tensor4D, prompts: readonly string[]) {
  const scores = tf.tidy(() => clip.clipScore(images, promptIds(prompts)));
  const values = Array.from(await scores.data());
  scores.dispose();
  const { mean, std } = meanAndStd(values);
  return { mean, stderr: std / Math.sqrt(values.length - 1) };
}
const textScores: {
  group: string;
  scale: number;
  score: { mean: number; stderr: number };
  accuracy: number;
  colour: number | null;
}[] = [];
for (const { group, prompts, categories: asked } of scoredGroups) {
  const conditioning = { encoderHiddenStates: promptStates(prompts) };
  const unconditional = emptyPrompt(prompts.length);
  for (const scale of strip) {
    const { images } = await sample(textModel.model, ddim(textModel), {
      shape: [prompts.length, 16, 16, 3],
      seed: 3000,
      steps: measureSteps,
      conditioning,
      guidance: { scale, unconditional },
    });
    const score = await meanClipScore(images, prompts);
    const { posteriors } = await embed(classifier, images);
    const colour = group === "new combinations"
      ? colourObeyed(await images.data() as Float32Array, prompts)
      : null;
    images.dispose();
    textScores.push({ group, scale, score, accuracy: accuracyOf(posteriors, asked), colour });
  }
  tf.dispose([conditioning.encoderHiddenStates, unconditional.encoderHiddenStates!]);
}
const realScores = [];
for (const { group, prompts, images } of scoredGroups.filter((g) => g.images.length > 0)) {
  const x = dataset.toTensor(images);
  const rolled = prompts.map((_, j) => prompts[(j + 1) % prompts.length]);
  realScores.push({
    group,
    own: await meanClipScore(x, prompts),
    other: await meanClipScore(x, rolled),
  });
  x.dispose();
}
const scoreText = (s: { mean: number; stderr: number }) =>
  `${s.mean.toFixed(1)} ± ${s.stderr.toFixed(1)}`;
await book.table(
  textScores.map((r) => ({
    prompts: r.group,
    s: r.scale,
    "CLIP score": scoreText(r.score),
    "category accuracy": `${(100 * r.accuracy).toFixed(1)} %`,
    "colour word obeyed": r.colour === null ? "" : `${(100 * r.colour).toFixed(1)} %`,
  })),
  {
    caption: `text16-unet's samples against their prompts: ${scoreCount} prompts of each kind, ` +
      `one sample each (DDIM ${measureSteps} steps, the same seeds at every s); ± one ` +
      "standard error. For reference, the real images score " +
      realScores.map((r) =>
        `${scoreText(r.own)} with their own captions and ${
          scoreText(r.other)
        } with another's (${r.group})`
      ).join("; ") + ".",
  },
);
await book.figure(
  panelLines(
    textScores.flatMap((r) => [
      { x: r.scale, value: r.score.mean, panel: "CLIP score", series: r.group },
      { x: r.scale, value: 100 * r.accuracy, panel: "category accuracy (%)", series: r.group },
    ]),
    { xLabel: "guidance scale s (diffusers')", height: 240 },
  ),
  { caption: "The table above: how well the samples match their prompts, by the scale." },
);

// The claims of the prose below, checked against this run.
const textAt = (group: string, scale: number) =>
  textScores.find((r) => r.group === group && r.scale === scale)!;
const kinds = scoredGroups.map((g) => g.group);
const [trained, heldOut, combined] = kinds;
const clipAt = (group: string, scale: number) => textAt(group, scale).score.mean;
const realHeldOut = realScores.find((r) => r.group === heldOut)!.own.mean;
const textClaims = [
  {
    claim: "the CLIP score rises from s = 0 to 1 to 3, for every kind of prompt",
    measured: kinds.map((g) => [0, 1, 3].map((s) => clipAt(g, s).toFixed(1)).join(" → "))
      .join("; "),
    holds: kinds.every((g) => clipAt(g, 0) < clipAt(g, 1) && clipAt(g, 1) < clipAt(g, 3)),
  },
  {
    claim: "beyond s = 3 it gains less than a third of what it gained from 1 to 3",
    measured: kinds.map((g) => (clipAt(g, 7) - clipAt(g, 3)).toFixed(1)).join("; "),
    holds: kinds.every((g) => clipAt(g, 7) - clipAt(g, 3) < (clipAt(g, 3) - clipAt(g, 1)) / 3),
  },
  {
    claim: "held-out names' samples score above the real held-out emoji",
    measured: `${clipAt(heldOut, 3).toFixed(1)} at s = 3 against ${realHeldOut.toFixed(1)}`,
    holds: clipAt(heldOut, 3) > realHeldOut,
  },
  {
    claim: "the classifier finds held-out names' categories at s = 3 above twice chance",
    measured: `${percent(textAt(heldOut, 3).accuracy)} (chance 11.1 %); ` +
      `training captions ${percent(textAt(trained, 3).accuracy)}`,
    holds: textAt(heldOut, 3).accuracy > 2 / 9,
  },
  {
    claim: "new combinations obey the colour word over twice as often as chance (1 in 4), and " +
      "more often than the object's category",
    measured: `${percent(textAt(combined, 3).colour!)} against ` +
      `${percent(textAt(combined, 3).accuracy)} at s = 3`,
    holds: textAt(combined, 3).colour! > 0.5 &&
      textAt(combined, 3).colour! > textAt(combined, 3).accuracy,
  },
];
await book.table(
  textClaims.map(({ claim, measured, holds }) => ({
    claim,
    measured,
    "in this run": holds ? "holds" : "FAILS",
  })),
  { caption: "The text section's claims against its own numbers." },
);
if (!quick && textClaims.some((c) => !c.holds)) {
  throw new Error(`a claim of the text section fails in this run: ${JSON.stringify(textClaims)}`);
}

// %% [markdown]
// Guidance does more for a prompt than for a class. At $s = 0$ the network ignores the prompt,
// and every kind of prompt scores about as low as a real emoji does against another emoji's
// caption. At $s = 1$ it follows the prompt part of the way. The score climbs steeply up to
// $s = 2$–$3$ and then flattens.
//
// Two things in the table are warnings about the metric rather than praise for the model.
// First, the held-out names' samples score *higher* than the real held-out emoji do against their
// own captions. The network has learned to draw what the tiny CLIP's text tower means by the
// words, and the CLIP score asks the same tiny CLIP. For a name it never saw drawn, that is a
// blend of its words, not the emoji, and the judge likes it. (The real training images score
// highest of all, because the CLIP trained on exactly those pairs.) A CLIP score is only as
// independent as its CLIP: the papers' judge is trained apart from the generator, on far more
// data than either. Second, the classifier, a judge that never read a caption, gives the soberer
// number. By it, the held-out names' samples land in their emoji's category far above chance; the
// claims table puts the training captions' rate beside theirs.
//
// The new combinations show what the network took from the words. It follows the colour word
// far more often than chance, and more often than the object word's category.

// %% [markdown]
// ### Which pixels attend to which word
//
// The cross-attention weights are the network's own account of where each token is used. The
// maps below are the softmax rows of the first 8×8 cross-attention layer (`down.1.cross.0`),
// averaged over its heads and over all 50 steps of the sampling run that drew the image on the
// left: one 8×8 map per token, brighter where the pixels attend to it more. The denoiser passed
// to `sample` is a function that runs the network with an `attentionMaps` collector and keeps
// the conditional half of each guided batch:

// %%
const mapLayer = "down.1.cross.0";
const mapPrompts = ["green heart, noto", "red apple, noto", "blue car, twemoji", "purple star"];
const mapCount = mapPrompts.length;
let attention: tf.Tensor3D | null = null; // Σ over calls of [N, 64, L], the heads' mean
let calls = 0;
const collected = new Map<string, tf.Tensor4D>();
const attending = (x: tf.Tensor4D, t: tf.Tensor1D, c?: Conditioning) => {
  const eps = textModel.model.apply(x, t, { ...c, attentionMaps: collected });
  const weights = collected.get(mapLayer)!; // [2N, heads, 64, L]: conditional half first
  const sum = tf.keep(tf.tidy(() => {
    const conditional = tf.mean(weights.slice(0, mapCount), 1) as tf.Tensor3D;
    return attention ? tf.add(attention, conditional) as tf.Tensor3D : conditional;
  }));
  tf.dispose([...collected.values(), attention ?? []]);
  collected.clear();
  [attention, calls] = [sum, calls + 1];
  return eps;
};
const mapInputs = {
  xT: xT.slice(0, mapCount),
  conditioning: { encoderHiddenStates: promptStates(mapPrompts) },
  unconditional: emptyPrompt(mapCount),
};
const { images: mapped } = await sample(attending, ddim(textModel), {
  shape: [mapCount, 16, 16, 3],
  xT: mapInputs.xT,
  steps: 50,
  conditioning: mapInputs.conditioning,
  guidance: { scale: 3, unconditional: mapInputs.unconditional },
});
const averaged = tf.div(attention!, calls);
const meanAttention = await averaged.data(); // [N, 64, L]
tf.dispose([averaged, attention!, mapInputs.xT, ...Object.values(mapInputs.conditioning)]);
tf.dispose(Object.values(mapInputs.unconditional));
const L = tokenizer.contextLength;
const sampleCells = await toRgbaImages(mapped);
mapped.dispose();
/** The 8×8 map of token j in prompt i, each value repeated 2×2 to the sample's 16×16. */
const tokenMap = (i: number, j: number) =>
  Array.from({ length: 256 }, (_, p) => {
    const pixel = (p >> 5) * 8 + ((p % 16) >> 1);
    return meanAttention[(i * 64 + pixel) * L + j];
  });
const tokenCounts = mapPrompts.map((p) => tokenizer.encode(p).mask.reduce((a, b) => a + b, 0));
/** tokenMaps[i][j]: the map of each of prompt i's tokens ([BOS], its words, [EOS]). */
const tokenMaps = tokenCounts.map((n, i) => Array.from({ length: n }, (_, j) => tokenMap(i, j)));
const columns = Math.max(...tokenCounts);
const blank = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 4).fill(255) };
const mapRows = mapPrompts.map((prompt, i) => {
  const maps = Array.from(
    { length: columns },
    (_, j) =>
      j < tokenCounts[i]
        ? heatmapImage(tokenMaps[i][j], {
          rows: 16,
          columns: 16,
          x: [0, 16],
          y: [0, 16],
          domain: [Math.min(...tokenMaps[i][j]), Math.max(...tokenMaps[i][j]) + 1e-9],
        })
        : blank,
  );
  return {
    label: prompt,
    image: imageGrid([sampleCells[i], ...maps], { columns: columns + 1, scale: 3, padding: 2 }),
  };
});
await book.figure(labelledRows(mapRows), {
  caption: `Each prompt's sample (DDIM 50, s = 3), then the attention at ${mapLayer} of its ` +
    "tokens in order: [BOS], the words, [EOS] (8×8, heads and steps averaged; each map on its " +
    "own scale, from its lowest weight in dark blue to its highest in yellow).",
});
const shares = mapPrompts.map((prompt, i) => {
  const words = tokenizer.decode(tokenizer.encode(prompt).ids).split(" ");
  // The mean weight of each token over the pixels: its share of the prompt's attention.
  const onTokens = tokenMaps[i].map((map) => map.reduce((a, b) => a + b, 0) / 256);
  return {
    prompt,
    "[BOS]": percent(onTokens[0]),
    words: words.map((w, j) => `${w} ${percent(onTokens[j + 1])}`).join(", "),
    "[EOS]": percent(onTokens.at(-1)!),
    padding: percent(1 - onTokens.reduce((a, b) => a + b, 0)),
  };
});
await book.table(shares, {
  caption: `How each prompt's pixels spread their attention at ${mapLayer} over the ` +
    `${tokenizer.contextLength} tokens: the mean weight of each (each pixel's weights sum to 1).`,
});

// %% [markdown]
// The maps answer "which pixels attend to *heart*?" less sharply than the papers' figures do.
// Most of each pixel's attention goes not to the words but to [EOS] and the padding tokens. The
// text tower pools the caption at [EOS], since that is what the CLIP loss trained, so one token
// carries the whole prompt. The padding tokens attend to the prompt inside the tower and carry
// mixtures of it. The words get a few per cent each. Their maps, each drawn on its own scale, at
// best separate the object from its background, and none picks out a part of the image. Two
// things make this harder than in Stable Diffusion, whose maps outline the object a word names:
// an 8×8 map of a 16×16 image has few pixels to spread over, and with three keywords per
// caption, no single word decides the picture.

// %% [markdown]
// ## Prompt it yourself
//
// The three networks of this chapter run in the widget below, in your browser, with the
// library's own code: type a prompt for text16-unet (the tiny CLIP's text tower reads it there
// too), set the guidance scale $s$ and a negative prompt (guidance then steers away from it
// instead of from the empty prompt), or pick class16-unet or the course's context16-unet and a
// class. "Mixed with" sets the context vector to $c = w\,\mathrm{onehot}(a) + (1 - w)\,\mathrm{onehot}(b)$,
// the course's blend, which both class networks accept. A word the tokenizer never saw is read
// as [UNK], and the widget says which. The denoisers' weights are their artefacts' own float16
// values; the text tower's, stored in float32, are rounded to float16 for the page, which moves
// its token states by about $10^{-3}$. Each model loads only when it is first sampled from.
//
// <div class="widget" data-widget="live-sampler"><script type="application/json">{"models":["text16-unet","class16-unet","context16-unet"],"sampler":"ddim","steps":25,"guidance":3,"prompt":"red apple","title":"This chapter's networks, sampled in this page"}</script></div>

// %% [markdown]
// ## Bad input
//
// A conditional model has more ways to be asked something wrong, and each has a documented
// behaviour or a one-line error that says what is allowed. The tokenizer's: a word it never saw
// becomes `[UNK]` (and is reported), the empty prompt is the null condition (just the begin and
// end tokens), and a prompt longer than the context is cut, and says so.

// %%
const prompts = [
  "red apple, fruit, noto",
  "blue apple",
  "a teapot made of zorblax",
  "",
  "red heart, love, green apple, fruit, blue car, vehicle, yellow star, night, smiling face, " +
  "happy, twemoji",
];
await book.table(
  prompts.map((prompt) => {
    const encoding = tokenizer.encode(prompt);
    return {
      prompt: prompt === "" ? "(empty)" : prompt.length > 40 ? `${prompt.slice(0, 37)}…` : prompt,
      words: tokenizer.decode(encoding.ids) || "(none)",
      "ids (with begin, end)": encoding.mask.reduce((a, b) => a + b, 0),
      "unknown words": encoding.unknown.join(", ") || "none",
      truncated: encoding.truncated ? "yes" : "no",
    };
  }),
  { caption: `Prompts through the tiny CLIP's tokenizer (${tokenizer.contextLength} tokens).` },
);
await book.figure(
  labelledRows(
    await conditionRows(
      textModel,
      prompts.map((prompt) => ({
        label: prompt === "" ? "(empty)" : short(prompt),
        conditioning: prompted(prompt),
      })),
      3,
      emptyPrompt,
    ),
  ),
  {
    caption: "The same prompts through text16-unet (DDIM 50, s = 3, the same eight x_T): an " +
      "unknown word is the [UNK] token, the empty prompt is the null condition (guidance then " +
      `changes nothing), and a long prompt is read up to its ${tokenizer.contextLength}th token.`,
  },
);

// %% [markdown]
// And the sampler's: a class label outside $\{0, \dots, 8\}$ (−1 is the null class) or a guidance
// scale that is negative or not a number stops before any step runs.

// %%
const attempt = async (what: string, run: () => Promise<unknown>) => {
  try {
    await run();
    return { input: what, result: "ran" };
  } catch (e) {
    return { input: what, result: (e as Error).message };
  }
};
const tryClass = (label: number, scale: number) => () =>
  sample(classModel.model as DiffusionModel, ddim(classModel), {
    shape: [1, 16, 16, 3],
    steps: 2,
    conditioning: { classLabels: tf.tensor1d([label], "int32") },
    guidance: { scale, unconditional: { classLabels: tf.tensor1d([-1], "int32") } },
  }).then(({ images }) => images.dispose());
await book.table([
  await attempt("class label 12", tryClass(12, 3)),
  await attempt("guidance scale −1", tryClass(0, -1)),
  await attempt("guidance scale NaN", tryClass(0, NaN)),
], { caption: "What the library answers (these errors end a command with exit status 2)." });

// %% [markdown]
// ## What this chapter measured
//
// - A class embedding added to the time embedding, with a learned null class dropped per sample,
//   gives one network for $p(x \mid y)$ and $p(x)$.
// - Classifier-free guidance trades diversity for fidelity, measured: class accuracy up and
//   recall down as $s$ grows, FID best at a small $s$. The guided prediction's spread grows with
//   $s$; guidance rescale undoes most of it, and its table shows what that changes in the samples.
// - The course's ContextUnet conditions by multiplication and blends classes; at equal training
//   time @tbl-context-vs-class compares it with the book's network.
// - A tiny CLIP trained here retrieves held-out emoji from their captions far above chance; its
//   text tower is the text encoder a text-conditional U-Net attends to.
// - That U-Net draws its training captions, and answers held-out names and new combinations
//   with what their words suggest: colour first. Guidance raises the CLIP score steeply up to
//   $s \approx 3$. The same CLIP as judge flatters the held-out samples above the real emoji,
//   which is why a second judge, the classifier, is in the table.
