/**
 * The Inception Score (Salimans et al., 2016) of a classifier's posteriors p(y | x) over
 * generated images: high when each image is confidently one class and the classes are used
 * evenly,
 *
 *   IS = exp( E_x KL( p(y | x) ‖ p(y) ) ),   p(y) = E_x p(y | x),
 *
 * from 1 (every posterior the same) to K (K classes, each image certain, all used equally). As
 * torch-fidelity computes it, the images are cut into `splits` consecutive parts, part i holding
 * images ⌊iN/splits⌋ to ⌊(i + 1)N/splits⌋ − 1, the score is taken in each, and their mean and
 * standard deviation (population) are reported. Terms with p(y | x) = 0 contribute 0
 * (x log x → 0).
 *
 * @module
 */
import { meanAndStd } from "./kid.ts";

/** The score's mean and standard deviation over the splits, and each split's. */
export interface InceptionScore {
  mean: number;
  std: number;
  perSplit: number[];
}

/**
 * IS of `count` posteriors of `classes` probabilities each (rows summing to 1).
 *
 * @throws Error when a split would hold no image
 */
export function inceptionScore(
  posteriors: Float32Array | Float64Array | readonly number[],
  classes: number,
  splits = 10,
): InceptionScore {
  const count = posteriors.length / classes;
  if (count < splits) throw new Error(`${count} images do not make ${splits} splits`);
  const perSplit: number[] = [];
  for (let s = 0; s < splits; s++) {
    const [from, to] = [Math.floor((s * count) / splits), Math.floor(((s + 1) * count) / splits)];
    const part = to - from;
    const marginal = new Float64Array(classes);
    for (let i = from; i < to; i++) {
      for (let k = 0; k < classes; k++) marginal[k] += posteriors[i * classes + k] / part;
    }
    let kl = 0;
    for (let i = from; i < to; i++) {
      for (let k = 0; k < classes; k++) {
        const p = posteriors[i * classes + k];
        if (p > 0) kl += p * (Math.log(p) - Math.log(marginal[k]));
      }
    }
    perSplit.push(Math.exp(kl / part));
  }
  return { ...meanAndStd(perSplit), perSplit };
}
