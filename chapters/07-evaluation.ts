// %% [markdown]
// # Evaluation
//
// Every chapter so far has shown samples and asked the reader to look. Looking is the final test,
// but it does not scale and it does not rank: it cannot say whether DDIM at 20 steps is as good as
// DDPM at 1000, or whether the cosine schedule trained a better model than the linear one. This
// chapter builds the measuring stick the later chapters use, and shows what each number measures
// and what fools it.
//
// The standard numbers all look at images through a trained classifier. The Fréchet Inception
// Distance [FID, @heusel2017] compares the statistics of Inception-v3's 2048-d features of
// samples and of real images; the Inception Score [IS, @salimans2016] looks at Inception's
// class posteriors; the Kernel Inception Distance [KID, @binkowski2018] and improved
// precision and recall [@kynkaanniemi2019] use the same features. No Inception weights can
// be downloaded here, and Inception has never seen a 16×16 emoji, so the book trains its own
// feature network on the real emoji and computes the same formulas on it.
//
// **Every number in this chapter is on the emoji classifier's 128-d features.** It is not
// comparable with a published Inception FID: the features, their dimension and the images all
// differ. What carries over is the formula, its biases and what it rewards.

// %% [setup]
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { Random } from "../lib/core/random.ts";
import { toRgbaImages } from "../lib/core/images.ts";
import { DDIMScheduler } from "../lib/core/samplers/mod.ts";
import { panelLines, type PanelPoint, qualityColumns } from "../lib/book/figures.ts";
import { blur, gaussianNoise, quantise } from "../lib/data/distortions.ts";
import { emojiIdentity } from "../lib/data/splits.ts";
import { makeTriplets } from "../lib/training/perceptual_calibration.ts";
import {
  classifierData,
  loadClassifierArtefact,
  loadPerceptualArtefact,
} from "../lib/zoo/feature_networks.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";
import {
  embed,
  type FeatureExtractor,
  frechetDistance,
  gaussianStatistics,
  kernelDistance,
  measureSamples,
  nearestNeighbours,
  type SampleQuality,
  sampleQuality,
  spearmanRho,
  subset,
} from "../lib/metrics/mod.ts";

await selectBackend();
const quick = book.profile === "quick";
const { classifier, manifest, categories, subcategories, metrics } = await loadClassifierArtefact({
  profile: book.profile,
});
const { dataset, split } = await classifierData();
const size = dataset.size * dataset.size * 3;
const shape = [dataset.size, dataset.size, 3] as const;

// %% [markdown]
// ## The feature network
//
// The classifier (`lib/core/models/classifier.ts`) is a small CNN: three stages of two 3×3
// convolutions with GroupNorm and SiLU, at 16, 8 and 4 pixels (in the book's run with 32, 64 and
// 128 channels; the quick profile halves them), then the spatial mean of the last stage,
// $\varphi(x)$, 128-d, and two linear heads: the emoji's Unicode
// category (9 classes: smileys, people, animals, food, travel, activities, objects, symbols,
// flags) and its subcategory (98 classes, "face-smiling", "animal-mammal", …). The two heads make
// $\varphi$ tell a cat from a dog and not only an animal from a flag. It trains with flips and
// one-pixel shifts, for the features not to hang on a pixel's position.
//
// Which images it trains on matters. The emoji are split **by identity** (`lib/data/splits.ts`):
// 80 % of the emoji train it, and both vendors' drawings of the other 20 % are held out, so a
// held-out image is never Google's drawing of an emoji whose Twitter drawing it learned. The
// accuracy on those is the honest one.

// %%
const heldOut = manifest.heldOutAccuracy!;
const seconds = manifest.training.reduce((s, t) => s + t.seconds, 0);
await book.table([
  {
    head: "category",
    classes: categories.length,
    "held-out top-1 accuracy": `${(100 * heldOut.category).toFixed(1)} %`,
    chance: `${(100 / categories.length).toFixed(1)} %`,
  },
  {
    head: "subcategory",
    classes: subcategories.length,
    "held-out top-1 accuracy": `${(100 * heldOut.subcategory).toFixed(1)} %`,
    chance: `${(100 / subcategories.length).toFixed(1)} %`,
  },
], {
  caption: `The classifier (${manifest.parameters.toLocaleString("en")} parameters) on the ` +
    `${split.heldOut.length} held-out images; trained ${manifest.steps.toLocaleString("en")} ` +
    `steps of ${manifest.batchSize} on ${split.train.length} images in ` +
    `${(seconds / 60).toFixed(1)} min (${manifest.training.map((t) => t.where).join(", ")}).`,
});
const records = await metrics();
const curves: PanelPoint[] = records.flatMap((r) => [
  { x: r.step, value: r.loss, panel: "training loss (both heads)", series: "loss" },
  ...Object.entries(r.heldOut ?? {}).map(([head, accuracy]) => ({
    x: r.step,
    value: accuracy,
    panel: "held-out accuracy",
    series: head,
  })),
]);
// One figure each: loss and accuracy have scales of their own.
const onPanel = (points: PanelPoint[], panel: string) => points.filter((p) => p.panel === panel);
await book.figure(panelLines(onPanel(curves, "training loss (both heads)"), { xLabel: "step" }), {
  caption: "The classifier's run: its training loss, the sum of both heads' cross-entropies.",
});
await book.figure(panelLines(onPanel(curves, "held-out accuracy"), { xLabel: "step" }), {
  caption: "Its top-1 accuracy on the held-out emoji at each checkpoint, by head.",
});

// %% [markdown]
// Category accuracy is far from perfect, and it need not be: what the metrics use is the feature
// space, in which two emoji that look alike lie close. (Is a 🕯️ an object or a symbol? Unicode
// says object.)
//
// The **reference set** the samples are compared with is the real emoji, the 3,812 images the
// book's diffusion models train on: all of them in the later chapters' tables, and in this
// chapter one random half (A), so that the other half (B) can show what real images score. That
// choice does not flatter the models: the classifier has only ever seen real emoji, so its
// features are tuned to them, and a sample that is off the real images' manifold lands somewhere
// the features were never asked to be smooth.

// %%
const real = await embed(classifier, dataset.images, dataset.count);
const sampleCount = book.pick({ quick: 128, full: 1000 });
const pretrained = await loadPretrained("emoji16-unet", { profile: book.profile });
const ddimSteps = book.pick({ quick: 20, full: 50 });
const measured = await measureSamples(
  classifier,
  real,
  pretrained.model,
  new DDIMScheduler(pretrained.schedule),
  { count: sampleCount, imageSize: dataset.size, steps: ddimSteps, seed: 1000 },
);
const sampleImages = measured.images;
const samplingSeconds = measured.seconds;
const samples = measured.embedding;
await book.images(
  await toRgbaImages({ data: sampleImages.subarray(0, 32 * size), shape: [32, ...shape] }),
  {
    columns: 16,
    scale: 3,
    caption: `The first 32 of the ${sampleCount} samples measured below: chapter 4's ` +
      `emoji16-unet, DDIM with ${ddimSteps} steps (${samplingSeconds.toFixed(0)} s for all).`,
    measured: true,
  },
);
await book.metric(
  `FID of the ${sampleCount} samples against all ${dataset.count} real emoji`,
  measured.quality.fid.toFixed(2),
  {
    caption: `KID × 10³ ${(1000 * measured.quality.kid.mean).toFixed(1)}, precision ` +
      `${measured.quality.precision.toFixed(3)}, recall ${measured.quality.recall.toFixed(3)}: ` +
      `the numbers the later chapters' tables report, explained below`,
  },
);

// %% [markdown]
// ## Fréchet distance
//
// FID fits a Gaussian to each set's features, mean $\mu$ and covariance $\Sigma$, and takes the
// Fréchet (2-Wasserstein) distance between the two Gaussians:
//
// $$d^2 = \lVert \mu_r - \mu_g \rVert^2 + \operatorname{tr}\Big(\Sigma_r + \Sigma_g - 2\big(\Sigma_r^{1/2}\,\Sigma_g\,\Sigma_r^{1/2}\big)^{1/2}\Big).$$
//
// The first term says whether the samples are, on average, where the real images are; the second
// whether they spread as much and in the same directions. pytorch-fid computes the matrix root of
// $\Sigma_r\Sigma_g$ with scipy's `sqrtm`; the symmetric form above has the same trace and needs
// only symmetric eigendecompositions, which are stable in float64 even when a covariance is
// singular (fewer images than dimensions). `tests/metrics_test.ts` checks it against a
// numpy/scipy reference of both forms to $10^{-6}$.

// %%
await book.listing("lib/metrics/fid.ts", "frechetDistance", {
  caption: "FID's formula on two sets' statistics (lib/metrics/fid.ts).",
});

// %% [markdown]
// ### FID depends on N
//
// FID is a biased estimator: with $N$ samples the estimated $\Sigma_g$ is noisy, and the noise
// adds to the trace term, so the same model scores worse with fewer samples [@chong2020,
// extrapolate to $N \to \infty$ for this reason: FID$_\infty$]. The floor is visible with
// no model at all: two disjoint halves of the real emoji are samples of the same distribution,
// and their FID should be zero. It is not, and it falls as $N$ grows (@fig-fid-by-n). KID (below)
// is unbiased: its real-vs-real value sits at zero for every $N$, give or take its spread
// (@fig-kid-by-n).

// %% {#fig-fid-by-n #fig-kid-by-n}
const shuffled = new Random(7).shuffle(Array.from({ length: dataset.count }, (_, i) => i));
const halfA = shuffled.slice(0, Math.floor(dataset.count / 2));
const halfB = shuffled.slice(Math.floor(dataset.count / 2));
const realA = subset(real, halfA);
const realB = subset(real, halfB);
const statsA = gaussianStatistics(realA.features, realA.count, realA.dim);
const Ns = book.pick({ quick: [50, 100, 128], full: [50, 100, 200, 500, 1000] });
const kidOptions = { subsets: book.pick({ quick: 5, full: 20 }), seed: 0 };
const curveRows: PanelPoint[] = [];
for (const N of Ns) {
  for (const [set, embedding] of [["real vs real", realB], ["samples vs real", samples]] as const) {
    const part = subset(embedding, Array.from({ length: N }, (_, i) => i));
    const stats = gaussianStatistics(part.features, N, part.dim);
    const fid = frechetDistance(stats, statsA).distance;
    curveRows.push({ series: set, x: N, panel: "FID", value: fid });
    const kid = kernelDistance(part.features, realA.features, part.dim, {
      ...kidOptions,
      subsetSize: Math.min(N, 500),
    });
    curveRows.push({ series: set, x: N, panel: "KID × 10³", value: 1000 * kid.mean });
    if (set === "real vs real" && !quick && Math.abs(kid.mean) > 3 * kid.std) {
      throw new Error(`real-vs-real KID at N = ${N} is ${kid.mean} ± ${kid.std}, not about 0`);
    }
  }
}
for (const metric of ["FID", "KID × 10³"]) {
  await book.figure(
    panelLines(onPanel(curveRows, metric), { xLabel: "N (images in the set)", logX: true }),
    {
      caption: `${metric} of N images against one half of the real emoji (${realA.count} ` +
        `images): the other half (the real-vs-real floor) and the model's samples.`,
    },
  );
}
const fidAt = (set: string, N: number) =>
  curveRows.find((r) => r.series === set && r.x === N && r.panel === "FID")!.value;
const [smallN, largeN] = [Ns[0], Ns.at(-1)!];
await book.metric(
  `real-vs-real FID, N = ${smallN} → ${largeN}`,
  `${fidAt("real vs real", smallN).toFixed(2)} → ${fidAt("real vs real", largeN).toFixed(2)}`,
  {
    caption: "The same distribution, scored worse with fewer images: report every FID with its N.",
  },
);
if (!(fidAt("real vs real", smallN) > fidAt("real vs real", largeN))) {
  throw new Error("FID did not fall with N for two halves of the real set: check the estimator.");
}

// %% [markdown]
// ## Kernel distance
//
// KID replaces the Gaussians by a kernel two-sample test: the squared maximum mean discrepancy
// with the cubic polynomial kernel $k(x, y) = (x^\top y / d + 1)^3$,
//
// $$\mathrm{MMD}^2 = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j) + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{mn}\sum_{i,j} k(x_i, y_j),$$
//
// averaged over random subsets. The sums leave out $i = j$, which makes it unbiased: its expected
// value is the population MMD² whatever $N$, so it can be negative when the sets agree. This is
// the estimator of Bińkowski et al. and torch-fidelity's default ("unbiased"), whose cross sum
// keeps every pair $(x_i, y_j)$. torch-fidelity's other option, the "u-statistic", also drops the
// cross sum's diagonal $i = j$, as if the $i$-th real and $i$-th generated image belonged
// together; here they do not, so the book uses the first (`lib/metrics/kid.ts` has both, and the
// tests check both against the reference).

// %%
await book.listing("lib/metrics/kid.ts", "mmd2", {
  caption: "The unbiased MMD² with the cubic kernel (lib/metrics/kid.ts).",
});

// %% [markdown]
// ## What the numbers say about real, damaged and generated images
//
// Each row of @tbl-metric-sets is a set of N images scored against the same reference (half A of the real
// emoji, which no row contains except the last two): the other half, the other half damaged in
// known ways, pure noise, the model's samples, and two sets that are built to fool the metrics.
//
// - **IS**, $\exp \mathbb{E}_x \mathrm{KL}(p(y \mid x) \,\Vert\, p(y))$ on the 9 category
//   posteriors, is high when each image is confidently one category and the set covers all of
//   them; its maximum is 9. It never looks at the real images.
// - **Precision** is the fraction of samples inside the real images' k-NN manifold (a ball
//   around each real image reaching its 3rd nearest real neighbour); **recall** the fraction of
//   real images inside the samples' manifold. Precision is fidelity, recall diversity.
// - **A few good emoji**: N images drawn from only 12 real emoji of half A. Every one is real,
//   so precision is near 1; recall collapses. FID sees the collapse only as a covariance term.
// - **Memorised**: half A itself, as a model that stores its training set would return it. FID
//   is below even the real-vs-real floor (the set is part of the reference), IS is the real
//   images', precision is 1 and recall high: none of these metrics can tell memorising from
//   generalising. The nearest-neighbour test below can (@fig-nearest-pairs).

// %% {#tbl-metric-sets}
const N = sampleCount;
const noiseRng = new Random(11);
const pickImages = (indices: readonly number[], f: (x: Float32Array) => Float32Array) => {
  const out = new Float32Array(indices.length * size);
  indices.forEach((i, k) =>
    out.set(f(dataset.images.subarray(i * size, (i + 1) * size)), k * size)
  );
  return out;
};
const firstB = halfB.slice(0, N);
const few = Array.from({ length: N }, (_, i) => halfA[i % 12]);
const unchanged = (x: Float32Array) => x;
const setImages: [string, Float32Array][] = [
  ["real (half B)", pickImages(firstB, unchanged)],
  ["real, blurred σ = 1 px", pickImages(firstB, (x) => blur(x, shape, 1))],
  ["real, noise σ = 0.2", pickImages(firstB, (x) => gaussianNoise(x, 0.2, noiseRng))],
  ["real, 3 colour levels", pickImages(firstB, (x) => quantise(x, 3))],
  [
    "Gaussian noise",
    Float32Array.from(noiseRng.normals(N * size), (v) => Math.max(-1, Math.min(1, v))),
  ],
  [`emoji16-unet, DDIM ${ddimSteps}`, sampleImages.subarray(0, N * size)],
  ["a few good emoji (12 of half A)", pickImages(few, unchanged)],
  ["memorised (half A itself)", pickImages(halfA.slice(0, N), unchanged)],
];
// The same formula through another feature network: the classifier's second stage, pooled (64-d).
const stage2: FeatureExtractor = {
  featureDim: classifier.config.channels[1],
  classes: 0,
  apply: (x) => ({
    features: tf.tidy(() => tf.mean(classifier.featureMaps(x)[1], [1, 2]) as tf.Tensor2D),
    posteriors: null,
  }),
};
const stage2Reference = await embed(stage2, pickImages(halfA, unchanged), halfA.length);
const stage2Statistics = gaussianStatistics(
  stage2Reference.features,
  stage2Reference.count,
  stage2Reference.dim,
);
const quality = new Map<string, SampleQuality>();
const stage2Fid = new Map<string, number>();
for (const [set, images] of setImages) {
  const embedding = await embed(classifier, images, N);
  quality.set(
    set,
    sampleQuality(realA, embedding, { kidSubsets: kidOptions.subsets, kidSubsetSize: 500 }),
  );
  const other = await embed(stage2, images, N);
  stage2Fid.set(
    set,
    frechetDistance(gaussianStatistics(other.features, N, other.dim), stage2Statistics).distance,
  );
}
await book.table(
  [...quality].map(([set, q]) => ({
    set,
    ...qualityColumns(q),
    IS: `${q.inceptionScore.mean.toFixed(2)} ± ${q.inceptionScore.std.toFixed(2)}`,
    "FID, stage-2 features": stage2Fid.get(set)!.toPrecision(3),
  })),
  {
    caption: `N = ${N} images a set against half A of the real emoji (${realA.count} images), ` +
      `on the emoji classifier's ${real.dim}-d features; KID over ${kidOptions.subsets} subsets ` +
      `of ${Math.min(N, 500)}, IS over 10 splits, precision and recall with k = 3. The last ` +
      `column: FID on the classifier's second stage, pooled (${stage2.featureDim}-d).`,
  },
);
const q = (set: string) => quality.get(set)!;
const ordering = [
  q("real (half B)").fid < q("real, blurred σ = 1 px").fid,
  q("real, blurred σ = 1 px").fid < q("Gaussian noise").fid,
  q("a few good emoji (12 of half A)").recall < 0.5 * q("real (half B)").recall,
  q("a few good emoji (12 of half A)").precision > 0.9,
  q("real, noise σ = 0.2").fid > q("real (half B)").fid,
  q("real, 3 colour levels").fid > q("real (half B)").fid,
  [...quality.values()].every((other) => other.fid <= q("Gaussian noise").fid),
  q("memorised (half A itself)").fid < q("real (half B)").fid,
];
if (!quick && ordering.includes(false)) {
  throw new Error(`the metrics do not order the sets as their construction does: ${ordering}`);
}
await book.metric(
  "the sets by FID, best first",
  [...quality].sort((a, b) => a[1].fid - b[1].fid).map(([set]) => set).join(" · "),
  { caption: "from the table above" },
);
const n = quality.size;
const spearman = spearmanRho([...quality.values()].map((q) => q.fid), [...stage2Fid.values()]);
const factor = (set: string) => quality.get(set)!.fid / stage2Fid.get(set)!;
await book.metric("rank agreement of the two FIDs (Spearman ρ)", spearman.toFixed(2), {
  caption: `over the ${n} sets; the ratio of the two FIDs runs from ` +
    `${Math.min(...setImages.map(([set]) => factor(set))).toFixed(1)} to ` +
    `${Math.max(...setImages.map(([set]) => factor(set))).toFixed(1)}`,
});

// %% [markdown]
// Read the table against the images. Blur, noise and quantisation each move FID and KID up from
// the real-vs-real floor, and noise images are off the scale; the order above says where the
// model's samples fall among the damaged real images, and their recall how much of the real
// emoji's variety they cover. The "few good emoji" row has the precision of real images and
// almost no recall, which is exactly what precision and recall were introduced to show.
//
// The last column is the same formula on another network's features: the classifier's second
// stage, before the last one has turned textures into categories. Its numbers have another scale,
// and the rank agreement above says whether it even orders the sets alike. An FID belongs to its
// feature network, its N and its reference set; change any of them and it is another number. That
// is why this book's FIDs cannot be set beside published Inception FIDs.
//
// A caution on precision. A k-NN manifold is a union of balls, one per real image, each as wide
// as the distance to its 3rd nearest neighbour; an outlier among the real images has a huge ball.
// To a classifier all noise images look alike, so a set of noise lands as one spot: if the spot
// falls in an outlier's ball, every noise image counts as "realistic", and precision reads near 1
// for images with nothing real in them; if it misses, precision is near 0. The Gaussian-noise row
// shows where this run's spot landed. Precision and recall are only as robust as the real set's
// outliers allow, which is why @naeem2020 proposed density and coverage; read precision
// beside FID, never alone.

// %% [markdown]
// ## Is the model memorising?
//
// A model that returns its training images scores perfectly above. The direct test is to look
// for each sample's nearest training image. In feature space, the distance from a sample to its
// nearest real emoji is compared with the distance from a real emoji to its nearest *other* real
// emoji (leaving out the other vendor's drawing of the same emoji, its near twin). If the samples
// were copies, their distances would be far below the real images' own.

// %% {#fig-nearest-distances #fig-nearest-pairs}
await book.listing("lib/metrics/evaluate.ts", "nearestNeighbours", {
  caption: "Each sample's nearest real emoji, in feature space (lib/metrics/evaluate.ts).",
});
const sampleNearest = nearestNeighbours(samples, real);
const probe = halfB.slice(0, N);
const realNearest = nearestNeighbours(
  subset(real, probe),
  real,
  (a, b) => emojiIdentity(dataset.meta[probe[a]]) === emojiIdentity(dataset.meta[b]),
);
const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
const cdf = (set: string, distances: number[]) =>
  [...distances].sort((x, y) => x - y).map((distance, i) => ({
    set,
    distance,
    fraction: (i + 1) / distances.length,
  }));
const nnRows = [
  ...cdf("sample → nearest real", sampleNearest.map((n) => n.distance)),
  ...cdf("real → nearest other real", realNearest.map((n) => n.distance)),
];
await book.figure({
  width: 720,
  height: 240,
  color: { legend: true },
  x: { label: "distance to the nearest real emoji (feature space)" },
  y: { label: "fraction of the set", grid: true },
  marks: [Plot.lineY(nnRows, { x: "distance", y: "fraction", stroke: "set" })],
}, {
  caption: `Nearest-neighbour distances of ${N} samples and ${N} real emoji, as cumulative ` +
    `distributions: a curve further left is closer to the training set.`,
});
const sampleMedian = median(sampleNearest.map((n) => n.distance));
const realMedian = median(realNearest.map((n) => n.distance));
await book.metric(
  "median nearest-real distance, samples ÷ real emoji",
  (sampleMedian / realMedian).toFixed(2),
  {
    caption:
      `${sampleMedian.toFixed(2)} for the samples, ${realMedian.toFixed(2)} for real emoji: ` +
      `below 1 the samples are closer to the training set than real emoji are to each other.`,
  },
);
const shownSamples = Array.from({ length: 8 }, (_, i) => i);
const neighbourIndices = nearestNeighbours(subset(samples, shownSamples), real);
const tiles = [];
for (const i of shownSamples) {
  tiles.push(sampleImages.subarray(i * size, (i + 1) * size));
  const j = neighbourIndices[i].index;
  tiles.push(dataset.images.subarray(j * size, (j + 1) * size));
}
const tileData = new Float32Array(tiles.length * size);
tiles.forEach((t, k) => tileData.set(t, k * size));
await book.images(await toRgbaImages({ data: tileData, shape: [tiles.length, ...shape] }), {
  columns: 16,
  scale: 3,
  caption: "Pairs: a sample, then its nearest real emoji in feature space.",
});

// %% [markdown]
// ## A learned perceptual distance
//
// FID compares sets. Many questions are about pairs: how far is a reconstruction from its input
// (chapter 8's VAE), how much does an edit change an image? Pixel distances answer badly: a
// one-pixel shift of an emoji is a large L2 change and no perceptual one. LPIPS [@zhang2018]
// measures the distance between deep features instead: each layer's feature map is
// unit-normalised over channels, the squared differences are weighted per channel by learned
// $w_l \ge 0$, averaged over space and summed over layers,
//
// $$d(x, x') = \sum_l \frac{1}{H_l W_l} \sum_{i,j} \sum_c w_{l,c}\,\big(\hat h_l[i,j,c] - \hat h'_l[i,j,c]\big)^2, \qquad \hat h_l = \frac{h_l}{\lVert h_l[i,j,:] \rVert_2}.$$
//
// LPIPS calibrates $w$ on people's two-alternative forced choices ("which of these two is closer
// to the reference?"). There are no people here, so the book's triplets have answers known by
// construction (`lib/training/perceptual_calibration.ts`): two strengths of one distortion
// (blur, noise, colour quantisation, shift; the milder is closer), and a mildly distorted emoji
// against the *different* emoji nearest to it in pixels (the distorted one is closer). The
// weights are fitted on triplets of the classifier's training images and scored on triplets of
// held-out ones. It is the book's distance, on the book's classifier, with the book's
// judgements: it is not LPIPS, and its numbers are not LPIPS numbers.

// %%
await book.listing("lib/core/models/perceptual.ts", "channelDifferences", {
  caption: "The per-channel terms of the distance; d is their dot product with w.",
});
const perceptual = await loadPerceptualArtefact({ profile: book.profile });
const scores = perceptual.manifest.twoAfc;
await book.table(
  [
    ...Object.entries(scores.byKind).map(([kind, s]) => ({
      triplets: kind.replace(":", ", "),
      count: s.count,
      "pixel L2": s.pixelL2.toFixed(3),
      "learned distance": s.calibrated.toFixed(3),
    })),
    {
      triplets: "all held-out triplets",
      count: Object.values(scores.byKind).reduce((a, s) => a + s.count, 0),
      "pixel L2": scores.pixelL2.toFixed(3),
      "learned distance": scores.calibrated.toFixed(3),
    },
  ],
  {
    caption: `2AFC score (the fraction of held-out triplets answered rightly) of pixel L2 and of ` +
      `the calibrated distance; with every w = 1 (uncalibrated) it scores ` +
      `${scores.uncalibrated.toFixed(3)}.`,
  },
);
const shiftScores = scores.byKind["identity:shift"];
if (!quick && !(shiftScores.calibrated > shiftScores.pixelL2 + 0.2)) {
  throw new Error(
    `the text says L2 fails on shifted emoji and the distance does not: ${shiftScores}`,
  );
}
if (!quick && !(scores.calibrated > scores.pixelL2)) {
  throw new Error(
    `the learned distance (${scores.calibrated}) does not beat L2 (${scores.pixelL2})`,
  );
}

const examples = makeTriplets(
  dataset.images,
  shape,
  split.heldOut,
  (i) => emojiIdentity(dataset.meta[i]),
  64,
  new Random(3),
);
const shown = examples.kinds.flatMap((k, n) => (k === "identity:shift" ? [n] : [])).slice(0, 6);
const triplet = (a: Float32Array, n: number) => a.subarray(n * size, (n + 1) * size);
const exampleTiles = new Float32Array(shown.length * 3 * size);
const verdicts: string[] = [];
for (const [k, n] of shown.entries()) {
  const [closer, further] = examples.firstCloser[n]
    ? [triplet(examples.first, n), triplet(examples.second, n)]
    : [triplet(examples.second, n), triplet(examples.first, n)];
  exampleTiles.set(triplet(examples.reference, n), 3 * k * size);
  exampleTiles.set(closer, (3 * k + 1) * size);
  exampleTiles.set(further, (3 * k + 2) * size);
  const l2 = (a: Float32Array) =>
    a.reduce((s, v, i) => s + (v - triplet(examples.reference, n)[i]) ** 2, 0);
  const pair = tf.tidy(() => {
    const x = tf.tensor4d(exampleTiles.slice(3 * k * size, (3 * k + 1) * size), [1, ...shape]);
    const tiles = tf.tensor4d(exampleTiles.slice((3 * k + 1) * size, (3 * k + 3) * size), [
      2,
      ...shape,
    ]);
    return perceptual.distance.distance(tf.concat([x, x]), tiles);
  });
  const [dCloser, dFurther] = await pair.data();
  pair.dispose();
  verdicts.push(
    `${l2(closer) < l2(further) ? "L2 right" : "L2 wrong"}, ` +
      `${dCloser < dFurther ? "learned right" : "learned wrong"}`,
  );
}
await book.images(await toRgbaImages({ data: exampleTiles, shape: [shown.length * 3, ...shape] }), {
  columns: 9,
  scale: 4,
  padding: 4,
  caption: `Held-out "identity" triplets with a shift, three images each: the reference, the ` +
    `same emoji shifted (the closer one), the other emoji nearest to it in pixels. ` +
    `Verdicts, in order: ${verdicts.join("; ")}.`,
});

// %% [markdown]
// The table is where the distance earns its keep: on "identity" triplets with a shift, L2 prefers
// the wrong emoji (it matches colours pixel by pixel), while the features know a moved heart is
// still a heart. Where L2 is already right (more blur is further, more noise is further), the
// learned distance gives a little up on some rows (compare the quantisation rows): the weights
// were fitted to all kinds at once, and the uncalibrated distance, every w = 1, is already most of
// the way there.
//
// A distance should also grow with the damage. On real emoji, blurred with σ = 0.7 and 1.6 px:

// %%
const probeImages = dataset.toTensor(halfB.slice(0, 256));
const probeValues = await probeImages.data() as Float32Array;
const blurredBy = (sigma: number) => {
  const out = new Float32Array(probeValues.length);
  for (let i = 0; i < 256; i++) {
    out.set(blur(probeValues.subarray(i * size, (i + 1) * size), shape, sigma), i * size);
  }
  return tf.tensor4d(out, [256, ...shape]);
};
const [mildBlur, strongBlur] = [blurredBy(0.7), blurredBy(1.6)];
const distances = [mildBlur, strongBlur].map((b) => perceptual.distance.distance(probeImages, b));
const [dMild, dStrong] = await Promise.all(distances.map((d) => d.data()));
tf.dispose(distances);
const grows = dMild.filter((d, i) => dStrong[i] > d).length / dMild.length;
await book.metric(
  "images whose distance grows from σ = 0.7 to σ = 1.6",
  `${(100 * grows).toFixed(1)} %`,
  {
    caption: "of 256 real emoji of half B",
  },
);
if (!quick && grows < 0.95) {
  throw new Error(`the distance grew with blur on only ${grows} of the images`);
}
tf.dispose([probeImages, mildBlur, strongBlur]);

// %% [markdown]
// ## What the later chapters report
//
// From here on, a chapter that claims one model, sampler or guidance scale is better says it with
// FID and KID on these features, at a stated N against a stated reference, with precision and
// recall when the claim is about diversity, and the learned distance when it is about pairs.

// %%
perceptual.dispose();
pretrained.model.dispose();
classifier.dispose();
