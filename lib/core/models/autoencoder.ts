/**
 * The KL-regularised autoencoder of latent diffusion (Rombach et al., 2022, "AutoencoderKL"),
 * scaled to the book's emoji: an encoder E maps an image x ∈ ℝ^{H×W×3} to the mean and log
 * variance of a diagonal Gaussian posterior over a latent z ∈ ℝ^{h×w×c}, h = H/f, and a decoder
 * D maps z back to pixels,
 *
 *   q(z | x) = N(μ(x), diag σ²(x)),   z = μ + σ ⊙ ε,  ε ~ N(0, I),   x̂ = D(z),
 *
 * with the downsampling factor f = 2^(levels − 1). Both halves are the LDM recipe of residual
 * blocks without a time embedding (GroupNorm, SiLU, 3×3 convolutions), stride-2 convolutions
 * down and nearest-neighbour upsampling with a convolution up, and a middle of
 * Res → self-attention → Res at the latent resolution:
 *
 *   E: Conv → [Res × r, Down] per level (no Down after the last) → Res, Attn, Res
 *        → Conv(SiLU(GN(·))) to 2c channels, split into μ and log σ² (clamped to [−30, 20])
 *   D: Conv(z) → Res, Attn, Res → [Res × (r + 1), Up] per level, deepest first (no Up after
 *        level 0) → Conv(SiLU(GN(·))) to 3 channels
 *
 * The diffusion model then works on z·s, where s = 1/std(z) over the dataset is the scale
 * factor (Stable Diffusion's 0.18215 is this number for its VAE), and D(ẑ/s) turns its samples
 * into images. The encoder's and decoder's parameters are named `encoder.*` and `decoder.*`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  Conv2d,
  Downsample,
  type ForwardContext,
  GroupNorm,
  INFERENCE,
  type NamedVariable,
  ParameterStore,
  ResidualBlock,
  Upsample,
} from "../nn/layers.ts";
import { Attention } from "../nn/attention.ts";

/** The autoencoder's configuration. */
export interface AutoencoderConfig {
  /** Always "autoencoderKL". */
  kind: "autoencoderKL";
  /** Image side H = W. */
  imageSize: number;
  /** Image channels (3). */
  inChannels: number;
  /** c, the latent's channels. */
  latentChannels: number;
  /** Channels of the first level. */
  baseChannels: number;
  /** Channels of level i are baseChannels · channelMultipliers[i]; f = 2^(levels − 1). */
  channelMultipliers: number[];
  /** r, residual blocks per level in the encoder (the decoder has r + 1, as in LDM). */
  resBlocksPerLevel: number;
  /** Self-attention between the middle residual blocks. */
  middleAttention: boolean;
  /** GroupNorm groups. */
  groups: number;
  /** Seed of the initial weights. */
  seed: number;
}

/** LDM's clamp of the encoder's log variance. */
const LOG_VARIANCE_RANGE = [-30, 20] as const;

/** A complete configuration from a partial one (32×32 RGB, f = 4, c = 4 by default), checked. */
export function autoencoderConfig(partial: Partial<AutoencoderConfig> = {}): AutoencoderConfig {
  const config: AutoencoderConfig = {
    kind: "autoencoderKL",
    imageSize: 32,
    inChannels: 3,
    latentChannels: 4,
    baseChannels: 32,
    channelMultipliers: [1, 2, 2],
    resBlocksPerLevel: 1,
    middleAttention: true,
    groups: 8,
    seed: 0,
    ...partial,
  };
  const f = 2 ** (config.channelMultipliers.length - 1);
  if (config.imageSize % f !== 0) {
    throw new Error(
      `autoencoder: image size ${config.imageSize} cannot be halved ` +
        `${config.channelMultipliers.length - 1} times; choose another size or fewer levels.`,
    );
  }
  for (const m of config.channelMultipliers) {
    if ((m * config.baseChannels) % config.groups !== 0) {
      throw new Error(
        `autoencoder: ${m * config.baseChannels} channels are not divisible by ${config.groups} ` +
          `groups; change baseChannels or groups.`,
      );
    }
  }
  return config;
}

/** The diagonal Gaussian posterior q(z | x): its mean μ and log variance log σ², [N, h, w, c]. */
export interface LatentPosterior {
  mean: tf.Tensor4D;
  logVariance: tf.Tensor4D;
}

/**
 * KL(q(z | x) ‖ N(0, I)) of each image, summed over the latent's values (LDM's
 * `DiagonalGaussianDistribution.kl`):
 *
 *   KL = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²),   [N].
 */
export function klToStandardNormal(posterior: LatentPosterior): tf.Tensor1D {
  return tf.tidy(() => {
    const { mean, logVariance } = posterior;
    const terms = tf.sub(tf.add(tf.square(mean), tf.exp(logVariance)), tf.add(1, logVariance));
    return tf.mul(0.5, tf.sum(terms, [1, 2, 3])) as tf.Tensor1D;
  });
}

/** A level's blocks of one half. */
interface Level {
  blocks: ResidualBlock[];
  resample: Downsample | Upsample | null;
}

/** The network of the module comment. */
export class AutoencoderKL {
  readonly config: AutoencoderConfig;
  readonly #store: ParameterStore;
  readonly #encoder: {
    convIn: Conv2d;
    levels: Level[];
    middle: [ResidualBlock, Attention | null, ResidualBlock];
    normOut: GroupNorm;
    convOut: Conv2d;
  };
  readonly #decoder: {
    convIn: Conv2d;
    middle: [ResidualBlock, Attention | null, ResidualBlock];
    levels: Level[];
    normOut: GroupNorm;
    convOut: Conv2d;
  };

  /** @param partial the configuration (missing fields take {@link autoencoderConfig}'s defaults) */
  constructor(partial: Partial<AutoencoderConfig> = {}) {
    const c = this.config = autoencoderConfig(partial);
    const store = this.#store = new ParameterStore(c.seed);
    const block = { embeddingDim: 0, groups: c.groups, dropout: 0 };
    const widths = c.channelMultipliers.map((m) => m * c.baseChannels);
    const deepest = widths.at(-1)!;
    const middle = (prefix: string): [ResidualBlock, Attention | null, ResidualBlock] => [
      new ResidualBlock(store, `${prefix}.mid.res.0`, deepest, deepest, block),
      c.middleAttention ? new Attention(store, `${prefix}.mid.attn`, deepest, 1, c.groups) : null,
      new ResidualBlock(store, `${prefix}.mid.res.1`, deepest, deepest, block),
    ];

    let channels = c.baseChannels;
    const encoderIn = new Conv2d(store, "encoder.input.conv", c.inChannels, channels);
    const encoderLevels = widths.map((width, level): Level => {
      const blocks = Array.from({ length: c.resBlocksPerLevel }, (_, i) => {
        const res = new ResidualBlock(
          store,
          `encoder.down.${level}.res.${i}`,
          channels,
          width,
          block,
        );
        channels = width;
        return res;
      });
      const last = level === widths.length - 1;
      return {
        blocks,
        resample: last ? null : new Downsample(store, `encoder.down.${level}.downsample`, width),
      };
    });
    this.#encoder = {
      convIn: encoderIn,
      levels: encoderLevels,
      middle: middle("encoder"),
      normOut: new GroupNorm(store, "encoder.output.norm", deepest, c.groups),
      convOut: new Conv2d(store, "encoder.output.conv", deepest, 2 * c.latentChannels),
    };

    channels = deepest;
    const decoderIn = new Conv2d(store, "decoder.input.conv", c.latentChannels, deepest);
    const decoderMiddle = middle("decoder");
    const decoderLevels = [...widths.keys()].reverse().map((level): Level => {
      const width = widths[level];
      const blocks = Array.from({ length: c.resBlocksPerLevel + 1 }, (_, i) => {
        const res = new ResidualBlock(
          store,
          `decoder.up.${level}.res.${i}`,
          channels,
          width,
          block,
        );
        channels = width;
        return res;
      });
      return {
        blocks,
        resample: level === 0 ? null : new Upsample(store, `decoder.up.${level}.upsample`, width),
      };
    });
    this.#decoder = {
      convIn: decoderIn,
      middle: decoderMiddle,
      levels: decoderLevels,
      normOut: new GroupNorm(store, "decoder.output.norm", widths[0], c.groups),
      convOut: new Conv2d(store, "decoder.output.conv", widths[0], c.inChannels),
    };
  }

  /** f, the side of an image over the side of its latent. */
  get downsamplingFactor(): number {
    return 2 ** (this.config.channelMultipliers.length - 1);
  }

  /** The latent's shape [h, w, c] of one image. */
  get latentShape(): [number, number, number] {
    const side = this.config.imageSize / this.downsamplingFactor;
    return [side, side, this.config.latentChannels];
  }

  /** Trainable parameters in creation order (the encoder's, then the decoder's). */
  get parameters(): readonly NamedVariable[] {
    return this.#store.parameters;
  }

  /** Number of trainable parameters. */
  parameterCount(): number {
    return this.parameters.reduce((sum, p) => sum + p.variable.size, 0);
  }

  /** q(z | x) of images x [N, H, W, 3] in [−1, 1]. */
  encode(x: tf.Tensor4D, ctx: ForwardContext = INFERENCE): LatentPosterior {
    const c = this.config;
    if (x.shape[1] !== c.imageSize || x.shape[2] !== c.imageSize || x.shape[3] !== c.inChannels) {
      throw new Error(
        `autoencoder: images of shape [${x.shape}] do not match the network's ` +
          `[N, ${c.imageSize}, ${c.imageSize}, ${c.inChannels}].`,
      );
    }
    const e = this.#encoder;
    const moments = tf.tidy(() => {
      let h = e.convIn.apply(x, ctx);
      for (const level of e.levels) {
        for (const res of level.blocks) h = res.apply(h, null, ctx);
        if (level.resample) h = level.resample.apply(h, ctx);
      }
      h = runMiddle(e.middle, h, ctx);
      return e.convOut.apply(e.normOut.applySiLU(h, ctx), ctx);
    });
    const [mean, logVariance] = tf.split(moments, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
    const clamped = tf.clipByValue(logVariance, ...LOG_VARIANCE_RANGE) as tf.Tensor4D;
    tf.dispose([moments, logVariance]);
    return { mean, logVariance: clamped };
  }

  /** x̂ = D(z) of latents z [N, h, w, c]. */
  decode(z: tf.Tensor4D, ctx: ForwardContext = INFERENCE): tf.Tensor4D {
    const [side, , channels] = this.latentShape;
    if (z.shape[1] !== side || z.shape[2] !== side || z.shape[3] !== channels) {
      throw new Error(
        `autoencoder: latents of shape [${z.shape}] do not match the network's ` +
          `[N, ${side}, ${side}, ${channels}].`,
      );
    }
    const d = this.#decoder;
    return tf.tidy(() => {
      let h = runMiddle(d.middle, d.convIn.apply(z, ctx), ctx);
      for (const level of d.levels) {
        for (const res of level.blocks) h = res.apply(h, null, ctx);
        if (level.resample) h = level.resample.apply(h, ctx);
      }
      return d.convOut.apply(d.normOut.applySiLU(h, ctx), ctx);
    });
  }

  /** Free every variable. */
  dispose(): void {
    for (const p of this.#store.parameters) p.variable.dispose();
  }
}

/** Res → [Attn] → Res. */
function runMiddle(
  [first, attention, second]: [ResidualBlock, Attention | null, ResidualBlock],
  h: tf.Tensor4D,
  ctx: ForwardContext,
): tf.Tensor4D {
  return tf.tidy(() => {
    let y = first.apply(h, null, ctx);
    if (attention) y = attention.apply(y, ctx);
    return second.apply(y, null, ctx);
  });
}

/**
 * z = μ + σ ⊙ ε, a draw from q(z | x) with the given standard-normal noise ε (of μ's shape), σ =
 * exp(½ log σ²): the reparameterisation that lets the reconstruction loss reach the encoder.
 */
export function samplePosterior(posterior: LatentPosterior, noise: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() =>
    tf.add(posterior.mean, tf.mul(tf.exp(tf.mul(0.5, posterior.logVariance)), noise))
  );
}
