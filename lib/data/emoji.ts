/**
 * The emoji dataset: Twemoji and Noto Emoji sprites with names and categories.
 *
 * Images come from the sprite sheets of the npm packages `emoji-datasource-twitter` (Twemoji,
 * CC-BY 4.0) and `emoji-datasource-google` (Noto Emoji, Apache-2.0); see `lib/data/attribution.ts`.
 * A sheet is a grid of cells of (size + 2) px with a 1 px border, so the sprite of an entry
 * starts at x = sheet_x·(size + 2) + 1, y = sheet_y·(size + 2) + 1.
 *
 * Each sprite's alpha is composited over a background colour and scaled to [-1, 1]:
 *
 *   c = (α·s + (255 − α)·b) / 255,   x = c / 127.5 − 1.
 *
 * A sheet is decoded once; its cut-out RGBA cells are cached as a binary file under
 * `.cache/emoji/` with a header and checksum, so later loads skip the PNG decode.
 *
 * @module
 */

import { exists, writeFileAtomic } from "../runtime/files.ts";
import { reinstallCommand } from "../runtime/packages.ts";
import { UserError } from "../core/errors.ts";
import * as tf from "@tensorflow/tfjs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { decodePng } from "../core/images.ts";

/** Who drew the images. */
export type EmojiVendor = "twitter" | "google";

/** Sprite sizes the packages ship, in pixels. */
export type EmojiSize = 16 | 20 | 32 | 64;

/** What is known of one image. */
export interface EmojiMeta {
  /** Unicode name, e.g. "HEAVY BLACK HEART"; skin-tone variants append the tone. */
  name: string;
  /** Slack-style short name, e.g. "heart"; skin-tone variants append "::skin-tone-N". */
  shortName: string;
  /** Code points as in emoji.json, upper-case hex joined by "-", e.g. "2764-FE0F". */
  unified: string;
  /** One of the ten Unicode emoji groups, e.g. "Smileys & Emotion". */
  category: string;
  /** The Unicode subgroup, e.g. "face-smiling". */
  subcategory: string;
  /** The image set the picture is from. */
  vendor: EmojiVendor;
}

/** Loaded images with their metadata and class labels. */
export interface EmojiDataset {
  /** Height and width of every image. */
  size: number;
  /** Number of images. */
  count: number;
  /** All images, NHWC RGB float32 in [-1, 1], `count · size · size · 3` values. */
  images: Float32Array;
  /** Metadata of image i at index i. */
  meta: EmojiMeta[];
  /** Class names; label k means `categories[k]`. */
  categories: string[];
  /** Category label of each image, an index into `categories`. */
  labels: Int32Array;
  /** The images (all, or those at `indices`) as a tensor [n, size, size, 3]. */
  toTensor(indices?: number[]): tf.Tensor4D;
}

/** Options of {@link loadEmojiDataset}. */
export interface EmojiDatasetOptions {
  /** Sprite size in px (default 16). */
  size?: EmojiSize;
  /** Image sets to read, in this order (default both: twitter, then google). */
  vendors?: EmojiVendor[];
  /** Colour the sprites' transparency is composited over, 0..255 (default white). */
  background?: [number, number, number];
  /** Also include the skin-tone variants (default false). */
  includeSkinTones?: boolean;
  /**
   * Only these categories, whose order then fixes the labels. Default: every category except
   * "Component" (the bare skin-tone swatches), in Unicode order.
   */
  categories?: string[];
  /** At most this many images, the first in dataset order. */
  limit?: number;
  /** Folder holding the emoji-datasource-* packages (default the repository's node_modules). */
  packageRoot?: string;
  /** Folder for the decoded-sheet cache (default `.cache/emoji` in the repository). */
  cacheDir?: string;
}

interface SheetCells {
  columns: number;
  rows: number;
  /** RGBA of cell (x, y) at ((y · columns + x) · size² · 4). */
  cells: Uint8Array;
}

interface RawEntry {
  name?: string | null;
  short_name?: string;
  unified?: string;
  category?: string;
  subcategory?: string;
  sort_order?: number;
  sheet_x?: number;
  sheet_y?: number;
  skin_variations?: Record<string, RawEntry>;
  [key: string]: unknown;
}

interface Selected {
  meta: EmojiMeta;
  sheetX: number;
  sheetY: number;
}

const SIZES: readonly number[] = [16, 20, 32, 64];
const VENDORS: readonly EmojiVendor[] = ["twitter", "google"];
const CACHE_MAGIC = "EMOJIRGB";
const CACHE_VERSION = 1;
const HEADER_BYTES = 32;
const SKIN_TONES: Record<string, [number, string]> = {
  "1F3FB": [2, "LIGHT SKIN TONE"],
  "1F3FC": [3, "MEDIUM-LIGHT SKIN TONE"],
  "1F3FD": [4, "MEDIUM SKIN TONE"],
  "1F3FE": [5, "MEDIUM-DARK SKIN TONE"],
  "1F3FF": [6, "DARK SKIN TONE"],
};

function packageName(vendor: EmojiVendor): string {
  return `emoji-datasource-${vendor}`;
}

/** The command that restores a vendor's package (lib/runtime/packages.ts). */
function restore(packageRoot: string, vendor: EmojiVendor): string {
  return reinstallCommand(packageRoot, packageName(vendor));
}

async function readEmojiJson(packageRoot: string, vendor: EmojiVendor): Promise<RawEntry[]> {
  const folder = join(packageRoot, packageName(vendor));
  const path = join(folder, "emoji.json");
  if (!(await exists(path))) {
    throw new UserError(
      `The emoji dataset package "${packageName(vendor)}" is not installed (no ${path}). ` +
        `Restore it, in the repository root: ${restore(packageRoot, vendor)}`,
    );
  }
  let entries: unknown;
  try {
    entries = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new UserError(
      `${path} is not valid JSON (${(error as Error).message}); ` +
        `restore the package, in the repository root: ${restore(packageRoot, vendor)}`,
    );
  }
  const valid = Array.isArray(entries) && entries.length > 0 &&
    entries.every((e) =>
      typeof e === "object" && e !== null && typeof e.unified === "string" &&
      typeof e.category === "string" && Number.isInteger(e.sheet_x) &&
      Number.isInteger(e.sheet_y) && typeof e.sort_order === "number"
    );
  if (!valid) {
    throw new UserError(
      `${path} does not hold emoji entries (unified, category, sheet_x, sheet_y, sort_order); ` +
        `restore the package, in the repository root: ${restore(packageRoot, vendor)}`,
    );
  }
  return entries as RawEntry[];
}

/** FNV-1a over 32-bit words: a cheap check that cached bytes are the bytes written. */
function checksum(bytes: Uint8Array): number {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return h >>> 0;
}

function parseCache(bytes: Uint8Array, size: number, sheetBytes: number): SheetCells | null {
  if (bytes.length < HEADER_BYTES || bytes.byteOffset % 4 !== 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  const columns = view.getUint32(16, true), rows = view.getUint32(20, true);
  if (
    magic !== CACHE_MAGIC || view.getUint32(8, true) !== CACHE_VERSION ||
    view.getUint32(12, true) !== size || view.getUint32(24, true) !== sheetBytes ||
    bytes.length !== HEADER_BYTES + columns * rows * size * size * 4
  ) return null;
  const cells = bytes.subarray(HEADER_BYTES);
  if (checksum(cells) !== view.getUint32(28, true)) return null;
  return { columns, rows, cells };
}

async function writeCache(path: string, size: number, sheetBytes: number, sheet: SheetCells) {
  const bytes = new Uint8Array(HEADER_BYTES + sheet.cells.length);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < 8; i++) bytes[i] = CACHE_MAGIC.charCodeAt(i);
  view.setUint32(8, CACHE_VERSION, true);
  view.setUint32(12, size, true);
  view.setUint32(16, sheet.columns, true);
  view.setUint32(20, sheet.rows, true);
  view.setUint32(24, sheetBytes, true);
  view.setUint32(28, checksum(sheet.cells), true);
  bytes.set(sheet.cells, HEADER_BYTES);
  await writeFileAtomic(path, bytes);
}

async function loadSheet(
  packageRoot: string,
  vendor: EmojiVendor,
  size: number,
  cacheDir: string,
): Promise<SheetCells> {
  const sheetPath = join(packageRoot, packageName(vendor), "img", vendor, "sheets", `${size}.png`);
  let sheetBytes: number;
  try {
    sheetBytes = (await Deno.stat(sheetPath)).size;
  } catch {
    throw new UserError(
      `The sprite sheet ${sheetPath} is missing. Restore "${packageName(vendor)}", in the ` +
        `repository root: ${restore(packageRoot, vendor)}`,
    );
  }
  const cachePath = join(cacheDir, `${vendor}-${size}.bin`);
  try {
    const cached = parseCache(await Deno.readFile(cachePath), size, sheetBytes);
    if (cached) return cached;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }

  let decoded;
  try {
    decoded = decodePng(await Deno.readFile(sheetPath));
  } catch (error) {
    throw new UserError(
      `The sprite sheet ${sheetPath} cannot be decoded (${(error as Error).message}); ` +
        `restore it, in the repository root: ${restore(packageRoot, vendor)}`,
    );
  }
  const cell = size + 2;
  if (decoded.width % cell !== 0 || decoded.height % cell !== 0) {
    throw new UserError(
      `The sprite sheet ${sheetPath} is ${decoded.width}×${decoded.height}, not a grid of ` +
        `${cell} px cells; restore it, in the repository root: ${restore(packageRoot, vendor)}`,
    );
  }
  const columns = decoded.width / cell, rows = decoded.height / cell;
  const cells = new Uint8Array(columns * rows * size * size * 4);
  for (let sy = 0; sy < rows; sy++) {
    for (let sx = 0; sx < columns; sx++) {
      const target = (sy * columns + sx) * size * size * 4;
      for (let y = 0; y < size; y++) {
        const source = ((sy * cell + 1 + y) * decoded.width + sx * cell + 1) * 4;
        cells.set(decoded.data.subarray(source, source + size * 4), target + y * size * 4);
      }
    }
  }
  const sheet = { columns, rows, cells };
  try {
    await Deno.mkdir(cacheDir, { recursive: true });
    await writeCache(cachePath, size, sheetBytes, sheet);
  } catch (error) {
    console.warn(`Could not cache the decoded sheet at ${cachePath}: ${(error as Error).message}`);
  }
  return sheet;
}

function select(
  entries: RawEntry[],
  vendor: EmojiVendor,
  wanted: Set<string> | null,
  includeSkinTones: boolean,
): Selected[] {
  const hasImage = `has_img_${vendor}`;
  const out: Selected[] = [];
  const sorted = [...entries].sort((a, b) => a.sort_order! - b.sort_order!);
  for (const e of sorted) {
    const category = e.category!;
    if (wanted ? !wanted.has(category) : category === "Component") continue;
    const meta: EmojiMeta = {
      name: String(e.name ?? e.short_name ?? e.unified),
      shortName: String(e.short_name ?? ""),
      unified: e.unified!,
      category,
      subcategory: String(e.subcategory ?? ""),
      vendor,
    };
    if (e[hasImage] === true) out.push({ meta, sheetX: e.sheet_x!, sheetY: e.sheet_y! });
    if (!includeSkinTones || !e.skin_variations) continue;
    for (const [key, variant] of Object.entries(e.skin_variations)) {
      if (variant[hasImage] !== true) continue;
      const tones = key.split("-").map((code) => SKIN_TONES[code.toUpperCase()]);
      const known = tones.every((t) => t !== undefined);
      out.push({
        meta: {
          ...meta,
          name: `${meta.name}: ${known ? tones.map((t) => t[1]).join(", ") : key}`,
          shortName: `${meta.shortName}${
            known ? tones.map((t) => `::skin-tone-${t[0]}`).join("") : `::${key}`
          }`,
          unified: String(variant.unified),
        },
        sheetX: variant.sheet_x!,
        sheetY: variant.sheet_y!,
      });
    }
  }
  return out;
}

/**
 * Loads the emoji dataset: every emoji with an image, per vendor in the order of `vendors`,
 * then by emoji.json's `sort_order` (Unicode's order); skin-tone variants (when included)
 * follow their base emoji. Labels are categories.
 */
export async function loadEmojiDataset(options: EmojiDatasetOptions = {}): Promise<EmojiDataset> {
  const size = options.size ?? 16;
  if (!SIZES.includes(size)) {
    throw new Error(`Emoji size ${size} is not shipped: choose one of ${SIZES.join(", ")}`);
  }
  const vendors = options.vendors ?? [...VENDORS];
  for (const vendor of vendors) {
    if (!VENDORS.includes(vendor)) {
      throw new Error(`Unknown emoji vendor "${vendor}": choose from ${VENDORS.join(", ")}`);
    }
  }
  if (vendors.length === 0) throw new Error("loadEmojiDataset needs at least one vendor");
  const background = options.background ?? [255, 255, 255];
  if (background.length !== 3 || background.some((c) => !(c >= 0 && c <= 255))) {
    throw new Error(`background must be [r, g, b] with values in 0..255, got [${background}]`);
  }
  const limit = options.limit ?? Infinity;
  if (!(limit >= 0)) throw new Error(`limit must be a non-negative number, got ${limit}`);
  const packageRoot = options.packageRoot ??
    fileURLToPath(new URL("../../node_modules/", import.meta.url));
  const cacheDir = options.cacheDir ??
    fileURLToPath(new URL("../../.cache/emoji/", import.meta.url));

  const perVendor: { vendor: EmojiVendor; entries: RawEntry[] }[] = [];
  for (const vendor of vendors) {
    perVendor.push({ vendor, entries: await readEmojiJson(packageRoot, vendor) });
  }

  // Categories in Unicode order (the smallest sort_order of each), or the order asked for.
  const known = new Map<string, number>();
  for (const e of perVendor[0].entries) {
    known.set(e.category!, Math.min(known.get(e.category!) ?? Infinity, e.sort_order!));
  }
  let categories: string[];
  if (options.categories) {
    categories = [...new Set(options.categories)];
    const unknown = categories.filter((c) => !known.has(c));
    if (unknown.length > 0) {
      throw new Error(
        `Unknown emoji categories ${JSON.stringify(unknown)}: choose from ${
          JSON.stringify([...known.keys()])
        }`,
      );
    }
  } else {
    categories = [...known.keys()].filter((c) => c !== "Component")
      .sort((a, b) => known.get(a)! - known.get(b)!);
  }
  const wanted = options.categories ? new Set(categories) : null;

  const chosen: { vendor: EmojiVendor; items: Selected[] }[] = [];
  let total = 0;
  for (const { vendor, entries } of perVendor) {
    if (total >= limit) break;
    const items = select(entries, vendor, wanted, options.includeSkinTones ?? false)
      .slice(0, limit - total);
    chosen.push({ vendor, items });
    total += items.length;
  }

  const pixels = size * size;
  const images = new Float32Array(total * pixels * 3);
  const meta: EmojiMeta[] = [];
  const labels = new Int32Array(total);
  const labelOf = new Map(categories.map((c, i) => [c, i]));
  const [br, bg, bb] = background;
  for (const { vendor, items } of chosen) {
    if (items.length === 0) continue;
    const sheet = await loadSheet(packageRoot, vendor, size, cacheDir);
    for (const item of items) {
      if (item.sheetX >= sheet.columns || item.sheetY >= sheet.rows) {
        throw new UserError(
          `${item.meta.unified} sits at (${item.sheetX}, ${item.sheetY}) outside the ` +
            `${sheet.columns}×${sheet.rows} sheet of "${
              packageName(vendor)
            }": restore it, in the ` +
            `repository root: ${restore(packageRoot, vendor)}`,
        );
      }
      const n = meta.length;
      const source = (item.sheetY * sheet.columns + item.sheetX) * pixels * 4;
      const target = n * pixels * 3;
      for (let p = 0; p < pixels; p++) {
        const s = source + p * 4, t = target + p * 3;
        const alpha = sheet.cells[s + 3];
        const inverse = 255 - alpha;
        images[t] = (alpha * sheet.cells[s] + inverse * br) / 255 / 127.5 - 1;
        images[t + 1] = (alpha * sheet.cells[s + 1] + inverse * bg) / 255 / 127.5 - 1;
        images[t + 2] = (alpha * sheet.cells[s + 2] + inverse * bb) / 255 / 127.5 - 1;
      }
      labels[n] = labelOf.get(item.meta.category)!;
      meta.push(item.meta);
    }
  }

  return {
    size,
    count: total,
    images,
    meta,
    categories,
    labels,
    toTensor(indices?: number[]): tf.Tensor4D {
      if (!indices) return tf.tensor4d(images, [total, size, size, 3]);
      const values = new Float32Array(indices.length * pixels * 3);
      indices.forEach((index, k) => {
        if (!Number.isInteger(index) || index < 0 || index >= total) {
          throw new Error(`toTensor: index ${index} is outside the dataset's 0..${total - 1}`);
        }
        values.set(images.subarray(index * pixels * 3, (index + 1) * pixels * 3), k * pixels * 3);
      });
      return tf.tensor4d(values, [indices.length, size, size, 3]);
    },
  };
}
