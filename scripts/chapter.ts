/**
 * Runs one chapter the way the book builder does, and stores its result in the builder's cache.
 *
 *   deno task chapter 01 [--profile quick|full] [--backend NAME]
 *
 * The chapter is picked by id prefix; any other option is an error. The next `deno task book`
 * reuses the result. (A chapter trains no `full` model: `deno task train NAME` does.)
 *
 * @module
 */

import { parseBookArgsOrExplain } from "./book/args.ts";
import { ensureBackendSetup, resolveDirs } from "./book/build.ts";
import { discoverChapters } from "./book/chapters.ts";
import { fingerprint, resultKey } from "./book/cache.ts";
import { runChapter } from "./book/run.ts";
import { endUserErrorsInOneLine } from "../lib/runtime/main.ts";

const USAGE = `Run one chapter.

  deno task chapter <id-prefix> [--profile quick|full] [--backend NAME]

  e.g. deno task chapter 04 --profile full`;

async function main(): Promise<number> {
  const args = parseBookArgsOrExplain(Deno.args, USAGE, { command: "chapter" });
  if (!args) return 2;
  if (args.help || args.positional.length === 0) {
    console.log(USAGE);
    return args.help ? 0 : 2;
  }
  if (args.positional.length > 1) {
    console.error(`name one chapter, not ${args.positional.join(", ")}\n\n${USAGE}`);
    return 2;
  }
  const wanted = args.positional[0];
  const dirs = resolveDirs();
  let chapters;
  try {
    chapters = await discoverChapters(dirs.chaptersDir, [wanted]);
  } catch (error) {
    console.error((error as Error).message);
    return 2;
  }
  if (chapters.length > 1) {
    console.error(`"${wanted}" matches ${chapters.map((c) => c.id).join(", ")}: be more specific`);
    return 2;
  }
  const chapter = chapters[0];
  const profile = args.profile ?? "quick";
  await ensureBackendSetup(dirs.root, args.quiet);
  const { contentHash } = await fingerprint(chapter.file, {
    configPath: `${dirs.root}/deno.json`,
  });
  const key = await resultKey(contentHash, profile, args.backend);
  console.log(
    `Running ${chapter.id} (${profile} profile${args.backend ? `, ${args.backend}` : ""})`,
  );
  const outcome = await runChapter(chapter, {
    root: dirs.root,
    cacheDir: dirs.cacheDir,
    profile,
    backend: args.backend,
    contentHash,
    key,
    prefix: "",
  });
  const count = outcome.meta.outputs.length;
  if (!outcome.meta.ok) {
    console.error(
      `\n✗ ${chapter.id} failed (exit code ${outcome.meta.exitCode}) after ${count} outputs`,
    );
    console.error(`  its partial outputs are in ${outcome.dir}`);
    return 1;
  }
  console.log(
    `\n✓ ${chapter.id}: ${count} outputs in ${outcome.meta.seconds} s, stored in ${outcome.dir}`,
  );
  console.log("  Build the book with: npx -y deno@2.9.6 task book");
  return 0;
}

if (import.meta.main) {
  endUserErrorsInOneLine("chapter");
  Deno.exit(await main());
}
