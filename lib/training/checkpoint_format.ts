/**
 * The checkpoint format: a model's weights, EMA weights, optimizer state, step, RNG state and
 * configuration in one file, checked when read, and the assignment of its tensors to a
 * network's variables. No Deno or Node API (the browser reads the book's live models with it);
 * files are written and read by lib/training/checkpoint.ts.
 *
 * File layout (little-endian):
 *
 *   "DIFFCKPT" (8 bytes) · header length H (uint32) · header (H bytes of JSON, UTF-8)
 *   · zero padding to a multiple of 8 · payload (each tensor float32 or float16, padded to 8)
 *   · CRC-32 of everything before it (uint32)
 *
 * The header names every tensor with its shape, dtype, offset and length, and carries the
 * step, the model's configuration and any JSON state (training configuration, RNG states).
 * Tensor names are grouped by prefix: `params/…`, `ema/…`, `buffers/…`, `emaBuffers/…`,
 * `optimizer/m/…`, `optimizer/v/…`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { NamedVariable } from "../core/nn/layers.ts";
import type { ModelConfigBase } from "../core/models/mod.ts";
import { UserError } from "../core/errors.ts";

const MAGIC = "DIFFCKPT";
const FORMAT_VERSION = 1;

/** One stored tensor: its shape and float32 values. */
export interface CheckpointTensor {
  /** Shape. */
  shape: number[];
  /** Values (float16 files are widened to float32 when read). */
  values: Float32Array;
}

/** Everything a checkpoint holds. */
export interface Checkpoint {
  /** The optimisation step the state belongs to (steps completed). */
  step: number;
  /** The network's configuration (rebuilds it with `createModel`). */
  modelConfig: ModelConfigBase;
  /** Any JSON state: training configuration, RNG states, last loss, … */
  state: Record<string, unknown>;
  /** Named tensors (see the module comment for the prefixes). */
  tensors: Map<string, CheckpointTensor>;
}

/** Options of {@link encodeCheckpoint} and {@link saveCheckpoint}. */
export interface SaveOptions {
  /**
   * Storage type of the payload (default float32). float16 halves the size but rounds every
   * value, so a resumed run no longer matches an uninterrupted one bit for bit.
   */
  dtype?: "float32" | "float16";
}

interface TensorEntry {
  name: string;
  shape: number[];
  dtype: "float32" | "float16";
  offset: number;
  byteLength: number;
}

/** The JSON header of a checkpoint file. */
export interface CheckpointHeader {
  format: "diffusion-checkpoint";
  version: number;
  step: number;
  modelConfig: ModelConfigBase;
  state: Record<string, unknown>;
  tensors: TensorEntry[];
  payloadBytes: number;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, the one of zip and PNG) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half precision bits of a float32 value, rounding to nearest even. */
function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // Inf, NaN
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow → ±0
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    return sign | (half + (rest > midpoint || (rest === midpoint && (half & 1)) ? 1 : 0));
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++;
  e = half >>> 10;
  return sign | (e >= 0x1f ? 0x7c00 : half);
}

/** float32 value of IEEE half precision bits. */
function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const pad8 = (n: number) => (n + 7) & ~7;

/** Serialise a checkpoint to bytes (see the module comment for the layout). */
export function encodeCheckpoint(checkpoint: Checkpoint, options: SaveOptions = {}): Uint8Array {
  const dtype = options.dtype ?? "float32";
  const width = dtype === "float32" ? 4 : 2;
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, t] of checkpoint.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.values.length) {
      throw new Error(
        `encodeCheckpoint: tensor "${name}" has ${t.values.length} values but shape [${t.shape}].`,
      );
    }
    entries.push({ name, shape: t.shape, dtype, offset, byteLength: size * width });
    offset += pad8(size * width);
  }
  const header: CheckpointHeader = {
    format: "diffusion-checkpoint",
    version: FORMAT_VERSION,
    step: checkpoint.step,
    modelConfig: checkpoint.modelConfig,
    state: checkpoint.state,
    tensors: entries,
    payloadBytes: offset,
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const payloadStart = pad8(12 + headerBytes.length);
  const total = payloadStart + offset + 4;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  view.setUint32(8, headerBytes.length, true);
  bytes.set(headerBytes, 12);
  for (const entry of entries) {
    const values = checkpoint.tensors.get(entry.name)!.values;
    const at = payloadStart + entry.offset;
    if (dtype === "float32") {
      for (let i = 0; i < values.length; i++) view.setFloat32(at + 4 * i, values[i], true);
    } else {
      for (let i = 0; i < values.length; i++) view.setUint16(at + 2 * i, toHalf(values[i]), true);
    }
  }
  view.setUint32(total - 4, crc32(bytes.subarray(0, total - 4)), true);
  return bytes;
}

/**
 * Check checkpoint bytes and read their header, without decoding the tensors: integrity first
 * (magic, header length, CRC-32 of the whole file), then the header's format and layout, so
 * that a damaged byte is reported as damage, not as a strange format. Every tensor entry is
 * checked to lie inside the payload before anything is allocated for it.
 *
 * @throws Error naming `source` when the bytes are not a checkpoint, are truncated, corrupt or
 *   of another format version.
 */
export function verifyCheckpoint(bytes: Uint8Array, source = "checkpoint"): CheckpointHeader {
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (bytes.length < 16 || magic !== MAGIC) {
    throw new UserError(
      `${source} is not a diffusion checkpoint (it does not start with "${MAGIC}"); ` +
        `pass a file written by saveCheckpoint or the training loop.`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(8, true);
  if (12 + headerLength > bytes.length) {
    throw new UserError(
      `${source} is truncated: its header alone needs ${12 + headerLength} bytes but the file ` +
        `has ${bytes.length}; it was probably cut off while being copied. ${EARLIER}`,
    );
  }
  const payloadStart = pad8(12 + headerLength);
  const stored = view.getUint32(bytes.length - 4, true);
  const actual = crc32(bytes.subarray(0, bytes.length - 4));
  if (stored !== actual) {
    // A file cut short (or with bytes appended) fails the checksum too: say which it is.
    const promised = promisedLength(bytes.subarray(12, 12 + headerLength), payloadStart);
    if (promised !== undefined && promised !== bytes.length) {
      throw new UserError(
        `${source} is ${bytes.length < promised ? "truncated" : "too long"}: the header ` +
          `promises ${promised} bytes but the file has ${bytes.length}. It was probably cut off ` +
          `while being copied or written. ${EARLIER}`,
      );
    }
    throw new UserError(
      `${source} is corrupt: CRC-32 checksum mismatch (stored ${stored.toString(16)}, ` +
        `computed ${actual.toString(16)}). The file was damaged after it was written. ${EARLIER}`,
    );
  }
  let header: CheckpointHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength)));
  } catch (e) {
    throw new UserError(
      `${source} is corrupt: its header is not valid JSON (${(e as Error).message}).`,
    );
  }
  if (
    typeof header !== "object" || header === null || header.format !== "diffusion-checkpoint" ||
    header.version !== FORMAT_VERSION
  ) {
    throw new UserError(
      `${source} has format ${header?.format} version ${header?.version}; this library reads ` +
        `diffusion-checkpoint version ${FORMAT_VERSION}.`,
    );
  }
  const expected = payloadStart + header.payloadBytes + 4;
  if (bytes.length !== expected) {
    throw new UserError(
      `${source} is ${bytes.length < expected ? "truncated" : "too long"}: the header promises ` +
        `${expected} bytes but the file has ${bytes.length}. ${EARLIER}`,
    );
  }
  checkLayout(header, source);
  return header;
}

const EARLIER = "Use an earlier checkpoint (a run keeps the last few beside its latest).";

/** The file length a header promises, when the header can be read at all. */
function promisedLength(headerBytes: Uint8Array, payloadStart: number): number | undefined {
  try {
    const payload = JSON.parse(new TextDecoder().decode(headerBytes)).payloadBytes;
    return Number.isSafeInteger(payload) && payload >= 0 ? payloadStart + payload + 4 : undefined;
  } catch {
    return undefined;
  }
}

/** Every tensor entry is well formed and inside the payload; the header's fields have their types. */
function checkLayout(header: CheckpointHeader, source: string): void {
  const bad = (what: string) => new UserError(`${source} is corrupt: ${what}. ${EARLIER}`);
  if (!Number.isSafeInteger(header.step) || header.step < 0) throw bad("its step is not a count");
  if (!Array.isArray(header.tensors)) throw bad("its header lists no tensors");
  if (typeof header.modelConfig !== "object" || header.modelConfig === null) {
    throw bad("its header has no model configuration");
  }
  if (header.state !== undefined && (typeof header.state !== "object" || header.state === null)) {
    throw bad("its header's state is not an object");
  }
  const names = new Set<string>();
  let end = 0; // entries lie one after another: none overlaps another, so none is read twice
  for (const entry of header.tensors) {
    const name = typeof entry?.name === "string" ? entry.name : "?";
    if (
      typeof entry !== "object" || entry === null || typeof entry.name !== "string" ||
      !Array.isArray(entry.shape) ||
      !entry.shape.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0)
    ) {
      throw bad(`tensor "${name}" has a malformed entry`);
    }
    const width = entry.dtype === "float32" ? 4 : entry.dtype === "float16" ? 2 : 0;
    if (width === 0) throw bad(`tensor "${name}" has unknown dtype "${entry.dtype}"`);
    const size = entry.shape.reduce((a: number, b: number) => a * b, 1);
    if (
      !Number.isSafeInteger(entry.offset) || entry.offset < 0 || entry.offset % 8 !== 0 ||
      entry.byteLength !== size * width || entry.offset + entry.byteLength > header.payloadBytes
    ) {
      throw bad(`tensor "${name}" [${entry.shape}] does not lie inside the file's payload`);
    }
    if (entry.offset < end || names.has(entry.name)) {
      throw bad(`tensor "${name}" overlaps another or repeats its name`);
    }
    names.add(entry.name);
    end = entry.offset + entry.byteLength;
  }
}

/**
 * Parse and verify checkpoint bytes (see {@link verifyCheckpoint}). `source` (a path or URL)
 * names the file in errors.
 *
 * @throws Error naming `source` when the bytes are not a checkpoint, are truncated, or fail
 *   the checksum.
 */
export function decodeCheckpoint(bytes: Uint8Array, source = "checkpoint"): Checkpoint {
  const header = verifyCheckpoint(bytes, source);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const payloadStart = pad8(12 + view.getUint32(8, true));
  const tensors = new Map<string, CheckpointTensor>();
  for (const entry of header.tensors) {
    const size = entry.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const at = payloadStart + entry.offset;
    if (entry.dtype === "float32") {
      for (let i = 0; i < size; i++) values[i] = view.getFloat32(at + 4 * i, true);
    } else {
      for (let i = 0; i < size; i++) values[i] = fromHalf(view.getUint16(at + 2 * i, true));
    }
    tensors.set(entry.name, { shape: entry.shape, values });
  }
  return { step: header.step, modelConfig: header.modelConfig, state: header.state ?? {}, tensors };
}

/**
 * Assign stored tensors `prefix + name` to variables, after checking that every one is present
 * with the right shape.
 *
 * @throws Error naming `source` and the first missing or misshapen tensor.
 */
export function assignVariables(
  variables: readonly NamedVariable[],
  tensors: Map<string, CheckpointTensor>,
  prefix: string,
  source = "checkpoint",
): void {
  for (const { name, variable } of variables) {
    const stored = tensors.get(prefix + name);
    if (!stored) {
      throw new Error(
        `${source} does not match this network: it has no tensor "${prefix + name}". ` +
          `It was saved from a different architecture; build the model from the checkpoint's ` +
          `modelConfig (loadModel does this).`,
      );
    }
    if (stored.shape.join(",") !== variable.shape.join(",")) {
      throw new Error(
        `${source} does not match this network: "${prefix + name}" has shape [${stored.shape}] ` +
          `in the file but [${variable.shape}] in the model (a different architecture).`,
      );
    }
  }
  for (const { name, variable } of variables) {
    const stored = tensors.get(prefix + name)!;
    tf.tidy(() => variable.assign(tf.tensor(stored.values, stored.shape)));
  }
}
