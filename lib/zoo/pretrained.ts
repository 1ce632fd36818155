/**
 * Trained models for the chapters, in one call:
 *
 * ```ts
 * const { model, schedule, predictionType } = await loadPretrained("emoji16-unet");
 * ```
 *
 * The `full` profile loads the committed artefact (`assets/models/NAME/`) and never trains; it
 * is an error, naming the command that makes it, when the artefact is missing or was made from
 * another spec. The `quick` profile trains the spec's quick variant through the same code (the
 * first time, and again whenever the library changed; else it reuses it from
 * `.cache/runs/NAME-quick/`), so that CI exercises training.
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import type { NoiseSchedule } from "../core/schedules.ts";
import { noiseSchedule } from "../core/schedules.ts";
import type { DiffusionModel } from "../core/models/mod.ts";
import type { PredictionType } from "../core/parameterization.ts";
import { decodePng, type RgbaImage } from "../core/images.ts";
import { loadModel } from "../training/checkpoint.ts";
import { DEFAULT_TRAIN_CONFIG, type MetricsRecord } from "../training/trainer.ts";
import { recordDependency } from "../runtime/dependencies.ts";
import { sha256Hex } from "../runtime/files.ts";
import {
  type ArtefactManifest,
  exportArtefact,
  libraryHash,
  readManifest,
  readMetrics,
} from "./artefacts.ts";
import { artefactDir, runDir, trainModel } from "./runs.ts";
import { type ModelSpec, modelSpec, specHash } from "./specs.ts";

/** A trained model of the zoo, with what the chapters show about its run. */
export interface Pretrained {
  /** Its spec. */
  spec: ModelSpec;
  /** Its manifest (steps, wall time, dataset, fingerprint). */
  manifest: ArtefactManifest;
  /** The artefact's folder. */
  dir: string;
  /** The network with the EMA weights θ̄ (sample from this one). */
  model: DiffusionModel;
  /** The noise schedule it was trained with. */
  schedule: NoiseSchedule;
  /** What the network predicts. */
  predictionType: PredictionType;
  /**
   * The bound its samplers clip x̂₀ to, as its training's sample grids did: 1 (the images' range)
   * unless the spec says otherwise, such as a latent model's ±5; undefined: no clipping.
   */
  clipRange: number | undefined;
  /** The network with the last step's weights θ (the caller disposes it). */
  lastWeights(): Promise<DiffusionModel>;
  /** The run's metrics records. */
  metrics(): Promise<MetricsRecord[]>;
  /** The fixed-noise sample grids taken during training, by step. */
  sampleGrids(): Promise<{ step: number; image: RgbaImage }[]>;
}

/** Options of {@link loadPretrained}. */
export interface LoadPretrainedOptions {
  /** `full`: the committed artefact; `quick`: the quick variant, trained if needed (default full). */
  profile?: Profile;
  /** Project root (default the working folder). */
  root?: string;
}

/** Load the zoo's model `name` (see the module comment). */
export async function loadPretrained(
  name: string,
  options: LoadPretrainedOptions = {},
): Promise<Pretrained> {
  const spec = modelSpec(name);
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const dir = profile === "full"
    ? artefactDir(name, root)
    : `${runDir(name, profile, root)}/artefact`;
  const hash = await specHash(spec, profile);
  let manifest = await readManifest(dir);
  if (profile === "full") {
    if (!manifest) {
      throw new Error(
        `${dir} holds no trained ${name}; make it with \`deno task train ${name}\` ` +
          `(deno task train --list shows every model's state).`,
      );
    }
    if (manifest.specHash !== hash) {
      throw new Error(
        `${dir} was trained from another spec of ${name} (${manifest.specHash}, today's is ` +
          `${hash}); retrain it with \`deno task train ${name} --restart\`.`,
      );
    }
    await recordDependency({
      path: `assets/models/${name}`,
      sha256: await sha256Hex(await Deno.readFile(`${dir}/manifest.json`)),
    });
  } else if (
    !manifest || manifest.specHash !== hash || manifest.libraryHash !== await libraryHash()
  ) {
    await trainModel(name, { profile, root, restart: manifest !== undefined });
    await exportArtefact(name, profile, root);
    manifest = (await readManifest(dir))!;
  }
  const model = await loadModel(`${dir}/weights.ckpt`);
  return {
    spec,
    manifest,
    dir,
    model,
    schedule: noiseSchedule(spec.schedule.name, spec.schedule.T),
    predictionType: spec.objective.prediction,
    clipRange: clipRangeOf(spec, profile),
    lastWeights: () => loadModel(`${dir}/weights.ckpt`, { weights: "params" }),
    metrics: () => readMetrics(`${dir}/metrics.jsonl`),
    sampleGrids: async () => {
      const grids = [];
      for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const match = /^samples-(\d+)\.png$/.exec(entry.name);
        if (match) {
          grids.push({
            step: Number(match[1]),
            image: decodePng(await Deno.readFile(`${dir}/${entry.name}`)),
          });
        }
      }
      return grids;
    },
  };
}

/** The x̂₀ bound of `spec`'s sample grids in `profile` (TrainConfig's clipRange, default 1). */
function clipRangeOf(spec: ModelSpec, profile: Profile): number | undefined {
  const clipRange = spec.training[profile].clipRange ?? DEFAULT_TRAIN_CONFIG.clipRange;
  return clipRange ?? undefined;
}
