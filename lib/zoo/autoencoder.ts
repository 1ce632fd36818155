/**
 * The zoo's autoencoders (lib/core/models/autoencoder.ts): the first stage of chapter 8's latent
 * diffusion, at f = 2, 4 and 8 on the 32×32 emoji. A named spec like the CLIP's
 * (lib/zoo/clip_network.ts): `deno task train NAME` trains it (resuming its run in
 * `.cache/runs/NAME-PROFILE/`) and exports `assets/models/NAME/` with a manifest that records its
 * held-out reconstruction scores and its scale factor s.
 *
 * s = 1/std(z) over every value of the dataset's latents z = μ(x) (the posterior means): the
 * latent diffusion model trains on z·s, whose standard deviation is then 1, the scale its noise
 * schedule assumes (Rombach et al. 2022, §G; Stable Diffusion's 0.18215 is this number for its
 * VAE). The manifest also records the posterior's mean σ, to show that z = μ and z ~ q(z | x)
 * hardly differ at β = 1e-6.
 *
 * The autoencoders train on the training side of the conditioning holdouts
 * (lib/data/holdouts.ts) and are scored on the held-out names, emoji they never saw.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Profile } from "../runtime/options.ts";
import { sha256Hex, writeFileAtomic } from "../runtime/files.ts";
import { UserError } from "../core/errors.ts";
import { type AutoencoderConfig, AutoencoderKL } from "../core/models/autoencoder.ts";
import { type EmojiDataset, loadEmojiDataset } from "../data/emoji.ts";
import { CONDITIONING_HOLDOUTS, type Holdouts, holdoutSplit } from "../data/holdouts.ts";
import {
  type AutoencoderTraining,
  type ReconstructionScores,
  reconstructionScores,
  trainAutoencoder,
} from "../training/autoencoder.ts";
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
import { loadPerceptualArtefact } from "./feature_networks.ts";
import { profileHash } from "./specs.ts";

/** An autoencoder's spec. */
export interface AutoencoderSpec {
  name: string;
  description: string;
  /** The network, per profile. */
  network: Record<Profile, Omit<Partial<AutoencoderConfig>, "kind" | "imageSize">>;
  /** The images: their size. */
  data: { size: 32 };
  /** What it never trains on (its scores are on the held-out names). */
  holdouts: Holdouts;
  /** The perceptual distance of the loss (the zoo's, of the same profile). */
  perceptual: string;
  training: Record<Profile, AutoencoderTraining>;
}

/** The recipes: AdamW at 5·10⁻⁴ (10⁻³ quick) with warm-up and cosine decay, LDM's loss weights. */
function recipes(steps: number): Record<Profile, AutoencoderTraining> {
  const loss = { perceptualWeight: 1, klWeight: 1e-6, horizontalFlip: true, weightDecay: 0 };
  return {
    quick: {
      ...loss,
      steps: 60,
      batchSize: 8,
      learningRate: 1e-3,
      minLearningRate: 1e-4,
      warmupSteps: 6,
      checkpointEvery: 30,
      logEvery: 10,
      seed: 0,
    },
    full: {
      ...loss,
      steps,
      batchSize: 16,
      learningRate: 5e-4,
      minLearningRate: 1e-5,
      warmupSteps: 100,
      checkpointEvery: 500,
      logEvery: 25,
      seed: 0,
    },
  };
}

/**
 * The autoencoder at factor f of 32×32 emoji into latents of c = 4 channels: 32 base channels,
 * multipliers [1, 2, 2, 2] cut to log₂ f + 1 levels, one residual block a level in the encoder
 * (two in the decoder), attention in the middle.
 */
function autoencoderSpec(f: 2 | 4 | 8, steps: number): AutoencoderSpec {
  const levels = Math.log2(f) + 1;
  const channelMultipliers = [1, 2, 2, 2].slice(0, levels);
  const side = 32 / f;
  return {
    name: `emoji32-vae-f${f}`,
    description: `chapter 8's KL autoencoder, 32×32 emoji to ${side}×${side}×4 latents (f = ${f})`,
    network: {
      quick: { baseChannels: 16, channelMultipliers, latentChannels: 4, groups: 8, seed: 0 },
      full: { baseChannels: 32, channelMultipliers, latentChannels: 4, groups: 8, seed: 0 },
    },
    data: { size: 32 },
    holdouts: CONDITIONING_HOLDOUTS,
    perceptual: "emoji-perceptual", // EMOJI_PERCEPTUAL.name (not read here: the modules import each other)
    training: recipes(steps),
  };
}

/** The zoo's autoencoders, by name: f = 4 is the latent model's; f = 2 and 8 its comparisons. */
export const AUTOENCODER_SPECS: ReadonlyMap<string, AutoencoderSpec> = new Map(
  [autoencoderSpec(4, 4000), autoencoderSpec(2, 1500), autoencoderSpec(8, 1500)].map((s) => [
    s.name,
    s,
  ]),
);

/** The spec named `name`; an unknown name is an error listing the known ones. */
export function autoencoderSpecOf(name: string): AutoencoderSpec {
  const spec = AUTOENCODER_SPECS.get(name);
  if (!spec) {
    throw new UserError(
      `unknown autoencoder "${name}"; the zoo has ${[...AUTOENCODER_SPECS.keys()].join(", ")}`,
    );
  }
  return spec;
}

/** One profile of the spec: what its run and artefact must agree with. */
export function autoencoderProfile(spec: AutoencoderSpec, profile: Profile) {
  const { name, data, holdouts, perceptual } = spec;
  return {
    name,
    profile,
    network: spec.network[profile],
    data,
    holdouts,
    perceptual,
    training: spec.training[profile],
  };
}

/** Hex SHA-256 (16 digits) of a profile of the spec. */
export async function autoencoderSpecHash(
  spec: AutoencoderSpec,
  profile: Profile,
): Promise<string> {
  return await profileHash(autoencoderProfile(spec, profile));
}

/** The emoji of a spec and its split: training images and held-out names. */
export interface AutoencoderSplit {
  dataset: EmojiDataset;
  train: number[];
  heldOut: number[];
}

/** Load the spec's images and split them (see {@link AutoencoderSplit}). */
export async function autoencoderData(spec: AutoencoderSpec): Promise<AutoencoderSplit> {
  const dataset = await loadEmojiDataset(spec.data);
  const split = holdoutSplit(dataset.meta, spec.holdouts);
  return { dataset, train: split.train, heldOut: split.heldOutNames };
}

/** Train (or continue) the autoencoder `name` and export it when finished. */
export async function trainAutoencoderNetwork(
  name: string,
  options: NetworkRunOptions = {},
): Promise<NetworkRunResult> {
  const spec = autoencoderSpecOf(name);
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const opened = await openNetworkRun(name, await autoencoderSpecHash(spec, profile), options);
  if ("upToDate" in opened) return opened;
  const { dir, out, hash } = opened;
  const split = await autoencoderData(spec);
  const perceptual = await loadPerceptualArtefact({ profile, root });
  try {
    const data = {
      images: split.dataset.images,
      count: split.dataset.count,
      train: split.train,
      heldOut: split.heldOut,
    };
    const run = await trainAutoencoder(
      { ...spec.network[profile], imageSize: spec.data.size },
      perceptual.distance,
      data,
      spec.training[profile],
      runFiles(dir, options),
    );
    return await closeNetworkRun(
      opened,
      spec.training[profile].steps,
      run.step,
      run.autoencoder,
      async () => {
        const scores = await reconstructionScores(
          run.autoencoder,
          perceptual.distance,
          data,
          split.heldOut,
        );
        return exportAutoencoder(spec, profile, run.autoencoder, split, scores, dir, out, hash);
      },
    );
  } finally {
    perceptual.dispose();
  }
}

/** What an autoencoder's artefact records of its latents. */
export interface LatentStatistics {
  /** s = 1/std(z) over every value of the dataset's posterior means z = μ(x). */
  scaleFactor: number;
  /** Mean of those values. */
  mean: number;
  /** Their standard deviation, 1/s. */
  std: number;
  /** Mean posterior standard deviation σ(x), over every value. */
  meanSigma: number;
}

/** The posterior means μ(x) of `images` [count · H · W · 3], `count · h · w · c` values. */
export async function encodeImages(
  autoencoder: AutoencoderKL,
  images: Float32Array,
  count: number,
  batchSize = 256,
): Promise<{ latents: Float32Array; sigmas: Float32Array }> {
  const { imageSize: s, inChannels: c } = autoencoder.config;
  const size = s * s * c;
  const [h, w, lc] = autoencoder.latentShape;
  const latentSize = h * w * lc;
  const latents = new Float32Array(count * latentSize);
  const sigmas = new Float32Array(count * latentSize);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const x = tf.tensor4d(images.subarray(start * size, (start + n) * size), [n, s, s, c]);
    const { mean, logVariance } = autoencoder.encode(x);
    const sigma = tf.tidy(() => tf.exp(tf.mul(0.5, logVariance)));
    latents.set(await mean.data() as Float32Array, start * latentSize);
    sigmas.set(await sigma.data() as Float32Array, start * latentSize);
    tf.dispose([x, mean, logVariance, sigma]);
  }
  return { latents, sigmas };
}

/** The {@link LatentStatistics} of latents and their posterior σ. */
export function latentStatistics(latents: Float32Array, sigmas: Float32Array): LatentStatistics {
  let sum = 0;
  for (const v of latents) sum += v;
  const mean = sum / latents.length;
  let squares = 0;
  for (const v of latents) squares += (v - mean) ** 2;
  const std = Math.sqrt(squares / latents.length);
  let sigma = 0;
  for (const v of sigmas) sigma += v;
  return { scaleFactor: 1 / std, mean, std, meanSigma: sigma / sigmas.length };
}

async function exportAutoencoder(
  spec: AutoencoderSpec,
  profile: Profile,
  autoencoder: AutoencoderKL,
  split: AutoencoderSplit,
  heldOut: ReconstructionScores,
  run: string,
  out: string,
  hash: string,
): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  // The scale factor is measured on the weights as stored (float16), which the book loads.
  await saveCheckpoint(`${out}/weights.ckpt`, {
    step: 0,
    modelConfig: autoencoder.config as never,
    state: {},
    tensors: await readVariables(autoencoder.parameters, "params/"),
  }, { dtype: "float16" });
  const stored = await loadAutoencoderWeights(`${out}/weights.ckpt`);
  let latents: LatentStatistics;
  try {
    const encoded = await encodeImages(stored, split.dataset.images, split.dataset.count);
    latents = latentStatistics(encoded.latents, encoded.sigmas);
  } finally {
    stored.dispose();
  }
  await writeRunManifest(out, run, {
    spec,
    profile,
    hash,
    profileSpec: autoencoderProfile(spec, profile),
    images: split.dataset.images,
    count: split.dataset.count,
    licence: LICENCE,
    steps: spec.training[profile].steps,
    batchSize: spec.training[profile].batchSize,
    parameters: autoencoder.parameterCount(),
  }, { heldOutReconstruction: { ...heldOut }, latents: { ...latents } });
  return out;
}

async function loadAutoencoderWeights(path: string): Promise<AutoencoderKL> {
  const checkpoint = await loadCheckpoint(path);
  const autoencoder = new AutoencoderKL(checkpoint.modelConfig as unknown as AutoencoderConfig);
  try {
    assignVariables(autoencoder.parameters, checkpoint.tensors, "params/", path);
  } catch (e) {
    autoencoder.dispose();
    throw e;
  }
  return autoencoder;
}

/**
 * Images x̂ = D(ẑ/s) of scaled latents ẑ [N, h, w, c] (a latent diffusion model's samples),
 * clipped to [−1, 1].
 */
export function decodeScaledLatents(
  autoencoder: AutoencoderKL,
  scaled: tf.Tensor4D,
  scaleFactor: number,
): tf.Tensor4D {
  return tf.tidy(() =>
    tf.clipByValue(autoencoder.decode(tf.div(scaled, scaleFactor) as tf.Tensor4D), -1, 1)
  );
}

/**
 * The images D(ẑ/s) of `count` scaled latents held in one array (a latent model's samples from
 * `sampleMany`), decoded in batches, as one NHWC array in [−1, 1].
 */
export async function decodeMany(
  autoencoder: AutoencoderKL,
  scaled: Float32Array,
  count: number,
  scaleFactor: number,
  batchSize = 128,
): Promise<Float32Array> {
  const [h, w, c] = autoencoder.latentShape;
  const { imageSize: s, inChannels } = autoencoder.config;
  const out = new Float32Array(count * s * s * inChannels);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const z = tf.tensor4d(scaled.subarray(start * h * w * c, (start + n) * h * w * c), [
      n,
      h,
      w,
      c,
    ]);
    const images = decodeScaledLatents(autoencoder, z, scaleFactor);
    out.set(await images.data() as Float32Array, start * s * s * inChannels);
    tf.dispose([z, images]);
  }
  return out;
}

/** A trained autoencoder with its manifest and latent statistics. */
export interface LoadedAutoencoder {
  autoencoder: AutoencoderKL;
  manifest: ArtefactManifest & {
    heldOutReconstruction: ReconstructionScores;
    latents: LatentStatistics;
  };
  /** s, the scale factor the latent diffusion model's latents are multiplied by. */
  scaleFactor: number;
}

/**
 * The autoencoder `name` of a profile: `full` from its committed artefact (which must be of
 * today's spec), `quick` trained when missing or stale.
 *
 * @throws UserError naming the command that makes a missing or stale `full` artefact
 */
export async function loadAutoencoderArtefact(
  name: string,
  profile: Profile = "full",
  root = ".",
): Promise<LoadedAutoencoder> {
  const spec = autoencoderSpecOf(name);
  const { dir, manifest } = await checkedArtefact(
    name,
    await autoencoderSpecHash(spec, profile),
    profile,
    root,
    (restart) => trainAutoencoderNetwork(name, { profile, root, restart, progress: false }),
  );
  const loaded = manifest as LoadedAutoencoder["manifest"];
  return {
    autoencoder: await loadAutoencoderWeights(`${dir}/weights.ckpt`),
    manifest: loaded,
    scaleFactor: loaded.latents.scaleFactor,
  };
}

/**
 * The scaled latents z·s = μ(x)·s of `images` (the `count` images of the autoencoder's `data`),
 * through the autoencoder `name` of `profile`: what a latent diffusion spec trains on. They are
 * encoded once and cached in `.cache/latents/`, under the hash of the weights and the images.
 */
export async function scaledLatents(
  name: string,
  images: Float32Array,
  count: number,
  profile: Profile = "full",
  root = ".",
): Promise<Float32Array> {
  const { autoencoder, scaleFactor, manifest } = await loadAutoencoderArtefact(name, profile, root);
  try {
    const imageHash = await sha256Hex(
      new Uint8Array(images.buffer, images.byteOffset, images.byteLength),
    );
    const key = (await sha256Hex(`${manifest.files["weights.ckpt"]} ${imageHash}`)).slice(0, 16);
    const path = `${root}/.cache/latents/${name}-${profile}-${key}.f32`;
    const [h, w, c] = autoencoder.latentShape;
    const expected = count * h * w * c;
    try {
      const bytes = await Deno.readFile(path);
      if (bytes.byteLength === expected * 4) return new Float32Array(bytes.buffer);
    } catch {
      // not cached yet
    }
    const { latents } = await encodeImages(autoencoder, images, count);
    for (let i = 0; i < latents.length; i++) latents[i] *= scaleFactor;
    await Deno.mkdir(`${root}/.cache/latents`, { recursive: true });
    await writeFileAtomic(path, new Uint8Array(latents.buffer));
    return latents;
  } finally {
    autoencoder.dispose();
  }
}
