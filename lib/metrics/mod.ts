/**
 * How good a generative model's samples are, measured on feature vectors: the Fréchet distance
 * (FID's formula), the kernel distance (KID's), the Inception Score's formula on a classifier's
 * posteriors, and improved precision and recall. All in float64 on plain arrays; which network
 * makes the features is the caller's choice, and the name of a number should say it.
 *
 * @module
 */
export {
  type FrechetDistance,
  frechetDistance,
  type GaussianStatistics,
  gaussianStatistics,
} from "./fid.ts";
export {
  type KernelDistance,
  kernelDistance,
  type KernelDistanceDifference,
  kernelDistanceDifference,
  meanAndStd,
  mmd2,
  type MmdEstimator,
} from "./kid.ts";
export { type InceptionScore, inceptionScore } from "./inception_score.ts";
export { precisionRecall } from "./precision_recall.ts";
export {
  classifierFeatures,
  embed,
  type Embedding,
  type FeatureExtractor,
  type MeasuredSamples,
  measureSamples,
  nearestNeighbours,
  type Neighbour,
  pooledTo,
  type QualityOptions,
  type SampleQuality,
  sampleQuality,
  spearmanRho,
  subset,
} from "./evaluate.ts";
