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
import { CONDITIONING_HOLDOUTS, type Holdouts } from "../data/holdouts.ts";

/** The training options a spec fixes (paths and callbacks are the zoo's business). */
export type SpecTraining = Omit<
  Partial<TrainConfig>,
  "checkpointPath" | "metricsPath" | "prediction" | "minSnrGamma"
>;

/**
 * What a conditional spec's network is told about each image: its category (class labels y,
 * the dataset's `labels`), or its caption as token states of the zoo's CLIP `encoder`
 * (captions of `keywords` keywords, lib/data/captions.ts).
 */
export type SpecConditioning =
  | { kind: "class" }
  | { kind: "text"; encoder: string; keywords: number };

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
  /** Images kept out of `data` (every conditional model keeps out the same ones). */
  holdouts?: Holdouts;
  /** What the network is conditioned on; unconditional when absent. */
  conditioning?: SpecConditioning;
  /**
   * A latent diffusion model's first stage: the zoo's autoencoder (lib/zoo/autoencoder.ts) whose
   * scaled latents z·s of the `data` images the network trains on, and whose decoder turns its
   * samples back into images, x̂ = D(ẑ/s). Absent: the network works on pixels.
   */
  latent?: { autoencoder: string };
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

/**
 * Chapter 6's class-conditional U-Net: the book's U-Net with a class embedding added to the time
 * embedding, e = emb(t) + MLP(onehot(y)), y one of the 9 categories. Each sample's label is
 * replaced by the learned null class ∅ with probability 0.15 (per sample, not per batch), so
 * that one network gives ε_θ(x_t, y) and ε_θ(x_t, ∅) for classifier-free guidance.
 */
const CLASS16: ModelSpec = {
  name: "class16-unet",
  description: "chapter 6's class-conditional U-Net (9 categories, learned null class)",
  network: {
    quick: { ...EMOJI16_UNET, contextDim: 9, nullContext: "learned" },
    full: { ...EMOJI16_UNET, contextDim: 9, nullContext: "learned" },
  },
  data: { size: 16 },
  holdouts: CONDITIONING_HOLDOUTS,
  conditioning: { kind: "class" },
  schedule: { name: "cosine", T: 1000 },
  objective: { prediction: "epsilon", minSnrGamma: null },
  training: {
    quick: { ...EMOJI16.training.quick, contextDropout: 0.15 },
    full: {
      // 6,000 steps of 32 images: about 25 minutes on a 2-core CPU with the native backend,
      // the same time as the course's ContextUnet below.
      ...EMOJI16.training.full,
      steps: 6_000,
      warmupSteps: 120,
      checkpointEvery: 250,
      sampleEvery: 1000,
      contextDropout: 0.15,
    },
  },
  dataLicence: EMOJI_LICENCE,
};

/** The course's ContextUnet (n_feat = 64) with one context feature per category. */
const COURSE_CONTEXT_UNET = {
  kind: "contextUnet",
  imageSize: 16,
  nFeat: 64,
  nCFeat: 9,
  T: 500,
  nullContext: "zeros",
  seed: 0,
} as const satisfies Partial<ModelConfig>;

/** The course's run: Adam at 10⁻³ decaying linearly to 0, no EMA, flips or clipping. */
function courseTraining(steps: number, sampleEvery: number | null): SpecTraining {
  return {
    steps,
    batchSize: 32,
    learningRate: 1e-3,
    minLearningRate: 0,
    lrSchedule: "linear",
    gradClipNorm: null,
    emaDecay: 0,
    emaWarmup: false,
    horizontalFlip: false,
    contextDropout: 0.1,
    checkpointEvery: Math.min(250, steps / 2),
    sampleEvery,
    logEvery: 10,
    sampleCount: 36,
    sampleSteps: 50,
    seed: 0,
  };
}

/**
 * The DeepLearning.AI course's ContextUnet trained the course's way on the 9 categories: its
 * linear schedule β from 10⁻⁴ to 0.02 over T = 500, Adam at 10⁻³ decaying linearly to 0, no
 * EMA, no flips, and its context mask: the one-hot context is zeroed with probability 0.1.
 * Chapter 6 shows it beside the class-conditional U-Net at equal training time.
 */
const CONTEXT16: ModelSpec = {
  name: "context16-unet",
  description: "the course's ContextUnet on the 9 categories, trained the course's way (chapter 6)",
  network: { quick: COURSE_CONTEXT_UNET, full: COURSE_CONTEXT_UNET },
  data: { size: 16 },
  holdouts: CONDITIONING_HOLDOUTS,
  conditioning: { kind: "class" },
  schedule: { name: "linear", T: 500 },
  objective: { prediction: "epsilon", minSnrGamma: null },
  // 2,100 steps (at about 0.7 s each) take the class model's 25 minutes.
  training: { quick: courseTraining(100, null), full: courseTraining(2_100, 700) },
  dataLicence: EMOJI_LICENCE,
};

/**
 * The book's U-Net reading a caption: cross-attention at 8×8 and 4×4 and in the middle, queries
 * from the image features, keys and values from the frozen text encoder's token states of
 * `width` channels, softmax(Q Kᵀ/√d) V (Rombach et al. 2022).
 */
function textUnet(width: number) {
  return {
    ...EMOJI16_UNET,
    crossAttentionDim: width,
    crossAttentionResolutions: [8, 4],
    middleCrossAttention: true,
  } as const satisfies Partial<ModelConfig>;
}

/**
 * Chapter 6's text-conditional U-Net: trained on captions of three keywords ("red apple, fruit,
 * noto"), read through the tiny CLIP's frozen text tower; the empty prompt's states replace a
 * caption's with probability 0.1, the null of classifier-free guidance.
 */
const TEXT16: ModelSpec = {
  name: "text16-unet",
  description: "chapter 6's text-conditional U-Net (cross-attention to the tiny CLIP's tokens)",
  network: { quick: textUnet(64), full: textUnet(128) },
  data: { size: 16 },
  holdouts: CONDITIONING_HOLDOUTS,
  conditioning: { kind: "text", encoder: "tiny-clip", keywords: 3 },
  schedule: { name: "cosine", T: 1000 },
  objective: { prediction: "epsilon", minSnrGamma: null },
  training: {
    quick: { ...EMOJI16.training.quick, contextDropout: 0.1 },
    full: { ...CLASS16.training.full, contextDropout: 0.1 },
  },
  dataLicence: `${EMOJI_LICENCE}; captions from emojilib (MIT)`,
};

/**
 * The class-conditional U-Net of chapter 8's pixel-space baseline at 32×32: the book's U-Net with
 * a fourth level (32 → 16 → 8 → 4), attention at 4×4 and in the middle; about 1.5 M parameters.
 */
const EMOJI32_UNET = {
  ...EMOJI16_UNET,
  imageSize: 32,
  channelMultipliers: [1, 2, 2, 2],
  contextDim: 9,
  nullContext: "learned",
} as const satisfies Partial<ModelConfig>;

/**
 * Chapter 8's latent U-Net: the book's 16×16 U-Net (32, 64, 64 channels at 8, 4 and 2 px) on the
 * 8×8×4 latents of `emoji32-vae-f4`, class-conditional like class16-unet; about 1.1 M
 * parameters, the pixel baseline's widths a level.
 */
const LATENT32_UNET = {
  ...EMOJI16_UNET,
  imageSize: 8,
  inChannels: 4,
  contextDim: 9,
  nullContext: "learned",
} as const satisfies Partial<ModelConfig>;

/** The quick variant of a network: 16 base channels. */
function quickWidth<N extends Partial<ModelConfig>>(network: N): N {
  return { ...network, baseChannels: 16 };
}

/**
 * The bound on x̂₀ when latent32-unet samples: the scaled latents z·s of the training emoji lie
 * within ±4.62 (tests/autoencoder_test.ts checks that the bound holds), and without a bound the
 * cosine schedule's first step, x̂₀ = (x_T − √(1−ᾱ_T) ε̂)/√ᾱ_T with ᾱ_T = 2.4·10⁻⁹, turns any
 * error in ε̂ into latents of std in the hundreds, which decode to noise.
 */
export const LATENT_CLIP_RANGE = 5;

/**
 * Chapter 8's pair, trained for about the same wall time on the 32×32 emoji (the same holdouts,
 * class labels with a learned null class dropped in 15 %, cosine schedule, ε-prediction): the
 * pixel U-Net for 4,200 steps and the latent U-Net, whose steps cost about a sixth, for 27,000
 * (about 34 minutes each on a 2-core CPU with the native backend). The latent one trains on cached
 * latents without flips (a flipped latent is not the latent of the flipped image), and its grids
 * clip x̂₀ to ±{@link LATENT_CLIP_RANGE}, not to the images' ±1.
 */
function chapter8Spec(space: "pixel" | "latent"): ModelSpec {
  const pixel = space === "pixel";
  const network = pixel ? EMOJI32_UNET : LATENT32_UNET;
  const steps = pixel ? 4_200 : 27_000;
  const latentTraining = pixel ? {} : { horizontalFlip: false, clipRange: LATENT_CLIP_RANGE };
  return {
    name: pixel ? "emoji32-unet" : "latent32-unet",
    description: pixel
      ? "chapter 8's pixel-space baseline: a class-conditional U-Net on 32×32 emoji"
      : "chapter 8's latent diffusion model: a class-conditional U-Net on emoji32-vae-f4's latents",
    network: { quick: quickWidth(network), full: network },
    data: { size: 32 },
    holdouts: CONDITIONING_HOLDOUTS,
    conditioning: { kind: "class" },
    ...(pixel ? {} : { latent: { autoencoder: "emoji32-vae-f4" } }),
    schedule: { name: "cosine", T: 1000 },
    objective: { prediction: "epsilon", minSnrGamma: null },
    training: {
      quick: {
        ...EMOJI16.training.quick,
        steps: pixel ? 60 : 200,
        batchSize: 16,
        checkpointEvery: pixel ? 30 : 100,
        sampleEvery: null,
        sampleCount: 18,
        contextDropout: 0.15,
        ...latentTraining,
      },
      full: {
        ...EMOJI16.training.full,
        steps,
        warmupSteps: steps / 50,
        checkpointEvery: steps / 30,
        sampleEvery: steps / 3,
        logEvery: steps / 300,
        sampleCount: 36,
        contextDropout: 0.15,
        ...latentTraining,
      },
    },
    dataLicence: EMOJI_LICENCE,
  };
}

/** Every model of the book, by name. */
export const MODEL_SPECS: ReadonlyMap<string, ModelSpec> = new Map(
  [
    EMOJI16,
    scheduleComparison("linear"),
    scheduleComparison("cosine"),
    CLASS16,
    CONTEXT16,
    TEXT16,
    chapter8Spec("pixel"),
    chapter8Spec("latent"),
  ].map(
    (s) => [s.name, s],
  ),
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
    holdouts: spec.holdouts,
    conditioning: spec.conditioning,
    latent: spec.latent,
    schedule: spec.schedule,
    objective: spec.objective,
    training: spec.training[profile],
  };
}

/** Hex SHA-256 (first 16 digits) of one profile of a spec. */
export async function specHash(spec: ModelSpec, profile: Profile): Promise<string> {
  return await profileHash(profileSpec(spec, profile));
}

/**
 * The hash that names what a run of one profile trains: the first 16 hex digits of the SHA-256
 * of `record`'s {@link canonicalJson}. Every kind of artefact hashes its profile record so.
 */
export async function profileHash(record: unknown): Promise<string> {
  return (await sha256Hex(canonicalJson(record))).slice(0, 16);
}
