/**
 * The tiny CLIP of chapter 6 (Radford et al., 2021): an image tower and a text tower mapped into
 * one space of width E, trained so that an emoji and its caption land close and the batch's other
 * captions far (the symmetric contrastive loss of lib/training/contrastive.ts, on
 * `imageEmbeddings`, `textEmbeddings` and `logScale`),
 *
 *   f(x) = W_I φ(x),   φ the feature classifier's pooled last stage (lib/core/models/classifier.ts,
 *                      without heads),
 *   g(y) = W_T e(y),   e the text encoder's EOS state (lib/core/models/text_encoder.ts),
 *   cos(x, y) = f(x)·g(y) / (‖f(x)‖ ‖g(y)‖),   and a learned log inverse temperature τ.
 *
 * Its CLIP score of an image and a prompt is 100 · max(cos, 0), the convention of Hessel et al.
 * (2021) with torchmetrics' weight of 100: the book scores its text-conditional samples with it,
 * named for this network ("CLIP score on the tiny CLIP"), never for OpenAI's.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type ClassifierConfig, FeatureClassifier } from "./classifier.ts";
import { TextEncoder, type TextEncoderConfig } from "./text_encoder.ts";
import { INFERENCE, Linear, type NamedVariable, ParameterStore } from "../nn/layers.ts";

/** CLIP's initial log inverse temperature τ = ln(1/0.07). */
export const INITIAL_LOG_SCALE = Math.log(1 / 0.07);

/** Rows scaled to unit length, z = x/‖x‖ (CLIP's normalised embeddings). */
export function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.div(x, tf.norm(x, "euclidean", 1, true));
}

/** The tiny CLIP's configuration. */
export interface ClipConfig {
  /** Always "clip". */
  kind: "clip";
  /** The image tower: the classifier's stages (no heads). */
  image: Partial<Omit<ClassifierConfig, "kind" | "heads" | "seed">>;
  /** The text tower (its vocabulary and context are the tokenizer's). */
  text:
    & Partial<Omit<TextEncoderConfig, "kind" | "seed">>
    & Pick<TextEncoderConfig, "vocabularySize">;
  /** E, the width of the joint space. */
  embedDim: number;
  /** Seed of every initial weight. */
  seed: number;
}

/** The network of the module comment. */
export class TinyClip {
  readonly config: ClipConfig;
  readonly image: FeatureClassifier;
  readonly text: TextEncoder;
  /** τ, the log inverse temperature (a scalar parameter). */
  readonly logScale: tf.Variable;
  readonly #store: ParameterStore;
  readonly #imageProjection: Linear;
  readonly #textProjection: Linear;

  constructor(partial: Partial<ClipConfig> & Pick<ClipConfig, "text">) {
    this.config = { kind: "clip", image: {}, embedDim: 64, seed: 0, ...partial };
    const store = this.#store = new ParameterStore(this.config.seed);
    this.image = new FeatureClassifier({ ...this.config.image, heads: [] }, {
      store,
      prefix: "image.",
    });
    this.text = new TextEncoder(this.config.text, { store, prefix: "text." });
    const e = this.config.embedDim;
    this.#imageProjection = new Linear(store, "image.projection", this.image.featureDim, e);
    this.#textProjection = new Linear(store, "text.projection", this.text.config.width, e);
    this.logScale = store.parameter(store.layer("logit", "Temperature"), "logScale", [], {
      constant: INITIAL_LOG_SCALE,
    });
  }

  /** Trainable parameters in creation order (their names are the checkpoint's). */
  get parameters(): readonly NamedVariable[] {
    return this.#store.parameters;
  }

  /** Number of trainable parameters. */
  parameterCount(): number {
    return this.parameters.reduce((sum, p) => sum + p.variable.size, 0);
  }

  /** f(x) [N, E] for images x [N, H, W, C] in [−1, 1] (not normalised). */
  imageEmbeddings(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.#imageProjection.apply(this.image.features(x)));
  }

  /** g(y) [N, E] for token ids [N, L] (not normalised). */
  textEmbeddings(ids: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.#textProjection.apply(this.text.encode(ids, INFERENCE).pooled));
  }

  /** cos(xᵢ, yⱼ) [N_x, N_y]: every image against every prompt. */
  cosines(x: tf.Tensor4D, ids: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() =>
      tf.matMul(unitRows(this.imageEmbeddings(x)), unitRows(this.textEmbeddings(ids)), false, true)
    );
  }

  /** The CLIP score 100 · max(cos(xᵢ, yᵢ), 0) [N] of each image with its own prompt. */
  clipScore(x: tf.Tensor4D, ids: tf.Tensor2D): tf.Tensor1D {
    return tf.tidy(() => {
      const cos = tf.sum(
        tf.mul(unitRows(this.imageEmbeddings(x)), unitRows(this.textEmbeddings(ids))),
        1,
      );
      return tf.mul(tf.relu(cos), 100) as tf.Tensor1D;
    });
  }

  /** Free every variable. */
  dispose(): void {
    tf.dispose(this.parameters.map((p) => p.variable));
  }
}
