/**
 * Embeddings of what a denoiser is conditioned on: the timestep, and a class label with a
 * "no condition" entry for classifier-free guidance.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../errors.ts";
import type { ParameterStore } from "./layers.ts";

/**
 * Sinusoidal embedding of timesteps (Transformer positions; DDPM, ADM):
 *
 *   emb(t) = [cos(t·ω₀), …, cos(t·ω_{d/2−1}), sin(t·ω₀), …, sin(t·ω_{d/2−1})],
 *   ω_i = maxPeriod^(−i/(d/2)).
 *
 * @param t timesteps, shape [B] (float; integers 0…T−1 in this library)
 * @param dim embedding size d (even)
 * @returns shape [B, d]
 */
export function timestepEmbedding(t: tf.Tensor1D, dim: number, maxPeriod = 10000): tf.Tensor2D {
  if (dim % 2 !== 0) throw new Error(`timestepEmbedding: dim must be even, got ${dim}.`);
  const half = dim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp(-Math.log(maxPeriod) * i / half);
  return tf.tidy(() => {
    const args = tf.mul(tf.reshape(t, [-1, 1]), tf.tensor2d(freqs, [1, half]));
    return tf.concat([tf.cos(args), tf.sin(args)], 1) as tf.Tensor2D;
  });
}

/**
 * Check class labels against a network's K classes: each is in {0, …, K − 1}, or −1 for "no
 * condition".
 *
 * @throws UserError naming the first label out of range and what is allowed
 */
export function checkClassLabels(labels: ArrayLike<number>, classes: number): void {
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!(Number.isInteger(y) && y >= -1 && y < classes)) {
      throw new UserError(
        `class label ${y} (at ${i}) is out of range: this network knows classes 0…${
          classes - 1
        }, ` +
          `and −1 for no condition`,
      );
    }
  }
}

/**
 * The context vectors of class labels: c_b = onehot(y_b) for a label y_b ∈ {0, …, K − 1}, and
 * c_b = c_∅ for y_b = −1 ("no condition", as classifier-free guidance drops labels in training
 * and asks for them unconditioned in sampling; Ho & Salimans, 2022). c_∅ is the network's learned
 * null vector, or zeros (the DeepLearning.AI course's context mask).
 *
 * @param labels class labels [B], int32, −1 for none
 * @param classes K
 * @param nullVector c_∅, shape [K], or null for zeros
 * @returns [B, K]
 */
export function classContext(
  labels: tf.Tensor1D,
  classes: number,
  nullVector: tf.Tensor | null,
): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.cast(labels, "int32");
    const oneHot = tf.cast(tf.oneHot(y, classes), "float32"); // y = −1 gives a zero row
    if (!nullVector) return oneHot as tf.Tensor2D;
    const none = tf.reshape(tf.cast(tf.less(y, 0), "float32"), [-1, 1]);
    return tf.add(oneHot, tf.mul(none, tf.reshape(nullVector, [1, classes]))) as tf.Tensor2D;
  });
}

/**
 * The null context c_∅ of a conditional network, as a parameter named `NAME.vector` (starting at
 * zero), when `mode` is "learned"; null for "zeros" (then c_∅ = 0, no parameter).
 */
export function nullContextParameter(
  store: ParameterStore,
  name: string,
  size: number,
  mode: "zeros" | "learned",
): tf.Variable | null {
  if (mode !== "learned" || size === 0) return null;
  return store.parameter(store.layer(name, "NullContext"), "vector", [size], { constant: 0 });
}
