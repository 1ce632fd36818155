/**
 * The denoising U-Net ε_θ(x_t, t, c) of DDPM (Ho et al., 2020) and its successors, and a
 * preset reproducing the DeepLearning.AI course "How Diffusion Models Work"'s ContextUnet.
 *
 * Both networks map a batch of noisy images x_t [N, H, W, C] (NHWC), their timesteps t
 * (integers 0…T−1, index t being the paper's step t + 1) and an optional context vector c
 * [N, contextDim] to a tensor of the images' shape: the predicted noise ε (or x₀, or v,
 * depending on how it was trained).
 *
 * ```ts
 * const model = new UNet({ imageSize: 16, baseChannels: 32, channelMultipliers: [1, 2, 2] });
 * const eps = model.apply(xt, t); // same shape as xt
 * ```
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  Attention,
  BatchNorm,
  type BufferUpdate,
  Conv2d,
  Downsample,
  type ForwardContext,
  gelu,
  GroupNorm,
  Linear,
  maxPool2x,
  type NamedVariable,
  ParameterStore,
  PatchConvTranspose2d,
  ResidualBlock,
  silu,
  timestepEmbedding,
  Upsample,
} from "../nn/layers.ts";

/** Options of one forward pass. */
export interface ApplyOptions {
  /** Context c [N, contextDim] (one-hot class, text embedding); zeros when absent. */
  context?: tf.Tensor2D;
  /** Training mode: dropout on, BatchNorm on batch statistics (default false). */
  training?: boolean;
  /** Seed of the dropout masks of this pass (training only). */
  seed?: number;
  /** Collects BatchNorm running-statistics updates in training (the caller assigns them). */
  updates?: BufferUpdate[];
}

/** One row of {@link DiffusionModel.summary}: a layer with parameters. */
export interface LayerSummary {
  /** Dotted layer name. */
  name: string;
  /** Layer kind (`Conv2d`, `Linear`, `GroupNorm`, …). */
  type: string;
  /** Shape of the layer's main weight (first parameter). */
  shape: number[];
  /** Number of parameters of the layer. */
  params: number;
  /** Output shape for a batch of one. */
  outputShape: number[];
}

/** A block of the network, as a node of an architecture diagram. */
export interface ArchitectureBlock {
  /** Unique id (the block's parameter-name prefix). */
  id: string;
  /** What the block does. */
  kind:
    | "input"
    | "conv"
    | "resblock"
    | "attention"
    | "downsample"
    | "upsample"
    | "concat"
    | "embedding"
    | "output";
  /** Where it sits: stem, encoder, middle, decoder, head or embedding. */
  path: "stem" | "encoder" | "middle" | "decoder" | "head" | "embedding";
  /** Resolution level (0 = full resolution); −1 for embeddings. */
  level: number;
  /** Spatial size of the block's output (0 for vectors). */
  resolution: number;
  /** Channels in. */
  inChannels: number;
  /** Channels out. */
  outChannels: number;
}

/** A machine-readable description of a network, enough to draw its diagram. */
export interface Architecture {
  /** Which network. */
  kind: ModelConfig["kind"];
  /** Image side in pixels. */
  imageSize: number;
  /** Image channels in. */
  inChannels: number;
  /** Channels out. */
  outChannels: number;
  /** The resolution levels: level 0 is full resolution, each next one half as large. */
  levels: { level: number; resolution: number; channels: number }[];
  /** Blocks in execution order. */
  blocks: ArchitectureBlock[];
  /** Data flow: the main path, skip connections encoder → decoder, embeddings into blocks. */
  edges: { from: string; to: string; kind: "main" | "skip" | "embedding" }[];
  /** Total trainable parameters. */
  parameterCount: number;
}

/** What training, sampling and checkpoints need from a network. */
export interface DiffusionModel {
  /** The full configuration (enough to rebuild the network with {@link createModel}). */
  readonly config: ModelConfig;
  /** Trainable parameters in a fixed order. */
  readonly parameters: readonly NamedVariable[];
  /** Non-trainable state (BatchNorm running statistics; empty for the U-Net). */
  readonly buffers: readonly NamedVariable[];
  /** The network's output for x_t [N, H, W, C] at timesteps t [N]. */
  apply(x: tf.Tensor4D, t: tf.Tensor1D, options?: ApplyOptions): tf.Tensor4D;
  /** Number of trainable parameters. */
  parameterCount(): number;
  /** Per-layer table: name, type, weight shape, parameters, output shape. */
  summary(): LayerSummary[];
  /** Levels, blocks, channels, resolutions and edges, for a diagram. */
  architecture(): Architecture;
  /** Free every variable. */
  dispose(): void;
}

/** Configuration of the {@link UNet}. */
export interface UNetConfig {
  /** Discriminates the model family. */
  kind: "unet";
  /** Image side H = W (divisible by 2^(levels − 1)). */
  imageSize: number;
  /** Image channels. */
  inChannels: number;
  /** Output channels (the image's: ε, x₀ and v all have its shape). */
  outChannels: number;
  /** Channels at full resolution. */
  baseChannels: number;
  /** Channel multiplier per resolution level, e.g. [1, 2, 2] for 16 → 8 → 4. */
  channelMultipliers: number[];
  /** Residual blocks per level in the encoder (the decoder has one more). */
  resBlocksPerLevel: number;
  /** Resolutions (in pixels) with self-attention after each residual block. */
  attentionResolutions: number[];
  /** Attention heads. */
  attentionHeads: number;
  /** Self-attention between the two middle residual blocks. */
  middleAttention: boolean;
  /** Dropout rate in the residual blocks. */
  dropout: number;
  /** GroupNorm groups. */
  groups: number;
  /** Width of the time (+ context) embedding (default 4 · baseChannels). */
  timeEmbeddingDim: number;
  /** Size of the context vector c; 0 for an unconditional network. */
  contextDim: number;
  /** Seed of the initial weights. */
  seed: number;
}

/** Configuration of the course preset {@link ContextUNet}. */
export interface ContextUNetConfig {
  /** Discriminates the model family. */
  kind: "contextUnet";
  /** Image side (16 in the course; 16, 20, 24 or 28). */
  imageSize: number;
  /** Image channels (3). */
  inChannels: number;
  /** Feature maps n_feat (64 in the course). */
  nFeat: number;
  /** Context features n_cfeat (5 in the course: hero, non-hero, food, spell, side-facing). */
  nCFeat: number;
  /** Training timesteps T: the network sees time as (t + 1)/T, the course's t/T. */
  T: number;
  /** Seed of the initial weights. */
  seed: number;
}

/** Any network configuration. */
export type ModelConfig = UNetConfig | ContextUNetConfig;

/** Fill a partial U-Net configuration with defaults and check it. */
export function unetConfig(partial: Partial<UNetConfig> = {}): UNetConfig {
  const baseChannels = partial.baseChannels ?? 32;
  const config: UNetConfig = {
    kind: "unet",
    imageSize: partial.imageSize ?? 16,
    inChannels: partial.inChannels ?? 3,
    outChannels: partial.outChannels ?? partial.inChannels ?? 3,
    baseChannels,
    channelMultipliers: partial.channelMultipliers ?? [1, 2, 2],
    resBlocksPerLevel: partial.resBlocksPerLevel ?? 2,
    attentionResolutions: partial.attentionResolutions ?? [],
    attentionHeads: partial.attentionHeads ?? 4,
    middleAttention: partial.middleAttention ?? true,
    dropout: partial.dropout ?? 0,
    groups: partial.groups ?? 8,
    timeEmbeddingDim: partial.timeEmbeddingDim ?? 4 * baseChannels,
    contextDim: partial.contextDim ?? 0,
    seed: partial.seed ?? 0,
  };
  const levels = config.channelMultipliers.length;
  if (levels < 1) throw new Error("unetConfig: channelMultipliers needs at least one level.");
  if (config.imageSize % 2 ** (levels - 1) !== 0) {
    throw new Error(
      `unetConfig: imageSize ${config.imageSize} cannot be halved ${levels - 1} times; ` +
        `use a size divisible by ${2 ** (levels - 1)} or fewer channelMultipliers.`,
    );
  }
  for (const m of config.channelMultipliers) {
    if ((m * baseChannels) % config.groups !== 0) {
      throw new Error(
        `unetConfig: ${m * baseChannels} channels (multiplier ${m}) are not divisible by ` +
          `groups = ${config.groups}; change baseChannels or groups.`,
      );
    }
  }
  if (config.baseChannels % 2 !== 0) {
    throw new Error(
      `unetConfig: baseChannels must be even (sinusoidal embedding), got ${baseChannels}.`,
    );
  }
  return config;
}

/** Fill a partial course-preset configuration with the course's values. */
export function contextUnetConfig(partial: Partial<ContextUNetConfig> = {}): ContextUNetConfig {
  const config: ContextUNetConfig = {
    kind: "contextUnet",
    imageSize: partial.imageSize ?? 16,
    inChannels: partial.inChannels ?? 3,
    nFeat: partial.nFeat ?? 64,
    nCFeat: partial.nCFeat ?? 5,
    T: partial.T ?? 500,
    seed: partial.seed ?? 0,
  };
  const s = config.imageSize;
  if (s % 4 !== 0 || s < 16 || s > 28) {
    throw new Error(
      `contextUnetConfig: imageSize ${s} is not supported; the course's network needs a side ` +
        `divisible by 4 between 16 and 28 (its 4×4 average pool must leave one pixel).`,
    );
  }
  if (config.nFeat % 8 !== 0) {
    throw new Error(
      `contextUnetConfig: nFeat must be divisible by 8 (GroupNorm(8, ·)), got ${config.nFeat}.`,
    );
  }
  return config;
}

/** Fill a partial configuration of either kind (by its `kind`) with that kind's defaults. */
export function completeModelConfig(
  partial: Partial<ModelConfig> & { kind: ModelConfig["kind"] },
): ModelConfig {
  return partial.kind === "contextUnet"
    ? contextUnetConfig(partial as Partial<ContextUNetConfig>)
    : unetConfig(partial as Partial<UNetConfig>);
}

/** Build the network a configuration describes (as stored in a checkpoint). */
export function createModel(
  config: ModelConfig,
  options: { trainable?: boolean } = {},
): DiffusionModel {
  switch (config.kind) {
    case "unet":
      return new UNet(config, options);
    case "contextUnet":
      return new ContextUNet(config, options);
    default:
      throw new Error(
        `createModel: unknown model kind "${(config as { kind: string }).kind}"; ` +
          `expected "unet" or "contextUnet".`,
      );
  }
}

function countParameters(list: readonly NamedVariable[]): number {
  return list.reduce((sum, p) => sum + p.variable.size, 0);
}

/**
 * What both networks share: the {@link ParameterStore} their layers create their variables in
 * (its creation order is the order of `parameters`, and its names are those a checkpoint
 * stores), and the methods of {@link DiffusionModel} that need only the store and a forward
 * pass ε_θ(x_t, t, c).
 */
abstract class StoredNetwork<C extends ModelConfig> implements DiffusionModel {
  /** The full configuration. */
  readonly config: C;
  readonly #store: ParameterStore;

  /**
   * @param config the complete configuration (its seed initialises the parameters)
   * @param trainable false for a copy that holds EMA weights
   */
  constructor(config: C, trainable: boolean) {
    this.config = config;
    this.#store = new ParameterStore(config.seed, trainable);
  }

  /** The store the subclass's layers are created in, in order. */
  protected get store(): ParameterStore {
    return this.#store;
  }

  /** Trainable parameters in creation order. */
  get parameters(): readonly NamedVariable[] {
    return this.#store.parameters;
  }

  /** BatchNorm running means and variances (none in the U-Net). */
  get buffers(): readonly NamedVariable[] {
    return this.#store.buffers;
  }

  /** ε_θ(x_t, t[, c]) — see the class comment. */
  apply(x: tf.Tensor4D, t: tf.Tensor1D, options: ApplyOptions = {}): tf.Tensor4D {
    const ctx: ForwardContext = {
      training: options.training ?? false,
      seed: options.seed ?? 0,
      updates: options.updates,
    };
    return tf.tidy(() => this.forward(x, t, options.context, ctx));
  }

  /** The forward pass with an explicit context (used by `apply` and `summary`). */
  abstract forward(
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    context: tf.Tensor2D | undefined,
    ctx: ForwardContext,
  ): tf.Tensor4D;

  /** Levels, blocks and edges for a diagram of the network. */
  abstract architecture(): Architecture;

  /** Number of trainable parameters. */
  parameterCount(): number {
    return countParameters(this.#store.parameters);
  }

  /** Per-layer table (runs one traced forward pass on a batch of one). */
  summary(): LayerSummary[] {
    const config = this.config;
    const trace: { name: string; outputShape: number[] }[] = [];
    tf.tidy(() => {
      const x = tf.zeros([1, config.imageSize, config.imageSize, config.inChannels]) as tf.Tensor4D;
      const dim = config.kind === "unet" ? config.contextDim : config.nCFeat;
      const ctx: ForwardContext = { training: false, seed: 0, trace };
      const c = dim > 0 ? tf.zeros([1, dim]) as tf.Tensor2D : undefined;
      this.forward(x, tf.zeros([1]) as tf.Tensor1D, c, ctx);
    });
    const shapes = new Map(trace.map((r) => [r.name, r.outputShape]));
    return this.#store.layers.filter((l) => l.parameters.length > 0).map((l) => ({
      name: l.name,
      type: l.type,
      shape: l.parameters[0].variable.shape.slice(),
      params: countParameters(l.parameters),
      outputShape: shapes.get(l.name) ?? [],
    }));
  }

  /** Free every variable. */
  dispose(): void {
    for (const p of this.#store.parameters) p.variable.dispose();
    for (const p of this.#store.buffers) p.variable.dispose();
  }

  /** Throws unless x is [N, imageSize, imageSize, inChannels]; `network` names the class. */
  protected checkInput(network: string, x: tf.Tensor4D): void {
    const c = this.config;
    if (x.shape[1] !== c.imageSize || x.shape[2] !== c.imageSize || x.shape[3] !== c.inChannels) {
      throw new Error(
        `${network}: input of shape [${x.shape}] does not match the network's ` +
          `[N, ${c.imageSize}, ${c.imageSize}, ${c.inChannels}].`,
      );
    }
  }
}

/**
 * The DDPM / ADM U-Net: a convolutional encoder–decoder with skip connections, residual
 * blocks into which the time embedding is added, and self-attention at chosen resolutions.
 *
 *   emb = MLP(sinusoidal(t)) [+ MLP(c)]
 *   h₀ = Conv(x);  encoder: hᵢ = Res(hᵢ₋₁, emb) [→ Attn], Down at the end of each level
 *   middle: Res → Attn → Res;  decoder: Res([h, skip], emb) [→ Attn], Up between levels
 *   ε_θ = Conv(SiLU(GN(h)))   (this last convolution starts at zero, so ε_θ ≡ 0 at init)
 */
export class UNet extends StoredNetwork<UNetConfig> {
  readonly #timeMlp: [Linear, Linear];
  readonly #contextMlp: [Linear, Linear] | null;
  readonly #convIn: Conv2d;
  readonly #encoder: { block: ResidualBlock | Downsample; attention: Attention | null }[] = [];
  readonly #middle: [ResidualBlock, Attention | null, ResidualBlock];
  readonly #decoder: { block: ResidualBlock | Upsample; attention: Attention | null }[] = [];
  readonly #normOut: GroupNorm;
  readonly #convOut: Conv2d;

  /**
   * @param config the configuration (missing fields take {@link unetConfig}'s defaults)
   * @param options `trainable: false` for a copy that holds EMA weights
   */
  constructor(config: Partial<UNetConfig> = {}, options: { trainable?: boolean } = {}) {
    super(unetConfig(config), options.trainable ?? true);
    const c = this.config;
    const store = this.store;
    const tdim = c.timeEmbeddingDim;
    const block = { embeddingDim: tdim, groups: c.groups, dropout: c.dropout };
    this.#timeMlp = [
      new Linear(store, "time.linear1", c.baseChannels, tdim),
      new Linear(store, "time.linear2", tdim, tdim),
    ];
    this.#contextMlp = c.contextDim > 0
      ? [
        new Linear(store, "context.linear1", c.contextDim, tdim),
        new Linear(store, "context.linear2", tdim, tdim),
      ]
      : null;
    this.#convIn = new Conv2d(store, "input.conv", c.inChannels, c.baseChannels);
    const skipChannels = [c.baseChannels];
    let channels = c.baseChannels;
    const levels = c.channelMultipliers.length;
    for (let level = 0; level < levels; level++) {
      const out = c.baseChannels * c.channelMultipliers[level];
      const resolution = c.imageSize / 2 ** level;
      for (let i = 0; i < c.resBlocksPerLevel; i++) {
        const name = `down.${level}.res.${i}`;
        const res = new ResidualBlock(store, name, channels, out, block);
        channels = out;
        const attention = c.attentionResolutions.includes(resolution)
          ? new Attention(
            store,
            `down.${level}.attn.${i}`,
            channels,
            c.attentionHeads,
            c.groups,
          )
          : null;
        this.#encoder.push({ block: res, attention });
        skipChannels.push(channels);
      }
      if (level < levels - 1) {
        this.#encoder.push({
          block: new Downsample(store, `down.${level}.downsample`, channels),
          attention: null,
        });
        skipChannels.push(channels);
      }
    }
    this.#middle = [
      new ResidualBlock(store, "mid.res.0", channels, channels, block),
      c.middleAttention
        ? new Attention(store, "mid.attn", channels, c.attentionHeads, c.groups)
        : null,
      new ResidualBlock(store, "mid.res.1", channels, channels, block),
    ];
    for (let level = levels - 1; level >= 0; level--) {
      const out = c.baseChannels * c.channelMultipliers[level];
      const resolution = c.imageSize / 2 ** level;
      for (let i = 0; i <= c.resBlocksPerLevel; i++) {
        const skip = skipChannels.pop()!;
        const res = new ResidualBlock(store, `up.${level}.res.${i}`, channels + skip, out, block);
        channels = out;
        const attention = c.attentionResolutions.includes(resolution)
          ? new Attention(store, `up.${level}.attn.${i}`, channels, c.attentionHeads, c.groups)
          : null;
        this.#decoder.push({ block: res, attention });
      }
      if (level > 0) {
        this.#decoder.push({
          block: new Upsample(store, `up.${level}.upsample`, channels),
          attention: null,
        });
      }
    }
    this.#normOut = new GroupNorm(store, "output.norm", channels, c.groups);
    this.#convOut = new Conv2d(store, "output.conv", channels, c.outChannels, { zeroInit: true });
  }

  /** The forward pass with an explicit context (used by `apply` and `summary`). */
  forward(
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    context: tf.Tensor2D | undefined,
    ctx: ForwardContext,
  ): tf.Tensor4D {
    const c = this.config;
    this.checkInput("UNet", x);
    const [t1, t2] = this.#timeMlp;
    let emb = t2.apply(
      silu(t1.apply(timestepEmbedding(t, c.baseChannels), ctx)) as tf.Tensor2D,
      ctx,
    );
    if (this.#contextMlp) {
      const cvec = context ?? tf.zeros([x.shape[0], c.contextDim]) as tf.Tensor2D;
      const [c1, c2] = this.#contextMlp;
      emb = tf.add(emb, c2.apply(silu(c1.apply(cvec, ctx)) as tf.Tensor2D, ctx));
    }
    let h = this.#convIn.apply(x, ctx);
    const skips: tf.Tensor4D[] = [h];
    for (const { block, attention } of this.#encoder) {
      h = block instanceof ResidualBlock ? block.apply(h, emb, ctx) : block.apply(h, ctx);
      if (attention) h = attention.apply(h, ctx);
      skips.push(h);
    }
    const [m1, mAttn, m2] = this.#middle;
    h = m1.apply(h, emb, ctx);
    if (mAttn) h = mAttn.apply(h, ctx);
    h = m2.apply(h, emb, ctx);
    for (const { block, attention } of this.#decoder) {
      if (block instanceof ResidualBlock) {
        h = block.apply(tf.concat([h, skips.pop()!], 3), emb, ctx);
      } else {
        h = block.apply(h, ctx);
      }
      if (attention) h = attention.apply(h, ctx);
    }
    return this.#convOut.apply(this.#normOut.applySiLU(h, ctx), ctx);
  }

  /** Levels, blocks and edges for a diagram of this U-Net. */
  architecture(): Architecture {
    const c = this.config;
    const levels = c.channelMultipliers.map((m, level) => ({
      level,
      resolution: c.imageSize / 2 ** level,
      channels: c.baseChannels * m,
    }));
    const blocks: ArchitectureBlock[] = [];
    const edges: Architecture["edges"] = [];
    const add = (b: ArchitectureBlock, mainFrom?: string) => {
      if (mainFrom) edges.push({ from: mainFrom, to: b.id, kind: "main" });
      blocks.push(b);
      return b.id;
    };
    const tdim = c.timeEmbeddingDim;
    const timeId = add({
      id: "time",
      kind: "embedding",
      path: "embedding",
      level: -1,
      resolution: 0,
      inChannels: c.baseChannels,
      outChannels: tdim,
    });
    let contextId: string | null = null;
    if (c.contextDim > 0) {
      contextId = add({
        id: "context",
        kind: "embedding",
        path: "embedding",
        level: -1,
        resolution: 0,
        inChannels: c.contextDim,
        outChannels: tdim,
      });
    }
    const embed = (id: string) => {
      edges.push({ from: timeId, to: id, kind: "embedding" });
      if (contextId) edges.push({ from: contextId, to: id, kind: "embedding" });
    };
    let prev = add({
      id: "input",
      kind: "input",
      path: "stem",
      level: 0,
      resolution: c.imageSize,
      inChannels: c.inChannels,
      outChannels: c.inChannels,
    });
    prev = add({
      id: "input.conv",
      kind: "conv",
      path: "stem",
      level: 0,
      resolution: c.imageSize,
      inChannels: c.inChannels,
      outChannels: c.baseChannels,
    }, prev);
    const skipSources: string[] = [prev];
    let channels = c.baseChannels;
    let level = 0;
    /** A block at the current level after `prev`, `channels` in and out unless given. */
    const next = (
      id: string,
      kind: ArchitectureBlock["kind"],
      path: ArchitectureBlock["path"],
      at: { level?: number; resolution?: number; inChannels?: number; outChannels?: number } = {},
    ) =>
      prev = add({
        id,
        kind,
        path,
        level: at.level ?? level,
        resolution: at.resolution ?? c.imageSize / 2 ** level,
        inChannels: at.inChannels ?? channels,
        outChannels: at.outChannels ?? channels,
      }, prev);
    // The encoder and the decoder, mirror images: residual blocks (with attention where
    // configured) and a resampling step between levels; the decoder's residual blocks take the
    // encoder's outputs as skips, last in first out.
    type Stage = {
      block: ResidualBlock | Downsample | Upsample;
      attention: Attention | null;
    };
    const walk = (stages: Stage[], path: "encoder" | "decoder") => {
      for (const { block, attention } of stages) {
        if (block instanceof ResidualBlock) {
          level = Number(block.name.split(".")[1]);
          const { inChannels, outChannels } = block;
          next(block.name, "resblock", path, { inChannels, outChannels });
          if (path === "decoder") edges.push({ from: skipSources.pop()!, to: prev, kind: "skip" });
          embed(prev);
          channels = block.outChannels;
          if (attention) next(attention.name, "attention", path);
        } else if (path === "encoder") {
          next(block.name, "downsample", path, { resolution: c.imageSize / 2 ** (level + 1) });
        } else {
          next(block.name, "upsample", path, {
            level: level - 1,
            resolution: c.imageSize / 2 ** (level - 1),
          });
        }
        if (path === "encoder") skipSources.push(prev);
      }
    };
    walk(this.#encoder, "encoder");
    const [m1, mAttn, m2] = this.#middle;
    next(m1.name, "resblock", "middle");
    embed(prev);
    if (mAttn) next(mAttn.name, "attention", "middle");
    next(m2.name, "resblock", "middle");
    embed(prev);
    walk(this.#decoder, "decoder");
    add({
      id: "output.conv",
      kind: "output",
      path: "head",
      level: 0,
      resolution: c.imageSize,
      inChannels: channels,
      outChannels: c.outChannels,
    }, prev);
    return {
      kind: "unet",
      imageSize: c.imageSize,
      inChannels: c.inChannels,
      outChannels: c.outChannels,
      levels,
      blocks,
      edges,
      parameterCount: this.parameterCount(),
    };
  }
}

/**
 * The course's ResidualConvBlock: two (Conv 3×3 → BatchNorm → GELU) layers, and with
 * `residual`, y = (shortcut(x) + h) / 1.414.
 *
 * Fixes the course's bug: its shortcut for in ≠ out channels was a fresh, untrained 1×1
 * convolution built inside forward() on every call (so never trained, and different at every
 * call). Here it is created once, trained, and saved with the other parameters.
 */
class ResidualConvBlock {
  readonly conv1: Conv2d;
  readonly norm1: BatchNorm;
  readonly conv2: Conv2d;
  readonly norm2: BatchNorm;
  readonly shortcut: Conv2d | null;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly residual = false,
  ) {
    this.conv1 = new Conv2d(store, `${name}.conv1`, inChannels, outChannels);
    this.norm1 = new BatchNorm(store, `${name}.norm1`, outChannels);
    this.conv2 = new Conv2d(store, `${name}.conv2`, outChannels, outChannels);
    this.norm2 = new BatchNorm(store, `${name}.norm2`, outChannels);
    this.shortcut = residual && inChannels !== outChannels
      ? new Conv2d(store, `${name}.shortcut`, inChannels, outChannels, { kernelSize: 1 })
      : null;
  }

  apply(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => {
      const h1 = gelu(this.norm1.apply(this.conv1.apply(x, ctx), ctx)) as tf.Tensor4D;
      const h2 = gelu(this.norm2.apply(this.conv2.apply(h1, ctx), ctx)) as tf.Tensor4D;
      if (!this.residual) return h2;
      const skip = this.shortcut ? this.shortcut.apply(x, ctx) : x;
      return tf.div(tf.add(skip, h2), 1.414) as tf.Tensor4D;
    });
  }
}

/** The course's EmbedFC: Linear → GELU → Linear. */
class EmbedFC {
  readonly linear1: Linear;
  readonly linear2: Linear;
  constructor(store: ParameterStore, readonly name: string, inputDim: number, embDim: number) {
    this.linear1 = new Linear(store, `${name}.linear1`, inputDim, embDim);
    this.linear2 = new Linear(store, `${name}.linear2`, embDim, embDim);
  }
  apply(x: tf.Tensor2D, ctx: ForwardContext): tf.Tensor2D {
    return this.linear2.apply(gelu(this.linear1.apply(x, ctx)) as tf.Tensor2D, ctx);
  }
}

/**
 * The DeepLearning.AI course's ContextUnet (n_feat = 64, n_cfeat = 5, 16×16: 1,481,027
 * parameters here; the course's PyTorch module reports 1,480,771, because its 256-parameter
 * input shortcut is re-created, untrained, at every call instead of being a parameter).
 *
 *   x₀ = RCB_res(x);  d₁ = Down(x₀);  d₂ = Down(d₁);  v = GELU(AvgPool₄(d₂))
 *   u₁ = ReLU(GN(ConvT(v)));  u₂ = Up(c₁ ⊙ u₁ + t₁, d₂);  u₃ = Up(c₂ ⊙ u₂ + t₂, d₁)
 *   ε_θ = Conv(ReLU(GN(Conv([u₃, x₀]))))
 *
 * with t₁,₂ = EmbedFC(t/T) and c₁,₂ = EmbedFC(c) multiplying and shifting the decoder's
 * features. Down = 2 × RCB then 2×2 max pool; Up = ConvT(2, 2) on [x, skip] then 2 × RCB.
 * The time input is (t + 1)/T for this library's 0-based t, the course's i/T for i = 1…T.
 * Its BatchNorm layers use batch statistics in training and running statistics otherwise,
 * as the course's module in `train()` and `eval()` mode; with the same weights the outputs
 * agree with PyTorch's to about 1e-6 in both modes (tests/unet_test.ts holds reference values).
 */
export class ContextUNet extends StoredNetwork<ContextUNetConfig> {
  readonly #initConv: ResidualConvBlock;
  readonly #down1: [ResidualConvBlock, ResidualConvBlock];
  readonly #down2: [ResidualConvBlock, ResidualConvBlock];
  readonly #timeEmbed1: EmbedFC;
  readonly #timeEmbed2: EmbedFC;
  readonly #contextEmbed1: EmbedFC;
  readonly #contextEmbed2: EmbedFC;
  readonly #up0: [PatchConvTranspose2d, GroupNorm];
  readonly #up1: [PatchConvTranspose2d, ResidualConvBlock, ResidualConvBlock];
  readonly #up2: [PatchConvTranspose2d, ResidualConvBlock, ResidualConvBlock];
  readonly #out: [Conv2d, GroupNorm, Conv2d];

  /**
   * @param config the configuration (missing fields take the course's values)
   * @param options `trainable: false` for a copy that holds EMA weights
   */
  constructor(config: Partial<ContextUNetConfig> = {}, options: { trainable?: boolean } = {}) {
    super(contextUnetConfig(config), options.trainable ?? true);
    const c = this.config;
    const store = this.store;
    const n = c.nFeat;
    this.#initConv = new ResidualConvBlock(store, "initConv", c.inChannels, n, true);
    this.#down1 = [
      new ResidualConvBlock(store, "down1.0", n, n),
      new ResidualConvBlock(store, "down1.1", n, n),
    ];
    this.#down2 = [
      new ResidualConvBlock(store, "down2.0", n, 2 * n),
      new ResidualConvBlock(store, "down2.1", 2 * n, 2 * n),
    ];
    this.#timeEmbed1 = new EmbedFC(store, "timeEmbed1", 1, 2 * n);
    this.#timeEmbed2 = new EmbedFC(store, "timeEmbed2", 1, n);
    this.#contextEmbed1 = new EmbedFC(store, "contextEmbed1", c.nCFeat, 2 * n);
    this.#contextEmbed2 = new EmbedFC(store, "contextEmbed2", c.nCFeat, n);
    this.#up0 = [
      new PatchConvTranspose2d(store, "up0.convTranspose", 2 * n, 2 * n, c.imageSize / 4),
      new GroupNorm(store, "up0.norm", 2 * n, 8),
    ];
    this.#up1 = [
      new PatchConvTranspose2d(store, "up1.convTranspose", 4 * n, n, 2),
      new ResidualConvBlock(store, "up1.0", n, n),
      new ResidualConvBlock(store, "up1.1", n, n),
    ];
    this.#up2 = [
      new PatchConvTranspose2d(store, "up2.convTranspose", 2 * n, n, 2),
      new ResidualConvBlock(store, "up2.0", n, n),
      new ResidualConvBlock(store, "up2.1", n, n),
    ];
    this.#out = [
      new Conv2d(store, "out.conv1", 2 * n, n),
      new GroupNorm(store, "out.norm", n, 8),
      new Conv2d(store, "out.conv2", n, c.inChannels),
    ];
  }

  /** The forward pass with an explicit context (used by `apply` and `summary`). */
  forward(
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    context: tf.Tensor2D | undefined,
    ctx: ForwardContext,
  ): tf.Tensor4D {
    const c = this.config;
    const n = c.nFeat;
    this.checkInput("ContextUNet", x);
    const batch = x.shape[0];
    const x0 = this.#initConv.apply(x, ctx);
    const down = (h: tf.Tensor4D, blocks: ResidualConvBlock[]) =>
      maxPool2x(blocks.reduce((a, b) => b.apply(a, ctx), h));
    const d1 = down(x0, this.#down1);
    const d2 = down(d1, this.#down2);
    const hidden = gelu(
      tf.mean(tf.slice(d2, [0, 0, 0, 0], [-1, 4, 4, -1]), [1, 2], true),
    ) as tf.Tensor4D;
    const cvec = context ?? tf.zeros([batch, c.nCFeat]) as tf.Tensor2D;
    const time = tf.reshape(tf.div(tf.add(t, 1), c.T), [batch, 1]) as tf.Tensor2D;
    const vec = (e: tf.Tensor2D, ch: number) => tf.reshape(e, [batch, 1, 1, ch]);
    const cemb1 = vec(this.#contextEmbed1.apply(cvec, ctx), 2 * n);
    const temb1 = vec(this.#timeEmbed1.apply(time, ctx), 2 * n);
    const cemb2 = vec(this.#contextEmbed2.apply(cvec, ctx), n);
    const temb2 = vec(this.#timeEmbed2.apply(time, ctx), n);
    const up = (
      h: tf.Tensor4D,
      skip: tf.Tensor4D,
      [convT, b1, b2]: [PatchConvTranspose2d, ResidualConvBlock, ResidualConvBlock],
    ) => b2.apply(b1.apply(convT.apply(tf.concat([h, skip], 3), ctx), ctx), ctx);
    const u1 = tf.relu(this.#up0[1].apply(this.#up0[0].apply(hidden, ctx), ctx)) as tf.Tensor4D;
    const u2 = up(tf.add(tf.mul(cemb1, u1), temb1) as tf.Tensor4D, d2, this.#up1);
    const u3 = up(tf.add(tf.mul(cemb2, u2), temb2) as tf.Tensor4D, d1, this.#up2);
    const [o1, oNorm, o2] = this.#out;
    return o2.apply(
      tf.relu(oNorm.apply(o1.apply(tf.concat([u3, x0], 3), ctx), ctx)) as tf.Tensor4D,
      ctx,
    );
  }

  /** Levels, blocks and edges for a diagram of the course's network. */
  architecture(): Architecture {
    const c = this.config;
    const n = c.nFeat;
    const s = c.imageSize;
    const blocks: ArchitectureBlock[] = [];
    const edges: Architecture["edges"] = [];
    const b = (
      id: string,
      kind: ArchitectureBlock["kind"],
      path: ArchitectureBlock["path"],
      level: number,
      resolution: number,
      inChannels: number,
      outChannels: number,
    ) => {
      blocks.push({ id, kind, path, level, resolution, inChannels, outChannels });
      return id;
    };
    const main = (from: string, to: string) => edges.push({ from, to, kind: "main" });
    b("timeEmbed", "embedding", "embedding", -1, 0, 1, 2 * n);
    b("contextEmbed", "embedding", "embedding", -1, 0, c.nCFeat, 2 * n);
    b("input", "input", "stem", 0, s, c.inChannels, c.inChannels);
    b("initConv", "resblock", "stem", 0, s, c.inChannels, n);
    b("down1", "downsample", "encoder", 1, s / 2, n, n);
    b("down2", "downsample", "encoder", 2, s / 4, n, 2 * n);
    b("toVec", "downsample", "middle", 3, 1, 2 * n, 2 * n);
    b("up0", "upsample", "middle", 2, s / 4, 2 * n, 2 * n);
    b("up1", "upsample", "decoder", 1, s / 2, 4 * n, n);
    b("up2", "upsample", "decoder", 0, s, 2 * n, n);
    b("out", "output", "head", 0, s, 2 * n, c.inChannels);
    const chain = ["input", "initConv", "down1", "down2", "toVec", "up0", "up1", "up2", "out"];
    for (let i = 1; i < chain.length; i++) main(chain[i - 1], chain[i]);
    edges.push({ from: "down2", to: "up1", kind: "skip" });
    edges.push({ from: "down1", to: "up2", kind: "skip" });
    edges.push({ from: "initConv", to: "out", kind: "skip" });
    for (const to of ["up1", "up2"]) {
      edges.push({ from: "timeEmbed", to, kind: "embedding" });
      edges.push({ from: "contextEmbed", to, kind: "embedding" });
    }
    return {
      kind: "contextUnet",
      imageSize: s,
      inChannels: c.inChannels,
      outChannels: c.inChannels,
      levels: [
        { level: 0, resolution: s, channels: n },
        { level: 1, resolution: s / 2, channels: n },
        { level: 2, resolution: s / 4, channels: 2 * n },
        { level: 3, resolution: 1, channels: 2 * n },
      ],
      blocks,
      edges,
      parameterCount: this.parameterCount(),
    };
  }
}

/**
 * The course preset: a {@link ContextUNet} with n_feat 64, n_cfeat 5, 16×16 RGB, T = 500.
 * Override any field, e.g. `contextUnet({ nCFeat: 10 })` for ten classes.
 */
export function contextUnet(config: Partial<ContextUNetConfig> = {}): ContextUNet {
  return new ContextUNet(config);
}
