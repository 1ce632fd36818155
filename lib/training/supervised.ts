/**
 * A supervised training run: batches drawn from a seeded generator, the library's warm-up and
 * cosine learning rate (lib/training/trainer.ts's `learningRateAt`), AdamW through one fused
 * step where the backend has it (lib/training/optim.ts's `proposeUpdate`), metrics records,
 * and checkpoints of the weights, Adam's moments, the step and the generator's state, so that an
 * interrupted run resumes exactly where it stopped. A run stops at its last step, or at the first
 * checkpoint after its time budget. The feature classifier (classification.ts) and the tiny
 * CLIP (contrastive.ts) train through it; each gives its loss on a batch and its held-out scores.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { NamedVariable } from "../core/nn/layers.ts";
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

/** What every supervised recipe has. */
export interface SupervisedRecipe {
  /** Optimisation steps. */
  steps: number;
  /** Examples per step. */
  batchSize: number;
  /** Peak learning rate η_max. */
  learningRate: number;
  /** Final learning rate η_min of the cosine decay. */
  minLearningRate: number;
  /** Linear warm-up steps. */
  warmupSteps: number;
  /** AdamW's decoupled weight decay λ. */
  weightDecay: number;
  /** Checkpoint (and measure the held-out scores) every this many steps. */
  checkpointEvery: number;
  /** Log a metrics record every this many steps. */
  logEvery: number;
  /** Seed of the batches and augmentations. */
  seed: number;
}

/** One line of a supervised run's `metrics.jsonl`. */
export interface SupervisedMetrics {
  step: number;
  /** Mean loss over the steps since the last record. */
  loss: number;
  lr: number;
  stepsPerSecond: number;
  /** Seconds since this session of the run began. */
  elapsed: number;
  backend: string;
  /** The held-out scores, at checkpoints. */
  heldOut?: Record<string, number>;
}

/** Where a run keeps its state, and how long it may take. */
export interface SupervisedRunOptions {
  /** The run's checkpoint; an existing one is resumed. */
  checkpointPath: string;
  /** Where metrics records are appended. */
  metricsPath: string;
  /** Stop at the first checkpoint after this many minutes. */
  minutes?: number;
  /** Show the progress bar (default true). */
  progress?: boolean;
}

/** A network a supervised run trains: its configuration and its parameters. */
export interface SupervisedNetwork {
  readonly config: object;
  readonly parameters: readonly NamedVariable[];
}

/** What one step did. */
export interface StepResult {
  /** The loss before the update. */
  loss: number;
  /** ‖∇θ L‖ of the batch. */
  gradNorm: number;
  /** Whether the update was applied: only when the loss and the gradient norm are finite. */
  applied: boolean;
}

/** What the run needs of the network it trains. */
export interface SupervisedTask {
  /** The network in messages, e.g. "classifier". */
  what: string;
  /** The loss of a batch drawn from `rng` (call inside `tf.variableGrads`). */
  batchLoss(rng: Random): () => tf.Scalar;
  /** The held-out scores, measured at every checkpoint. */
  evaluate(): Promise<Record<string, number>>;
}

/** AdamW (β₁ 0.9, β₂ 0.999, ε 10⁻⁸) with weight decay λ, over `parameters`. */
export function adamW(parameters: readonly NamedVariable[], weightDecay: number): Adam {
  return new Adam(parameters, {
    optimizer: "adamw",
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-8,
    weightDecay,
  });
}

/**
 * One optimisation step: `loss` and its gradient with respect to `parameters`, then Adam's update
 * number `t` (1-based) at learning rate `lr`. A step whose loss or gradient norm is not finite
 * changes nothing.
 */
export async function optimiserStep(
  parameters: readonly NamedVariable[],
  adam: Adam,
  loss: () => tf.Scalar,
  lr: number,
  t: number,
): Promise<StepResult> {
  const { value, grads } = tf.variableGrads(loss, parameters.map((p) => p.variable));
  const update = proposeUpdate(adam, null, grads, { lr, k: t, clipNorm: null, emaDecay: 1 });
  tf.dispose(Object.values(grads));
  const readback = tf.tidy(() => tf.concat([tf.reshape(value, [1]), tf.reshape(update.norm, [1])]));
  const [lossValue, gradNorm] = await readback.data();
  tf.dispose([readback, value]);
  const applied = Number.isFinite(lossValue) && Number.isFinite(gradNorm);
  if (applied) update.commit(gradNorm);
  else update.discard();
  return { loss: lossValue, gradNorm, applied };
}

async function save(
  path: string,
  network: SupervisedNetwork,
  adam: Adam,
  step: number,
  rng: Random,
  recipe: SupervisedRecipe,
): Promise<void> {
  const tensors = await readVariables(network.parameters, "params/");
  for (const key of ["m", "v"] as const) {
    const pieces = namedPieces(adam[key], network.parameters);
    try {
      await readVariables(pieces, `optimizer/${key}/`, tensors);
    } finally {
      tf.dispose(pieces.map((p) => p.variable));
    }
  }
  const checkpoint: Checkpoint = {
    step,
    modelConfig: network.config as Checkpoint["modelConfig"],
    state: { training: recipe, rngState: rng.state, backend: tf.getBackend() },
    tensors,
  };
  await saveCheckpoint(path, checkpoint);
}

/** Resume the run at `path` into `network`, `adam` and `rng`; returns its step. */
async function resume(
  path: string,
  network: SupervisedNetwork,
  adam: Adam,
  rng: Random,
  recipe: SupervisedRecipe,
  what: string,
): Promise<number> {
  const checkpoint = await loadCheckpoint(path);
  const stored = JSON.stringify([checkpoint.modelConfig, checkpoint.state.training]);
  if (stored !== JSON.stringify([network.config, recipe])) {
    throw new UserError(
      `${path} is a run of another ${what} or recipe (${stored}); train into another folder, ` +
        `or move that run aside to start over.`,
    );
  }
  assignVariables(network.parameters, checkpoint.tensors, "params/", path);
  for (const key of ["m", "v"] as const) {
    const pieces = namedPieces(adam[key], network.parameters);
    assignVariables(pieces, checkpoint.tensors, `optimizer/${key}/`, path);
    tf.tidy(() => adam[key].assign(tf.concat(pieces.map((p) => tf.reshape(p.variable, [-1])))));
    tf.dispose(pieces.map((p) => p.variable));
  }
  rng.state = checkpoint.state.rngState as number;
  return checkpoint.step;
}

/**
 * Train `network` on `task` for `recipe.steps` steps, resuming the run at
 * `options.checkpointPath` when there is one; returns the step it stopped at.
 *
 * @throws UserError when the loss or its gradient is not finite (no update is applied, nothing
 *   is written), or when the checkpoint is another network's or recipe's
 */
export async function trainSupervised(
  network: SupervisedNetwork,
  recipe: SupervisedRecipe,
  task: SupervisedTask,
  options: SupervisedRunOptions,
): Promise<number> {
  const adam = adamW(network.parameters, recipe.weightDecay);
  const rng = new Random(recipe.seed);
  let step = 0;
  try {
    for (const path of [options.checkpointPath, options.metricsPath]) {
      await removeStaleTemporaries(path);
    }
    if (await exists(options.checkpointPath)) {
      step = await resume(options.checkpointPath, network, adam, rng, recipe, task.what);
    }
    await keepRecordsUpTo(options.metricsPath, step);
    const progress = options.progress === false
      ? null
      : new ProgressBar(recipe.steps, { label: "train", start: step });
    const deadline = performance.now() + (options.minutes ?? Infinity) * 60_000;
    const backend = activeBackendLabel();
    const started = performance.now();
    let window = { loss: 0, steps: 0, start: started };
    while (step < recipe.steps) {
      const lr = learningRateAt({ ...recipe, lrSchedule: "cosine" }, step);
      const result = await optimiserStep(
        network.parameters,
        adam,
        task.batchLoss(rng),
        lr,
        step + 1,
      );
      if (!result.applied) {
        const what = Number.isFinite(result.loss)
          ? `gradient norm is ${result.gradNorm}`
          : `loss is ${result.loss}`;
        throw new UserError(
          `The ${task.what}'s ${what} at step ${step + 1}; its weights were left as after ` +
            `step ${step}. Lower its learning rate (it was ${lr}) in the spec.`,
        );
      }
      step++;
      window.loss += result.loss;
      window.steps++;
      const checkpointNow = step % recipe.checkpointEvery === 0 || step === recipe.steps;
      if (step % recipe.logEvery === 0 || checkpointNow) {
        const now = performance.now();
        const record: SupervisedMetrics = {
          step,
          loss: window.loss / window.steps,
          lr,
          stepsPerSecond: window.steps / Math.max(1e-9, (now - window.start) / 1000),
          elapsed: (now - started) / 1000,
          backend,
        };
        if (checkpointNow) record.heldOut = await task.evaluate();
        await Deno.writeTextFile(options.metricsPath, JSON.stringify(record) + "\n", {
          append: true,
        });
        window = { loss: 0, steps: 0, start: performance.now() };
      }
      if (checkpointNow) await save(options.checkpointPath, network, adam, step, rng, recipe);
      progress?.update(step, { loss: result.loss });
      if (checkpointNow && performance.now() > deadline) break;
    }
    progress?.done();
  } finally {
    adam.dispose();
  }
  return step;
}
