/**
 * The kernel distance between two feature sets (Bińkowski et al., 2018, "KID" with InceptionV3's
 * features): the squared maximum mean discrepancy under the cubic polynomial kernel
 *
 *   k(x, y) = (x·y / d + 1)³,
 *
 *   MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(mn) Σ_{i,j} k(xᵢ, yⱼ).
 *
 * This is the unbiased estimator (torch-fidelity's default, `kid_subset_size` subsets,
 * "unbiased"): the two within-set sums leave out each point's kernel with itself, the cross sum
 * keeps every pair, so it works for sets of different sizes and pairs no sample with another
 * arbitrarily. torch-fidelity's "u-statistic" variant also drops the cross sum's diagonal, which
 * assumes the i-th real and i-th generated sample belong together; they do not. Being unbiased,
 * the estimate of two samples of the same distribution scatters around 0 and can be negative.
 *
 * KID is reported as the mean and standard deviation of MMD² over random subsets (of 1,000 in the
 * paper; fewer for the book's small sets), drawn without replacement.
 *
 * @module
 */
import { Random } from "../core/random.ts";
import type { Rows } from "./linalg.ts";

/** Which estimator of MMD² (see the module comment). */
export type MmdEstimator = "unbiased" | "u-statistic";

function kernelSum(
  x: Rows,
  xi: readonly number[],
  y: Rows,
  yi: readonly number[],
  dim: number,
  skip: "diagonal" | "none",
): number {
  let sum = 0;
  for (let a = 0; a < xi.length; a++) {
    const p = xi[a] * dim;
    for (let b = 0; b < yi.length; b++) {
      if (skip === "diagonal" && a === b) continue;
      const q = yi[b] * dim;
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += x[p + k] * y[q + k];
      sum += (dot / dim + 1) ** 3;
    }
  }
  return sum;
}

/**
 * MMD² of the rows `xi` of x and `yi` of y (all rows when omitted), `dim` values each.
 *
 * @throws Error for fewer than two rows on a side, or unequal sizes with "u-statistic"
 */
export function mmd2(
  x: Rows,
  y: Rows,
  dim: number,
  options: { xi?: readonly number[]; yi?: readonly number[]; estimator?: MmdEstimator } = {},
): number {
  const all = (rows: Rows) => Array.from({ length: rows.length / dim }, (_, i) => i);
  const xi = options.xi ?? all(x);
  const yi = options.yi ?? all(y);
  const [m, n] = [xi.length, yi.length];
  if (m < 2 || n < 2) throw new Error(`MMD² needs two samples on each side, got ${m} and ${n}`);
  const within = kernelSum(x, xi, x, xi, dim, "diagonal") / (m * (m - 1)) +
    kernelSum(y, yi, y, yi, dim, "diagonal") / (n * (n - 1));
  if ((options.estimator ?? "unbiased") === "unbiased") {
    return within - 2 * kernelSum(x, xi, y, yi, dim, "none") / (m * n);
  }
  if (m !== n) {
    throw new Error(`the u-statistic pairs samples: it needs equal sizes, got ${m} and ${n}`);
  }
  return within - 2 * kernelSum(x, xi, y, yi, dim, "diagonal") / (m * (m - 1));
}

/** KID: MMD² over subsets, their mean and standard deviation (population, as torch-fidelity). */
export interface KernelDistance {
  mean: number;
  std: number;
  /** MMD² of each subset. */
  subsets: number[];
  /** Rows a subset drew from each set. */
  subsetSize: number;
}

/** Mean and population standard deviation of `values`. */
export function meanAndStd(values: readonly number[]): { mean: number; std: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
  return { mean, std: Math.sqrt(variance) };
}

/**
 * KID of x (`dim` values a row) against y: MMD² on `subsets` random subsets of `subsetSize` rows
 * of each (default min(1000, both sizes)), drawn without replacement with a seeded generator.
 */
export function kernelDistance(
  x: Rows,
  y: Rows,
  dim: number,
  options: { subsets?: number; subsetSize?: number; seed?: number; estimator?: MmdEstimator } = {},
): KernelDistance {
  const [m, n] = [x.length / dim, y.length / dim];
  const size = Math.min(options.subsetSize ?? 1000, m, n);
  const random = new Random(options.seed ?? 0);
  const draw = (count: number) =>
    random.shuffle(Array.from({ length: count }, (_, i) => i)).slice(0, size);
  const values: number[] = [];
  for (let s = 0; s < (options.subsets ?? 100); s++) {
    values.push(mmd2(x, y, dim, { xi: draw(m), yi: draw(n), estimator: options.estimator }));
  }
  return { ...meanAndStd(values), subsets: values, subsetSize: size };
}

/** KID(a) − KID(b) over paired subsets: see {@link kernelDistanceDifference}. */
export interface KernelDistanceDifference {
  /** Mean and standard deviation of the per-subset differences. */
  mean: number;
  std: number;
  subsets: number;
  /** Rows each subset drew from a and from b. */
  subsetSize: number;
}

/**
 * Whether two sample sets a and b differ in KID against one reference r, by more than the draw
 * of their samples: on each of `subsets` subsets, MMD²(a_s, r_s) − MMD²(b_s, r_s), with a_s and
 * b_s drawn without replacement from a and b (half of the smaller set by default, so that the
 * subsets differ in their samples) and r_s shared by both (the reference's draw cancels).
 * A mean beyond about twice the differences' spread is a difference of these models, not of
 * these draws.
 */
export function kernelDistanceDifference(
  a: Rows,
  b: Rows,
  reference: Rows,
  dim: number,
  options: { subsets?: number; subsetSize?: number; seed?: number } = {},
): KernelDistanceDifference {
  const [na, nb, nr] = [a.length / dim, b.length / dim, reference.length / dim];
  const size = Math.min(options.subsetSize ?? Math.floor(Math.min(na, nb) / 2), na, nb, nr);
  if (size < 2) throw new Error(`kernelDistanceDifference: subsets of ${size} rows are too small`);
  const random = new Random(options.seed ?? 0);
  const draw = (count: number) =>
    random.shuffle(Array.from({ length: count }, (_, i) => i)).slice(0, size);
  const differences: number[] = [];
  for (let s = 0; s < (options.subsets ?? 50); s++) {
    const ri = draw(nr);
    differences.push(
      mmd2(a, reference, dim, { xi: draw(na), yi: ri }) -
        mmd2(b, reference, dim, { xi: draw(nb), yi: ri }),
    );
  }
  return { ...meanAndStd(differences), subsets: differences.length, subsetSize: size };
}
