/**
 * Building blocks of the denoising networks: named parameters on `tf.Variable`s and plain
 * TensorFlow.js ops, images in NHWC layout.
 *
 * Every layer is a small class: its constructor creates its parameters once (in a
 * {@link ParameterStore}, under a dotted name such as `down.0.res.1.conv1`), and `apply`
 * runs it. Nothing here builds a graph or hides state: a forward pass is ordinary tfjs
 * code that a reader can step through.
 *
 * Initialisation follows PyTorch's defaults, so that parameter counts and scales match the
 * papers' reference code: weights and biases of a layer with fan-in `f` are drawn from
 * U(−1/√f, 1/√f); normalisation scales start at 1 and shifts at 0.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { opSeed, Random } from "../random.ts";
import { upsampleNearest2x } from "./upsample.ts";
import { fusedGroupNorm, groupNormSiLU } from "./group_norm_silu.ts";
import { linear } from "./linear.ts";
import { conv2dSame } from "./conv.ts";
import { type LoraConfig, type LoraLayer, LoraSet } from "./lora.ts";

export { groupNormSiLU };

/** A parameter (or buffer) with its dotted name. */
export interface NamedVariable {
  /** Dotted name, unique within a model, e.g. `mid.attn.q.weight`. */
  name: string;
  /** The variable holding the values. */
  variable: tf.Variable;
}

/** One layer as the store records it, for summaries. */
export interface LayerRecord {
  /** Dotted name of the layer. */
  name: string;
  /** Kind of layer: `Conv2d`, `Linear`, `GroupNorm`, … */
  type: string;
  /** The layer's trainable parameters. */
  parameters: NamedVariable[];
  /** Position of the layer in creation order (seeds its dropout). */
  index: number;
}

/** A pending update of a buffer (BatchNorm running statistics), applied by the caller. */
export interface BufferUpdate {
  /** The buffer to update. */
  variable: tf.Variable;
  /** Its new value (kept outside any tidy: the caller assigns and disposes it). */
  value: tf.Tensor;
}

/** State threaded through a forward pass. */
export interface ForwardContext {
  /** Training mode: dropout on, BatchNorm from batch statistics. */
  training: boolean;
  /** Base seed of this pass's dropout masks (each layer adds its own index). */
  seed: number;
  /** When given, layers append `{name, outputShape}` here (used by `summary()`). */
  trace?: { name: string; outputShape: number[] }[];
  /** When given (training), BatchNorm layers push their running-statistics updates here. */
  updates?: BufferUpdate[];
  /**
   * When given, cross-attention layers store their weights A = softmax(QKᵀ/√d) here by layer
   * name, [N, heads, L_q, L_k] (kept: the caller disposes them).
   */
  attentionMaps?: Map<string, tf.Tensor4D>;
}

/** The context of an inference pass: no dropout, running statistics. */
export const INFERENCE: ForwardContext = { training: false, seed: 0 };

/** Append `{name, outputShape}` to the pass's trace, when it has one. */
export function record(ctx: ForwardContext | undefined, name: string, y: tf.Tensor): void {
  if (ctx?.trace) ctx.trace.push({ name, outputShape: y.shape.slice() });
}

/**
 * Creates and owns a model's parameters, in creation order, from one seed.
 *
 * Initial values come from {@link Random}, so the same seed gives the same network on
 * every backend.
 */
export class ParameterStore {
  /** Trainable parameters in creation order. */
  readonly parameters: NamedVariable[] = [];
  /** Non-trainable state (BatchNorm running mean and variance). */
  readonly buffers: NamedVariable[] = [];
  /** Layers in creation order. */
  readonly layers: LayerRecord[] = [];
  /** The network's LoRA, when its configuration has one (lib/core/nn/lora.ts). */
  readonly lora: LoraSet | null;
  readonly #rng: Random;
  readonly #trainable: boolean;
  readonly #names = new Set<string>();

  /**
   * @param seed seed of the initial values
   * @param trainable false for a shadow copy (EMA weights) that gradients must never touch
   * @param lora the low-rank update its linear layers get, if any
   */
  constructor(seed: number, trainable = true, lora?: LoraConfig) {
    this.#rng = new Random(seed);
    this.#trainable = trainable;
    this.lora = lora ? new LoraSet(lora, seed) : null;
  }

  /** Register a layer named `name` of kind `type`. */
  layer(name: string, type: string): LayerRecord {
    const layer = { name, type, parameters: [], index: this.layers.length };
    this.layers.push(layer);
    return layer;
  }

  /**
   * A parameter drawn from U(−b, b) (`{uniform: b}`) or N(0, σ²) (`{normal: σ}`), or constant,
   * from the store's generator unless `rng` is given.
   */
  parameter(
    layer: LayerRecord,
    localName: string,
    shape: number[],
    init: { uniform: number } | { normal: number } | { constant: number },
    rng: Random = this.#rng,
  ): tf.Variable {
    const name = `${layer.name}.${localName}`;
    if (this.#names.has(name)) throw new Error(`Parameter "${name}" is defined twice.`);
    this.#names.add(name);
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if ("uniform" in init) {
      const b = init.uniform;
      for (let i = 0; i < size; i++) values[i] = (2 * rng.uniform() - 1) * b;
    } else if ("normal" in init) {
      for (let i = 0; i < size; i++) values[i] = rng.normal() * init.normal;
    } else if (init.constant !== 0) values.fill(init.constant);
    const variable = tf.tidy(() => tf.variable(tf.tensor(values, shape), this.#trainable));
    const entry = { name, variable };
    this.parameters.push(entry);
    layer.parameters.push(entry);
    return variable;
  }

  /** A non-trainable buffer filled with `value`. */
  buffer(layer: LayerRecord, localName: string, shape: number[], value: number): tf.Variable {
    const name = `${layer.name}.${localName}`;
    if (this.#names.has(name)) throw new Error(`Buffer "${name}" is defined twice.`);
    this.#names.add(name);
    const variable = tf.tidy(() => tf.variable(tf.fill(shape, value), false));
    this.buffers.push({ name, variable });
    return variable;
  }
}

/** SiLU (swish): silu(x) = x · σ(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/** GELU, exact form as PyTorch's default: gelu(x) = x · Φ(x) = ½x(1 + erf(x/√2)). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** Dropout with a per-layer seed, active only in training: y = x · m / (1 − p), m ~ Bernoulli(1 − p). */
export function dropout(
  x: tf.Tensor,
  rate: number,
  ctx: ForwardContext,
  layer: LayerRecord,
): tf.Tensor {
  if (!ctx.training || rate <= 0) return x;
  return tf.dropout(x, rate, undefined, opSeed(ctx.seed + 7919 * (layer.index + 1)));
}

/** Options of {@link Conv2d}. */
export interface Conv2dOptions {
  /** Kernel size k (square, default 3). */
  kernelSize?: number;
  /** Stride (default 1; 2 halves the resolution). */
  stride?: number;
  /** Start with all weights and the bias at zero (the U-Net's output layer). */
  zeroInit?: boolean;
}

/**
 * 2-D convolution with bias, "same" padding, fused with its activation:
 *
 *   y[n, i, j, o] = b[o] + Σ_{u,v,c} W[u, v, c, o] · x[n, s·i + u − p, s·j + v − p, c].
 *
 * Filter layout [k, k, in, out] (TensorFlow's HWIO).
 */
export class Conv2d {
  /** The filter W, shape [k, k, in, out]. */
  readonly filter: tf.Variable;
  /** The bias b, shape [out]. */
  readonly bias: tf.Variable;
  readonly #stride: number;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    options: Conv2dOptions = {},
  ) {
    const k = options.kernelSize ?? 3;
    this.#stride = options.stride ?? 1;
    const layer = store.layer(name, "Conv2d");
    const bound = 1 / Math.sqrt(inChannels * k * k);
    const init = options.zeroInit ? { constant: 0 } : { uniform: bound };
    this.filter = store.parameter(layer, "filter", [k, k, inChannels, outChannels], init);
    this.bias = store.parameter(layer, "bias", [outChannels], init);
  }

  /**
   * y = act(conv(x, W) + b): at stride 1 without an activation through conv.ts (one kernel each
   * way where the backend has it), else TensorFlow.js's fused convolution.
   */
  apply(
    x: tf.Tensor4D,
    ctx?: ForwardContext,
    activation: "linear" | "relu" = "linear",
  ): tf.Tensor4D {
    const filter = this.filter as tf.Tensor4D;
    const y = this.#stride === 1 && activation === "linear"
      ? conv2dSame(x, filter, this.bias as tf.Tensor1D)
      : tf.fused.conv2d({
        x,
        filter,
        bias: this.bias,
        strides: this.#stride,
        pad: "same",
        activation,
      });
    record(ctx, this.name, y);
    return y;
  }
}

/**
 * Transposed convolution whose kernel equals its stride (k = s), as PyTorch's
 * `ConvTranspose2d(in, out, k, k)`: every input pixel becomes a k×k patch,
 *
 *   y[n, k·i + u, k·j + v, o] = b[o] + Σ_c x[n, i, j, c] · W[c, u, v, o].
 *
 * Patches do not overlap, so this is one matrix product and a reshape: exact gradients and
 * fast on every backend.
 */
export class PatchConvTranspose2d {
  /** W, shape [in, k·k·out] (the PyTorch weight [in, out, k, k] with axes reordered). */
  readonly weight: tf.Variable;
  /** b, shape [out]. */
  readonly bias: tf.Variable;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
  ) {
    const layer = store.layer(name, "ConvTranspose2d");
    const k = kernelSize;
    // PyTorch computes the fan-in of a transposed convolution from weight.size(1) = out.
    const bound = 1 / Math.sqrt(outChannels * k * k);
    this.weight = store.parameter(layer, "weight", [inChannels, k * k * outChannels], {
      uniform: bound,
    });
    this.bias = store.parameter(layer, "bias", [outChannels], { uniform: bound });
  }

  /** x [N, H, W, in] → y [N, kH, kW, out]. */
  apply(x: tf.Tensor4D, ctx?: ForwardContext): tf.Tensor4D {
    const [n, h, w, c] = x.shape;
    const k = this.kernelSize;
    const o = this.outChannels;
    const y = tf.tidy(() => {
      const patches = tf.matMul(tf.reshape(x, [n * h * w, c]), this.weight as tf.Tensor2D);
      const grid = tf.transpose(tf.reshape(patches, [n, h, w, k, k, o]), [0, 1, 3, 2, 4, 5]);
      return tf.add(tf.reshape(grid, [n, h * k, w * k, o]), this.bias) as tf.Tensor4D;
    });
    record(ctx, this.name, y);
    return y;
  }
}

/**
 * Fully connected layer: y = act(x·W + b), W of shape [in, out]; with a LoRA on it,
 * y = act(x·W + b + s(α/r)·(xA)B) (lib/core/nn/lora.ts).
 */
export class Linear {
  /** W, shape [in, out]. */
  readonly weight: tf.Variable;
  /** b, shape [out]. */
  readonly bias: tf.Variable;
  /** The low-rank update of W, when the network's LoRA targets this layer. */
  readonly lora: LoraLayer | null;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { zeroInit?: boolean } = {},
  ) {
    const layer = store.layer(name, "Linear");
    const init = options.zeroInit ? { constant: 0 } : { uniform: 1 / Math.sqrt(inFeatures) };
    this.weight = store.parameter(layer, "weight", [inFeatures, outFeatures], init);
    this.bias = store.parameter(layer, "bias", [outFeatures], init);
    this.lora = store.lora?.adapt(
      name,
      this.weight,
      (localName, shape, init, rng) => store.parameter(layer, localName, shape, init, rng),
    ) ?? null;
  }

  /** x [B, in] → [B, out]. */
  apply(
    x: tf.Tensor2D,
    ctx?: ForwardContext,
    activation: "linear" | "relu" = "linear",
  ): tf.Tensor2D {
    if (this.lora && this.lora.set.activeScale !== 0) {
      const y = tf.tidy(() => {
        const z = this.lora!.addUpdate(
          x,
          linear(x, this.weight as tf.Tensor2D, this.bias as tf.Tensor1D),
        );
        return activation === "relu" ? tf.relu(z) : z;
      });
      record(ctx, this.name, y);
      return y;
    }
    const y = activation === "linear"
      ? linear(x, this.weight as tf.Tensor2D, this.bias as tf.Tensor1D)
      : tf.fused.matMul({
        a: x,
        b: this.weight as tf.Tensor2D,
        bias: this.bias,
        activation,
      }) as tf.Tensor2D;
    record(ctx, this.name, y);
    return y;
  }
}

/**
 * Group normalisation (Wu & He, 2018) over NHWC images:
 *
 *   y = γ · (x − μ_g) / √(σ²_g + ε) + β,
 *
 * with μ_g, σ²_g the mean and variance of each sample's channel group g over H, W and the
 * group's channels.
 */
export class GroupNorm {
  /** Scale γ, shape [C]. */
  readonly gamma: tf.Variable;
  /** Shift β, shape [C]. */
  readonly beta: tf.Variable;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly channels: number,
    readonly groups: number,
    readonly epsilon = 1e-5,
  ) {
    if (channels % groups !== 0) {
      throw new Error(
        `GroupNorm "${name}": ${channels} channels do not split into ${groups} groups; ` +
          `choose channel counts divisible by the group count.`,
      );
    }
    const layer = store.layer(name, "GroupNorm");
    this.gamma = store.parameter(layer, "gamma", [channels], { constant: 1 });
    this.beta = store.parameter(layer, "beta", [channels], { constant: 0 });
  }

  /** Normalise x [N, H, W, C]: one kernel each way where the backend has the fused ones. */
  apply(x: tf.Tensor4D, ctx?: ForwardContext): tf.Tensor4D {
    const [n, h, w, c] = x.shape;
    const y = fusedGroupNorm(x, this.gamma, this.beta, this.groups, this.epsilon) ?? tf.tidy(() => {
      const xg = tf.reshape(x, [n, h * w, this.groups, c / this.groups]);
      const { mean, variance } = tf.moments(xg, [1, 3], true);
      const normalised = tf.mul(tf.sub(xg, mean), tf.rsqrt(tf.add(variance, this.epsilon)));
      return tf.add(
        tf.mul(tf.reshape(normalised, [n, h, w, c]), this.gamma),
        this.beta,
      ) as tf.Tensor4D;
    });
    record(ctx, this.name, y);
    return y;
  }

  /** SiLU(GroupNorm(x)) in one step with a hand-written gradient: see {@link groupNormSiLU}. */
  applySiLU(x: tf.Tensor4D, ctx?: ForwardContext): tf.Tensor4D {
    const y = groupNormSiLU(x, this.gamma, this.beta, this.groups, this.epsilon);
    record(ctx, this.name, y);
    return y;
  }
}

/**
 * Batch normalisation (Ioffe & Szegedy, 2015), PyTorch semantics:
 *
 *   y = γ · (x − μ) / √(σ² + ε) + β,
 *
 * with μ, σ² the batch's per-channel mean and (biased) variance in training, and the running
 * averages μ̂ ← (1 − m)μ̂ + mμ, σ̂² ← (1 − m)σ̂² + m·σ²·n/(n − 1) at inference (m = 0.1).
 * Used by the course preset only: it makes a sample's output depend on its batch.
 */
export class BatchNorm {
  /** Scale γ, shape [C]. */
  readonly gamma: tf.Variable;
  /** Shift β, shape [C]. */
  readonly beta: tf.Variable;
  /** Running mean μ̂ (buffer). */
  readonly runningMean: tf.Variable;
  /** Running variance σ̂² (buffer). */
  readonly runningVariance: tf.Variable;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly channels: number,
    readonly momentum = 0.1,
    readonly epsilon = 1e-5,
  ) {
    const layer = store.layer(name, "BatchNorm");
    this.gamma = store.parameter(layer, "gamma", [channels], { constant: 1 });
    this.beta = store.parameter(layer, "beta", [channels], { constant: 0 });
    this.runningMean = store.buffer(layer, "runningMean", [channels], 0);
    this.runningVariance = store.buffer(layer, "runningVariance", [channels], 1);
  }

  /** Normalise x [N, H, W, C]; in training, push running-statistics updates to `ctx.updates`. */
  apply(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    const y = tf.tidy(() => {
      let mean: tf.Tensor;
      let variance: tf.Tensor;
      if (ctx.training) {
        ({ mean, variance } = tf.moments(x, [0, 1, 2]));
        if (ctx.updates) {
          const count = x.shape[0] * x.shape[1] * x.shape[2];
          const m = this.momentum;
          const unbiased = tf.mul(variance, count / Math.max(count - 1, 1));
          const newMean = tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m));
          const newVar = tf.add(tf.mul(this.runningVariance, 1 - m), tf.mul(unbiased, m));
          ctx.updates.push({ variable: this.runningMean, value: tf.keep(newMean) });
          ctx.updates.push({ variable: this.runningVariance, value: tf.keep(newVar) });
        }
      } else {
        mean = this.runningMean;
        variance = this.runningVariance;
      }
      const scale = tf.mul(tf.rsqrt(tf.add(variance, this.epsilon)), this.gamma);
      return tf.add(tf.mul(tf.sub(x, mean), scale), this.beta) as tf.Tensor4D;
    });
    record(ctx, this.name, y);
    return y;
  }
}

/** Options of {@link ResidualBlock}. */
export interface ResidualBlockOptions {
  /** Size of the (time + context) embedding added in the block; 0 for a block without one. */
  embeddingDim: number;
  /** GroupNorm groups. */
  groups: number;
  /** Dropout rate before the second convolution. */
  dropout: number;
}

/**
 * The DDPM/ADM residual block with the embedding added between its two convolutions:
 *
 *   h = Conv₁(SiLU(GN₁(x))) + Linear(SiLU(emb))
 *   y = skip(x) + Conv₂(Dropout(SiLU(GN₂(h))))
 *
 * where skip is the identity when the channel counts agree and a 1×1 convolution otherwise. With
 * `embeddingDim` 0 the block has no embedding term (the autoencoder's blocks, which see no t).
 */
export class ResidualBlock {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly embedding: Linear | null;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly skip: Conv2d | null;
  readonly #dropoutRate: number;
  readonly #dropoutLayer: LayerRecord;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    options: ResidualBlockOptions,
  ) {
    this.norm1 = new GroupNorm(store, `${name}.norm1`, inChannels, options.groups);
    this.conv1 = new Conv2d(store, `${name}.conv1`, inChannels, outChannels);
    this.embedding = options.embeddingDim > 0
      ? new Linear(store, `${name}.embedding`, options.embeddingDim, outChannels)
      : null;
    this.norm2 = new GroupNorm(store, `${name}.norm2`, outChannels, options.groups);
    this.#dropoutRate = options.dropout;
    this.#dropoutLayer = store.layer(`${name}.dropout`, "Dropout");
    this.conv2 = new Conv2d(store, `${name}.conv2`, outChannels, outChannels);
    this.skip = inChannels === outChannels
      ? null
      : new Conv2d(store, `${name}.skip`, inChannels, outChannels, { kernelSize: 1 });
  }

  /**
   * x [N, H, W, in] and SiLU(emb) [N, embeddingDim] (null for a block without an embedding) →
   * [N, H, W, out]. The caller applies the SiLU, once for all of a network's blocks (the same
   * values as each block's own, in one op).
   */
  apply(x: tf.Tensor4D, embActivated: tf.Tensor2D | null, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv1.apply(this.norm1.applySiLU(x, ctx), ctx);
      if (this.embedding) {
        if (!embActivated) throw new Error(`ResidualBlock "${this.name}" needs its embedding`);
        const e = this.embedding.apply(embActivated, ctx);
        h = tf.add(h, tf.reshape(e, [-1, 1, 1, this.outChannels]));
      }
      h = this.norm2.applySiLU(h, ctx);
      h = this.conv2.apply(
        dropout(h, this.#dropoutRate, ctx, this.#dropoutLayer) as tf.Tensor4D,
        ctx,
      );
      const y = tf.add(this.skip ? this.skip.apply(x, ctx) : x, h) as tf.Tensor4D;
      record(ctx, this.name, y);
      return y;
    });
  }
}

/**
 * 2×2 max pooling, y[n, i, j, c] = max_{a,b∈{0,1}} x[n, 2i + a, 2j + b, c], with the gradient
 * of a max over the window's axes,
 *
 *   ∂x[n, 2i + a, 2j + b, c] = ∂y[n, i, j, c] · [x[n, 2i + a, 2j + b, c] = y[n, i, j, c]]
 *
 * (every element equal to its window's maximum gets the whole of ∂y, as `tf.max`'s gradient
 * gives it). The forward pass is the backend's `MaxPool` (a max is exact, so it is the reshaped
 * `tf.max` to the bit, at a fraction of its cost: TensorFlow reduces over the two strided axes
 * slowly); the backward is element-wise, avoiding the `MaxPoolGrad` kernel (wrong on `wasm` for
 * batches larger than one, and it gives ∂y to one maximum of a tied window, not to each).
 */
export function maxPool2x(x: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const windows = [n, h / 2, 2, w / 2, 2, c];
  const pooled = [n, h / 2, 1, w / 2, 1, c];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor4D;
    const save = args[1] as tf.GradSaveFunc;
    const y = tf.maxPool(input, 2, 2, "valid");
    save([input, y]);
    const gradFunc = (dy: tf.Tensor, [x, y]: tf.Tensor[]) => {
      const isMax = tf.cast(tf.equal(tf.reshape(x, windows), tf.reshape(y, pooled)), dy.dtype);
      return tf.reshape(tf.mul(tf.reshape(dy, pooled), isMax), x.shape);
    };
    return { value: y, gradFunc };
  });
  return op(x) as tf.Tensor4D;
}

/** Halve the resolution with a stride-2 3×3 convolution (DDPM's downsampling). */
export class Downsample {
  readonly conv: Conv2d;
  constructor(store: ParameterStore, readonly name: string, channels: number) {
    this.conv = new Conv2d(store, `${name}.conv`, channels, channels, { stride: 2 });
  }
  /** [N, H, W, C] → [N, H/2, W/2, C]. */
  apply(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return this.conv.apply(x, ctx);
  }
}

/**
 * Double the resolution: nearest-neighbour upsampling (reshape and tile, exact gradients on
 * every backend), then a 3×3 convolution.
 */
export class Upsample {
  readonly conv: Conv2d;
  constructor(store: ParameterStore, readonly name: string, channels: number) {
    this.conv = new Conv2d(store, `${name}.conv`, channels, channels);
  }
  /** [N, H, W, C] → [N, 2H, 2W, C]. */
  apply(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.conv.apply(upsampleNearest2x(x), ctx));
  }
}
