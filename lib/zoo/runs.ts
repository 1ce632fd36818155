/**
 * Training runs of the zoo's models: `trainModel(name)` trains a spec or continues its run, and
 * a finished `full` run is exported as the model's artefact (lib/zoo/artefacts.ts).
 *
 * A run lives in `.cache/runs/NAME-PROFILE/` (ignored by git): `run.json` (the spec it trains and
 * its hash), `checkpoint.bin` (weights, EMA, Adam moments, step, RNG: a resume is bit-exact),
 * `metrics.jsonl` and `samples-STEP.png`. A run is always continued, never silently replaced:
 * `restart` moves it aside to `NAME-PROFILE.old-TIMESTAMP/`, and a run of another spec is an
 * error that names both. A `full` run may also start from a partial artefact committed under
 * `assets/models/NAME/partial/` (see `savePartial`), to go on on another machine.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { Profile } from "../runtime/options.ts";
import { specTrainingData } from "./spec_data.ts";
import { encodePng, imageGrid, toRgbaImages } from "../core/images.ts";
import type { TrainCallbacks } from "../training/trainer.ts";
import { exists, writeFileAtomic } from "../runtime/files.ts";
import { noiseSchedule } from "../core/schedules.ts";
import { train, type Trainer } from "../training/trainer.ts";
import { completeModelConfig, createModel } from "../core/models/mod.ts";
import { readManifest, type RunLineage } from "./manifest.ts";
import { listCheckpoints, rewindTo } from "../training/checkpoint_history.ts";
import { canonicalJson, type ModelSpec, modelSpec, profileSpec, specHash } from "./specs.ts";
import { UserError } from "../core/errors.ts";
import { decodeScaledLatents, loadAutoencoderArtefact } from "./autoencoder.ts";

/** The folder of the run of `name` in `profile`, relative to the project root. */
export function runDir(name: string, profile: Profile, root = "."): string {
  return `${root}/.cache/runs/${name}-${profile}`;
}

/**
 * Move the run in `dir` aside to `DIR.old-TIMESTAMP` (a restart never deletes a run); returns
 * where it went, or undefined when there was no run.
 */
export async function moveRunAside(dir: string): Promise<string | undefined> {
  if (!(await exists(dir))) return undefined;
  const aside = `${dir}.old-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  await Deno.rename(dir, aside);
  return aside;
}

/** How a run's sample grids are laid out (`gridCells` reads them back with it). */
export const SAMPLE_GRID_LAYOUT = { columns: 8, scale: 2 } as const;

/**
 * An `onSamples` callback that writes each grid as `dir/samples-000500.png` (8 columns, 2×);
 * `decode` turns a latent model's samples into images first.
 */
export function sampleGridWriter(
  dir: string,
  decode?: (samples: tf.Tensor4D) => tf.Tensor4D,
): NonNullable<TrainCallbacks["onSamples"]> {
  return async ({ step, images }) => {
    const decoded = decode ? decode(images) : images;
    const grid = imageGrid(await toRgbaImages(decoded), SAMPLE_GRID_LAYOUT);
    if (decoded !== images) decoded.dispose();
    await writeFileAtomic(`${dir}/samples-${String(step).padStart(6, "0")}.png`, encodePng(grid));
  };
}

/** The folder of the committed artefact of `name`. */
export function artefactDir(name: string, root = "."): string {
  return `${root}/assets/models/${name}`;
}

/** What `run.json` records: the spec a run trains. */
export interface RunRecord {
  /** The spec's hash for the run's profile. */
  specHash: string;
  /** The spec itself (its profile's part), to name differences. */
  spec: ReturnType<typeof profileSpec>;
  /** Earlier specs of the run, when `--resume-from` changed its training recipe. */
  lineage?: RunLineage[];
}

/** The keys of two JSON values that differ, as dotted paths. */
function differences(a: unknown, b: unknown, path = ""): string[] {
  if (canonicalJson(a) === canonicalJson(b)) return [];
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) =>
      differences(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
      )
    );
  }
  return [`${path}: ${JSON.stringify(a)} → ${JSON.stringify(b)}`];
}

/**
 * Check that the run in `dir` trains `spec` (writing `run.json` for a new run). A run that goes
 * back to a kept checkpoint (`rewind`, which does it and throws when there is no such step) may
 * go on under a changed training recipe (learning rate, warm-up, clipping, steps: the spec's
 * `training` part alone), recorded in its lineage once the rewind is done.
 *
 * @throws Error naming both specs when the run trains another one
 */
async function claimRun(
  dir: string,
  spec: ModelSpec,
  profile: Profile,
  rewind?: { step: number; run: () => Promise<void> },
): Promise<void> {
  const record: RunRecord = {
    specHash: await specHash(spec, profile),
    spec: profileSpec(spec, profile),
  };
  const path = `${dir}/run.json`;
  if (await exists(path)) {
    const stored = JSON.parse(await Deno.readTextFile(path)) as RunRecord;
    const changed = differences(stored.spec, record.spec);
    if (
      stored.specHash !== record.specHash && rewind !== undefined &&
      changed.every((path) => path.startsWith("training."))
    ) {
      await rewind.run(); // first: a step that is not kept leaves run.json as it was
      const lineage = [...stored.lineage ?? [], {
        step: rewind.step,
        specHash: stored.specHash,
        changed,
      }];
      await writeFileAtomic(path, JSON.stringify({ ...record, lineage }, null, 2) + "\n");
      return;
    }
    if (stored.specHash !== record.specHash) {
      const restart = `deno task train ${spec.name} --profile ${profile} --restart`;
      const kept = (await listCheckpoints(`${dir}/checkpoint.bin`)).filter((c) => !c.problem);
      const remedy = changed.every((path) => path.startsWith("training.")) && kept.length > 0
        ? `To go on under the new training recipe from one of the run's checkpoints (steps ` +
          `${kept.map((c) => c.step).join(", ")}), add \`--resume-from STEP\`; to start over, ` +
          `\`${restart}\``
        : `Start over with \`${restart}\``;
      throw new UserError(
        `${dir} is a run of another spec of ${spec.name} (${stored.specHash}, today's is ` +
          `${record.specHash}): ${changed.join("; ")}. ${remedy} (the old run is moved aside, ` +
          `not deleted).`,
      );
    }
    await rewind?.run();
    return;
  }
  await rewind?.run(); // a new run has nothing to go back to: this throws
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(record, null, 2) + "\n");
}

/** Options of {@link trainModel}. */
export interface TrainModelOptions {
  /** Which variant (default full). */
  profile?: Profile;
  /** Stop at the first checkpoint after this many minutes (default: train to the end). */
  minutes?: number;
  /** Move the existing run aside and start over. */
  restart?: boolean;
  /**
   * Go back to the run's kept checkpoint of this step (the later ones are moved aside, not
   * deleted) and continue from there, under today's training recipe.
   */
  resumeFrom?: number;
  /** Show the progress bar (default true). */
  progress?: boolean;
  /** Project root (default the working folder). */
  root?: string;
}

/** What {@link trainModel} did. */
export interface TrainModelResult {
  /** The run's folder. */
  dir: string;
  /** Steps completed. */
  step: number;
  /** Steps of the spec. */
  steps: number;
  /** Where an old run was moved by `restart`, or its later checkpoints by `resumeFrom`. */
  movedAside?: string;
  /** Nothing was trained: the committed artefact is of today's spec and there is no run. */
  upToDate?: boolean;
}

/**
 * Train the zoo's model `name`, or continue its run, on the active backend. The caller selects
 * the backend first (`selectBackend`).
 */
export async function trainModel(
  which: string | ModelSpec,
  options: TrainModelOptions = {},
): Promise<TrainModelResult> {
  const spec = modelSpec(which);
  const name = spec.name;
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const dir = runDir(name, profile, root);
  let movedAside = options.restart ? await moveRunAside(dir) : undefined;
  const partial = `${artefactDir(name, root)}/partial`;
  if (profile === "full" && !options.restart && !(await exists(dir)) && !(await exists(partial))) {
    const manifest = await readManifest(artefactDir(name, root));
    if (manifest?.specHash === await specHash(spec, profile)) {
      return { dir, step: manifest.steps, steps: manifest.steps, upToDate: true };
    }
  }
  if (!options.restart && profile === "full" && !(await exists(dir)) && await exists(partial)) {
    await Deno.mkdir(dir, { recursive: true });
    for await (const entry of Deno.readDir(partial)) {
      await Deno.copyFile(`${partial}/${entry.name}`, `${dir}/${entry.name}`);
    }
  }
  if (options.resumeFrom !== undefined && options.restart) {
    throw new UserError("--resume-from continues a run and --restart starts one over: choose one");
  }
  const checkpointPath = `${dir}/checkpoint.bin`;
  const metricsPath = `${dir}/metrics.jsonl`;
  const resumeFrom = options.resumeFrom;
  await claimRun(
    dir,
    spec,
    profile,
    resumeFrom === undefined ? undefined : {
      step: resumeFrom,
      run: async () => {
        movedAside = await rewindTo(checkpointPath, resumeFrom, metricsPath);
      },
    },
  );
  const { training: data } = await specTrainingData(spec, profile, root);
  const schedule = noiseSchedule(spec.schedule.name, spec.schedule.T);
  const model = createModel(completeModelConfig(spec.network[profile]));
  const config = {
    ...spec.training[profile],
    ...spec.objective,
    checkpointPath,
    metricsPath,
  };
  const firstStage = spec.latent
    ? await loadAutoencoderArtefact(spec.latent.autoencoder, profile, root)
    : undefined;
  const decode = firstStage &&
    ((z: tf.Tensor4D) => decodeScaledLatents(firstStage.autoencoder, z, firstStage.scaleFactor));
  let trainer: Trainer;
  try {
    trainer = await train(model, data, schedule, config, {
      onSamples: sampleGridWriter(dir, decode),
      resume: true,
      minutes: options.minutes,
      progress: options.progress,
    });
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    firstStage?.autoencoder.dispose();
  }
  const result = { dir, step: trainer.step, steps: trainer.config.steps, movedAside };
  trainer.model.dispose();
  trainer.dispose();
  return result;
}

/**
 * Copy a run's files into `assets/models/NAME/partial/`, so that a later session (or another
 * machine) continues it with `deno task train NAME`.
 */
export async function savePartial(name: string, root = "."): Promise<string> {
  const from = runDir(name, "full", root);
  if (!(await exists(`${from}/checkpoint.bin`))) {
    throw new Error(`there is no full run of ${name} to save (${from} holds no checkpoint)`);
  }
  const to = `${artefactDir(name, root)}/partial`;
  await Deno.mkdir(to, { recursive: true });
  // The latest checkpoint is what a continuation needs; the kept earlier ones stay local.
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile && !/\.step-\d+\.bin$|\.tmp$/.test(entry.name)) {
      await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
  return to;
}
