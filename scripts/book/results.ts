/**
 * Stored chapter results: a folder of output files, the runtime's `outputs.json`, and
 * `result.json` saying what produced them and after which code cell each output goes.
 *
 * Cache: `.cache/book/<chapterId>/<key>/`. A failed run is kept in `.cache/book/<chapterId>/failed/`
 * (its partial outputs are shown with the error). Frozen results: `assets/frozen/<chapterId>/`.
 *
 * @module
 */

import { processRunning, writeFileAtomic } from "../../lib/runtime/files.ts";
import type { OutputRecord, Profile } from "../../lib/book/runtime.ts";
import type { Dependency } from "../../lib/runtime/dependencies.ts";
import { type Cell, codeCellOfLine } from "./cells.ts";

/**
 * An output placed in the chapter: `cell` is the index among code cells (-1: at the end).
 * `inline` holds a text output's content when it is kept in result.json instead of a file
 * (frozen results do this).
 */
export type PlacedOutput = OutputRecord & { cell: number; inline?: string };

/** What `result.json` holds. */
export interface ResultMeta {
  /** The chapter's id. */
  chapterId: string;
  /** The cache key (content hash, profile, backend). */
  key: string;
  /** Hash of the code and the modules it imports. */
  contentHash: string;
  /** Profile it ran with. */
  profile: Profile;
  /** Backend asked for, by `--backend` or `DIFFUSION_BACKEND` (undefined: the library's choice). */
  backend?: string;
  /** Whether the chapter ran to the end. */
  ok: boolean;
  /** Exit code of the chapter's process. */
  exitCode: number;
  /** The tail of its error output when it failed. */
  error?: string;
  /** When it finished (ISO 8601). */
  finishedAt: string;
  /** How long it ran, in seconds. */
  seconds: number;
  /** The model artefacts it loaded, with their manifests' hashes (see cache.ts). */
  dependencies?: Dependency[];
  /** Its outputs, in order, placed after code cells. */
  outputs: PlacedOutput[];
}

/** Reads `result.json` from a result folder, or undefined when absent or unreadable. */
export async function readResult(dir: string): Promise<ResultMeta | undefined> {
  try {
    const meta = JSON.parse(await Deno.readTextFile(`${dir}/result.json`)) as ResultMeta;
    return typeof meta.key === "string" && Array.isArray(meta.outputs) ? meta : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the runtime manifest `outputs.json` (empty when the chapter made no output). */
export async function readManifest(dir: string): Promise<OutputRecord[]> {
  try {
    const records = JSON.parse(await Deno.readTextFile(`${dir}/outputs.json`));
    return Array.isArray(records) ? records : [];
  } catch {
    return [];
  }
}

/** Places each output after the code cell holding its line (outputs of unknown lines go last). */
export function placeOutputs(records: OutputRecord[], cells: Cell[]): PlacedOutput[] {
  return records.map((record) => ({ ...record, cell: codeCellOfLine(cells, record.line) }));
}

/** Writes a file through a temporary name and a rename. */

/** Removes a path if it exists. */
export async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Copies a folder tree (files and folders only). */
export async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyDir(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/** Replaces folder `to` by a copy of `from`: copied beside it first, then swapped in by renames. */
export async function replaceDirWithCopy(from: string, to: string): Promise<void> {
  const staging = `${to}.${Deno.pid}.incoming`;
  await removeIfPresent(staging);
  await copyDir(from, staging);
  await swapIn(staging, to);
}

/** The suffix of the folder {@link swapIn} moves the old one to (a killed swap may leave it). */
export const OUTGOING = ".outgoing-";

/**
 * Puts the folder `incoming` in the place of `target` by renames: the old `target` (if any) is
 * moved aside, `incoming` takes its name, and the old one is removed. If `incoming` cannot take
 * the name, the old one is put back and the error thrown.
 */
export async function swapIn(incoming: string, target: string): Promise<void> {
  const aside = `${target}${OUTGOING}${crypto.randomUUID().slice(0, 8)}`;
  let moved = true;
  try {
    await Deno.rename(target, aside);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    moved = false;
  }
  try {
    await Deno.rename(incoming, target);
  } catch (error) {
    if (!moved) throw error;
    try {
      await Deno.rename(aside, target);
    } catch {
      throw new Error(`${(error as Error).message}; the previous folder is left in ${aside}`);
    }
    throw error;
  }
  if (moved) await removeIfPresent(aside);
}

/**
 * Makes a frozen result folder safe to commit in a repository whose formatter checks JSON, SVG
 * and HTML: text outputs (figure markup, widget data) move into result.json as strings, the
 * runtime manifest goes, and result.json is written the way `deno fmt` writes JSON.
 */
export async function compactFrozen(dir: string): Promise<void> {
  const meta = await readResult(dir);
  if (!meta) throw new Error(`no result.json in ${dir}`);
  for (const output of meta.outputs) {
    if (output.file && /\.(svg|html|json)$/.test(output.file)) {
      output.inline = await Deno.readTextFile(`${dir}/${output.file}`);
      await Deno.remove(`${dir}/${output.file}`);
      delete output.file;
    }
  }
  await removeIfPresent(`${dir}/outputs.json`);
  await removeIfPresent(`${dir}/dependencies.jsonl`); // kept in result.json's dependencies
  await writeFileAtomic(`${dir}/result.json`, `${JSON.stringify(meta, null, 2)}\n`);
}

/**
 * The quick profile's measured time, kept beside a chapter's frozen (full-profile) results in
 * `quick.json` by `deno task book --freeze --profile quick`, so that the published page can say
 * how long both profiles take. It belongs to one version of the chapter (its content hash).
 */
export interface QuickTiming {
  contentHash: string;
  seconds: number;
  finishedAt: string;
  backend?: string;
}

/** The file of a frozen folder holding its {@link QuickTiming}. */
export const QUICK_TIMING = "quick.json";

/** The quick timing in a frozen folder, if it is there and was measured for `contentHash`. */
export async function readQuickTiming(
  dir: string,
  contentHash: string,
): Promise<QuickTiming | undefined> {
  try {
    const timing = JSON.parse(await Deno.readTextFile(`${dir}/${QUICK_TIMING}`)) as QuickTiming;
    return timing.contentHash === contentHash && typeof timing.seconds === "number"
      ? timing
      : undefined;
  } catch {
    return undefined;
  }
}

/** The {@link QuickTiming} of a quick run's result. */
export function quickTimingOf(meta: ResultMeta): QuickTiming {
  return {
    contentHash: meta.contentHash,
    seconds: meta.seconds,
    finishedAt: meta.finishedAt,
    ...(meta.backend ? { backend: meta.backend } : {}),
  };
}

/** Records a quick run's time in a frozen folder (made if absent), as `deno fmt` writes JSON. */
export async function writeQuickTiming(dir: string, timing: QuickTiming): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(`${dir}/${QUICK_TIMING}`, `${JSON.stringify(timing, null, 2)}\n`);
}

/**
 * Removes the `KEY.PID.running` folders of runs whose process is gone (a chapter killed
 * mid-run, or a builder stopped with Ctrl+C), leaving those of runs still going.
 */
export async function removeAbandonedRuns(chapterCache: string): Promise<string[]> {
  const removed: string[] = [];
  try {
    for await (const entry of Deno.readDir(chapterCache)) {
      const pid = /^[^.]+\.(\d+)\.running$/.exec(entry.name)?.[1];
      if (!entry.isDirectory || !pid || processRunning(Number(pid))) continue;
      await removeIfPresent(`${chapterCache}/${entry.name}`);
      removed.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}

/** Keeps the `keep` most recently written result folders of a chapter's cache, removing the rest. */
export async function pruneCache(chapterCache: string, keep: number): Promise<void> {
  const dirs: Array<{ path: string; time: number }> = [];
  try {
    for await (const entry of Deno.readDir(chapterCache)) {
      if (!entry.isDirectory || entry.name === "failed" || entry.name.includes(".")) continue;
      const path = `${chapterCache}/${entry.name}`;
      const info = await Deno.stat(`${path}/result.json`).catch(() => undefined);
      dirs.push({ path, time: info?.mtime?.getTime() ?? 0 });
    }
  } catch {
    return;
  }
  dirs.sort((a, b) => b.time - a.time);
  for (const { path } of dirs.slice(keep)) await removeIfPresent(path);
}
