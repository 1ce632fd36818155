/**
 * Textual inversion (Gal et al., 2022): a new word S* for a concept, learned from a handful of
 * its images as one embedding vector v in the frozen text encoder's input space,
 *
 *   v* = argmin_v  E_{x₀, y, ε, t} ‖ε − ε_θ(x_t, t, τ(y(S*); v))‖²,
 *
 * where y(S*) is a prompt template with the placeholder in it ("S*, twemoji"), τ the text encoder
 * with v as the embedding of S*'s id, and ε_θ the text-conditional U-Net. Nothing else trains: the
 * U-Net, the encoder and every row of its embedding table E stay as they are, because v is a
 * variable of its own that the encoder looks up beyond E (`TextEncoder.encode`'s `added`). v
 * starts at the embedding of an initializer word, a coarse description of the concept ("cat").
 *
 * A learned token is saved alone (a few hundred bytes) with the digest of the encoder it was
 * learned in; loading it into another encoder, or under a word that encoder already has, is
 * refused with a message that names both.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../core/errors.ts";
import { Random } from "../core/random.ts";
import type { NoiseSchedule } from "../core/schedules.ts";
import type { PredictionType } from "../core/parameterization.ts";
import { SPECIAL_TOKENS, type Tokenizer, UNK } from "../core/tokenizer.ts";
import type { DiffusionModel, ModelConfigBase } from "../core/models/mod.ts";
import type { TextEncoder } from "../core/models/text_encoder.ts";
import { ProgressBar } from "../runtime/progress.ts";
import { Adam } from "./optim.ts";
import { denoisingLoss } from "./objective.ts";
import { loadCheckpoint, readVariables, saveCheckpoint, variablesDigest } from "./checkpoint.ts";

/** A word the encoder did not know, and the embedding it was given. */
export class LearnedToken {
  /** v [1, D], the embedding of `word` (id `tokenizer.id(word)`, one past the encoder's E). */
  readonly vector: tf.Variable;
  /** The encoder's tokenizer with `word` appended. */
  readonly tokenizer: Tokenizer;

  /**
   * @param word the placeholder S* (a new lower-case word)
   * @param initializer the word whose embedding v starts from
   * @param encoder the frozen text encoder
   * @param tokenizer its tokenizer
   */
  constructor(
    readonly word: string,
    readonly initializer: string,
    readonly encoder: TextEncoder,
    tokenizer: Tokenizer,
  ) {
    if (tokenizer.vocabularySize !== encoder.config.vocabularySize) {
      throw new UserError(
        `the tokenizer has ${tokenizer.vocabularySize} ids but the encoder's table has ` +
          `${encoder.config.vocabularySize}; use the tokenizer stored with the encoder`,
      );
    }
    const id = tokenizer.id(initializer);
    if (id === UNK) {
      throw new UserError(
        `initializer "${initializer}" is not a word of the vocabulary; choose a word the ` +
          `captions use that describes the concept (e.g. its class, "cat")`,
      );
    }
    this.tokenizer = tokenizer.withWords([word]);
    this.vector = tf.tidy(() =>
      tf.variable(tf.slice(encoder.tokenEmbedding, [id, 0], [1, -1]), true)
    );
  }

  /** τ(texts) [N, L, D] with the learned word in the vocabulary. */
  encode(texts: readonly string[]): tf.Tensor3D {
    return tf.tidy(() => {
      const { contextLength: L } = this.encoder.config;
      const ids = tf.tensor2d(this.tokenizer.encodeBatch(texts), [texts.length, L], "int32");
      return this.encoder.encode(ids, undefined, this.vector as tf.Tensor2D).states;
    });
  }

  /** The `k` words whose embeddings are nearest to v by cosine similarity, nearest first. */
  nearestWords(k = 5): { word: string; cosine: number }[] {
    const cosines = tf.tidy(() => {
      const rows = tf.slice(this.encoder.tokenEmbedding, [SPECIAL_TOKENS.length, 0], [-1, -1]);
      const unit = (t: tf.Tensor) => tf.div(t, tf.add(tf.norm(t, "euclidean", -1, true), 1e-12));
      return tf.reshape(tf.matMul(unit(rows), unit(this.vector), false, true), [-1]);
    });
    const values = cosines.dataSync();
    cosines.dispose();
    return Array.from(values, (cosine, i) => ({ word: this.tokenizer.words[i], cosine }))
      .sort((a, b) => b.cosine - a.cosine)
      .slice(0, k);
  }

  /** Free v. */
  dispose(): void {
    this.vector.dispose();
  }
}

/** How a token is learned (the defaults follow diffusers' textual inversion, scaled down). */
export interface TextualInversionConfig {
  /** Optimisation steps. */
  steps: number;
  /** Images a step. */
  batchSize: number;
  /** Adam's learning rate (constant). */
  learningRate: number;
  /** Prompt templates, each with `{}` where the word goes ("{}, twemoji"). */
  templates: readonly string[];
  /** What the U-Net predicts. */
  prediction: PredictionType;
  /** Seed of the batches, timesteps, noise and templates. */
  seed: number;
}

const DEFAULTS: Omit<TextualInversionConfig, "templates"> = {
  steps: 500,
  batchSize: 8,
  learningRate: 5e-3,
  prediction: "epsilon",
  seed: 0,
};

/**
 * Learn `token.vector` from `images` (NHWC in [−1, 1], `count` of them) through the frozen
 * `unet` and the token's encoder (see the module comment). Returns the loss of every step.
 *
 * @throws UserError for an unknown option, a template without `{}`, or a non-finite loss
 */
export async function learnToken(
  token: LearnedToken,
  unet: DiffusionModel,
  schedule: NoiseSchedule,
  data: { images: Float32Array; count: number },
  options: Partial<TextualInversionConfig> & Pick<TextualInversionConfig, "templates">,
  callbacks: { progress?: boolean; onStep?: (step: number, loss: number) => void } = {},
): Promise<number[]> {
  for (const key of Object.keys(options)) {
    if (!(key in DEFAULTS) && key !== "templates") {
      throw new UserError(
        `Unknown textual inversion option "${key}"; the options are ` +
          `${[...Object.keys(DEFAULTS), "templates"].join(", ")}.`,
      );
    }
  }
  const config: TextualInversionConfig = { ...DEFAULTS, ...options };
  const bad = config.templates.find((t) => !t.includes("{}"));
  if (config.templates.length === 0 || bad !== undefined) {
    throw new UserError(
      `every prompt template needs "{}" where the word goes, e.g. "{}, twemoji"` +
        (bad === undefined ? "" : `; "${bad}" has none`),
    );
  }
  const { imageSize: h, inChannels: c } = unet.config;
  const size = h * h * c;
  if (data.count < 1 || data.images.length !== data.count * size) {
    throw new UserError(
      `the concept's images do not fit the U-Net: ${data.count} images of ${h}×${h}×${c} need ` +
        `${data.count * size} values, not ${data.images.length}`,
    );
  }
  const rng = new Random(config.seed);
  const adam = new Adam([{ name: token.vector.name, variable: token.vector }], {
    optimizer: "adam",
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-8,
    weightDecay: 0,
  });
  const progress = callbacks.progress === false
    ? null
    : new ProgressBar(config.steps, { label: `learn "${token.word}"` });
  const losses: number[] = [];
  try {
    for (let step = 0; step < config.steps; step++) {
      const n = config.batchSize;
      const picks = Array.from({ length: n }, () => rng.int(0, data.count));
      const timesteps = Int32Array.from({ length: n }, () => rng.int(0, schedule.T));
      const prompts = picks.map(() =>
        config.templates[rng.int(0, config.templates.length)].replace("{}", token.word)
      );
      const batch = new Float32Array(n * size);
      picks.forEach((i, k) => batch.set(data.images.subarray(i * size, (i + 1) * size), k * size));
      const x0 = tf.tensor4d(batch, [n, h, h, c]);
      const noise = tf.tensor4d(Float32Array.from(rng.normals(n * size)), [n, h, h, c]);
      const loss = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() =>
          denoisingLoss(unet, schedule, {
            x0,
            noise,
            timesteps,
            encoderHiddenStates: token.encode(prompts),
          }, { prediction: config.prediction }).loss, [token.vector]);
        adam.update(
          tf.reshape(grads[token.vector.name], [-1]) as tf.Tensor1D,
          config.learningRate,
          step + 1,
        );
        return value;
      });
      const value = (await loss.data())[0];
      tf.dispose([loss, x0, noise]);
      if (!Number.isFinite(value)) {
        throw new UserError(
          `textual inversion diverged at step ${step + 1} (loss ${value}); lower the learning ` +
            `rate (it is ${config.learningRate})`,
        );
      }
      losses.push(value);
      callbacks.onStep?.(step + 1, value);
      progress?.update(step + 1, { loss: value });
    }
  } finally {
    progress?.done();
    adam.dispose();
  }
  return losses;
}

/** SHA-256 (hex) of a text encoder's weights: which encoder a token was learned in. */
export async function encoderDigest(encoder: TextEncoder): Promise<string> {
  return await variablesDigest(encoder.parameters);
}

/** What a learned-token file records besides v. */
interface TokenInfo {
  word: string;
  initializer: string;
  encoder: { name: string; weights: string };
}

/** Write `token` alone to `path` (its word, initializer, v and encoder); returns the bytes. */
export async function saveLearnedToken(
  path: string,
  token: LearnedToken,
  options: { encoderName: string },
): Promise<number> {
  const info: TokenInfo = {
    word: token.word,
    initializer: token.initializer,
    encoder: { name: options.encoderName, weights: await encoderDigest(token.encoder) },
  };
  await saveCheckpoint(path, {
    step: 0,
    modelConfig: token.encoder.config as unknown as ModelConfigBase,
    state: { learnedToken: info },
    tensors: await readVariables([{ name: token.word, variable: token.vector }], "token/"),
  });
  return (await Deno.stat(path)).size;
}

/**
 * The token stored at `path`, in `encoder` (with its `tokenizer`). Refused, naming both, when it
 * was learned in another encoder, or when the tokenizer already has its word.
 */
export async function loadLearnedToken(
  path: string,
  encoder: TextEncoder,
  tokenizer: Tokenizer,
  options: { encoderName?: string } = {},
): Promise<LearnedToken> {
  const checkpoint = await loadCheckpoint(path);
  const info = checkpoint.state.learnedToken as TokenInfo | undefined;
  if (!info) {
    throw new UserError(`${path} is a checkpoint but not a learned token (saveLearnedToken).`);
  }
  const here = options.encoderName ?? "this text encoder";
  const digest = await encoderDigest(encoder);
  if (digest !== info.encoder.weights) {
    throw new UserError(
      `token "${info.word}" in ${path} was learned in "${info.encoder.name}" (weights ` +
        `${info.encoder.weights.slice(0, 12)}…), but ${here} has other weights ` +
        `(${digest.slice(0, 12)}…); its embedding means nothing there: learn it again in ${here}`,
    );
  }
  const token = new LearnedToken(info.word, info.initializer, encoder, tokenizer);
  const stored = checkpoint.tensors.get(`token/${info.word}`)!;
  tf.tidy(() => token.vector.assign(tf.tensor2d(stored.values, [1, stored.values.length])));
  return token;
}
