/**
 * The feature classifier that the book's metrics look through (chapter 7): a small CNN trained
 * on the real emoji to tell their Unicode category and subcategory. No Inception, VGG or AlexNet
 * weights can be downloaded here, so this network plays their part, and a number computed on it
 * is named for it ("FID on the emoji classifier's 128-d features"), never for Inception.
 *
 * Each stage s is two 3×3 convolutions, each followed by GroupNorm and SiLU, then 2×2 max pooling
 * before the next stage:
 *
 *   h_s = SiLU(GN(conv(SiLU(GN(conv(pool(h_{s−1})))))),
 *
 * the features are the last stage's spatial mean φ(x) = mean_{i,j} h_S[i, j, :] (the
 * penultimate layer, as Inception's 2048-d pool is FID's), and each head is a linear map of
 * φ(x) to class logits, p(y | x) = softmax(W φ(x) + b). The stage outputs h_s are the feature
 * maps of the learned perceptual distance (lib/core/models/perceptual.ts).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  Conv2d,
  GroupNorm,
  Linear,
  maxPool2x,
  type NamedVariable,
  ParameterStore,
} from "../nn/layers.ts";

/** The classifier's configuration. */
export interface ClassifierConfig {
  /** Always "classifier". */
  kind: "classifier";
  /** Image side H = W (divisible by 2^(stages − 1)). */
  imageSize: number;
  /** Image channels. */
  inChannels: number;
  /** Channels of each stage; the last is the feature dimension. */
  channels: number[];
  /** GroupNorm groups (divides every stage's channels). */
  groups: number;
  /**
   * The heads: a name and a class count each, e.g. category (9) and subcategory (98); none for a
   * feature extractor (the tiny CLIP's image tower).
   */
  heads: { name: string; classes: number }[];
  /** Seed of the initial weights. */
  seed: number;
}

/** Fill a partial configuration with the defaults and check it. */
export function completeClassifierConfig(partial: Partial<ClassifierConfig>): ClassifierConfig {
  const config: ClassifierConfig = {
    kind: "classifier",
    imageSize: 16,
    inChannels: 3,
    channels: [32, 64, 128],
    groups: 8,
    heads: [],
    seed: 0,
    ...partial,
  };
  const reduction = 2 ** (config.channels.length - 1);
  if (config.imageSize % reduction !== 0) {
    throw new Error(
      `classifier: image size ${config.imageSize} does not halve ${config.channels.length - 1} ` +
        `times; use a size divisible by ${reduction} or fewer stages.`,
    );
  }
  return config;
}

interface Stage {
  conv1: Conv2d;
  norm1: GroupNorm;
  conv2: Conv2d;
  norm2: GroupNorm;
}

/** The network of the module comment. */
export class FeatureClassifier {
  readonly config: ClassifierConfig;
  readonly #stages: Stage[];
  readonly #heads: Linear[];

  /**
   * @param partial the configuration (missing fields take the defaults)
   * @param part where a larger network keeps this one's parameters: its store, and a prefix for
   *   their names (the tiny CLIP's "image."); by default a store of its own, seeded by `seed`
   */
  constructor(
    partial: Partial<ClassifierConfig>,
    part: { store?: ParameterStore; prefix?: string } = {},
  ) {
    this.config = completeClassifierConfig(partial);
    const c = this.config;
    const store = part.store ?? new ParameterStore(c.seed);
    const prefix = part.prefix ?? "";
    const first = store.parameters.length;
    let channels = c.inChannels;
    this.#stages = c.channels.map((out, s) => {
      const stage = {
        conv1: new Conv2d(store, `${prefix}stage${s}.conv1`, channels, out),
        norm1: new GroupNorm(store, `${prefix}stage${s}.norm1`, out, c.groups),
        conv2: new Conv2d(store, `${prefix}stage${s}.conv2`, out, out),
        norm2: new GroupNorm(store, `${prefix}stage${s}.norm2`, out, c.groups),
      };
      channels = out;
      return stage;
    });
    this.#heads = c.heads.map((h) =>
      new Linear(store, `${prefix}head.${h.name}`, channels, h.classes)
    );
    this.parameters = store.parameters.slice(first);
  }

  /** Trainable parameters in creation order (their names are the checkpoint's). */
  readonly parameters: readonly NamedVariable[];

  /** The feature dimension d of φ(x). */
  get featureDim(): number {
    return this.config.channels.at(-1)!;
  }

  /** Number of trainable parameters. */
  parameterCount(): number {
    return this.parameters.reduce((sum, p) => sum + p.variable.size, 0);
  }

  /** The stage outputs h_1 … h_S for images x [N, H, W, C] in [−1, 1]. */
  featureMaps(x: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => {
      const maps: tf.Tensor4D[] = [];
      let h = x;
      this.#stages.forEach((stage, s) => {
        if (s > 0) h = maxPool2x(h);
        h = stage.norm1.applySiLU(stage.conv1.apply(h));
        h = stage.norm2.applySiLU(stage.conv2.apply(h));
        maps.push(h);
      });
      return maps;
    });
  }

  /** The features φ(x) [N, d]: the last stage's spatial mean. */
  features(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => tf.mean(this.featureMaps(x).at(-1)!, [1, 2]) as tf.Tensor2D);
  }

  /** Each head's logits [N, classes] of the features φ [N, d]. */
  logits(features: tf.Tensor2D): tf.Tensor2D[] {
    return this.#heads.map((head) => head.apply(features));
  }

  /** Free every variable. */
  dispose(): void {
    tf.dispose(this.parameters.map((p) => p.variable));
  }
}
