/**
 * The manifest of a zoo artefact (`assets/models/NAME/manifest.json`), its type and its reader.
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import { sha256Hex } from "../runtime/files.ts";
import type { ModelFingerprint } from "./fingerprint.ts";

/** The manifest of an artefact. */
export interface ArtefactManifest {
  /** The model's name. */
  name: string;
  /** What it is. */
  description: string;
  /** Profile the run trained (`full` for committed artefacts). */
  profile: Profile;
  /** Hash of the spec's profile (lib/zoo/specs.ts). */
  specHash: string;
  /** The spec's profile itself (`profileSpec`, or a feature network's `featureProfile`). */
  spec: Record<string, unknown>;
  /** The training images: count and SHA-256 of their float32 values. */
  dataset: { count: number; sha256: string; licence: string };
  /** Steps trained. */
  steps: number;
  /** Images per step. */
  batchSize: number;
  /** Wall time of the steps by where they ran (from the metrics records). */
  training: { where: string; steps: number; seconds: number }[];
  /** Mean loss of the last logged window. */
  finalLoss: number;
  /** Parameters of the network. */
  parameters: number;
  /** SHA-256 of each file of the artefact but the manifest. */
  files: Record<string, string>;
  /** A classifier's top-1 accuracy on images it never trained on, by head. */
  heldOutAccuracy?: Record<string, number>;
  /** The tiny CLIP's retrieval on emoji it never trained on: top-1 and top-5, and chance. */
  heldOutRetrieval?: Record<string, number>;
  /** An autoencoder's reconstructions of emoji it never trained on (PSNR, L1, perceptual, KL). */
  heldOutReconstruction?: Record<string, number>;
  /** An autoencoder's latents over the dataset: the scale factor s = 1/std, mean, std, mean σ. */
  latents?: Record<string, number>;
  /** A LoRA adapter's file size in bytes (lib/training/adapter.ts). */
  adapterBytes?: number;
  /** A whole fine-tuned network's weight file size in bytes (a DreamBooth fine-tune). */
  weightBytes?: number;
  /** A learned word's file size in bytes (lib/training/textual_inversion.ts). */
  tokenBytes?: number;
  /** A learned word's nearest words in its encoder's vocabulary, by cosine. */
  nearestWords?: { word: string; cosine: number }[];
  /** Numbers today's code must reproduce (see lib/zoo/fingerprint.ts); `full` artefacts only. */
  fingerprint?: ModelFingerprint;
  /** Hash of the library that made a `quick` artefact (`libraryHash` in lib/zoo/artefacts.ts). */
  libraryHash?: string;
  /**
   * The run's earlier specs, when it went back to a kept checkpoint under a changed training
   * recipe (`deno task train NAME --resume-from STEP`): from which step, and what changed.
   */
  lineage?: RunLineage[];
}

/** A change of a run's training recipe at a step it went back to. */
export interface RunLineage {
  /** The step the run went back to. */
  step: number;
  /** The hash of the spec it had trained until then. */
  specHash: string;
  /** What changed, as dotted paths with old → new values. */
  changed: string[];
}

/** The manifest in `dir`, or undefined when there is none. */
export async function readManifest(dir: string): Promise<ArtefactManifest | undefined> {
  const path = `${dir}/manifest.json`;
  let manifest: ArtefactManifest;
  try {
    manifest = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${path} is not readable JSON (${(e as Error).message}); ${RESTORE}`);
  }
  const problem = manifestProblem(manifest);
  if (problem) throw new Error(`${path} is not a model manifest: ${problem}; ${RESTORE}`);
  return manifest;
}

const RESTORE = "restore it with `git checkout -- assets/models` or export the model again";

/** What is wrong with the shape of a parsed manifest, or undefined. */
function manifestProblem(m: ArtefactManifest): string | undefined {
  if (typeof m !== "object" || m === null || Array.isArray(m)) return "it is not an object";
  if (typeof m.name !== "string" || typeof m.specHash !== "string") {
    return "it has no name or specHash";
  }
  if (!Number.isSafeInteger(m.steps) || m.steps < 0) return "its steps are not a count";
  if (!Array.isArray(m.training)) return "it has no training record";
  for (const t of m.training) {
    if (typeof t?.where !== "string" || !Number.isFinite(t.steps) || !Number.isFinite(t.seconds)) {
      return "a training record lacks where, steps or seconds";
    }
  }
  if (typeof m.files !== "object" || m.files === null) return "it lists no files";
  if (typeof m.spec !== "object" || m.spec === null) return "it holds no spec";
  return undefined;
}

/** What {@link trainingTime} reads of a metrics record. */
export interface TimedRecord {
  step: number;
  stepsPerSecond: number;
  backend?: string;
}

/**
 * Wall time by where the steps ran, from the logged rates (a run may start on a GPU and end on a
 * CPU, or the other way round).
 */
export function trainingTime(metrics: readonly TimedRecord[]): ArtefactManifest["training"] {
  const sessions = new Map<string, { steps: number; seconds: number }>();
  metrics.forEach((m, i) => {
    const steps = m.step - (i > 0 ? metrics[i - 1].step : 0);
    const where = m.backend ?? "unrecorded";
    const session = sessions.get(where) ?? { steps: 0, seconds: 0 };
    session.steps += steps;
    session.seconds += steps / m.stepsPerSecond;
    sessions.set(where, session);
  });
  return [...sessions].map(([where, s]) => ({
    where,
    steps: s.steps,
    seconds: Math.round(s.seconds),
  }));
}

/** SHA-256 of each file of the artefact folder `dir` but its manifest, by name, sorted. */
export async function fileHashes(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.isFile && entry.name !== "manifest.json") {
      files[entry.name] = await sha256Hex(await Deno.readFile(`${dir}/${entry.name}`));
    }
  }
  return files;
}
