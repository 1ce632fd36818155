// %% [markdown]
// # Training the denoiser
//
// Chapter 1 showed that any noisy image $x_t$ is one multiply-add away from a clean one. Training
// turns that around: show the network $x_t$ and $t$, and ask it for the noise $\epsilon$ that was
// added. @ho2020 found that this plain regression target, the *simple loss*,
//
// $$L_\text{simple}(\theta) = \mathbb{E}_{x_0,\ t \sim \mathcal{U}\{1, T\},\ \epsilon \sim \mathcal{N}(0, I)}
// \Big[\big\|\epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t\big)\big\|^2\Big],$$ {#eq-simple-loss}
//
// trains better samplers than the variational bound it simplifies. One training step is therefore:
//
// 1. take a batch of images $x_0$ (here: flipped left–right with probability ½);
// 2. draw a timestep $t$ uniformly and noise $\epsilon \sim \mathcal{N}(0, I)$ for each image;
// 3. form $x_t$ with `addNoise`, predict $\epsilon_\theta(x_t, t)$, take the mean squared error
//    of @eq-simple-loss;
// 4. update $\theta$ with Adam, and fold $\theta$ into an exponential moving average (EMA) that is
//    used for sampling.
//
// The objective of one batch is a few lines of `lib/training/objective.ts`:

// %% [setup]
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import {
  kidComparison,
  lossCurve,
  panelLines,
  type PanelPoint,
  qualityColumns,
} from "../lib/book/figures.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { Random } from "../lib/core/random.ts";
import { DDIMScheduler, sampleImageGrid } from "../lib/core/samplers/mod.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { denoisingLoss } from "../lib/training/objective.ts";
import { Adam, flatGradient } from "../lib/training/optim.ts";
import { Trainer } from "../lib/training/trainer.ts";
import { createModel, unetConfig } from "../lib/core/models/mod.ts";
import { trainingTime } from "../lib/zoo/artefacts.ts";
import { loadPretrained } from "../lib/zoo/pretrained.ts";
import { SAMPLE_GRID_LAYOUT } from "../lib/zoo/runs.ts";
import { loadClassifierArtefact } from "../lib/zoo/feature_networks.ts";
import {
  embed,
  type Embedding,
  kernelDistanceDifference,
  measureSamples,
  sampleQuality,
} from "../lib/metrics/mod.ts";
import { gridCells } from "../lib/core/images.ts";

await selectBackend();
const dataset = await loadEmojiDataset({ size: 16 });
await book.listing("lib/training/objective.ts", "denoisingLoss", {
  caption: "The loss of one batch: noise the images, predict, compare (lib/training/objective.ts).",
});

// %% [markdown]
// ## One step, by hand
//
// Here are the four steps of a training step written out, on a small U-Net: draw a batch, its
// timesteps and its noise; take the loss of @eq-simple-loss and its gradient with respect to
// every parameter; let Adam move the parameters. (`lib/training/optim.ts` holds Adam, over
// whatever list of parameters it is given: the whole network here, or only the few parameters a
// fine-tuning adapter adds.)

// %%
const tiny = {
  imageSize: 16,
  baseChannels: 16,
  channelMultipliers: [1, 2],
  resBlocksPerLevel: 1,
  middleAttention: false,
  seed: 3,
};
const cosine = noiseSchedule("cosine", 1000);
const network = createModel(unetConfig(tiny));
const adam = new Adam(network.parameters, {
  optimizer: "adam",
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
  weightDecay: 0,
});
const draws = new Random(0);
const handLosses: number[] = [];
for (let k = 1; k <= 20; k++) {
  // 1. a batch x₀; 2. t ~ U{0, …, T−1} and ε ~ N(0, I) for each image
  const x0 = dataset.toTensor(Array.from({ length: 16 }, () => draws.int(0, dataset.count)));
  const timesteps = Int32Array.from({ length: 16 }, () => draws.int(0, cosine.T));
  const noise = tf.tensor4d(draws.normals(x0.size), x0.shape);
  // 3. the loss ‖ε − ε_θ(x_t, t)‖² and its gradient ∇_θ
  const { value, grads } = tf.variableGrads(
    () => denoisingLoss(network, cosine, { x0, timesteps, noise }, { prediction: "epsilon" }).loss,
    network.parameters.map((p) => p.variable),
  );
  // 4. the Adam step on θ
  tf.tidy(() => adam.update(flatGradient(grads, network.parameters), 1e-3, k));
  handLosses.push((await value.data())[0]);
  tf.dispose([x0, noise, value, ...Object.values(grads)]);
}
adam.dispose();
network.dispose();
await book.figure({
  width: 720,
  height: 200,
  x: { label: "step" },
  y: { label: "MSE on ε", grid: true },
  marks: [Plot.lineY(handLosses, { x: (_, i) => i + 1, y: (d) => d, marker: "dot" })],
}, { caption: "Twenty hand-written steps on a small U-Net: the loss starts to fall." });

// %% [markdown]
// `lib/training/trainer.ts` runs exactly this step, and adds what a long run needs: flipped
// images, a warm-up and cosine decay of the learning rate, gradient clipping, the EMA, seeded
// draws, checkpoints that resume bit for bit, and a clear stop when the loss turns NaN.
//
// ## The run
//
// The network is chapter 3's U-Net at 16×16 (the size of the DeepLearning.AI course's sprites):
// 32 base channels, two downsamplings (16 → 8 → 4), attention at 4×4 and in the middle, about
// 1.1 M parameters. It is the model zoo's `emoji16-unet` (`lib/zoo/specs.ts`): trained for 10,000
// steps of 32 images on the cosine schedule, about 84 passes over the 3,812 emoji, with the
// learning rate warmed up over 200 steps and decayed from $10^{-3}$ to $10^{-5}$. The `quick`
// profile trains the same spec's quick variant for a few hundred steps, through the same code:
// enough to see the loss fall, not enough for emoji.
//
// Why 16×16 and not 32×32? This book's models are trained on a 2-core CPU with the native
// TensorFlow backend, where a 32×32 step costs about four times as much as a 16×16 one, and the
// published run was sized to take about an hour there; the metric below says how long it took
// and where it ran. (WebGPU on an NVIDIA H100 was tried: for a network this small it trains only
// about 1.5 times as fast as this CPU, because every kernel is a separate dispatch; see the
// performance appendix.)
//
// Training is not part of this page's run: `deno task train emoji16-unet` trains the model (or
// continues its run after an interruption) and leaves the artefact in
// `assets/models/emoji16-unet/`: the EMA weights and the last step's weights, the metrics of every
// logged step and the sample grids taken during training. This page reads it.

// %%
const emoji16 = await loadPretrained("emoji16-unet", { profile: book.profile });
const schedule = emoji16.schedule;
const metrics = await emoji16.metrics();
await book.figure(lossCurve({ "emoji16-unet": metrics }, { showLogged: true }), {
  caption: `Training loss, ${emoji16.manifest.steps} steps of ${emoji16.manifest.batchSize} ` +
    `images: the mean of each logging window, and its exponential moving average.`,
});
await book.figure({
  width: 720,
  height: 160,
  x: { label: "step" },
  y: { label: "learning rate", grid: true, tickFormat: "~e" },
  marks: [Plot.lineY(metrics, { x: "step", y: "lr" })],
}, { caption: "The learning rate of each logged step: linear warm-up, then cosine decay." });

// Wall time by where the steps ran (a long run may start on a GPU and finish on a CPU).
const sessions = trainingTime(metrics);
const trainingSeconds = sessions.reduce((sum, s) => sum + s.seconds, 0);
await book.metric("training time", `${(trainingSeconds / 60).toFixed(1)} min`, {
  caption: sessions.map((s) =>
    `${s.steps} steps in ${(s.seconds / 60).toFixed(1)} min on ${s.where}`
  )
    .join("; "),
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
const allGrids = await emoji16.sampleGrids();
const shownGrids = allGrids.length <= 4 ? allGrids : [
  allGrids[0],
  allGrids[Math.floor(allGrids.length / 4)],
  allGrids[Math.floor(allGrids.length / 2)],
  allGrids.at(-1)!,
];
await book.images(shownGrids.map((g) => g.image), {
  columns: shownGrids.length,
  padding: 12,
  caption: `EMA samples after ${shownGrids.map((g) => g.step).join(", ")} steps ` +
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
const lastWeights = await emoji16.lastWeights();
for (const network of [lastWeights, emoji16.model]) {
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
// Chapter 7 builds the measuring stick for "nearly the same": FID and KID on the features of a
// classifier trained on the real emoji, with precision (are the samples like real emoji?) and
// recall (do they cover them?). Here are both sets of weights, each measured on the same number
// of samples from the same noises, against all 3,812 real emoji:

// %%
const { classifier } = await loadClassifierArtefact({ profile: book.profile });
const realEmbedding = await embed(classifier, dataset.images, dataset.count);
const qualityCount = book.pick({ quick: 64, full: 384 });
const qualityOptions = {
  count: qualityCount,
  imageSize: 16,
  steps: 50,
  seed: 2000,
  kidSubsets: 20,
};
const weightRows = [];
const weightEmbeddings: Embedding[] = [];
for (
  const [weights, network] of [["θ, last step", lastWeights], ["θ̄, EMA", emoji16.model]] as const
) {
  const { quality, embedding } = await measureSamples(
    classifier,
    realEmbedding,
    network,
    ddim,
    qualityOptions,
  );
  weightRows.push({ weights, ...qualityColumns(quality) });
  weightEmbeddings.push(embedding);
}
await book.table(weightRows, {
  caption:
    `${qualityCount} samples each (50 DDIM steps, the same noises) against the real emoji, ` +
    `on the emoji classifier's features (chapter 7). KID over 20 subsets.`,
});
const comparison = kidComparison(
  "θ",
  "θ̄",
  kernelDistanceDifference(
    weightEmbeddings[0].features,
    weightEmbeddings[1].features,
    realEmbedding.features,
    realEmbedding.dim,
  ),
);
await book.metric("KID, last weights θ − EMA θ̄", comparison.value, { caption: comparison.caption });
lastWeights.dispose();

// %% [markdown]
// The grids the run saved on its way tell the same story over time. Each holds only 32 samples,
// so their FID is far above that of a large set (FID is biased upwards at small N, chapter 7),
// but every grid has the same 32 noises and the same N: the curve compares like with like.

// %%
const gridQuality: PanelPoint[] = [];
for (const { step, image } of allGrids) {
  const cells = gridCells(image, 16, 32, SAMPLE_GRID_LAYOUT);
  const q = sampleQuality(realEmbedding, await embed(classifier, cells, 32), { kidSubsets: 10 });
  gridQuality.push({ x: step, panel: "FID (N = 32)", value: q.fid });
  gridQuality.push({ x: step, panel: "KID × 10³ (N = 32)", value: 1000 * q.kid.mean });
}
for (const metric of ["FID (N = 32)", "KID × 10³ (N = 32)"]) {
  await book.figure(
    panelLines(gridQuality.filter((p) => p.panel === metric), { xLabel: "step", height: 200 }),
    { caption: `${metric} of the run's saved sample grids against the real emoji, by step.` },
  );
}
classifier.dispose();

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
const demo = { steps: 40, batchSize: 8, learningRate: 1e-3, seed: 11, logEvery: 10 };
const demoDir = await Deno.makeTempDir({ prefix: "resume-demo-" });
const demoPath = `${demoDir}/checkpoint.bin`;

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

await Deno.remove(demoDir, { recursive: true }); // the demonstration's own checkpoint

// %% [markdown]
// ## Keeping the model
//
// What the rest of the book samples from is the artefact of the run: the EMA weights in half
// precision (float16), the last step's weights beside them, and a manifest that records the spec
// and its hash, the dataset's fingerprint, the steps and the wall time by machine. The manifest
// also holds a *fingerprint* of the model: the loss of the stored weights on a fixed probe batch
// and the first steps of training from the spec, numbers that today's code recomputes in seconds.
// A test recomputes it for every model of the book, so a change to the library that alters what
// a model computes is caught, and names the model to retrain.

// %%
const files = emoji16.manifest.files;
await book.table(
  Object.keys(files).filter((f) => !f.startsWith("samples-")).map((file) => ({
    file: `${emoji16.dir.replace(/^\.\//, "")}/${file}`,
    size: `${(Deno.statSync(`${emoji16.dir}/${file}`).size / 2 ** 20).toFixed(2)} MB`,
  })),
  { caption: `The artefact of ${emoji16.spec.name}, besides its sample grids.` },
);
if (emoji16.manifest.fingerprint) {
  await book.text(JSON.stringify(emoji16.manifest.fingerprint, null, 2), {
    caption: "Its fingerprint, computed on the cpu backend when the artefact was made.",
  });
}
emoji16.model.dispose();

// %% [markdown]
// ## What to take away
//
// - Training a diffusion model is regression: predict the noise in $x_t$, at random $t$.
// - The loss is dominated by small $t$; a falling total hides where the network is still wrong.
// - Sample from the EMA of the weights, and make every run resumable.
//
// The next chapter puts the trained network to work: DDPM, DDIM and a faster solver, side by side.
