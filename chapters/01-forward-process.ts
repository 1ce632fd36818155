// %% [markdown]
// # The forward process
//
// A diffusion model learns to undo a process that is easy to run and impossible to get wrong:
// adding Gaussian noise to an image, a little at a time, until nothing of the image is left.
// This chapter runs that *forward process* on real images, the emoji of the Twemoji and Noto
// sets, and checks the one formula everything later rests on.
//
// Each step $t = 1, \dots, T$ shrinks the image a little and adds fresh noise with variance
// $\beta_t$, the *noise schedule*, as @sohl2015 first set it up and @ho2020 made it work on
// images:
//
// $$q(x_t \mid x_{t-1}) = \mathcal{N}\big(x_t;\ \sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\big).$$ {#eq-forward-step}
//
// The shrinking by $\sqrt{1-\beta_t}$ is what keeps the variance from growing: if $x_{t-1}$ has
// unit variance, so does $x_t$. After enough steps $x_T$ is indistinguishable from
// $\mathcal{N}(0, I)$, and that is where sampling will start in chapter 5.

// %% [setup]
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { addNoise, forwardStep } from "../lib/core/forward.ts";
import { toRgbaImages } from "../lib/core/images.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule, SCHEDULE_NAMES } from "../lib/core/schedules.ts";

await selectBackend();
const quick = book.profile === "quick";
const dataset = await loadEmojiDataset({ size: 32 });
console.log(`${dataset.count} emoji at 32×32 from ${dataset.categories.length} categories`);

const random = new Random(1);
const shown = random.shuffle([...Array(dataset.count).keys()]).slice(0, 48);
await book.images(dataset.toTensor(shown), {
  columns: 12,
  scale: 2,
  caption: "The dataset: 48 emoji drawn at random from Twemoji and Noto, 32×32 pixels.",
});

// %% [markdown]
// ## Jumping straight to step $t$
//
// Running $t$ steps one after another is never needed. With $\alpha_t = 1 - \beta_t$ and
// $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$, the sum of independent Gaussians is again Gaussian,
// and the whole chain collapses into one step:
//
// $$q(x_t \mid x_0) = \mathcal{N}\big(x_t;\ \sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big),
// \qquad x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\quad
// \epsilon \sim \mathcal{N}(0, I).$$ {#eq-closed-form}
//
// This is `addNoise(x0, noise, t, schedule)` in `lib/core/forward.ts`. Note the square root on
// $1-\bar\alpha_t$: it is the *standard deviation* of the noise. Each row of @fig-noising-grid is
// one emoji, each column one timestep of the DDPM linear schedule ($\beta$ from $10^{-4}$ to $0.02$,
// $T = 1000$).

// %% {#fig-noising-grid}
const T = 1000;
const linear = noiseSchedule("linear", T);
const favourites = ["heart", "grinning", "apple", "sunflower", "rocket", "pizza"];
const rows = favourites
  .map((shortName) => dataset.meta.findIndex((m) => m.shortName === shortName))
  .filter((i) => i >= 0);
const timesteps = [0, 25, 50, 100, 200, 300, 400, 600, 800, 999];

const x0 = dataset.toTensor(rows);
const grid = tf.tidy(() => {
  const noise = tf.randomNormal(x0.shape, 0, 1, "float32", 7);
  // One row per image, one column per t: gather rows × timesteps into a batch.
  const perImage = rows.map((_, i) =>
    timesteps.map((t) =>
      addNoise(x0.slice([i], [1]), noise.slice([i], [1]), t, linear) as tf.Tensor4D
    )
  );
  return tf.concat(perImage.flat()) as tf.Tensor4D;
});
await book.images(grid, {
  columns: timesteps.length,
  scale: 2,
  caption: `x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε under the linear schedule, t = ${timesteps.join(", ")}.`,
});
tf.dispose([x0, grid]);

// %% [markdown]
// ## One image dissolving
//
// The same thing as a film (@fig-heart-film): the heart, noised step by step with
// @eq-forward-step, one frame every 20 steps. Watch how little is left after the first third of
// the schedule; chapter 2 returns to this.

// %% {#fig-heart-film}
const heart = dataset.toTensor([rows[0]]);
const frames = [];
const stepsPerFrame = 20;
let xt: tf.Tensor = heart.clone();
for (let t = 0; t < T; t++) {
  const next = tf.tidy(() =>
    forwardStep(xt, tf.randomNormal(xt.shape, 0, 1, "float32", 1000 + t), t, linear)
  );
  xt.dispose();
  xt = next;
  if (t % stepsPerFrame === 0 || t === T - 1) {
    const frame = tf.tidy(() => tf.image.resizeNearestNeighbor(xt as tf.Tensor4D, [128, 128]));
    frames.push(...(await toRgbaImages(frame)));
    frame.dispose();
  }
}
tf.dispose([heart, xt]);
await book.animation(frames, {
  delayMs: 80,
  caption:
    `The heart under 1000 steps of q(x_t | x_{t−1}), one frame every ${stepsPerFrame} steps.`,
});

// %% [markdown]
// ## Where the pixels go
//
// Pixel values start spread over $[-1, 1]$, piled up at $+1$ (the white background) and wherever
// the artist's palette is. As $t$ grows, $\sqrt{\bar\alpha_t}$ shrinks the image toward zero and
// the noise widens everything until the histogram is the standard normal density (the dashed
// curve).

// %% {#fig-histograms}
const sampleCount = quick ? 256 : 1024;
const sample = random.shuffle([...Array(dataset.count).keys()]).slice(0, sampleCount);
const histogramSteps = [0, 100, 300, 999];
const binWidth = 0.1;
const x0Sample = dataset.toTensor(sample);
const bins: { t: string; x1: number; x2: number; density: number }[] = [];
const normalCurve: { t: string; value: number; density: number }[] = [];
for (const t of histogramSteps) {
  // Seed t + 1: TensorFlow's own random ops take a seed of 0 as "no seed" (new noise every run).
  const values = tf.tidy(() =>
    addNoise(x0Sample, tf.randomNormal(x0Sample.shape, 0, 1, "float32", t + 1), t, linear)
  );
  const data = await values.data();
  values.dispose();
  // Density estimate: count per bin divided by (number of values × bin width). The bins are
  // centred on multiples of 0.1, so that the many pixels at exactly ±1 (white and black) sit in
  // the middle of a bin, not on an edge where the last bit of the arithmetic decides the side.
  const start = -4 - binWidth / 2;
  const counts = new Float64Array(Math.round(8 / binWidth) + 1);
  for (const v of data) {
    const k = Math.floor((v - start) / binWidth);
    if (k >= 0 && k < counts.length) counts[k]++;
  }
  const label = `t = ${t}`;
  counts.forEach((count, k) => {
    const x1 = start + k * binWidth;
    bins.push({ t: label, x1, x2: x1 + binWidth, density: count / (data.length * binWidth) });
  });
  for (let v = -4; v <= 4.001; v += 0.05) {
    normalCurve.push({
      t: label,
      value: v,
      density: Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI),
    });
  }
}
x0Sample.dispose();

await book.figure({
  width: 760,
  height: 220,
  x: { label: "pixel value", domain: [-4, 4] },
  y: { label: "density", grid: true },
  fx: { label: null, domain: histogramSteps.map((t) => `t = ${t}`) },
  marks: [
    Plot.rectY(bins, { x1: "x1", x2: "x2", y: "density", fx: "t", fill: "steelblue", inset: 0 }),
    Plot.lineY(normalCurve, { x: "value", y: "density", fx: "t", strokeDasharray: "4 3" }),
    Plot.ruleY([0]),
  ],
}, {
  caption:
    `Pixel values of x_t over ${sampleCount} emoji (linear schedule) against N(0, 1), dashed.`,
});

// %% [markdown]
// ## Checking the closed form against the chain
//
// The jump $q(x_t \mid x_0)$ is only useful if it is *exactly* what $t$ single steps give. Here both
// are run on the same images many times, and the mean and standard deviation of $x_t$ are compared at
// every recorded $t$ with what the formula predicts: mean $\sqrt{\bar\alpha_t}\,x_0$ and standard
// deviation $\sqrt{1-\bar\alpha_t}$.

// %% {#tbl-closed-form}
const repeats = quick ? 64 : 512;
const probe = tf.tidy(() => tf.tile(dataset.toTensor([rows[0]]), [repeats, 1, 1, 1]));
const checkpoints = new Set([10, 50, 100, 250, 500, 750, 999]);
const comparison: Record<string, number | string>[] = [];
const stdRows: { t: number; std: number; method: string }[] = [];
let chain: tf.Tensor = probe.clone();
for (let t = 0; t < T; t++) {
  const next = tf.tidy(() =>
    forwardStep(chain, tf.randomNormal(chain.shape, 0, 1, "float32", 5000 + t), t, linear)
  );
  chain.dispose();
  chain = next;
  if (!checkpoints.has(t)) continue;
  const jump = tf.tidy(() =>
    addNoise(probe, tf.randomNormal(probe.shape, 0, 1, "float32", 9000 + t), t, linear)
  );
  // Residuals around the predicted mean √ᾱ_t x₀ estimate the noise's standard deviation.
  const stats = tf.tidy(() => {
    const mean = tf.mul(probe, linear.sqrtAlphaBars[t]);
    const chainStd = tf.sqrt(tf.mean(tf.square(tf.sub(chain, mean))));
    const jumpStd = tf.sqrt(tf.mean(tf.square(tf.sub(jump, mean))));
    const chainMeanError = tf.max(
      tf.abs(tf.sub(tf.mean(chain, 0), tf.squeeze(tf.slice(mean, [0], [1]), [0]))),
    );
    return tf.stack([chainStd, jumpStd, chainMeanError]);
  });
  const [chainStd, jumpStd, meanError] = await stats.data();
  tf.dispose([jump, stats]);
  const expected = linear.sqrtOneMinusAlphaBars[t];
  comparison.push({
    t,
    "√ᾱ_t": linear.sqrtAlphaBars[t].toFixed(4),
    "expected std √(1−ᾱ_t)": expected.toFixed(4),
    "std, step by step": chainStd.toFixed(4),
    "std, closed form": jumpStd.toFixed(4),
    "largest mean error": meanError.toFixed(3),
  });
  stdRows.push({ t, std: chainStd, method: "step by step" }, {
    t,
    std: jumpStd,
    method: "closed form",
  });
}
tf.dispose([probe, chain]);
await book.table(comparison, {
  caption: `${repeats} independent runs of the heart, step by step and with one jump.`,
});
const worst = Math.max(
  ...comparison.map((row) =>
    Math.abs(Number(row["std, step by step"]) - Number(row["expected std √(1−ᾱ_t)"]))
  ),
);
await book.metric("largest std error of the chain", worst, {
  caption: "against √(1−ᾱ_t); sampling error only, it shrinks as runs grow",
});
if (worst > 0.05) throw new Error(`closed form and chain disagree: std error ${worst}`);

// %% [markdown]
// @fig-noise-std sets the curve of $\sqrt{1-\bar\alpha_t}$ against the measured standard deviations
// of @tbl-closed-form. The dotted curve is
// $1-\bar\alpha_t$, the scale a widely copied course notebook uses by mistake: too little noise
// early on, so a model trained with it never sees the noise levels it will meet when sampling.

// %% {#fig-noise-std}
const curve = Array.from({ length: T }, (_, t) => ({
  t,
  "√(1−ᾱ_t)": linear.sqrtOneMinusAlphaBars[t],
  "1−ᾱ_t": 1 - linear.alphaBars[t],
}));
await book.figure({
  width: 720,
  height: 280,
  symbol: { legend: true },
  x: { label: "t" },
  y: { label: "standard deviation of the noise in x_t", grid: true, domain: [0, 1.05] },
  marks: [
    Plot.lineY(curve, { x: "t", y: "√(1−ᾱ_t)", stroke: "currentColor" }),
    Plot.lineY(curve, { x: "t", y: "1−ᾱ_t", stroke: "currentColor", strokeDasharray: "2 3" }),
    Plot.dot(stdRows, { x: "t", y: "std", symbol: "method", stroke: "method", r: 5 }),
  ],
}, { caption: "Measured noise std (dots) follows √(1−ᾱ_t) (solid), not 1−ᾱ_t (dotted)." });

// %% [markdown]
// ## Try it
//
// Below, the same computation runs in your browser: choose a schedule and an emoji, drag $t$, and
// watch $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ change. The $\bar\alpha_t$
// tables come from `lib/core/schedules.ts`, exported by this very chapter; the noise $\epsilon$ is fixed
// per image so that moving the slider shows the schedule, not fresh randomness.

// %%
const widgetImages = await Promise.all(rows.map(async (i) => {
  const image = dataset.toTensor([i]);
  const pixels = Array.from(await image.data(), (v) => Math.round(v * 1000) / 1000);
  image.dispose();
  return { name: dataset.meta[i].name.toLowerCase(), size: dataset.size, pixels };
}));
await book.widget("noise-explorer", {
  T,
  schedules: Object.fromEntries(
    SCHEDULE_NAMES.map((name) => [
      name,
      Array.from(noiseSchedule(name, T).alphaBars, (v) => Number(v.toPrecision(6))),
    ]),
  ),
  images: widgetImages,
}, { caption: "Pick a schedule and an emoji, then drag t." });

// %% [markdown]
// ## What to take away
//
// - The forward process has no parameters to learn; the schedule $\beta_1, \dots, \beta_T$ fixes it.
// - Any $x_t$ is one multiply-add away from $x_0$ (@eq-closed-form): $x_t = \sqrt{\bar\alpha_t}\,x_0 +
//   \sqrt{1-\bar\alpha_t}\,\epsilon$. Training will pick $t$ at random and use exactly this.
// - By $t = T$ the signal is gone: $\bar\alpha_T \approx 4 \times 10^{-5}$ for the linear schedule.
//
// How fast the signal goes is the schedule's choice, and the next chapter compares them.
