/**
 * Seeded pseudo-random numbers, so that the same seed gives the same run.
 *
 * Mulberry32 for uniforms, Box–Muller for standard normals. State is a single
 * 32-bit integer, which checkpoints can store and restore exactly.
 *
 * @module
 */

/** A seeded generator of uniform and normal random numbers. */
export class Random {
  /** The generator's whole state: one unsigned 32-bit integer. */
  state: number;

  /** Start a generator from an integer seed. */
  constructor(seed = 0) {
    this.state = seed >>> 0;
  }

  /** A uniform number in [0, 1). */
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform integer in [low, high). */
  int(low: number, high: number): number {
    return low + Math.floor(this.uniform() * (high - low));
  }

  /** A standard normal number, z ~ N(0, 1), by the Box–Muller transform. */
  normal(): number {
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** `n` standard normal numbers. */
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /** A 31-bit integer, never 0, to seed another generator (for example a tfjs op's, see {@link opSeed}). */
  nextSeed(): number {
    return opSeed(Math.floor(this.uniform() * 0x7fffffff));
  }

  /** Shuffle `array` in place (Fisher–Yates) and return it. */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      [array[i], array[j]] = [array[j], array[i]];
    }
    return array;
  }
}

const SEED_MODULUS = 0x7fffffff;

/**
 * A seed for TensorFlow.js's random ops (`randomNormal`, `randomUniform`, `dropout`), which read
 * a seed of 0 as no seed at all, and draw new numbers on every run. Maps any integer into
 * 1 … 2³¹ − 1, leaving every seed already there as it is (0 becomes 2³¹ − 1).
 */
export function opSeed(seed: number): number {
  const s = ((Math.trunc(seed) % SEED_MODULUS) + SEED_MODULUS) % SEED_MODULUS;
  return s === 0 ? SEED_MODULUS : s;
}
