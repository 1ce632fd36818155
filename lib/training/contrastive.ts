/**
 * CLIP's symmetric contrastive loss (InfoNCE; Radford et al., 2021, Figure 3), for a batch of N
 * images and their N captions: with the embeddings normalised and a learned temperature,
 *
 *   zᵢ = Iᵢ/‖Iᵢ‖,  uⱼ = Tⱼ/‖Tⱼ‖,  S = e^τ · z uᵀ  [N, N],
 *   L = ½ (CE(S) + CE(Sᵀ)),  CE(S) = −(1/N) Σᵢ log softmax(Sᵢ)ᵢ,
 *
 * each image pulled towards its own caption and away from the batch's N − 1 others, and each
 * caption likewise. τ is the log of the inverse temperature: CLIP starts it at ln(1/0.07) and
 * clips e^τ at 100, as {@link logitScale} does.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
export { INITIAL_LOG_SCALE } from "../core/models/clip.ts";

/** The largest inverse temperature e^τ CLIP lets the scale reach. */
export const MAX_SCALE = 100;

/** e^τ, clipped to at most {@link MAX_SCALE}. */
export function logitScale(logScale: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.minimum(tf.exp(logScale), MAX_SCALE) as tf.Scalar);
}

/** The similarity matrix S = e^τ z uᵀ of the module comment [N, N] (images × captions). */
export function similarities(
  images: tf.Tensor2D,
  texts: tf.Tensor2D,
  logScale: tf.Tensor,
): tf.Tensor2D {
  return tf.tidy(() => {
    const unit = (x: tf.Tensor2D) => tf.div(x, tf.norm(x, "euclidean", 1, true));
    return tf.mul(tf.matMul(unit(images), unit(texts), false, true), logitScale(logScale));
  });
}

/** L of the module comment, for images [N, d] and texts [N, d] whose i-th rows belong together. */
export function clipLoss(images: tf.Tensor2D, texts: tf.Tensor2D, logScale: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const s = similarities(images, texts, logScale);
    const n = s.shape[0];
    const target = tf.oneHot(tf.range(0, n, 1, "int32"), n);
    const ce = (logits: tf.Tensor2D) => tf.losses.softmaxCrossEntropy(target, logits);
    return tf.mul(tf.add(ce(s), ce(tf.transpose(s))), 0.5) as tf.Scalar;
  });
}
