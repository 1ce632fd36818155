/**
 * `deno task serve`: build the book, then serve `_site` with Eleventy's dev server and live
 * reload. Editing a chapter, a library module or an asset rebuilds what changed (re-running a
 * chapter only when its code or imports changed) and reloads the browser.
 *
 * @module
 */

import { type BookOptions, type BookReport, buildBook, failureReport, siteInput } from "./build.ts";
import { discoverChapters } from "./chapters.ts";
import { copyStatic, eleventyFor, writeSources } from "./site.ts";
import { writeFileAtomic } from "../../lib/runtime/files.ts";

/** Options of {@link serveBook}. */
export interface ServeOptions extends BookOptions {
  /** Port of the dev server (default 8080). */
  port?: number;
}

async function refresh(options: BookOptions, report: BookReport): Promise<BookReport> {
  const next = await buildBook({ ...options, site: false });
  const chapters = (await discoverChapters(next.dirs.chaptersDir)).filter((c) =>
    next.chapters.some((r) => r.id === c.id)
  );
  const input = await siteInput(next.dirs, chapters, next.chapters);
  await writeSources(input);
  await copyStatic(input);
  // A changed data file makes Eleventy rebuild every page and reload the browser.
  await writeFileAtomic(
    `${input.buildDir}/_data/build.json`,
    JSON.stringify({ at: new Date().toISOString() }),
  );
  if (!next.ok) console.error(failureReport(next));
  return next ?? report;
}

/** Builds once, then serves with live reload until the process is stopped. */
export async function serveBook(options: ServeOptions = {}): Promise<void> {
  const port = options.port ?? 8080;
  let report = await buildBook(options);
  if (!report.ok) console.error(failureReport(report));
  const chapters = (await discoverChapters(report.dirs.chaptersDir)).filter((c) =>
    report.chapters.some((r) => r.id === c.id)
  );
  const input = await siteInput(report.dirs, chapters, report.chapters);
  const eleventy = eleventyFor(input, "serve");
  await eleventy.init();
  await eleventy.watch();
  await eleventy.serve(port);
  await copyStatic(input);
  console.log(`Serving the book at http://localhost:${port}/ (live reload; Ctrl+C stops)`);

  const { dirs } = report;
  const watched = [dirs.chaptersDir, `${dirs.root}/lib`, dirs.assetsDir];
  const ignored = (path: string) => {
    const name = path.slice(path.lastIndexOf("/") + 1);
    return path.startsWith(`${dirs.frozenDir}/`) || name.startsWith(".") || name.endsWith(".tmp") ||
      name.endsWith("~") || path.includes(".incoming");
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let again = false;
  const rebuild = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      console.log("Change seen: rebuilding…");
      report = await refresh(options, report);
    } catch (error) {
      console.error(`rebuild failed: ${(error as Error).message}`);
    } finally {
      running = false;
      if (again) {
        again = false;
        rebuild();
      }
    }
  };
  const existing: string[] = [];
  for (const path of watched) {
    if (await Deno.stat(path).then(() => true, () => false)) existing.push(path);
  }
  for await (const event of Deno.watchFs(existing, { recursive: true })) {
    if (event.paths.every(ignored)) continue;
    clearTimeout(timer);
    timer = setTimeout(rebuild, 300);
  }
}
