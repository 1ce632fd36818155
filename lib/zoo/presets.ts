/**
 * The named configurations the book trains and samples: one definition of chapter 4's run,
 * shared by the chapters that show it, `deno task train` (the same run, headless, for a GPU or a
 * long night) and the tests.
 *
 * @module
 */
import type { Profile } from "../book/runtime.ts";
import { encodePng, imageGrid, toRgbaImages } from "../core/images.ts";
import type { TrainCallbacks, TrainConfig } from "../training/trainer.ts";
import type { UNetConfig } from "../core/models/mod.ts";

/**
 * The 16×16 emoji U-Net of chapters 3–5: 32 base channels, multipliers [1, 2, 2] (16 → 8 → 4),
 * one residual block per level, self-attention at 4×4 and in the middle; about 1.1 M parameters.
 */
export const EMOJI16_UNET: Readonly<Partial<UNetConfig>> = {
  imageSize: 16,
  baseChannels: 32,
  channelMultipliers: [1, 2, 2],
  resBlocksPerLevel: 1,
  attentionResolutions: [4],
  middleAttention: true,
  seed: 0,
};

/** The noise schedule the emoji U-Net is trained under. */
export const EMOJI16_SCHEDULE = { name: "cosine", T: 1000 } as const;

/**
 * Chapter 4's training run by profile: `quick` shows the loss falling within CI's budget;
 * `full` trains the model the book publishes (ε-prediction, Adam with warm-up and cosine decay
 * from 10⁻³ to 10⁻⁵, EMA d = 0.999).
 */
export const EMOJI16_TRAINING: Readonly<Record<Profile, Partial<TrainConfig>>> = {
  quick: {
    steps: 240,
    batchSize: 32,
    warmupSteps: 20,
    emaDecay: 0.99,
    checkpointEvery: 60,
    sampleEvery: 120,
    logEvery: 10,
  },
  full: {
    steps: 10_000,
    batchSize: 64,
    warmupSteps: 200,
    emaDecay: 0.999,
    checkpointEvery: 250,
    sampleEvery: 1000,
    logEvery: 25,
  },
};

/** Where chapter 4's run of `profile` keeps its checkpoint, metrics and sample grids. */
export function emoji16RunDir(profile: Profile): string {
  return `.cache/runs/04-training-${profile}`;
}

/** The complete training configuration of chapter 4's run of `profile`. */
export function emoji16TrainConfig(profile: Profile): Partial<TrainConfig> {
  const dir = emoji16RunDir(profile);
  return {
    ...EMOJI16_TRAINING[profile],
    learningRate: 1e-3,
    minLearningRate: 1e-5,
    seed: 0,
    checkpointPath: `${dir}/checkpoint.bin`,
    metricsPath: `${dir}/metrics.jsonl`,
    // The same 32 noise seeds every time, sampled from the EMA weights with 50 DDIM steps.
    sampleCount: 32,
    sampleSteps: 50,
  };
}

/** An `onSamples` callback that writes each grid as `dir/samples-000500.png` (8 columns, 2×). */
export function sampleGridWriter(dir: string): NonNullable<TrainCallbacks["onSamples"]> {
  return async ({ step, images }) => {
    const grid = imageGrid(await toRgbaImages(images), { columns: 8, scale: 2 });
    await Deno.writeFile(`${dir}/samples-${String(step).padStart(6, "0")}.png`, encodePng(grid));
  };
}
