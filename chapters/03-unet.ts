// %% [markdown]
// # The denoising U-Net
//
// Training (chapter 4) asks one network for one thing: given a noisy image $x_t$ and its timestep
// $t$, return the noise $\epsilon$ that was mixed in,
//
// $$\epsilon_\theta(x_t, t) \approx \epsilon, \qquad
// x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon.$$
//
// The output has the shape of the input, one number per pixel and channel, and what the network
// must look at changes with $t$. Near $t = 0$ the noise is a faint grain on top of a sharp image,
// and telling the two apart needs fine detail; near $t = T$ the image is a faint shadow under the
// noise, and the network has to guess the layout of the whole picture. The U-Net [@ronneberger2015]
// serves both: an encoder halves the resolution step by step, so that deep layers see
// the whole image, a decoder doubles it back, and *skip connections* hand every resolution's
// features from the encoder straight to the decoder, so that fine detail never has to squeeze
// through the bottleneck. @ho2020 built DDPM on this shape and added three things this
// chapter takes apart: residual blocks that are told $t$, a sinusoidal embedding of $t$, and
// self-attention at low resolution.
//
// Nothing here is trained. Every number below comes from running the network that chapter 4
// trains, fresh from its initialisation.

// %% [setup]
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { book } from "../lib/book/runtime.ts";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { architectureDiagram, blockLabels, KIND_COLOURS } from "../lib/book/diagram.ts";
import { addNoise } from "../lib/core/forward.ts";
import { heatmap } from "../lib/book/heatmap.ts";
import { Attention } from "../lib/core/nn/attention.ts";
import { timestepEmbedding } from "../lib/core/nn/embeddings.ts";
import { ParameterStore } from "../lib/core/nn/layers.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { EMOJI16_UNET } from "../lib/zoo/specs.ts";
import { contextUnet, UNet, unetConfig } from "../lib/core/models/mod.ts";

await selectBackend();
const format = (n: number) => n.toLocaleString("en-US");
/** Redraws a parameter from PyTorch's default initialisation, U(−1/√fanIn, 1/√fanIn). */
const redraw = (p: { variable: tf.Variable }, fanIn: number, random: Random) => {
  const bound = 1 / Math.sqrt(fanIn);
  const values = Float32Array.from(
    { length: p.variable.size },
    () => (2 * random.uniform() - 1) * bound,
  );
  tf.tidy(() => p.variable.assign(tf.tensor(values, p.variable.shape)));
};

// %% [markdown]
// ## The network the book trains
//
// Chapter 4 trains this configuration on 16×16 emoji: 32 channels at full resolution, doubled to 64
// at 8×8 and kept at 64 at 4×4, one residual block per level on the way down (two on the way up),
// and self-attention at 4×4 and in the middle.

// %%
const config = unetConfig(EMOJI16_UNET);
const model = new UNet(config);
const architecture = model.architecture();
await book.metric("parameters", format(model.parameterCount()), {
  caption: "trainable numbers in the U-Net of chapter 4",
});

// %% [markdown]
// ## The architecture, drawn from the model
//
// The diagram, @fig-architecture, is not drawn by hand: `architectureDiagram` in
// `lib/book/diagram.ts` lays out what `model.architecture()` reports (every block with its
// channels and resolution, in the order the forward pass runs them, and every edge between
// them), so it cannot drift from the code.
//
// Read it as a U. The input enters top left and the encoder runs down: a 3×3 convolution lifts the
// three colour channels to 32, residual blocks work at each resolution, and a stride-2 convolution
// halves the resolution between levels. The middle works on 4×4 feature maps. The decoder climbs
// the right-hand side: each of its residual blocks *concatenates* one saved encoder output (the red
// skip connections, written as `64+32` for 64 channels from below and 32 across), and
// nearest-neighbour upsampling followed by a 3×3 convolution doubles the resolution between levels.
// A last GroupNorm, SiLU and 3×3 convolution map 32 channels back to three. Blocks with a
// <em>t</em> badge receive the time embedding.

// %% {#fig-architecture}
await book.figure(architectureDiagram(architecture, { idPrefix: "unet16" }), {
  caption: "The U-Net of chapter 4, drawn from `model.architecture()`. Bands are resolutions; " +
    "red arrows are skip connections, labelled with the channels they carry.",
});

// %% [markdown]
// Each encoder output that the decoder will need is kept on a stack, and the decoder pops them in
// reverse: the last thing saved on the way down is the first thing used on the way up. The encoder
// here pushes six tensors (the input convolution, each residual block, each downsampling) and the
// decoder has six residual blocks to take them: one more per level than the encoder has.

// %% [markdown]
// ## Shapes through the network
//
// A real batch: eight emoji at 16×16, each at its own random timestep, run through the forward pass
// with a trace that records every block's output. The table lists the blocks in the order they run,
// with their parameters (each block of `model.architecture()` names its layers and counts their
// parameters).

// %%
const dataset = await loadEmojiDataset({ size: 16 });
const random = new Random(3);
const batchIndices = random.shuffle([...Array(dataset.count).keys()]).slice(0, 8);
const trace: { name: string; outputShape: number[] }[] = [];
tf.tidy(() => {
  const x = dataset.toTensor(batchIndices);
  const t = tf.tensor1d(batchIndices.map(() => random.int(0, 1000)), "int32");
  model.forward(x, t, {}, { training: false, seed: 0, trace });
});
const shapeOf = new Map(trace.map((r) => [r.name, r.outputShape]));
const labels = blockLabels(architecture);
const total = model.parameterCount();
const shapeRows = architecture.blocks.filter((b) => b.parameters > 0).map((b) => {
  // A block's output is traced under its id, or under its last layer's name.
  const shape = [b.id, `${b.id}.conv`, `${b.id}.linear2`].map((n) => shapeOf.get(n)).find(Boolean)!;
  const r = b.resolution;
  const expected = r > 0 ? [8, r, r, b.outChannels] : [8, b.outChannels];
  if (shape.join() !== expected.join()) {
    throw new Error(`${b.id}: [${shape}], expected [${expected}]`);
  }
  return {
    block: b.id,
    "what it is": labels.get(b.id),
    "output shape": `[${shape.join(", ")}]`,
    parameters: format(b.parameters),
    share: `${(100 * b.parameters / total).toFixed(1)} %`,
  };
});
const counted = architecture.blocks.reduce((sum, b) => sum + b.parameters, 0);
if (counted !== total) throw new Error(`blocks hold ${counted} parameters, the model ${total}`);
await book.table(shapeRows, {
  caption: `Block by block, for a batch of 8 emoji (NHWC: batch, height, width, channels). ` +
    `The parameters add up to the model's ${format(total)}.`,
});

// %% [markdown]
// Where do the parameters sit? A 3×3 convolution from $C_\text{in}$ to $C_\text{out}$ channels
// holds $9\,C_\text{in}C_\text{out} + C_\text{out}$ numbers whatever the resolution, so the blocks
// with the most channels hold the most: the 64-channel levels, and above all the decoder's blocks,
// which read their own input and a skip. Resolution costs computation, not parameters.

// %%
const bars = architecture.blocks.filter((b) => b.parameters > 0)
  .map((b) => ({ block: b.id, kind: b.kind, parameters: b.parameters }));
const kinds = [...new Set(bars.map((b) => b.kind))];
await book.figure({
  width: 720,
  height: 420,
  marginLeft: 120,
  color: { domain: kinds, range: kinds.map((k) => KIND_COLOURS[k]), legend: true },
  x: { label: "parameters", grid: true },
  y: { label: null, domain: bars.map((b) => b.block) },
  marks: [
    Plot.barX(bars, { x: "parameters", y: "block", fill: "kind", fillOpacity: 0.7 }),
    Plot.ruleX([0]),
  ],
}, { caption: "Parameters per block, in the order the forward pass runs them." });

// %% [markdown]
// ## The residual block, and how $t$ gets in
//
// Every residual block follows DDPM's (and ADM's) recipe, with GroupNorm (statistics over groups of
// 8 channels, independent of the batch) and the SiLU activation $x\,\sigma(x)$:
//
// $$h = \mathrm{Conv}_1\big(\mathrm{SiLU}(\mathrm{GN}_1(x))\big) + W_e\,\mathrm{SiLU}(e_t), \qquad
// y = \mathrm{skip}(x) + \mathrm{Conv}_2\big(\mathrm{SiLU}(\mathrm{GN}_2(h))\big).$$
//
// $e_t$ is the time embedding, a 128-long vector computed once per image; $W_e$ projects it to one
// number per channel, added to every pixel of that channel. So the same convolutions are shifted,
// channel by channel, differently for every $t$: that is how one network learns to denoise at all
// noise levels. $\mathrm{skip}$ is the identity when the channel counts agree and a 1×1 convolution
// otherwise (the table's decoder blocks, which receive concatenated skips, all have one).

// %% [markdown]
// ## The sinusoidal time embedding
//
// A bare integer $t \in \{0, \dots, 999\}$ is a poor input: one number, on a scale a thousand times
// larger than anything else in the network. DDPM borrows the positional encoding of the Transformer
// [@vaswani2017], which spreads $t$ over $d$ sines and cosines of geometrically spaced
// frequencies,
//
// $$\mathrm{PE}(t, 2i) = \sin\!\big(t / 10000^{2i/d}\big), \qquad
// \mathrm{PE}(t, 2i+1) = \cos\!\big(t / 10000^{2i/d}\big), \qquad i = 0, \dots, d/2 - 1,$$
//
// and then feeds it through a small MLP (Linear → SiLU → Linear, $d = 32 \to 128 \to 128$ here) to
// give $e_t$. The periods run from $2\pi \approx 6.3$ steps for $i = 0$ to
// $2\pi \cdot 10000^{(d-2)/d} \approx 35{,}000$ steps for the last pair: fast components tell
// neighbouring steps apart, slow ones say roughly where in the chain $t$ is.
//
// `timestepEmbedding` in `lib/core/nn/embeddings.ts` computes exactly these numbers, laid out as ADM's code
// [@dhariwal2021] and diffusers' U-Nets do it: all $d/2$ cosines first, then all sines,
// rather than interleaved. (DDPM's own code put the sines first.) The order of the entries is a
// fixed permutation that the first linear layer absorbs; the check below compares every entry with
// the formula.

// %%
const T = 1000;
const d = config.baseChannels;
const embedding = tf.tidy(() => timestepEmbedding(tf.range(0, T) as tf.Tensor1D, d));
const pe = await embedding.data(); // [T, d], row t
embedding.dispose();
let worstError = 0;
for (let t = 0; t < T; t++) {
  for (let i = 0; i < d / 2; i++) {
    const angle = t / 10000 ** (2 * i / d);
    // Our layout: entry i holds PE(t, 2i + 1) (the cosine), entry d/2 + i holds PE(t, 2i).
    worstError = Math.max(
      worstError,
      Math.abs(pe[t * d + i] - Math.cos(angle)),
      Math.abs(pe[t * d + d / 2 + i] - Math.sin(angle)),
    );
  }
}
await book.metric("largest difference from the formula", worstError.toExponential(1), {
  caption: `over all ${T} × ${d} entries; float32 rounding of angles up to ${T - 1} rad`,
});
if (worstError > 1e-3) throw new Error(`timestepEmbedding disagrees with PE(t, i): ${worstError}`);

// Transposed for the picture: one row per embedding entry, one column per t.
const byEntry = new Float32Array(d * T);
for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) byEntry[i * T + t] = pe[t * d + i];
await book.figure({
  width: 760,
  height: 300,
  marginTop: 40,
  x: { label: "timestep t" },
  y: { label: "entry of the embedding", reverse: true, ticks: [0, 8, 16, 24, 32] },
  marks: [
    ...heatmap(byEntry, {
      rows: d,
      columns: T,
      x: [0, T],
      y: [0, d],
      domain: [-1, 1],
      label: "value",
    }),
    Plot.ruleY([d / 2], { stroke: "currentColor", strokeDasharray: "4 3" }),
  ],
}, {
  caption: `The ${d}-entry embedding for t = 0…999: cosines above the dashed line, sines ` +
    "below, frequency falling from top to bottom in each half. The fastest rows (period 6.3 " +
    "steps) alias into noise at this width.",
});

// %% [markdown]
// How alike are the embeddings of two timesteps? Their cosine similarity has a closed form. Each
// frequency contributes $\cos a\cos b + \sin a\sin b = \cos(a - b)$, so
//
// $$\frac{\mathrm{PE}(t)\cdot\mathrm{PE}(t')}{\|\mathrm{PE}(t)\|\,\|\mathrm{PE}(t')\|}
// = \frac{2}{d}\sum_{i=0}^{d/2-1} \cos\!\big((t - t')\,\omega_i\big),
// \qquad \omega_i = 10000^{-2i/d}:$$
//
// it depends only on the distance $t - t'$, never on where in the chain the two steps are. The map
// below is computed from the embeddings themselves (every 4th step), and shows exactly that: a
// pattern constant along every diagonal, brightest on the diagonal itself.

// %%
const every = 4;
const steps = Array.from({ length: T / every }, (_, k) => k * every);
const similarity = tf.tidy(() => {
  const e = tf.gather(timestepEmbedding(tf.range(0, T) as tf.Tensor1D, d), steps);
  const unit = tf.div(e, tf.norm(e, 2, 1, true));
  return tf.matMul(unit, unit, false, true);
});
const sim = await similarity.data();
similarity.dispose();
await book.figure({
  width: 500,
  height: 500,
  marginTop: 40,
  marginLeft: 50,
  x: { label: "t" },
  y: { label: "t′", reverse: true },
  marks: heatmap(sim, {
    rows: steps.length,
    columns: steps.length,
    x: [0, T],
    y: [0, T],
    domain: [-1, 1],
    label: "cosine similarity",
  }),
}, { caption: "Cosine similarity of PE(t) and PE(t′), every 4th step." });

// %% [markdown]
// Along one row, the similarity against the distance $|t - t'|$: 0.96 for neighbours, below 0.7
// within 8 steps as the fast components fall out of step, and from there on wandering between
// about −0.2 and 0.7. It does not keep falling, because with $d = 32$ half of the components have
// periods longer than the whole chain and hardly move: every pair of steps shares them. The network
// does not need a similarity that falls monotonically; it needs every $t$ to be distinct and
// neighbouring $t$ to be close, which this gives.

// %%
const distance = Array.from({ length: T }, (_, delta) => ({
  delta,
  similarity: Array.from({ length: d / 2 }, (_, i) => Math.cos(delta * 10000 ** (-2 * i / d)))
    .reduce((a, b) => a + b, 0) / (d / 2),
}));
// The closed form against the map's first row (t = 0 against t′ = 0, 4, 8, …).
const rowError = Math.max(
  ...steps.map((t, k) => Math.abs(sim[k] - distance[t].similarity)),
);
if (rowError > 1e-3) throw new Error(`similarity map and closed form differ by ${rowError}`);
await book.figure({
  width: 720,
  height: 240,
  x: { label: "distance |t − t′| (log scale)", type: "log" },
  y: { label: "cosine similarity", grid: true, domain: [-0.3, 1] },
  marks: [
    Plot.ruleY([0], { strokeOpacity: 0.4 }),
    Plot.lineY(distance.slice(1), { x: "delta", y: "similarity", stroke: "currentColor" }),
  ],
}, {
  caption: `(2/d) Σ cos(Δ ω_i) for d = ${d}; it matches the map's first row to ${
    rowError.toExponential(0)
  }.`,
});

// %% [markdown]
// ## Self-attention
//
// A 3×3 convolution mixes each pixel with its eight neighbours; seeing across the image takes many
// layers. Self-attention mixes every position with every other in one step. The $N = H \cdot W$
// pixels of a feature map become $N$ tokens of $C$ channels; after a GroupNorm, three linear maps
// give queries, keys and values, and with $h$ heads of $d_h = C/h$ channels each
//
// $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d_h}}\Big) V,
// \qquad y = x + W_o \,\big[\mathrm{head}_1, \dots, \mathrm{head}_h\big].$$
//
// Row $n$ of the softmax says how much pixel $n$ draws from every other pixel. The price is the $N
// \times N$ matrix: $N^2$ weights per head and about $2N^2C$ multiply-adds, against $9NC^2$ for a
// 3×3 convolution. Doubling the resolution multiplies $N$ by 4 and attention's cost by 16. That is
// why DDPM used attention only at 16×16 of its 32×32 images, and why this network uses it only at
// 4×4, in four places (one encoder block, the middle, two decoder blocks).
//
// The table evaluates the formulas for this network's channels at each resolution, and times one
// attention layer on a batch of 32 on this machine (the median of 5 runs; other work on the machine
// makes these timings rough).

// %%
const heads = config.attentionHeads;
const attentionAt = new Set(
  architecture.blocks.filter((b) => b.kind === "attention").map((b) => b.resolution),
);
const batchSize = 32;
const costRows = [];
for (const level of architecture.levels) {
  const { resolution: r, channels: c } = level;
  const n = r * r;
  const store = new ParameterStore(1);
  const layer = new Attention(store, `probe.${r}`, c, heads, 8);
  const x = tf.randomNormal([batchSize, r, r, c], 0, 1, "float32", 1) as tf.Tensor4D;
  const times: number[] = [];
  for (let k = 0; k < 6; k++) {
    const start = performance.now();
    const y = layer.apply(x, { training: false, seed: 0 });
    await y.data();
    y.dispose();
    if (k > 0) times.push(performance.now() - start); // the first run warms up
  }
  times.sort((a, b) => a - b);
  x.dispose();
  for (const p of store.parameters) p.variable.dispose();
  costRows.push({
    resolution: `${r}×${r}`,
    "N = HW": n,
    C: c,
    "softmax weights hN²": format(heads * n * n),
    "QKᵀ and AV 2N²C": format(2 * n * n * c),
    "projections 4NC²": format(4 * n * c * c),
    "3×3 conv 9NC²": format(9 * n * c * c),
    [`ms, batch ${batchSize}`]: times[2].toFixed(1),
    "used here": attentionAt.has(r) ? "yes" : "no",
  });
}
await book.table(costRows, {
  caption: `One self-attention layer (h = ${heads} heads) at each resolution of the network: ` +
    "weights and multiply-adds per image, time per batch.",
  measuredColumns: [`ms, batch ${batchSize}`],
});

// %% [markdown]
// At 4×4 the attention matrix is small (16 tokens) and the layer costs less than the convolutions
// around it. At 16×16 the $N^2$ term has grown 256-fold; with 32 channels it is already four times
// the projections' work. At 64×64 (4,096 tokens) one head's matrix for one image has 16.8 million
// entries, which is why large models attend only at their lower resolutions, or work in a
// compressed latent space instead of on pixels.

// %% [markdown]
// ## Beside the course's ContextUnet
//
// DeepLearning.AI's course *How Diffusion Models Work* trains a smaller-looking but larger network,
// `ContextUnet`, on 16×16 sprites. `lib/core/models/context_unet.ts` rebuilds it layer for layer (its outputs match the
// course's PyTorch module to about $10^{-6}$) as `contextUnet()`. It differs from ours in most
// choices, as its diagram shows: two levels of stride-2 max pooling, then an average pool that
// collapses 4×4 to a single pixel and a transposed convolution that blows it back up; time and
// context enter only in the decoder, as a scalar $t/T$ through a small MLP, multiplying and
// shifting the features ($c \odot h + e_t$); BatchNorm instead of GroupNorm; no attention.

// %%
const course = contextUnet();
await book.figure(architectureDiagram(course.architecture(), { idPrefix: "course" }), {
  caption:
    `The course's ContextUnet (n_feat = 64, 5 context features), drawn from its architecture(): ${
      format(course.parameterCount())
    } parameters.`,
});

// %% [markdown]
// The course's `ResidualConvBlock` has a bug worth knowing about, because it silently changes what
// the network is. With `is_res=True` and different channel counts in and out (the very first block,
// 3 → 64 channels), its `forward` does this:
//
// ```python
// shortcut = nn.Conv2d(x.shape[1], x2.shape[1], kernel_size=1, stride=1, padding=0).to(x.device)
// out = shortcut(x) + x2
// ```
//
// The 1×1 convolution is created *inside* `forward`, with fresh random weights, on every call. It
// is never registered with the module, so the optimiser never sees it and the checkpoint never
// saves it: what should be a learnt projection is a new random projection of the input at every
// training step and at every sampling step. (The PyTorch module accordingly reports 1,480,771
// parameters; the missing 256 are that convolution's $3 \cdot 64$ weights and 64 biases.)
// `lib/core/models/context_unet.ts` creates the shortcut once, in the constructor, trains it and saves it, which is
// what the code meant.
//
// What the bug does is easy to measure: run our ContextUnet twice on the same input, redrawing the
// shortcut's weights before each call the way the course does, and compare the two outputs.

// %%
const shortcut = course.parameters.filter((p) => p.name.startsWith("initConv.shortcut."));
if (shortcut.length !== 2) throw new Error("expected the initial block's shortcut weight and bias");
const shortcutRandom = new Random(11);
const probeImages = dataset.toTensor(batchIndices);
const probeT = tf.tensor1d(batchIndices.map((_, k) => 100 * k), "int32");
const outputs: tf.Tensor4D[] = [];
for (let call = 0; call < 2; call++) {
  for (const p of shortcut) redraw(p, 3, shortcutRandom); // a 1×1 conv from 3 channels: fan-in 3
  outputs.push(course.apply(probeImages, probeT));
}
const relativeChange = tf.tidy(() =>
  tf.div(tf.norm(tf.sub(outputs[0], outputs[1])), tf.norm(outputs[0])).dataSync()[0]
);
tf.dispose([...outputs, probeImages, probeT]);
await book.metric("change between two identical calls", `${(100 * relativeChange).toFixed(0)} %`, {
  caption: "‖ε̂₁ − ε̂₂‖ / ‖ε̂₁‖, untrained ContextUnet, shortcut redrawn per call as in the course",
});

// %% [markdown]
// That is the untrained network, in which the first block's random term is as large as anything
// else. Training can shrink its share (by making the other branch of the block large), but it can
// never learn to use it, and the network is no longer a function of its inputs: two calls with the
// same $x_t$, $t$ and $c$ disagree. The two networks side by side, with a larger variant of ours:

// %%
const big = new UNet(unetConfig({
  imageSize: 32,
  baseChannels: 64,
  channelMultipliers: [1, 2, 2, 2],
  resBlocksPerLevel: 2,
  attentionResolutions: [8],
}));
const describe = (m: UNet) => {
  const a = m.architecture();
  return a.levels.map((l) => `${l.resolution}²×${l.channels}`).join(" → ");
};
const networks = ["this book's U-Net", "course ContextUnet", "32×32 variant of ours"];
const compare = (property: string, values: string[]) =>
  Object.fromEntries([["", property], ...networks.map((n, k) => [n, values[k]])]);
await book.table([
  compare("image", ["16×16", "16×16", "32×32"]),
  compare("parameters", [
    format(model.parameterCount()),
    `${format(course.parameterCount())} (course: 1,480,771)`,
    format(big.parameterCount()),
  ]),
  compare("resolutions × channels", [
    describe(model),
    "16²×64 → 8²×64 → 4²×128 → 1²×128",
    describe(big),
  ]),
  compare("time input", [
    "sinusoidal 32 → MLP → 128",
    "t/T → MLP → 128, 64",
    "sinusoidal 64 → MLP → 256",
  ]),
  compare("time enters", [
    "every residual block, added",
    "two decoder stages, c ⊙ h + e_t",
    "every residual block, added",
  ]),
  compare("normalisation", ["GroupNorm", "BatchNorm, GroupNorm", "GroupNorm"]),
  compare("self-attention", ["4×4 and middle", "none", "8×8 and middle"]),
  compare("output at initialisation", ["exactly 0", "random", "exactly 0"]),
  compare("1×1 shortcut", [
    "created once, trained",
    "course: redrawn per call; here: once",
    "created once, trained",
  ]),
], { caption: "Three networks, counted by this library." });
big.dispose();

// %% [markdown]
// The 32×32 variant (64 base channels, four levels, two blocks per level, attention at 8×8) is the
// layout of DDPM's CIFAR-10 network with half its channels, and so about a quarter of its 35.7 M
// parameters. It is eight times the size of ours and sees four times the pixels per image; the
// 16×16 network is the one a CPU trains to clean shapes in an hour or two (chapter 4).

// %% [markdown]
// ## Before training: what the network predicts
//
// The U-Net's last convolution starts with all weights and biases at zero, as in DDPM's and ADM's
// code, so an untrained network predicts $\hat\epsilon = 0$ for every input, exactly. That is a
// deliberate starting point: the loss $\|\epsilon - \hat\epsilon\|^2$ then starts at
// $\mathbb{E}\|\epsilon\|^2$, one per pixel, the best any prediction that ignores its input can do,
// and training only has to improve on it. A copy whose last convolution keeps an ordinary random
// initialisation shows the alternative.
//
// Below, six emoji are noised to $t = 300$ on the cosine schedule chapter 4 uses; the rows are
// $x_0$, $x_t$, the true noise $\epsilon$, the zero-initialised network's $\hat\epsilon$ and the
// randomly initialised one's. Noise is shown at half scale ($\epsilon / 2$) so that most of it fits
// the grey range.

// %% {#fig-initial-heads}
const schedule = noiseSchedule("cosine", T);
const favourites = ["heart", "grinning", "apple", "sunflower", "rocket", "pizza"];
const shown = favourites
  .map((name) => dataset.meta.findIndex((m) => m.shortName === name))
  .filter((i) => i >= 0);
const randomHead = new UNet(config);
const headRandom = new Random(5);
for (const p of randomHead.parameters.filter((p) => p.name.startsWith("output.conv."))) {
  redraw(p, 9 * config.baseChannels, headRandom); // a 3×3 conv from 32 channels: fan-in 288
}
const tShown = 300;
const panel = tf.tidy(() => {
  const x0 = dataset.toTensor(shown);
  const noise = tf.randomNormal(x0.shape, 0, 1, "float32", 21);
  const xt = addNoise(x0, noise, tShown, schedule);
  const t = tf.fill([shown.length], tShown, "int32") as tf.Tensor1D;
  const zeroPrediction = model.apply(xt, t);
  const randomPrediction = randomHead.apply(xt, t);
  return tf.concat([
    x0,
    xt,
    tf.div(noise, 2),
    tf.div(zeroPrediction, 2),
    tf.div(randomPrediction, 2),
  ]) as tf.Tensor4D;
});
await book.images(panel, {
  columns: shown.length,
  scale: 4,
  caption:
    "Rows: x₀; x_t at t = 300; ε/2; ε̂/2 of the network as initialised (exactly zero, grey); " +
    "ε̂/2 with a randomly initialised last layer.",
});
panel.dispose();

// %% [markdown]
// Over a larger batch at random timesteps, the loss both networks start from:

// %%
const lossCount = book.pick({ quick: 128, full: 512 });
const lossIndices = random.shuffle([...Array(dataset.count).keys()]).slice(0, lossCount);
const lossT = lossIndices.map(() => random.int(0, T));
const [zeroLoss, randomLoss, largest, largestRandom] = tf.tidy(() => {
  const x0 = dataset.toTensor(lossIndices);
  const noise = tf.randomNormal(x0.shape, 0, 1, "float32", 22);
  const t = tf.tensor1d(lossT, "int32");
  const xt = addNoise(x0, noise, t, schedule);
  const zeroPrediction = model.apply(xt, t);
  const randomPrediction = randomHead.apply(xt, t);
  return [
    tf.losses.meanSquaredError(noise, zeroPrediction),
    tf.losses.meanSquaredError(noise, randomPrediction),
    tf.max(tf.abs(zeroPrediction)),
    tf.max(tf.abs(randomPrediction)),
  ].map((v) => v.dataSync()[0]);
});
if (largest !== 0) throw new Error(`the zero-initialised output is not zero: ${largest}`);
await book.table([
  {
    "last convolution": "zero (as built)",
    "largest |ε̂|": largest,
    "MSE against ε": zeroLoss.toFixed(4),
  },
  {
    "last convolution": "random, U(−1/√288, 1/√288)",
    "largest |ε̂|": largestRandom.toFixed(2),
    "MSE against ε": randomLoss.toFixed(4),
  },
], {
  caption:
    `${lossCount} emoji at random t. The zero network's loss is the mean of ε² over the batch, ` +
    `1 up to sampling error.`,
});
randomHead.dispose();

// %% [markdown]
// The randomly initialised head is not pure noise either: its output is a faint, blurred copy of
// the emoji's outline (the bottom row of @fig-initial-heads), a random function of $x_t$ that adds its own variance to
// the error. Training would first have to unlearn it; the zero start skips that.
//
// Training must turn this zero into the noise: pull $\epsilon$ out of $x_t$ when the image is
// mostly noise, find the faint grain on a sharp image when $t$ is small, and use the time embedding
// to know which of the two it faces. Chapter 4 trains exactly this network to do it.
//
// ## What to take away
//
// - The denoiser maps $(x_t, t)$ to a tensor of the image's shape. A U-Net gives it a view of the
//   whole image (by downsampling) without losing detail (by skip connections).
// - $t$ enters as a sinusoidal embedding whose similarities depend only on $t - t'$, turned by an
//   MLP into a per-channel shift inside every residual block.
// - Self-attention costs $O(N^2)$ in the number of pixels: use it at low resolution.
// - Parameters live where channels are many; computation lives where resolution is high.
// - The zero-initialised output makes training start from the loss of predicting nothing:
//   $\mathbb{E}\|\epsilon\|^2$, one per pixel.
// - A layer created inside `forward` is not part of the model; the course's ContextUnet has one.

// %%
model.dispose();
course.dispose();
