/**
 * Low-rank adaptation (LoRA; Hu et al., 2021): a frozen linear map W ∈ ℝ^{d_in×d_out} learns an
 * update of rank r through two small factors,
 *
 *   y = x W + b + s · (α / r) · (x A) B,    A ∈ ℝ^{d_in×r},  B ∈ ℝ^{r×d_out},
 *
 * with A ~ N(0, 1/r²) (PEFT's "gaussian" initialisation) and B = 0, so that at initialisation
 * the adapted network computes exactly what the base computes. α/r keeps the update's scale
 * when the rank changes (the paper's α), and s is a strength set at inference (0 = the base,
 * 1 = as trained). A LoRA trains r(d_in + d_out) numbers a layer instead of d_in·d_out.
 *
 * Which layers adapt is chosen by name, as PEFT's `target_modules`: a target matches a linear
 * layer whose dotted name ends with it, segment by segment, `*` standing for any one segment
 * (`q` matches `mid.attn.q` and `down.1.cross.0.q`; `cross.*.k` matches `down.1.cross.0.k`).
 *
 * Merging folds the update into the weights, W ← W + s(α/r)AB, so that sampling costs what the
 * base costs; unmerging subtracts it again. A set merges once: merging twice is refused, never a
 * silent double update.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { Random } from "../random.ts";
import { UserError } from "../errors.ts";

/** Which layers adapt, and the update's rank and scale. */
export interface LoraConfig {
  /** Rank r of the update (the factors' inner size). */
  rank: number;
  /** α: the update is scaled by α/r (α = r scales it by 1). */
  alpha: number;
  /** Name patterns of the linear layers to adapt (see the module comment). */
  targets: readonly string[];
}

/** The attention projections q, k, v and out of every attention layer, self and cross. */
export const ATTENTION_PROJECTIONS: readonly string[] = ["q", "k", "v", "out"];

/** Added to a network's seed to seed its LoRA factors, so that the base's values do not move. */
const LORA_SEED_OFFSET = 0x4c6f5241; // "LoRA"

/** Suffixes of the two factors' parameter names. */
export const LORA_A = "lora_A";
export const LORA_B = "lora_B";

/**
 * Throws unless `config` is a usable LoRA configuration: a positive integer rank, a positive α
 * and at least one target.
 */
export function checkLoraConfig(config: LoraConfig): LoraConfig {
  if (!Number.isInteger(config.rank) || config.rank < 1) {
    throw new UserError(`LoRA rank must be a positive integer, got ${config.rank}.`);
  }
  if (!(config.alpha > 0)) throw new UserError(`LoRA alpha must be positive, got ${config.alpha}.`);
  if (config.targets.length === 0) {
    throw new UserError(
      `LoRA needs at least one target layer name, e.g. ${JSON.stringify(ATTENTION_PROJECTIONS)}.`,
    );
  }
  return config;
}

/** True when the dotted `layerName` ends with `target`, `*` matching any one segment. */
export function matchesTarget(layerName: string, target: string): boolean {
  const name = layerName.split(".");
  const pattern = target.split(".");
  if (pattern.length > name.length) return false;
  const tail = name.slice(name.length - pattern.length);
  return pattern.every((p, i) => p === "*" || p === tail[i]);
}

/** What a store does for a layer's factors: create them as parameters, from a given generator. */
export type FactorFactory = (
  localName: string,
  shape: number[],
  init: { normal: number } | { constant: number },
  rng: Random,
) => tf.Variable;

/** The LoRA of one linear layer: its factors A and B, and the base weight it updates. */
export class LoraLayer {
  constructor(
    readonly set: LoraSet,
    /** The adapted layer's dotted name. */
    readonly name: string,
    /** The base weight W [d_in, d_out] (frozen while the factors train). */
    readonly weight: tf.Variable,
    /** A [d_in, r]. */
    readonly a: tf.Variable,
    /** B [r, d_out]. */
    readonly b: tf.Variable,
  ) {}

  /** r(d_in + d_out), the numbers this layer's update trains. */
  get parameterCount(): number {
    return this.a.size + this.b.size;
  }

  /** y + s(α/r)(xA)B, or y itself when the update is merged or the strength is 0. */
  addUpdate(x: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D {
    const scale = this.set.activeScale;
    if (scale === 0) return y;
    return tf.tidy(() => {
      const xa = tf.matMul(x, this.a as tf.Tensor2D);
      return tf.add(y, tf.mul(tf.matMul(xa, this.b as tf.Tensor2D), scale)) as tf.Tensor2D;
    });
  }
}

/**
 * A network's LoRA: its configuration, its adapted layers, the strength s and whether the
 * update is merged into the weights.
 */
export class LoraSet {
  readonly config: LoraConfig;
  /** The adapted layers, in creation order. */
  readonly layers: LoraLayer[] = [];
  readonly #rng: Random;
  #strength = 1;
  #merged: number | null = null;

  /** @param seed the network's seed (the factors draw from seed + a fixed offset) */
  constructor(config: LoraConfig, seed: number) {
    this.config = checkLoraConfig(config);
    this.#rng = new Random((seed + LORA_SEED_OFFSET) >>> 0);
  }

  /** α / r. */
  get scale(): number {
    return this.config.alpha / this.config.rank;
  }

  /** The strength s of the update (1 unless set). */
  get strength(): number {
    return this.#strength;
  }

  /** True while the update is folded into the weights. */
  get merged(): boolean {
    return this.#merged !== null;
  }

  /** s(α/r) while the update is applied beside the weights; 0 while merged. */
  get activeScale(): number {
    return this.#merged === null ? this.#strength * this.scale : 0;
  }

  /** Every factor, A and B of each layer, in creation order. */
  get parameters(): tf.Variable[] {
    return this.layers.flatMap((l) => [l.a, l.b]);
  }

  /** Σ r(d_in + d_out) over the adapted layers. */
  get parameterCount(): number {
    return this.layers.reduce((sum, l) => sum + l.parameterCount, 0);
  }

  /**
   * The factors of the linear layer `name` when a target matches it (else null), created
   * through `factor` so that they are parameters of the network like any other.
   */
  adapt(
    name: string,
    weight: tf.Variable,
    factor: FactorFactory,
  ): LoraLayer | null {
    if (!this.config.targets.some((t) => matchesTarget(name, t))) return null;
    const [dIn, dOut] = weight.shape;
    const r = this.config.rank;
    const a = factor(LORA_A, [dIn, r], { normal: 1 / r }, this.#rng);
    const b = factor(LORA_B, [r, dOut], { constant: 0 }, this.#rng);
    const layer = new LoraLayer(this, name, weight, a, b);
    this.layers.push(layer);
    return layer;
  }

  /** Set the strength s (0 = the base network, 1 = as trained); refused while merged. */
  setStrength(strength: number): void {
    if (!Number.isFinite(strength)) {
      throw new UserError(`LoRA strength must be a finite number, got ${strength}.`);
    }
    if (this.merged) {
      throw new UserError(
        "The LoRA is merged into the weights; unmerge it before changing its strength.",
      );
    }
    this.#strength = strength;
  }

  /** W ← W + s(α/r)AB for every adapted layer; refused when already merged. */
  merge(): void {
    if (this.merged) {
      throw new UserError(
        "The LoRA is already merged into the weights; merging again would apply it twice.",
      );
    }
    const scale = this.activeScale;
    this.#fold(scale);
    this.#merged = scale;
  }

  /** W ← W − s(α/r)AB with the scale it was merged at; refused when not merged. */
  unmerge(): void {
    if (this.#merged === null) throw new UserError("The LoRA is not merged; nothing to unmerge.");
    this.#fold(-this.#merged);
    this.#merged = null;
  }

  #fold(scale: number): void {
    for (const l of this.layers) {
      tf.tidy(() => {
        const update = tf.matMul(l.a as tf.Tensor2D, l.b as tf.Tensor2D);
        l.weight.assign(tf.add(l.weight, tf.mul(update, scale)));
      });
    }
  }
}
