// %% [markdown]
// # Latent diffusion: diffusing in an autoencoder's code
//
// Every network so far denoised pixels, and at 16×16 that was affordable. At 32×32 there are four
// times as many, and a U-Net's every convolution costs in proportion to them: a step of the same
// network costs about four times as much, and it needs one more level to reach the same
// receptive field. Most of those pixels carry little: the flat white around an emoji, the smooth
// inside of its shapes. @rombach2022
// split the work in two. A **first stage**, an autoencoder trained once,
// compresses an image $x$ to a small latent $z = \mathcal{E}(x)$ and back,
// $\hat x = \mathcal{D}(z)$; the **diffusion model** then learns the latents' distribution,
// and a sample is $\mathcal{D}(\hat z)$. Stable Diffusion is this recipe at 512×512 with $f = 8$.
//
// This chapter builds the recipe at the book's scale, on the 32×32 emoji: a KL-regularised
// autoencoder at $f = 2, 4, 8$ (measured against plain downscaling), its latents (what they look
// like, how they are scaled), a latent U-Net on $f = 4$'s $8 \times 8 \times 4$ codes, and, beside
// it, a pixel U-Net trained for the same wall time. What latents save is measured in this run,
// not quoted.

// %% [setup]
import * as tf from "@tensorflow/tfjs";
import * as Plot from "@observablehq/plot";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { holdoutSplit } from "../lib/data/holdouts.ts";
import { Random } from "../lib/core/random.ts";
import { imageGrid, type RgbaImage, toRgbaImages } from "../lib/core/images.ts";
import type { Conditioning } from "../lib/core/models/mod.ts";
import { DDIMScheduler, type SampleGuidance, sampleMany } from "../lib/core/samplers/mod.ts";
import { Trainer } from "../lib/training/trainer.ts";
import { labelledRows } from "../lib/book/layout.ts";
import { qualityColumns } from "../lib/book/figures.ts";
import { loadPretrained, type Pretrained } from "../lib/zoo/pretrained.ts";
import { LATENT_CLIP_RANGE } from "../lib/zoo/specs.ts";
import { gatherRows, specTrainingData } from "../lib/zoo/spec_data.ts";
import {
  decodeMany,
  encodeImages,
  latentStatistics,
  loadAutoencoderArtefact,
  type LoadedAutoencoder,
} from "../lib/zoo/autoencoder.ts";
import { loadClassifierArtefact, loadPerceptualArtefact } from "../lib/zoo/feature_networks.ts";
import { embed, type Embedding, meanAndStd, pooledTo, sampleQuality } from "../lib/metrics/mod.ts";

await selectBackend();
const quick = book.profile === "quick";
const dataset = await loadEmojiDataset({ size: 32 });
const split = holdoutSplit(dataset.meta);
const pixels = 32 * 32 * 3;
/** The dataset's images at `indices`, as a tensor [n, 32, 32, 3]. */
const imagesAt = (indices: readonly number[]) =>
  tf.tensor4d(gatherRows(dataset.images, pixels, indices), [indices.length, 32, 32, 3]);

// %% [markdown]
// ## The 32×32 emoji
//
// The same two sets as before, Twemoji and Noto, from the 32 px sprite sheets of the same npm
// packages: four times the pixels of the 16×16 sprites, with the details (eyes, outlines, text
// on a sign) that 16 px drops. Every model of the chapter keeps out the images chapter 6's
// conditional models keep out; the autoencoders are scored on the held-out names, emoji they
// never saw.

// %%
const shown = new Random(8).shuffle(split.train.slice()).slice(0, 24);
const shownImages = imagesAt(shown);
await book.images(shownImages, {
  columns: 12,
  scale: 2,
  caption: `24 of the ${split.train.length} training emoji at 32×32 (of ${dataset.count} in all; ` +
    `${split.heldOutNames.length} held-out names score the autoencoders).`,
});
shownImages.dispose();

// %% [markdown]
// ## The first stage: a KL autoencoder
//
// The encoder $\mathcal{E}$ is a stack of residual blocks that halves the resolution $\log_2 f$
// times; the decoder $\mathcal{D}$ mirrors it. The encoder does not output $z$ itself but the mean
// and log variance of a diagonal Gaussian $q(z \mid x) = \mathcal{N}(\mu(x), \sigma^2(x))$, from
// which training draws $z = \mu + \sigma \odot \epsilon$: the VAE's reparameterisation, in LDM's
// "AutoencoderKL".

// %%
await book.listing("lib/core/models/autoencoder.ts", "AutoencoderKL", {
  caption: "The autoencoder: encode to q(z | x), decode z (lib/core/models/autoencoder.ts).",
});

// %% [markdown]
// It trains on three terms, as in the latent-diffusion configs (their `LPIPSWithDiscriminator`,
// here without the discriminator):
//
// $$L = \big\lVert x - \mathcal{D}(z) \big\rVert_1 + w_p\, d\big(x, \mathcal{D}(z)\big) + \beta\, \mathrm{KL}\big(q(z \mid x)\,\Vert\,\mathcal{N}(0, I)\big).$$
//
// - **L1**, not L2: an L2 reconstruction loss is the Gaussian likelihood that makes VAEs blurry,
//   since it forgives small errors everywhere and punishes large ones at edges; L1 keeps edges.
// - **A perceptual distance** $d$, LPIPS in the paper, chapter 7's learned distance here (on its
//   classifier's feature maps, which see 16×16, so both images are averaged down 2×2 first),
//   with $w_p = 1$. It cares about the structures a classifier sees, not the exact pixel values.
// - **A KL term with $\beta = 10^{-6}$** (LDM's weight, per image-sum of the pixel terms). This is
//   not a VAE that samples from $\mathcal{N}(0, I)$: the diffusion model will learn the latents'
//   distribution, so the KL does not need to shape it. It only keeps the latents' scale from
//   drifting and $\sigma$ from collapsing; a larger $\beta$ trades reconstruction for a prior the
//   chapter never uses, and the scale factor below fixes the variance anyway.
//
// LDM also adds a patch discriminator late in training, for sharper textures at 256 px and more.
// At 32×32, with emoji of flat colours, the chapter leaves it out: there is little texture to
// sharpen, and adversarial training on two cores for minutes is more likely to destabilise than
// help.

// %%
await book.listing("lib/training/autoencoder.ts", "autoencoderLoss", {
  caption: "The first stage's loss on a batch (lib/training/autoencoder.ts).",
});

// %%
const factors = [2, 4, 8] as const;
const autoencoders = new Map<number, LoadedAutoencoder>();
for (const f of factors) {
  autoencoders.set(f, await loadAutoencoderArtefact(`emoji32-vae-f${f}`, book.profile));
}
const trainedFor = (training: { seconds: number }[]) =>
  `${(training.reduce((s, t) => s + t.seconds, 0) / 60).toFixed(1)} min`;
await book.table(
  factors.map((f) => {
    const { autoencoder, manifest } = autoencoders.get(f)!;
    const [h, w, c] = autoencoder.latentShape;
    return {
      f,
      latent: `${h}×${w}×${c}`,
      "values per image": (h * w * c).toLocaleString("en"),
      "of the pixels'": `1/${pixels / (h * w * c)}`,
      parameters: manifest.parameters.toLocaleString("en"),
      steps: `${manifest.steps.toLocaleString("en")} × ${manifest.batchSize}`,
      "training time": trainedFor(manifest.training),
      where: manifest.training.map((t) => t.where).join(", "),
    };
  }),
  {
    caption: "The three autoencoders (`deno task train emoji32-vae-fF`): 32 base channels, one " +
      "residual block a level in the encoder and two in the decoder, c = 4 latent channels.",
    measuredColumns: ["training time", "where"],
  },
);

// %% [markdown]
// ## What the first stage keeps
//
// The autoencoder is the ceiling on everything after it: a latent diffusion model can at best
// produce what $\mathcal{D}$ can draw. Each row below reconstructs emoji it never trained on,
// $\hat x = \mathcal{D}(\mu(x))$, beside the plainest first stage there is: average the image down
// by $f$ and scale it back up bilinearly. That baseline keeps $3 \cdot (32/f)^2$ values, three
// quarters of the autoencoder's $4 \cdot (32/f)^2$, so it is a little poorer in numbers as well
// as in kind.
//
// Four scores on the held-out names: **PSNR** (dB on [0, 1] values, higher is better), **L1**,
// chapter 7's **perceptual distance** $d$ and **KID** (×10³, on the classifier's features after
// the same 2×2 averaging). KID compares the reconstructions with the training images, the
// reference the diffusion models' samples meet later, not with their own originals: each
// reconstruction would sit beside its original in KID's cross term, which the unbiased
// estimator's within-set terms leave out, and a good first stage would score below zero. The
// held-out originals against the same reference are the floor.

// %%
/** Down by f (average pooling) and back up (bilinear): the baseline first stage. */
const downAndUp = (x: tf.Tensor4D, f: number) =>
  tf.tidy(() =>
    tf.clipByValue(
      tf.image.resizeBilinear(tf.avgPool(x, f, f, "valid") as tf.Tensor4D, [32, 32], false, true),
      -1,
      1,
    ) as tf.Tensor4D
  );
const perceptual = await loadPerceptualArtefact({ profile: book.profile });
const { classifier } = await loadClassifierArtefact({ profile: book.profile });
const features = pooledTo(classifier, 16);
const heldOut = split.heldOutNames;
const heldOutReal = gatherRows(dataset.images, pixels, heldOut);
const trainingEmbedding = await embed(
  features,
  gatherRows(dataset.images, pixels, split.train),
  split.train.length,
);
const kidOptions = { kidSubsets: 20, kidSubsetSize: Math.min(200, heldOut.length) };

/** The scores of reconstructions `xHat` of the held-out names. */
async function scoreReconstructions(xHat: Float32Array) {
  const x = tf.tensor4d(heldOutReal, [heldOut.length, 32, 32, 3]);
  const y = tf.tensor4d(xHat, [heldOut.length, 32, 32, 3]);
  const terms = tf.tidy(() => {
    const mse = tf.div(tf.mean(tf.squaredDifference(x, y), [1, 2, 3]), 4);
    const pool = (v: tf.Tensor4D) => tf.avgPool(v, 2, 2, "valid") as tf.Tensor4D;
    return tf.stack([
      tf.mean(tf.mul(-10 / Math.LN10, tf.log(tf.maximum(mse, 1e-10)))),
      tf.mean(tf.abs(tf.sub(x, y))),
      tf.mean(perceptual.distance.distance(pool(x), pool(y))),
    ]);
  });
  const [psnr, l1, d] = await terms.data();
  tf.dispose([x, y, terms]);
  const kid =
    sampleQuality(trainingEmbedding, await embed(features, xHat, heldOut.length), kidOptions)
      .kid;
  return { psnr, l1, perceptual: d, kid };
}
/** KID of the held-out originals themselves against the training images: the floor. */
const floorKid =
  sampleQuality(trainingEmbedding, await embed(features, heldOutReal, heldOut.length), kidOptions)
    .kid;

const reconstructions = new Map<string, Float32Array>();
type Scores = Awaited<ReturnType<typeof scoreReconstructions>>;
const firstStageRows: {
  f: number;
  "first stage": string;
  scores: Scores;
  [column: string]: unknown;
}[] = [];
for (const f of factors) {
  const { autoencoder } = autoencoders.get(f)!;
  const { latents } = await encodeImages(autoencoder, heldOutReal, heldOut.length);
  const vae = await decodeMany(autoencoder, latents, heldOut.length, 1);
  const x = tf.tensor4d(heldOutReal, [heldOut.length, 32, 32, 3]);
  const baselineTensor = downAndUp(x, f);
  const baseline = await baselineTensor.data() as Float32Array;
  tf.dispose([x, baselineTensor]);
  reconstructions.set(`vae-${f}`, vae);
  reconstructions.set(`bilinear-${f}`, baseline);
  for (const [first, xHat] of [["autoencoder", vae], ["down and up", baseline]] as const) {
    const s = await scoreReconstructions(xHat);
    firstStageRows.push({
      f,
      "first stage": first,
      "PSNR (dB)": s.psnr.toFixed(2),
      L1: s.l1.toFixed(4),
      "perceptual d": s.perceptual.toFixed(4),
      "KID × 10³": `${(1000 * s.kid.mean).toFixed(2)} ± ${(1000 * s.kid.std).toFixed(2)}`,
      scores: s,
    });
  }
}
await book.table(firstStageRows.map(({ scores: _, ...row }) => row), {
  caption: `Reconstructions of the ${heldOut.length} held-out names, by factor f: each ` +
    "autoencoder against averaging down by f and scaling back up (KID against the " +
    `${split.train.length} training images, over ${kidOptions.kidSubsets} subsets of ` +
    `${kidOptions.kidSubsetSize}).`,
});
await book.metric(
  "KID × 10³ of the held-out originals against the training images (the floor)",
  `${(1000 * floorKid.mean).toFixed(2)} ± ${(1000 * floorKid.std).toFixed(2)}`,
);

// %%
const compared = heldOut.filter((_, k) => k % Math.floor(heldOut.length / 10) === 0).slice(0, 10);
const columnsOf = (source: Float32Array) =>
  tf.tensor4d(
    gatherRows(source, pixels, compared.map((i) => heldOut.indexOf(i))),
    [compared.length, 32, 32, 3],
  );
const rowImage = async (batch: tf.Tensor4D) => {
  const image = imageGrid(await toRgbaImages(batch), {
    columns: compared.length,
    scale: 2,
    padding: 2,
  });
  batch.dispose();
  return image;
};
await book.figure(
  labelledRows([
    { label: "held-out emoji", image: await rowImage(columnsOf(heldOutReal)) },
    ...await Promise.all(factors.map(async (f) => ({
      label: `autoencoder, f = ${f}`,
      image: await rowImage(columnsOf(reconstructions.get(`vae-${f}`)!)),
    }))),
    {
      label: "down and up, f = 4",
      image: await rowImage(columnsOf(reconstructions.get("bilinear-4")!)),
    },
    {
      label: "down and up, f = 8",
      image: await rowImage(columnsOf(reconstructions.get("bilinear-8")!)),
    },
  ]),
  { caption: "Ten held-out emoji and their reconstructions through each first stage." },
);

// %%
const scoreOf = (f: number, first: string) =>
  firstStageRows.find((r) => r.f === f && r["first stage"] === first)!.scores;
const firstStageClaims = [
  {
    claim: "at every f the autoencoder beats down-and-up on the perceptual distance and on KID",
    holds: factors.every((f) =>
      scoreOf(f, "autoencoder").perceptual < scoreOf(f, "down and up").perceptual &&
      scoreOf(f, "autoencoder").kid.mean < scoreOf(f, "down and up").kid.mean
    ),
  },
  {
    claim: "the autoencoders' PSNR falls as f grows (each halving costs detail)",
    holds: scoreOf(2, "autoencoder").psnr > scoreOf(4, "autoencoder").psnr &&
      scoreOf(4, "autoencoder").psnr > scoreOf(8, "autoencoder").psnr,
  },
];
await book.table(
  firstStageClaims.map(({ claim, holds }) => ({ claim, holds: holds ? "yes" : "no" })),
  {
    caption: "The section's claims against its own numbers.",
  },
);
if (!quick && firstStageClaims.some((c) => !c.holds)) {
  throw new Error(`a claim of the first-stage section fails: ${JSON.stringify(firstStageClaims)}`);
}

// %% [markdown]
// At $f = 2$ the latent is only a third smaller than the pixels and both first stages are close
// to the originals. At $f = 8$ each latent "pixel" stands for an 8×8 patch and four numbers
// describe it: shapes survive, details go. $f = 4$ is where the autoencoder's advantage over
// scaling is largest in kind: its $8 \times 8 \times 4$ code keeps outlines and faces that
// bilinear scaling of an $8 \times 8$ image smears. The diffusion model below works on that code.
// KID, on the classifier's coarse features, tells the first stages apart less finely than the
// perceptual distance: it sees the baseline's blur, but every autoencoder sits close to the
// floor, even $f = 8$, whose lost details the perceptual distance does count.

// %% [markdown]
// ## The latents
//
// What does an $8 \times 8 \times 4$ code of an emoji look like? Its four channels, each drawn on
// its own grey scale, are coarse, recognisable maps of the image: the autoencoder keeps space as
// space, which is what lets a U-Net, built for images, denoise latents.

// %%
const f4 = autoencoders.get(4)!;
const picked = shown.slice(0, 6);
const pickedImages = gatherRows(dataset.images, pixels, picked);
const { latents: pickedLatents } = await encodeImages(f4.autoencoder, pickedImages, picked.length);
/** Channel k of latent i as a grey image, scaled to its own range, 4× larger. */
function channelImage(latents: Float32Array, i: number, k: number): tf.Tensor3D {
  return tf.tidy(() => {
    const z = tf.tensor4d(latents.subarray(i * 256, (i + 1) * 256), [1, 8, 8, 4]);
    const channel = tf.slice(z, [0, 0, 0, k], [1, 8, 8, 1]);
    const [lo, hi] = [tf.min(channel), tf.max(channel)];
    const grey = tf.sub(
      tf.mul(tf.div(tf.sub(channel, lo), tf.maximum(tf.sub(hi, lo), 1e-6)), 2),
      1,
    );
    const big = tf.image.resizeNearestNeighbor(grey as tf.Tensor4D, [32, 32]);
    return tf.squeeze(tf.tile(big, [1, 1, 1, 3]), [0]) as tf.Tensor3D;
  });
}
const latentRows = [];
for (let i = 0; i < picked.length; i++) {
  const cells = tf.tidy(() =>
    tf.stack([
      tf.tensor3d(pickedImages.subarray(i * pixels, (i + 1) * pixels), [32, 32, 3]),
      ...[0, 1, 2, 3].map((k) => channelImage(pickedLatents, i, k)),
    ]) as tf.Tensor4D
  );
  latentRows.push({
    label: dataset.meta[picked[i]].shortName.replaceAll("_", " "),
    image: imageGrid(await toRgbaImages(cells), { columns: 5, scale: 2, padding: 4 }),
  });
  cells.dispose();
}
await book.figure(labelledRows(latentRows), {
  caption: "Six training emoji and the four channels of their f = 4 latents μ(x), each on its " +
    "own grey scale (8×8, drawn 4× larger).",
});

// %% [markdown]
// The diffusion model's noise schedule assumes data of unit variance: $x_T \approx
// \mathcal{N}(0, I)$ only if $\sqrt{\bar\alpha_T}\, x_0$ is negligible next to the noise, and a
// schedule's signal-to-noise ratios mean what they say only at that scale. The autoencoder's
// latents have whatever spread training gave them, so LDM multiplies them by one number, the
// **scale factor** $s = 1/\operatorname{std}(z)$ over the dataset's latents, and the diffusion
// model trains on $z \cdot s$; a sample is decoded as $\mathcal{D}(\hat z / s)$. Stable
// Diffusion's 0.18215 is this number for its VAE. The chapter's latents are the posterior means
// $\mu(x)$, and the table shows why that is no loss: at $\beta = 10^{-6}$ the posterior's own
// $\sigma$ is tiny next to the spread of $\mu$.

// %% {#tbl-latent-scale}
const { latents: allLatents, sigmas } = await encodeImages(
  f4.autoencoder,
  dataset.images,
  dataset.count,
);
const stats = latentStatistics(allLatents, sigmas);
const scaled = Float32Array.from(allLatents, (v) => v * stats.scaleFactor);
const scaledStats = latentStatistics(scaled, sigmas);
const largestScaled = scaled.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
await book.table([
  { quantity: "std of μ(x) over the dataset", value: stats.std.toFixed(4) },
  { quantity: "scale factor s = 1/std", value: stats.scaleFactor.toFixed(4) },
  { quantity: "std of z·s", value: scaledStats.std.toFixed(4) },
  { quantity: "mean of z·s", value: scaledStats.mean.toFixed(4) },
  { quantity: "largest |z·s|", value: largestScaled.toFixed(2) },
  { quantity: "mean posterior σ(x), unscaled", value: stats.meanSigma.toExponential(2) },
], { caption: `The f = 4 latents of all ${dataset.count} emoji, before and after scaling.` });
if (!quick && largestScaled > LATENT_CLIP_RANGE) {
  throw new Error(
    `a scaled latent reaches ${largestScaled}, past the sampler's bound ±${LATENT_CLIP_RANGE}`,
  );
}
if (!(scaledStats.std > 0.95 && scaledStats.std < 1.05)) {
  throw new Error(`the scaled latents' std is ${scaledStats.std}, not within 0.95–1.05`);
}
if (Math.abs(stats.scaleFactor - f4.scaleFactor) > 1e-3 * f4.scaleFactor) {
  throw new Error(
    `today's encoder gives s = ${stats.scaleFactor}, the artefact recorded ${f4.scaleFactor}`,
  );
}

// %%
/** A histogram of `values` in 60 bins of equal width, as rows of one series `kind`. */
function histogram(values: Float32Array, kind: string) {
  let [lo, hi] = [Infinity, -Infinity];
  for (const v of values) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const width = (hi - lo) / 60;
  const counts = new Array(60).fill(0);
  for (const v of values) counts[Math.min(59, Math.floor((v - lo) / width))]++;
  return counts.map((n, b) => ({
    x1: lo + b * width,
    x2: lo + (b + 1) * width,
    density: n / values.length / width,
    kind,
  }));
}
await book.figure({
  width: 720,
  height: 320,
  x: { label: "latent value", grid: true },
  y: { label: "density" },
  fy: { label: null },
  marks: [
    Plot.rectY([...histogram(allLatents, "z = μ(x)"), ...histogram(scaled, "z·s")], {
      x1: "x1",
      x2: "x2",
      y: "density",
      fy: "kind",
      fill: "steelblue",
      inset: 0,
    }),
    Plot.ruleY([0]),
  ],
}, {
  caption: `Histograms of all ${allLatents.length.toLocaleString("en")} latent values of the ` +
    `dataset, before and after the scale factor s = ${stats.scaleFactor.toFixed(3)}.`,
});

// %% [markdown]
// ### Interpolation: in the code, and in pixels
//
// A first sign that the latent space is a good place to work: walk in a straight line between two
// emoji. In pixel space, $(1 - \lambda)\,x_a + \lambda\, x_b$ is a cross-fade, two transparent
// pictures on top of each other. In the latent space, $\mathcal{D}\big((1 - \lambda)\, z_a +
// \lambda\, z_b\big)$ is decoded at every step: every frame is something the decoder draws. With
// a small autoencoder and no prior on the code the midpoints are not guaranteed to be emoji, but
// the figure shows what each space does with the same pair.

// %%
/** The training set's Twemoji drawing of `shortName`. */
function findEmoji(shortName: string): number {
  const i = split.train.find((i) =>
    dataset.meta[i].shortName === shortName && dataset.meta[i].vendor === "twitter"
  );
  if (i === undefined) throw new Error(`no training emoji is called "${shortName}"`);
  return i;
}
const pairs = [["apple", "tangerine"], ["dog", "frog"]].map((
  [a, b],
) => [findEmoji(a), findEmoji(b)]);
const lambdas = Array.from({ length: 9 }, (_, k) => k / 8);
const interpolationRows = [];
for (const [a, b] of pairs) {
  const ends = gatherRows(dataset.images, pixels, [a, b]);
  const { latents: zEnds } = await encodeImages(f4.autoencoder, ends, 2);
  const mix = (values: Float32Array, size: number) =>
    Float32Array.from(
      { length: lambdas.length * size },
      (_, j) => {
        const l = lambdas[Math.floor(j / size)];
        return (1 - l) * values[j % size] + l * values[size + (j % size)];
      },
    );
  const inPixels = tf.tensor4d(mix(ends, pixels), [lambdas.length, 32, 32, 3]);
  const inLatents = tf.tensor4d(
    await decodeMany(f4.autoencoder, mix(zEnds, 256), lambdas.length, 1),
    [lambdas.length, 32, 32, 3],
  );
  const names = `${dataset.meta[a].shortName.replaceAll("_", " ")} → ${
    dataset.meta[b].shortName.replaceAll("_", " ")
  }`;
  interpolationRows.push(
    { label: `pixels: ${names}`, image: await rowImage(inPixels) },
    { label: `latents: ${names}`, image: await rowImage(inLatents) },
  );
}
await book.figure(labelledRows(interpolationRows), {
  caption: "Two pairs of training emoji, λ = 0, 1/8, …, 1: a straight line in pixel space " +
    "(a cross-fade) and in the f = 4 latent space, decoded.",
});

// %% [markdown]
// ## Diffusion in the latent space
//
// The second stage is the book's U-Net, trained by the book's loop, with nothing changed but its
// data: the training "images" are the scaled latents $z \cdot s$ of the training emoji, $8 \times
// 8 \times 4$ arrays encoded once and cached (`lib/zoo/spec_data.ts`). The spec `latent32-unet`
// names its first stage, `latent: { autoencoder: "emoji32-vae-f4" }`, and that is the whole
// difference. Two details follow from the data not being images: training does not flip them (a
// flipped latent is not the latent of the flipped image), and sampling clips $\hat x_0$ not
// to the images' $[-1, 1]$ but to $\pm 5$, just past the largest $|z \cdot s|$ of the data (the
// section after next shows why it must clip at all).
//
// Its rival is `emoji32-unet`, the same U-Net on the pixels: one more level (32 → 16 → 8 → 4, so
// that its deepest features see as far as the latent model's), the same widths, the same
// conditioning (the nine categories with a learned null class dropped in 15 % of samples), the
// same schedule and objective. Each trained for **about the same wall time** on the same CPU
// (34 and 36 minutes), which bought the pixel model 4,200 steps and the latent model 27,000.

// %%
const pixelModel = await loadPretrained("emoji32-unet", { profile: book.profile });
const latentModel = await loadPretrained("latent32-unet", { profile: book.profile });
const models = [
  { name: "pixel space", p: pixelModel },
  { name: "latent space", p: latentModel },
] as const;
await book.table(
  models.map(({ name, p }) => {
    const c = p.model.config;
    return {
      model: `${p.spec.name} (${name})`,
      "trains on": `${c.imageSize}×${c.imageSize}×${c.inChannels}`,
      parameters: p.manifest.parameters.toLocaleString("en"),
      steps: `${p.manifest.steps.toLocaleString("en")} × ${p.manifest.batchSize}`,
      "training time": trainedFor(p.manifest.training),
      where: p.manifest.training.map((t) => t.where).join(", "),
    };
  }),
  {
    caption:
      "The two diffusion models of the chapter (`deno task train emoji32-unet`, `deno task " +
      "train latent32-unet`); the latent one also needed its autoencoder, trained once.",
    measuredColumns: ["training time", "where"],
  },
);

// %% [markdown]
// Sampling a latent model is the usual loop on $8 \times 8 \times 4$ noise, then one decoder pass:
//
// $$\hat z_T \sim \mathcal{N}(0, I), \quad \hat z_{t-1} = \mathrm{step}(\hat z_t, \epsilon_\theta(\hat z_t, t, y)), \quad \hat x = \mathcal{D}(\hat z_0 / s).$$

// %%
await book.listing("lib/zoo/autoencoder.ts", "decodeScaledLatents", {
  caption: "Back from the latent space: x̂ = D(ẑ/s) (lib/zoo/autoencoder.ts).",
});

// %%
/** Classifier-free guidance at `scale` towards `labels[start + i]` (the null class is −1). */
const guidedTowards = (labels: readonly number[], scale: number) => (start: number, n: number) => ({
  conditioning: { classLabels: tf.tensor1d(labels.slice(start, start + n), "int32") },
  guidance: {
    scale,
    unconditional: { classLabels: tf.fill([n], -1, "int32") as tf.Tensor1D } as Conditioning,
  } as SampleGuidance,
});
/**
 * `count` samples of `p` in its own space (8×8×4 latents or 32×32 pixels), DDIM towards `labels`
 * at guidance `scale`, x̂₀ clipped to ±`clipRange` (default the model's own bound; null: none).
 */
function drawSamples(p: Pretrained, options: {
  labels: readonly number[];
  scale: number;
  steps: number;
  seed: number;
  clipRange?: number | null;
}): Promise<Float32Array> {
  const clipRange = options.clipRange === undefined ? p.clipRange : options.clipRange;
  const c = p.model.config;
  return sampleMany(
    p.model,
    new DDIMScheduler(p.schedule, {
      predictionType: p.predictionType,
      ...(clipRange === null || clipRange === undefined ? { clipSample: false } : { clipRange }),
    }),
    {
      count: options.labels.length,
      imageSize: c.imageSize,
      channels: c.inChannels,
      steps: options.steps,
      seed: options.seed,
      condition: guidedTowards(options.labels, options.scale),
    },
  );
}
/** `drawn`, `count` samples of `p`, as 32×32 images: the latent model's are decoded, D(ẑ/s). */
const asImages = (p: Pretrained, drawn: Float32Array, count: number) =>
  p.spec.latent ? decodeMany(f4.autoencoder, drawn, count, f4.scaleFactor) : Promise.resolve(drawn);

// %% [markdown]
// ### Why the sampler still clips
//
// Every DDIM step starts from its estimate of the clean sample,
//
// $$\hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}},$$
//
// and at the first step of the cosine schedule $\bar\alpha_T$ is tiny, so an error $\delta$ in
// the predicted noise comes out as an error $\delta \sqrt{1 - \bar\alpha_T} / \sqrt{\bar\alpha_T}$
// in $\hat x_0$. The image samplers since chapter 5 clip $\hat x_0$ to the data's range $[-1, 1]$,
// which hides the blow-up; scaled latents have no such range, and a sampler without any bound
// hands the next step an $\hat x_0$ far outside the data. The cure is the same clip at a wider
// bound, one the data never reaches: @tbl-latent-scale found the largest $|z \cdot s|$ of the
// dataset inside $\pm 5$ (the full run stops if it is not; the quick profile's briefly trained
// autoencoder is not held to it). The same model, labels and noise, sampled both ways:

// %%
const alphaBarT = latentModel.schedule.alphaBars[latentModel.schedule.T - 1];
const amplification = Math.sqrt(1 - alphaBarT) / Math.sqrt(alphaBarT);
const clipLabels = Array.from({ length: 18 }, (_, i) => i % 9);
const clipVariants = [
  { bound: "none", clipRange: null },
  { bound: `±${LATENT_CLIP_RANGE}`, clipRange: LATENT_CLIP_RANGE },
];
const clipResults = [];
for (const { bound, clipRange } of clipVariants) {
  const drawn = await drawSamples(latentModel, {
    labels: clipLabels,
    scale: 2,
    steps: 25,
    seed: 77,
    clipRange,
  });
  const images = await asImages(latentModel, drawn, clipLabels.length);
  clipResults.push({
    bound,
    std: meanAndStd(Array.from(drawn)).std,
    largest: drawn.reduce((m, v) => Math.max(m, Math.abs(v)), 0),
    image: imageGrid(
      await toRgbaImages({ data: images, shape: [clipLabels.length, 32, 32, 3] }),
      { columns: clipLabels.length, scale: 2, padding: 2 },
    ),
  });
}
await book.table(
  [
    { "x̂₀ bound": "(the data, z·s)", "std of ẑ₀": scaledStats.std, "largest |ẑ₀|": largestScaled },
    ...clipResults.map((r) => ({
      "x̂₀ bound": r.bound,
      "std of ẑ₀": r.std,
      "largest |ẑ₀|": r.largest,
    })),
  ].map((r) => ({
    ...r,
    "std of ẑ₀": r["std of ẑ₀"].toFixed(2),
    "largest |ẑ₀|": r["largest |ẑ₀|"].toFixed(1),
  })),
  {
    caption: `18 samples of latent32-unet (DDIM 25 steps, s = 2, two of each category) with and ` +
      `without a bound on x̂₀, beside the data; at t = T, ᾱ_T = ${alphaBarT.toExponential(1)} ` +
      `multiplies an error in ε̂ by ${amplification.toExponential(1)}.`,
  },
);
await book.figure(
  labelledRows(clipResults.map((r) => ({ label: `bound ${r.bound}`, image: r.image }))),
  {
    caption: "The same 18 samples decoded: without a bound on x̂₀ (top) and with x̂₀ clipped to " +
      `±${LATENT_CLIP_RANGE} (bottom).`,
  },
);
const [unbounded, bounded] = clipResults;
if (!quick && !(unbounded.std > 3 * bounded.std && bounded.std < 1.5)) {
  throw new Error(
    `clipping x̂₀ did not make the difference the section says: std ${unbounded.std} unbounded, ` +
      `${bounded.std} at ±${LATENT_CLIP_RANGE}`,
  );
}

// %% [markdown]
// ## What latents save, measured
//
// The cost of a training step, a sampling step and the memory of a step, measured on this
// machine in this run for both models: each network takes 10 training steps on its own data at
// its spec's batch of 32 (after 2 of warm-up), and 20 evaluations $\epsilon_\theta$ on a batch of
// 32. The latent model's decoder runs once per sample, not once per step; its cost is shown on
// its own. **Peak memory** is the largest number of bytes TensorFlow.js held in tensors during one
// training step (its `tf.profile`), weights and optimiser state included.

// %%
/** Median of `runs` timings of `once` (ms), after `warmUp` untimed runs. */
async function medianMs(once: () => Promise<void>, runs: number, warmUp = 2): Promise<number> {
  for (let i = 0; i < warmUp; i++) await once();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await once();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}
const costs = [];
for (const { name, p } of models) {
  const { training: data } = await specTrainingData(p.spec, book.profile);
  const network = await p.lastWeights();
  const trainer = new Trainer(network, data, p.schedule, {
    ...p.spec.training[book.profile],
    batchSize: 32,
    checkpointPath: null,
    metricsPath: null,
    sampleEvery: null,
  }, { progress: false });
  const trainMs = await medianMs(async () => void await trainer.trainStep(), 10);
  const profile = await tf.profile(async () => void await trainer.trainStep());
  const c = network.config;
  const x = tf.randomNormal([32, c.imageSize, c.imageSize, c.inChannels]) as tf.Tensor4D;
  const t = tf.fill([32], 500, "int32") as tf.Tensor1D;
  const classLabels = tf.tensor1d(Array.from({ length: 32 }, (_, i) => i % 9), "int32");
  const sampleMs = await medianMs(async () => {
    const eps = p.model.apply(x, t, { classLabels });
    await eps.data();
    eps.dispose();
  }, 20);
  let decodeMs: number | null = null;
  if (p.spec.latent) {
    decodeMs = await medianMs(async () => {
      const images = f4.autoencoder.decode(x);
      await images.data();
      images.dispose();
    }, 10);
  }
  tf.dispose([x, t, classLabels]);
  trainer.dispose();
  network.dispose();
  costs.push({ name, p, trainMs, sampleMs, decodeMs, peakBytes: profile.peakBytes });
}
const [pixelCost, latentCost] = costs;
await book.table(
  costs.map((r) => ({
    model: r.name,
    parameters: r.p.manifest.parameters.toLocaleString("en"),
    "ms / training step": r.trainMs.toFixed(0),
    "ms / sampling step": r.sampleMs.toFixed(1),
    "ms / decode of 32": r.decodeMs === null ? "—" : r.decodeMs.toFixed(1),
    "peak MB / training step": (r.peakBytes / 2 ** 20).toFixed(1),
  })),
  {
    caption: "Costs measured in this run (batch 32, median of 10 training steps and 20 network " +
      "evaluations), on the machine that built the page.",
    measuredColumns: ["ms / training step", "ms / sampling step", "ms / decode of 32"],
  },
);
const trainSaving = pixelCost.trainMs / latentCost.trainMs;
const sampleSaving = pixelCost.sampleMs / latentCost.sampleMs;
await book.metric("training step, pixel ÷ latent", trainSaving.toFixed(1), {
  unit: "×",
  measured: true,
});
await book.metric("sampling step, pixel ÷ latent", sampleSaving.toFixed(1), {
  unit: "×",
  measured: true,
});

// %% [markdown]
// And quality at equal training time. Each model draws the same number of samples, with labels in
// the training set's proportions, 25 DDIM steps and guidance $s = 2$; the latent samples are
// decoded. They are scored against the training images with chapter 7's metrics, through the
// 16×16 classifier after 2×2 averaging (so FID here measures the shapes and colours the
// classifier sees, not the finest details).

// %%
const count = book.pick({ quick: 72, full: 512 });
const measureSteps = book.pick({ quick: 10, full: 25 });
const sampleLabels = new Random(3).shuffle(split.train.slice()).slice(0, count)
  .map((i) => dataset.labels[i]);
/** `count` samples of `p` at guidance `scale`, as 32×32 images (decoded for the latent model). */
const samplesOf = async (p: Pretrained, scale: number) =>
  await asImages(
    p,
    await drawSamples(p, { labels: sampleLabels, scale, steps: measureSteps, seed: 4000 }),
    count,
  );
const samples = new Map<string, { images: Float32Array; embedding: Embedding; seconds: number }>();
for (const { name, p } of models) {
  const started = performance.now();
  const images = await samplesOf(p, 2);
  const seconds = (performance.now() - started) / 1000;
  samples.set(name, { images, embedding: await embed(features, images, count), seconds });
}
const quality = models.map(({ name }) => ({
  name,
  ...samples.get(name)!,
  quality: sampleQuality(trainingEmbedding, samples.get(name)!.embedding, { kidSubsets: 20 }),
}));
await book.table(
  quality.map((r) => ({
    model: r.name,
    ...qualityColumns(r.quality),
    [`s to draw ${count}`]: r.seconds.toFixed(1),
  })),
  {
    caption: `${count} samples of each model (DDIM ${measureSteps} steps, s = 2, the same ` +
      `labels) against the ${split.train.length} training images, on the classifier's features ` +
      "of 2×2-averaged images.",
    measuredColumns: [`s to draw ${count}`],
  },
);

// %%
const [pixelQuality, latentQuality] = quality.map((r) => r.quality);
const costClaims = [
  {
    claim: "a latent training step costs at most half a pixel one",
    measured: `${trainSaving.toFixed(1)}×`,
    holds: trainSaving >= 2,
  },
  {
    claim: "a latent sampling step costs at most half a pixel one",
    measured: `${sampleSaving.toFixed(1)}×`,
    holds: sampleSaving >= 2,
  },
  {
    claim: "at equal training time the latent model's FID is lower",
    measured: `${latentQuality.fid.toFixed(2)} vs ${pixelQuality.fid.toFixed(2)}`,
    holds: latentQuality.fid < pixelQuality.fid,
  },
  {
    claim: "at equal training time the latent model's KID is lower",
    measured: `${(1000 * latentQuality.kid.mean).toFixed(2)} vs ${
      (1000 * pixelQuality.kid.mean).toFixed(2)
    }`,
    holds: latentQuality.kid.mean < pixelQuality.kid.mean,
  },
];
await book.table(
  costClaims.map(({ claim, measured, holds }) => ({
    claim,
    measured,
    holds: holds ? "yes" : "no",
  })),
  { caption: "The section's claims against its own numbers.", measuredColumns: ["measured"] },
);
if (!quick && costClaims.some((c) => !c.holds)) {
  throw new Error(`a claim of the cost section fails in this run: ${JSON.stringify(costClaims)}`);
}

// %% [markdown]
// ## Samples at 32×32
//
// Both models under each label, at $s = 3$, eight samples a row: on the left the pixel model,
// on the right the latent one. The noise differs (the two live in different spaces), the label
// and the sampler do not.

// %%
const categoryNames = dataset.categories.map((c) => c.split(/[ &]/)[0].toLowerCase());
const perClass = 8;
const classRows = [];
for (let k = 0; k < categoryNames.length; k++) {
  const cells: RgbaImage[] = [];
  for (const { p } of models) {
    const labels = new Array(perClass).fill(k);
    const drawn = await drawSamples(p, { labels, scale: 3, steps: 50, seed: 500 + k });
    const images = await asImages(p, drawn, perClass);
    cells.push(...await toRgbaImages({ data: images, shape: [perClass, 32, 32, 3] }));
  }
  classRows.push({
    label: categoryNames[k],
    image: imageGrid(cells, { columns: 2 * perClass, scale: 2, padding: 2 }),
  });
}
await book.figure(labelledRows(classRows), {
  caption: "One row per category (DDIM, 50 steps, s = 3): eight samples of emoji32-unet (pixels, " +
    "left) and eight of latent32-unet (latents, decoded, right).",
});

// %% [markdown]
// The fixed-noise grids the two runs took while training show how each got there, the latent
// one in six and a half times as many (and about six times cheaper) steps.

// %%
for (const { name, p } of models) {
  const grids = await p.sampleGrids();
  const last = grids.at(-1);
  if (!last) continue;
  await book.images([last.image], {
    caption: `${p.spec.name} (${name}) at step ${last.step.toLocaleString("en")}: its run's ` +
      "fixed-noise grid (DDIM 50 steps, no guidance, four of each category).",
  });
}

// %% [markdown]
// ## What it cost, all told
//
// The latent model is not free: its autoencoder trained once, before it, and every sample pays
// one decoder pass. For one model that is a wash or a loss; the first stage pays for itself when
// it serves many (Stable Diffusion's one VAE serves every fine-tune of every version), and when
// the diffusion model is the expensive part, which it is at every resolution worth having. The
// numbers of this chapter's run:

// %%
const vaeSeconds = f4.manifest.training.reduce((s, t) => s + t.seconds, 0);
const secondsOf = (p: Pretrained) => p.manifest.training.reduce((s, t) => s + t.seconds, 0);
await book.table([
  {
    stage: "autoencoder f = 4 (once)",
    "training time": `${(vaeSeconds / 60).toFixed(1)} min`,
  },
  {
    stage: "latent U-Net",
    "training time": `${(secondsOf(latentModel) / 60).toFixed(1)} min`,
  },
  {
    stage: "pixel U-Net",
    "training time": `${(secondsOf(pixelModel) / 60).toFixed(1)} min`,
  },
], {
  caption: "Wall time of each stage's training, from the artefacts' manifests.",
  measuredColumns: ["training time"],
});

// %%
for (const loaded of autoencoders.values()) loaded.autoencoder.dispose();
perceptual.dispose();
classifier.dispose();
for (const { p } of models) p.model.dispose();
