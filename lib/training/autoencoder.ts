/**
 * Training the KL autoencoder of latent diffusion (lib/core/models/autoencoder.ts) the way the
 * latent-diffusion configs do (`LPIPSWithDiscriminator` without its discriminator): on each
 * image, the L1 distance of its reconstruction, the perceptual distance d of the two, and a very
 * small KL term,
 *
 *   L = mean_pixels |x − D(z)| + w_p · d(↓x, ↓D(z)) + β · KL(q(z | x) ‖ N(0, I)) / (H · W · 3),
 *   z = μ(x) + σ(x) ⊙ ε,
 *
 * which is LDM's per-image sum over pixels, Σ (|x − x̂| + w_p d) + β KL, divided by the number
 * of pixel values, so that β means what it means there (1e-6 in their f = 4 to 16 configs).
 * β is that small because the KL term is not there to make q(z | x) a prior-matching code, as
 * in a VAE that samples from N(0, I): the diffusion model learns the latents' distribution.
 * It only keeps the latents' scale from drifting and σ from collapsing to zero; a larger β
 * blurs the reconstructions, and the scale factor s = 1/std(z) takes care of the variance.
 *
 * d is the book's learned perceptual distance (lib/core/models/perceptual.ts), whose classifier
 * sees 16×16 images: ↓ is the 2×2 average pooling that brings a 32×32 image to that size (none
 * at 16×16). Its gradient reaches the autoencoder through the frozen classifier, whose weights
 * are not trained. A run is a supervised run (lib/training/supervised.ts): AdamW, the library's
 * warm-up and cosine learning rate, checkpoints that resume exactly, a time budget.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  type AutoencoderConfig,
  AutoencoderKL,
  klToStandardNormal,
  samplePosterior,
} from "../core/models/autoencoder.ts";
import type { PerceptualDistance } from "../core/models/perceptual.ts";
import type { Random } from "../core/random.ts";
import { horizontalFlip } from "../data/distortions.ts";
import { type SupervisedRecipe, type SupervisedRunOptions, trainSupervised } from "./supervised.ts";

/** An autoencoder run's recipe: the supervised run's, and the loss's weights. */
export interface AutoencoderTraining extends SupervisedRecipe {
  /** w_p, the weight of the perceptual distance (LDM: 1). */
  perceptualWeight: number;
  /** β, the weight of the KL term (LDM: 1e-6). */
  klWeight: number;
  /** Flip each training image left–right with probability ½. */
  horizontalFlip: boolean;
}

/** Images, and which of them train. */
export interface AutoencoderData {
  /** NHWC float32 in [−1, 1], `count · H · W · 3` values. */
  images: Float32Array;
  /** Number of images. */
  count: number;
  /** The images the autoencoder trains on. */
  train: readonly number[];
  /** The held-out images its reconstructions are scored on. */
  heldOut: readonly number[];
}

/** The loss's terms on a batch, each averaged over the batch. */
export interface AutoencoderLoss {
  /** L, the weighted sum. */
  total: tf.Scalar;
  /** mean |x − x̂|. */
  l1: tf.Scalar;
  /** d(↓x, ↓x̂), 0 without a perceptual distance. */
  perceptual: tf.Scalar;
  /** KL(q(z | x) ‖ N(0, I)), summed over the latent. */
  kl: tf.Scalar;
}

/** ↓x: images brought to the perceptual distance's classifier size by average pooling. */
function toClassifierSize(x: tf.Tensor4D, distance: PerceptualDistance): tf.Tensor4D {
  const factor = x.shape[1] / distance.classifier.config.imageSize;
  if (factor === 1) return x;
  if (!Number.isInteger(factor)) {
    throw new Error(
      `the perceptual distance sees ${distance.classifier.config.imageSize}×` +
        `${distance.classifier.config.imageSize} images; ${x.shape[1]}×${x.shape[2]} is not a ` +
        `multiple of that`,
    );
  }
  return tf.avgPool(x, factor, factor, "valid");
}

/**
 * The loss of the module comment on images x [N, H, W, 3], with standard-normal noise ε of the
 * latent's shape (the draw z = μ + σ ε). Without `distance`, the perceptual term is left out.
 */
export function autoencoderLoss(
  autoencoder: AutoencoderKL,
  distance: PerceptualDistance | null,
  x: tf.Tensor4D,
  noise: tf.Tensor4D,
  weights: Pick<AutoencoderTraining, "perceptualWeight" | "klWeight">,
): AutoencoderLoss {
  return tf.tidy(() => {
    const posterior = autoencoder.encode(x);
    const reconstruction = autoencoder.decode(samplePosterior(posterior, noise));
    const l1 = tf.mean(tf.abs(tf.sub(x, reconstruction))) as tf.Scalar;
    const perceptual = distance && weights.perceptualWeight > 0
      ? tf.mean(
        distance.distance(
          toClassifierSize(x, distance),
          toClassifierSize(reconstruction, distance),
        ),
      ) as tf.Scalar
      : tf.scalar(0);
    const kl = tf.mean(klToStandardNormal(posterior)) as tf.Scalar;
    const values = x.shape[1] * x.shape[2] * x.shape[3];
    const total = tf.addN([
      l1,
      tf.mul(weights.perceptualWeight, perceptual),
      tf.mul(weights.klWeight / values, kl),
    ]) as tf.Scalar;
    return { total, l1, perceptual, kl };
  });
}

/** Rows `indices` of `images` as one tensor [n, H, W, C]. */
function batchOf(
  data: AutoencoderData,
  shape: [number, number, number],
  indices: readonly number[],
  flips?: readonly boolean[],
): tf.Tensor4D {
  const size = shape[0] * shape[1] * shape[2];
  const x = new Float32Array(indices.length * size);
  indices.forEach((i, b) => {
    const image = data.images.subarray(i * size, (i + 1) * size);
    x.set(flips?.[b] ? horizontalFlip(image, shape) : image, b * size);
  });
  return tf.tensor4d(x, [indices.length, ...shape]);
}

/** The held-out scores of reconstructions D(μ(x)). */
export interface ReconstructionScores {
  /** Peak signal-to-noise ratio in dB, 10 log₁₀(1 / MSE) on [0, 1] pixel values, mean over images. */
  psnr: number;
  /** mean |x − x̂| on [−1, 1] values. */
  l1: number;
  /** Mean perceptual distance d(↓x, ↓x̂) (absent without a distance). */
  perceptual?: number;
  /** Mean KL of q(z | x), summed over the latent. */
  kl: number;
}

/**
 * Reconstruct `indices` through the posterior mean, x̂ = D(μ(x)), and score them (see
 * {@link ReconstructionScores}); PSNR is averaged over images, as image-quality tables report it.
 */
export async function reconstructionScores(
  autoencoder: AutoencoderKL,
  distance: PerceptualDistance | null,
  data: Pick<AutoencoderData, "images" | "count">,
  indices: readonly number[],
  batchSize = 128,
): Promise<ReconstructionScores> {
  const { imageSize: s, inChannels: c } = autoencoder.config;
  const shape: [number, number, number] = [s, s, c];
  const sums = { psnr: 0, l1: 0, perceptual: 0, kl: 0 };
  for (let start = 0; start < indices.length; start += batchSize) {
    const chunk = indices.slice(start, start + batchSize);
    const x = batchOf({ ...data, train: [], heldOut: [] }, shape, chunk);
    const scores = tf.tidy(() => {
      const posterior = autoencoder.encode(x);
      const xHat = tf.clipByValue(autoencoder.decode(posterior.mean), -1, 1) as tf.Tensor4D;
      // On [0, 1] values the squared error is a quarter of that on [−1, 1].
      const mse = tf.div(tf.mean(tf.squaredDifference(x, xHat), [1, 2, 3]), 4);
      const psnr = tf.mul(-10 / Math.LN10, tf.log(tf.maximum(mse, 1e-10)));
      const l1 = tf.mean(tf.abs(tf.sub(x, xHat)), [1, 2, 3]);
      const perceptual = distance
        ? distance.distance(toClassifierSize(x, distance), toClassifierSize(xHat, distance))
        : tf.zerosLike(l1);
      return tf.stack([psnr, l1, perceptual, klToStandardNormal(posterior)]).sum(1);
    });
    const [psnr, l1, perceptual, kl] = await scores.data();
    tf.dispose([x, scores]);
    sums.psnr += psnr;
    sums.l1 += l1;
    sums.perceptual += perceptual;
    sums.kl += kl;
  }
  const n = indices.length;
  return {
    psnr: sums.psnr / n,
    l1: sums.l1 / n,
    ...(distance ? { perceptual: sums.perceptual / n } : {}),
    kl: sums.kl / n,
  };
}

/** What {@link trainAutoencoder} ends with: the network (the caller disposes it) and its step. */
export interface AutoencoderRun {
  autoencoder: AutoencoderKL;
  step: number;
}

/**
 * Train an autoencoder of `config` on `data` for `training.steps` steps, resuming the run at
 * `options.checkpointPath` when there is one (the module comment says what it minimises). The
 * held-out reconstructions are scored at every checkpoint.
 *
 * @throws UserError when the loss is not finite (no update is applied, nothing is written)
 */
export async function trainAutoencoder(
  config: Partial<AutoencoderConfig>,
  distance: PerceptualDistance | null,
  data: AutoencoderData,
  training: AutoencoderTraining,
  options: SupervisedRunOptions,
): Promise<AutoencoderRun> {
  const autoencoder = new AutoencoderKL(config);
  const s = autoencoder.config.imageSize;
  const shape: [number, number, number] = [s, s, autoencoder.config.inChannels];
  const latent = autoencoder.latentShape;
  const latentSize = latent[0] * latent[1] * latent[2];
  try {
    const step = await trainSupervised(autoencoder, training, {
      what: "autoencoder",
      batchLoss: (rng: Random) => {
        const B = training.batchSize;
        const indices = Array.from({ length: B }, () => data.train[rng.int(0, data.train.length)]);
        const flips = indices.map(() => training.horizontalFlip && rng.uniform() < 0.5);
        const noise = rng.normals(B * latentSize);
        return () => {
          const x = batchOf(data, shape, indices, flips);
          const epsilon = tf.tensor4d(noise, [B, ...latent]);
          return autoencoderLoss(autoencoder, distance, x, epsilon, training).total;
        };
      },
      evaluate: async () => {
        const scores = await reconstructionScores(autoencoder, distance, data, data.heldOut);
        return { ...scores };
      },
    }, options);
    return { autoencoder, step };
  } catch (e) {
    autoencoder.dispose();
    throw e;
  }
}
