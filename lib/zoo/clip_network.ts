/**
 * The zoo's tiny CLIP (`tiny-clip`, lib/core/models/clip.ts): the text–image network of chapter
 * 6, whose text tower the text-conditional U-Net reads prompts with and whose CLIP score rates
 * its samples. A named spec like the feature networks of lib/zoo/feature_networks.ts: `deno task
 * train tiny-clip` trains it (resuming its run in `.cache/runs/tiny-clip-PROFILE/`) and exports
 * `assets/models/tiny-clip/` with a manifest, its tokenizer inside the weights file.
 *
 * It trains on the captions of lib/data/captions.ts, on the training side of the conditioning
 * holdouts (lib/data/holdouts.ts): the held-out names, the cat faces and the teddy bear are never
 * seen, and the tokenizer's vocabulary is the training captions' alone, so that a held-out
 * prompt can hold words it maps to UNK. Retrieval is scored on the held-out names.
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import { UserError } from "../core/errors.ts";
import { type ClipConfig, TinyClip } from "../core/models/clip.ts";
import { Tokenizer, type TokenizerJson } from "../core/tokenizer.ts";
import { type EmojiDataset, loadEmojiDataset } from "../data/emoji.ts";
import { caption, loadEmojiKeywords } from "../data/captions.ts";
import {
  CONDITIONING_HOLDOUTS,
  type Holdouts,
  type HoldoutSplit,
  holdoutSplit,
} from "../data/holdouts.ts";
import { type ClipTraining, retrieval, trainClip } from "../training/contrastive.ts";
import {
  assignVariables,
  loadCheckpoint,
  readVariables,
  saveCheckpoint,
} from "../training/checkpoint.ts";
import type { ArtefactManifest } from "./manifest.ts";
import {
  checkedArtefact,
  closeNetworkRun,
  LICENCE,
  type NetworkRunOptions,
  type NetworkRunResult,
  openNetworkRun,
  runFiles,
  writeRunManifest,
} from "./network_runs.ts";
import { profileHash } from "./specs.ts";

/** The tiny CLIP's spec. */
export interface ClipSpec {
  name: string;
  description: string;
  /** The network but its vocabulary, which is the tokenizer's. */
  network: Record<
    Profile,
    Omit<ClipConfig, "kind" | "text"> & {
      text: Omit<ClipConfig["text"], "vocabularySize" | "contextLength">;
    }
  >;
  /** The images: their size. */
  data: { size: 16 };
  /** The captions: keywords a caption, the tokenizer's context and its rarest word's count. */
  captions: { keywords: number; contextLength: number; minCount: number };
  /** What no conditional model trains on. */
  holdouts: Holdouts;
  training: Record<Profile, ClipTraining>;
}

/** The tiny CLIP of chapter 6: the classifier's towers of 32–128 channels, a 2-block text tower. */
export const TINY_CLIP: ClipSpec = {
  name: "tiny-clip",
  description: "the text–image network of chapter 6: its text tower and its CLIP score",
  network: {
    quick: {
      image: { imageSize: 16, channels: [16, 32, 64], groups: 8 },
      text: { width: 64, layers: 1, heads: 4, mlpRatio: 4 },
      embedDim: 64,
      seed: 0,
    },
    full: {
      image: { imageSize: 16, channels: [32, 64, 128], groups: 8 },
      text: { width: 128, layers: 2, heads: 4, mlpRatio: 4 },
      embedDim: 128,
      seed: 0,
    },
  },
  data: { size: 16 },
  captions: { keywords: 3, contextLength: 16, minCount: 1 },
  holdouts: CONDITIONING_HOLDOUTS,
  training: {
    quick: {
      steps: 100,
      batchSize: 64,
      learningRate: 2e-3,
      minLearningRate: 1e-4,
      warmupSteps: 10,
      weightDecay: 0.01,
      maxShift: 1,
      checkpointEvery: 50,
      logEvery: 25,
      seed: 0,
    },
    full: {
      steps: 3000,
      batchSize: 128,
      learningRate: 1e-3,
      minLearningRate: 1e-5,
      warmupSteps: 150,
      weightDecay: 0.01,
      maxShift: 1,
      checkpointEvery: 500,
      logEvery: 50,
      seed: 0,
    },
  },
};

/** The zoo's CLIP specs, by name. */
export const CLIP_SPECS: ReadonlyMap<string, ClipSpec> = new Map([[TINY_CLIP.name, TINY_CLIP]]);

/** One profile of the spec: what its run and artefact must agree with. */
export function clipProfile(spec: ClipSpec, profile: Profile): Record<string, unknown> {
  const { name, data, captions, holdouts } = spec;
  return {
    name,
    profile,
    network: spec.network[profile],
    data,
    captions,
    holdouts,
    training: spec.training[profile],
  };
}

/** Hex SHA-256 (16 digits) of a profile of the spec. */
export async function clipSpecHash(spec: ClipSpec, profile: Profile): Promise<string> {
  return await profileHash(clipProfile(spec, profile));
}

/** The emoji, their captions, the holdout split, the tokenizer and every caption's ids. */
export interface ClipData {
  dataset: EmojiDataset;
  captions: string[];
  split: HoldoutSplit;
  tokenizer: Tokenizer;
  /** Every caption as L ids, image after image. */
  ids: Int32Array;
}

/** Load the spec's data (see {@link ClipData}). */
export async function clipData(spec: ClipSpec = TINY_CLIP): Promise<ClipData> {
  const dataset = await loadEmojiDataset(spec.data);
  const lexicon = await loadEmojiKeywords();
  const captions = dataset.meta.map((m) => caption(m, lexicon, spec.captions.keywords));
  const split = holdoutSplit(dataset.meta, spec.holdouts);
  const tokenizer = Tokenizer.fromCaptions(split.train.map((i) => captions[i]), spec.captions);
  return { dataset, captions, split, tokenizer, ids: tokenizer.encodeBatch(captions) };
}

/** The network of a profile for the data's tokenizer. */
function clipConfig(spec: ClipSpec, profile: Profile, tokenizer: Tokenizer): ClipConfig {
  const network = spec.network[profile];
  return {
    kind: "clip",
    ...network,
    text: {
      ...network.text,
      vocabularySize: tokenizer.vocabularySize,
      contextLength: tokenizer.contextLength,
    },
  };
}

/** Train (or continue) the tiny CLIP `name` and export it when finished. */
export async function trainClipNetwork(
  name: string,
  options: NetworkRunOptions = {},
): Promise<NetworkRunResult> {
  const spec = CLIP_SPECS.get(name);
  if (!spec) {
    throw new UserError(`unknown CLIP "${name}"; the zoo has ${[...CLIP_SPECS.keys()].join(", ")}`);
  }
  const profile = options.profile ?? "full";
  const opened = await openNetworkRun(name, await clipSpecHash(spec, profile), options);
  if ("upToDate" in opened) return opened;
  const { dir, out, hash } = opened;
  const data = await clipData(spec);
  const training = spec.training[profile];
  const run = await trainClip(
    clipConfig(spec, profile, data.tokenizer),
    {
      images: data.dataset.images,
      count: data.dataset.count,
      ids: data.ids,
      train: data.split.train,
      heldOut: data.split.heldOutNames,
    },
    training,
    runFiles(dir, options),
  );
  return await closeNetworkRun(
    opened,
    training.steps,
    run.step,
    run.clip,
    () => exportClip(spec, profile, run.clip, data, dir, out, hash),
  );
}

async function exportClip(
  spec: ClipSpec,
  profile: Profile,
  clip: TinyClip,
  data: ClipData,
  run: string,
  out: string,
  hash: string,
): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  await saveCheckpoint(`${out}/weights.ckpt`, {
    step: 0,
    modelConfig: clip.config as never,
    state: { tokenizer: data.tokenizer.toJSON() },
    tensors: await readVariables(clip.parameters, "params/"),
  });
  const images = data.dataset.images;
  await writeRunManifest(out, run, {
    spec,
    profile,
    hash,
    profileSpec: clipProfile(spec, profile),
    images,
    count: data.dataset.count,
    licence: `${LICENCE}; captions from emojilib (MIT)`,
    steps: spec.training[profile].steps,
    batchSize: spec.training[profile].batchSize,
    parameters: clip.parameterCount(),
  }, {
    heldOutRetrieval: retrieval(clip, { images, ids: data.ids }, data.split.heldOutNames),
  });
  return out;
}

/** A trained tiny CLIP with its tokenizer and manifest. */
export interface LoadedClip {
  clip: TinyClip;
  tokenizer: Tokenizer;
  manifest: ArtefactManifest;
}

/**
 * The tiny CLIP of a profile: `full` from its committed artefact (which must be of today's spec),
 * `quick` trained when missing or stale.
 *
 * @throws UserError naming the command that makes a missing or stale `full` artefact
 */
export async function loadClipArtefact(
  name = TINY_CLIP.name,
  profile: Profile = "full",
  root = ".",
): Promise<LoadedClip> {
  const spec = CLIP_SPECS.get(name);
  if (!spec) {
    throw new UserError(`unknown CLIP "${name}"; the zoo has ${[...CLIP_SPECS.keys()].join(", ")}`);
  }
  const { dir, manifest } = await checkedArtefact(
    name,
    await clipSpecHash(spec, profile),
    profile,
    root,
    (restart) => trainClipNetwork(name, { profile, root, restart, progress: false }),
  );
  const checkpoint = await loadCheckpoint(`${dir}/weights.ckpt`);
  const clip = new TinyClip(checkpoint.modelConfig as unknown as ClipConfig);
  try {
    assignVariables(clip.parameters, checkpoint.tensors, "params/", `${dir}/weights.ckpt`);
  } catch (e) {
    clip.dispose();
    throw e;
  }
  const tokenizer = Tokenizer.fromJSON(checkpoint.state.tokenizer as TokenizerJson);
  return { clip, tokenizer, manifest };
}
