/**
 * The checkpoints a run keeps. The latest is at the run's checkpoint path (`checkpoint.bin`);
 * the few before it lie beside it as `checkpoint.step-001200.bin`, so that a run whose weights
 * were ruined before its loss turned NaN can go back to a checkpoint that was still sane.
 *
 * Saving never leaves the run without a checkpoint: the previous latest is first hard-linked
 * to its step's name (an atomic operation), then the new one replaces the latest atomically
 * (lib/runtime/files.ts), and only then are the oldest beyond the kept number removed. A
 * process killed at any point leaves a latest checkpoint that is whole, and at most a
 * temporary file, which {@link removeStaleTemporaries} clears on the next start, or one kept
 * checkpoint too many, which {@link pruneKeptCheckpoints} removes then.
 *
 * Each checkpoint's state carries `meanLoss`, the mean training loss of the steps since the
 * one before it, and `bestMeanLoss`, the lowest such mean of the run so far: what
 * {@link saneCheckpoint} compares.
 *
 * @module
 */

import { type Checkpoint, readCheckpointHeader, saveCheckpoint } from "./checkpoint.ts";
import { exists, temporaryPath } from "../runtime/files.ts";
import { UserError } from "../core/errors.ts";

/** How many checkpoints a run keeps by default: the latest and the two before it. */
export const DEFAULT_KEPT_CHECKPOINTS = 3;

/** A checkpoint of a run, as {@link listCheckpoints} finds it. */
export interface KeptCheckpoint {
  /** Steps completed when it was written. */
  step: number;
  /** Its file. */
  path: string;
  /** Whether it is the latest (the run's checkpoint path). */
  latest: boolean;
  /** Mean training loss of the steps since the checkpoint before it (NaN when unknown). */
  meanLoss: number;
  /** The run's lowest such mean up to this checkpoint (NaN when unknown). */
  bestMeanLoss: number;
  /** Why the file cannot be used (damaged, truncated), when it cannot. */
  problem?: string;
}

function split(path: string): { dir: string; stem: string; extension: string } {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash) : ".";
  const name = path.slice(slash + 1);
  const dot = name.lastIndexOf(".");
  return dot > 0
    ? { dir, stem: name.slice(0, dot), extension: name.slice(dot) }
    : { dir, stem: name, extension: "" };
}

/** Where the run whose latest checkpoint is `path` keeps the checkpoint of `step`. */
export function keptCheckpointPath(path: string, step: number): string {
  const { dir, stem, extension } = split(path);
  return `${dir}/${stem}.step-${String(step).padStart(6, "0")}${extension}`;
}

/** The step in a kept checkpoint's name, or undefined when `name` is not one of `path`'s. */
function keptStep(path: string, name: string): number | undefined {
  const { stem, extension } = split(path);
  const prefix = `${stem}.step-`;
  if (!name.startsWith(prefix) || !name.endsWith(extension)) return undefined;
  const digits = name.slice(prefix.length, name.length - extension.length);
  return /^\d+$/.test(digits) ? Number(digits) : undefined;
}

async function namesIn(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

async function describe(path: string, latest: boolean, step?: number): Promise<KeptCheckpoint> {
  try {
    const header = await readCheckpointHeader(path);
    const state = header.state ?? {};
    const number = (value: unknown) => typeof value === "number" ? value : NaN;
    return {
      step: header.step,
      path,
      latest,
      meanLoss: number(state.meanLoss),
      bestMeanLoss: number(state.bestMeanLoss),
    };
  } catch (error) {
    return {
      step: step ?? -1,
      path,
      latest,
      meanLoss: NaN,
      bestMeanLoss: NaN,
      problem: (error as Error).message,
    };
  }
}

/**
 * Every checkpoint of the run whose latest is at `path`, newest first, each verified whole
 * (a damaged one is listed with its `problem`).
 */
export async function listCheckpoints(path: string): Promise<KeptCheckpoint[]> {
  const { dir } = split(path);
  const found: KeptCheckpoint[] = [];
  if (await exists(path)) found.push(await describe(path, true));
  for (const name of await namesIn(dir)) {
    const step = keptStep(path, name);
    if (step !== undefined) found.push(await describe(`${dir}/${name}`, false, step));
  }
  // The latest is also kept under its step's name once the next one is saved: list it once.
  const latestStep = found[0]?.latest ? found[0].step : undefined;
  return found.filter((c) => c.latest || c.step !== latestStep).sort((a, b) => b.step - a.step);
}

/**
 * Save `checkpoint` as the run's latest at `path`, keeping the `keep` newest checkpoints in
 * all (the latest counts; `keep` = 1 keeps only the latest).
 */
export async function saveKeptCheckpoint(
  path: string,
  checkpoint: Checkpoint,
  keep = DEFAULT_KEPT_CHECKPOINTS,
  options: Parameters<typeof saveCheckpoint>[2] = {},
): Promise<void> {
  if (!(Number.isInteger(keep) && keep >= 1)) {
    throw new UserError(`keepCheckpoints must be a whole number ≥ 1 (it is ${keep})`);
  }
  if (keep > 1 && await exists(path)) {
    const previous = await describe(path, true);
    if (!previous.problem && previous.step !== checkpoint.step) {
      const kept = keptCheckpointPath(path, previous.step);
      await Deno.remove(kept).catch(() => {});
      try {
        await Deno.link(path, kept);
      } catch {
        await Deno.copyFile(path, kept); // a file system without hard links
      }
    }
  }
  await saveCheckpoint(path, checkpoint, options);
  await pruneKeptCheckpoints(path, keep);
}

/**
 * Remove the oldest kept checkpoints of the run at `path` beyond `keep` in all (the latest
 * counts): what a save does last, and a run's start does again, in case a process was killed
 * between the two.
 */
export async function pruneKeptCheckpoints(
  path: string,
  keep = DEFAULT_KEPT_CHECKPOINTS,
): Promise<void> {
  if (!await exists(path)) return;
  const latest = await describe(path, true);
  const older = (await namesIn(split(path).dir))
    .map((name) => ({ name, step: keptStep(path, name) }))
    .filter((c): c is { name: string; step: number } =>
      c.step !== undefined && c.step !== latest.step
    )
    .sort((a, b) => b.step - a.step);
  for (const { name } of older.slice(keep - 1)) {
    await Deno.remove(`${split(path).dir}/${name}`).catch(() => {});
  }
}

/**
 * The newest checkpoint whose loss was still sane: readable, with a finite mean loss at most
 * twice the run's best (the lowest `bestMeanLoss` any of them records). A run that diverges usually ruins its weights a few hundred
 * steps before its loss turns NaN, and its mean loss shows it.
 */
export function saneCheckpoint(checkpoints: readonly KeptCheckpoint[]): KeptCheckpoint | undefined {
  const best = Math.min(
    ...checkpoints.filter((c) => !c.problem).map((c) =>
      Number.isFinite(c.bestMeanLoss) ? c.bestMeanLoss : c.meanLoss
    ).filter(Number.isFinite),
  );
  return checkpoints.find((c) =>
    !c.problem && Number.isFinite(c.meanLoss) && c.meanLoss <= 2 * best
  );
}

/** One line a checkpoint: its step, mean loss and file, for an error message. */
export function describeCheckpoints(checkpoints: readonly KeptCheckpoint[]): string {
  return checkpoints.map((c) =>
    `step ${c.step}: ${
      c.problem
        ? "unreadable"
        : `mean loss ${Number.isFinite(c.meanLoss) ? c.meanLoss.toPrecision(4) : "unknown"}`
    } (${c.path})`
  ).join("; ");
}

/**
 * Go back to the kept checkpoint of `step`: it becomes the latest, and every checkpoint after
 * it (and the metrics file, when given) is moved, not deleted, into a folder beside the run,
 * which is returned.
 *
 * @throws Error listing the kept steps when there is no usable checkpoint of `step`
 */
export async function rewindTo(
  path: string,
  step: number,
  metricsPath: string | null = null,
): Promise<string | undefined> {
  const checkpoints = await listCheckpoints(path);
  const chosen = checkpoints.find((c) => c.step === step && !c.problem);
  if (!chosen) {
    throw new UserError(
      `there is no usable checkpoint of step ${step} in ${split(path).dir}; the run keeps ` +
        (checkpoints.length ? describeCheckpoints(checkpoints) : "none"),
    );
  }
  // Every kept file after `step`, straight from the folder (a kept copy of the latest too,
  // which listCheckpoints shows once).
  const { dir } = split(path);
  const later = (await namesIn(dir)).filter((name) => (keptStep(path, name) ?? -1) > step);
  const latestStep = checkpoints.find((c) => c.latest)?.step;
  if (chosen.latest && later.length === 0) return undefined;
  const aside = `${dir}/after-step-${step}-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  await Deno.mkdir(aside, { recursive: true });
  if (metricsPath && await exists(metricsPath)) {
    await Deno.copyFile(
      metricsPath,
      `${aside}/${split(metricsPath).stem}${split(metricsPath).extension}`,
    );
  }
  // The latest is kept in the folder first (a link, else a copy; a failure stops the rewind),
  // then the chosen one replaces it atomically: the run has a whole latest throughout.
  const latestName = `${split(path).stem}${split(path).extension}`;
  if (!chosen.latest) {
    if (latestStep !== undefined && latestStep > step) {
      await Deno.link(path, `${aside}/${latestName}`).catch(() =>
        Deno.copyFile(path, `${aside}/${latestName}`)
      );
    }
    const staged = temporaryPath(path);
    await Deno.copyFile(chosen.path, staged);
    await Deno.rename(staged, path);
  }
  for (const name of later) await Deno.rename(`${dir}/${name}`, `${aside}/${name}`);
  return aside;
}
