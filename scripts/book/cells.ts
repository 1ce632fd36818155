/**
 * Chapters as cells: the "percent" format of Jupytext and VS Code.
 *
 * Cells are separated by lines `// %%`. A prose cell starts with `// %% [markdown]` and every
 * following line is a `// ` comment holding Markdown; other cells are code. Lines before the first
 * marker form a code cell of their own (usually imports). A code cell that starts with
 * `// %% [setup]` is plumbing (imports, loading, helpers), which the page shows folded. A code
 * cell's marker may label its outputs for cross-references, as Quarto does: `// %% {#fig-alphabar}`
 * names the cell's first figure, `{#fig-a #fig-b #tbl-c}` its first two figures and its first
 * table (see crossrefs.ts). The marker line is not part of the cell's text, so labelling a cell
 * leaves its results valid.
 *
 * @module
 */

/** One cell of a chapter. */
export interface Cell {
  /** Prose (Markdown) or code (TypeScript). */
  kind: "markdown" | "code";
  /** Markdown with the comment markers removed, or the code as written; no blank edges. */
  text: string;
  /** 1-based line of the cell's first line after its marker. */
  startLine: number;
  /** 1-based line of the cell's last line (inclusive). */
  endLine: number;
  /** A code cell marked `[setup]`: shown folded. */
  setup?: boolean;
  /** Labels of the cell's outputs, in order (`fig-…`, `tbl-…`), from `{#…}` on its marker. */
  labels?: string[];
}

const MARKER = /^\/\/ ?%%(\s.*)?$/;

/** Strips a prose line's comment marker: `// text` → `text`, `//` → ``. */
export function uncomment(line: string): string {
  const match = /^\s*\/\/ ?(.*)$/.exec(line);
  return match ? match[1] : line;
}

function trimBlankLines(lines: string[]): string[] {
  let start = 0, end = lines.length;
  while (start < end && lines[start].trim() === "") start++;
  while (end > start && lines[end - 1].trim() === "") end--;
  return lines.slice(start, end);
}

/**
 * Splits a chapter into cells. Empty cells are dropped. Line numbers are those of the file, so
 * that an output made at line L belongs to the code cell with startLine ≤ L ≤ endLine.
 */
export function splitCells(source: string): Cell[] {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  const cells: Cell[] = [];
  let kind: Cell["kind"] = "code";
  let setup = false;
  let labels: string[] = [];
  let body: string[] = [];
  let start = 1;
  const flush = (end: number) => {
    const text = trimBlankLines(kind === "markdown" ? body.map(uncomment) : body).join("\n");
    if (text.trim() === "") return;
    cells.push({
      kind,
      text,
      startLine: start,
      endLine: end,
      ...(setup ? { setup } : {}),
      ...(kind === "code" && labels.length ? { labels } : {}),
    });
  };
  lines.forEach((line, i) => {
    const match = MARKER.exec(line);
    if (!match) {
      body.push(line);
      return;
    }
    flush(i);
    kind = /^\s*\[(markdown|md)\]/i.test(match[1] ?? "") ? "markdown" : "code";
    setup = /\[setup\]/i.test(match[1] ?? "");
    labels = markerLabels(match[1] ?? "");
    body = [];
    start = i + 2;
  });
  flush(lines.length);
  return cells;
}

/**
 * The labels of a cell marker's `{#fig-a #tbl-b}` attribute block (none without one). A word of
 * the block without its `#` is kept as written, `{fig-a}` → `fig-a{`, so that the page's
 * numbering refuses it (crossrefs.ts) instead of losing it.
 */
export function markerLabels(marker: string): string[] {
  const block = /\{([^}]*)\}/.exec(marker);
  return block
    ? block[1].split(/\s+/).filter(Boolean).map((word) =>
      word.startsWith("#") ? word.slice(1) : `${word}{`
    )
    : [];
}

/** The chapter's title: the first `# Title` line of its first prose cell. */
export function chapterTitle(cells: Cell[]): string | undefined {
  const prose = cells.find((cell) => cell.kind === "markdown");
  const match = prose && /^#\s+(.+?)\s*#*\s*$/m.exec(prose.text);
  return match ? match[1] : undefined;
}

/** The index (among code cells only) of the code cell holding `line`, or -1. */
export function codeCellOfLine(cells: Cell[], line: number): number {
  const code = cells.filter((cell) => cell.kind === "code");
  return code.findIndex((cell) => cell.startLine <= line && line <= cell.endLine);
}
