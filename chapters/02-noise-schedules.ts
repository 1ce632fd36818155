// %% [markdown]
// # Noise schedules
//
// The forward process of chapter 1 is fixed by one sequence, $\beta_1, \dots, \beta_T$. It decides
// how quickly the image turns into noise, and so how a model's training time is spread over noise
// levels: a schedule that destroys the image early wastes the last part of the chain on pure noise,
// where there is nothing left to learn.
//
// Every schedule is easiest to compare through three derived quantities:
//
// - $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$, the fraction of the signal's variance left;
// - the signal-to-noise ratio $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$;
// - its logarithm, $\lambda_t = \log \mathrm{SNR}_t$, which later chapters use as the natural time axis
//   (DPM-Solver and the min-SNR loss weighting both work in it).

// %% [setup]
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { addNoise } from "../lib/core/forward.ts";
import { Random } from "../lib/core/random.ts";
import { DDIMScheduler, sampleImageGrid } from "../lib/core/samplers/mod.ts";
import { type NoiseSchedule, noiseSchedule, SCHEDULE_NAMES } from "../lib/core/schedules.ts";
import { kidComparison, lossCurve, qualityColumns } from "../lib/book/figures.ts";
import {
  embed,
  kernelDistanceDifference,
  type MeasuredSamples,
  measureSamples,
} from "../lib/metrics/mod.ts";
import { loadClassifierArtefact } from "../lib/zoo/feature_networks.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";

await selectBackend();
const T = 1000;
const schedules: NoiseSchedule[] = SCHEDULE_NAMES.map((name) => noiseSchedule(name, T));

/** One row per (schedule, t), the long format Plot wants; every 5th step keeps the SVG small. */
function curves(pick: (s: NoiseSchedule, t: number) => number, every = 5) {
  return schedules.flatMap((s) =>
    Array.from({ length: Math.ceil(T / every) }, (_, k) => {
      const t = Math.min(k * every, T - 1);
      return { schedule: s.name, t: t + 1, value: pick(s, t) };
    })
  );
}

// %% [markdown]
// ## The schedules
//
// **Linear** [@ho2020, DDPM]: $\beta_t$ rises linearly from $10^{-4}$ to $0.02$.
//
// **Scaled linear** (Stable Diffusion): $\sqrt{\beta_t}$ rises linearly from $\sqrt{0.00085}$ to
// $\sqrt{0.012}$, so $\beta_t$ is a parabola with smaller end points.
//
// **Quadratic**: $\sqrt{\beta_t}$ rises linearly from $\sqrt{10^{-4}}$ to $\sqrt{0.02}$: the DDPM end
// points, reached along a parabola, so less noise is added early.
//
// **Cosine** [@nichol2021] defines $\bar\alpha_t$ directly,
// $$\bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\Big),
// \quad s = 0.008,$$ {#eq-cosine-schedule}
// and recovers $\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}$, clipped at $0.999$ so the last steps stay
// invertible. The offset $s$ keeps $\beta_1$ from being vanishingly small.
//
// **Sigmoid** (as in GeoDiff and later work): $\beta_t = \sigma(z_t)\,(0.02 - 10^{-4}) + 10^{-4}$ with
// $z_t$ evenly spaced on $[-6, 6]$: slow at both ends, fast in the middle.
//
// Here is $\bar\alpha_t$ for each. The linear schedule's curve reaches zero by about $t = 600$: the last
// 40% of its steps all look like pure noise. The cosine curve falls almost linearly in the middle
// and spends its steps evenly across noise levels.

// %% {#fig-alphabar}
const colour = { legend: true, domain: SCHEDULE_NAMES as unknown as string[] };
await book.figure({
  width: 720,
  height: 300,
  color: colour,
  x: { label: "t" },
  y: { label: "ᾱ_t", grid: true },
  marks: [
    Plot.lineY(curves((s, t) => s.alphaBars[t]), { x: "t", y: "value", stroke: "schedule" }),
  ],
}, { caption: "ᾱ_t, the signal variance left at step t, for T = 1000." });

// %% [markdown]
// The per-step variances $\beta_t$ (@fig-betas, on a log scale) show where each schedule adds its noise. The cosine
// schedule's $\beta_t$ shoots up at the very end, which is why it is clipped.

// %% {#fig-betas}
await book.figure({
  width: 720,
  height: 300,
  color: colour,
  x: { label: "t" },
  y: { label: "β_t", type: "log", grid: true },
  marks: [Plot.lineY(curves((s, t) => s.betas[t]), { x: "t", y: "value", stroke: "schedule" })],
}, { caption: "β_t, the variance of the noise added at step t (log scale)." });

// %% [markdown]
// On the log-SNR axis (@fig-log-snr) the differences are clearest. A model learns the most where
// $\lambda_t$ is around zero (signal and noise of equal size); the linear schedule races through that
// region in a few hundred steps and then spends its remaining steps far below it.

// %% {#fig-log-snr}
await book.figure({
  width: 720,
  height: 300,
  color: colour,
  x: { label: "t" },
  y: { label: "log-SNR λ_t = log(ᾱ_t / (1 − ᾱ_t))", grid: true },
  marks: [
    Plot.ruleY([0], { strokeOpacity: 0.4 }),
    Plot.lineY(curves((s, t) => s.logSnr[t]), { x: "t", y: "value", stroke: "schedule" }),
  ],
}, { caption: "Log signal-to-noise ratio per step." });

// %% [markdown]
// ## The same image, the same $t$, five schedules
//
// The rows of @fig-same-noise use the same image and the *same* noise $\epsilon$; only $\bar\alpha_t$ differs. Under
// the linear schedule only a ghost of the heart is left at $t = 500$ and nothing at 700; under cosine
// the heart is still plain at 700, and scaled-linear never quite lets go of it (its $\bar\alpha_T$ is
// $4.7 \times 10^{-3}$).

// %% {#fig-same-noise}
const dataset = await loadEmojiDataset({ size: 32 });
const heart = dataset.meta.findIndex((m) => m.shortName === "heart");
const columns = [0, 100, 200, 300, 400, 500, 600, 700, 800, 999];
const x0 = dataset.toTensor([heart]);
const rowsBySchedule = tf.tidy(() => {
  const noise = tf.randomNormal(x0.shape, 0, 1, "float32", 3);
  return tf.concat(
    schedules.flatMap((s) => columns.map((t) => addNoise(x0, noise, t, s))),
  ) as tf.Tensor4D;
});
await book.images(rowsBySchedule, {
  columns: columns.length,
  scale: 2,
  caption: `Rows: ${SCHEDULE_NAMES.join(", ")}. Columns: t = ${columns.join(", ")}.`,
});
tf.dispose([x0, rowsBySchedule]);

// %% [markdown]
// ## Numbers worth knowing
//
// $\bar\alpha_T$ should be close to zero, or sampling from $\mathcal{N}(0, I)$ starts from a distribution
// the model never saw; "steps below λ = −5" counts the steps spent at a signal-to-noise ratio under
// 1/150, where the image is as good as gone.

// %% {#tbl-schedules}
await book.table(
  schedules.map((s) => ({
    schedule: s.name,
    "β_1": s.betas[0].toExponential(2),
    "β_T": s.betas[T - 1].toExponential(2),
    "ᾱ_T": s.alphaBars[T - 1].toExponential(2),
    "t where ᾱ_t < ½": s.alphaBars.findIndex((a) => a < 0.5) + 1,
    "steps below λ = −5": s.logSnr.filter((l) => l < -5).length,
  })),
  { caption: `The schedules at T = ${T}.` },
);

// %% [markdown]
// ## How $T$ changes a schedule
//
// The DDPM linear schedule was tuned for $T = 1000$. With its end points fixed, fewer steps add less
// noise in total: at $T = 50$, $\bar\alpha_T$ is about $0.6$, and the "noise" the sampler would start
// from still holds most of the image. The cosine schedule is defined on $t/T$ and keeps its shape for
// every $T$. (Improved DDPM rescales the linear end points by $1000/T$ for the same reason.)

// %%
const lengths = [50, 100, 250, 1000];
const byLength = ["linear", "cosine"].flatMap((name) =>
  lengths.flatMap((length) => {
    const s = noiseSchedule(name, length);
    return Array.from(s.alphaBars, (a, t) => ({
      schedule: name,
      T: `T = ${length}`,
      "t / T": (t + 1) / length,
      "ᾱ_t": a,
    }));
  })
);
await book.figure({
  width: 720,
  height: 260,
  color: { legend: true, domain: lengths.map((l) => `T = ${l}`) },
  fx: { label: null, domain: ["linear", "cosine"] },
  x: { label: "t / T" },
  y: { label: "ᾱ_t", grid: true },
  marks: [Plot.lineY(byLength, { x: "t / T", y: "ᾱ_t", stroke: "T", fx: "schedule" })],
}, { caption: "ᾱ_t against t/T for four chain lengths: linear (left) and cosine (right)." });
await book.metric(
  "ᾱ_T of the linear schedule at T = 50",
  noiseSchedule("linear", 50).alphaBars[49],
  {
    caption: "far from 0: the chain never reaches pure noise",
  },
);

// %% [markdown]
// ## Trained: linear against cosine
//
// Which schedule trains the better model is an experiment, not an argument. The same small U-Net
// (chapter 3's, at half the width) is trained twice on the emoji set with chapter 4's loop: same
// initial weights, same batches, same timesteps and noise draws, only the schedule differs. Then
// both sample the same 32 starting noises with 50 DDIM steps (chapter 5).
//
// The training losses themselves do not compare: a uniform $t$ means different noise levels under
// the two schedules, and the loss depends strongly on the noise level. So the last figure asks
// the fair question: at the *same* noise level $\bar\alpha$, which network predicts $\epsilon$
// better? Each network gets, on 256 fixed images and noises, the timestep its own schedule uses for
// that $\bar\alpha$.

// %%
// Both runs are models of the zoo (`deno task train schedule16-linear`, `… schedule16-cosine`):
// the `full` profile loads their artefacts, the `quick` profile trains their quick variants.
const emoji = await loadEmojiDataset({ size: 16 });
const trained = [];
for (const name of ["schedule16-linear", "schedule16-cosine"]) {
  const run = await loadPretrained(name, { profile: book.profile });
  trained.push({ ...run, metrics: await run.metrics() });
}
const { steps, batchSize } = trained[0].manifest;
await book.figure(
  lossCurve(Object.fromEntries(trained.map((run) => [run.schedule.name, run.metrics]))),
  {
    caption: `Training loss under each schedule, ${steps} steps of ${batchSize} images ` +
      `(smoothed): not comparable across schedules, see below.`,
  },
);

const ddimGrids = [];
for (const { schedule, model } of trained) {
  const ddim = new DDIMScheduler(schedule);
  ddimGrids.push(
    await sampleImageGrid(model, ddim, { shape: [32, 16, 16, 3], seed: 5, steps: 50 }),
  );
}
await book.images(ddimGrids, {
  columns: 2,
  padding: 12,
  caption:
    "Samples from the same 32 noises, 50 DDIM steps: linear schedule (left), cosine (right).",
});

const evaluation = new Random(17);
const evalCount = 256;
const evalIndices = Array.from({ length: evalCount }, () => evaluation.int(0, emoji.count));
const pixels = 16 * 16 * 3;
const evalImages = tf.tensor4d(
  Float32Array.from(
    evalIndices.flatMap((i) => Array.from(emoji.images.subarray(i * pixels, (i + 1) * pixels))),
  ),
  [evalCount, 16, 16, 3],
);
const evalNoise = tf.tensor4d(evaluation.normals(evalCount * pixels), [evalCount, 16, 16, 3]);
// Noise levels evenly spaced in log-SNR, λ = log(ᾱ/(1 − ᾱ)) = log SNR, from −8 to 8; each
// schedule contributes the timestep whose λ_t is nearest.
const levels = Array.from({ length: 9 }, (_, i) => 2 * i - 8);
const errorRows: { schedule: string; lambda: number; mse: number }[] = [];
for (const { schedule, model } of trained) {
  const lambdas = Array.from(schedule.snr, Math.log);
  for (const lambda of levels) {
    const t = lambdas.reduce(
      (best, l, k) => Math.abs(l - lambda) < Math.abs(lambdas[best] - lambda) ? k : best,
      0,
    );
    const mse = tf.tidy(() => {
      const xt = addNoise(evalImages, evalNoise, t, schedule);
      const predicted = model.apply(xt, tf.fill([evalCount], t), { training: false });
      return tf.mean(tf.squaredDifference(predicted, evalNoise));
    });
    errorRows.push({ schedule: schedule.name, lambda: lambdas[t], mse: (await mse.data())[0] });
    mse.dispose();
  }
}
tf.dispose([evalImages, evalNoise]);
await book.figure({
  width: 720,
  height: 280,
  color: { legend: true },
  x: { label: "log-SNR λ = log(ᾱ/(1 − ᾱ))  (left: almost pure noise; right: almost clean)" },
  y: { label: "ε-prediction MSE", type: "log", grid: true, tickFormat: "~g" },
  marks: [
    Plot.lineY(errorRows, { x: "lambda", y: "mse", stroke: "schedule", marker: "dot" }),
  ],
}, {
  caption: `Error of the predicted noise on ${evalCount} fixed images at the same noise levels, ` +
    "each network at its own schedule's timestep for that level.",
});
// The samples themselves, measured with chapter 7's metrics on the emoji classifier's features.
const { classifier } = await loadClassifierArtefact({ profile: book.profile });
const realEmbedding = await embed(classifier, emoji.images, emoji.count);
const qualityCount = book.pick({ quick: 64, full: 384 });
const measured: MeasuredSamples[] = [];
for (const { schedule, model } of trained) {
  measured.push(
    await measureSamples(classifier, realEmbedding, model, new DDIMScheduler(schedule), {
      count: qualityCount,
      imageSize: 16,
      steps: 50,
      seed: 3000,
      kidSubsets: 20,
    }),
  );
}
classifier.dispose();
await book.table(
  trained.map(({ schedule }, i) => ({
    schedule: schedule.name,
    "mean ε-MSE over the levels": (errorRows.filter((r) => r.schedule === schedule.name)
      .reduce((sum, r) => sum + r.mse, 0) / levels.length).toFixed(4),
    ...qualityColumns(measured[i].quality),
  })),
  {
    caption: `The two runs, side by side: the error of the predicted noise, and ${qualityCount} ` +
      `samples each (50 DDIM steps, the same noises) against the ${
        emoji.count.toLocaleString("en")
      } real emoji (chapter 7's ` +
      `FID and KID on the emoji classifier's features; KID over 20 subsets).`,
  },
);
const comparison = kidComparison(
  "linear",
  "cosine",
  kernelDistanceDifference(
    measured[0].embedding.features,
    measured[1].embedding.features,
    realEmbedding.features,
    realEmbedding.dim,
  ),
);
await book.metric("KID, linear − cosine", comparison.value, { caption: comparison.caption });
await book.table(
  trained.map(({ schedule, manifest }) => ({
    schedule: schedule.name,
    "training time (s)": manifest.training.reduce((sum, t) => sum + t.seconds, 0),
    "where": manifest.training.map((t) => t.where).join(", "),
  })),
  {
    caption: "How long each run took, and where (from the models' manifests).",
    measuredColumns: ["training time (s)", "where"],
  },
);
for (const { model } of trained) model.dispose();

// %% [markdown]
// ## What to take away
//
// - A schedule is a choice of how to spend $T$ steps across noise levels; $\bar\alpha_t$ and the
//   log-SNR $\lambda_t$ make schedules comparable.
// - The linear schedule destroys small images early and spends many steps on pure noise; cosine
//   spreads the steps evenly in $\lambda$.
// - End points tuned for one $T$ do not carry over to another.
// - Trained side by side, the schedules differ in where the network gets its practice: compare
//   them at equal noise levels, and by their samples, not by their training losses.
