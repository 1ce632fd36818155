/**
 * `deno task serve`: build the book, then serve `_site` with the project's static server and
 * live reload, on 127.0.0.1 unless a host is given. Editing a chapter, a library module or an
 * asset rebuilds the book (re-running a chapter only when its code or imports changed) and
 * reloads the browser; a failed rebuild keeps the last good site served.
 *
 * @module
 */

import { type BookOptions, type BookReport, buildBook, failureReport } from "./build.ts";
import { isLoopbackHost, serveStatic } from "./static_server.ts";

/** Options of {@link serveBook}. */
export interface ServeOptions extends BookOptions {
  /** Interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface). */
  host?: string;
  /** Port of the dev server (default 8080). */
  port?: number;
}

/** Builds the book and its site, and says what failed. */
async function build(options: BookOptions): Promise<BookReport> {
  const report = await buildBook(options);
  if (!report.ok) console.error(failureReport(report));
  return report;
}

/** `host` as it is written in a URL (an IPv6 address in brackets). */
function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** Builds once, then serves with live reload until the process is stopped. */
export async function serveBook(options: ServeOptions = {}): Promise<void> {
  const { host = "127.0.0.1", port = 8080, ...bookOptions } = options;
  const { dirs } = await build(bookOptions);
  const server = serveStatic({ root: dirs.siteDir, hostname: host, port, liveReload: true });
  console.log(
    `Serving the book at http://${urlHost(host)}:${server.addr.port}/ (live reload; Ctrl+C stops)`,
  );
  if (!isLoopbackHost(host)) {
    console.warn(`warning: listening on ${host}: the book is reachable from other machines`);
  }

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
      await build(bookOptions);
      server.reload();
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
