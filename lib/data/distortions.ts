/**
 * Distortions whose order is known, for calibrating and testing a perceptual distance: more
 * blur, more noise, coarser colour quantisation and larger shifts each take an image further
 * from itself. Every function maps one NHWC image [H, W, C] in [−1, 1] (a Float32Array) to a new
 * one, and leaves its input alone.
 *
 *   blur:      Gaussian of standard deviation σ px, separable, the border clamped;
 *   noise:     x + σ z, z ~ N(0, I), clipped to [−1, 1];
 *   quantise:  each channel rounded to L evenly spaced levels, q = round((x + 1)/2·(L − 1))
 *              /(L − 1)·2 − 1 (what a coarse colour table or a JPEG quantiser does to flat areas);
 *   shift:     moved by (dy, dx) px, the uncovered border filled with white (the background).
 *
 * @module
 */
import type { Random } from "../core/random.ts";

/** An image's shape [H, W, C]. */
export type ImageShape = readonly [number, number, number];

/** A distortion kind with its strength. */
export type Distortion =
  | { kind: "blur"; sigma: number }
  | { kind: "noise"; sigma: number }
  | { kind: "quantise"; levels: number }
  | { kind: "shift"; dy: number; dx: number };

/** The distortion kinds, in a fixed order. */
export const DISTORTION_KINDS = ["blur", "noise", "quantise", "shift"] as const;

function gaussianKernel(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float32Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) {
    sum += k[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma));
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/** Gaussian blur of standard deviation `sigma` px (σ = 0 copies the image). */
export function blur(image: Float32Array, shape: ImageShape, sigma: number): Float32Array {
  const [H, W, C] = shape;
  if (sigma <= 0) return image.slice();
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const clamp = (v: number, n: number) => Math.min(n - 1, Math.max(0, v));
  const rows = new Float32Array(image.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let i = -r; i <= r; i++) s += k[i + r] * image[(y * W + clamp(x + i, W)) * C + c];
        rows[(y * W + x) * C + c] = s;
      }
    }
  }
  const out = new Float32Array(image.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let i = -r; i <= r; i++) s += k[i + r] * rows[(clamp(y + i, H) * W + x) * C + c];
        out[(y * W + x) * C + c] = s;
      }
    }
  }
  return out;
}

/** x + σ z, clipped to [−1, 1], with z drawn from `rng`. */
export function gaussianNoise(image: Float32Array, sigma: number, rng: Random): Float32Array {
  return image.map((v) => Math.min(1, Math.max(-1, v + sigma * rng.normal())));
}

/** Each value rounded to `levels` evenly spaced levels over [−1, 1] (levels ≥ 2). */
export function quantise(image: Float32Array, levels: number): Float32Array {
  const L = levels - 1;
  return image.map((v) => (Math.round(((v + 1) / 2) * L) / L) * 2 - 1);
}

/** The image moved down by `dy` and right by `dx` px, uncovered pixels white. */
export function shift(
  image: Float32Array,
  shape: ImageShape,
  dy: number,
  dx: number,
): Float32Array {
  const [H, W, C] = shape;
  const out = new Float32Array(image.length).fill(1);
  for (let y = 0; y < H; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= H) continue;
    for (let x = 0; x < W; x++) {
      const sx = x - dx;
      if (sx < 0 || sx >= W) continue;
      out.set(image.subarray((sy * W + sx) * C, (sy * W + sx + 1) * C), (y * W + x) * C);
    }
  }
  return out;
}

/** The image mirrored left to right. */
export function horizontalFlip(image: Float32Array, shape: ImageShape): Float32Array {
  const [H, W, C] = shape;
  const out = new Float32Array(image.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      out.set(image.subarray((y * W + W - 1 - x) * C, (y * W + W - x) * C), (y * W + x) * C);
    }
  }
  return out;
}

/** Apply `distortion` (the noise drawn from `rng`). */
export function distort(
  image: Float32Array,
  shape: ImageShape,
  distortion: Distortion,
  rng: Random,
): Float32Array {
  switch (distortion.kind) {
    case "blur":
      return blur(image, shape, distortion.sigma);
    case "noise":
      return gaussianNoise(image, distortion.sigma, rng);
    case "quantise":
      return quantise(image, distortion.levels);
    case "shift":
      return shift(image, shape, distortion.dy, distortion.dx);
  }
}

/** The strengths a distortion comes in, mildest first (two of them never look alike). */
export const STRENGTHS = [0, 1 / 3, 2 / 3, 1] as const;

/**
 * A distortion of `kind` at strength `s` ∈ [0, 1] (0 mildest, 1 strongest): blur σ 0.4–2.4 px,
 * noise σ 0.03–0.5, quantisation 12 → 2 levels, shift 1–4 px in direction `direction` (0–7, the
 * eight neighbours anticlockwise on screen, from below).
 */
export function distortionAt(
  kind: typeof DISTORTION_KINDS[number],
  s: number,
  direction = 0,
): Distortion {
  switch (kind) {
    case "blur":
      return { kind, sigma: 0.4 + 2 * s };
    case "noise":
      return { kind, sigma: 0.03 + 0.47 * s };
    case "quantise":
      return { kind, levels: Math.round(12 - 10 * s) };
    case "shift": {
      const d = 1 + Math.round(3 * s);
      const dy = [d, d, 0, -d, -d, -d, 0, d][direction % 8];
      const dx = [0, d, d, d, 0, -d, -d, -d][direction % 8];
      return { kind, dy, dx };
    }
  }
}
