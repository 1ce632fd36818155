/**
 * Improved precision and recall of a generative model (Kynkäänniemi et al., 2019): the real and
 * the generated feature vectors each span a manifold estimated as the union of balls around
 * every vector, of radius its distance to its k-th nearest neighbour in its own set;
 *
 *   precision = the fraction of generated vectors inside the real manifold (fidelity),
 *   recall    = the fraction of real vectors inside the generated manifold (coverage).
 *
 * FID folds both into one number; these two tell them apart: a model that draws a few emoji very
 * well has high precision and low recall. Distances are Euclidean, in float64; k = 3 as in the
 * paper.
 *
 * @module
 */
import type { Rows } from "./linalg.ts";

function squaredDistance(a: Rows, i: number, b: Rows, j: number, dim: number): number {
  let sum = 0;
  for (let k = 0; k < dim; k++) sum += (a[i * dim + k] - b[j * dim + k]) ** 2;
  return sum;
}

/** The squared distance of each row to its k-th nearest other row of the same set. */
export function kthNeighbourRadii(rows: Rows, count: number, dim: number, k: number): Float64Array {
  if (count <= k) throw new Error(`a ${k}-NN radius needs more than ${k} vectors, got ${count}`);
  const radii = new Float64Array(count);
  const distances = new Float64Array(count - 1);
  for (let i = 0; i < count; i++) {
    let at = 0;
    for (let j = 0; j < count; j++) {
      if (j !== i) distances[at++] = squaredDistance(rows, i, rows, j, dim);
    }
    radii[i] = distances.sort()[k - 1];
  }
  return radii;
}

/** The fraction of `queries` rows within the radius of at least one row of `manifold`. */
function coverage(queries: Rows, manifold: Rows, radii: Float64Array, dim: number): number {
  const [q, n] = [queries.length / dim, manifold.length / dim];
  let inside = 0;
  for (let i = 0; i < q; i++) {
    for (let j = 0; j < n; j++) {
      if (squaredDistance(queries, i, manifold, j, dim) <= radii[j]) {
        inside++;
        break;
      }
    }
  }
  return inside / q;
}

/**
 * Precision and recall of `fake` against `real` (rows of `dim` values), k-NN manifolds. The real
 * set's radii may be passed in (`realRadii`, from {@link kthNeighbourRadii} with the same k): a
 * reference scored against many sample sets needs them once.
 */
export function precisionRecall(
  real: Rows,
  fake: Rows,
  dim: number,
  k = 3,
  realRadii: Float64Array = kthNeighbourRadii(real, real.length / dim, dim, k),
): { precision: number; recall: number } {
  const fakeRadii = kthNeighbourRadii(fake, fake.length / dim, dim, k);
  return {
    precision: coverage(fake, real, realRadii, dim),
    recall: coverage(real, fake, fakeRadii, dim),
  };
}
