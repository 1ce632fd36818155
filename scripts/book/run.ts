/**
 * Running a chapter as its own process and storing what it produced.
 *
 * The chapter runs as `deno run -A --config <root>/deno.json <chapter> --profile P [--backend B]`
 * with `BOOK_OUTPUT_DIR` pointing into the cache. Its output is streamed line by line with the
 * chapter's id in front; the last lines of its error output are kept for the report.
 *
 * @module
 */

import type { Profile } from "../../lib/book/runtime.ts";
import type { Chapter } from "./chapters.ts";
import { effectiveBackend } from "./cache.ts";
import {
  placeOutputs,
  pruneCache,
  readManifest,
  removeAbandonedRuns,
  removeIfPresent,
  type ResultMeta,
} from "./results.ts";
import { writeFileAtomic } from "../../lib/runtime/files.ts";
import { DEPENDENCIES_ENV, readDependencies } from "../../lib/runtime/dependencies.ts";

/** How to run one chapter. */
export interface RunOptions {
  /** Folder holding deno.json (its import map resolves the chapter's packages). */
  root: string;
  /** The chapter cache, `.cache/book`. */
  cacheDir: string;
  /** Profile to run. */
  profile: Profile;
  /** Backend to ask for, passed on as `--backend`. */
  backend?: string;
  /** Content hash and key the result is stored under. */
  contentHash: string;
  /** The cache key. */
  key: string;
  /** Where streamed lines go (default: the terminal, prefixed with the chapter id). */
  log?: (line: string) => void;
  /** Prefix of streamed lines (default `[<chapterId>] `). */
  prefix?: string;
}

/** `text` without ANSI escape sequences (colours, cursor moves) that only a terminal reads. */
export function withoutAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]|\x1b\][^\x07]*\x07/g, "");
}

/** What running a chapter gave. */
export interface RunOutcome {
  /** The folder holding the outputs and result.json. */
  dir: string;
  /** The stored result. */
  meta: ResultMeta;
}

const TAIL_LINES = 25;

async function pump(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let pending = "";
  const decoder = new TextDecoder();
  for await (const bytes of stream) {
    pending += decoder.decode(bytes, { stream: true });
    const lines = pending.split(/\r\n|\n|\r/);
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
  pending += decoder.decode();
  if (pending !== "") onLine(pending);
}

/** The path of the cached result for a chapter and key. */
export function cachePath(cacheDir: string, chapterId: string, key: string): string {
  return `${cacheDir}/${chapterId}/${key}`;
}

/**
 * Runs a chapter into the cache. On success the result lands in `<cache>/<id>/<key>/`; on
 * failure in `<cache>/<id>/failed/` with `ok: false` and the tail of stderr in `error`.
 */
export async function runChapter(chapter: Chapter, options: RunOptions): Promise<RunOutcome> {
  const chapterCache = `${options.cacheDir}/${chapter.id}`;
  const working = `${chapterCache}/${options.key}.${Deno.pid}.running`;
  await removeAbandonedRuns(chapterCache);
  await removeIfPresent(working);
  await Deno.mkdir(working, { recursive: true });
  const prefix = options.prefix ?? `[${chapter.id}] `;
  const log = options.log ?? ((line: string) => console.log(line));
  const args = [
    "run",
    "-A",
    "--config",
    `${options.root}/deno.json`,
    chapter.file,
    "--profile",
    options.profile,
    ...(options.backend ? ["--backend", options.backend] : []),
  ];
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.root,
    env: {
      BOOK_OUTPUT_DIR: working,
      BOOK_CHAPTER_ID: chapter.id,
      BOOK_PROFILE: options.profile,
      BOOK_PROGRESS: "1",
      [DEPENDENCIES_ENV]: `${working}/dependencies.jsonl`,
      ...(options.backend ? { BOOK_BACKEND: options.backend } : {}),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const tail: string[] = [];
  await Promise.all([
    pump(child.stdout, (line) => log(prefix + line)),
    pump(child.stderr, (line) => {
      log(prefix + line);
      tail.push(withoutAnsi(line)); // the page shows it: no terminal colour codes
      if (tail.length > TAIL_LINES) tail.shift();
    }),
  ]);
  const status = await child.status;
  const records = await readManifest(working);
  const meta: ResultMeta = {
    chapterId: chapter.id,
    key: options.key,
    contentHash: options.contentHash,
    profile: options.profile,
    ...(effectiveBackend(options.backend) !== "default"
      ? { backend: effectiveBackend(options.backend) }
      : {}),
    ok: status.success,
    exitCode: status.code,
    ...(status.success ? {} : {
      error: tail.join("\n").trim() || `the chapter exited with code ${status.code}`,
    }),
    finishedAt: new Date().toISOString(),
    seconds: Math.round((performance.now() - started) / 100) / 10,
    dependencies: await readDependencies(`${working}/dependencies.jsonl`),
    outputs: placeOutputs(records, chapter.cells),
  };
  await writeFileAtomic(`${working}/result.json`, `${JSON.stringify(meta, null, 2)}\n`);
  const dir = status.success
    ? cachePath(options.cacheDir, chapter.id, options.key)
    : `${chapterCache}/failed`;
  await removeIfPresent(dir);
  await Deno.rename(working, dir);
  if (status.success) {
    await removeIfPresent(`${chapterCache}/failed`);
    await pruneCache(chapterCache, 6);
  }
  return { dir, meta };
}
