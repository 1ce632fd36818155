/**
 * What every denoising network of the library is: the {@link DiffusionModel} interface that
 * training, sampling and checkpoints use, its conditioning, and {@link StoredNetwork}, the base
 * class whose parameters live in one {@link ParameterStore} under dotted names.
 *
 * A network maps noisy images x_t [N, H, W, C] (NHWC), their timesteps t (integers 0…T−1, index
 * t being the paper's step t + 1) and its conditioning to a tensor of the images' shape: the
 * predicted noise ε (or x₀, or v, depending on how it was trained).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  type BufferUpdate,
  type ForwardContext,
  type NamedVariable,
  ParameterStore,
} from "../nn/layers.ts";
import type { LoraConfig, LoraSet } from "../nn/lora.ts";

/**
 * What a denoiser is conditioned on, the way diffusers' `UNet2DConditionModel` takes it: class
 * labels (−1: no condition, the network's null context), the hidden states of a text encoder for
 * cross-attention, or a ready context vector c. Absent fields mean "unconditional".
 */
export interface Conditioning {
  /** Class labels y [N] (int32), −1 for "no condition". */
  classLabels?: tf.Tensor1D;
  /** Context tokens [N, L, D] for cross-attention (a text encoder's output). */
  encoderHiddenStates?: tf.Tensor3D;
  /** A context vector c [N, contextDim] (the course's multi-hot features); the null context when absent. */
  context?: tf.Tensor2D;
}

/** Options of one forward pass: its conditioning, and training switches. */
export interface ApplyOptions extends Conditioning {
  /** Training mode: dropout on, BatchNorm on batch statistics (default false). */
  training?: boolean;
  /** Seed of the dropout masks of this pass (training only). */
  seed?: number;
  /** Collects BatchNorm running-statistics updates in training (the caller assigns them). */
  updates?: BufferUpdate[];
  /** Collects the cross-attention weights of the pass by layer (`ForwardContext.attentionMaps`). */
  attentionMaps?: Map<string, tf.Tensor4D>;
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
  /** The architecture block the layer belongs to. */
  block: string;
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
  /** Names of the layers with parameters that belong to the block. */
  layers: string[];
  /** Their parameters. */
  parameters: number;
}

/** A machine-readable description of a network, enough to draw its diagram. */
export interface Architecture {
  /** Which network. */
  kind: string;
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

/** What every network's configuration has (each kind adds its own fields). */
export interface ModelConfigBase {
  /** The model kind, the key of its entry in the registry (lib/core/models/registry.ts). */
  kind: string;
  /** Image side H = W. */
  imageSize: number;
  /** Image channels. */
  inChannels: number;
  /** Seed of the initial weights. */
  seed: number;
  /** A low-rank update of the network's linear layers (absent: none; lib/core/nn/lora.ts). */
  lora?: LoraConfig;
}

/** What training, sampling and checkpoints need from a network. */
export interface DiffusionModel {
  /** The full configuration (enough to rebuild the network with `createModel`). */
  readonly config: ModelConfigBase;
  /** Size of the class-context vector c (0 for an unconditional network). */
  readonly contextDim: number;
  /** Width D of the token states it cross-attends to (0 when it takes none). */
  readonly crossAttentionDim: number;
  /** Trainable parameters in a fixed order. */
  readonly parameters: readonly NamedVariable[];
  /** Non-trainable state (BatchNorm running statistics; empty for the U-Net). */
  readonly buffers: readonly NamedVariable[];
  /** Its LoRA when its configuration has one (`config.lora`), else null. */
  readonly lora: LoraSet | null;
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

function countParameters(list: readonly NamedVariable[]): number {
  return list.reduce((sum, p) => sum + p.variable.size, 0);
}

/**
 * What both networks share: the {@link ParameterStore} their layers create their variables in
 * (its creation order is the order of `parameters`, and its names are those a checkpoint
 * stores), and the methods of {@link DiffusionModel} that need only the store and a forward
 * pass ε_θ(x_t, t, c).
 */
export abstract class StoredNetwork<C extends ModelConfigBase> implements DiffusionModel {
  /** The full configuration. */
  readonly config: C;
  readonly #store: ParameterStore;

  /**
   * @param config the complete configuration (its seed initialises the parameters)
   * @param trainable false for a copy that holds EMA weights
   */
  constructor(config: C, trainable: boolean) {
    this.config = config;
    this.#store = new ParameterStore(config.seed, trainable, config.lora);
  }

  /** Size of the class-context vector c (0 for an unconditional network). */
  abstract readonly contextDim: number;

  /** Width D of the token states it cross-attends to (0 when it takes none). */
  get crossAttentionDim(): number {
    return 0;
  }

  /** The store the subclass's layers are created in, in order. */
  protected get store(): ParameterStore {
    return this.#store;
  }

  /** Trainable parameters in creation order. */
  get parameters(): readonly NamedVariable[] {
    return this.#store.parameters;
  }

  /** Its LoRA: the adapted layers, their strength, merging (null without `config.lora`). */
  get lora(): LoraSet | null {
    return this.#store.lora;
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
      attentionMaps: options.attentionMaps,
    };
    return tf.tidy(() => this.forward(x, t, options, ctx));
  }

  /** The forward pass with explicit conditioning and context (used by `apply` and `summary`). */
  abstract forward(
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    conditioning: Conditioning,
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
      const ctx: ForwardContext = { training: false, seed: 0, trace };
      this.forward(x, tf.zeros([1]) as tf.Tensor1D, {}, ctx);
    });
    const shapes = new Map(trace.map((r) => [r.name, r.outputShape]));
    const blockOf = new Map(
      this.architecture().blocks.flatMap((b) => b.layers.map((layer) => [layer, b.id])),
    );
    return this.#store.layers.filter((l) => l.parameters.length > 0).map((l) => ({
      name: l.name,
      type: l.type,
      shape: l.parameters[0].variable.shape.slice(),
      params: countParameters(l.parameters),
      outputShape: shapes.get(l.name) ?? [],
      block: blockOf.get(l.name) ?? "",
    }));
  }

  /** Free every variable. */
  dispose(): void {
    for (const p of this.#store.parameters) p.variable.dispose();
    for (const p of this.#store.buffers) p.variable.dispose();
  }

  /** The layers with parameters whose names start with one of `prefixes` (a block's layers). */
  protected layersUnder(...prefixes: string[]): { layers: string[]; parameters: number } {
    const inside = this.#store.layers.filter((l) =>
      l.parameters.length > 0 && prefixes.some((p) => l.name === p || l.name.startsWith(p + "."))
    );
    return {
      layers: inside.map((l) => l.name),
      parameters: countParameters(inside.flatMap((l) => l.parameters)),
    };
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
