/**
 * What a chapter run read besides its code: the model artefacts it loaded. The book builder
 * sets `BOOK_DEPENDENCIES` to a file; each artefact a run loads appends `{path, sha256}` to it,
 * and the run's stored result is valid only while every one still has that hash.
 *
 * @module
 */

/** The environment variable naming the JSON-lines file of a run's dependencies. */
export const DEPENDENCIES_ENV = "BOOK_DEPENDENCIES";

/** One thing a run read: a path relative to the project root, and the hash of its content. */
export interface Dependency {
  /** The artefact's folder, e.g. `assets/models/emoji16-unet`. */
  path: string;
  /** SHA-256 of its manifest (which holds every file's hash). */
  sha256: string;
}

/** Append a dependency to the running chapter's record (no-op outside the book builder). */
export async function recordDependency(dependency: Dependency): Promise<void> {
  let file: string | undefined;
  try {
    file = Deno.env.get(DEPENDENCIES_ENV) || undefined;
  } catch {
    return;
  }
  if (!file) return;
  await Deno.writeTextFile(file, JSON.stringify(dependency) + "\n", { append: true });
}

/** The dependencies recorded in `file` (none when it is missing), one per path. */
export async function readDependencies(file: string): Promise<Dependency[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const byPath = new Map<string, Dependency>();
  for (const line of text.split("\n")) {
    if (line.trim()) {
      const d = JSON.parse(line) as Dependency;
      byPath.set(d.path, d);
    }
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}
