/**
 * Pixels out: model images to RGBA8, image grids, PNG, GIF and animated PNG.
 *
 * Models see images as floats in [-1, 1]; files hold bytes in [0, 255]. The map between them is
 * the one the DDPM paper uses for data scaling:
 *
 *   byte = clip(round((x + 1) / 2 · 255), 0, 255),   x = byte / 127.5 − 1.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";
import UPNGModule from "upng-js";
import { applyPalette, GIFEncoder, quantize } from "gifenc/dist/gifenc.esm.js";

/** An 8-bit RGBA image, rows top to bottom, `data.length === width * height * 4`. */
export interface RgbaImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Pixels as R, G, B, A bytes, row-major. */
  data: Uint8Array;
}

/** A batch of images as plain numbers: NHWC floats in [-1, 1]. */
export interface ImageBatch {
  /** `n * h * w * c` values, NHWC order. */
  data: Float32Array;
  /** `[n, h, w, c]` with `c` 1 (grey) or 3 (RGB). */
  shape: [number, number, number, number];
}

/** Options of {@link imageGrid}. */
export interface ImageGridOptions {
  /** Images per row (default ⌈√n⌉). */
  columns?: number;
  /** Gap in output pixels around and between cells (default 1). */
  padding?: number;
  /** Integer nearest-neighbour upscale of each image (default 1). */
  scale?: number;
  /** Colour of the gaps, `[r, g, b]` in 0..255 (default white). */
  background?: [number, number, number];
}

/** Options of the animation encoders. */
export interface AnimationOptions {
  /** Time each frame shows, in milliseconds (default 100). */
  delayMs?: number;
  /** Play forever (default true); false plays the frames once. */
  loop?: boolean;
}

interface UpngImage {
  width: number;
  height: number;
}

interface UpngFrame {
  rect: { x: number; y: number; width: number; height: number };
  cimg: Uint8Array;
  dispose: number;
  blend: number;
}

interface UpngCompressed {
  ctype: number;
  depth: number;
  plte: number[];
  gotAlpha: boolean;
  frames: UpngFrame[];
}

interface Upng {
  decode(buffer: ArrayBuffer): UpngImage;
  toRGBA8(image: UpngImage): ArrayBuffer[];
  encode: {
    compressPNG(
      frames: ArrayBuffer[],
      width: number,
      height: number,
      colours: number,
      forbidPalette: boolean,
    ): UpngCompressed;
  };
  crc: { crc(bytes: Uint8Array, offset: number, length: number): number };
}

const UPNG = UPNGModule as unknown as Upng;

function isTensor(images: unknown): images is tf.Tensor4D {
  return typeof (images as tf.Tensor).dataId === "object" &&
    typeof (images as tf.Tensor).data === "function";
}

/**
 * Converts a batch of images in [-1, 1] to RGBA8 images, `byte = clip(round((x + 1) · 127.5))`.
 * Grey images (c = 1) are repeated into R, G and B; alpha is 255.
 * Tensors are read with `await data()`, which works on every backend.
 */
export async function toRgbaImages(images: tf.Tensor4D | ImageBatch): Promise<RgbaImage[]> {
  const shape = images.shape as number[];
  if (shape.length !== 4) {
    throw new Error(`toRgbaImages expects a batch [n, h, w, c], got shape [${shape}]`);
  }
  const [n, h, w, c] = shape;
  if (c !== 1 && c !== 3) {
    throw new Error(`toRgbaImages expects 1 or 3 channels, got ${c}: slice the channels first`);
  }
  const values = isTensor(images) ? await images.data() : images.data;
  if (values.length !== n * h * w * c) {
    throw new Error(
      `toRgbaImages: data has ${values.length} values but shape [${shape}] needs ${n * h * w * c}`,
    );
  }
  const out: RgbaImage[] = [];
  for (let i = 0; i < n; i++) {
    const data = new Uint8Array(h * w * 4);
    const base = i * h * w * c;
    for (let p = 0; p < h * w; p++) {
      for (let k = 0; k < 3; k++) {
        const x = Number(values[base + p * c + (c === 1 ? 0 : k)]);
        const byte = Math.round((x + 1) * 127.5);
        data[p * 4 + k] = byte < 0 || Number.isNaN(byte) ? 0 : byte > 255 ? 255 : byte;
      }
      data[p * 4 + 3] = 255;
    }
    out.push({ width: w, height: h, data });
  }
  return out;
}

/**
 * The inverse of {@link imageGrid}: the first `count` cells of a grid of `size`×`size` images laid
 * out with `options`, as NHWC RGB in [−1, 1] (x = byte/127.5 − 1; the top-left pixel of each
 * scaled cell). A grid saved during training is the only record of its samples.
 */
export function gridCells(
  grid: RgbaImage,
  size: number,
  count: number,
  options: ImageGridOptions = {},
): Float32Array {
  const columns = options.columns ?? Math.ceil(Math.sqrt(count));
  const padding = options.padding ?? 1;
  const scale = options.scale ?? 1;
  const rows = Math.ceil(count / columns);
  const expected = [
    columns * size * scale + (columns + 1) * padding,
    rows * size * scale + (rows + 1) * padding,
  ];
  if (grid.width !== expected[0] || grid.height < expected[1]) {
    throw new Error(
      `gridCells: a grid of ${count} ${size}px images in ${columns} columns at ${scale}× is ` +
        `${expected[0]}×${expected[1]}, not ${grid.width}×${grid.height}`,
    );
  }
  const out = new Float32Array(count * size * size * 3);
  for (let i = 0; i < count; i++) {
    const x0 = padding + (i % columns) * (size * scale + padding);
    const y0 = padding + Math.floor(i / columns) * (size * scale + padding);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const from = ((y0 + y * scale) * grid.width + x0 + x * scale) * 4;
        for (let k = 0; k < 3; k++) {
          out[((i * size + y) * size + x) * 3 + k] = grid.data[from + k] / 127.5 - 1;
        }
      }
    }
  }
  return out;
}

/**
 * Lays equal-sized images out in a grid. With `columns` C, rows R = ⌈n / C⌉, cell size
 * (w·s) × (h·s) and padding p, the grid is `C·w·s + (C + 1)·p` wide and `R·h·s + (R + 1)·p` high.
 */
export function imageGrid(images: RgbaImage[], options: ImageGridOptions = {}): RgbaImage {
  if (images.length === 0) throw new Error("imageGrid needs at least one image");
  const { width: w, height: h } = images[0];
  for (const [i, image] of images.entries()) {
    if (image.width !== w || image.height !== h) {
      throw new Error(
        `imageGrid needs equal sizes: image 0 is ${w}×${h}, image ${i} is ${image.width}×${image.height}`,
      );
    }
  }
  const columns = options.columns ?? Math.ceil(Math.sqrt(images.length));
  const padding = options.padding ?? 1;
  const scale = options.scale ?? 1;
  const [br, bg, bb] = options.background ?? [255, 255, 255];
  if (!Number.isInteger(columns) || columns < 1) {
    throw new Error(`imageGrid: columns must be a positive integer, got ${columns}`);
  }
  if (!Number.isInteger(scale) || scale < 1) {
    throw new Error(`imageGrid: scale must be a positive integer, got ${scale}`);
  }
  if (!Number.isInteger(padding) || padding < 0) {
    throw new Error(`imageGrid: padding must be a non-negative integer, got ${padding}`);
  }
  const rows = Math.ceil(images.length / columns);
  const cw = w * scale, ch = h * scale;
  const width = columns * cw + (columns + 1) * padding;
  const height = rows * ch + (rows + 1) * padding;
  const data = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    data[p * 4] = br;
    data[p * 4 + 1] = bg;
    data[p * 4 + 2] = bb;
    data[p * 4 + 3] = 255;
  }
  images.forEach((image, i) => {
    const x0 = padding + (i % columns) * (cw + padding);
    const y0 = padding + Math.floor(i / columns) * (ch + padding);
    for (let y = 0; y < ch; y++) {
      const row = ((y0 + y) * width + x0) * 4;
      const source = Math.floor(y / scale) * w;
      for (let x = 0; x < cw; x++) {
        const s = (source + Math.floor(x / scale)) * 4;
        data.set(image.data.subarray(s, s + 4), row + x * 4);
      }
    }
  });
  return { width, height, data };
}

function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer;
}

function checkFrames(frames: RgbaImage[], what: string): void {
  if (frames.length === 0) throw new Error(`${what} needs at least one frame`);
  const { width, height } = frames[0];
  for (const [i, frame] of frames.entries()) {
    if (frame.width !== width || frame.height !== height) {
      throw new Error(
        `${what} needs frames of one size: frame 0 is ${width}×${height}, frame ${i} is ${frame.width}×${frame.height}`,
      );
    }
    if (frame.data.length !== width * height * 4) {
      throw new Error(
        `${what}: frame ${i} has ${frame.data.length} bytes, expected width·height·4`,
      );
    }
  }
}

/**
 * Writes a PNG or APNG from upng-js's compressed frames. (upng-js's own `encode` writes into a
 * buffer sized for compressible images and silently truncates incompressible ones, such as
 * the pure noise a diffusion sampler starts from.)
 */
function writePng(
  compressed: UpngCompressed,
  width: number,
  height: number,
  animation: { delayMs: number; numPlays: number } | null,
): Uint8Array {
  const chunks: [string, Uint8Array][] = [];
  const chunk = (
    type: string,
    length: number,
    fill: (view: DataView, bytes: Uint8Array) => void,
  ) => {
    const bytes = new Uint8Array(length);
    fill(new DataView(bytes.buffer), bytes);
    chunks.push([type, bytes]);
  };
  chunk("IHDR", 13, (v) => {
    v.setUint32(0, width);
    v.setUint32(4, height);
    v.setUint8(8, compressed.depth);
    v.setUint8(9, compressed.ctype);
  });
  chunk("sRGB", 1, (v) => v.setUint8(0, 1));
  if (animation) {
    chunk("acTL", 8, (v) => {
      v.setUint32(0, compressed.frames.length);
      v.setUint32(4, animation.numPlays);
    });
  }
  if (compressed.ctype === 3) {
    const palette = compressed.plte;
    chunk("PLTE", palette.length * 3, (_, b) => {
      palette.forEach((c, i) => b.set([c & 255, (c >> 8) & 255, (c >> 16) & 255], i * 3));
    });
    if (compressed.gotAlpha) {
      chunk("tRNS", palette.length, (_, b) => palette.forEach((c, i) => b[i] = (c >>> 24) & 255));
    }
  }
  let sequence = 0;
  compressed.frames.forEach((frame, j) => {
    if (animation) {
      chunk("fcTL", 26, (v) => {
        v.setUint32(0, sequence++);
        v.setUint32(4, frame.rect.width);
        v.setUint32(8, frame.rect.height);
        v.setUint32(12, frame.rect.x);
        v.setUint32(16, frame.rect.y);
        v.setUint16(20, animation.delayMs);
        v.setUint16(22, 1000);
        v.setUint8(24, frame.dispose);
        v.setUint8(25, frame.blend);
      });
    }
    if (j === 0) {
      chunks.push(["IDAT", frame.cimg]);
    } else {
      chunk("fdAT", frame.cimg.length + 4, (v, b) => {
        v.setUint32(0, sequence++);
        b.set(frame.cimg, 4);
      });
    }
  });
  chunks.push(["IEND", new Uint8Array(0)]);

  const total = 8 + chunks.reduce((sum, [, data]) => sum + 12 + data.length, 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let offset = 8;
  for (const [type, data] of chunks) {
    view.setUint32(offset, data.length);
    for (let i = 0; i < 4; i++) bytes[offset + 4 + i] = type.charCodeAt(i);
    bytes.set(data, offset + 8);
    view.setUint32(
      offset + 8 + data.length,
      UPNG.crc.crc(bytes, offset + 4, data.length + 4) >>> 0,
    );
    offset += 12 + data.length;
  }
  return bytes;
}

/** Encodes an RGBA image as a lossless PNG. */
export function encodePng(image: RgbaImage): Uint8Array {
  checkFrames([image], "encodePng");
  const compressed = UPNG.encode.compressPNG(
    [exactBuffer(image.data)],
    image.width,
    image.height,
    0,
    false,
  );
  return writePng(compressed, image.width, image.height, null);
}

/** Decodes a PNG (any colour type; the first frame of an APNG) to RGBA8. */
export function decodePng(bytes: Uint8Array): RgbaImage {
  const decoded = UPNG.decode(exactBuffer(bytes));
  if (!(decoded.width > 0 && decoded.height > 0)) throw new Error("not a PNG image");
  const data = new Uint8Array(UPNG.toRGBA8(decoded)[0]);
  if (data.length !== decoded.width * decoded.height * 4) throw new Error("PNG data is truncated");
  return { width: decoded.width, height: decoded.height, data };
}

/** Decodes every frame of a PNG or animated PNG, each as a whole RGBA image. */
export function decodePngFrames(bytes: Uint8Array): RgbaImage[] {
  const decoded = UPNG.decode(exactBuffer(bytes));
  if (!(decoded.width > 0 && decoded.height > 0)) throw new Error("not a PNG image");
  return UPNG.toRGBA8(decoded).map((frame) => ({
    width: decoded.width,
    height: decoded.height,
    data: new Uint8Array(frame),
  }));
}

/**
 * Encodes frames as an animated GIF with one global palette of up to 256 colours, quantised
 * from (a sample of at most 2²⁰ pixels of) all frames, so colours do not flicker between frames.
 */
export function encodeGif(frames: RgbaImage[], options: AnimationOptions = {}): Uint8Array {
  checkFrames(frames, "encodeGif");
  const { width, height } = frames[0];
  const delay = options.delayMs ?? 100;
  const loop = options.loop ?? true;
  const pixels = frames.length * width * height;
  const stride = Math.max(1, Math.ceil(pixels / (1 << 20)));
  const sample = new Uint8Array(Math.ceil(pixels / stride) * 4);
  let n = 0;
  for (let p = 0; p < pixels; p += stride) {
    const frame = frames[Math.floor(p / (width * height))].data;
    const q = (p % (width * height)) * 4;
    sample.set(frame.subarray(q, q + 4), n * 4);
    n++;
  }
  const palette = quantize(sample.subarray(0, n * 4).slice(), 256);
  const gif = GIFEncoder();
  frames.forEach((frame, i) => {
    const index = applyPalette(frame.data.slice(), palette);
    gif.writeFrame(index, width, height, {
      palette: i === 0 ? palette : undefined,
      delay,
      repeat: loop ? 0 : -1,
    });
  });
  gif.finish();
  return gif.bytes();
}

/**
 * Encodes frames as a lossless animated PNG (APNG); `loop: false` plays them once
 * (acTL `num_plays` = 1). One frame gives a plain PNG.
 */
export function encodeApng(frames: RgbaImage[], options: AnimationOptions = {}): Uint8Array {
  checkFrames(frames, "encodeApng");
  const { width, height } = frames[0];
  const delayMs = Math.min(65535, Math.max(0, Math.round(options.delayMs ?? 100)));
  const compressed = UPNG.encode.compressPNG(
    frames.map((f) => exactBuffer(f.data)),
    width,
    height,
    0,
    false,
  );
  const animation = frames.length > 1
    ? { delayMs, numPlays: options.loop === false ? 1 : 0 }
    : null;
  return writePng(compressed, width, height, animation);
}

/** Encodes frames both as GIF and as APNG and keeps the smaller file. */
export function encodeAnimation(
  frames: RgbaImage[],
  options: AnimationOptions = {},
): { bytes: Uint8Array; format: "gif" | "png" } {
  const gif = encodeGif(frames, options);
  const png = encodeApng(frames, options);
  return png.length < gif.length ? { bytes: png, format: "png" } : { bytes: gif, format: "gif" };
}
