// %% [markdown]
// # Training the denoiser
//
// Chapter 1 showed that any noisy image $x_t$ is one multiply-add away from a clean one. Training
// turns that around: show the network $x_t$ and $t$, and ask it for the noise $\epsilon$ that was
// added. Ho et al. (2020) found that this plain regression target, the *simple loss*,
//
// $$L_\text{simple}(\theta) = \mathbb{E}_{x_0,\ t \sim \mathcal{U}\{1, T\},\ \epsilon \sim \mathcal{N}(0, I)}
// \Big[\big\|\epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t\big)\big\|^2\Big],$$
//
// trains better samplers than the variational bound it simplifies. One training step is therefore:
//
// 1. take a batch of images $x_0$ (here: flipped left–right with probability ½);
// 2. draw a timestep $t$ uniformly and noise $\epsilon \sim \mathcal{N}(0, I)$ for each image;
// 3. form $x_t$ with `addNoise`, predict $\epsilon_\theta(x_t, t)$, take the mean squared error;
// 4. update $\theta$ with Adam, and fold $\theta$ into an exponential moving average (EMA) that is
//    used for sampling.
//
// `lib/training/trainer.ts` does exactly this, with a warm-up and cosine decay of the learning rate, gradient
// clipping, checkpoints that can resume bit for bit, and a clear stop when the loss turns NaN.

// %%
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { loadCheckpoint, saveModel } from "../lib/training/checkpoint.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { decodePng } from "../lib/core/images.ts";
import { DDIMScheduler, sampleImageGrid } from "../lib/core/samplers/mod.ts";
import {
  EMOJI16_SCHEDULE,
  EMOJI16_UNET,
  emoji16RunDir,
  emoji16TrainConfig,
  sampleGridWriter,
} from "../lib/zoo/presets.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { type MetricsRecord, train, Trainer } from "../lib/training/trainer.ts";
import { createModel, unetConfig } from "../lib/core/models/mod.ts";

const backend = await selectBackend();
const dataset = await loadEmojiDataset({ size: 16 });
const schedule = noiseSchedule(EMOJI16_SCHEDULE.name, EMOJI16_SCHEDULE.T);
const resume = Deno.args.includes("--resume");

// %% [markdown]
// ## The run
//
// The network is chapter 3's U-Net at 16×16 (the size of the DeepLearning.AI course's sprites):
// 32 base channels, two downsamplings (16 → 8 → 4), attention at 4×4 and in the middle, about
// 1.1 M parameters (`EMOJI16_UNET` in `lib/zoo/presets.ts`). The `full` profile, which made the models
// on these pages, trains it for 10,000 steps of 64 images on the cosine schedule, about 170 passes
// over the 3,812 emoji; the `quick` profile runs the same code for a few hundred steps, enough to
// see the loss fall, not enough for emoji.
//
// Why 16×16 and not 32×32? This book's model was trained on a 2-core CPU with the native
// TensorFlow backend, where a 32×32 step costs about four times as much as a 16×16 one; the
// metric below says how long the run took and where each part of it ran. (WebGPU on an NVIDIA
// H100 was tried: for a network this small it trains only about 1.5 times as fast as this CPU,
// because every kernel is a separate dispatch; see the performance appendix.)
//
// The published run has a history worth knowing. Its first 3,000 steps were a shorter run whose
// learning rate had decayed all the way to $10^{-5}$; the run was then extended to 10,000 steps,
// which sent the learning rate back up to where a 10,000-step cosine schedule is at step 3,000
// (about $8 \times 10^{-4}$) and let it decay again: a *warm restart* (Loshchilov & Hutter's
// SGDR). The learning-rate curve and the loss show it. A fresh `full` run follows one cosine
// schedule from start to end.
//
// A run writes its checkpoint, metrics (JSON lines) and sample grids to `.cache/runs/`. Kill it
// at any time; `deno task chapter 04 --profile full --resume` continues where it stopped.

// %%
const runDir = emoji16RunDir(book.profile);
if (!resume) await Deno.remove(runDir, { recursive: true }).catch(() => {});
await Deno.mkdir(runDir, { recursive: true });

const config = emoji16TrainConfig(book.profile);
const model = createModel(unetConfig(EMOJI16_UNET));
const trainer = await train(model, dataset, schedule, config, {
  resume,
  onSamples: sampleGridWriter(runDir),
});

// %% [markdown]
// ## The loss
//
// The raw loss of a step is noisy: each batch draws its own timesteps, and the loss at small $t$
// (little noise, hard to tell from the image's fine detail) is far larger than at large $t$. The
// smoothed curve is an exponential moving average of the logged values.

// %%
const metrics: MetricsRecord[] = (await Deno.readTextFile(`${runDir}/metrics.jsonl`))
  .split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
let smoothed = metrics[0].loss;
const lossRows = metrics.flatMap((m) => {
  smoothed = 0.9 * smoothed + 0.1 * m.loss;
  return [
    { step: m.step, loss: m.loss, curve: "logged (mean of the window)" },
    { step: m.step, loss: smoothed, curve: "smoothed" },
  ];
});
await book.figure({
  width: 720,
  height: 300,
  color: { legend: true },
  x: { label: "step" },
  y: { label: "MSE on ε", type: "log", grid: true },
  marks: [Plot.lineY(lossRows, { x: "step", y: "loss", stroke: "curve" })],
}, { caption: `Training loss, ${metrics.at(-1)!.step} steps of ${config.batchSize} images.` });
await book.figure({
  width: 720,
  height: 160,
  x: { label: "step" },
  y: { label: "learning rate", grid: true, tickFormat: "~e" },
  marks: [Plot.lineY(metrics, { x: "step", y: "lr" })],
}, { caption: "The learning rate of each logged step: linear warm-up, then cosine decay." });

// Time per step from the logged rates, summed over every session of a resumed run, by where the
// steps ran (a long run may start on a GPU and finish on a CPU, or the other way round).
const sessions = new Map<string, { steps: number; seconds: number }>();
metrics.forEach((m, i) => {
  const steps = m.step - (i > 0 ? metrics[i - 1].step : 0);
  const where = m.backend ?? `${backend.name} (${backend.detail})`;
  const session = sessions.get(where) ?? { steps: 0, seconds: 0 };
  sessions.set(where, {
    steps: session.steps + steps,
    seconds: session.seconds + steps / m.stepsPerSecond,
  });
});
const trainingSeconds = [...sessions.values()].reduce((sum, s) => sum + s.seconds, 0);
const trainedOn = [...sessions].map(([where, s]) =>
  `${s.steps} steps in ${(s.seconds / 60).toFixed(1)} min on ${where}`
).join("; ");
await book.metric("training time", `${(trainingSeconds / 60).toFixed(1)} min`, {
  caption: trainedOn,
});
const early = metrics.slice(0, 3).reduce((s, m) => s + m.loss, 0) / 3;
const late = metrics.slice(-3).reduce((s, m) => s + m.loss, 0) / 3;
await book.metric("loss, first → last logged", `${early.toFixed(3)} → ${late.toFixed(3)}`);
if (!(late < 0.7 * early)) throw new Error(`the loss did not fall: ${early} → ${late}`);

// %% [markdown]
// ## Loss by noise level
//
// Splitting the loss by timestep shows where the network still struggles. At large $t$ the image is
// almost pure noise and $\epsilon \approx x_t$, so predicting it is easy; at small $t$ the noise is a
// whisper on top of a sharp image, and telling one from the other is the hard part. Each curve is
// one moment of training.

// %%
const buckets = metrics[0].bucketLoss.length;
const moments = [
  ...new Set([1, 4, 16].map((d) => Math.max(0, Math.floor(metrics.length / d) - 1))),
];
const bucketRows = moments.flatMap((i) =>
  metrics[i].bucketLoss.map((loss, b) => ({
    t: Math.round(((b + 0.5) * schedule.T) / buckets),
    loss,
    step: `step ${metrics[i].step}`,
  })).filter((row) => row.loss !== null)
);
await book.figure({
  width: 720,
  height: 280,
  color: { legend: true },
  x: { label: "timestep t" },
  y: { label: "MSE on ε", type: "log", grid: true },
  marks: [
    Plot.lineY(bucketRows, { x: "t", y: "loss", stroke: "step", marker: "dot" }),
  ],
}, {
  caption: `Loss per timestep bucket (${buckets} equal ranges of t), at three points of training.`,
});

// %% [markdown]
// ## Samples as training goes on
//
// Every few hundred steps the run samples 32 images from the same fixed noise with the EMA weights
// (50 DDIM steps, chapter 5, with the predicted $\hat x_0$ clipped to $[-1, 1]$). Because the noise never changes, each grid shows the same 32 "seeds"
// growing from blobs into shapes.

// %%
const sampleFiles = [...Deno.readDirSync(runDir)]
  .map((entry) => entry.name)
  .filter((name) => /^samples-\d+\.png$/.test(name))
  .sort();
const shownFiles = sampleFiles.length <= 4 ? sampleFiles : [
  sampleFiles[0],
  sampleFiles[Math.floor(sampleFiles.length / 4)],
  sampleFiles[Math.floor(sampleFiles.length / 2)],
  sampleFiles.at(-1)!,
];
const grids = await Promise.all(
  shownFiles.map(async (name) => decodePng(await Deno.readFile(`${runDir}/${name}`))),
);
await book.images(grids, {
  columns: grids.length,
  padding: 12,
  caption: `EMA samples after ${
    shownFiles.map((n) => Number(n.match(/\d+/)![0])).join(", ")
  } steps ` +
    `(left to right), from the same noise.`,
});

// %% [markdown]
// ## What the EMA buys
//
// The weights after the last step carry the noise of the last few batches. Their exponential moving
// average, $\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta$ with $d = 0.999$ (warmed up from
// smaller $d$ early on), smooths that out. It matters most while the learning rate is high; at the
// end of a cosine decay the steps are tiny and the two sets of weights draw nearly the same
// images. Same noise, same sampler, both sets of weights:

// %%
const ddim = new DDIMScheduler(schedule); // x̂₀ clipped to [−1, 1], the default
const comparisonSeed = 7;
const emaComparison = [];
for (const network of [trainer.model, trainer.ema]) {
  const shape: [number, number, number, number] = [16, 16, 16, 3];
  emaComparison.push(
    await sampleImageGrid(network, ddim, { shape, seed: comparisonSeed, steps: 50 }),
  );
}
await book.images(emaComparison, {
  columns: 2,
  padding: 12,
  caption:
    "Left: the last step's weights θ. Right: their EMA θ̄. 50 DDIM steps from the same noise.",
});

// %% [markdown]
// ## Stopping and resuming
//
// Long runs get interrupted. A checkpoint here holds everything a step depends on: the weights, the
// EMA, Adam's two moment estimates, the step counter, the random generator's state and the
// configuration; it is written to a temporary file and renamed, so a kill never leaves half a file.
// The demonstration below trains a small network for 40 steps in one go, and again as 20 steps,
// a "kill", and 20 more steps resumed from the checkpoint in a fresh trainer. The losses and the
// final weights agree exactly.

// %%
const tiny = {
  imageSize: 16,
  baseChannels: 16,
  channelMultipliers: [1, 2],
  resBlocksPerLevel: 1,
  middleAttention: false,
  seed: 3,
};
const demo = { steps: 40, batchSize: 8, learningRate: 1e-3, seed: 11, logEvery: 10 };
const demoPath = `${runDir}/resume-demo.bin`;

const straight = new Trainer(createModel(unetConfig(tiny)), dataset, schedule, demo, {
  progress: false,
});
const straightLosses = (await straight.run()).losses;

const first = new Trainer(createModel(unetConfig(tiny)), dataset, schedule, {
  ...demo,
  checkpointPath: demoPath,
}, {
  progress: false,
});
const firstLosses = (await first.run({ until: 20 })).losses;
await first.saveCheckpoint();
first.model.dispose();
first.dispose(); // the "kill": nothing of this trainer survives but its checkpoint

const resumed = await Trainer.resume(demoPath, dataset, { progress: false });
const resumedLosses = [...firstLosses, ...(await resumed.run()).losses];
const differences = tf.tidy(() =>
  tf.stack(
    straight.model.parameters.map((p, i) =>
      tf.max(tf.abs(tf.sub(p.variable, resumed.model.parameters[i].variable)))
    ),
  )
);
const weightDifference = Math.max(...await differences.data());
differences.dispose();
await book.table(
  [0, 10, 19, 20, 21, 30, 39].map((i) => ({
    step: i + 1,
    "uninterrupted loss": straightLosses[i].toFixed(6),
    "killed at 20 and resumed": resumedLosses[i].toFixed(6),
    "same?": straightLosses[i] === resumedLosses[i] ? "yes" : "no",
  })),
  { caption: "The same 40 steps, uninterrupted and resumed from a checkpoint after step 20." },
);
await book.metric("largest weight difference after 40 steps", weightDifference);
if (weightDifference !== 0 || straightLosses.some((loss, i) => loss !== resumedLosses[i])) {
  throw new Error("resuming from a checkpoint did not reproduce the uninterrupted run");
}
for (const t of [straight, resumed]) {
  t.model.dispose();
  t.dispose();
}

// %% [markdown]
// ## Keeping the model
//
// The `full` run's EMA weights are what the rest of the book samples from. They are stored in half
// precision (float16: about 2 MB) in `assets/models/emoji16-unet.ckpt`, next to the run's schedule and
// training time, so that the book rebuilds without retraining.

// %%
if (book.profile === "full") {
  const path = "assets/models/emoji16-unet.ckpt";
  await Deno.mkdir("assets/models", { recursive: true });
  await saveModel(path, trainer.ema, {
    dtype: "float16",
    step: metrics.at(-1)!.step,
    state: {
      schedule: { name: schedule.name, T: schedule.T },
      prediction: "epsilon",
      trainingSeconds: Math.round(trainingSeconds),
      backend: trainedOn,
      dataset: `${dataset.count} emoji, 16×16, Twemoji and Noto`,
    },
  });
  const stored = await loadCheckpoint(path);
  await book.metric("frozen model", `${(Deno.statSync(path).size / 2 ** 20).toFixed(1)} MB`, {
    caption: `${path}, EMA weights after ${stored.step} steps`,
  });
}
trainer.model.dispose();
trainer.dispose();

// %% [markdown]
// ## What to take away
//
// - Training a diffusion model is regression: predict the noise in $x_t$, at random $t$.
// - The loss is dominated by small $t$; a falling total hides where the network is still wrong.
// - Sample from the EMA of the weights, and make every run resumable.
//
// The next chapter puts the trained network to work: DDPM, DDIM and a faster solver, side by side.
