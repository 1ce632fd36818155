/**
 * The zoo's networks as the benchmark times them: every spec of `MODEL_SPECS`
 * (lib/zoo/specs.ts), its `full` network at its `full` training batch, one row per distinct
 * network and batch.
 *
 * @module
 */
import { canonicalJson, type ModelSpec, type SpecTraining } from "../../lib/zoo/specs.ts";
import {
  completeModelConfig,
  createModel,
  type ModelConfigBase,
} from "../../lib/core/models/mod.ts";
import { DEFAULT_TRAIN_CONFIG, Trainer } from "../../lib/training/trainer.ts";
import { Random } from "../../lib/core/random.ts";
import { noiseSchedule } from "../../lib/core/schedules.ts";
import { UserError } from "../../lib/core/errors.ts";

/** One network of the zoo at one training batch, and the specs that train it so. */
export interface ZooNetwork {
  /** Names of the specs that train this network at this batch, in registry order. */
  specs: string[];
  /** The network's kind (`config.kind`): the key of its PyTorch port in bench/reference_unet.py. */
  kind: string;
  /** The complete configuration, as `createModel` builds it (the first spec's). */
  config: ModelConfigBase;
  /** Images a training step. */
  trainBatch: number;
  /** The first spec's noise schedule (its values do not change what a step costs). */
  schedule: ModelSpec["schedule"];
  /** The first spec's `full` training options, run through lib/training/trainer.ts. */
  training: SpecTraining;
  /** Gradient-norm clip and EMA decay of that training, the two the PyTorch port repeats. */
  gradClipNorm: number | null;
  emaDecay: number;
}

/**
 * What makes two specs one row: the completed network configuration without its seed (the seed
 * changes the initial weights, not the work of a step) and the training batch.
 */
export function zooNetworkKey(config: ModelConfigBase, trainBatch: number): string {
  return `${canonicalJson({ ...config, seed: undefined })} batch ${trainBatch}`;
}

/**
 * The networks to time, one per distinct {@link zooNetworkKey}, in the order their first spec
 * appears; each lists every spec that shares it.
 */
export function zooNetworks(specs: Iterable<ModelSpec>): ZooNetwork[] {
  const byKey = new Map<string, ZooNetwork>();
  for (const spec of specs) {
    const config = completeModelConfig(spec.network.full);
    const training = spec.training.full;
    const trainBatch = training.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize;
    const key = zooNetworkKey(config, trainBatch);
    const known = byKey.get(key);
    if (known) {
      known.specs.push(spec.name);
      continue;
    }
    byKey.set(key, {
      specs: [spec.name],
      kind: config.kind,
      config,
      trainBatch,
      schedule: spec.schedule,
      training,
      gradClipNorm: training.gradClipNorm !== undefined
        ? training.gradClipNorm
        : DEFAULT_TRAIN_CONFIG.gradClipNorm,
      emaDecay: training.emaDecay ?? DEFAULT_TRAIN_CONFIG.emaDecay,
    });
  }
  return [...byKey.values()];
}

/**
 * A training run of `network` as the benchmark times it: random images (tanh of normals: a
 * step's cost does not depend on the pixels) four batches' worth, labels y = i mod K for a
 * conditional network (as its PyTorch port draws them), the spec's schedule and training options.
 * Returns the trainer, the labels of n images, and the generator as the images left it (for
 * the sampling step's inputs).
 */
export function benchmarkTrainer(
  network: ZooNetwork,
): { trainer: Trainer; labelsOf: (n: number) => Int32Array; random: Random } {
  const random = new Random(7);
  const model = createModel(network.config);
  const [s, c] = [network.config.imageSize, network.config.inChannels];
  const count = 4 * network.trainBatch;
  const images = Float32Array.from(random.normals(count * s * s * c), (v) => Math.tanh(v));
  const classes = model.contextDim;
  const labelsOf = (n: number) => Int32Array.from({ length: n }, (_, i) => i % classes);
  const trainer = new Trainer(
    model,
    { images, count, ...(classes > 0 ? { labels: labelsOf(count) } : {}) },
    noiseSchedule(network.schedule.name, network.schedule.T),
    { ...network.training, steps: 1_000_000, batchSize: network.trainBatch },
    { progress: false },
  );
  return { trainer, labelsOf, random };
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
      `${runtime} port: add one to PORTS in bench/reference_unet.py, with exactly ` +
      `createModel(config).parameterCount() parameters (there are ports of ${ports.join(", ")})`,
  );
}
