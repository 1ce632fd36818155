/**
 * The DeepLearning.AI course "How Diffusion Models Work"'s ContextUnet, reproduced layer for
 * layer (and checked against PyTorch's outputs in tests/unet_test.ts).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { classContext, nullContextParameter } from "../nn/embeddings.ts";
import {
  BatchNorm,
  Conv2d,
  type ForwardContext,
  gelu,
  GroupNorm,
  Linear,
  maxPool2x,
  type ParameterStore,
  PatchConvTranspose2d,
} from "../nn/layers.ts";
import type { Architecture, ArchitectureBlock, Conditioning } from "./network.ts";
import { StoredNetwork } from "./network.ts";
import { registerModelKind } from "./registry.ts";

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
  /**
   * The context of "no condition" (class label −1, or no context given): zeros (the course's
   * context mask) or a learned null vector c_∅.
   */
  nullContext: "zeros" | "learned";
  /** Seed of the initial weights. */
  seed: number;
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
    nullContext: partial.nullContext ?? "zeros",
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

/** The layers of each of the course network's blocks whose id is not their prefix. */
const LAYERS_OF: Record<string, string[]> = {
  timeEmbed: ["timeEmbed1", "timeEmbed2"],
  contextEmbed: ["contextEmbed1", "contextEmbed2", "contextNull"],
  toVec: [],
  input: [],
};

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
  /** The learned null context c_∅ (nullContext "learned"). */
  readonly #nullContext: tf.Variable | null;

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
    this.#nullContext = nullContextParameter(store, "contextNull", c.nCFeat, c.nullContext);
  }

  /** Size of the context vector c: the course's n_cfeat. */
  get contextDim(): number {
    return this.config.nCFeat;
  }

  /** The forward pass with explicit conditioning (used by `apply` and `summary`). */
  forward(
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    conditioning: Conditioning,
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
    if (conditioning.encoderHiddenStates) {
      throw new Error("ContextUNet has no cross-attention, so it cannot take encoderHiddenStates.");
    }
    const cvec = conditioning.context ??
      classContext(
        conditioning.classLabels ?? tf.fill([batch], -1, "int32") as tf.Tensor1D,
        c.nCFeat,
        this.#nullContext,
      );
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
      const prefixes = LAYERS_OF[id] ?? [id];
      blocks.push({
        id,
        kind,
        path,
        level,
        resolution,
        inChannels,
        outChannels,
        ...this.layersUnder(...prefixes),
      });
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

registerModelKind<ContextUNetConfig>("contextUnet", {
  complete: contextUnetConfig,
  build: (config, options) => new ContextUNet(config, options),
});

/**
 * The course preset: a {@link ContextUNet} with n_feat 64, n_cfeat 5, 16×16 RGB, T = 500.
 * Override any field, e.g. `contextUnet({ nCFeat: 10 })` for ten classes.
 */
export function contextUnet(config: Partial<ContextUNetConfig> = {}): ContextUNet {
  return new ContextUNet(config);
}
