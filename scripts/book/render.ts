/**
 * A chapter page as Markdown: prose cells as they are, code cells as fenced TypeScript, and after
 * each code cell the outputs it produced, as HTML blocks (which Markdown passes through).
 *
 * HTML blocks end at a blank line, so the markup written here never contains one, except inside
 * `<figcaption>`, where the blank lines are deliberate: they let the caption be Markdown (with math).
 *
 * @module
 */

import type { Chapter } from "./chapters.ts";
import type { PlacedOutput, ResultMeta } from "./results.ts";
import { ChapterNumbering, type OutputTarget, targetAttributes } from "./crossrefs.ts";

/** Where a page finds a chapter's stored outputs. */
export interface OutputSource {
  /** Folder holding the output files. */
  dir: string;
  /** URL of that folder relative to the page, e.g. `outputs/01-forward-process`. */
  url: string;
}

/** A link to a neighbouring chapter. */
export interface PageLink {
  /** Its title. */
  title: string;
  /** Its page, relative (e.g. `02-noise-schedules.html`). */
  url: string;
  /** Its number. */
  number: number;
}

/** Everything a chapter page shows besides its cells. */
export interface PageContext {
  /** The stored result (absent: the chapter was not run). */
  result?: ResultMeta;
  /** Where its outputs are. */
  outputs?: OutputSource;
  /** Where the result came from: run now, the cache, frozen results, or a failed run. */
  origin?: "ran" | "cached" | "frozen" | "failed" | "missing";
  /** The previous chapter. */
  prev?: PageLink;
  /** The next chapter. */
  next?: PageLink;
  /** Each profile's measured time in seconds, where known (build.ts's profileTimings). */
  timings?: { quick?: number; full?: number };
  /** The zoo models the result loaded, by name (the site publishes `models/<name>.json`). */
  models?: string[];
}

/** Escapes text for HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** Formats a table or metric value: integers as they are, other numbers to 4 significant digits. */
export function formatValue(value: unknown): string {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
    return String(Number(value.toPrecision(4)));
  }
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** The file name the page gives a chapter: `<id>.html`. */
export function pageName(id: string): string {
  return `${id}.html`;
}

function fence(code: string, lang: string): string {
  const longest = Math.max(2, ...[...code.matchAll(/`+/g)].map((m) => m[0].length));
  const ticks = "`".repeat(longest + 1);
  return `${ticks}${lang}\n${code}\n${ticks}`;
}

function noBlankLines(html: string): string {
  return html.replace(/\n\s*\n/g, "\n").trim();
}

/** A figure's caption, led by its number when it has one ("Figure 4.3:"). */
function caption(text: string | undefined, target?: OutputTarget): string {
  const number = target
    ? `<span class="figure-number">${target.name}${text ? ":" : ""}</span>`
    : "";
  const body = [number, text?.trim() ?? ""].filter(Boolean).join(" ");
  return body ? `<figcaption>\n\n${body}\n\n</figcaption>\n` : "";
}

function plainText(markdown: string): string {
  return markdown.replace(/\$+([^$]*)\$+/g, "$1").replace(/[*_`\\]/g, "").trim();
}

/**
 * Display scale of a pixel image: an integer k, at most 12, with width·k ≤ 640 and no larger than
 * needed to reach about 384 px (so a 128 px animation shows at 384 px, a 16 px sprite at 192 px).
 */
export function displayScale(width: number): number {
  const w = Math.max(1, width);
  return Math.max(1, Math.min(12, Math.floor(640 / w), Math.ceil(384 / w)));
}

async function renderOutput(
  output: PlacedOutput,
  source: OutputSource,
  target?: OutputTarget,
): Promise<string> {
  const at = targetAttributes(target);
  const url = output.file ? `${source.url}/${output.file}` : "";
  switch (output.kind) {
    case "figure": {
      const markup = output.inline ?? await Deno.readTextFile(`${source.dir}/${output.file}`);
      return `<figure class="output output-figure"${at}>\n<div class="figure-body">\n${
        noBlankLines(markup)
      }\n</div>\n${caption(output.caption, target)}</figure>`;
    }
    case "images":
    case "animation": {
      const k = displayScale(output.width ?? 64);
      const size = output.width && output.height
        ? ` width="${output.width * k}" height="${output.height * k}"`
        : "";
      const alt = escapeHtml(plainText(output.caption ?? `${output.kind} from the code above`));
      // A grid wider than the column scrolls sideways rather than shrink below its pixels.
      return `<figure class="output output-${output.kind}"${at}>\n<div class="image-scroll">` +
        `<img class="pixelated" src="${escapeHtml(url)}"${size} alt="${alt}" loading="lazy">` +
        `</div>\n${caption(output.caption, target)}</figure>`;
    }
    case "table": {
      const { columns, rows } = output.data as {
        columns: string[];
        rows: Record<string, unknown>[];
      };
      const numeric = columns.map((c) =>
        rows.every((r) => typeof r[c] === "number" || r[c] == null)
      );
      const head = columns.map((c, i) =>
        `<th${numeric[i] ? ' class="num"' : ""}>${escapeHtml(c)}</th>`
      )
        .join("");
      const body = rows.map((row) =>
        `<tr>${
          columns.map((c, i) =>
            `<td${numeric[i] ? ' class="num"' : ""}>${escapeHtml(formatValue(row[c]))}</td>`
          ).join("")
        }</tr>`
      ).join("\n");
      return `<figure class="output output-table"${at}>\n<div class="table-scroll">\n<table>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>\n</div>\n${
        caption(output.caption, target)
      }</figure>`;
    }
    case "metric": {
      const { name, value, unit } = output.data as { name: string; value: unknown; unit?: string };
      const about = output.caption
        ? `\n<div class="metric-caption">${escapeHtml(plainText(output.caption))}</div>`
        : "";
      return `<div class="metric">\n<div class="metric-name">${escapeHtml(name)}</div>\n` +
        `<div class="metric-value">${escapeHtml(formatValue(value))}${
          unit ? `<span class="metric-unit">${escapeHtml(unit)}</span>` : ""
        }</div>${about}\n</div>`;
    }
    case "widget": {
      const { name } = output.data as { name: string };
      const json = (output.inline ?? await Deno.readTextFile(`${source.dir}/${output.file}`)).trim()
        .replace(/</g, "\\u003c").replace(/\n/g, " ");
      return `<figure class="output output-widget"${at}>\n<div class="widget" data-widget="${
        escapeHtml(name)
      }"><script type="application/json">${json}</script><noscript>This interactive figure needs JavaScript.</noscript></div>\n${
        caption(output.caption, target)
      }</figure>`;
    }
    case "code": {
      const { module, code } = output.data as { module: string; code: string };
      const about = output.caption ?? `From \`${module}\`.`;
      return `<div class="output output-code">\n\n${
        fence(code, "ts")
      }\n\n<p class="output-caption">${escapeHtml(plainText(about))}</p>\n</div>`;
    }
    case "text": {
      const text = escapeHtml(String(output.data ?? "")).replace(/\n+$/, "");
      return `<pre class="output output-text">${text}</pre>${
        output.caption
          ? `\n\n<p class="output-caption">${escapeHtml(plainText(output.caption))}</p>`
          : ""
      }`;
    }
  }
  return "";
}

/**
 * Renders a cell's outputs, `targets[i]` numbering the i-th (crossrefs.ts); consecutive metrics
 * share one row of cards.
 */
export async function renderOutputs(
  outputs: PlacedOutput[],
  source: OutputSource,
  targets: (OutputTarget | undefined)[] = [],
): Promise<string> {
  const parts: string[] = [];
  let metrics: string[] = [];
  const flushMetrics = () => {
    if (metrics.length) {
      parts.push(`<div class="output output-metrics">\n${metrics.join("\n")}\n</div>`);
    }
    metrics = [];
  };
  for (const [i, output] of outputs.entries()) {
    const html = await renderOutput(output, source, targets[i]);
    if (output.kind === "metric") {
      metrics.push(html);
    } else {
      flushMetrics();
      parts.push(html);
    }
  }
  flushMetrics();
  return parts.join("\n\n");
}

function yamlValue(value: unknown): string {
  return JSON.stringify(value);
}

function resultNote(context: PageContext): string {
  const result = context.result;
  if (!result || context.origin === "missing") {
    return "This chapter has not been run in this build, so its outputs are missing.";
  }
  const when = result.finishedAt.slice(0, 10);
  const profile = result.profile === "full"
    ? "the <strong>full</strong> profile"
    : "the <strong>quick</strong> profile (tiny models, few steps)";
  const backend = result.backend
    ? ` on the <code>${escapeHtml(result.backend)}</code> backend`
    : "";
  return `Outputs on this page come from ${profile}${backend}, run on ${when} in ${result.seconds} s.`;
}

/** Seconds as a reader says them: "48 s", "7 min 24 s", "1 h 5 min". */
export function spokenDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ""}`;
}

/** The command that reruns a chapter, as a new reader types it (Deno from npm). */
export function runCommand(chapter: Chapter): string {
  return `npx -y deno@2.9.6 task chapter ${chapter.id.split("-")[0]}`;
}

/**
 * The page's "run it yourself" note: the command, how long each profile took when measured, and
 * the zoo models it loads, each linked to its manifest.
 */
export function runNote(chapter: Chapter, context: PageContext): string {
  const { quick, full } = context.timings ?? {};
  const took = (seconds: number | undefined) =>
    seconds === undefined ? "not measured yet" : `${spokenDuration(seconds)} when last measured`;
  const models = (context.models ?? []).map((name) =>
    `<a href="models/${escapeHtml(name)}.json"><code>${escapeHtml(name)}</code></a>`
  );
  const loads = models.length === 0
    ? "It loads no model of the zoo."
    : `It loads the zoo's ${
      models.length === 1 ? models[0] : `${models.slice(0, -1).join(", ")} and ${models.at(-1)}`
    } (each links to its manifest: data, training run, size and hashes).`;
  return `<strong>Run it yourself:</strong> <code>${escapeHtml(runCommand(chapter))}</code> ` +
    `runs the quick profile (${took(quick)}); add <code>--profile full</code> for the ` +
    `book's (${took(full)}). ${loads} The page is the program <code>chapters/${
      escapeHtml(chapter.id)
    }.ts</code>.`;
}

/** What a setup cell does, in a few words for its folded summary: what it imports or loads. */
export function setupSummary(code: string): string {
  const parts: string[] = [];
  if (/^import\b/m.test(code)) parts.push("imports");
  if (/\bload[A-Z]\w*\(/.test(code)) parts.push("loading the models and data");
  if (
    /^(export\s+)?(async\s+)?function\s|^(export\s+)?const\s+\w+\s*=\s*(async\s*)?(\(|\w+\s*=>)/m
      .test(code)
  ) {
    parts.push("helpers");
  }
  return parts.length ? parts.join(", ") : "plumbing";
}

/**
 * The chapter's page as Markdown with front matter: title, number, order, layout, permalink,
 * prev/next links, the widgets it loads, and a note on where its results came from.
 */
export async function chapterPage(chapter: Chapter, context: PageContext): Promise<string> {
  const outputs = context.result?.outputs ?? [];
  const codeCount = chapter.cells.filter((c) => c.kind === "code").length;
  const byCell = new Map<number, PlacedOutput[]>();
  for (const output of outputs) {
    const cell = output.cell >= 0 && output.cell < codeCount ? output.cell : codeCount - 1;
    byCell.set(cell, [...(byCell.get(cell) ?? []), output]);
  }
  // Widgets come from the chapter's outputs, and from its prose, which may place one itself
  // (the live sampler, whose data the build makes rather than the chapter's run).
  const widgets = [
    ...new Set([
      ...outputs.filter((o) => o.kind === "widget").map((o) => (o.data as { name: string }).name),
      ...chapter.cells.filter((c) => c.kind === "markdown")
        .flatMap((c) => [...c.text.matchAll(/data-widget="([a-z0-9-]+)"/g)].map((m) => m[1])),
    ]),
  ];
  const blocks: string[] = [];
  if (context.origin === "failed" && context.result) {
    blocks.push(
      `<div class="callout callout-error">\n<p><strong>This chapter failed to run</strong> (exit code ${context.result.exitCode}). Its outputs below stop where it failed. The end of its error output:</p>\n<pre>${
        escapeHtml(context.result.error ?? "").replace(/\n\s*\n/g, "\n")
      }</pre>\n</div>`,
    );
  }
  let codeIndex = 0;
  const numbering = new ChapterNumbering(chapter.number, `chapters/${chapter.id}.ts`);
  const firstProse = chapter.cells.find((c) => c.kind === "markdown");
  for (const cell of chapter.cells) {
    if (cell.kind === "markdown") {
      // The title is shown by the layout; drop it from the first prose cell.
      const text = cell === firstProse ? cell.text.replace(/^#\s+.+$/m, "").trim() : cell.text;
      if (text) blocks.push(numbering.equations(text));
      continue;
    }
    const lines = cell.text.split("\n").length;
    blocks.push(
      cell.setup
        ? `<details class="cell-code cell-setup">\n<summary>Setup: ${
          setupSummary(cell.text)
        } (${lines} lines)</summary>\n\n${fence(cell.text, "ts")}\n\n</details>`
        : `<div class="cell-code">\n\n${fence(cell.text, "ts")}\n\n</div>`,
    );
    const cellOutputs = byCell.get(codeIndex) ?? [];
    // Labels are checked against what the cell made when it ran to the end.
    const targets = context.outputs
      ? numbering.outputs(
        cellOutputs.map((o) => o.kind),
        cell.labels,
        cell.startLine - 1,
        context.result?.ok === true,
      )
      : [];
    if (cellOutputs.length && context.outputs) {
      blocks.push(
        `<div class="cell-outputs">\n\n${await renderOutputs(
          cellOutputs,
          context.outputs,
          targets,
        )}\n\n</div>`,
      );
    }
    codeIndex++;
  }
  const front = [
    "---",
    `title: ${yamlValue(chapter.title)}`,
    `chapterId: ${yamlValue(chapter.id)}`,
    `chapterNumber: ${chapter.number}`,
    `order: ${chapter.number}`,
    "layout: chapter.njk",
    `permalink: ${yamlValue(pageName(chapter.id))}`,
    "templateEngineOverride: md",
    `prev: ${yamlValue(context.prev ?? null)}`,
    `next: ${yamlValue(context.next ?? null)}`,
    `widgets: ${yamlValue(widgets)}`,
    `resultNote: ${yamlValue(resultNote(context))}`,
    `origin: ${yamlValue(context.origin ?? "missing")}`,
    `sourceFile: ${yamlValue(`chapters/${chapter.id}.ts`)}`,
    `runNote: ${yamlValue(runNote(chapter, context))}`,
    "---",
  ];
  return `${front.join("\n")}\n\n${blocks.join("\n\n")}\n`;
}
