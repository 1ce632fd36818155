/**
 * A trained model's fingerprint: numbers that today's code computes from the artefact and the
 * spec in seconds, on the `cpu` backend (plain JavaScript arithmetic, the same on every machine),
 * recorded in the manifest when the artefact is made.
 *
 * - `probeLoss`: the objective of the stored EMA weights on a fixed probe batch (8 images spread
 *   over the dataset, timesteps spread over [0, T), noise from a fixed seed). It moves when the
 *   network's forward pass, the schedule, the objective or the weights' loading changes.
 * - `trainLosses`: the losses of four training steps from the spec's initial weights and seed, at
 *   batch 4 and the spec's peak learning rate without warm-up (so that each Adam step moves the
 *   weights enough to show in the next loss). They move when initialisation, batching, the random
 *   draws, the backward pass or the optimiser changes.
 *
 * A refactor that keeps the numbers keeps every fingerprint; anything else makes the staleness
 * test name the model and the command that retrains it.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Profile } from "../runtime/options.ts";
import { activateCpuBackend } from "../runtime/backend.ts";
import { Random } from "../core/random.ts";
import { noiseSchedule } from "../core/schedules.ts";
import { denoisingLoss } from "../training/objective.ts";
import { Trainer, type TrainingData } from "../training/trainer.ts";
import { completeModelConfig, createModel, type DiffusionModel } from "../core/models/mod.ts";
import type { ModelSpec } from "./specs.ts";
import { gatherRows } from "./spec_data.ts";

/** What a manifest records (see the module comment). */
export interface ModelFingerprint {
  /** The backend the numbers were computed on. */
  backend: "cpu";
  /** Loss of the EMA weights on the probe batch. */
  probeLoss: number;
  /** Losses of four training steps at batch 4 (see the module comment). */
  trainLosses: number[];
}

/**
 * Relative difference within which two fingerprints' numbers count as equal. The same code gives
 * the same bits on `cpu`; 10⁻⁶ (about 16 float32 ulps) leaves room for a refactor that only
 * reorders a sum, and still catches a change as small as the time embedding's period going from
 * 10,000 to 10,001 (a relative change of the probe loss of 7·10⁻⁶).
 */
export const FINGERPRINT_TOLERANCE = 1e-6;

const PROBE_SIZE = 8;

/** Run `fn` on the `cpu` backend, then go back to the backend that was active. */
async function onCpu<T>(fn: () => Promise<T>): Promise<T> {
  const previous = tf.getBackend();
  await activateCpuBackend();
  try {
    return await fn();
  } finally {
    if (previous && previous !== "cpu") await tf.setBackend(previous);
  }
}

/** The fingerprint of `model` (the artefact's EMA weights) trained from `spec`'s `profile`. */
export function computeFingerprint(
  spec: ModelSpec,
  profile: Profile,
  model: DiffusionModel,
  dataset: TrainingData,
): Promise<ModelFingerprint> {
  return onCpu(async () => {
    const schedule = noiseSchedule(spec.schedule.name, spec.schedule.T);
    const { prediction } = spec.objective;
    const indices = Array.from(
      { length: PROBE_SIZE },
      (_, i) => Math.floor((i * dataset.count) / PROBE_SIZE),
    );
    const timesteps = Int32Array.from(
      { length: PROBE_SIZE },
      (_, i) => Math.floor(((i + 0.5) * schedule.T) / PROBE_SIZE),
    );
    const { imageSize: size, inChannels: channels } = model.config;
    const x0 = tf.tensor4d(gatherRows(dataset.images, size * size * channels, indices), [
      PROBE_SIZE,
      size,
      size,
      channels,
    ]);
    const noise = tf.tensor4d(new Random(0).normals(x0.size), x0.shape);
    // A conditional network is probed under its images' own conditions.
    const classLabels = model.contextDim > 0 && dataset.labels
      ? Int32Array.from(indices, (i) => dataset.labels![i])
      : undefined;
    const states = dataset.captionStates;
    const encoderHiddenStates = states && model.crossAttentionDim > 0
      ? tf.tensor3d(gatherRows(states.states, states.length * states.width, indices), [
        PROBE_SIZE,
        states.length,
        states.width,
      ])
      : undefined;
    const probe = tf.tidy(() =>
      denoisingLoss(model, schedule, { x0, timesteps, noise, classLabels, encoderHiddenStates }, {
        prediction,
      }).loss
    );
    const probeLoss = (await probe.data())[0];
    tf.dispose([probe, x0, noise, ...(encoderHiddenStates ? [encoderHiddenStates] : [])]);

    const fresh = createModel(completeModelConfig(spec.network[profile]));
    const trainer = new Trainer(fresh, dataset, schedule, {
      ...spec.training[profile],
      ...spec.objective,
      steps: 4,
      batchSize: 4,
      warmupSteps: 0,
      lrSchedule: "constant",
      sampleEvery: null,
      checkpointEvery: null,
    }, { progress: false });
    try {
      const { losses } = await trainer.run();
      return { backend: "cpu", probeLoss, trainLosses: losses };
    } finally {
      trainer.dispose();
      fresh.dispose();
    }
  });
}

/**
 * The numbers of `actual` that differ from `recorded` by more than the tolerance, described;
 * empty when the fingerprints agree.
 */
export function fingerprintDifferences(
  recorded: ModelFingerprint,
  actual: ModelFingerprint,
): string[] {
  const close = (a: number, b: number) =>
    Math.abs(a - b) <= FINGERPRINT_TOLERANCE * Math.max(Math.abs(a), Math.abs(b), 1e-12);
  const found: string[] = [];
  if (!close(recorded.probeLoss, actual.probeLoss)) {
    found.push(`probe loss ${recorded.probeLoss} → ${actual.probeLoss}`);
  }
  recorded.trainLosses.forEach((loss, i) => {
    const now = actual.trainLosses[i];
    if (now === undefined || !close(loss, now)) {
      found.push(`loss of training step ${i + 1} ${loss} → ${now}`);
    }
  });
  return found;
}
