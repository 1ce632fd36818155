/**
 * Cache keys of chapter results.
 *
 * A chapter's result depends on what runs: its code cells, every local module it imports
 * (transitively), the npm packages those modules name, the profile and the backend. Prose is
 * left out on purpose: fixing a typo in a chapter's text must not throw away hours of `full`
 * training. Outputs are therefore stored against code-cell indices, not file lines.
 *
 *   contentHash = SHA-256(code cells ‖ local module sources ‖ resolved package specifiers)
 *   key         = SHA-256(contentHash ‖ profile ‖ backend)
 *
 * @module
 */

import { splitCells } from "./cells.ts";

/** An import map: bare specifier (or prefix ending in "/") → target. */
export type ImportMap = Record<string, string>;

/** What a chapter's result depends on. */
export interface Fingerprint {
  /** Hash of code cells, local module sources and package versions. */
  contentHash: string;
  /** Absolute paths of the local modules it imports, transitively (the chapter excluded). */
  modules: string[];
  /** The packages named, as resolved through the import map (e.g. `npm:katex@0.16.47`). */
  packages: string[];
}

/** Hex SHA-256 of a string. */
export async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The module specifiers a TypeScript source names: `import … from "x"`, `export … from "x"`,
 * `import "x"` and `import("x")` with a literal string.
 */
export function importSpecifiers(source: string): string[] {
  const found = new Set<string>();
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^'"`;]*?\bfrom\s*(['"])([^'"]+)\1/g,
    /\bimport\s*(['"])([^'"]+)\1/g,
    /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) found.add(match[2]);
  }
  return [...found];
}

/** Resolves a bare specifier through an import map (exact key, else longest "prefix/" key). */
export function resolveBare(specifier: string, importMap: ImportMap): string {
  if (importMap[specifier]) return importMap[specifier];
  let best = "";
  for (const key of Object.keys(importMap)) {
    if (specifier.startsWith(key.endsWith("/") ? key : key + "/") && key.length > best.length) {
      best = key;
    }
  }
  if (!best) return specifier;
  return importMap[best] + specifier.slice(best.length);
}

/** Reads the "imports" map of a deno.json (empty when the file is missing). */
export async function readImportMap(configPath: string): Promise<ImportMap> {
  try {
    const config = JSON.parse(await Deno.readTextFile(configPath));
    return (config.imports ?? {}) as ImportMap;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new Error(`cannot read the import map in ${configPath}: ${(error as Error).message}`);
  }
}

function isLocal(specifier: string): boolean {
  return specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("file:");
}

/**
 * Walks the local module graph from `entry` (an absolute path) and fingerprints it. Local
 * modules are relative or file: specifiers ending in .ts/.js/.mjs/.tsx, or .json (imported
 * data, whose contents count too); others are packages.
 */
export async function fingerprint(entry: string, importMap: ImportMap): Promise<Fingerprint> {
  const entrySource = await Deno.readTextFile(entry);
  const code = splitCells(entrySource).filter((cell) => cell.kind === "code").map((c) => c.text);
  const sources = new Map<string, string>();
  const packages = new Set<string>();
  const pending: Array<{ file: string; source: string }> = [{ file: entry, source: entrySource }];
  while (pending.length > 0) {
    const { file, source } = pending.pop()!;
    for (const specifier of importSpecifiers(source)) {
      if (!isLocal(specifier)) {
        packages.add(resolveBare(specifier, importMap));
        continue;
      }
      const url = new URL(specifier, `file://${file}`);
      const path = decodeURIComponent(url.pathname);
      if (!/\.(m?[jt]sx?|json)$/.test(path) || path === entry || sources.has(path)) continue;
      let text: string;
      try {
        text = await Deno.readTextFile(path);
      } catch {
        text = "\u0000missing";
      }
      sources.set(path, text);
      // A JSON module (benchmark results, say) is data: its bytes count, it imports nothing.
      if (!path.endsWith(".json")) pending.push({ file: path, source: text });
    }
  }
  const modules = [...sources.keys()].sort();
  const parts = [
    "code",
    ...code,
    "modules",
    // Modules are named by file name under their folder, so a copied tree hashes alike.
    ...modules.flatMap((path) => [path.split("/").slice(-2).join("/"), sources.get(path)!]),
    "packages",
    ...[...packages].sort(),
  ];
  return {
    contentHash: await sha256(parts.join("\u0000")),
    modules,
    packages: [...packages].sort(),
  };
}

/** The cache key of one result: the content hash, the profile and the backend. */
export async function resultKey(
  contentHash: string,
  profile: string,
  backend: string | undefined,
): Promise<string> {
  return (await sha256(`${contentHash}\u0000${profile}\u0000${backend ?? "default"}`)).slice(0, 20);
}
