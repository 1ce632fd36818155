/**
 * The book builder: run (or reuse) every chapter, then make the site.
 *
 * For each chapter the result is, in order of preference:
 * 1. without `--profile`: frozen `full` results in `assets/frozen/<id>/` whose content hash
 *    matches (code cells, imported modules, packages), else the `quick` profile;
 * 2. a cached result in `.cache/book/<id>/<key>/` (key = content hash + profile + backend);
 * 3. a fresh run of the chapter in its own process.
 *
 * One failing chapter fails the build, after the others ran; its page shows the partial outputs
 * and the end of its error output.
 *
 * @module
 */

import type { Profile } from "../../lib/book/runtime.ts";
import { type Chapter, discoverChapters } from "./chapters.ts";
import { effectiveBackend, fingerprint, resultKey, staleDependencies } from "./cache.ts";
import {
  compactFrozen,
  quickTimingOf,
  readQuickTiming,
  readResult,
  replaceDirWithCopy,
  type ResultMeta,
  writeQuickTiming,
} from "./results.ts";
import { cachePath, runChapter } from "./run.ts";
import { compareResults, type Difference } from "./verify.ts";
import { chapterPage, type PageContext, pageName } from "./render.ts";
import { buildSite, type MathError, type NavEntry, type SiteInput } from "./site.ts";
import type { UnresolvedReference } from "./crossrefs.ts";

/** Folders the builder reads and writes; all default to the project's own. */
export interface BookDirs {
  /** Project root: holds deno.json, `_site_config.ts` and node_modules. */
  root: string;
  /** Chapter files `NN-name.ts`. */
  chaptersDir: string;
  /** Result cache. */
  cacheDir: string;
  /** Frozen results. */
  frozenDir: string;
  /** Generated Markdown sources. */
  buildDir: string;
  /** The site. */
  siteDir: string;
  /** Layouts, styles, widgets and pages. */
  assetsDir: string;
}

/** Options of {@link buildBook}. */
export interface BookOptions extends Partial<BookDirs> {
  /** Run this profile; unset: frozen full results where they match, else quick. */
  profile?: Profile;
  /** Backend to ask chapters for. */
  backend?: string;
  /** Only (re)run chapters whose id starts with one of these; others come from results on disk. */
  only?: string[];
  /** Copy each chapter's results into the frozen folder (profile defaults to full). */
  freeze?: boolean;
  /**
   * Rerun each chosen chapter in the full profile (whatever is cached) and compare its outputs
   * with its frozen results (scripts/book/verify.ts); differences make the build fail.
   */
  verify?: boolean;
  /** Run chapters that have no stored result (default true); false builds from results on disk only. */
  run?: boolean;
  /** Where progress lines go (default: console.log). */
  log?: (line: string) => void;
  /** Fewer messages. */
  quiet?: boolean;
  /** Make the site (default true). */
  site?: boolean;
}

/** What happened to one chapter. */
export interface ChapterReport {
  /** Its id. */
  id: string;
  /** Its title. */
  title: string;
  /** Where its result came from. */
  origin: "ran" | "cached" | "frozen" | "failed" | "missing";
  /** The result's folder, if any. */
  dir?: string;
  /** The stored result. */
  meta?: ResultMeta;
  /** With `verify`: how the rerun differs from the frozen result (empty: it agrees). */
  differences?: Difference[];
}

/** What the build did. */
export interface BookReport {
  /** True when no chapter failed. */
  ok: boolean;
  /** Every chapter in the book, in order. */
  chapters: ChapterReport[];
  /** The chapters that failed. */
  failures: ChapterReport[];
  /** Absolute path of the site's index.html (absent when no site was made). */
  siteIndex?: string;
  /** Math that KaTeX could not render (the page shows it in red). */
  mathErrors: MathError[];
  /** Cross-references to labels no page of this build holds (the page reads "Figure ??"). */
  unresolved: UnresolvedReference[];
  /** The folders used. */
  dirs: BookDirs;
}

/** The project root: the folder above `scripts/`. */
export function projectRoot(): string {
  return decodeURIComponent(new URL("../../", import.meta.url).pathname).replace(/\/$/, "");
}

function absolute(path: string): string {
  if (path.startsWith("/")) return path.replace(/\/$/, "");
  return `${Deno.cwd()}/${path}`.replace(/\/\.\//g, "/").replace(/\/$/, "");
}

/** The folders to use: the given ones, the rest under the project root. */
export function resolveDirs(options: Partial<BookDirs> = {}): BookDirs {
  const root = absolute(options.root ?? projectRoot());
  return {
    root,
    chaptersDir: absolute(options.chaptersDir ?? `${root}/chapters`),
    cacheDir: absolute(options.cacheDir ?? `${root}/.cache/book`),
    frozenDir: absolute(options.frozenDir ?? `${root}/assets/frozen`),
    buildDir: absolute(options.buildDir ?? `${root}/_book/src`),
    siteDir: absolute(options.siteDir ?? `${root}/_site`),
    assetsDir: absolute(options.assetsDir ?? `${root}/assets`),
  };
}

let setupDone = false;

/** Calls `ensureNativeBackend({ quiet })` from scripts/setup.ts when that file exists. */
export async function ensureBackendSetup(root: string, quiet: boolean): Promise<void> {
  if (setupDone) return;
  setupDone = true;
  const setup = `${root}/scripts/setup.ts`;
  try {
    await Deno.stat(setup);
  } catch {
    return;
  }
  try {
    const module = await import(`file://${setup}`);
    if (typeof module.ensureNativeBackend === "function") {
      await module.ensureNativeBackend({ quiet });
    }
  } catch (error) {
    console.warn(`setup: native backend not prepared (${(error as Error).message}); going on`);
  }
}

interface Plan {
  dirs: BookDirs;
  profile?: Profile;
  backend?: string;
  mayRun: boolean;
  freeze: boolean;
  verify: boolean;
  quiet: boolean;
  log: (line: string) => void;
}

async function resolveChapter(chapter: Chapter, plan: Plan): Promise<ChapterReport> {
  const { dirs } = plan;
  const base = { id: chapter.id, title: chapter.title };
  const print = (line: string) => {
    if (!plan.quiet) plan.log(line);
  };
  const { contentHash } = await fingerprint(chapter.file, {
    configPath: `${dirs.root}/deno.json`,
  });
  const frozenDir = `${dirs.frozenDir}/${chapter.id}`;
  const frozen = await readResult(frozenDir);
  const frozenMatches = frozen?.ok === true && frozen.profile === "full" &&
    frozen.contentHash === contentHash &&
    (frozen.backend ?? "default") === effectiveBackend(plan.backend) &&
    (await staleDependencies(dirs.root, frozen.dependencies)).length === 0;
  const wantsFrozen = plan.profile === undefined ||
    (plan.profile === "full" && !plan.freeze && !plan.verify);
  if (wantsFrozen && frozenMatches) {
    print(`[${chapter.id}] frozen full results`);
    return { ...base, origin: "frozen", dir: frozenDir, meta: frozen };
  }
  const profile: Profile = plan.profile ?? "quick";
  const key = await resultKey(contentHash, profile, plan.backend);
  const cached = cachePath(dirs.cacheDir, chapter.id, key);
  const meta = await readResult(cached);
  let report: ChapterReport;
  if (
    !plan.verify && meta?.ok && meta.key === key &&
    (await staleDependencies(dirs.root, meta.dependencies)).length === 0
  ) {
    print(`[${chapter.id}] cached (${profile} profile)`);
    report = { ...base, origin: "cached", dir: cached, meta };
  } else if (!plan.mayRun) {
    const failed = await readResult(`${dirs.cacheDir}/${chapter.id}/failed`);
    return failed && failed.key === key
      ? { ...base, origin: "failed", dir: `${dirs.cacheDir}/${chapter.id}/failed`, meta: failed }
      : { ...base, origin: "missing" };
  } else {
    await ensureBackendSetup(dirs.root, plan.quiet);
    print(`[${chapter.id}] running (${profile} profile${plan.backend ? `, ${plan.backend}` : ""})`);
    const outcome = await runChapter(chapter, {
      root: dirs.root,
      cacheDir: dirs.cacheDir,
      profile,
      backend: plan.backend,
      contentHash,
      key,
      log: plan.log,
    });
    report = {
      ...base,
      origin: outcome.meta.ok ? "ran" : "failed",
      dir: outcome.dir,
      meta: outcome.meta,
    };
    print(
      outcome.meta.ok
        ? `[${chapter.id}] done in ${outcome.meta.seconds} s`
        : `[${chapter.id}] FAILED (exit code ${outcome.meta.exitCode})`,
    );
  }
  if (plan.verify && report.meta && report.dir) {
    report.differences = frozen
      ? await compareResults(frozen, frozenDir, report.meta, report.dir)
      : [{ output: -1, message: `no frozen result in ${frozenDir}` }];
    print(
      report.differences.length === 0
        ? `[${chapter.id}] agrees with its frozen results`
        : `[${chapter.id}] DIFFERS from its frozen results:\n` +
          report.differences.map((d) => `  output ${d.output + 1}: ${d.message}`).join("\n"),
    );
  }
  if (plan.freeze && report.meta?.ok && report.dir) {
    if (report.meta.profile === "quick") {
      // Frozen outputs are the full profile's; a quick run only adds how long it took.
      await writeQuickTiming(frozenDir, quickTimingOf(report.meta));
      print(
        `[${chapter.id}] its quick profile's ${report.meta.seconds} s recorded in ${frozenDir}`,
      );
    } else {
      const quick = await readQuickTiming(frozenDir, report.meta.contentHash);
      await replaceDirWithCopy(report.dir, frozenDir);
      await compactFrozen(frozenDir);
      if (quick) await writeQuickTiming(frozenDir, quick);
      print(`[${chapter.id}] frozen into ${frozenDir}`);
    }
  }
  return report;
}

/**
 * Builds the book: resolves every chapter's result (frozen, cached or a fresh run), writes the
 * chapter pages and runs the site generator. Never throws for a failing chapter: see `ok`.
 */
export async function buildBook(options: BookOptions = {}): Promise<BookReport> {
  const dirs = resolveDirs(options);
  const log = options.log ?? ((line: string) => console.log(line));
  const quiet = options.quiet ?? false;
  const profile = options.profile ?? (options.freeze || options.verify ? "full" : undefined);
  const all = await discoverChapters(dirs.chaptersDir);
  const selected = options.only
    ? new Set((await discoverChapters(dirs.chaptersDir, options.only)).map((c) => c.id))
    : new Set(all.map((c) => c.id));
  const reports: ChapterReport[] = [];
  const included: Chapter[] = [];
  for (const chapter of all) {
    const isSelected = selected.has(chapter.id);
    const plan: Plan = {
      dirs,
      profile,
      backend: options.backend,
      mayRun: isSelected && options.run !== false,
      freeze: isSelected && options.freeze === true,
      verify: isSelected && options.verify === true,
      quiet,
      log,
    };
    let report = await resolveChapter(chapter, plan);
    if (!isSelected && report.origin === "missing" && profile !== undefined) {
      // A chapter left out by --only shows whatever the default build would reuse.
      report = await resolveChapter(chapter, { ...plan, profile: undefined });
    }
    if (!isSelected && report.origin === "missing") continue;
    reports.push(report);
    included.push(chapter);
  }
  const failures = reports.filter((r) => r.origin === "failed" || (r.differences?.length ?? 0) > 0);
  let siteIndex: string | undefined;
  let mathErrors: MathError[] = [];
  let unresolved: UnresolvedReference[] = [];
  if (options.site !== false) {
    const site = await buildSite(await siteInput(dirs, included, reports));
    siteIndex = site.index;
    ({ mathErrors, unresolved } = site);
    for (const { page, message } of mathErrors) log(`warning: ${page}: KaTeX: ${message}`);
    for (const { page, label } of unresolved) {
      log(
        `warning: ${page}: @${label} points at nothing in this build (a typo, or its chapter did not run)`,
      );
    }
  }
  return {
    ok: failures.length === 0,
    chapters: reports,
    failures,
    siteIndex,
    mathErrors,
    unresolved,
    dirs,
  };
}

/** The site's input for chapters and their results (used by the build and by the dev server). */
export async function siteInput(
  dirs: BookDirs,
  chapters: Chapter[],
  reports: ChapterReport[],
): Promise<SiteInput> {
  const nav: NavEntry[] = chapters.map((c) => ({
    id: c.id,
    number: c.number,
    title: c.title,
    url: pageName(c.id),
  }));
  const pages = new Map<string, string>();
  const outputs = new Map<string, string>();
  const models = new Map<string, string>();
  for (const [i, chapter] of chapters.entries()) {
    const report = reports.find((r) => r.id === chapter.id);
    const link = (entry: NavEntry | undefined) =>
      entry && { title: entry.title, url: entry.url, number: entry.number };
    const meta = report?.meta;
    for (const d of meta?.dependencies ?? []) models.set(modelName(d.path), d.path);
    const context: PageContext = {
      result: meta,
      timings: meta && await profileTimings(`${dirs.frozenDir}/${chapter.id}`, meta),
      models: meta?.dependencies?.map((d) => modelName(d.path)),
      origin: report?.origin ?? "missing",
      outputs: report?.dir ? { dir: report.dir, url: `outputs/${chapter.id}` } : undefined,
      prev: link(nav[i - 1]),
      next: link(nav[i + 1]),
    };
    pages.set(`${chapter.id}.md`, await chapterPage(chapter, context));
    if (report?.dir) outputs.set(chapter.id, report.dir);
  }
  return {
    root: dirs.root,
    assetsDir: dirs.assetsDir,
    buildDir: dirs.buildDir,
    siteDir: dirs.siteDir,
    pages,
    nav,
    outputs,
    models,
  };
}

/** A zoo model's name: the last part of its folder (`assets/models/emoji16-unet`). */
function modelName(path: string): string {
  return path.replace(/\/+$/, "").split("/").at(-1)!;
}

/**
 * How long each profile of a chapter took, as measured: the shown result's own time, the frozen
 * full run's and the recorded quick run's (each only for this version of the chapter).
 */
async function profileTimings(frozenDir: string, meta: ResultMeta) {
  const frozen = meta.profile === "full" ? meta : await readResult(frozenDir);
  const full = frozen?.ok && frozen.profile === "full" && frozen.contentHash === meta.contentHash
    ? frozen.seconds
    : undefined;
  const quick = meta.profile === "quick"
    ? meta.seconds
    : (await readQuickTiming(frozenDir, meta.contentHash))?.seconds;
  return { quick, full };
}

/** A short, readable account of failures: each chapter's id and the end of its error output. */
export function failureReport(report: BookReport): string {
  return report.failures.map((f) => {
    if (f.differences?.length) {
      return `✗ chapter ${f.id} differs from its frozen results:\n` +
        f.differences.map((d) =>
          `    ${d.output < 0 ? "the chapter" : `output ${d.output + 1}`}: ${d.message}`
        ).join("\n");
    }
    const error = (f.meta?.error ?? "no error output").split("\n").map((l) => `    ${l}`).join(
      "\n",
    );
    return `✗ chapter ${f.id} failed (exit code ${f.meta?.exitCode ?? "?"}):\n${error}`;
  }).join("\n\n");
}
