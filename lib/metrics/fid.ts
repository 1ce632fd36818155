/**
 * The Fréchet distance between Gaussians fitted to two sets of feature vectors (Heusel et al.,
 * 2017, "FID" when the features are InceptionV3's):
 *
 *   d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½.
 *
 * pytorch-fid computes the last term as tr √(Σ₁ Σ₂) with scipy's general `sqrtm`, which on a
 * near-singular product can return complex or non-finite values (it then adds 10⁻⁶ to the
 * diagonals and tries again). Σ₁ Σ₂ is similar to the symmetric Σ₁^½ Σ₂ Σ₁^½, so both have the
 * same eigenvalues λᵢ ≥ 0 and tr √(Σ₁ Σ₂) = Σᵢ √λᵢ; here the symmetric form is taken, whose
 * eigenvalues a symmetric solver gets to full precision, and the rounding below zero of a
 * rank-deficient covariance is clipped. Everything is float64.
 *
 * The distance depends on the feature network and falls with the number of samples N (the
 * estimate of Σ is biased): report it with both.
 *
 * @module
 */
import {
  meanAndCovariance,
  multiply,
  type Rows,
  sqrtPsd,
  symmetricEigen,
  trace,
} from "./linalg.ts";

/** A feature set as the Gaussian the distance compares: its mean, covariance, size and dimension. */
export interface GaussianStatistics {
  mean: Float64Array;
  covariance: Float64Array;
  /** How many vectors the statistics came from (N, to be reported beside the distance). */
  count: number;
  dim: number;
}

/** The statistics of `count` feature vectors of `dim` values (see linalg.ts: n − 1 normaliser). */
export function gaussianStatistics(rows: Rows, count: number, dim: number): GaussianStatistics {
  return { ...meanAndCovariance(rows, count, dim), count, dim };
}

/** The Fréchet distance and its three terms. */
export interface FrechetDistance {
  /** d², the distance as FID reports it (a squared distance). */
  distance: number;
  /** ‖μ₁ − μ₂‖². */
  meanTerm: number;
  /** tr Σ₁ + tr Σ₂. */
  traceTerm: number;
  /** tr (Σ₁^½ Σ₂ Σ₁^½)^½. */
  crossTerm: number;
}

/**
 * d² between two sets' Gaussians (see the module comment).
 *
 * @throws Error when the two sets' dimensions differ
 */
export function frechetDistance(a: GaussianStatistics, b: GaussianStatistics): FrechetDistance {
  if (a.dim !== b.dim) {
    throw new Error(
      `the feature sets have ${a.dim} and ${b.dim} dimensions: compare like with like`,
    );
  }
  const d = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (a.mean[i] - b.mean[i]) ** 2;
  const root = sqrtPsd(a.covariance, d);
  const inner = multiply(multiply(root, b.covariance, d), root, d);
  const { values } = symmetricEigen(inner, d);
  let crossTerm = 0;
  for (const value of values) crossTerm += Math.sqrt(Math.max(value, 0));
  const traceTerm = trace(a.covariance, d) + trace(b.covariance, d);
  return { distance: meanTerm + traceTerm - 2 * crossTerm, meanTerm, traceTerm, crossTerm };
}
