/**
 * Checks a rebuilt chapter against its frozen results: the same outputs in the same order, and
 * each carrying the same result within what a rerun on another CPU may change.
 *
 * - Numbers (in tables, metrics, text and figure markup) agree to their stated precision: one
 *   unit of the last decimal written (rounding may fall either side), or 0.1 % of the value,
 *   whichever is larger; integers (counts, steps) agree exactly. Float sums in another order (another CPU's
 *   kernels, thread count) move the last digits, not the first.
 * - Images and animation frames agree pixel by pixel to a mean absolute difference of at most
 *   2 levels (of 255), with at most 1 % of the values off by more than 64. A sampler amplifies
 *   rounding differences over its steps, so a few pixels of a few samples may differ visibly while
 *   the picture stays the same; a changed model or sampler changes far more than that.
 * - Numbers below 1e-5 in size are float32 rounding errors, which each CPU makes its own: two
 *   such agree.
 * - A figure's markup is compared in two parts: its text (labels, ticks, legends) as above, and
 *   its tags, whose numbers are also allowed half an SVG unit (half a pixel at 1:1, which nobody
 *   sees): another CPU's kernels move a sampled point a fraction of a pixel. Raster images
 *   embedded in a figure (`data:image/png;base64,…`) are compared as images, as above.
 * - Outputs marked as measurements (wall times, speeds) are compared by kind only, and a table's
 *   measured columns (and its caption, which says where they were measured) are left out.
 *
 * @module
 */
import { decodePngFrames } from "../../lib/core/images.ts";
import type { PlacedOutput, ResultMeta } from "./results.ts";

/** One difference between a rebuilt and a frozen result. */
export interface Difference {
  /** Index of the output in the chapter (0-based), or −1 for the chapter as a whole. */
  output: number;
  /** What differs. */
  message: string;
}

/** Limits of {@link compareImages}. */
export const IMAGE_TOLERANCE = { meanAbsolute: 2, outlierLevel: 64, outlierFraction: 0.01 };

const NUMBER = /-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?/gi;

/**
 * The unit of the last digit a number was rounded to: "0.052" → 0.001, "1.5e-3" → 0.0001; 0 for
 * an integer ("120" is a count, and must agree exactly).
 */
function lastDigitUnit(text: string): number {
  const [mantissa, exponent] = text.toLowerCase().split("e");
  if (!mantissa.includes(".") && exponent === undefined) return 0;
  const decimals = mantissa.includes(".") ? mantissa.split(".")[1].length : 0;
  return 10 ** (Number(exponent ?? 0) - decimals);
}

/**
 * Whether two texts say the same to their stated precision: equal once their numbers are set
 * aside, and each pair of numbers within one unit of the last decimal or 0.1 %.
 */
export function sameText(a: string, b: string, absolute = 0): string | null {
  if (a === b) return null;
  const skeleton = (s: string) => s.replace(NUMBER, "#");
  if (skeleton(a) !== skeleton(b)) {
    const at = [...skeleton(a)].findIndex((c, i) => c !== skeleton(b)[i]);
    return `text differs near "${skeleton(a).slice(Math.max(0, at - 30), at + 30)}"`;
  }
  const na = a.match(NUMBER) ?? [];
  const nb = b.match(NUMBER) ?? [];
  for (let i = 0; i < na.length; i++) {
    const x = Number(na[i]);
    const y = Number(nb[i]);
    const unit = Math.max(lastDigitUnit(na[i]), lastDigitUnit(nb[i]));
    const relative = unit === 0 ? 0 : Math.max(unit, 1e-3 * Math.max(Math.abs(x), Math.abs(y)));
    // Below 1e-5 a number is a float32 rounding error (a merge's |Δε|): another CPU's own.
    const tolerance = Math.max(Math.abs(x), Math.abs(y)) < 1e-5
      ? Infinity
      : Math.max(relative, absolute);
    if (!(Math.abs(x - y) <= tolerance * (1 + 1e-9))) return `${na[i]} became ${nb[i]}`;
  }
  return null;
}

/** Whether two PNG (or APNG) files show the same pictures, within {@link IMAGE_TOLERANCE}. */
export function compareImages(a: Uint8Array, b: Uint8Array): string | null {
  const fa = decodePngFrames(a);
  const fb = decodePngFrames(b);
  if (fa.length !== fb.length) return `${fa.length} frames became ${fb.length}`;
  for (let f = 0; f < fa.length; f++) {
    const [x, y] = [fa[f], fb[f]];
    if (x.width !== y.width || x.height !== y.height) {
      return `frame ${f}: ${x.width}×${x.height} became ${y.width}×${y.height}`;
    }
    let total = 0;
    let outliers = 0;
    for (let i = 0; i < x.data.length; i++) {
      const d = Math.abs(x.data[i] - y.data[i]);
      total += d;
      if (d > IMAGE_TOLERANCE.outlierLevel) outliers++;
    }
    const mean = total / x.data.length;
    const fraction = outliers / x.data.length;
    if (mean > IMAGE_TOLERANCE.meanAbsolute || fraction > IMAGE_TOLERANCE.outlierFraction) {
      return `frame ${f}: mean difference ${mean.toFixed(2)} levels, ` +
        `${
          (100 * fraction).toFixed(2)
        } % of values off by more than ${IMAGE_TOLERANCE.outlierLevel}`;
    }
  }
  return null;
}

const EMBEDDED_PNG = /data:image\/png;base64,([A-Za-z0-9+/=]+)/g;

function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * Whether two figures' markups show the same figure: their embedded images within
 * {@link IMAGE_TOLERANCE}, their text by {@link sameText}, and their tags' numbers within half an
 * SVG unit as well (see the module comment).
 */
export function sameFigure(a: string, b: string): string | null {
  const [imagesA, imagesB] = [[...a.matchAll(EMBEDDED_PNG)], [...b.matchAll(EMBEDDED_PNG)]];
  if (imagesA.length !== imagesB.length) {
    return `${imagesA.length} embedded images became ${imagesB.length}`;
  }
  for (let i = 0; i < imagesA.length; i++) {
    const problem = compareImages(decodeBase64(imagesA[i][1]), decodeBase64(imagesB[i][1]));
    if (problem) return `embedded image ${i + 1}: ${problem}`;
  }
  const [x, y] = [a, b].map((m) => m.replace(EMBEDDED_PNG, "data:image/png"));
  const tags = (m: string) => (m.match(/<[^>]*>/g) ?? []).join("");
  const texts = (m: string) => m.replace(/<[^>]*>/g, "\n");
  return sameText(texts(x), texts(y)) ?? sameText(tags(x), tags(y), 0.5);
}

/** A table's data without its measured columns (other outputs' data as they are). */
function unmeasured(data: unknown): unknown {
  const table = data as { rows?: Record<string, unknown>[]; measuredColumns?: string[] } | null;
  if (!table?.rows || !table.measuredColumns) return data ?? null;
  const skip = new Set(table.measuredColumns);
  return table.rows.map((row) =>
    Object.fromEntries(Object.entries(row).filter(([k]) => !skip.has(k)))
  );
}

async function textOf(output: PlacedOutput, dir: string): Promise<string> {
  if (output.inline !== undefined) return output.inline;
  if (output.file) return await Deno.readTextFile(`${dir}/${output.file}`);
  return JSON.stringify(output.data ?? null);
}

/** Where two texts first differ, or null when they are equal. */
function exactText(a: string, b: string): string | null {
  if (a === b) return null;
  const at = [...a].findIndex((c, i) => c !== [...b][i]);
  return `text differs at character ${at}: "${a.slice(Math.max(0, at - 30), at + 30)}"`;
}

/** Whether two files hold the same bytes. */
function exactBytes(a: Uint8Array, b: Uint8Array): string | null {
  if (a.length === b.length && a.every((x, i) => x === b[i])) return null;
  return `the files differ (${a.length} and ${b.length} bytes)`;
}

/**
 * Compares a rebuilt result (in `rebuiltDir`) with the frozen one (in `frozenDir`): within
 * the tolerances of the module comment, or, with `exact`, byte for byte (two runs on the same
 * machine and backend), measured outputs still aside.
 */
export async function compareResults(
  frozen: ResultMeta,
  frozenDir: string,
  rebuilt: ResultMeta,
  rebuiltDir: string,
  options: { exact?: boolean } = {},
): Promise<Difference[]> {
  const text = options.exact ? exactText : sameText;
  const differences: Difference[] = [];
  if (!rebuilt.ok) return [{ output: -1, message: `the chapter failed: ${rebuilt.error}` }];
  const kinds = (m: ResultMeta) => m.outputs.map((o) => o.kind).join(", ");
  if (kinds(frozen) !== kinds(rebuilt)) {
    return [{ output: -1, message: `outputs [${kinds(frozen)}] became [${kinds(rebuilt)}]` }];
  }
  for (let i = 0; i < frozen.outputs.length; i++) {
    const [a, b] = [frozen.outputs[i], rebuilt.outputs[i]];
    if (a.measured || b.measured) continue;
    const where = (message: string) => differences.push({ output: i, message });
    // A table with measured columns says in its caption where it was measured.
    const measuredTable = (a.data as { measuredColumns?: string[] } | undefined)?.measuredColumns;
    const captions = measuredTable ? null : text(a.caption ?? "", b.caption ?? "");
    if (captions) where(`caption: ${captions}`);
    let problem: string | null;
    if (a.kind === "images" || a.kind === "animation") {
      problem = (options.exact ? exactBytes : compareImages)(
        await Deno.readFile(`${frozenDir}/${a.file}`),
        await Deno.readFile(`${rebuiltDir}/${b.file}`),
      );
    } else if (a.kind === "figure") {
      problem = (options.exact ? exactText : sameFigure)(
        await textOf(a, frozenDir),
        await textOf(b, rebuiltDir),
      );
    } else if (a.kind === "widget") {
      problem = text(await textOf(a, frozenDir), await textOf(b, rebuiltDir));
    } else {
      problem = text(JSON.stringify(unmeasured(a.data)), JSON.stringify(unmeasured(b.data)));
    }
    if (problem) where(`${a.kind}: ${problem}`);
  }
  return differences;
}
