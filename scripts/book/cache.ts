/**
 * Cache keys of chapter results.
 *
 * A chapter's result depends on what runs: its code cells, every local module it really imports
 * (Deno's own module graph, `deno info --json`, so that an import inside a doc comment counts for
 * nothing), the npm packages of that graph, the profile and the backend, and the model artefacts
 * it loads (recorded by the run itself, see lib/runtime/dependencies.ts, and checked against the
 * artefacts on disk when the result is reused). Prose is left out on purpose: fixing a typo in a
 * chapter's text must not throw away its results. Outputs are therefore stored against code-cell
 * indices, not file lines.
 *
 *   contentHash = SHA-256(code cells ‖ local modules (path from the book's root, source) ‖ packages)
 *   key         = SHA-256(contentHash ‖ profile ‖ backend)
 *
 * @module
 */

import { sha256Hex } from "../../lib/runtime/files.ts";
import { BACKEND_ENV } from "../../lib/runtime/backend.ts";
import type { Dependency } from "../../lib/runtime/dependencies.ts";
import { splitCells } from "./cells.ts";

/** What a chapter's result depends on. */
export interface Fingerprint {
  /** Hash of code cells, local module sources and package versions. */
  contentHash: string;
  /** Absolute paths of the local modules it imports, transitively (the chapter excluded). */
  modules: string[];
  /** The npm packages of its module graph, with versions (e.g. `katex@0.16.47`). */
  packages: string[];
}

interface ModuleInfo {
  kind: string;
  specifier: string;
  local?: string;
  npmPackage?: string;
  error?: string;
}

/** The modules of `entry`'s graph, as `deno info --json` resolves them with `configPath`. */
async function moduleGraph(entry: string, configPath?: string): Promise<ModuleInfo[]> {
  const args = ["info", "--json", ...(configPath ? ["--config", configPath] : []), entry];
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!output.success) {
    throw new Error(
      `cannot read the module graph of ${entry}: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
  return (JSON.parse(new TextDecoder().decode(output.stdout)) as { modules: ModuleInfo[] })
    .modules;
}

/**
 * Fingerprints the chapter `entry` (an absolute path) from its module graph. Local modules are
 * named by their path from the book's root (the chapter folder's parent), so a copied book hashes
 * alike; imported JSON data counts by its contents.
 */
export async function fingerprint(
  entry: string,
  options: { configPath?: string } = {},
): Promise<Fingerprint> {
  const entrySource = await Deno.readTextFile(entry);
  const code = splitCells(entrySource).filter((cell) => cell.kind === "code").map((c) => c.text);
  const graph = await moduleGraph(entry, options.configPath);
  const missing = graph.filter((m) => m.error);
  if (missing.length > 0) {
    throw new Error(
      `${entry} imports what cannot be loaded: ${missing.map((m) => m.error).join("; ")}`,
    );
  }
  const modules = graph.filter((m) => m.local && m.local !== entry).map((m) => m.local!).sort();
  const packages = [
    ...new Set(graph.filter((m) => m.npmPackage).map((m) => m.npmPackage!.split("_")[0])),
  ].sort();
  const root = entry.split("/").slice(0, -2).join("/");
  const relative = (path: string) => relativePath(root, path);
  const parts = ["code", ...code, "modules"];
  for (const path of modules) parts.push(relative(path), await Deno.readTextFile(path));
  parts.push("packages", ...packages);
  return { contentHash: await sha256Hex(parts.join("\u0000")), modules, packages };
}

function relativePath(from: string, to: string): string {
  const a = from.split("/").filter(Boolean);
  const b = to.split("/").filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => ".."), ...b.slice(i)].join("/");
}

/**
 * The backend a run gets: the one asked for with `--backend`, else `$DIFFUSION_BACKEND`, else
 * "default" (the library's own choice).
 */
export function effectiveBackend(backend: string | undefined): string {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get(BACKEND_ENV) || undefined;
  } catch {
    fromEnv = undefined;
  }
  return backend ?? fromEnv ?? "default";
}

/** The cache key of one result: the content hash, the profile and the backend. */
export async function resultKey(
  contentHash: string,
  profile: string,
  backend: string | undefined,
): Promise<string> {
  return (await sha256Hex(`${contentHash}\u0000${profile}\u0000${effectiveBackend(backend)}`))
    .slice(
      0,
      20,
    );
}

/**
 * The dependencies of a stored result that no longer hold: artefacts whose manifest is missing
 * or has another hash today. Empty when the result is still valid.
 */
export async function staleDependencies(
  root: string,
  dependencies: readonly Dependency[] | undefined,
): Promise<string[]> {
  const stale: string[] = [];
  for (const d of dependencies ?? []) {
    let hash: string | undefined;
    try {
      hash = await sha256Hex(await Deno.readFile(`${root}/${d.path}/manifest.json`));
    } catch {
      hash = undefined;
    }
    if (hash !== d.sha256) stale.push(d.path);
  }
  return stale;
}
