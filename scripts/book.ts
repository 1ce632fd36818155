/**
 * The book builder.
 *
 *   deno task book [--profile quick|full] [--backend NAME] [--only 01,02] [--freeze|--verify]
 *   deno task serve [--port 8080] [--host 127.0.0.1]   (build, then serve with live reload)
 *
 * Runs every chapter in `chapters/` (or reuses its cached or frozen result), writes the pages to
 * `_book/src/` and the site to `_site/`. Exits non-zero when a chapter fails, after building the
 * others.
 *
 * @module
 */

import { parseBookArgsOrExplain } from "./book/args.ts";
import { buildBook, failureReport } from "./book/build.ts";
import { serveBook } from "./book/serve.ts";
import { endUserErrorsInOneLine } from "../lib/runtime/main.ts";

const USAGE = `Build the book.

  deno task book [--profile quick|full] [--backend NAME] [--only 01,02] [--freeze|--verify]
  deno task serve [--port 8080] [--host 127.0.0.1]

  --profile   quick: tiny models (minutes); full: the published runs. Without it, frozen full
              results are used where they are current, and the quick profile elsewhere.
  --backend   ask chapters for a TensorFlow.js backend (tensorflow, wasm, webgpu, cpu).
  --only      run only these chapters (id prefixes); the others come from stored results.
  --freeze    keep the results in assets/frozen/ for the published book (implies --profile full).
  --verify    rerun the chapters in the full profile from the committed model artefacts and
              check that they reproduce their frozen results (what CI does).
  --serve     serve the site with live reload after building.
  --port      the port to serve on (default 8080).
  --host      the address to listen on (default 127.0.0.1: this machine only); --host 0.0.0.0
              serves the book to other machines too.`;

async function main(): Promise<number> {
  const args = parseBookArgsOrExplain(Deno.args, USAGE);
  if (!args) return 2;
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const options = {
    profile: args.profile,
    backend: args.backend,
    only: args.only,
    freeze: args.freeze,
    verify: args.verify,
    quiet: args.quiet,
  };
  if (args.serve) {
    await serveBook({ ...options, host: args.host, port: args.port });
    return 0;
  }
  const report = await buildBook(options);
  const counts = ["ran", "cached", "frozen", "failed", "missing"]
    .map((origin) => [origin, report.chapters.filter((c) => c.origin === origin).length] as const)
    .filter(([, n]) => n > 0)
    .map(([origin, n]) => `${n} ${origin}`)
    .join(", ");
  console.log(`\nChapters: ${counts || "none found in chapters/"}`);
  if (report.siteIndex) {
    console.log(`The book is at file://${report.siteIndex}`);
    console.log("Serve it with live reload: npx -y deno@2.9.6 task serve");
  }
  if (!report.ok) {
    console.error(`\n${failureReport(report)}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  endUserErrorsInOneLine("book");
  Deno.exit(await main());
}
