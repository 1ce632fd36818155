/**
 * The DDPM / ADM U-Net ε_θ(x_t, t, c) (Ho et al., 2020; Dhariwal & Nichol, 2021): a
 * convolutional encoder–decoder with skip connections, residual blocks into which the time
 * embedding is added, and self-attention at chosen resolutions.
 *
 * ```ts
 * const model = new UNet({ imageSize: 16, baseChannels: 32, channelMultipliers: [1, 2, 2] });
 * const eps = model.apply(xt, t); // same shape as xt
 * ```
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Attention } from "../nn/attention.ts";
import { classContext, nullContextParameter, timestepEmbedding } from "../nn/embeddings.ts";
import {
  Conv2d,
  Downsample,
  type ForwardContext,
  GroupNorm,
  Linear,
  ResidualBlock,
  silu,
  Upsample,
} from "../nn/layers.ts";
import { checkLoraConfig, type LoraConfig } from "../nn/lora.ts";
import type { Architecture, ArchitectureBlock, Conditioning } from "./network.ts";
import { StoredNetwork } from "./network.ts";
import { registerModelKind } from "./registry.ts";

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
  /**
   * Width D of the context tokens the network cross-attends to (a text encoder's states,
   * `encoderHiddenStates` [N, L, D]); 0 for no cross-attention.
   */
  crossAttentionDim: number;
  /** Resolutions (in pixels) with cross-attention after each residual block (and its self-attention). */
  crossAttentionResolutions: number[];
  /** Cross-attention in the middle, after its self-attention. */
  middleCrossAttention: boolean;
  /** Dropout rate in the residual blocks. */
  dropout: number;
  /** GroupNorm groups. */
  groups: number;
  /** Width of the time (+ context) embedding (default 4 · baseChannels). */
  timeEmbeddingDim: number;
  /** Size of the context vector c (classes, for `classLabels`); 0 for an unconditional network. */
  contextDim: number;
  /**
   * The context of "no condition" (class label −1, or no context given): zeros, or a learned
   * null vector c_∅ (classifier-free guidance).
   */
  nullContext: "zeros" | "learned";
  /** Seed of the initial weights. */
  seed: number;
  /** A low-rank update of its linear layers (absent: none; lib/core/models/adapt.ts). */
  lora?: LoraConfig;
}

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
    crossAttentionDim: partial.crossAttentionDim ?? 0,
    crossAttentionResolutions: partial.crossAttentionResolutions ?? [],
    middleCrossAttention: partial.middleCrossAttention ?? false,
    dropout: partial.dropout ?? 0,
    groups: partial.groups ?? 8,
    timeEmbeddingDim: partial.timeEmbeddingDim ?? 4 * baseChannels,
    contextDim: partial.contextDim ?? 0,
    nullContext: partial.nullContext ?? "zeros",
    seed: partial.seed ?? 0,
    // Only when given, so that a configuration without one (and its spec hash) stays as it was.
    ...(partial.lora ? { lora: checkLoraConfig(partial.lora) } : {}),
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
  const crossAttends = config.crossAttentionResolutions.length > 0 || config.middleCrossAttention;
  if (crossAttends !== config.crossAttentionDim > 0) {
    throw new Error(
      config.crossAttentionDim > 0
        ? `unetConfig: crossAttentionDim ${config.crossAttentionDim} is set but no resolution ` +
          `cross-attends; give crossAttentionResolutions or middleCrossAttention.`
        : "unetConfig: cross-attention needs crossAttentionDim, the width of the context tokens.",
    );
  }
  if (config.nullContext !== "zeros" && config.nullContext !== "learned") {
    throw new Error(
      `unetConfig: nullContext must be "zeros" or "learned", got "${config.nullContext}".`,
    );
  }
  return config;
}

/**
 * One step of the U-Net's forward pass, recorded when the network is built: the block as the
 * architecture reports it, the module that runs it, and whether its output is kept for a skip
 * connection (`push`) or a kept output is concatenated to its input (`pop`).
 */
interface Stage {
  block: ArchitectureBlock;
  module: ResidualBlock | Attention | Downsample | Upsample;
  skip?: "push" | "pop";
}

/**
 * The DDPM / ADM U-Net: a convolutional encoder–decoder with skip connections, residual
 * blocks into which the time embedding is added, and self-attention at chosen resolutions.
 *
 *   emb = MLP(sinusoidal(t)) [+ MLP(c)]
 *   h₀ = Conv(x);  encoder: hᵢ = Res(hᵢ₋₁, emb) [→ Attn] [→ CrossAttn(·, s)], Down at the end
 *   of each level;  middle: Res → Attn [→ CrossAttn(·, s)] → Res;
 *   decoder: Res([h, skip], emb) [→ Attn] [→ CrossAttn(·, s)], Up between levels
 *   ε_θ = Conv(SiLU(GN(h)))   (this last convolution starts at zero, so ε_θ ≡ 0 at init)
 *
 * where CrossAttn(h, s) is attention from h's pixels (queries) to the context tokens s
 * (`encoderHiddenStates`, keys and values), as Stable Diffusion's U-Net takes a text encoder's
 * states (Rombach et al., 2022).
 *
 * The constructor records the stages once (`#stages`); the forward pass runs them in order and
 * `architecture()` reports them.
 */
export class UNet extends StoredNetwork<UNetConfig> {
  readonly #timeMlp: [Linear, Linear];
  readonly #contextMlp: [Linear, Linear] | null;
  readonly #convIn: Conv2d;
  readonly #stages: Stage[] = [];
  readonly #normOut: GroupNorm;
  readonly #convOut: Conv2d;
  /** The learned null context c_∅ (nullContext "learned"). */
  readonly #nullContext: tf.Variable | null;

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
    const resolutionOf = (level: number) => c.imageSize / 2 ** level;
    const stage = (
      module: Stage["module"],
      kind: ArchitectureBlock["kind"],
      path: ArchitectureBlock["path"],
      level: number,
      channels: { in: number; out: number },
      extra: { resolution?: number; skip?: Stage["skip"] } = {},
    ) => {
      this.#stages.push({
        module,
        skip: extra.skip,
        block: {
          id: module.name,
          kind,
          path,
          level,
          resolution: extra.resolution ?? resolutionOf(level),
          inChannels: channels.in,
          outChannels: channels.out,
          layers: [],
          parameters: 0,
        },
      });
    };
    const attentionAt = (name: string, level: number, channels: number) =>
      c.attentionResolutions.includes(resolutionOf(level))
        ? new Attention(store, name, channels, c.attentionHeads, c.groups)
        : null;
    const crossAttention = (name: string, channels: number) =>
      new Attention(store, name, channels, c.attentionHeads, c.groups, {
        contextDim: c.crossAttentionDim,
      });
    const crossAttentionAt = (name: string, level: number, channels: number) =>
      c.crossAttentionResolutions.includes(resolutionOf(level))
        ? crossAttention(name, channels)
        : null;
    const skipChannels = [c.baseChannels];
    let channels = c.baseChannels;
    const levels = c.channelMultipliers.length;
    for (let level = 0; level < levels; level++) {
      const out = c.baseChannels * c.channelMultipliers[level];
      for (let i = 0; i < c.resBlocksPerLevel; i++) {
        const res = new ResidualBlock(store, `down.${level}.res.${i}`, channels, out, block);
        const attention = attentionAt(`down.${level}.attn.${i}`, level, out);
        const cross = crossAttentionAt(`down.${level}.cross.${i}`, level, out);
        // The block's last module's output is the one kept for the skip connection.
        const last = cross ?? attention ?? res;
        const kept = (module: Stage["module"]) => module === last ? "push" : undefined;
        stage(res, "resblock", "encoder", level, { in: channels, out }, { skip: kept(res) });
        if (attention) {
          stage(attention, "attention", "encoder", level, { in: out, out }, {
            skip: kept(attention),
          });
        }
        if (cross) stage(cross, "attention", "encoder", level, { in: out, out }, { skip: "push" });
        channels = out;
        skipChannels.push(channels);
      }
      if (level < levels - 1) {
        const down = new Downsample(store, `down.${level}.downsample`, channels);
        stage(down, "downsample", "encoder", level, { in: channels, out: channels }, {
          resolution: resolutionOf(level + 1),
          skip: "push",
        });
        skipChannels.push(channels);
      }
    }
    const middle = levels - 1;
    const same = { in: channels, out: channels };
    stage(
      new ResidualBlock(store, "mid.res.0", channels, channels, block),
      "resblock",
      "middle",
      middle,
      same,
    );
    if (c.middleAttention) {
      const attention = new Attention(store, "mid.attn", channels, c.attentionHeads, c.groups);
      stage(attention, "attention", "middle", middle, same);
    }
    if (c.middleCrossAttention) {
      stage(crossAttention("mid.cross", channels), "attention", "middle", middle, same);
    }
    stage(
      new ResidualBlock(store, "mid.res.1", channels, channels, block),
      "resblock",
      "middle",
      middle,
      same,
    );
    for (let level = levels - 1; level >= 0; level--) {
      const out = c.baseChannels * c.channelMultipliers[level];
      for (let i = 0; i <= c.resBlocksPerLevel; i++) {
        const skip = skipChannels.pop()!;
        const name = `up.${level}.res.${i}`;
        const res = new ResidualBlock(store, name, channels + skip, out, block);
        stage(res, "resblock", "decoder", level, { in: channels + skip, out }, { skip: "pop" });
        channels = out;
        const attention = attentionAt(`up.${level}.attn.${i}`, level, channels);
        if (attention) stage(attention, "attention", "decoder", level, { in: out, out });
        const cross = crossAttentionAt(`up.${level}.cross.${i}`, level, channels);
        if (cross) stage(cross, "attention", "decoder", level, { in: out, out });
      }
      if (level > 0) {
        const up = new Upsample(store, `up.${level}.upsample`, channels);
        stage(up, "upsample", "decoder", level - 1, { in: channels, out: channels });
      }
    }
    this.#normOut = new GroupNorm(store, "output.norm", channels, c.groups);
    this.#convOut = new Conv2d(store, "output.conv", channels, c.outChannels, { zeroInit: true });
    this.#nullContext = nullContextParameter(store, "context.null", c.contextDim, c.nullContext);
    for (const { block } of this.#stages) Object.assign(block, this.layersUnder(block.id));
  }

  /** Size of the class-context vector c (0 for an unconditional network). */
  get contextDim(): number {
    return this.config.contextDim;
  }

  override get crossAttentionDim(): number {
    return this.config.crossAttentionDim;
  }

  /** The context vector of the conditioning: c, onehot(y) (c_∅ where y = −1), or c_∅. */
  #context(conditioning: Conditioning, batch: number): tf.Tensor2D {
    const c = this.config;
    if (conditioning.context) return conditioning.context;
    const labels = conditioning.classLabels ?? tf.fill([batch], -1, "int32") as tf.Tensor1D;
    return classContext(labels, c.contextDim, this.#nullContext);
  }

  /** The context tokens of the conditioning, checked against the cross-attention's width. */
  #encoderStates(conditioning: Conditioning, batch: number): tf.Tensor3D | undefined {
    const states = conditioning.encoderHiddenStates;
    const d = this.config.crossAttentionDim;
    if (d === 0) {
      if (states) {
        throw new Error(
          "UNet: this network has no cross-attention, so it cannot take encoderHiddenStates.",
        );
      }
      return undefined;
    }
    if (!states || states.shape[0] !== batch || states.shape[2] !== d) {
      throw new Error(
        `UNet: this network cross-attends to encoderHiddenStates [${batch}, L, ${d}] (the empty ` +
          `prompt's for no condition), not ${states ? `[${states.shape}]` : "nothing"}.`,
      );
    }
    return states;
  }

  /** The forward pass with explicit conditioning (used by `apply` and `summary`). */
  forward(
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    conditioning: Conditioning,
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
      const [c1, c2] = this.#contextMlp;
      const cvec = this.#context(conditioning, x.shape[0]);
      emb = tf.add(emb, c2.apply(silu(c1.apply(cvec, ctx)) as tf.Tensor2D, ctx));
    } else if (conditioning.classLabels || conditioning.context) {
      throw new Error("UNet: this network is unconditional (contextDim 0); pass no conditioning.");
    }
    const states = this.#encoderStates(conditioning, x.shape[0]);
    const embActivated = silu(emb) as tf.Tensor2D; // SiLU(emb), which every block projects
    let h = this.#convIn.apply(x, ctx);
    const skips: tf.Tensor4D[] = [h];
    for (const { module, skip } of this.#stages) {
      if (module instanceof ResidualBlock) {
        const input = skip === "pop" ? tf.concat([h, skips.pop()!], 3) : h;
        h = module.apply(input, embActivated, ctx);
      } else if (module instanceof Attention && module.contextDim !== null) {
        h = module.apply(h, ctx, states);
      } else {
        h = module.apply(h, ctx);
      }
      if (skip === "push") skips.push(h);
    }
    return this.#convOut.apply(this.#normOut.applySiLU(h, ctx), ctx);
  }

  /** Levels, blocks and edges for a diagram of this U-Net, read off its recorded stages. */
  architecture(): Architecture {
    const c = this.config;
    const tdim = c.timeEmbeddingDim;
    const vector = (id: string, inChannels: number): ArchitectureBlock => ({
      id,
      kind: "embedding",
      path: "embedding",
      level: -1,
      resolution: 0,
      inChannels,
      outChannels: tdim,
      ...this.layersUnder(id),
    });
    const at = (
      id: string,
      kind: ArchitectureBlock["kind"],
      path: ArchitectureBlock["path"],
      inC: number,
      outC: number,
      layers: string[],
    ): ArchitectureBlock => ({
      id,
      kind,
      path,
      level: 0,
      resolution: c.imageSize,
      inChannels: inC,
      outChannels: outC,
      ...this.layersUnder(...layers),
    });
    const embeddings = [vector("time", c.baseChannels)];
    if (c.contextDim > 0) embeddings.push(vector("context", c.contextDim));
    const input = at("input", "input", "stem", c.inChannels, c.inChannels, []);
    const stem = at("input.conv", "conv", "stem", c.inChannels, c.baseChannels, ["input.conv"]);
    const last = this.#stages.at(-1)!.block;
    const head = at("output.conv", "output", "head", last.outChannels, c.outChannels, ["output"]);
    const body = this.#stages.map((s) => ({ ...s.block }));
    const chain = [input, stem, ...body, head];
    const edges: Architecture["edges"] = [];
    for (let i = 1; i < chain.length; i++) {
      edges.push({ from: chain[i - 1].id, to: chain[i].id, kind: "main" });
    }
    const kept = [stem.id];
    for (const { block, skip } of this.#stages) {
      if (skip === "push") kept.push(block.id);
      if (skip === "pop") edges.push({ from: kept.pop()!, to: block.id, kind: "skip" });
      if (block.kind === "resblock") {
        for (const e of embeddings) edges.push({ from: e.id, to: block.id, kind: "embedding" });
      }
    }
    return {
      kind: "unet",
      imageSize: c.imageSize,
      inChannels: c.inChannels,
      outChannels: c.outChannels,
      levels: c.channelMultipliers.map((m, level) => ({
        level,
        resolution: c.imageSize / 2 ** level,
        channels: c.baseChannels * m,
      })),
      blocks: [...embeddings, ...chain],
      edges,
      parameterCount: this.parameterCount(),
    };
  }
}

registerModelKind<UNetConfig>("unet", {
  complete: unetConfig,
  build: (config, options) => new UNet(config, options),
});
