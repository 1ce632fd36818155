/**
 * Classifier-free guidance (Ho & Salimans, 2022): one network trained both with its condition c
 * and without it (∅, the condition dropped at random in training) is run both ways at every
 * sampling step, and the two predictions are extrapolated away from the unconditional one,
 *
 *   ε̃ = ε_∅ + s (ε_c − ε_∅)            (diffusers' guidance scale s; every number here uses s)
 *     = (1 + w) ε_c − w ε_∅,  w = s − 1   (the paper's guidance weight w).
 *
 * s = 1 (w = 0) is the conditional prediction alone and s = 0 the unconditional one; both are
 * returned exactly. A negative prompt takes the unconditional prediction's place: ε_∅ becomes
 * the prediction for the condition to steer away from.
 *
 * Guidance rescale (Lin et al., 2023, "Common Diffusion Noise Schedules and Sample Steps Are
 * Flawed", §3.4; diffusers' `guidance_rescale`, 0.7 in its examples) pulls each sample's ε̃ back
 * to the spread of ε_c, which large scales inflate:
 *
 *   ε̂ = φ · ε̃ σ(ε_c)/σ(ε̃) + (1 − φ) ε̃,
 *
 * σ the standard deviation over a sample's values (with Bessel's correction, as torch.std);
 * φ = 0 returns ε̃ unchanged.
 *
 * {@link guidedDenoiser} wraps a network into a denoiser that makes both predictions in one
 * batched call, [x_t; x_t] with [c; ∅], so it runs under every sampler of lib/core/samplers.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "./errors.ts";
import type { Conditioning, DiffusionModel } from "./models/network.ts";

/** How strongly to guide. */
export interface GuidanceOptions {
  /** diffusers' guidance scale s ≥ 0 (the paper's w = s − 1); 1 is no guidance. */
  scale: number;
  /** Guidance rescale φ in [0, 1]; 0 (the default) is none. */
  rescale?: number;
}

/**
 * Check `options`.
 *
 * @throws UserError that says what is allowed
 */
export function checkGuidance({ scale, rescale = 0 }: GuidanceOptions): void {
  if (!(Number.isFinite(scale) && scale >= 0)) {
    throw new UserError(
      `the guidance scale must be a number ≥ 0 (diffusers' s: 0 unconditional, 1 conditional, ` +
        `larger to guide harder), not ${scale}`,
    );
  }
  if (!(Number.isFinite(rescale) && rescale >= 0 && rescale <= 1)) {
    throw new UserError(`guidance rescale φ must be a number in [0, 1] (0: none), not ${rescale}`);
  }
}

/** ε̃ = ε_∅ + s (ε_c − ε_∅), exactly ε_c at s = 1 and ε_∅ at s = 0 (call inside `tf.tidy`). */
export function guide<T extends tf.Tensor>(conditional: T, unconditional: T, scale: number): T {
  if (scale === 1) return tf.clone(conditional);
  if (scale === 0) return tf.clone(unconditional);
  return tf.add(unconditional, tf.mul(tf.sub(conditional, unconditional), scale));
}

/** The standard deviation of each sample's values (Bessel-corrected), shaped to broadcast. */
function sampleStd(x: tf.Tensor): tf.Tensor {
  const axes = x.shape.slice(1).map((_, i) => i + 1);
  const n = x.size / x.shape[0];
  const centred = tf.sub(x, tf.mean(x, axes, true));
  return tf.sqrt(tf.div(tf.sum(tf.square(centred), axes, true), n - 1));
}

/** ε̂ = φ · ε̃ σ(ε_c)/σ(ε̃) + (1 − φ) ε̃; ε̃ itself at φ = 0 (call inside `tf.tidy`). */
export function rescaleGuidance<T extends tf.Tensor>(
  guided: T,
  conditional: T,
  rescale: number,
): T {
  if (rescale === 0) return tf.clone(guided);
  const rescaled = tf.mul(guided, tf.div(sampleStd(conditional), sampleStd(guided)));
  return tf.add(tf.mul(rescaled, rescale), tf.mul(guided, 1 - rescale));
}

/** The conditionings of two batches as one, `a`'s samples first (both must give the same fields). */
export function concatConditioning(a: Conditioning, b: Conditioning): Conditioning {
  const fields = ["classLabels", "encoderHiddenStates", "context"] as const;
  const out: Conditioning = {};
  for (const field of fields) {
    const [x, y] = [a[field], b[field]];
    if ((x === undefined) !== (y === undefined)) {
      throw new Error(`concatConditioning: ${field} is given for one batch and not the other`);
    }
    if (x && y) {
      (out as Record<string, tf.Tensor>)[field] = tf.concat([x as tf.Tensor, y as tf.Tensor]);
    }
  }
  return out;
}

/** A denoiser as the samplers call it (lib/core/samplers/sample.ts's `Denoiser`). */
export type GuidedDenoiser = (xt: tf.Tensor4D, t: tf.Tensor1D) => tf.Tensor4D;

/** A network's forward pass under a conditioning: `model.apply`, or a function like it. */
export type ConditionalDenoiser = (
  xt: tf.Tensor4D,
  t: tf.Tensor1D,
  conditioning: Conditioning,
) => tf.Tensor4D;

/**
 * `model` guided towards `conditional` and away from `unconditional` (the null condition, or a
 * negative prompt's), each for the whole batch: one forward pass of [x_t; x_t] at [t; t] with
 * [c; ∅], then {@link guide} and {@link rescaleGuidance}. At s = 1 without rescale it is the
 * conditional pass alone.
 *
 * @throws UserError for a scale or rescale out of range
 */
export function guidedDenoiser(
  model: DiffusionModel | ConditionalDenoiser,
  conditional: Conditioning,
  unconditional: Conditioning,
  options: GuidanceOptions,
): GuidedDenoiser {
  checkGuidance(options);
  const rescale = options.rescale ?? 0;
  const apply: ConditionalDenoiser = typeof model === "function"
    ? model
    : (x, t, c) => model.apply(x, t, c);
  return (xt, t) =>
    tf.tidy(() => {
      if (options.scale === 1 && rescale === 0) return apply(xt, t, conditional);
      const n = xt.shape[0];
      const both = apply(
        tf.concat([xt, xt]),
        tf.concat([t, t]),
        concatConditioning(conditional, unconditional),
      );
      const [c, u] = tf.split(both, [n, n]) as [tf.Tensor4D, tf.Tensor4D];
      return rescaleGuidance(guide(c, u, options.scale), c, rescale);
    });
}
