/**
 * The zoo's DreamBooth fine-tunes (chapter 9; Ruiz et al. 2023): the whole U-Net of the book's
 * text-conditional model fine-tuned on one subject it never saw, the teddy bear
 * (lib/data/holdouts.ts), bound to a rare word of the text encoder's vocabulary, and the
 * same run with the class prior preserved:
 *
 *   L(θ) = E‖ε − ε_θ(x_t, t, τ("xk bear, twemoji"))‖² + λ E‖ε′ − ε_θ(x′_t′, t′, τ("bear, twemoji"))‖²
 *
 * x the subject's images (both vendors' drawings, mirrored and shifted by a pixel: 20 from 2),
 * x′ class images the base itself drew for the class prompt, λ the prior's weight (1, as the
 * paper; 0 trains on the subject alone). The text encoder stays frozen: the identifier is a word
 * it already has, one of the rarest of its vocabulary (a country code that two flags' captions
 * use), so that its prior is weak, as "sks" is in Stable Diffusion's.
 *
 * The recipe scales diffusers' DreamBooth script (Adam at 5e-6, 200 class images, 400 steps of
 * one image, on a model that pretrained at 1e-4) to this model, which pretrained at 1e-3: 1e-4,
 * 200 class images, 300 steps of 4 subject images and 4 class images (about 25 s here). The
 * artefact is the whole fine-tuned network in float16 (`weights.ckpt`), the size a full
 * fine-tune costs beside an adapter.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Profile } from "../runtime/options.ts";
import { UserError } from "../core/errors.ts";
import type { DiffusionModel } from "../core/models/mod.ts";
import { loadEmojiDataset } from "../data/emoji.ts";
import { STYLE_WORDS } from "../data/captions.ts";
import { holdoutSplit } from "../data/holdouts.ts";
import { horizontalFlip, shift } from "../data/distortions.ts";
import { loadModel, saveModel } from "../training/checkpoint.ts";
import { type CaptionStates, train, type TrainingData } from "../training/trainer.ts";
import { loadClipArtefact } from "./clip_network.ts";
import type { ArtefactManifest } from "./manifest.ts";
import { loadPretrained, type Pretrained } from "./pretrained.ts";
import { promptEncoder, samplePrompts } from "./prompts.ts";
import { modelSpec, profileHash, specHash } from "./specs.ts";
import {
  checkedArtefact,
  closeNetworkRun,
  LICENCE,
  type NetworkRunOptions,
  type NetworkRunResult,
  openNetworkRun,
  writeRunManifest,
} from "./network_runs.ts";

/** A DreamBooth fine-tune of a zoo model. */
export interface DreamBoothSpec {
  name: string;
  description: string;
  /** The zoo's text-conditional model it fine-tunes (its holdouts' unseen subject). */
  base: string;
  /** The rare word that names the subject, [V] of "a [V] dog". */
  identifier: string;
  /** The subject's class noun, as the base's captions say it. */
  classNoun: string;
  /** The shifts (dy, dx) in px each drawing and its mirror image are trained at. */
  shifts: readonly (readonly [number, number])[];
  /** The class images the base draws (DDIM, guided by w), `count` split over the vendors. */
  classImages: { count: number; steps: number; guidanceScale: number; seed: number };
  /** λ, the prior's weight; 0: no prior preservation. */
  priorLossWeight: number;
  /** The run, per profile (Adam, constant learning rate). */
  training: Record<Profile, { steps: number; batchSize: number; learningRate: number }>;
}

function teddy(priorLossWeight: number): DreamBoothSpec {
  const prior = priorLossWeight > 0;
  return {
    name: prior ? "text16-dreambooth-teddy" : "text16-dreambooth-teddy-noprior",
    description: `chapter 9's DreamBooth of the teddy bear text16-unet never saw, ${
      prior ? "with prior preservation (λ = 1)" : "without prior preservation"
    }`,
    base: "text16-unet",
    identifier: "xk",
    classNoun: "bear",
    shifts: [[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]],
    classImages: { count: 200, steps: 50, guidanceScale: 3, seed: 100 },
    priorLossWeight,
    training: {
      quick: { steps: 20, batchSize: 2, learningRate: 1e-4 },
      full: { steps: 300, batchSize: 4, learningRate: 1e-4 },
    },
  };
}

/** The zoo's DreamBooth fine-tunes by name: with the prior (λ = 1) and without. */
export const DREAMBOOTH_SPECS: ReadonlyMap<string, DreamBoothSpec> = new Map(
  [teddy(1), teddy(0)].map((spec) => [spec.name, spec]),
);

/** The spec named `name`, or a UserError listing the names. */
export function dreamBoothSpec(name: string): DreamBoothSpec {
  const spec = DREAMBOOTH_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown DreamBooth fine-tune "${name}"; the zoo has ${
        [...DREAMBOOTH_SPECS.keys()].join(", ")
      }`,
    );
  }
  return spec;
}

/** What a profile's hash covers: the spec and its base's spec hash. */
async function dreamBoothProfile(
  spec: DreamBoothSpec,
  profile: Profile,
): Promise<Record<string, unknown>> {
  const { training, ...rest } = spec;
  return {
    ...rest,
    profile,
    base: { name: spec.base, specHash: await specHash(modelSpec(spec.base), profile) },
    subject: modelSpec(spec.base).holdouts!.unseenSubject,
    training: training[profile],
  };
}

/** The hash of `spec` in `profile` (it moves when the base's does). */
export async function dreamBoothHash(spec: DreamBoothSpec, profile: Profile): Promise<string> {
  return await profileHash(await dreamBoothProfile(spec, profile));
}

/** The prompt of the subject ("xk bear, twemoji") or of its class ("bear, twemoji") in a style. */
export function subjectPrompt(spec: DreamBoothSpec, style: string, subject = true): string {
  return `${subject ? `${spec.identifier} ` : ""}${spec.classNoun}, ${style}`;
}

/** The style words of the base's vendors, in a fixed order. */
export const STYLES = Object.values(STYLE_WORDS);

/** The subject's drawings as the dataset has them (NHWC in [−1, 1]) and their style words. */
export async function subjectImages(
  spec: DreamBoothSpec,
): Promise<{ images: Float32Array; count: number; styles: string[] }> {
  const base = modelSpec(spec.base);
  const dataset = await loadEmojiDataset(base.data);
  const indices = holdoutSplit(dataset.meta, base.holdouts).unseenSubject;
  const size = dataset.size * dataset.size * 3;
  const images = new Float32Array(indices.length * size);
  indices.forEach((i, k) =>
    images.set(dataset.images.subarray(i * size, (i + 1) * size), k * size)
  );
  return {
    images,
    count: indices.length,
    styles: indices.map((i) => STYLE_WORDS[dataset.meta[i].vendor]),
  };
}

/** Each drawing, then its mirror image, at each of the spec's shifts, with its caption. */
export function augmentedSubject(
  spec: DreamBoothSpec,
  subject: { images: Float32Array; count: number; styles: string[] },
  side = 16,
): { images: Float32Array; count: number; captions: string[] } {
  const shape = [side, side, 3] as const;
  const size = side * side * 3;
  const out: Float32Array[] = [];
  const captions: string[] = [];
  for (let i = 0; i < subject.count; i++) {
    const image = subject.images.subarray(i * size, (i + 1) * size);
    for (const drawn of [image, horizontalFlip(image, shape)]) {
      for (const [dy, dx] of spec.shifts) {
        out.push(shift(drawn, shape, dy, dx));
        captions.push(subjectPrompt(spec, subject.styles[i]));
      }
    }
  }
  const images = new Float32Array(out.length * size);
  out.forEach((image, k) => images.set(image, k * size));
  return { images, count: out.length, captions };
}

/** τ of each caption, and of the null prompt. */
async function statesOf(
  encode: (texts: readonly string[]) => tf.Tensor3D,
  captions: readonly string[],
): Promise<CaptionStates> {
  const states = encode(captions), empty = encode([""]);
  try {
    const [, length, width] = states.shape;
    return {
      states: await states.data() as Float32Array,
      nullStates: await empty.data() as Float32Array,
      length,
      width,
    };
  } finally {
    states.dispose();
    empty.dispose();
  }
}

/** A fine-tune's data: the augmented subject, and the class images the base drew. */
async function dreamBoothData(
  spec: DreamBoothSpec,
  base: Pretrained,
  profile: Profile,
  root: string,
): Promise<TrainingData> {
  const conditioning = modelSpec(spec.base).conditioning;
  if (conditioning?.kind !== "text") throw new Error(`${spec.base} is not text-conditional`);
  const { clip, tokenizer } = await loadClipArtefact(conditioning.encoder, profile, root);
  try {
    const encoder = promptEncoder(clip.text, tokenizer);
    const words = new Set(tokenizer.words);
    for (const word of [spec.identifier, spec.classNoun]) {
      if (!words.has(word)) {
        throw new UserError(
          `${spec.name}: "${word}" is not a word of ${conditioning.encoder}'s vocabulary; ` +
            `DreamBooth names the subject with a word the frozen encoder has`,
        );
      }
    }
    const subject = augmentedSubject(spec, await subjectImages(spec), base.model.config.imageSize);
    const data: TrainingData = {
      images: subject.images,
      count: subject.count,
      captionStates: await statesOf((t) => encoder.encode(t), subject.captions),
    };
    if (spec.priorLossWeight === 0) return data;
    const { count, steps, guidanceScale, seed } = spec.classImages;
    const prompts = Array.from(
      { length: count },
      (_, i) => subjectPrompt(spec, STYLES[Math.floor((i * STYLES.length) / count)], false),
    );
    const drawn = await samplePrompts(base.model, base, encoder, prompts, {
      seed,
      steps,
      guidanceScale,
    });
    const images = await drawn.data() as Float32Array;
    drawn.dispose();
    return {
      ...data,
      prior: { images, count, captionStates: await statesOf((t) => encoder.encode(t), prompts) },
    };
  } finally {
    clip.dispose();
  }
}

/**
 * Fine-tune `name` (continuing its run in `.cache/runs/NAME-PROFILE/`) and export it when
 * finished: `assets/models/NAME/` in `full`.
 */
export async function trainDreamBooth(
  name: string,
  options: NetworkRunOptions = {},
): Promise<NetworkRunResult> {
  const spec = dreamBoothSpec(name);
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const hash = await dreamBoothHash(spec, profile);
  const opened = await openNetworkRun(name, hash, options);
  if ("upToDate" in opened) return opened;
  const { dir, out } = opened;
  const base = await loadPretrained(spec.base, { profile, root });
  const data = await dreamBoothData(spec, base, profile, root);
  const recipe = spec.training[profile];
  const config = {
    ...recipe,
    lrSchedule: "constant" as const,
    warmupSteps: 0,
    horizontalFlip: false, // the mirror images are in the data
    contextDropout: 0.1,
    emaDecay: 0, // the last step's weights: the run is too short for an average
    priorLossWeight: spec.priorLossWeight,
    seed: 1,
    logEvery: 10,
    checkpointEvery: 100,
    checkpointPath: `${dir}/checkpoint.bin`,
    metricsPath: `${dir}/metrics.jsonl`,
  };
  const network = (await loadPretrained(spec.base, { profile, root })).model;
  base.model.dispose();
  const trainer = await train(network, data, base.schedule, config, {
    resume: true,
    minutes: options.minutes,
    progress: options.progress,
  });
  const step = trainer.step;
  trainer.dispose();
  return await closeNetworkRun(opened, recipe.steps, step, network, async () => {
    await Deno.mkdir(out, { recursive: true });
    await saveModel(`${out}/weights.ckpt`, network, { step, dtype: "float16" });
    await writeRunManifest(out, dir, {
      spec,
      profile,
      hash,
      profileSpec: await dreamBoothProfile(spec, profile),
      images: data.images,
      count: data.count,
      licence: LICENCE,
      steps: recipe.steps,
      batchSize: recipe.batchSize,
      parameters: network.parameterCount(),
    }, { weightBytes: (await Deno.stat(`${out}/weights.ckpt`)).size });
    return out;
  });
}

/** A DreamBooth fine-tune beside its base. */
export interface LoadedDreamBooth {
  spec: DreamBoothSpec;
  manifest: ArtefactManifest;
  /** The fine-tuned network (the caller disposes it). */
  model: DiffusionModel;
}

/**
 * The fine-tune `name` of a profile: `full` from the committed artefact, `quick` trained when
 * missing or stale.
 *
 * @throws UserError naming the command that makes a missing or stale `full` artefact
 */
export async function loadDreamBooth(
  name: string,
  profile: Profile = "full",
  root = ".",
): Promise<LoadedDreamBooth> {
  const spec = dreamBoothSpec(name);
  const { dir, manifest } = await checkedArtefact(
    name,
    await dreamBoothHash(spec, profile),
    profile,
    root,
    (restart) => trainDreamBooth(name, { profile, root, restart, progress: false }),
  );
  return { spec, manifest, model: await loadModel(`${dir}/weights.ckpt`) };
}
