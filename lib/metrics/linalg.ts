/**
 * The linear algebra the metrics need, in float64 on plain arrays: the mean and covariance of a
 * set of feature vectors, and the eigendecomposition of a symmetric matrix (cyclic Jacobi), from
 * which a positive semi-definite matrix gets its square root. Feature dimensions here are small
 * (64 to 128), where Jacobi's O(d³) a sweep is milliseconds and its accuracy is the best there is
 * for symmetric matrices: every eigenvalue to a few units of the last place of the largest.
 *
 * Matrices are row-major `Float64Array`s of d × d.
 *
 * @module
 */

/** Rows of `count` vectors of `dim` values, one after another. */
export type Rows = Float32Array | Float64Array | readonly number[];

/**
 * The sample mean μ = (1/n) Σ xᵢ and covariance Σ = (1/(n − 1)) Σ (xᵢ − μ)(xᵢ − μ)ᵀ (the n − 1
 * normaliser of numpy's `cov`, as pytorch-fid uses), accumulated in float64 from centred values.
 *
 * @throws Error when there are fewer than two vectors or the array does not hold n·d values
 */
export function meanAndCovariance(
  rows: Rows,
  count: number,
  dim: number,
): { mean: Float64Array; covariance: Float64Array } {
  if (count < 2) throw new Error(`a covariance needs at least two vectors, got ${count}`);
  if (rows.length !== count * dim) {
    throw new Error(
      `${count} vectors of ${dim} values need ${count * dim} numbers, got ${rows.length}`,
    );
  }
  const mean = new Float64Array(dim);
  for (let i = 0; i < count; i++) for (let j = 0; j < dim; j++) mean[j] += rows[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= count;
  const covariance = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < dim; j++) centred[j] = rows[i * dim + j] - mean[j];
    for (let a = 0; a < dim; a++) {
      const ca = centred[a];
      for (let b = a; b < dim; b++) covariance[a * dim + b] += ca * centred[b];
    }
  }
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const value = covariance[a * dim + b] / (count - 1);
      covariance[a * dim + b] = value;
      covariance[b * dim + a] = value;
    }
  }
  return { mean, covariance };
}

/** C = A B for d × d matrices. */
export function multiply(a: Float64Array, b: Float64Array, dim: number): Float64Array {
  const c = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let k = 0; k < dim; k++) {
      const aik = a[i * dim + k];
      if (aik === 0) continue;
      for (let j = 0; j < dim; j++) c[i * dim + j] += aik * b[k * dim + j];
    }
  }
  return c;
}

/** The trace of a d × d matrix. */
export function trace(a: Float64Array, dim: number): number {
  let sum = 0;
  for (let i = 0; i < dim; i++) sum += a[i * dim + i];
  return sum;
}

/**
 * Eigenvalues λ and eigenvectors V (columns) of a symmetric d × d matrix, A = V diag(λ) Vᵀ, by
 * cyclic Jacobi rotations until the off-diagonal part is below 1e-15 of the matrix's norm (at
 * most 100 sweeps). The input is not changed; only its upper triangle is read.
 */
export function symmetricEigen(
  matrix: Float64Array,
  dim: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) a[i * dim + j] = a[j * dim + i] = matrix[i * dim + j];
  }
  const v = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) v[i * dim + i] = 1;
  let norm = 0;
  for (let i = 0; i < dim * dim; i++) norm += a[i] * a[i];
  const tolerance = 1e-30 * norm;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < dim; p++) for (let q = p + 1; q < dim; q++) off += a[p * dim + q] ** 2;
    if (off <= tolerance) break;
    for (let p = 0; p < dim; p++) {
      for (let q = p + 1; q < dim; q++) {
        const apq = a[p * dim + q];
        if (apq === 0) continue;
        // The rotation that zeroes a[p][q]: tan θ = t, from cot 2θ = (a_qq − a_pp)/(2 a_pq).
        const theta = (a[q * dim + q] - a[p * dim + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < dim; k++) {
          const akp = a[k * dim + p], akq = a[k * dim + q];
          a[k * dim + p] = c * akp - s * akq;
          a[k * dim + q] = s * akp + c * akq;
        }
        for (let k = 0; k < dim; k++) {
          const apk = a[p * dim + k], aqk = a[q * dim + k];
          a[p * dim + k] = c * apk - s * aqk;
          a[q * dim + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < dim; k++) {
          const vkp = v[k * dim + p], vkq = v[k * dim + q];
          v[k * dim + p] = c * vkp - s * vkq;
          v[k * dim + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(dim);
  for (let i = 0; i < dim; i++) values[i] = a[i * dim + i];
  return { values, vectors: v };
}

/**
 * The square root S = V diag(√max(λ, 0)) Vᵀ of a symmetric positive semi-definite matrix, its
 * eigenvalues below zero (rounding, in a rank-deficient covariance) taken as zero.
 */
export function sqrtPsd(matrix: Float64Array, dim: number): Float64Array {
  const { values, vectors } = symmetricEigen(matrix, dim);
  const roots = values.map((x) => Math.sqrt(Math.max(x, 0)));
  const s = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      let sum = 0;
      for (let k = 0; k < dim; k++) sum += vectors[i * dim + k] * roots[k] * vectors[j * dim + k];
      s[i * dim + j] = s[j * dim + i] = sum;
    }
  }
  return s;
}
