/**
 * The zoo's feature networks: the emoji classifier whose features the book's metrics use
 * (`emoji-classifier`), and the perceptual distance calibrated on its feature maps
 * (`emoji-perceptual`). Like the denoisers of lib/zoo/specs.ts, each is a named spec that
 * `deno task train NAME` trains (resuming its run in `.cache/runs/NAME-PROFILE/`) and exports
 * to `assets/models/NAME/` with a manifest; the chapters load them with {@link loadClassifierArtefact}
 * and {@link loadPerceptualArtefact}, and the quick profile trains its own small variants.
 *
 * The classifier trains on about 80 % of the emoji and is scored on the rest, split by emoji
 * identity (lib/data/splits.ts): both vendors' drawings of an emoji are on the same side.
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import { writeFileAtomic } from "../runtime/files.ts";
import { activeBackendLabel } from "../runtime/backend.ts";
import { UserError } from "../core/errors.ts";
import { Random } from "../core/random.ts";
import type { ClassifierConfig, FeatureClassifier } from "../core/models/classifier.ts";
import { PerceptualDistance } from "../core/models/perceptual.ts";
import { type EmojiDataset, loadEmojiDataset } from "../data/emoji.ts";
import { emojiIdentity, type Split, splitByIdentity } from "../data/splits.ts";
import {
  type ClassifierMetrics,
  type ClassifierTraining,
  heldOutAccuracy,
  loadClassifier,
  saveClassifier,
  trainClassifier,
} from "../training/classification.ts";
import {
  calibrateWeights,
  makeTriplets,
  pixelDistances,
  tripletDifferences,
  type Triplets,
  twoAfcScore,
  weightedDistances,
} from "../training/perceptual_calibration.ts";
import { loadCheckpoint, saveCheckpoint } from "../training/checkpoint.ts";
import { type ArtefactManifest, fileHashes } from "./manifest.ts";
import {
  checkedArtefact,
  closeNetworkRun,
  LICENCE,
  type NetworkRunOptions,
  type NetworkRunResult,
  openNetworkRun,
  readRunMetrics,
  runFiles,
  writeRunManifest,
} from "./network_runs.ts";
import { profileHash } from "./specs.ts";

/** The classifier's spec. */
export interface ClassifierSpec {
  name: string;
  description: string;
  /** The network; its heads are the category and subcategory of the data. */
  network: Record<Profile, Omit<Partial<ClassifierConfig>, "heads" | "kind">>;
  /** The images: size and (quick) a limit. */
  data: { size: 16; limit?: number };
  /** Fraction of emoji held out, and the split's seed. */
  heldOut: { fraction: number; seed: number };
  training: Record<Profile, ClassifierTraining>;
}

/** The perceptual distance's spec: its classifier and its triplets. */
export interface PerceptualSpec {
  name: string;
  description: string;
  /** The classifier whose stage outputs it weighs. */
  classifier: string;
  /** Triplets made from the classifier's training images (calibration) and held-out ones (score). */
  triplets: Record<Profile, { calibration: number; heldOut: number; seed: number }>;
  /** Adam on the channel weights. */
  calibration: Record<Profile, { steps: number; learningRate: number }>;
}

/**
 * The classifier of chapter 7: stages of 32, 64 and 128 channels at 16, 8 and 4 px, 128-d
 * features, a category head (9) and a subcategory head (98); about 0.3 M parameters.
 */
export const EMOJI_CLASSIFIER: ClassifierSpec = {
  name: "emoji-classifier",
  description: "the feature classifier of the book's metrics (chapter 7)",
  network: {
    quick: { imageSize: 16, channels: [16, 32, 64], groups: 8, seed: 0 },
    full: { imageSize: 16, channels: [32, 64, 128], groups: 8, seed: 0 },
  },
  data: { size: 16 },
  heldOut: { fraction: 0.2, seed: 0 },
  training: {
    quick: {
      steps: 150,
      batchSize: 32,
      learningRate: 2e-3,
      minLearningRate: 1e-4,
      warmupSteps: 15,
      weightDecay: 5e-4,
      maxShift: 1,
      checkpointEvery: 75,
      logEvery: 25,
      seed: 0,
    },
    full: {
      steps: 4000,
      batchSize: 64,
      learningRate: 2e-3,
      minLearningRate: 1e-5,
      warmupSteps: 200,
      weightDecay: 5e-4,
      maxShift: 1,
      checkpointEvery: 500,
      logEvery: 50,
      seed: 0,
    },
  },
};

/** The perceptual distance of chapter 7, on `emoji-classifier`'s three stages (224 channels). */
export const EMOJI_PERCEPTUAL: PerceptualSpec = {
  name: "emoji-perceptual",
  description: "the learned perceptual distance on the emoji classifier's feature maps (chapter 7)",
  classifier: "emoji-classifier",
  triplets: {
    quick: { calibration: 400, heldOut: 200, seed: 0 },
    full: { calibration: 6000, heldOut: 2000, seed: 0 },
  },
  calibration: {
    quick: { steps: 100, learningRate: 0.05 },
    full: { steps: 400, learningRate: 0.05 },
  },
};

/** Every feature network of the zoo, by name. */
export const FEATURE_NETWORK_SPECS: ReadonlyMap<string, ClassifierSpec | PerceptualSpec> = new Map<
  string,
  ClassifierSpec | PerceptualSpec
>([[EMOJI_CLASSIFIER.name, EMOJI_CLASSIFIER], [EMOJI_PERCEPTUAL.name, EMOJI_PERCEPTUAL]]);

/** Whether a feature network spec is a classifier's (the perceptual distance's is not). */
export function isClassifierSpec(spec: ClassifierSpec | PerceptualSpec): spec is ClassifierSpec {
  return "network" in spec;
}

/** One profile of a feature network's spec: what its run and artefact must agree with. */
export function featureProfile(
  spec: ClassifierSpec | PerceptualSpec,
  profile: Profile,
): Record<string, unknown> {
  return isClassifierSpec(spec)
    ? {
      name: spec.name,
      profile,
      network: spec.network[profile],
      data: spec.data,
      heldOut: spec.heldOut,
      training: spec.training[profile],
    }
    : {
      name: spec.name,
      profile,
      classifier: spec.classifier,
      triplets: spec.triplets[profile],
      calibration: spec.calibration[profile],
    };
}

/** Hex SHA-256 (16 digits) of a profile of a feature network's spec. */
export async function featureSpecHash(
  spec: ClassifierSpec | PerceptualSpec,
  profile: Profile,
): Promise<string> {
  return await profileHash(featureProfile(spec, profile));
}

/** The emoji with their two label sets and the identity split of `spec`. */
export interface ClassifierData {
  dataset: EmojiDataset;
  /** Subcategory names; label k means `subcategories[k]`. */
  subcategories: string[];
  /** Category labels, then subcategory labels. */
  labels: [Int32Array, Int32Array];
  split: Split;
}

/** Load the classifier's data (see {@link ClassifierData}). */
export async function classifierData(
  spec: ClassifierSpec = EMOJI_CLASSIFIER,
): Promise<ClassifierData> {
  const dataset = await loadEmojiDataset(spec.data);
  const subcategories = [...new Set(dataset.meta.map((m) => m.subcategory))];
  const index = new Map(subcategories.map((s, i) => [s, i]));
  const sub = Int32Array.from(dataset.meta, (m) => index.get(m.subcategory)!);
  return {
    dataset,
    subcategories,
    labels: [dataset.labels, sub],
    split: splitByIdentity(dataset.meta, spec.heldOut.fraction, spec.heldOut.seed),
  };
}

/**
 * Train (or continue) the feature network `name` and export it when finished. The perceptual
 * distance needs its classifier's artefact of the same profile (made first when missing in the
 * quick profile).
 */
export async function trainFeatureNetwork(
  name: string,
  options: NetworkRunOptions = {},
): Promise<NetworkRunResult> {
  const spec = FEATURE_NETWORK_SPECS.get(name);
  if (!spec) throw new UserError(`unknown feature network "${name}"`);
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const opened = await openNetworkRun(name, await featureSpecHash(spec, profile), options);
  if ("upToDate" in opened) return opened;
  const { dir, out, hash, movedAside } = opened;
  if (!isClassifierSpec(spec)) {
    const artefact = await calibratePerceptual(spec, profile, root, out, hash);
    return { dir, step: 1, steps: 1, movedAside, artefact };
  }
  const data = await classifierData(spec);
  const training = spec.training[profile];
  const run = await trainClassifier(
    classifierConfig(spec, profile, data),
    {
      images: data.dataset.images,
      count: data.dataset.count,
      labels: data.labels,
      train: data.split.train,
      heldOut: data.split.heldOut,
    },
    training,
    runFiles(dir, options),
  );
  return await closeNetworkRun(
    opened,
    training.steps,
    run.step,
    run.classifier,
    () => exportClassifier(spec, profile, run.classifier, data, dir, out, hash),
  );
}

function classifierConfig(spec: ClassifierSpec, profile: Profile, data: ClassifierData) {
  return {
    ...spec.network[profile],
    heads: [
      { name: "category", classes: data.dataset.categories.length },
      { name: "subcategory", classes: data.subcategories.length },
    ],
  };
}

async function exportClassifier(
  spec: ClassifierSpec,
  profile: Profile,
  classifier: FeatureClassifier,
  data: ClassifierData,
  run: string,
  out: string,
  hash: string,
): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  await saveClassifier(`${out}/weights.ckpt`, classifier, {
    categories: data.dataset.categories,
    subcategories: data.subcategories,
  });
  const images = data.dataset.images;
  await writeRunManifest(out, run, {
    spec,
    profile,
    hash,
    profileSpec: featureProfile(spec, profile),
    images,
    count: data.dataset.count,
    licence: LICENCE,
    steps: spec.training[profile].steps,
    batchSize: spec.training[profile].batchSize,
    parameters: classifier.parameterCount(),
  }, {
    heldOutAccuracy: await heldOutAccuracy(classifier, {
      images,
      labels: data.labels,
    }, data.split.heldOut),
  });
  return out;
}

/** A loaded artefact's folder and manifest, checked against today's spec. */
async function artefactOf(
  name: string,
  profile: Profile,
  root: string,
): Promise<{ dir: string; manifest: ArtefactManifest }> {
  const spec = FEATURE_NETWORK_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown feature network "${name}"; the zoo has ${
        [...FEATURE_NETWORK_SPECS.keys()].join(", ")
      }`,
    );
  }
  return await checkedArtefact(
    name,
    await featureSpecHash(spec, profile),
    profile,
    root,
    (restart) => trainFeatureNetwork(name, { profile, root, restart, progress: false }),
  );
}

/** A trained classifier with its artefact's manifest and class names. */
export interface LoadedClassifier {
  classifier: FeatureClassifier;
  manifest: ArtefactManifest;
  categories: string[];
  subcategories: string[];
  /** The run's metrics records (loss, speed, held-out accuracy at checkpoints). */
  metrics(): Promise<ClassifierMetrics[]>;
}

/** The zoo's classifier `name` (full: the committed artefact; quick: trained when needed). */
export async function loadClassifierArtefact(
  options: { name?: string; profile?: Profile; root?: string } = {},
): Promise<LoadedClassifier> {
  const { dir, manifest } = await artefactOf(
    options.name ?? EMOJI_CLASSIFIER.name,
    options.profile ?? "full",
    options.root ?? ".",
  );
  const checkpoint = await loadCheckpoint(`${dir}/weights.ckpt`);
  const classifier = await loadClassifier(`${dir}/weights.ckpt`);
  return {
    classifier,
    manifest,
    categories: checkpoint.state.categories as string[],
    subcategories: checkpoint.state.subcategories as string[],
    metrics: () => readRunMetrics(`${dir}/metrics.jsonl`),
  };
}

/** 2AFC scores on held-out triplets, by distance. */
export interface TwoAfcScores {
  /** The calibrated distance. */
  calibrated: number;
  /** The same distance with every weight 1 (LPIPS's "baseline"). */
  uncalibrated: number;
  /** Squared L2 in pixels. */
  pixelL2: number;
  /** The calibrated distance's score on each kind of triplet, and L2's. */
  byKind: Record<string, { calibrated: number; pixelL2: number; count: number }>;
}

/** The triplets of `spec`: from the classifier's training images, and from its held-out ones. */
export async function perceptualTriplets(
  spec: PerceptualSpec,
  profile: Profile,
): Promise<{ calibration: Triplets; heldOut: Triplets }> {
  const { dataset, split } = await classifierData(
    FEATURE_NETWORK_SPECS.get(spec.classifier) as ClassifierSpec,
  );
  const shape = [dataset.size, dataset.size, 3] as const;
  const identity = (i: number) => emojiIdentity(dataset.meta[i]);
  const { calibration, heldOut, seed } = spec.triplets[profile];
  return {
    calibration: makeTriplets(
      dataset.images,
      shape,
      split.train,
      identity,
      calibration,
      new Random(seed),
    ),
    heldOut: makeTriplets(
      dataset.images,
      shape,
      split.heldOut,
      identity,
      heldOut,
      new Random(seed + 1),
    ),
  };
}

/** The 2AFC scores of the distance with `weights` (and with every w = 1, and of L2) on `test`. */
export async function twoAfcScores(
  classifier: FeatureClassifier,
  weights: Float32Array,
  test: Triplets,
): Promise<TwoAfcScores> {
  const D = await tripletDifferences(classifier, test);
  const ones = new Float32Array(D.channels).fill(1);
  const calibrated = [
    weightedDistances(D.toFirst, weights),
    weightedDistances(D.toSecond, weights),
  ];
  const pixel = pixelDistances(test);
  const byKind: TwoAfcScores["byKind"] = {};
  for (const kind of new Set(test.kinds)) {
    const at = test.kinds.flatMap((k, n) => (k === kind ? [n] : []));
    const pick = (a: ArrayLike<number>) => at.map((n) => a[n]);
    const answers = Uint8Array.from(at, (n) => test.firstCloser[n]);
    byKind[kind] = {
      calibrated: twoAfcScore(pick(calibrated[0]), pick(calibrated[1]), answers),
      pixelL2: twoAfcScore(pick(pixel.d0), pick(pixel.d1), answers),
      count: at.length,
    };
  }
  return {
    calibrated: twoAfcScore(calibrated[0], calibrated[1], test.firstCloser),
    uncalibrated: twoAfcScore(
      weightedDistances(D.toFirst, ones),
      weightedDistances(D.toSecond, ones),
      test.firstCloser,
    ),
    pixelL2: twoAfcScore(pixel.d0, pixel.d1, test.firstCloser),
    byKind,
  };
}

async function calibratePerceptual(
  spec: PerceptualSpec,
  profile: Profile,
  root: string,
  out: string,
  hash: string,
): Promise<string> {
  const { classifier, manifest: classifierManifest } = await loadClassifierArtefact({
    name: spec.classifier,
    profile,
    root,
  });
  try {
    const triplets = await perceptualTriplets(spec, profile);
    const started = performance.now();
    const { weights, losses } = calibrateWeights(
      await tripletDifferences(classifier, triplets.calibration),
      triplets.calibration.firstCloser,
      spec.calibration[profile],
    );
    const seconds = (performance.now() - started) / 1000;
    const scores = await twoAfcScores(classifier, weights, triplets.heldOut);
    await Deno.mkdir(out, { recursive: true });
    await saveCheckpoint(`${out}/weights.ckpt`, {
      step: spec.calibration[profile].steps,
      modelConfig: classifier.config,
      state: {
        classifier: spec.classifier,
        classifierWeights: classifierManifest.files["weights.ckpt"],
        losses,
      },
      tensors: new Map([["weights", { shape: [weights.length], values: weights }]]),
    });
    const manifest: ArtefactManifest & { twoAfc: TwoAfcScores } = {
      name: spec.name,
      description: spec.description,
      profile,
      specHash: hash,
      spec: featureProfile(spec, profile),
      dataset: { ...classifierManifest.dataset },
      steps: spec.calibration[profile].steps,
      batchSize: spec.triplets[profile].calibration,
      training: [{
        where: activeBackendLabel(),
        steps: spec.calibration[profile].steps,
        seconds: Math.round(seconds),
      }],
      finalLoss: losses.at(-1)!,
      parameters: weights.length,
      files: await fileHashes(out),
      twoAfc: scores,
    };
    await writeFileAtomic(`${out}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
    return out;
  } finally {
    classifier.dispose();
  }
}

/** The calibrated perceptual distance (with its classifier, which `dispose` frees too). */
export interface LoadedPerceptual {
  distance: PerceptualDistance;
  manifest: ArtefactManifest & { twoAfc: TwoAfcScores };
  classifier: LoadedClassifier;
  dispose(): void;
}

/** The zoo's perceptual distance (full: committed; quick: calibrated when needed). */
export async function loadPerceptualArtefact(
  options: { profile?: Profile; root?: string } = {},
): Promise<LoadedPerceptual> {
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  let { dir, manifest } = await artefactOf(EMOJI_PERCEPTUAL.name, profile, root);
  const classifier = await loadClassifierArtefact({
    name: EMOJI_PERCEPTUAL.classifier,
    profile,
    root,
  });
  const weights = classifier.manifest.files["weights.ckpt"];
  let checkpoint = await loadCheckpoint(`${dir}/weights.ckpt`);
  if (checkpoint.state.classifierWeights !== weights && profile === "quick") {
    // The quick classifier was made again since (a restart): calibrate on the new one.
    await trainFeatureNetwork(EMOJI_PERCEPTUAL.name, {
      profile,
      root,
      restart: true,
      progress: false,
    });
    ({ dir, manifest } = await artefactOf(EMOJI_PERCEPTUAL.name, profile, root));
    checkpoint = await loadCheckpoint(`${dir}/weights.ckpt`);
  }
  if (checkpoint.state.classifierWeights !== weights) {
    classifier.classifier.dispose();
    throw new UserError(
      `${dir} was calibrated on other weights of ${EMOJI_PERCEPTUAL.classifier} than ` +
        `${classifier.manifest.name}'s of today; calibrate it again with ` +
        `\`deno task train ${EMOJI_PERCEPTUAL.name} --restart\`.`,
    );
  }
  const distance = new PerceptualDistance(
    classifier.classifier,
    checkpoint.tensors.get("weights")!.values,
  );
  return {
    distance,
    manifest: manifest as LoadedPerceptual["manifest"],
    classifier,
    dispose() {
      distance.dispose();
      classifier.classifier.dispose();
    },
  };
}
