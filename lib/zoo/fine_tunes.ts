/**
 * The zoo's fine-tunes (chapter 9): LoRA adapters (lib/core/nn/lora.ts) that teach the book's
 * text-conditional U-Net a style it never saw, OpenMoji's outlined drawings (lib/data/openmoji.ts),
 * one adapter per rank r ∈ {1, 2, 4, 8}, so that the chapter can set size against fit; and a word
 * learned by textual inversion for a concept it never saw (see {@link TokenSpec}).
 *
 * An adapter trains on OpenMoji's Unicode emoji but a held-out few (the chapter's reference for
 * FID/KID of the style), each captioned as the base's captions describe the same emoji, without a
 * style word (the tokenizer has none for OpenMoji: the style is what the adapter adds). Only the
 * factors A and B train (the base's weights stay bit-identical); the artefact is the adapter alone,
 * `assets/models/NAME/adapter.lora`, a few kB to a hundred, with the run's metrics and a manifest
 * whose spec hash covers the base's, so that retraining the base makes its adapters stale.
 *
 * The recipe starts from diffusers' LoRA script (Adam, constant learning rate 1e-4, α = r) and is
 * scaled to this small model and short run: 1e-3, 1000 steps of 32 images (about three minutes
 * on two CPU cores with the native backend). The targets are the attention projections, which
 * the U-Net has at 8×8 and 4×4 only; the 16×16 convolutions, where an outline is drawn, stay as
 * the base has them.
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import { exists } from "../runtime/files.ts";
import { UserError } from "../core/errors.ts";
import { Random } from "../core/random.ts";
import { ATTENTION_PROJECTIONS, type LoraConfig } from "../core/nn/lora.ts";
import { adaptModel, type DiffusionModel, loraParameters } from "../core/models/mod.ts";
import { loadEmojiKeywords } from "../data/captions.ts";
import { loadEmojiDataset } from "../data/emoji.ts";
import { holdoutSplit } from "../data/holdouts.ts";
import { activeBackendLabel } from "../runtime/backend.ts";
import {
  LearnedToken,
  learnToken,
  loadLearnedToken,
  saveLearnedToken,
} from "../training/textual_inversion.ts";
import { loadClipArtefact, type LoadedClip } from "./clip_network.ts";
import { loadOpenMojiDataset, OPENMOJI_LICENCE, openMojiCaption } from "../data/openmoji.ts";
import { type TrainConfig, Trainer, type TrainingData } from "../training/trainer.ts";
import { loadAdapter, saveAdapter } from "../training/adapter.ts";
import type { ArtefactManifest } from "./manifest.ts";
import { loadPretrained, type Pretrained } from "./pretrained.ts";
import { modelSpec, profileHash, specHash } from "./specs.ts";
import { captionStates, gatherRows } from "./spec_data.ts";
import {
  checkedArtefact,
  closeNetworkRun,
  LICENCE,
  type NetworkRunOptions,
  type NetworkRunResult,
  openNetworkRun,
  writeRunManifest,
} from "./network_runs.ts";

/** A style LoRA of a zoo model. */
export interface StyleLoraSpec {
  /** Registry name, also the artefact's folder. */
  name: string;
  /** One line: what it is. */
  description: string;
  /** The zoo's text-conditional model it adapts. */
  base: string;
  /** Rank, α and the layers it adapts. */
  lora: LoraConfig;
  /** OpenMoji emoji kept out of training (the chapter's reference set), drawn by `seed`. */
  heldOut: { count: number; seed: number };
  /** The run, per profile. */
  training: Record<Profile, Partial<TrainConfig> & { steps: number; batchSize: number }>;
}

/** The ranks of the chapter's sweep. */
export const STYLE_LORA_RANKS = [1, 2, 4, 8] as const;

function styleLora(rank: number): StyleLoraSpec {
  const recipe = {
    learningRate: 1e-3,
    lrSchedule: "constant",
    warmupSteps: 0,
    // Captions name directions ("right arrow"), so no flips; the null prompt keeps guidance.
    horizontalFlip: false,
    contextDropout: 0.1,
    emaDecay: 0.99,
    logEvery: 25,
    seed: 1,
  } as const;
  return {
    name: `text16-lora-openmoji-r${rank}`,
    description: `chapter 9's rank-${rank} LoRA of text16-unet's attention on OpenMoji's style`,
    base: "text16-unet",
    lora: { rank, alpha: rank, targets: ATTENTION_PROJECTIONS },
    heldOut: { count: 400, seed: 11 },
    training: {
      quick: { ...recipe, steps: 40, batchSize: 16, checkpointEvery: 20 },
      full: { ...recipe, steps: 1000, batchSize: 32, checkpointEvery: 250 },
    },
  };
}

/** The zoo's style LoRAs by name. */
export const STYLE_LORA_SPECS: ReadonlyMap<string, StyleLoraSpec> = new Map(
  STYLE_LORA_RANKS.map((r) => styleLora(r)).map((spec) => [spec.name, spec]),
);

/** The spec named `name`, or a UserError listing the names. */
export function styleLoraSpec(name: string): StyleLoraSpec {
  const spec = STYLE_LORA_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown fine-tune "${name}"; the zoo has ${[...STYLE_LORA_SPECS.keys()].join(", ")}`,
    );
  }
  return spec;
}

/** What a profile's hash covers: the adapter's spec and its base's spec hash. */
export async function styleLoraProfile(
  spec: StyleLoraSpec,
  profile: Profile,
): Promise<Record<string, unknown>> {
  return {
    name: spec.name,
    profile,
    base: { name: spec.base, specHash: await specHash(modelSpec(spec.base), profile) },
    lora: spec.lora,
    data: { set: "openmoji", size: 16, heldOut: spec.heldOut },
    training: spec.training[profile],
  };
}

/** The hash of `spec` in `profile` (it moves when the base's does). */
export async function styleLoraHash(spec: StyleLoraSpec, profile: Profile): Promise<string> {
  return await profileHash(await styleLoraProfile(spec, profile));
}

/** An adapter's images: the training set with its captions' states, and the held-out ones. */
export interface StyleData {
  /** The OpenMoji emoji it trains on, with τ(caption) of each. */
  train: TrainingData;
  /** Their captions, in order. */
  trainCaptions: string[];
  /** The held-out emoji (NHWC in [−1, 1]) and their captions. */
  heldOut: { images: Float32Array; count: number; captions: string[]; unified: string[] };
  /** Twemoji's drawings of the held-out emoji it has (the style the base knows), in order. */
  heldOutTwemoji: { images: Float32Array; count: number; unified: string[] };
}

/** The split of OpenMoji `spec` trains on, captioned (see the module comment). */
export async function styleData(
  spec: StyleLoraSpec,
  profile: Profile = "full",
  root = ".",
): Promise<StyleData> {
  const base = modelSpec(spec.base);
  const openmoji = await loadOpenMojiDataset({ size: base.data.size });
  const lexicon = await loadEmojiKeywords();
  const order = new Random(spec.heldOut.seed).shuffle(
    Array.from({ length: openmoji.count }, (_, i) => i),
  );
  const held = order.slice(0, spec.heldOut.count);
  const train = order.slice(spec.heldOut.count);
  const row = openmoji.size * openmoji.size * 3;
  const captionsOf = (indices: number[]) =>
    indices.map((i) => openMojiCaption(openmoji.meta[i], lexicon));
  const trainCaptions = captionsOf(train);
  const twemoji = await loadEmojiDataset({ size: base.data.size, vendors: ["twitter"] });
  const twemojiIndex = new Map(twemoji.meta.map((m, i) => [m.unified, i]));
  const twemojiHeld = held.map((i) => twemojiIndex.get(openmoji.meta[i].unified))
    .filter((i): i is number => i !== undefined);
  if (base.conditioning?.kind !== "text") {
    throw new Error(`${spec.name}: its base ${spec.base} is not text-conditional`);
  }
  return {
    train: {
      images: gatherRows(openmoji.images, row, train),
      count: train.length,
      captionStates: await captionStates(base.conditioning.encoder, trainCaptions, profile, root),
    },
    trainCaptions,
    heldOut: {
      images: gatherRows(openmoji.images, row, held),
      count: held.length,
      captions: captionsOf(held),
      unified: held.map((i) => openmoji.meta[i].unified),
    },
    heldOutTwemoji: {
      images: gatherRows(twemoji.images, row, twemojiHeld),
      count: twemojiHeld.length,
      unified: twemojiHeld.map((i) => twemoji.meta[i].unified),
    },
  };
}

/**
 * Train the adapter `name` (continuing its run in `.cache/runs/NAME-PROFILE/`), and export it
 * when finished: `assets/models/NAME/` in `full`.
 */
export async function trainStyleLora(
  name: string,
  options: NetworkRunOptions = {},
): Promise<NetworkRunResult> {
  const spec = styleLoraSpec(name);
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const hash = await styleLoraHash(spec, profile);
  const opened = await openNetworkRun(name, hash, options);
  if ("upToDate" in opened) return opened;
  const { dir, out } = opened;
  const base = await loadPretrained(spec.base, { profile, root });
  const adapted = adaptModel(base.model, spec.lora);
  base.model.dispose();
  const { train } = await styleData(spec, profile, root);
  const recipe = spec.training[profile];
  const config = {
    ...recipe,
    checkpointPath: `${dir}/checkpoint.bin`,
    metricsPath: `${dir}/metrics.jsonl`,
  };
  const parameters = loraParameters(adapted);
  const callbacks = { progress: options.progress, parameters };
  const trainer = await exists(config.checkpointPath)
    ? await Trainer.resume(config.checkpointPath, train, { ...callbacks, model: adapted, config })
    : new Trainer(adapted, train, base.schedule, config, callbacks);
  const { step } = await trainer.run({ minutes: options.minutes });
  trainer.dispose();
  return await closeNetworkRun(opened, recipe.steps, step, adapted, async () => {
    await Deno.mkdir(out, { recursive: true });
    const bytes = await saveAdapter(`${out}/adapter.lora`, adapted, { baseName: spec.base });
    await writeRunManifest(out, dir, {
      spec,
      profile,
      hash,
      profileSpec: await styleLoraProfile(spec, profile),
      images: train.images,
      count: train.count,
      licence: OPENMOJI_LICENCE,
      steps: recipe.steps,
      batchSize: recipe.batchSize,
      parameters: adapted.lora!.parameterCount,
    }, { adapterBytes: bytes });
    return out;
  });
}

/** A trained style LoRA on its base. */
export interface LoadedStyleLora {
  spec: StyleLoraSpec;
  /** The adapter's manifest (steps, wall time, parameters, `adapterBytes`). */
  manifest: ArtefactManifest;
  /** The base network with the adapter on it (strength 1; set it with `model.lora`). */
  model: DiffusionModel;
  /** The base as the zoo has it (its schedule, prediction, clip range; its own network freed). */
  base: Omit<Pretrained, "model">;
}

/**
 * The adapter `name` of a profile on its base: `full` from the committed artefacts, `quick`
 * trained when missing or stale.
 *
 * @throws UserError naming the command that makes a missing or stale `full` adapter
 */
export async function loadStyleLora(
  name: string,
  profile: Profile = "full",
  root = ".",
): Promise<LoadedStyleLora> {
  const spec = styleLoraSpec(name);
  const { dir, manifest } = await checkedArtefact(
    name,
    await styleLoraHash(spec, profile),
    profile,
    root,
    (restart) => trainStyleLora(name, { profile, root, restart, progress: false }),
  );
  const { model: baseModel, ...base } = await loadPretrained(spec.base, { profile, root });
  try {
    const model = await loadAdapter(`${dir}/adapter.lora`, baseModel, { baseName: spec.base });
    return { spec, manifest, model, base };
  } finally {
    baseModel.dispose();
  }
}

/**
 * A word learned by textual inversion (lib/training/textual_inversion.ts) for a concept the base
 * never saw: the held-out subcategory of the conditioning models (the cat faces), both vendors'
 * drawings of it. Its artefact is the word's embedding alone, `token.ckpt`, with the digest of
 * the text encoder it was learned in.
 */
export interface TokenSpec {
  name: string;
  description: string;
  /** The zoo's text-conditional model whose U-Net scores the word (frozen). */
  base: string;
  /** The placeholder S*, a word the captions never use. */
  word: string;
  /** The word v starts from. */
  initializer: string;
  /** Prompt templates, `{}` where the word goes. */
  templates: readonly string[];
  /** The run, per profile (Adam, constant learning rate). */
  training: Record<Profile, { steps: number; batchSize: number; learningRate: number }>;
}

/**
 * The cat faces, learned as "ktn" from "cat": diffusers' textual inversion runs 3000 steps of 4
 * at 5e-4; the 18 images here need fewer, 600 steps of 8 at the same rate (under a minute).
 */
const CAT_FACE_TOKEN: TokenSpec = {
  name: "text16-ti-catface",
  description: "chapter 9's textual inversion: the cat faces text16-unet never saw, as one word",
  base: "text16-unet",
  word: "ktn",
  initializer: "cat",
  templates: ["{}, twemoji", "{}, noto", "{}, face, twemoji", "{}, face, noto"],
  training: {
    quick: { steps: 20, batchSize: 4, learningRate: 5e-4 },
    full: { steps: 600, batchSize: 8, learningRate: 5e-4 },
  },
};

/** The zoo's learned words by name. */
export const TOKEN_SPECS: ReadonlyMap<string, TokenSpec> = new Map([
  [CAT_FACE_TOKEN.name, CAT_FACE_TOKEN],
]);

function tokenSpec(name: string): TokenSpec {
  const spec = TOKEN_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown learned word "${name}"; the zoo has ${[...TOKEN_SPECS.keys()].join(", ")}`,
    );
  }
  return spec;
}

/** What a profile's hash covers: the word's spec and its base's spec hash. */
async function tokenProfile(spec: TokenSpec, profile: Profile): Promise<Record<string, unknown>> {
  const { training, ...rest } = spec;
  return {
    ...rest,
    profile,
    base: { name: spec.base, specHash: await specHash(modelSpec(spec.base), profile) },
    concept: { subcategory: modelSpec(spec.base).holdouts!.unseenSubcategory, size: 16 },
    training: training[profile],
  };
}

/** The hash of `spec` in `profile`. */
export async function tokenSpecHash(spec: TokenSpec, profile: Profile): Promise<string> {
  return await profileHash(await tokenProfile(spec, profile));
}

/** The concept's images: the base's unseen subcategory, both vendors, in dataset order. */
export async function conceptImages(
  spec: TokenSpec,
): Promise<{ images: Float32Array; count: number; names: string[] }> {
  const base = modelSpec(spec.base);
  const dataset = await loadEmojiDataset(base.data);
  const indices = holdoutSplit(dataset.meta, base.holdouts).unseenSubcategory;
  return {
    images: gatherRows(dataset.images, dataset.size * dataset.size * 3, indices),
    count: indices.length,
    names: indices.map((i) => `${dataset.meta[i].shortName} (${dataset.meta[i].vendor})`),
  };
}

/** Learn the word `name` and export it (`assets/models/NAME/` in `full`). */
export async function trainToken(
  name: string,
  options: NetworkRunOptions = {},
): Promise<NetworkRunResult> {
  const spec = tokenSpec(name);
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const hash = await tokenSpecHash(spec, profile);
  const opened = await openNetworkRun(name, hash, options);
  if ("upToDate" in opened) return opened;
  const { dir, out } = opened;
  const base = await loadPretrained(spec.base, { profile, root });
  const conditioning = modelSpec(spec.base).conditioning;
  if (conditioning?.kind !== "text") throw new Error(`${spec.base} is not text-conditional`);
  const { clip, tokenizer } = await loadClipArtefact(conditioning.encoder, profile, root);
  const token = new LearnedToken(spec.word, spec.initializer, clip.text, tokenizer);
  const concept = await conceptImages(spec);
  const recipe = spec.training[profile];
  // A short run (minutes): it starts over when interrupted, and logs as the Trainer does.
  await Deno.writeTextFile(`${dir}/metrics.jsonl`, "");
  const backend = activeBackendLabel();
  let window = { loss: 0, steps: 0, start: performance.now() };
  await learnToken(token, base.model, base.schedule, concept, {
    templates: spec.templates,
    steps: recipe.steps,
    batchSize: recipe.batchSize,
    learningRate: recipe.learningRate,
    prediction: base.predictionType,
  }, {
    progress: options.progress,
    onStep: (step, loss) => {
      window.loss += loss;
      window.steps++;
      if (step % 25 !== 0 && step !== recipe.steps) return;
      const seconds = (performance.now() - window.start) / 1000;
      const record = {
        step,
        loss: window.loss / window.steps,
        stepsPerSecond: window.steps / seconds,
        backend,
      };
      Deno.writeTextFileSync(`${dir}/metrics.jsonl`, JSON.stringify(record) + "\n", {
        append: true,
      });
      window = { loss: 0, steps: 0, start: performance.now() };
    },
  });
  base.model.dispose();
  const network = {
    dispose() {
      token.dispose();
      clip.dispose();
    },
  };
  return await closeNetworkRun(opened, recipe.steps, recipe.steps, network, async () => {
    await Deno.mkdir(out, { recursive: true });
    const bytes = await saveLearnedToken(`${out}/token.ckpt`, token, {
      encoderName: conditioning.encoder,
    });
    await writeRunManifest(out, dir, {
      spec,
      profile,
      hash,
      profileSpec: await tokenProfile(spec, profile),
      images: concept.images,
      count: concept.count,
      licence: LICENCE,
      steps: recipe.steps,
      batchSize: recipe.batchSize,
      parameters: token.vector.size,
    }, {
      tokenBytes: bytes,
      nearestWords: token.nearestWords(5),
    });
    return out;
  });
}

/** A learned word in its text encoder, beside the base it was learned for. */
export interface LoadedToken {
  spec: TokenSpec;
  manifest: ArtefactManifest;
  /** The word and its embedding (its `tokenizer` knows the word). */
  token: LearnedToken;
  /** The tiny CLIP whose text tower holds it (the caller disposes it). */
  clip: LoadedClip["clip"];
}

/** The learned word `name` of a profile, in its encoder (`quick`: learned when missing). */
export async function loadToken(
  name: string,
  profile: Profile = "full",
  root = ".",
): Promise<LoadedToken> {
  const spec = tokenSpec(name);
  const { dir, manifest } = await checkedArtefact(
    name,
    await tokenSpecHash(spec, profile),
    profile,
    root,
    (restart) => trainToken(name, { profile, root, restart, progress: false }),
  );
  const conditioning = modelSpec(spec.base).conditioning as { encoder: string };
  const { clip, tokenizer } = await loadClipArtefact(conditioning.encoder, profile, root);
  const token = await loadLearnedToken(`${dir}/token.ckpt`, clip.text, tokenizer, {
    encoderName: conditioning.encoder,
  });
  return { spec, manifest, token, clip };
}
