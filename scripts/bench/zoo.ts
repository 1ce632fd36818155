/**
 * The zoo's networks as the benchmark times them: every spec of `MODEL_SPECS`
 * (lib/zoo/specs.ts), its `full` network at its `full` training batch, one row per distinct
 * network and batch; then the feature classifier of `FEATURE_NETWORK_SPECS`
 * (lib/zoo/feature_networks.ts) and the tiny CLIP of `CLIP_SPECS` (lib/zoo/clip_network.ts), as
 * their committed artefacts were built, at their `full` batch; then the KL autoencoders of
 * `AUTOENCODER_SPECS` (lib/zoo/autoencoder.ts), one row per distinct network, at theirs.
 *
 * A row times two steps of its network, each as the library runs it (a {@link BenchWorkload}):
 * a training step (a denoiser's through lib/training/trainer.ts, the classifier's through
 * `classifierStep`, the CLIP's and the autoencoder's through `optimiserStep`) and an inference
 * step (a DDIM step of a denoiser, the features φ(x) of the classifier, which is what the book's
 * metrics compute, the text tower's states τ(y) of the CLIP, a reconstruction D(μ(x)) of the
 * autoencoder). The perceptual distance has no row: it trains 224 channel weights over the
 * classifier's frozen feature maps, whose cost is the classifier's forward pass.
 *
 * @module
 */
import {
  canonicalJson,
  MODEL_SPECS,
  type ModelSpec,
  type SpecTraining,
} from "../../lib/zoo/specs.ts";
import {
  completeModelConfig,
  createModel,
  type ModelConfigBase,
} from "../../lib/core/models/mod.ts";
import { DEFAULT_TRAIN_CONFIG, Trainer } from "../../lib/training/trainer.ts";
import { Random } from "../../lib/core/random.ts";
import { noiseSchedule } from "../../lib/core/schedules.ts";
import { UserError } from "../../lib/core/errors.ts";
import { DDIMScheduler } from "../../lib/core/samplers/mod.ts";
import {
  type ClassifierConfig,
  completeClassifierConfig,
  FeatureClassifier,
} from "../../lib/core/models/classifier.ts";
import { classifierStep, type ClassifierTraining } from "../../lib/training/classification.ts";
import { adamW } from "../../lib/training/supervised.ts";
import { FEATURE_NETWORK_SPECS, isClassifierSpec } from "../../lib/zoo/feature_networks.ts";
import type { ClassifierSpec, PerceptualSpec } from "../../lib/zoo/feature_networks.ts";
import { artefactDir } from "../../lib/zoo/runs.ts";
import { CLIP_SPECS, type ClipSpec } from "../../lib/zoo/clip_network.ts";
import { type ClipConfig, TinyClip } from "../../lib/core/models/clip.ts";
import { clipLoss, type ClipTraining } from "../../lib/training/contrastive.ts";
import { optimiserStep } from "../../lib/training/supervised.ts";
import { readCheckpointHeader } from "../../lib/training/checkpoint.ts";
import { AUTOENCODER_SPECS, type AutoencoderSpec } from "../../lib/zoo/autoencoder.ts";
import {
  type AutoencoderConfig,
  autoencoderConfig,
  AutoencoderKL,
} from "../../lib/core/models/autoencoder.ts";
import { autoencoderLoss, type AutoencoderTraining } from "../../lib/training/autoencoder.ts";
import type { NamedVariable } from "../../lib/core/nn/layers.ts";
import type { Adam } from "../../lib/training/optim.ts";
import * as tf from "@tensorflow/tfjs";

/** What every row of the zoo's table has: its specs, kind and training batch. */
interface ZooNetworkBase {
  /** Names of the specs that train this network at this batch, in registry order. */
  specs: string[];
  /** The network's kind (`config.kind`): the key of its PyTorch port in bench/reference_unet.py. */
  kind: string;
  /** Images a training step. */
  trainBatch: number;
}

/** A denoiser of `MODEL_SPECS` at one training batch, and the specs that train it so. */
export interface DenoiserNetwork extends ZooNetworkBase {
  task: "denoising";
  /** The complete configuration, as `createModel` builds it (the first spec's). */
  config: ModelConfigBase;
  /** The first spec's noise schedule (its values do not change what a step costs). */
  schedule: ModelSpec["schedule"];
  /** The first spec's `full` training options, run through lib/training/trainer.ts. */
  training: SpecTraining;
  /** Gradient-norm clip and EMA decay of that training, the two the PyTorch port repeats. */
  gradClipNorm: number | null;
  emaDecay: number;
}

/** A feature classifier of `FEATURE_NETWORK_SPECS`, as its artefact was built. */
export interface ClassifierNetwork extends ZooNetworkBase {
  task: "classification";
  /** The complete configuration, heads included (they are the data's, read from the artefact). */
  config: ClassifierConfig;
  /** The spec's `full` recipe (its batch, learning rate and weight decay are the port's). */
  training: ClassifierTraining;
}

/** A tiny CLIP of `CLIP_SPECS`, as its artefact was built (its text tower is a text encoder). */
export interface ClipNetwork extends ZooNetworkBase {
  task: "contrastive";
  /** The complete configuration, the tokenizer's vocabulary and context included. */
  config: ClipConfig & { imageSize: number };
  /** The spec's `full` recipe. */
  training: ClipTraining;
}

/** A KL autoencoder of `AUTOENCODER_SPECS`, as its spec builds it. */
export interface AutoencoderNetwork extends ZooNetworkBase {
  task: "reconstruction";
  /** The complete configuration. */
  config: AutoencoderConfig;
  /** The first spec's `full` recipe (its batch, learning rate, weight decay and β are timed). */
  training: AutoencoderTraining;
}

/** One network of the zoo at one training batch. */
export type ZooNetwork = DenoiserNetwork | ClassifierNetwork | ClipNetwork | AutoencoderNetwork;

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/**
 * What makes two specs one row: the completed network configuration without its seed (the seed
 * changes the initial weights, not the work of a step) and the training batch.
 */
export function zooNetworkKey(
  config: ZooNetwork["config"],
  trainBatch: number,
): string {
  return `${canonicalJson({ ...config, seed: undefined })} batch ${trainBatch}`;
}

/**
 * One row per distinct {@link zooNetworkKey} of `rows` (each of one spec), in the order its first
 * spec appears; each lists every spec that shares it.
 */
function distinctNetworks<N extends ZooNetwork>(rows: Iterable<N>): N[] {
  const byKey = new Map<string, N>();
  for (const row of rows) {
    const key = zooNetworkKey(row.config, row.trainBatch);
    const known = byKey.get(key);
    if (known) known.specs.push(...row.specs);
    else byKey.set(key, row);
  }
  return [...byKey.values()];
}

/** The denoisers of `specs` to time, one per distinct {@link zooNetworkKey}. */
export function zooNetworks(specs: Iterable<ModelSpec>): DenoiserNetwork[] {
  return distinctNetworks(Array.from(specs, (spec): DenoiserNetwork => {
    const config = completeModelConfig(spec.network.full);
    const training = spec.training.full;
    return {
      task: "denoising",
      specs: [spec.name],
      kind: config.kind,
      config,
      trainBatch: training.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize,
      schedule: spec.schedule,
      training,
      gradClipNorm: training.gradClipNorm !== undefined
        ? training.gradClipNorm
        : DEFAULT_TRAIN_CONFIG.gradClipNorm,
      emaDecay: training.emaDecay ?? DEFAULT_TRAIN_CONFIG.emaDecay,
    };
  }));
}

/** Tokens of the random context a cross-attending network is timed with (the tiny CLIP's L). */
export const BENCH_TOKENS = 16;

/**
 * A training run of `network` as the benchmark times it: random images (tanh of normals: a
 * step's cost does not depend on the pixels) four batches' worth, labels y = i mod K for a
 * conditional network (as its PyTorch port draws them), random token states of
 * {@link BENCH_TOKENS} tokens for a cross-attending one, the spec's schedule and training
 * options. Returns the trainer, the labels of n images, and the generator as the images left it
 * (for the sampling step's inputs).
 */
export function benchmarkTrainer(
  network: DenoiserNetwork,
): { trainer: Trainer; labelsOf: (n: number) => Int32Array; random: Random } {
  const random = new Random(7);
  const model = createModel(network.config);
  const [s, c] = [network.config.imageSize, network.config.inChannels];
  const count = 4 * network.trainBatch;
  const images = randomImages(random, count, s, c);
  const classes = model.contextDim;
  const labelsOf = (n: number) => Int32Array.from({ length: n }, (_, i) => i % classes);
  const width = model.crossAttentionDim;
  const tokens = (n: number) => Float32Array.from(random.normals(n * BENCH_TOKENS * width));
  const captionStates = width > 0
    ? { states: tokens(count), length: BENCH_TOKENS, width, nullStates: tokens(1) }
    : undefined;
  const trainer = new Trainer(
    model,
    { images, count, ...(classes > 0 ? { labels: labelsOf(count) } : {}), captionStates },
    noiseSchedule(network.schedule.name, network.schedule.T),
    { ...network.training, steps: 1_000_000, batchSize: network.trainBatch },
    { progress: false },
  );
  return { trainer, labelsOf, random };
}

/**
 * The network configuration recorded in the committed `full` artefact of `name` under `root`.
 *
 * @throws UserError naming the command that builds a missing artefact
 */
async function artefactConfig(name: string, root: string): Promise<unknown> {
  const path = `${artefactDir(name, root)}/weights.ckpt`;
  const header = await readCheckpointHeader(path).catch((error) => {
    throw new UserError(
      `the benchmark times ${name} as its artefact was built, and ${path} cannot be ` +
        `read (${(error as Error).message.split("\n")[0]}); build it with ` +
        `\`deno task train ${name}\``,
    );
  });
  return header.modelConfig;
}

/**
 * The classifiers of `specs` (the feature networks; the perceptual distance has no network of
 * its own, see the module comment), each as its committed `full` artefact under `root` was built:
 * the heads are the data's category and subcategory counts, which the artefact's configuration
 * records, so that the benchmark needs no dataset.
 *
 * @throws UserError naming the command that builds a missing artefact
 */
export async function classifierNetworks(
  specs: Iterable<ClassifierSpec | PerceptualSpec> = FEATURE_NETWORK_SPECS.values(),
  root = ROOT,
): Promise<ClassifierNetwork[]> {
  const networks: ClassifierNetwork[] = [];
  for (const spec of specs) {
    if (!isClassifierSpec(spec)) continue;
    const config = completeClassifierConfig(
      await artefactConfig(spec.name, root) as ClassifierConfig,
    );
    networks.push({
      task: "classification",
      specs: [spec.name],
      kind: config.kind,
      config,
      trainBatch: spec.training.full.batchSize,
      training: spec.training.full,
    });
  }
  return networks;
}

/**
 * The tiny CLIPs of `specs`, each as its committed `full` artefact under `root` was built (the
 * vocabulary is the data's, which the artefact's configuration records).
 *
 * @throws UserError naming the command that builds a missing artefact
 */
export async function clipNetworks(
  specs: Iterable<ClipSpec> = CLIP_SPECS.values(),
  root = ROOT,
): Promise<ClipNetwork[]> {
  const networks: ClipNetwork[] = [];
  for (const spec of specs) {
    const config = await artefactConfig(spec.name, root) as ClipConfig;
    const { imageSize } = completeClassifierConfig({ ...config.image, heads: [] });
    networks.push({
      task: "contrastive",
      specs: [spec.name],
      kind: config.kind,
      config: { ...config, imageSize },
      trainBatch: spec.training.full.batchSize,
      training: spec.training.full,
    });
  }
  return networks;
}

/**
 * The autoencoders of `specs`, one per distinct {@link zooNetworkKey}, each at its `full`
 * network and batch. The configuration is read from the spec, `autoencoderConfig({...full,
 * imageSize})`, not from an artefact: it is exactly what the artefact records (trainAutoencoder
 * completes the same partial config), none of it is the data's (unlike the classifier's heads
 * and the CLIP's vocabulary), and so a row needs no artefact that is still being trained.
 */
export function autoencoderNetworks(
  specs: Iterable<AutoencoderSpec> = AUTOENCODER_SPECS.values(),
): AutoencoderNetwork[] {
  return distinctNetworks(Array.from(specs, (spec): AutoencoderNetwork => {
    const config = autoencoderConfig({ ...spec.network.full, imageSize: spec.data.size });
    return {
      task: "reconstruction",
      specs: [spec.name],
      kind: config.kind,
      config,
      trainBatch: spec.training.full.batchSize,
      training: spec.training.full,
    };
  }));
}

/**
 * Every network of the zoo the benchmark times: the denoisers, the classifiers, the CLIPs, the
 * autoencoders.
 */
export async function allZooNetworks(root = ROOT): Promise<ZooNetwork[]> {
  return [
    ...zooNetworks(MODEL_SPECS.values()),
    ...await classifierNetworks(undefined, root),
    ...await clipNetworks(undefined, root),
    ...autoencoderNetworks(),
  ];
}

/** A zoo network's two timed steps, as the library runs them (see the module comment). */
export interface BenchWorkload {
  /** One training step, resolved when its update has been applied. */
  train(): Promise<void>;
  /** One inference step at the inference batch, resolved when its output has been read. */
  infer(): Promise<void>;
  /** Free the network, its optimiser state and its inputs. */
  dispose(): void;
}

/**
 * The workload of `network`, its inference step at `inferenceBatch` images: a denoiser trains
 * through lib/training/trainer.ts ({@link benchmarkTrainer}) and samples one DDIM step (at the
 * middle of 50, from its EMA weights); a classifier trains through `classifierStep` on a fixed
 * batch of random images and labels y = i mod K per head (augmentation, which is not the
 * network's, aside) and infers its features φ(x); a CLIP and an autoencoder as
 * {@link clipWorkload} and {@link autoencoderWorkload} say.
 */
export function benchmarkWorkload(network: ZooNetwork, inferenceBatch: number): BenchWorkload {
  switch (network.task) {
    case "denoising":
      return denoiserWorkload(network, inferenceBatch);
    case "classification":
      return classifierWorkload(network, inferenceBatch);
    case "contrastive":
      return clipWorkload(network, inferenceBatch);
    case "reconstruction":
      return autoencoderWorkload(network, inferenceBatch);
  }
}

/** n random images, tanh of normals, NHWC [n, s, s, c] (a step's cost does not depend on pixels). */
function randomImages(random: Random, n: number, s: number, c: number): Float32Array {
  return Float32Array.from(random.normals(n * s * s * c), (v) => Math.tanh(v));
}

/**
 * The training step of a network trained by `optimiserStep` (lib/training/supervised.ts):
 * ∇_θ loss(θ), then AdamW's update number t = 1, 2, … at the recipe's learning rate. A loss
 * that is not finite is an error naming the row.
 */
function adamWTrainStep(
  network: ClipNetwork | AutoencoderNetwork,
  parameters: readonly NamedVariable[],
  adam: Adam,
  loss: () => tf.Scalar,
): () => Promise<void> {
  let t = 0;
  return async () => {
    const step = await optimiserStep(parameters, adam, loss, network.training.learningRate, ++t);
    if (!step.applied) throw new Error(`${network.specs}: the loss became ${step.loss}`);
  };
}

function denoiserWorkload(network: DenoiserNetwork, inferenceBatch: number): BenchWorkload {
  const { trainer, labelsOf, random } = benchmarkTrainer(network);
  const [s, c] = [network.config.imageSize, network.config.inChannels];
  const ddim = new DDIMScheduler(trainer.schedule);
  ddim.setTimesteps(50);
  const t = ddim.timesteps[25];
  const xs = tf.tensor4d(random.normals(inferenceBatch * s * s * c), [inferenceBatch, s, s, c]);
  const labels = trainer.model.contextDim > 0
    ? tf.tensor1d(labelsOf(inferenceBatch), "int32")
    : undefined;
  const width = trainer.model.crossAttentionDim;
  const states = width > 0
    ? tf.tensor3d(random.normals(inferenceBatch * BENCH_TOKENS * width), [
      inferenceBatch,
      BENCH_TOKENS,
      width,
    ])
    : undefined;
  return {
    async train() {
      await trainer.trainStep();
    },
    async infer() {
      const [next, x0] = tf.tidy(() => {
        const timesteps = tf.fill([inferenceBatch], t) as tf.Tensor1D;
        const eps = trainer.ema.apply(xs, timesteps, {
          classLabels: labels,
          encoderHiddenStates: states,
        });
        const { prevSample, predOriginalSample } = ddim.step(eps as tf.Tensor4D, t, xs);
        return [prevSample, predOriginalSample];
      });
      await next.data();
      tf.dispose([next, x0]);
    },
    dispose() {
      tf.dispose([xs, ...(labels ? [labels] : []), ...(states ? [states] : [])]);
      trainer.model.dispose();
      trainer.dispose();
    },
  };
}

function classifierWorkload(network: ClassifierNetwork, inferenceBatch: number): BenchWorkload {
  const classifier = new FeatureClassifier(network.config);
  const adam = adamW(classifier.parameters, network.training.weightDecay);
  const random = new Random(7);
  const { imageSize: s, inChannels: c, heads } = network.config;
  const images = (n: number) => randomImages(random, n, s, c);
  const batch = {
    x: images(network.trainBatch),
    labels: heads.map((h) =>
      Int32Array.from({ length: network.trainBatch }, (_, i) => i % h.classes)
    ),
  };
  const xs = tf.tensor4d(images(inferenceBatch), [inferenceBatch, s, s, c]);
  let t = 0;
  return {
    async train() {
      const step = await classifierStep(
        classifier,
        adam,
        batch,
        network.training.learningRate,
        ++t,
      );
      if (!step.applied) throw new Error(`${network.specs}: the loss became ${step.loss}`);
    },
    async infer() {
      const features = classifier.features(xs);
      await features.data();
      features.dispose();
    },
    dispose() {
      xs.dispose();
      adam.dispose();
      classifier.dispose();
    },
  };
}

/**
 * A tiny CLIP's workload: a training step of the symmetric InfoNCE loss on a fixed batch of
 * random images and captions (ids y = BOS, words, EOS, then PAD, varied lengths), then AdamW;
 * its inference step is the text tower's token states τ(y) of `inferenceBatch` captions, what a
 * text-conditional U-Net needs of each prompt.
 */
function clipWorkload(network: ClipNetwork, inferenceBatch: number): BenchWorkload {
  const clip = new TinyClip(network.config);
  const adam = adamW(clip.parameters, network.training.weightDecay);
  const random = new Random(7);
  const s = network.config.imageSize;
  const { vocabularySize: V, contextLength: L } = clip.text.config;
  const images = (n: number) => tf.tensor4d(randomImages(random, n, s, 3), [n, s, s, 3]);
  const captions = (n: number) => {
    const ids = new Int32Array(n * L);
    for (let i = 0; i < n; i++) {
      const words = 2 + (i % (L - 3));
      ids[i * L] = 2; // BOS
      for (let w = 1; w <= words; w++) ids[i * L + w] = random.int(4, V);
      ids[i * L + words + 1] = 3; // EOS
    }
    return tf.tensor2d(ids, [n, L], "int32");
  };
  const [x, y] = [images(network.trainBatch), captions(network.trainBatch)];
  const prompts = captions(inferenceBatch);
  return {
    train: adamWTrainStep(
      network,
      clip.parameters,
      adam,
      () => clipLoss(clip.imageEmbeddings(x), clip.textEmbeddings(y), clip.logScale),
    ),
    async infer() {
      const { states, pooled } = clip.text.encode(prompts);
      await states.data();
      tf.dispose([states, pooled]);
    },
    dispose() {
      tf.dispose([x, y, prompts]);
      adam.dispose();
      clip.dispose();
    },
  };
}

/**
 * A KL autoencoder's workload (lib/training/autoencoder.ts): a training step of
 *
 *   L = mean_pixels |x − D(z)| + β · KL(q(z | x) ‖ N(0, I)) / (H · W · 3),  z = μ(x) + σ(x) ⊙ ε,
 *
 * on a fixed batch of random images, ε drawn afresh each step as `trainAutoencoder` draws it,
 * then AdamW. The perceptual term w_p · d(↓x, ↓D(z)) of the recipe is left out (w_p = 0): its
 * cost is the frozen classifier's forward pass on the 16×16 ↓x and ↓D(z) and its backward to
 * ↓D(z), which the classifier's row already times; without it the row, and its PyTorch port, is
 * the autoencoder's alone. The inference step is a reconstruction D(μ(x)) of `inferenceBatch`
 * images through the posterior mean, as the held-out scores are computed.
 */
function autoencoderWorkload(network: AutoencoderNetwork, inferenceBatch: number): BenchWorkload {
  const autoencoder = new AutoencoderKL(network.config);
  const adam = adamW(autoencoder.parameters, network.training.weightDecay);
  const random = new Random(7);
  const { imageSize: s, inChannels: c } = network.config;
  const B = network.trainBatch;
  const latent = autoencoder.latentShape;
  const x = tf.tensor4d(randomImages(random, B, s, c), [B, s, s, c]);
  const xs = tf.tensor4d(randomImages(random, inferenceBatch, s, c), [inferenceBatch, s, s, c]);
  const weights = { perceptualWeight: 0, klWeight: network.training.klWeight };
  return {
    train: adamWTrainStep(network, autoencoder.parameters, adam, () => {
      const noise = tf.tensor4d(random.normals(B * latent[0] * latent[1] * latent[2]), [
        B,
        ...latent,
      ]);
      return autoencoderLoss(autoencoder, null, x, noise, weights).total;
    }),
    async infer() {
      const reconstruction = tf.tidy(() => autoencoder.decode(autoencoder.encode(xs).mean));
      await reconstruction.data();
      reconstruction.dispose();
    },
    dispose() {
      tf.dispose([x, xs]);
      adam.dispose();
      autoencoder.dispose();
    },
  };
}

/** The library's network of a row, freshly built (the caller disposes it). */
function buildNetwork(network: ZooNetwork) {
  switch (network.task) {
    case "denoising":
      return createModel(network.config);
    case "classification":
      return new FeatureClassifier(network.config);
    case "contrastive":
      return new TinyClip(network.config);
    case "reconstruction":
      return new AutoencoderKL(network.config);
  }
}

const parameterCounts = new Map<string, number>();
/** Trainable parameters of a network as the library builds it (built once per network). */
export function zooParameterCount(network: ZooNetwork): number {
  const key = zooNetworkKey(network.config, network.trainBatch);
  if (!parameterCounts.has(key)) {
    const model = buildNetwork(network);
    parameterCounts.set(key, model.parameterCount());
    model.dispose();
  }
  return parameterCounts.get(key)!;
}

/** A row's name: its specs, comma-separated. */
export function zooNetworkName(network: Pick<ZooNetwork, "specs">): string {
  return network.specs.join(", ");
}

/**
 * The error that ends a run when one of `networks` is of a kind without a port among `ports`
 * (the kinds the `runtime` peer can build); undefined when every kind has one. A network is never
 * skipped silently: its row would be missing from every table without a word.
 */
export function missingPortError(
  networks: readonly ZooNetwork[],
  ports: readonly string[],
  runtime = "pytorch",
): UserError | undefined {
  const network = networks.find((n) => !ports.includes(n.kind));
  if (!network) return undefined;
  return new UserError(
    `the zoo's network kind "${network.kind}" (spec ${zooNetworkName(network)}) has no ` +
      `${runtime} port: add one to PORTS in bench/reference_unet.py, with exactly the ` +
      `parameter count of the library's network (there are ports of ${ports.join(", ")})`,
  );
}
