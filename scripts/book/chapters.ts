/**
 * Finding the book's chapters: files `chapters/NN-name.ts`, in the order of NN.
 *
 * @module
 */

import { type Cell, chapterTitle, splitCells } from "./cells.ts";
import { UserError } from "../../lib/core/errors.ts";

/** A chapter's source, split into cells. */
export interface Chapter {
  /** File name without extension, e.g. `01-forward-process`; also its page name. */
  id: string;
  /** NN, the chapter's place in the book. */
  number: number;
  /** Absolute path of the chapter file. */
  file: string;
  /** The file's text. */
  source: string;
  /** Its prose and code cells. */
  cells: Cell[];
  /** The `# Title` of its first prose cell (else a title made from its id). */
  title: string;
}

const CHAPTER_FILE = /^(\d{2,3})-[A-Za-z0-9_-]+\.ts$/;

function titleFromId(id: string): string {
  const words = id.replace(/^\d+-/, "").replace(/[-_]+/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Reads one chapter file. */
export async function readChapter(file: string): Promise<Chapter> {
  const name = file.slice(file.lastIndexOf("/") + 1);
  const id = name.replace(/\.ts$/, "");
  const source = await Deno.readTextFile(file);
  const cells = splitCells(source);
  return {
    id,
    number: Number(/^\d+/.exec(id)?.[0] ?? 0),
    file,
    source,
    cells,
    title: chapterTitle(cells) ?? titleFromId(id),
  };
}

/**
 * The chapters in `dir`, ordered by number. `only` keeps the chapters whose id starts with one
 * of its entries (`["01", "02"]`); a filter that matches nothing is an error listing the ids.
 */
export async function discoverChapters(dir: string, only?: string[]): Promise<Chapter[]> {
  const files: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && CHAPTER_FILE.test(entry.name)) files.push(`${dir}/${entry.name}`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  files.sort();
  const chapters = await Promise.all(files.map(readChapter));
  chapters.sort((a, b) => a.number - b.number || a.id.localeCompare(b.id));
  return only ? selectChapters(chapters, only) : chapters;
}

/** The chapters whose id starts with one of `only`; an error naming the choices if none does. */
export function selectChapters(chapters: Chapter[], only: string[]): Chapter[] {
  const wanted = only.map((s) => s.trim()).filter((s) => s !== "");
  const chosen = chapters.filter((c) => wanted.some((w) => c.id === w || c.id.startsWith(w)));
  const unmatched = wanted.filter((w) => !chapters.some((c) => c.id.startsWith(w)));
  if (unmatched.length > 0) {
    const ids = chapters.map((c) => c.id).join(", ") || "(none)";
    throw new UserError(`no chapter matches ${unmatched.join(", ")}; the chapters are: ${ids}`);
  }
  return chosen;
}
