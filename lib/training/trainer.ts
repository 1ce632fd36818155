/**
 * Training a denoiser (DDPM, Ho et al., 2020, Algorithm 1), seeded and resumable.
 *
 * Each step draws a batch x₀, timesteps t ~ U{0, …, T−1} and noise ε ~ N(0, I), forms
 *
 *   x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε
 *
 * and minimises the mean squared error of the network's prediction against its target:
 *
 *   epsilon (default): ‖ε − ε_θ(x_t, t)‖²      sample: ‖x₀ − x̂_θ‖²      v: ‖v − v̂_θ‖²,
 *   v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ (Salimans & Ho, 2022),
 *
 * optionally weighted per sample by Min-SNR-γ (Hang et al., 2023): with SNR(t) = ᾱ_t/(1 − ᾱ_t),
 * w = min(SNR, γ)/SNR for ε, min(SNR, γ) for x₀ and min(SNR, γ)/(SNR + 1) for v.
 *
 * The update is Adam (or AdamW, decoupled weight decay) with linear warm-up and cosine (or
 * linear) decay of the learning rate and gradient clipping by global norm, followed by an
 * exponential moving average of the weights, θ_EMA ← d θ_EMA + (1 − d) θ, used for sampling.
 *
 * Every random choice (batch order, flips, t, ε, dropout, context dropout) comes from seeded
 * generators, so the same seed, backend and configuration give the same numbers, and a run
 * resumed from a checkpoint continues bit for bit where the killed run stopped.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Random } from "../core/random.ts";
import { UserError } from "../core/errors.ts";
import { checkClassLabels } from "../core/nn/embeddings.ts";
import type { BufferUpdate, NamedVariable } from "../core/nn/layers.ts";
import { type NoiseSchedule, noiseSchedule } from "../core/schedules.ts";
import { createModel, type DiffusionModel } from "../core/models/mod.ts";
import {
  assignVariables,
  checkArchitecture,
  type Checkpoint,
  type CheckpointTensor,
  loadCheckpoint,
  readVariables,
  saveCheckpoint,
} from "./checkpoint.ts";
import {
  DEFAULT_KEPT_CHECKPOINTS,
  describeCheckpoints,
  type KeptCheckpoint,
  listCheckpoints,
  pruneKeptCheckpoints,
  rewindTo,
  saneCheckpoint,
  saveKeptCheckpoint,
} from "./checkpoint_history.ts";
import { activeBackendLabel } from "../runtime/backend.ts";
import { ProgressBar } from "../runtime/progress.ts";
import { keepRecordsUpTo } from "./metrics_log.ts";
import type { PredictionType } from "../core/parameterization.ts";
import { DDIMScheduler } from "../core/samplers/ddim.ts";
import { sample } from "../core/samplers/sample.ts";
import { type DenoisingBatch, denoisingLoss } from "./objective.ts";
import { exists, removeStaleTemporaries } from "../runtime/files.ts";
import { Adam, ExponentialMovingAverage, flatten, namedPieces, proposeUpdate } from "./optim.ts";

/** Images to train on (an `EmojiDataset` fits). */
export interface TrainingData {
  /** NHWC float32 images in [−1, 1], `count · H · W · C` values. */
  images: Float32Array;
  /** Number of images. */
  count: number;
  /** Class label of each image (feeds a one-hot context to a conditional network). */
  labels?: Int32Array | readonly number[];
  /** Token states of each image's caption, for a network that cross-attends to text. */
  captionStates?: CaptionStates;
  /**
   * DreamBooth's prior preservation (Ruiz et al., 2023): images of the subject's class that the
   * base model generated from the class prompt, with their captions' states. Each batch then
   * holds `batchSize` of the subject's images and `batchSize` of these, and the loss is
   *
   *   L = mean_subject ‖ε − ε_θ(x_t, t, c)‖² + λ · mean_prior ‖ε′ − ε_θ(x′_t′, t′, c_pr)‖²,
   *
   * λ = `priorLossWeight`: the class keeps looking the way the base drew it while the rare
   * token learns the subject.
   */
  prior?: Omit<TrainingData, "prior">;
}

/** A frozen text encoder's token states τ(caption) of every training image, and τ(""). */
export interface CaptionStates {
  /** `count · length · width` values: image i's L × D states at i · L · D. */
  states: Float32Array;
  /** L, tokens per caption. */
  length: number;
  /** D, the width of a token state. */
  width: number;
  /** The empty prompt's L × D states: the null condition ∅ of classifier-free guidance. */
  nullStates: Float32Array;
}

/** Everything that shapes a training run (stored in checkpoints). */
export interface TrainConfig {
  /** Total optimisation steps. */
  steps: number;
  /** Images per step. */
  batchSize: number;
  /** Peak learning rate. */
  learningRate: number;
  /** Learning rate at the end of the decay. */
  minLearningRate: number;
  /** Steps of linear warm-up from 0 to the peak. */
  warmupSteps: number;
  /** Decay after warm-up: cosine (default), linear (the course's) or constant. */
  lrSchedule: "cosine" | "linear" | "constant";
  /** Adam (L2 weight decay added to the gradient) or AdamW (decoupled weight decay). */
  optimizer: "adam" | "adamw";
  /** Adam β₁. */
  beta1: number;
  /** Adam β₂. */
  beta2: number;
  /** Adam ε. */
  epsilon: number;
  /** Weight decay λ (AdamW: θ ← θ − η λ θ). */
  weightDecay: number;
  /** Clip gradients to this global L2 norm; null for no clipping. */
  gradClipNorm: number | null;
  /** EMA decay d. */
  emaDecay: number;
  /** Warm the EMA up: d_k = min(d, (1 + k)/(10 + k)) at step k. */
  emaWarmup: boolean;
  /** What the network predicts. */
  prediction: PredictionType;
  /** Min-SNR-γ loss weighting (γ = 5 in the paper); null for plain MSE. */
  minSnrGamma: number | null;
  /** Flip each image left–right with probability ½. */
  horizontalFlip: boolean;
  /**
   * Probability of training a sample unconditioned, its label replaced by −1 (the network's
   * null context: zeros, or learned), for classifier-free guidance.
   */
  contextDropout: number;
  /** λ, the weight of the prior-preservation loss (with `TrainingData.prior`; 1 in DreamBooth). */
  priorLossWeight: number;
  /** Seed of the batch order, flips, t, ε and dropout. */
  seed: number;
  /** Steps between metrics records. */
  logEvery: number;
  /** Number of equal timestep ranges for the per-bucket loss. */
  timestepBuckets: number;
  /** Checkpoint file; null for none. */
  checkpointPath: string | null;
  /** Steps between checkpoints (and one at the end); null for the end only. */
  checkpointEvery: number | null;
  /**
   * Checkpoints kept, the latest included: the others lie beside it as
   * `NAME.step-001200.EXT` (lib/training/checkpoint_history.ts), so a diverged run can go back.
   */
  keepCheckpoints: number;
  /** JSON-lines file of metrics; null for none. */
  metricsPath: string | null;
  /** Steps between sample grids (and one at the end); null for none. */
  sampleEvery: number | null;
  /** Images per sample grid. */
  sampleCount: number;
  /** Seed of the sample grid's noise: the same every time, so grids show progress. */
  sampleSeed: number;
  /** DDIM (η = 0) steps of the sample grids. */
  sampleSteps: number;
  /**
   * The sample grids clip x̂₀ to [−clipRange, clipRange]: 1, the data range, for images; for
   * data without that range, such as a latent diffusion model's scaled latents (std 1), a bound
   * just past the data's largest |value|; null: no clipping (which a schedule with a tiny ᾱ_T
   * punishes, see {@link Trainer.sampleGrid}).
   */
  clipRange: number | null;
}

/** The defaults of {@link TrainConfig}. */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = {
  steps: 1000,
  batchSize: 32,
  learningRate: 1e-3,
  minLearningRate: 0,
  warmupSteps: 0,
  lrSchedule: "cosine",
  optimizer: "adam",
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
  weightDecay: 0,
  gradClipNorm: 1,
  emaDecay: 0.999,
  emaWarmup: true,
  prediction: "epsilon",
  minSnrGamma: null,
  horizontalFlip: true,
  contextDropout: 0,
  priorLossWeight: 1,
  seed: 0,
  logEvery: 10,
  timestepBuckets: 10,
  checkpointPath: null,
  checkpointEvery: null,
  keepCheckpoints: DEFAULT_KEPT_CHECKPOINTS,
  metricsPath: null,
  sampleEvery: null,
  sampleCount: 16,
  sampleSeed: 1234,
  sampleSteps: 50,
  clipRange: 1,
};

/** One metrics record (one JSON line). */
export interface MetricsRecord {
  /** Steps completed. */
  step: number;
  /** Mean loss over the steps since the previous record. */
  loss: number;
  /** Learning rate of the last step. */
  lr: number;
  /** Global gradient norm of the last step, before clipping. */
  gradNorm: number;
  /** Steps per second since the previous record. */
  stepsPerSecond: number;
  /** Mean unweighted per-sample loss per timestep bucket (null where no sample fell). */
  bucketLoss: (number | null)[];
  /** Seconds since this session's first step. */
  elapsed: number;
  /** Where the steps ran: the tfjs backend and its device (a resumed run may change it). */
  backend: string;
}

/** What one step reports. */
export interface StepResult {
  /** Steps completed, including this one. */
  step: number;
  /** The (weighted) batch loss. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** The timesteps drawn. */
  timesteps: Int32Array;
  /** Unweighted per-sample loss. */
  perSampleLoss: Float32Array;
}

/** Callbacks and switches of a run (not stored in checkpoints). */
export interface TrainCallbacks {
  /** Called with every metrics record. */
  onMetrics?: (record: MetricsRecord) => void;
  /** Called with a sample grid from the EMA weights (images freed when it returns). */
  onSamples?: (
    info: { step: number; images: tf.Tensor4D; ema: DiffusionModel },
  ) => void | Promise<void>;
  /** Show a progress bar on standard error (default true). */
  progress?: boolean;
}

/**
 * Raised when the loss or the gradient becomes NaN or infinite. When the run keeps
 * checkpoints, `checkpoints` lists them (newest first) and `sane` is the newest whose loss was
 * still sane, the one to resume from with a lower learning rate.
 */
export class TrainingDivergedError extends Error {
  constructor(
    /** The step that produced the non-finite loss. */
    readonly step: number,
    /** The last finite loss (NaN if none). */
    readonly lastFiniteLoss: number,
    message: string,
    /** The run's kept checkpoints, newest first. */
    readonly checkpoints: readonly KeptCheckpoint[] = [],
    /** The newest kept checkpoint with a sane loss. */
    readonly sane?: KeptCheckpoint,
  ) {
    super(message);
    this.name = "TrainingDivergedError";
  }
}

/**
 * Learning rate before step `step` (0-based):
 *
 *   warm-up (s < W): η_max (s + 1)/W
 *   cosine:  η_min + ½(η_max − η_min)(1 + cos(π p)),  linear: η_max − (η_max − η_min) p,
 *   p = (s − W)/(S − W).
 */
export function learningRateAt(
  config: Pick<
    TrainConfig,
    "learningRate" | "minLearningRate" | "warmupSteps" | "lrSchedule" | "steps"
  >,
  step: number,
): number {
  const { learningRate: max, minLearningRate: min, warmupSteps: warm, steps } = config;
  if (step < warm) return (max * (step + 1)) / warm;
  const p = steps > warm ? Math.min(1, (step - warm) / (steps - warm)) : 1;
  switch (config.lrSchedule) {
    case "constant":
      return max;
    case "linear":
      return max - (max - min) * p;
    case "cosine":
      return min + 0.5 * (max - min) * (1 + Math.cos(Math.PI * p));
    default:
      throw new Error(
        `Unknown lrSchedule "${config.lrSchedule}"; use "cosine", "linear" or "constant".`,
      );
  }
}

/** Min-SNR-γ weight: min(SNR, γ)/SNR (ε), min(SNR, γ) (x₀), min(SNR, γ)/(SNR + 1) (v). */
export function minSnrWeight(snr: number, gamma: number, prediction: PredictionType): number {
  const clipped = Math.min(snr, gamma);
  switch (prediction) {
    case "epsilon":
      return clipped / snr;
    case "sample":
      return clipped;
    case "v":
      return clipped / (snr + 1);
    default:
      throw new Error(`Unknown prediction "${prediction}".`);
  }
}

function fillConfig(partial: Partial<TrainConfig>): TrainConfig {
  const config = { ...DEFAULT_TRAIN_CONFIG, ...partial };
  for (const key of Object.keys(partial)) {
    if (!(key in DEFAULT_TRAIN_CONFIG)) {
      throw new Error(`Unknown training option "${key}"; see TrainConfig for the options.`);
    }
  }
  if (!Number.isInteger(config.steps) || config.steps < 0) {
    throw new Error(`steps must be a whole number ≥ 0, got ${config.steps}.`);
  }
  if (!Number.isInteger(config.batchSize) || config.batchSize < 1) {
    throw new Error(`batchSize must be a whole number ≥ 1, got ${config.batchSize}.`);
  }
  if (!(config.learningRate > 0)) {
    throw new Error(`learningRate must be positive, got ${config.learningRate}.`);
  }
  return config;
}

/**
 * A training run: the model, its EMA copy, the optimizer moments, the step counter and the
 * random generator. `run()` trains to `config.steps`; `Trainer.resume` continues a run from
 * its checkpoint.
 */
export class Trainer {
  /** The network being trained. */
  readonly model: DiffusionModel;
  /** The EMA of its weights (sample from this one). */
  readonly #ema: DiffusionModel;
  /** The noise schedule. */
  readonly schedule: NoiseSchedule;
  /** The run's configuration. */
  readonly config: TrainConfig;
  /** Losses of the steps run in this session, in order. */
  readonly losses: number[] = [];
  /** The training images, the prior's (if any) appended after the subject's. */
  readonly #data: TrainingData;
  /** Images of the subject (all of them without a prior), then of the prior. */
  readonly #counts: { subject: number; prior: number };
  readonly #callbacks: TrainCallbacks;
  readonly #rng: Random;
  /** The parameters being trained (all of the model's unless the caller chose a subset). */
  readonly trained: readonly NamedVariable[];
  readonly #adam: Adam;
  readonly #average: ExponentialMovingAverage;
  readonly #shape: [number, number, number];
  readonly #contextDim: number;
  #step = 0;
  #lastFiniteLoss = NaN;
  /** Sum and count of the losses since the last checkpoint, and the lowest mean of a window. */
  #window = { sum: 0, count: 0 };
  #bestMeanLoss = NaN;
  #permutation: { epoch: number; order: number[] } | null = null;
  #priorPermutation: { epoch: number; order: number[] } | null = null;
  #metricsReady = false;

  /**
   * @param model the network (its weights are trained in place)
   * @param data the training images
   * @param schedule the noise schedule
   * @param config options (defaults in {@link DEFAULT_TRAIN_CONFIG})
   * @param callbacks metrics, sample grids, progress bar, and `parameters`: the model's
   *   parameters to train (default all; the others stay as they are, as in fine-tuning)
   */
  constructor(
    model: DiffusionModel,
    data: TrainingData,
    schedule: NoiseSchedule,
    config: Partial<TrainConfig> = {},
    callbacks: TrainCallbacks & { parameters?: readonly NamedVariable[] } = {},
  ) {
    this.model = model;
    this.schedule = schedule;
    this.config = fillConfig(config);
    this.#callbacks = callbacks;
    this.#rng = new Random(this.config.seed);
    const mc = model.config;
    this.#shape = [mc.imageSize, mc.imageSize, mc.inChannels];
    this.#contextDim = model.contextDim;
    const size = this.#shape[0] * this.#shape[1] * this.#shape[2];
    for (const part of data.prior ? [data, data.prior] : [data]) {
      const what = part === data ? "Training data" : "The prior's images";
      if (part.count < 1 || part.images.length !== part.count * size) {
        throw new Error(
          `${what} do not fit the network: ${part.count} images need ` +
            `${part.count * size} values of ${this.#shape.join("×")} but the array has ` +
            `${part.images.length}. Load the dataset at the model's imageSize.`,
        );
      }
      if (part.labels && this.#contextDim > 0) checkClassLabels(part.labels, this.#contextDim);
      checkCaptionStates(part, model.crossAttentionDim);
    }
    this.#counts = { subject: data.count, prior: data.prior?.count ?? 0 };
    this.#data = data.prior ? withPrior(data, data.prior) : data;
    this.#ema = createModel(model.config, { trainable: false });
    copyVariables(model.parameters, this.#ema.parameters);
    copyVariables(model.buffers, this.#ema.buffers);
    this.trained = callbacks.parameters ?? model.parameters;
    const index = new Map(model.parameters.map((p, i) => [p.variable, i]));
    const positions = this.trained.map((p) => {
      const i = index.get(p.variable);
      if (i === undefined) {
        throw new Error(
          `Parameter "${p.name}" is not one of the model's; train its own variables.`,
        );
      }
      return i;
    });
    this.#adam = new Adam(this.trained, this.config);
    this.#average = new ExponentialMovingAverage(
      this.trained,
      positions.map((i) => this.#ema.parameters[i]),
    );
  }

  /** The EMA of the weights, θ̄ ← d θ̄ + (1 − d) θ after every step (sample from this one). */
  get ema(): DiffusionModel {
    this.#average.sync();
    return this.#ema;
  }

  /**
   * Continue a run from its checkpoint: weights, EMA, optimizer moments, step and RNG state
   * are restored, so the run goes on exactly as if it had never stopped.
   *
   * @param path checkpoint written by a Trainer
   * @param data the same training images
   * @param options `model` to load into (else built from the checkpoint), `schedule` (else
   *   rebuilt by name), `config` overrides (e.g. a larger `steps`), callbacks
   */
  static async resume(
    path: string,
    data: TrainingData,
    options: TrainCallbacks & {
      model?: DiffusionModel;
      schedule?: NoiseSchedule;
      config?: Partial<TrainConfig>;
      parameters?: readonly NamedVariable[];
    } = {},
  ): Promise<Trainer> {
    const checkpoint = await loadCheckpoint(path);
    const state = checkpoint.state as {
      trainConfig?: TrainConfig;
      rngState?: number;
      schedule?: { name: string; T: number };
      dataCount?: number;
      lastFiniteLoss?: number;
      bestMeanLoss?: number;
    };
    if (!state.trainConfig || state.rngState === undefined || !state.schedule) {
      throw new Error(
        `${path} holds weights only (no optimizer or RNG state), so training cannot resume from ` +
          `it exactly; load it with loadModel and start a new run instead.`,
      );
    }
    const count = data.count + (data.prior?.count ?? 0);
    if (state.dataCount !== undefined && state.dataCount !== count) {
      throw new Error(
        `${path} was trained on ${state.dataCount} images but ${count} were given; resume ` +
          `with the same dataset, or the batches would differ.`,
      );
    }
    const schedule = options.schedule ?? noiseSchedule(state.schedule.name, state.schedule.T);
    if (schedule.name !== state.schedule.name || schedule.T !== state.schedule.T) {
      throw new Error(
        `${path} was trained with the "${state.schedule.name}" schedule, T = ${state.schedule.T}, ` +
          `but "${schedule.name}", T = ${schedule.T} was given.`,
      );
    }
    let model = options.model;
    if (model) checkArchitecture(checkpoint.modelConfig, model.config, path);
    else model = createModel(checkpoint.modelConfig);
    const { model: _m, schedule: _s, config: overrides, ...callbacks } = options;
    const trainer = new Trainer(
      model,
      data,
      schedule,
      { ...state.trainConfig, ...overrides },
      callbacks,
    );
    trainer.#restore(
      checkpoint.step,
      checkpoint.tensors,
      state.rngState,
      state.lastFiniteLoss ?? NaN,
      path,
    );
    trainer.#bestMeanLoss = state.bestMeanLoss ?? NaN;
    return trainer;
  }

  /** Steps completed. */
  get step(): number {
    return this.#step;
  }

  /** The state of the step generator (restored by `resume`). */
  get rngState(): number {
    return this.#rng.state;
  }

  #restore(
    step: number,
    tensors: Map<string, CheckpointTensor>,
    rngState: number,
    lastLoss: number,
    source: string,
  ) {
    assignVariables(this.model.parameters, tensors, "params/", source);
    assignVariables(this.model.buffers, tensors, "buffers/", source);
    assignVariables(this.#ema.parameters, tensors, "ema/", source);
    assignVariables(this.#ema.buffers, tensors, "emaBuffers/", source);
    this.#average.reload();
    for (const key of ["m", "v"] as const) {
      const pieces = namedPieces(this.#adam[key], this.trained);
      assignVariables(pieces, tensors, `optimizer/${key}/`, source);
      tf.tidy(() => this.#adam[key].assign(flatten(pieces)));
      tf.dispose(pieces.map((p) => p.variable));
    }
    this.#step = step;
    this.#rng.state = rngState;
    this.#lastFiniteLoss = lastLoss;
  }

  /**
   * Image indices of the batch of step `step`: consecutive slices of a stream of seeded
   * permutations; with a prior, as many again from a stream of its own, after the subject's.
   */
  batchIndices(step: number): number[] {
    const b = this.config.batchSize;
    const { subject, prior } = this.#counts;
    const indices: number[] = [];
    for (let k = step * b; k < (step + 1) * b; k++) {
      const epoch = Math.floor(k / subject);
      if (this.#permutation?.epoch !== epoch) {
        this.#permutation = { epoch, order: this.#shuffled(subject, epoch, 1) };
      }
      indices.push(this.#permutation.order[k % subject]);
    }
    if (prior === 0) return indices;
    for (let k = step * b; k < (step + 1) * b; k++) {
      const epoch = Math.floor(k / prior);
      if (this.#priorPermutation?.epoch !== epoch) {
        this.#priorPermutation = { epoch, order: this.#shuffled(prior, epoch, 2) };
      }
      indices.push(subject + this.#priorPermutation.order[k % prior]);
    }
    return indices;
  }

  /** 0 … n − 1 in the order of epoch `epoch` of stream `stream`. */
  #shuffled(n: number, epoch: number, stream: number): number[] {
    const order = Array.from({ length: n }, (_, i) => i);
    new Random((this.config.seed * 1000003 + epoch * 7919 + stream) >>> 0).shuffle(order);
    return order;
  }

  /**
   * One optimisation step. Throws {@link TrainingDivergedError} (and leaves the weights as
   * they were) when the loss or gradient is not finite.
   */
  async trainStep(): Promise<StepResult> {
    const c = this.config;
    const s = this.#step;
    const indices = this.batchIndices(s);
    const B = indices.length; // 2 · batchSize with a prior
    const [H, W, C] = this.#shape;
    const size = H * W * C;
    const T = this.schedule.T;
    const rng = this.#rng;
    // Everything random, drawn in a fixed order.
    const x0 = new Float32Array(B * size);
    for (let b = 0; b < B; b++) {
      const image = this.#data.images.subarray(indices[b] * size, (indices[b] + 1) * size);
      if (c.horizontalFlip && rng.uniform() < 0.5) {
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            const from = (y * W + (W - 1 - x)) * C;
            x0.set(image.subarray(from, from + C), b * size + (y * W + x) * C);
          }
        }
      } else x0.set(image, b * size);
    }
    const timesteps = new Int32Array(B);
    for (let b = 0; b < B; b++) timesteps[b] = rng.int(0, T);
    const noise = rng.normals(B * size);
    // Class labels y, or −1 ("no condition": the network's null context) where dropped.
    let classLabels: Int32Array | undefined;
    if (this.#contextDim > 0 && this.#data.labels) {
      classLabels = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        const keep = !(c.contextDropout > 0 && rng.uniform() < c.contextDropout);
        classLabels[b] = keep ? this.#data.labels[indices[b]] : -1;
      }
    }
    // Caption states τ(caption), or the empty prompt's τ("") where dropped.
    const states = this.#data.captionStates;
    let encoderStates: Float32Array | undefined;
    if (states && this.model.crossAttentionDim > 0) {
      const tokens = states.length * states.width;
      encoderStates = new Float32Array(B * tokens);
      for (let b = 0; b < B; b++) {
        const keep = !(c.contextDropout > 0 && rng.uniform() < c.contextDropout);
        const i = indices[b];
        encoderStates.set(
          keep ? states.states.subarray(i * tokens, (i + 1) * tokens) : states.nullStates,
          b * tokens,
        );
      }
    }
    const dropoutSeed = rng.nextSeed();
    const weights = new Float32Array(B).fill(1);
    if (c.minSnrGamma !== null) {
      for (let b = 0; b < B; b++) {
        weights[b] = minSnrWeight(this.schedule.snr[timesteps[b]], c.minSnrGamma, c.prediction);
      }
    }
    if (this.#counts.prior > 0) {
      // The mean over 2B with weights 2 and 2λ is mean_subject + λ · mean_prior.
      for (let b = 0; b < B; b++) weights[b] *= b < c.batchSize ? 2 : 2 * c.priorLossWeight;
    }
    const lr = learningRateAt(c, s);

    const parameters = this.trained;
    const updates: BufferUpdate[] = [];
    let perSample: tf.Tensor | null = null;
    const { value, grads } = tf.variableGrads(() => {
      const batch: DenoisingBatch = {
        x0: tf.tensor4d(x0, [B, H, W, C]),
        timesteps,
        noise: tf.tensor4d(noise, [B, H, W, C]),
        weights,
        classLabels,
        encoderHiddenStates: encoderStates &&
          tf.tensor3d(encoderStates, [B, states!.length, states!.width]),
      };
      const { loss, perSample: ps } = denoisingLoss(this.model, this.schedule, batch, {
        prediction: c.prediction,
        training: { seed: dropoutSeed, updates },
      });
      perSample = tf.keep(ps);
      return loss;
    }, parameters.map((p) => p.variable));
    const k = s + 1;
    const update = proposeUpdate(this.#adam, this.#average, grads, {
      lr,
      k,
      clipNorm: c.gradClipNorm,
      emaDecay: c.emaWarmup ? Math.min(c.emaDecay, (1 + k) / (10 + k)) : c.emaDecay,
    });
    tf.dispose(Object.values(grads));
    const readback = tf.tidy(() =>
      tf.concat([perSample!, tf.reshape(value, [1]), tf.reshape(update.norm, [1])])
    );
    const values = await readback.data() as Float32Array;
    readback.dispose();
    value.dispose();
    (perSample as tf.Tensor | null)?.dispose();
    const loss = values[B];
    const gradNorm = values[B + 1];
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      update.discard();
      for (const u of updates) u.value.dispose();
      const what = Number.isFinite(loss)
        ? `the gradient norm is ${gradNorm}`
        : `the loss is ${loss}`;
      throw new TrainingDivergedError(
        s + 1,
        this.#lastFiniteLoss,
        `Training diverged at step ${s + 1}: ${what} (last finite loss ${this.#lastFiniteLoss} ` +
          `at step ${s}). The weights were left as they were after step ${s} and no checkpoint ` +
          `was written. Lower the learning rate (it was ${lr}), add warm-up steps, or clip ` +
          `gradients (gradClipNorm).`,
      );
    }
    update.commit(gradNorm);
    tf.tidy(() => {
      for (const u of updates) u.variable.assign(u.value);
      this.#ema.buffers.forEach((e, i) =>
        e.variable.assign(tf.clone(this.model.buffers[i].variable))
      );
    });
    for (const u of updates) u.value.dispose();
    this.#step = k;
    this.#lastFiniteLoss = loss;
    this.#window.sum += loss;
    this.#window.count++;
    this.losses.push(loss);
    return { step: k, loss, lr, gradNorm, timesteps, perSampleLoss: values.slice(0, B) };
  }

  /**
   * Write a checkpoint of the whole run (weights, EMA, moments, step, RNG, config, the mean
   * loss since the last one). At the run's own checkpoint path the earlier ones are kept, up
   * to `keepCheckpoints`.
   */
  async saveCheckpoint(path = this.config.checkpointPath): Promise<void> {
    if (!path) {
      throw new Error("saveCheckpoint: no path given and the config has no checkpointPath.");
    }
    const tensors = await readVariables(this.model.parameters, "params/");
    await readVariables(this.model.buffers, "buffers/", tensors);
    await readVariables(this.ema.parameters, "ema/", tensors);
    await readVariables(this.ema.buffers, "emaBuffers/", tensors);
    for (const key of ["m", "v"] as const) {
      const pieces = namedPieces(this.#adam[key], this.trained);
      try {
        await readVariables(pieces, `optimizer/${key}/`, tensors);
      } finally {
        tf.dispose(pieces.map((p) => p.variable));
      }
    }
    const meanLoss = this.#window.count > 0 ? this.#window.sum / this.#window.count : NaN;
    if (Number.isFinite(meanLoss) && !(this.#bestMeanLoss <= meanLoss)) {
      this.#bestMeanLoss = meanLoss;
    }
    this.#window = { sum: 0, count: 0 };
    // The run's own checkpoint keeps its history; a copy elsewhere is one file, and touches none.
    const save = path === this.config.checkpointPath
      ? (c: Checkpoint) => saveKeptCheckpoint(path, c, this.config.keepCheckpoints)
      : (c: Checkpoint) => saveCheckpoint(path, c);
    await save({
      step: this.#step,
      modelConfig: this.model.config,
      state: {
        trainConfig: this.config,
        rngState: this.#rng.state,
        schedule: { name: this.schedule.name, T: this.schedule.T },
        dataCount: this.#data.count,
        lastFiniteLoss: this.#lastFiniteLoss,
        meanLoss,
        bestMeanLoss: this.#bestMeanLoss,
        backend: tf.getBackend(),
      },
      tensors,
    });
  }

  /**
   * A sample grid from the EMA weights with the fixed sample seed (DDIM, η = 0). x̂₀ is clipped
   * to [−clipRange, clipRange]: at the first step of a schedule whose ᾱ_T is tiny (cosine's is
   * 2.4e-9), x̂₀ = (x_T − √(1−ᾱ_T) ε̂)/√ᾱ_T multiplies any error in ε̂ by 1/√ᾱ_T ≈ 2·10⁴.
   */
  async sampleGrid(): Promise<tf.Tensor4D> {
    const c = this.config;
    const [H, W, C] = this.#shape;
    const n = c.sampleCount;
    const classLabels = this.#contextDim > 0
      ? tf.tensor1d(Array.from({ length: n }, (_, i) => i % this.#contextDim), "int32")
      : undefined;
    // A text-conditional grid shows the captions of n images spread over the training set.
    const states = this.#data.captionStates;
    let encoderHiddenStates: tf.Tensor3D | undefined;
    if (states && this.model.crossAttentionDim > 0) {
      const tokens = states.length * states.width;
      const grid = new Float32Array(n * tokens);
      for (let k = 0; k < n; k++) {
        const i = Math.floor((k * this.#data.count) / n);
        grid.set(states.states.subarray(i * tokens, (i + 1) * tokens), k * tokens);
      }
      encoderHiddenStates = tf.tensor3d(grid, [n, states.length, states.width]);
    }
    const scheduler = new DDIMScheduler(this.schedule, {
      predictionType: c.prediction,
      ...(c.clipRange === null ? { clipSample: false } : { clipRange: c.clipRange }),
    });
    try {
      const { images } = await sample(this.ema, scheduler, {
        shape: [n, H, W, C],
        seed: c.sampleSeed,
        steps: Math.min(c.sampleSteps, this.schedule.T),
        conditioning: { classLabels, encoderHiddenStates },
      });
      return images;
    } finally {
      classLabels?.dispose();
      encoderHiddenStates?.dispose();
    }
  }

  async #prepareMetricsFile(): Promise<void> {
    const path = this.config.metricsPath;
    if (this.#metricsReady || !path) return;
    this.#metricsReady = true;
    await keepRecordsUpTo(path, this.#step);
  }

  /**
   * Train until `until` (default `config.steps`) steps are done: metrics every `logEvery`
   * steps, checkpoints every `checkpointEvery` steps and at the end of training, sample grids
   * every `sampleEvery` steps and at the end. With `minutes`, stop at the first checkpoint
   * written after that much wall time, so that a time-boxed session ends on a saved step.
   */
  async run(
    options: { until?: number; minutes?: number } = {},
  ): Promise<{ step: number; losses: number[] }> {
    const c = this.config;
    const end = Math.min(options.until ?? c.steps, c.steps);
    const deadline = performance.now() + (options.minutes ?? Infinity) * 60_000;
    for (const path of [c.checkpointPath, c.metricsPath]) {
      if (path) await removeStaleTemporaries(path);
    }
    if (c.checkpointPath) await pruneKeptCheckpoints(c.checkpointPath, c.keepCheckpoints);
    await this.#prepareMetricsFile();
    const progress = this.#callbacks.progress === false
      ? null
      : new ProgressBar(end, { label: "train", start: this.#step });
    const buckets = c.timestepBuckets;
    let sums = new Float64Array(buckets);
    let counts = new Float64Array(buckets);
    let windowLoss = 0;
    let windowSteps = 0;
    const backend = activeBackendLabel();
    const started = performance.now();
    let windowStart = started;
    const losses: number[] = [];
    while (this.#step < end) {
      let saved = false;
      const result = await this.trainStep().catch((e) => this.#withCheckpoints(e));
      losses.push(result.loss);
      windowLoss += result.loss;
      windowSteps++;
      for (let b = 0; b < result.timesteps.length; b++) {
        const bucket = Math.min(
          buckets - 1,
          Math.floor((result.timesteps[b] * buckets) / this.schedule.T),
        );
        sums[bucket] += result.perSampleLoss[b];
        counts[bucket]++;
      }
      const step = this.#step;
      if (step % c.logEvery === 0 || step === end) {
        const now = performance.now();
        const record: MetricsRecord = {
          step,
          loss: windowLoss / windowSteps,
          lr: result.lr,
          gradNorm: result.gradNorm,
          stepsPerSecond: windowSteps / Math.max(1e-9, (now - windowStart) / 1000),
          bucketLoss: Array.from(sums, (s, i) => (counts[i] > 0 ? s / counts[i] : null)),
          elapsed: (now - started) / 1000,
          backend,
        };
        this.#callbacks.onMetrics?.(record);
        if (c.metricsPath) {
          await Deno.writeTextFile(c.metricsPath, JSON.stringify(record) + "\n", { append: true });
        }
        sums = new Float64Array(buckets);
        counts = new Float64Array(buckets);
        windowLoss = 0;
        windowSteps = 0;
        windowStart = now;
      }
      const finished = step === c.steps;
      if (c.checkpointPath && ((c.checkpointEvery && step % c.checkpointEvery === 0) || finished)) {
        await this.saveCheckpoint();
        saved = true;
      }
      if (
        this.#callbacks.onSamples && ((c.sampleEvery && step % c.sampleEvery === 0) || finished)
      ) {
        const images = await this.sampleGrid();
        try {
          await this.#callbacks.onSamples({ step, images, ema: this.ema });
        } finally {
          images.dispose();
        }
      }
      progress?.update(step, { loss: result.loss });
      if (saved && performance.now() > deadline) break;
    }
    progress?.done();
    return { step: this.#step, losses };
  }

  /** `error`, when it is a divergence, completed with the run's kept checkpoints; thrown. */
  async #withCheckpoints(error: unknown): Promise<never> {
    const path = this.config.checkpointPath;
    if (!(error instanceof TrainingDivergedError) || !path) throw error;
    const checkpoints = await listCheckpoints(path);
    if (checkpoints.length === 0) throw error;
    const sane = saneCheckpoint(checkpoints);
    throw new TrainingDivergedError(
      error.step,
      error.lastFiniteLoss,
      `${error.message} The run keeps ${describeCheckpoints(checkpoints)}. ` +
        (sane
          ? `The newest with a sane loss is step ${sane.step}: resume from it ` +
            `(resumeFrom: ${sane.step}) with a lower learning rate.`
          : `None has a sane loss (within twice the run's best): start the run over.`),
      checkpoints,
      sane,
    );
  }

  /** Free the EMA copy and the optimizer moments (the model stays with its owner). */
  dispose(): void {
    this.#ema.dispose();
    this.#adam.dispose();
    this.#average.dispose();
  }
}

/**
 * Check that caption states fit the data and the network: one L × D block per image, D the
 * network's cross-attention width, and a text-conditional network gets them.
 */
function checkCaptionStates(data: TrainingData, crossAttentionDim: number): void {
  const states = data.captionStates;
  if (!states) {
    if (crossAttentionDim > 0) {
      throw new UserError(
        `the network cross-attends to token states of width ${crossAttentionDim}, but the ` +
          `training data has no captionStates; encode each image's caption with the text encoder`,
      );
    }
    return;
  }
  const { length: L, width: D } = states;
  if (crossAttentionDim !== D) {
    throw new UserError(
      crossAttentionDim === 0
        ? "the training data has caption states but the network has no cross-attention; " +
          "build it with crossAttentionDim and crossAttentionResolutions"
        : `caption states of width ${D} do not fit the network's crossAttentionDim ` +
          `${crossAttentionDim}; build it with the text encoder's width`,
    );
  }
  if (states.states.length !== data.count * L * D || states.nullStates.length !== L * D) {
    throw new UserError(
      `caption states hold ${states.states.length} values and the null ${states.nullStates.length}; ` +
        `${data.count} images of ${L} tokens × ${D} need ${data.count * L * D} and ${L * D}`,
    );
  }
}

/** The subject's images, labels and caption states with the prior's appended. */
function withPrior(data: TrainingData, prior: Omit<TrainingData, "prior">): TrainingData {
  const join = (a: Float32Array, b: Float32Array) => {
    const out = new Float32Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  };
  if (!data.labels !== !prior.labels || !data.captionStates !== !prior.captionStates) {
    throw new UserError(
      "the prior's images must be conditioned like the subject's: both with class labels or " +
        "caption states, or neither",
    );
  }
  const [a, b] = [data.captionStates, prior.captionStates];
  if (a && b && (a.length !== b.length || a.width !== b.width)) {
    throw new UserError(
      `the prior's caption states are ${b.length} × ${b.width} but the subject's ${a.length} × ` +
        `${a.width}; encode both with the same text encoder`,
    );
  }
  return {
    images: join(data.images, prior.images),
    count: data.count + prior.count,
    labels: data.labels && prior.labels
      ? Int32Array.from([...data.labels, ...prior.labels])
      : undefined,
    captionStates: a && b ? { ...a, states: join(a.states, b.states) } : undefined,
  };
}

function copyVariables(from: readonly NamedVariable[], to: readonly NamedVariable[]): void {
  tf.tidy(() => from.forEach((p, i) => to[i].variable.assign(tf.clone(p.variable))));
}

/**
 * Train `model` on `data`, or continue from `config.checkpointPath` when `resume` is set and
 * the file exists; `resumeFrom: STEP` first goes back to the run's kept checkpoint of that step
 * (the later ones are moved aside, see `rewindTo`). With `minutes`, stop at the first checkpoint after that wall-clock budget
 * (see `Trainer.run`). Returns the trainer (sample from `trainer.ema`; dispose it when done).
 *
 * ```ts
 * const trainer = await train(model, data, noiseSchedule("linear", 1000), {
 *   steps: 2000, batchSize: 32, checkpointPath: "out/ch3.ckpt", checkpointEvery: 500,
 * }, { resume: true });
 * ```
 */
export async function train(
  model: DiffusionModel,
  data: TrainingData,
  schedule: NoiseSchedule,
  config: Partial<TrainConfig> = {},
  options: TrainCallbacks & { resume?: boolean; resumeFrom?: number; minutes?: number } = {},
): Promise<Trainer> {
  const { resume, resumeFrom, minutes, ...callbacks } = options;
  let trainer: Trainer;
  const path = config.checkpointPath;
  if (resumeFrom !== undefined) {
    if (!resume || !path) throw new Error("resumeFrom needs resume: true and a checkpointPath");
    await rewindTo(path, resumeFrom, config.metricsPath ?? null);
  }
  if (resume && path && await exists(path)) {
    trainer = await Trainer.resume(path!, data, { ...callbacks, model, schedule, config });
  } else {
    trainer = new Trainer(model, data, schedule, config, callbacks);
  }
  try {
    await trainer.run({ minutes });
  } catch (e) {
    trainer.dispose();
    throw e;
  }
  return trainer;
}
