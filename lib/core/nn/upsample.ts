/**
 * Nearest-neighbour upsampling by two, with a gradient that is exact on every backend.
 *
 * tfjs' `ResizeNearestNeighborGrad` on cpu (and `MaxPoolGrad` on wasm) give wrong gradients
 * for batch > 1, so the networks upsample by reshape and tile instead:
 *
 *   y[n, 2h + a, 2w + b, c] = x[n, h, w, c]   for a, b ∈ {0, 1},
 *
 * whose gradient is the 2×2 sum pooling of dy:
 *
 *   ∂L/∂x[n, h, w, c] = Σ_{a, b ∈ {0, 1}} dy[n, 2h + a, 2w + b, c].
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/**
 * Upsamples an NHWC batch by two in height and width, repeating each pixel in a 2×2 block:
 * `y[n, 2h + a, 2w + b, c] = x[n, h, w, c]`. Equal to
 * `tf.image.resizeNearestNeighbor(x, [2H, 2W])`; its gradient sums dy over each 2×2 block.
 */
export function upsampleNearest2x(x: tf.Tensor4D): tf.Tensor4D {
  if (x.rank !== 4) {
    throw new Error(`upsampleNearest2x expects an NHWC tensor of rank 4; got shape [${x.shape}]`);
  }
  const [n, h, w, c] = x.shape;
  const upsample = tf.customGrad((input) => {
    // Rank 4 at most, so every backend's Tile kernel applies.
    const value = tf.tidy(() => {
      const columns = tf.tile(tf.reshape(input as tf.Tensor, [n * h, w, 1, c]), [1, 1, 2, 1]);
      const rows = tf.tile(tf.reshape(columns, [n * h, 1, 2 * w * c]), [1, 2, 1]);
      return tf.reshape(rows, [n, 2 * h, 2 * w, c]);
    });
    const gradFunc = (dy: tf.Tensor) =>
      tf.tidy(() => {
        const rows = tf.sum(tf.reshape(dy, [n * h, 2, 2 * w * c]), 1);
        return tf.reshape(tf.sum(tf.reshape(rows, [n * h * w, 2, c]), 1), [n, h, w, c]);
      });
    return { value, gradFunc };
  });
  return upsample(x) as tf.Tensor4D;
}
