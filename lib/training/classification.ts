/**
 * Supervised training of the feature classifier (lib/core/models/classifier.ts): the sum of
 * each head's cross-entropy,
 *
 *   L(θ) = Σ_h −(1/B) Σ_b log p_θ^h(y_b^h | x̃_b),
 *
 * on augmented images x̃ (a horizontal flip with probability ½ and a shift of up to `maxShift`
 * pixels, the border filled with the white background), minimised by AdamW under the library's
 * warm-up and cosine learning-rate schedule, as a supervised run (lib/training/supervised.ts:
 * checkpoints that resume exactly, metrics, a time budget); accuracy is measured on held-out
 * images the classifier never trains on.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type ClassifierConfig, FeatureClassifier } from "../core/models/classifier.ts";
import type { Random } from "../core/random.ts";
import { assignVariables, loadCheckpoint, readVariables, saveCheckpoint } from "./checkpoint.ts";
import type { Adam } from "./optim.ts";
import {
  optimiserStep,
  type StepResult,
  type SupervisedMetrics,
  type SupervisedRecipe,
  type SupervisedRunOptions,
  trainSupervised,
} from "./supervised.ts";
import { horizontalFlip, shift } from "../data/distortions.ts";

/** Labelled images, and which of them train. */
export interface LabelledImages {
  /** NHWC float32 in [−1, 1], `count · H · W · C` values. */
  images: Float32Array;
  /** Number of images. */
  count: number;
  /** Labels of each head (in the classifier's head order), one per image. */
  labels: Int32Array[];
  /** The images the classifier trains on. */
  train: readonly number[];
  /** The held-out images its accuracy is measured on. */
  heldOut: readonly number[];
}

/** A classifier run's recipe: the supervised run's, and the augmentation's largest shift. */
export interface ClassifierTraining extends SupervisedRecipe {
  /** Largest shift of the augmentation, in pixels. */
  maxShift: number;
}

/** One line of a classifier run's `metrics.jsonl` (`heldOut`: each head's accuracy). */
export type ClassifierMetrics = SupervisedMetrics;

/** Options of {@link trainClassifier}. */
export type TrainClassifierOptions = SupervisedRunOptions;

/** What {@link trainClassifier} ends with: the network (the caller disposes it) and its step. */
export interface ClassifierRun {
  classifier: FeatureClassifier;
  step: number;
}

/** Fraction of `indices` whose top-1 prediction of each head is its label. */
export async function heldOutAccuracy(
  classifier: FeatureClassifier,
  data: Pick<LabelledImages, "images" | "labels">,
  indices: readonly number[],
  batchSize = 256,
): Promise<Record<string, number>> {
  const { imageSize: H, imageSize: W, inChannels: C } = classifier.config;
  const size = H * W * C;
  const heads = classifier.config.heads;
  const correct = new Float64Array(heads.length);
  for (let start = 0; start < indices.length; start += batchSize) {
    const chunk = indices.slice(start, start + batchSize);
    const x = new Float32Array(chunk.length * size);
    chunk.forEach((i, b) => x.set(data.images.subarray(i * size, (i + 1) * size), b * size));
    const predicted = tf.tidy(() => {
      const logits = classifier.logits(
        classifier.features(tf.tensor4d(x, [chunk.length, H, W, C])),
      );
      return tf.stack(logits.map((l) => tf.argMax(l, 1)));
    });
    const values = await predicted.data();
    predicted.dispose();
    heads.forEach((_, h) => {
      chunk.forEach((i, b) => {
        if (values[h * chunk.length + b] === data.labels[h][i]) correct[h]++;
      });
    });
  }
  return Object.fromEntries(heads.map((head, h) => [head.name, correct[h] / indices.length]));
}

/** A batch of augmented training images and their labels, drawn from `rng`. */
function augmentedBatch(
  data: LabelledImages,
  shape: [number, number, number],
  config: ClassifierTraining,
  rng: Random,
): { x: Float32Array; labels: Int32Array[] } {
  const size = shape[0] * shape[1] * shape[2];
  const B = config.batchSize;
  const x = new Float32Array(B * size);
  const labels = data.labels.map(() => new Int32Array(B));
  for (let b = 0; b < B; b++) {
    const i = data.train[rng.int(0, data.train.length)];
    const flip = rng.uniform() < 0.5;
    const dy = rng.int(-config.maxShift, config.maxShift + 1);
    const dx = rng.int(-config.maxShift, config.maxShift + 1);
    const image = data.images.subarray(i * size, (i + 1) * size);
    x.set(shift(flip ? horizontalFlip(image, shape) : image, shape, dy, dx), b * size);
    data.labels.forEach((l, h) => labels[h][b] = l[i]);
  }
  return { x, labels };
}

/** L(θ) of the module comment on a batch (call inside `tf.variableGrads`). */
function classifierLoss(
  classifier: FeatureClassifier,
  batch: { x: Float32Array; labels: readonly Int32Array[] },
): () => tf.Scalar {
  const { imageSize: s, inChannels: c } = classifier.config;
  return () => {
    const x = tf.tensor4d(batch.x, [batch.labels[0].length, s, s, c]);
    const logits = classifier.logits(classifier.features(x));
    return tf.addN(logits.map((l, h) =>
      tf.losses.softmaxCrossEntropy(
        tf.oneHot(tf.tensor1d(batch.labels[h], "int32"), l.shape[1]),
        l,
      )
    )) as tf.Scalar;
  };
}

/**
 * One optimisation step on a batch: L(θ) of the module comment, then AdamW at learning rate
 * `lr` as update number `t` (lib/training/supervised.ts's `optimiserStep`). What the run takes
 * at every step, and what the benchmark times.
 */
export function classifierStep(
  classifier: FeatureClassifier,
  adam: Adam,
  batch: { x: Float32Array; labels: readonly Int32Array[] },
  lr: number,
  t: number,
): Promise<StepResult> {
  return optimiserStep(classifier.parameters, adam, classifierLoss(classifier, batch), lr, t);
}

/**
 * Train a classifier of `config` on `data` for `training.steps` steps, resuming the run at
 * `options.checkpointPath` when there is one (the module comment says what it minimises).
 *
 * @throws UserError when the loss is not finite (no update is applied, nothing is written)
 */
export async function trainClassifier(
  config: Partial<ClassifierConfig>,
  data: LabelledImages,
  training: ClassifierTraining,
  options: TrainClassifierOptions,
): Promise<ClassifierRun> {
  const classifier = new FeatureClassifier(config);
  const s = classifier.config.imageSize;
  const shape: [number, number, number] = [s, s, classifier.config.inChannels];
  try {
    const step = await trainSupervised(classifier, training, {
      what: "classifier",
      batchLoss: (rng) => classifierLoss(classifier, augmentedBatch(data, shape, training, rng)),
      evaluate: () => heldOutAccuracy(classifier, data, data.heldOut),
    }, options);
    return { classifier, step };
  } catch (e) {
    classifier.dispose();
    throw e;
  }
}

/** The classifier stored in a checkpoint or artefact at `path`. */
export async function loadClassifier(path: string): Promise<FeatureClassifier> {
  const checkpoint = await loadCheckpoint(path);
  const classifier = new FeatureClassifier(checkpoint.modelConfig as ClassifierConfig);
  try {
    assignVariables(classifier.parameters, checkpoint.tensors, "params/", path);
  } catch (e) {
    classifier.dispose();
    throw e;
  }
  return classifier;
}

/** Save the classifier's weights alone (an artefact), in float32. */
export async function saveClassifier(
  path: string,
  classifier: FeatureClassifier,
  state: Record<string, unknown> = {},
): Promise<void> {
  await saveCheckpoint(path, {
    step: 0,
    modelConfig: classifier.config,
    state,
    tensors: await readVariables(classifier.parameters, "params/"),
  });
}
