/**
 * The model zoo's registry: every network the book trains, as a named spec.
 *
 * A spec says everything a training run depends on (network, data, noise schedule, objective,
 * training per profile, seed), so that `deno task train NAME` can make it on any machine, and its
 * hash says whether a run or an artefact belongs to today's spec. Chapters name a spec and get
 * its trained weights through `loadPretrained` (lib/zoo/pretrained.ts); they never train the
 * `full` models themselves.
 *
 * @module
 */
import { sha256Hex } from "../runtime/files.ts";
import type { Profile } from "../runtime/options.ts";
import type { EmojiDatasetOptions } from "../data/emoji.ts";
import type { PredictionType } from "../core/parameterization.ts";
import type { TrainConfig } from "../training/trainer.ts";
import type { ModelConfig } from "../core/models/mod.ts";
import { UserError } from "../core/errors.ts";

/** The training options a spec fixes (paths and callbacks are the zoo's business). */
export type SpecTraining = Omit<
  Partial<TrainConfig>,
  "checkpointPath" | "metricsPath" | "prediction" | "minSnrGamma"
>;

/** A named model of the book. */
export interface ModelSpec {
  /** Registry name, also the artefact's folder `assets/models/NAME/`. */
  name: string;
  /** One line: what the model is and which chapters show it. */
  description: string;
  /** The network, as `createModel` builds it, per profile (`quick` may be a smaller one). */
  network: Record<Profile, Partial<ModelConfig> & { kind: ModelConfig["kind"] }>;
  /** The training images. */
  data: Pick<EmojiDatasetOptions, "size" | "vendors" | "categories" | "includeSkinTones" | "limit">;
  /** The noise schedule, by name and length. */
  schedule: { name: string; T: number };
  /** What the network predicts, and the loss weighting. */
  objective: { prediction: PredictionType; minSnrGamma: number | null };
  /** The run, per profile. */
  training: Record<Profile, SpecTraining>;
  /** Licence of the training data, recorded in the artefact's manifest. */
  dataLicence: string;
}

const EMOJI_LICENCE = "Twemoji images CC-BY 4.0 (Twitter); Noto Emoji Apache-2.0 (Google)";

/**
 * The 16×16 emoji U-Net of chapters 3–5: 32 base channels, multipliers [1, 2, 2] (16 → 8 → 4),
 * one residual block per level, self-attention at 4×4 and in the middle; about 1.1 M parameters.
 */
export const EMOJI16_UNET = {
  kind: "unet",
  imageSize: 16,
  baseChannels: 32,
  channelMultipliers: [1, 2, 2],
  resBlocksPerLevel: 1,
  attentionResolutions: [4],
  middleAttention: true,
  seed: 0,
} as const satisfies Partial<ModelConfig>;

/** The half-width U-Net of chapter 2's schedule comparison. */
const HALF_WIDTH_UNET = {
  kind: "unet",
  imageSize: 16,
  baseChannels: 16,
  channelMultipliers: [1, 2, 2],
  resBlocksPerLevel: 1,
  attentionResolutions: [4],
  seed: 0,
} as const satisfies Partial<ModelConfig>;

/** Chapter 4's run: ε-prediction, Adam with warm-up and cosine decay 10⁻³ → 10⁻⁵, EMA 0.999. */
const EMOJI16: ModelSpec = {
  name: "emoji16-unet",
  description: "the book's 16×16 emoji U-Net (chapters 4 and 5)",
  network: { quick: EMOJI16_UNET, full: EMOJI16_UNET },
  data: { size: 16 },
  schedule: { name: "cosine", T: 1000 },
  objective: { prediction: "epsilon", minSnrGamma: null },
  training: {
    quick: {
      steps: 240,
      batchSize: 32,
      learningRate: 1e-3,
      minLearningRate: 1e-5,
      warmupSteps: 20,
      emaDecay: 0.99,
      checkpointEvery: 60,
      sampleEvery: 120,
      logEvery: 10,
      sampleCount: 32,
      sampleSteps: 50,
      seed: 0,
    },
    full: {
      // 10,000 steps of 32 images: about an hour on a 2-core CPU with the native backend.
      steps: 10_000,
      batchSize: 32,
      learningRate: 1e-3,
      minLearningRate: 1e-5,
      warmupSteps: 200,
      emaDecay: 0.999,
      checkpointEvery: 250,
      sampleEvery: 1000,
      logEvery: 25,
      // The same 32 noise seeds every time, sampled from the EMA weights with 50 DDIM steps.
      sampleCount: 32,
      sampleSteps: 50,
      seed: 0,
    },
  },
  dataLicence: EMOJI_LICENCE,
};

/** Chapter 2's pair: the same network, batches and draws under two schedules. */
function scheduleComparison(schedule: "linear" | "cosine"): ModelSpec {
  const training = (steps: number, batchSize: number, logEvery: number, emaDecay: number) => ({
    steps,
    batchSize,
    learningRate: 1e-3,
    minLearningRate: 1e-5,
    warmupSteps: steps / 10,
    emaDecay,
    logEvery,
    checkpointEvery: 250,
    seed: 0,
  });
  return {
    name: `schedule16-${schedule}`,
    description: `chapter 2's half-width U-Net trained under the ${schedule} schedule`,
    network: { quick: HALF_WIDTH_UNET, full: HALF_WIDTH_UNET },
    data: { size: 16 },
    schedule: { name: schedule, T: 1000 },
    objective: { prediction: "epsilon", minSnrGamma: null },
    training: { quick: training(150, 16, 10, 0.99), full: training(2000, 32, 25, 0.999) },
    dataLicence: EMOJI_LICENCE,
  };
}

/** Every model of the book, by name. */
export const MODEL_SPECS: ReadonlyMap<string, ModelSpec> = new Map(
  [EMOJI16, scheduleComparison("linear"), scheduleComparison("cosine")].map((s) => [s.name, s]),
);

/** The spec named `name` (or `spec` itself); an unknown name is an error listing the known ones. */
export function modelSpec(name: string | ModelSpec): ModelSpec {
  if (typeof name !== "string") return name;
  const spec = MODEL_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown model "${name}"; the zoo has ${[...MODEL_SPECS.keys()].join(", ")} ` +
        `(deno task train --list)`,
    );
  }
  return spec;
}

/** JSON with object keys sorted, so that equal specs serialise alike. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
        : v,
  );
}

/** What one profile of a spec trains: the part of the spec a run must agree with. */
export function profileSpec(spec: ModelSpec, profile: Profile) {
  return {
    name: spec.name,
    profile,
    network: spec.network[profile],
    data: spec.data,
    schedule: spec.schedule,
    objective: spec.objective,
    training: spec.training[profile],
  };
}

/** Hex SHA-256 (first 16 digits) of one profile of a spec. */
export async function specHash(spec: ModelSpec, profile: Profile): Promise<string> {
  return (await sha256Hex(canonicalJson(profileSpec(spec, profile)))).slice(0, 16);
}
