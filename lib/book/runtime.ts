/**
 * The book runtime: what a chapter calls to show a result on its page.
 *
 * A chapter is a literate program; each call here records one output (a figure, an image grid,
 * an animation, a table, a metric, a widget or a block of text) together with the source line
 * that produced it. The book builder places every output right after the code cell holding that
 * line, as a notebook would. The line is the outermost stack frame in the chapter's own file
 * (`Deno.mainModule`), which is the top-level statement running, so an output made inside a helper
 * function defined in an earlier cell still lands after the cell that called the helper.
 *
 * Outputs go to `$BOOK_OUTPUT_DIR`, else `_book/outputs/<chapterId>/`. After each output the
 * manifest `outputs.json` (a list of {@link OutputRecord}) is rewritten atomically (temporary
 * file, then rename), so a chapter that crashes half-way still leaves a valid manifest.
 *
 * ```ts
 * import { book } from "./runtime.ts";
 * const steps = book.pick({ quick: 200, full: 20_000 });
 * await book.metric("loss", 0.031);
 * ```
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";
import type { PlotOptions } from "@observablehq/plot";
import {
  encodeAnimation,
  encodePng,
  type ImageBatch,
  imageGrid,
  type RgbaImage,
  toRgbaImages,
} from "../core/images.ts";
import { writeFileAtomic } from "../runtime/files.ts";
import { parseOptions, type Profile } from "../runtime/options.ts";
import { endUserErrorsInOneLine } from "../runtime/main.ts";

export type { Profile };

/** The kinds of output a chapter can show. */
export type OutputKind =
  | "figure"
  | "images"
  | "animation"
  | "table"
  | "metric"
  | "widget"
  | "text"
  | "code";

/** One entry of `outputs.json`: an output and the chapter line that made it. */
export interface OutputRecord {
  /** 1-based line in the chapter file of the call that made it (0 when unknown). */
  line: number;
  /** What the output is. */
  kind: OutputKind;
  /** File holding it, relative to the output directory (figures, images, animations, widgets). */
  file?: string;
  /** Caption, Markdown with $…$ math. */
  caption?: string;
  /** Inline data: table rows, metric value, widget name, text. */
  data?: unknown;
  /** Pixel width of an image or animation. */
  width?: number;
  /** Pixel height of an image or animation. */
  height?: number;
  /** Set for a measurement of the machine that ran the chapter (see {@link CaptionOptions}). */
  measured?: boolean;
}

/** Options every output takes. */
export interface CaptionOptions {
  /** Caption shown under the output, Markdown with $…$ math. */
  caption?: string;
  /**
   * The output is a measurement of this machine (a wall time, a speed): a rebuild elsewhere
   * gives other values, so comparisons of a rebuilt book with its frozen results skip it.
   */
  measured?: boolean;
}

/** Options of {@link book.images}. */
export interface ImagesOptions extends CaptionOptions {
  /** Images per row (default ⌈√n⌉). */
  columns?: number;
  /** Integer upscale written into the PNG (default 1; the page upscales crisply anyway). */
  scale?: number;
  /** Gap between images in pixels (default 1). */
  padding?: number;
}

/** Options of {@link book.animation}. */
export interface AnimationOutputOptions extends CaptionOptions {
  /** Time each frame shows, in milliseconds (default 100). */
  delayMs?: number;
  /** Play forever (default true). */
  loop?: boolean;
}

/** Options of {@link book.metric}. */
export interface MetricOptions extends CaptionOptions {
  /** Unit shown after the value, e.g. "s" or "bits/dim". */
  unit?: string;
}

/** Options of {@link book.table}. */
export interface TableOptions extends CaptionOptions {
  /** Columns in order (default: the keys of the rows, in order of first appearance). */
  columns?: string[];
  /** Columns that are measurements of the machine (wall times), skipped by comparisons. */
  measuredColumns?: string[];
}

const PROFILES: readonly Profile[] = ["quick", "full"];
const PROFILE_USAGE = "use --profile quick (tiny models) or --profile full (the book's runs)";

function envValue(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

const CHAPTER_USAGE = "a chapter takes --profile quick|full and --backend NAME, e.g. " +
  "deno task chapter 04 --profile full";

/** A chapter's own options, strictly: anything else is an error before the chapter runs. */
function readChapterOptions(): { profile: Profile; backend?: string } {
  const { values } = parseOptions(Deno.args, {
    profile: { type: "string" },
    backend: { type: "string" },
  }, CHAPTER_USAGE);
  const profile = values.profile ?? envValue("BOOK_PROFILE") ?? "quick";
  if (!(PROFILES as readonly string[]).includes(profile)) {
    throw new Error(`unknown profile "${profile}": ${PROFILE_USAGE}`);
  }
  return { profile: profile as Profile, backend: values.backend ?? envValue("BOOK_BACKEND") };
}

function fileName(url: string): string {
  const path = decodeURIComponent(new URL(url).pathname);
  return path.slice(path.lastIndexOf("/") + 1);
}

function readChapterId(): string {
  return envValue("BOOK_CHAPTER_ID") ?? fileName(Deno.mainModule).replace(/\.[cm]?[jt]sx?$/, "");
}

function outputDirectory(chapterId: string): string {
  const fromEnv = envValue("BOOK_OUTPUT_DIR");
  if (fromEnv) return fromEnv;
  const root = new URL("../../", import.meta.url);
  const base = root.protocol === "file:" ? decodeURIComponent(root.pathname) : "./";
  return `${base}_book/outputs/${chapterId}`;
}

/**
 * The line of the chapter that is running: the outermost stack frame in `Deno.mainModule`.
 * Frames look like `at fn (file:///…/chapter.ts:12:3)` or `at async file:///…/chapter.ts:40:1`.
 */
export function callSiteLine(
  stack: string | undefined,
  mainModule: string = Deno.mainModule,
): number {
  if (!stack) return 0;
  let line = 0;
  for (const frame of stack.split("\n")) {
    const at = frame.lastIndexOf(mainModule + ":");
    if (at < 0) continue;
    const match = /^:(\d+):\d+\)?\s*$/.exec(frame.slice(at + mainModule.length));
    if (match) line = Number(match[1]);
  }
  return line;
}

function captureLine(): number {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = Infinity;
  const stack = new Error().stack;
  Error.stackTraceLimit = limit;
  return callSiteLine(stack);
}

function jsonSafe(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_key, v) => {
      if (typeof v === "number" && !Number.isFinite(v)) return String(v);
      if (typeof v === "bigint") return v.toString();
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        return Array.from(v as unknown as ArrayLike<number>);
      }
      return v;
    }),
  );
}

/**
 * The source of the exported declaration `name` in `source`, with the doc comment above it: from
 * the comment to the first line that closes the declaration at column 0.
 */
export function exportedSource(source: string, name: string, module = "the module"): string {
  const lines = source.split("\n");
  const declaration = new RegExp(
    `^export (?:async )?(?:function|class|const|interface|type) ${name}\\b`,
  );
  const at = lines.findIndex((l) => declaration.test(l));
  if (at < 0) throw new Error(`book.listing: ${module} exports no "${name}"`);
  let start = at;
  if (lines[at - 1]?.trim() === "*/") {
    while (start > 0 && !lines[start - 1].trimStart().startsWith("/**")) start--;
    start--;
  }
  // A one-line declaration ends on its own line; a block ends at the first "}" in column 0.
  let end = at;
  if (!/;$/.test(lines[at])) {
    while (end < lines.length - 1 && !/^}/.test(lines[end])) end++;
  }
  return lines.slice(start, end + 1).join("\n");
}

function isRgbaImages(value: unknown): value is RgbaImage[] {
  return Array.isArray(value) &&
    value.every((v) => v && typeof v.width === "number" && v.data instanceof Uint8Array);
}

class BookRuntime {
  /** The profile this run uses: `--profile`, else `$BOOK_PROFILE`, else `quick`. */
  readonly profile: Profile;
  /** The chapter's id, its file name without extension (e.g. `01-forward-process`). */
  readonly chapterId: string;
  /** The backend asked for with `--backend NAME` (or `$BOOK_BACKEND`), if any. */
  readonly backend: string | undefined;
  /** Where outputs are written. */
  readonly outputDir: string;
  /** What has been recorded so far, in call order. */
  readonly records: OutputRecord[] = [];

  #queue: Promise<void> = Promise.resolve();
  #started = false;
  #count = 0;
  #verbose: boolean;

  constructor() {
    let options: ReturnType<typeof readChapterOptions>;
    try {
      options = readChapterOptions();
    } catch (error) {
      // A chapter is a program: a wrong option ends it before anything runs, in one line.
      console.error(`${readChapterId()}: ${(error as Error).message}`);
      Deno.exit(2);
    }
    this.profile = options.profile;
    this.chapterId = readChapterId();
    this.backend = options.backend;
    this.outputDir = outputDirectory(this.chapterId);
    let terminal = false;
    try {
      terminal = Deno.stdout.isTerminal();
    } catch {
      terminal = false;
    }
    this.#verbose = terminal || envValue("BOOK_PROGRESS") === "1";
  }

  /**
   * The value for the running profile: `pick({ quick: 200, full: 20_000 })` gives 200 under
   * `--profile quick`.
   */
  pick<T>(values: Record<Profile, T>): T {
    return values[this.profile];
  }

  /**
   * A figure: an SVG string, or Observable Plot options rendered with `plotToSvg`.
   * Plot figures inherit the page's text colour, so they follow the light or dark theme.
   */
  figure(svgOrPlot: string | PlotOptions, options: CaptionOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(line, "figure", options, async (index) => {
      let markup: string;
      if (typeof svgOrPlot === "string") {
        markup = svgOrPlot.trim();
      } else {
        const { plotToSvg } = await import("./plot.ts");
        markup = plotToSvg(svgOrPlot);
      }
      if (!/<svg[\s>]/i.test(markup)) {
        throw new Error(
          "book.figure needs SVG markup (a string containing <svg …>) or Observable Plot options",
        );
      }
      const ext = markup.startsWith("<svg") ? "svg" : "html";
      const file = `${index}-figure.${ext}`;
      await writeFileAtomic(`${this.outputDir}/${file}`, markup);
      return { file };
    });
  }

  /**
   * A grid of images, written as one PNG. Accepts a tensor [n, h, w, c] or batch with values
   * in [-1, 1] (byte = clip(round((x + 1) · 127.5), 0, 255)), or RGBA images.
   */
  images(
    input: tf.Tensor4D | ImageBatch | RgbaImage[],
    options: ImagesOptions = {},
  ): Promise<OutputRecord> {
    const line = captureLine();
    // Tensors are read before returning control, so a caller may dispose them right after.
    const pixels = isRgbaImages(input) ? Promise.resolve(input) : toRgbaImages(input);
    return this.#record(line, "images", options, async (index) => {
      const grid = imageGrid(await pixels, {
        columns: options.columns,
        scale: options.scale,
        padding: options.padding,
      });
      const file = `${index}-images.png`;
      await writeFileAtomic(`${this.outputDir}/${file}`, encodePng(grid));
      return { file, width: grid.width, height: grid.height };
    });
  }

  /** An animation of equal-sized frames, written as GIF or animated PNG, whichever is smaller. */
  animation(frames: RgbaImage[], options: AnimationOutputOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(line, "animation", options, async (index) => {
      if (!isRgbaImages(frames) || frames.length === 0) {
        throw new Error(
          "book.animation needs a non-empty list of RgbaImage frames (see toRgbaImages and imageGrid in lib/core/images.ts)",
        );
      }
      const { bytes, format } = encodeAnimation(frames, {
        delayMs: options.delayMs,
        loop: options.loop,
      });
      const file = `${index}-animation.${format}`;
      await writeFileAtomic(`${this.outputDir}/${file}`, bytes);
      return { file, width: frames[0].width, height: frames[0].height };
    });
  }

  /** A table: one row per object, one column per key. */
  table(rows: Record<string, unknown>[], options: TableOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(line, "table", options, () => {
      if (!Array.isArray(rows)) throw new Error("book.table needs an array of row objects");
      const columns = options.columns ??
        [...new Set(rows.flatMap((row) => Object.keys(row)))];
      const measured = options.measuredColumns?.length
        ? { measuredColumns: options.measuredColumns }
        : {};
      return Promise.resolve({ data: { columns, rows: jsonSafe(rows), ...measured } });
    });
  }

  /** A single number (or short string) with a name and optional unit, shown as a card. */
  metric(name: string, value: number | string, options: MetricOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(line, "metric", options, () => {
      if (typeof value !== "number" && typeof value !== "string") {
        throw new Error(`book.metric("${name}") needs a number or a string, got ${typeof value}`);
      }
      return Promise.resolve({ data: jsonSafe({ name, value, unit: options.unit }) });
    });
  }

  /**
   * An interactive browser widget: the page loads `assets/widgets/<name>.js` and hands it
   * `data` (JSON) inside `<div class="widget" data-widget="<name>">`.
   */
  widget(name: string, data: unknown, options: CaptionOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(line, "widget", options, async (index) => {
      if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) {
        throw new Error(`widget name "${name}" must be lower-case letters, digits and dashes`);
      }
      const script = new URL(`../../assets/widgets/${name}.js`, import.meta.url);
      if (script.protocol === "file:") {
        try {
          await Deno.stat(script);
        } catch {
          throw new Error(
            `no widget "${name}": expected its script at assets/widgets/${name}.js`,
          );
        }
      }
      const file = `${index}-widget-${name}.json`;
      await writeFileAtomic(`${this.outputDir}/${file}`, JSON.stringify(jsonSafe(data)));
      return { file, data: { name } };
    });
  }

  /** A block of preformatted text, e.g. a model summary. */
  text(content: string, options: CaptionOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(
      line,
      "text",
      options,
      () => Promise.resolve({ data: String(content) }),
    );
  }

  /**
   * A listing of library code the chapter teaches: the exported function, class or constant
   * `name` of `module` (a path from the project root, e.g. `lib/training/objective.ts`), with its
   * doc comment, as the file has it today.
   */
  listing(module: string, name: string, options: CaptionOptions = {}): Promise<OutputRecord> {
    const line = captureLine();
    return this.#record(line, "code", options, async () => {
      const root = new URL("../../", import.meta.url);
      const source = await Deno.readTextFile(new URL(module, root));
      return { data: { module, name, language: "ts", code: exportedSource(source, name, module) } };
    });
  }

  #record(
    line: number,
    kind: OutputKind,
    options: string | undefined | CaptionOptions,
    make: (index: string) => Promise<Partial<OutputRecord>>,
  ): Promise<OutputRecord> {
    const index = String(++this.#count).padStart(3, "0");
    const { caption, measured } = typeof options === "object"
      ? options
      : { caption: options, measured: false };
    const done = this.#queue.then(async () => {
      await this.#start();
      const record: OutputRecord = { line, kind };
      if (caption !== undefined) record.caption = caption;
      if (measured) record.measured = true;
      Object.assign(record, await make(index));
      this.records.push(record);
      await writeFileAtomic(
        `${this.outputDir}/outputs.json`,
        JSON.stringify(this.records, null, 1),
      );
      if (this.#verbose) {
        const what = record.file ?? JSON.stringify(record.data).slice(0, 60);
        const about = caption ? `: ${caption.slice(0, 60)}` : "";
        console.log(`  ↳ ${kind} ${what} (line ${line})${about}`);
      }
      return record;
    });
    this.#queue = done.then(() => {}, () => {});
    return done;
  }

  async #start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    await Deno.mkdir(this.outputDir, { recursive: true });
    for await (const entry of Deno.readDir(this.outputDir)) {
      if (entry.isFile && (/^\d{3}-/.test(entry.name) || entry.name === "outputs.json")) {
        await Deno.remove(`${this.outputDir}/${entry.name}`);
      }
    }
  }
}

export type { BookRuntime };

/**
 * The book runtime of the running chapter. Each output method records
 * `{ line, kind, file?, caption?, data? }` in `outputs.json`; the builder shows it after the
 * code cell containing `line`.
 */
export const book: BookRuntime = new BookRuntime();
endUserErrorsInOneLine(book.chapterId);
