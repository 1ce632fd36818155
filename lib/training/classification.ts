/**
 * Supervised training of the feature classifier (lib/core/models/classifier.ts): the sum of
 * each head's cross-entropy,
 *
 *   L(θ) = Σ_h −(1/B) Σ_b log p_θ^h(y_b^h | x̃_b),
 *
 * on augmented images x̃ (a horizontal flip with probability ½ and a shift of up to `maxShift`
 * pixels, the border filled with the white background), minimised by AdamW under the library's
 * warm-up and cosine learning-rate schedule. The run checkpoints its weights, moments, step and
 * random state, so an interrupted run resumes exactly; accuracy is measured on held-out images
 * the classifier never trains on.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type ClassifierConfig, FeatureClassifier } from "../core/models/classifier.ts";
import { Random } from "../core/random.ts";
import { UserError } from "../core/errors.ts";
import { activeBackendLabel } from "../runtime/backend.ts";
import { exists, removeStaleTemporaries } from "../runtime/files.ts";
import { ProgressBar } from "../runtime/progress.ts";
import {
  assignVariables,
  type Checkpoint,
  loadCheckpoint,
  readVariables,
  saveCheckpoint,
} from "./checkpoint.ts";
import { Adam, namedPieces, proposeUpdate } from "./optim.ts";
import { learningRateAt } from "./trainer.ts";
import { keepRecordsUpTo } from "./metrics_log.ts";
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

/** A classifier run's recipe. */
export interface ClassifierTraining {
  /** Optimisation steps. */
  steps: number;
  /** Images per step. */
  batchSize: number;
  /** Peak learning rate η_max. */
  learningRate: number;
  /** Final learning rate η_min of the cosine decay. */
  minLearningRate: number;
  /** Linear warm-up steps. */
  warmupSteps: number;
  /** AdamW's decoupled weight decay λ. */
  weightDecay: number;
  /** Largest shift of the augmentation, in pixels. */
  maxShift: number;
  /** Checkpoint (and measure held-out accuracy) every this many steps. */
  checkpointEvery: number;
  /** Log a metrics record every this many steps. */
  logEvery: number;
  /** Seed of the batches and augmentations. */
  seed: number;
}

/** One line of a classifier run's `metrics.jsonl`. */
export interface ClassifierMetrics {
  step: number;
  /** Mean loss over the steps since the last record. */
  loss: number;
  lr: number;
  stepsPerSecond: number;
  /** Seconds since this session of the run began. */
  elapsed: number;
  backend: string;
  /** Held-out accuracy of each head, at checkpoints. */
  heldOut?: Record<string, number>;
}

/** Options of {@link trainClassifier}. */
export interface TrainClassifierOptions {
  /** The run's checkpoint; an existing one is resumed. */
  checkpointPath: string;
  /** Where metrics records are appended. */
  metricsPath: string;
  /** Stop at the first checkpoint after this many minutes. */
  minutes?: number;
  /** Show the progress bar (default true). */
  progress?: boolean;
}

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

/** AdamW (β₁ 0.9, β₂ 0.999, ε 10⁻⁸) with the recipe's weight decay, over the classifier's weights. */
export function classifierOptimizer(
  classifier: FeatureClassifier,
  training: Pick<ClassifierTraining, "weightDecay">,
): Adam {
  return new Adam(classifier.parameters, {
    optimizer: "adamw",
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-8,
    weightDecay: training.weightDecay,
  });
}

/** What {@link classifierStep} did. */
export interface ClassifierStep {
  /** The loss before the update. */
  loss: number;
  /** ‖∇θ L‖ of the batch. */
  gradNorm: number;
  /** Whether the update was applied: only when the loss and the gradient norm are finite. */
  applied: boolean;
}

/**
 * One optimisation step on a batch: L(θ) of the module comment and its gradient, then AdamW at
 * learning rate `lr` as update number `t` (1-based, for Adam's bias correction), through
 * lib/training/optim.ts's `proposeUpdate` (one fused op on the native backend). A step whose
 * loss or gradient norm is not finite changes nothing.
 */
export async function classifierStep(
  classifier: FeatureClassifier,
  adam: Adam,
  batch: { x: Float32Array; labels: readonly Int32Array[] },
  lr: number,
  t: number,
): Promise<ClassifierStep> {
  const { imageSize: s, inChannels: c } = classifier.config;
  const { value, grads } = tf.variableGrads(() => {
    const x = tf.tensor4d(batch.x, [batch.labels[0].length, s, s, c]);
    const logits = classifier.logits(classifier.features(x));
    return tf.addN(logits.map((l, h) =>
      tf.losses.softmaxCrossEntropy(
        tf.oneHot(tf.tensor1d(batch.labels[h], "int32"), l.shape[1]),
        l,
      )
    )) as tf.Scalar;
  }, classifier.parameters.map((p) => p.variable));
  const update = proposeUpdate(adam, null, grads, { lr, k: t, clipNorm: null, emaDecay: 1 });
  tf.dispose(Object.values(grads));
  const readback = tf.tidy(() => tf.concat([tf.reshape(value, [1]), tf.reshape(update.norm, [1])]));
  const [loss, gradNorm] = await readback.data();
  tf.dispose([readback, value]);
  const applied = Number.isFinite(loss) && Number.isFinite(gradNorm);
  if (applied) update.commit(gradNorm);
  else update.discard();
  return { loss, gradNorm, applied };
}

async function save(
  path: string,
  classifier: FeatureClassifier,
  adam: Adam,
  step: number,
  rng: Random,
  config: ClassifierTraining,
): Promise<void> {
  const tensors = await readVariables(classifier.parameters, "params/");
  for (const key of ["m", "v"] as const) {
    const pieces = namedPieces(adam[key], classifier.parameters);
    try {
      await readVariables(pieces, `optimizer/${key}/`, tensors);
    } finally {
      tf.dispose(pieces.map((p) => p.variable));
    }
  }
  const checkpoint: Checkpoint = {
    step,
    modelConfig: classifier.config,
    state: { training: config, rngState: rng.state, backend: tf.getBackend() },
    tensors,
  };
  await saveCheckpoint(path, checkpoint);
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
  const adam = classifierOptimizer(classifier, training);
  const rng = new Random(training.seed);
  let step = 0;
  try {
    for (const path of [options.checkpointPath, options.metricsPath]) {
      await removeStaleTemporaries(path);
    }
    if (await exists(options.checkpointPath)) {
      const checkpoint = await loadCheckpoint(options.checkpointPath);
      const stored = JSON.stringify([checkpoint.modelConfig, checkpoint.state.training]);
      if (stored !== JSON.stringify([classifier.config, training])) {
        throw new UserError(
          `${options.checkpointPath} is a run of another classifier or recipe ` +
            `(${stored}); train into another folder, or move that run aside to start over.`,
        );
      }
      assignVariables(classifier.parameters, checkpoint.tensors, "params/", options.checkpointPath);
      for (const key of ["m", "v"] as const) {
        const pieces = namedPieces(adam[key], classifier.parameters);
        assignVariables(pieces, checkpoint.tensors, `optimizer/${key}/`, options.checkpointPath);
        tf.tidy(() => adam[key].assign(tf.concat(pieces.map((p) => tf.reshape(p.variable, [-1])))));
        tf.dispose(pieces.map((p) => p.variable));
      }
      rng.state = checkpoint.state.rngState as number;
      step = checkpoint.step;
    }
    await keepRecordsUpTo(options.metricsPath, step);
    const s = classifier.config.imageSize;
    const shape: [number, number, number] = [s, s, classifier.config.inChannels];
    const progress = options.progress === false
      ? null
      : new ProgressBar(training.steps, { label: "train", start: step });
    const deadline = performance.now() + (options.minutes ?? Infinity) * 60_000;
    const backend = activeBackendLabel();
    const started = performance.now();
    let window = { loss: 0, steps: 0, start: started };
    while (step < training.steps) {
      const lr = learningRateAt({ ...training, lrSchedule: "cosine" }, step);
      const batch = augmentedBatch(data, shape, training, rng);
      const { loss, gradNorm, applied } = await classifierStep(
        classifier,
        adam,
        batch,
        lr,
        step + 1,
      );
      if (!applied) {
        const what = Number.isFinite(loss) ? `gradient norm is ${gradNorm}` : `loss is ${loss}`;
        throw new UserError(
          `The classifier's ${what} at step ${step + 1}; its weights were left as after ` +
            `step ${step}. Lower its learning rate (it was ${lr}) in the spec.`,
        );
      }
      step++;
      window.loss += loss;
      window.steps++;
      const checkpointNow = step % training.checkpointEvery === 0 || step === training.steps;
      if (step % training.logEvery === 0 || checkpointNow) {
        const now = performance.now();
        const record: ClassifierMetrics = {
          step,
          loss: window.loss / window.steps,
          lr,
          stepsPerSecond: window.steps / Math.max(1e-9, (now - window.start) / 1000),
          elapsed: (now - started) / 1000,
          backend,
        };
        if (checkpointNow) record.heldOut = await heldOutAccuracy(classifier, data, data.heldOut);
        await Deno.writeTextFile(options.metricsPath, JSON.stringify(record) + "\n", {
          append: true,
        });
        window = { loss: 0, steps: 0, start: performance.now() };
      }
      if (checkpointNow) {
        await save(options.checkpointPath, classifier, adam, step, rng, training);
      }
      progress?.update(step, { loss });
      if (checkpointNow && performance.now() > deadline) break;
    }
    progress?.done();
  } catch (e) {
    classifier.dispose();
    throw e;
  } finally {
    adam.dispose();
  }
  return { classifier, step };
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
