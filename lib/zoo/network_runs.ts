/**
 * Runs and artefacts of the zoo's networks that are not denoisers (the feature classifier and the
 * perceptual distance of lib/zoo/feature_networks.ts, the CLIP of lib/zoo/clip_network.ts, the
 * autoencoders of lib/zoo/autoencoder.ts): a run in `.cache/runs/NAME-PROFILE/` claimed for one
 * spec hash (`openNetworkRun`), a supervised run's files (`runFiles`), the export of a finished
 * run (`closeNetworkRun`, `writeRunManifest`) and the check of an artefact against today's spec
 * (`checkedArtefact`). The denoisers' runs are lib/zoo/runs.ts's.
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import { exists, sha256Hex, writeFileAtomic } from "../runtime/files.ts";
import { recordDependency } from "../runtime/dependencies.ts";
import { UserError } from "../core/errors.ts";
import type { SupervisedMetrics, SupervisedRunOptions } from "../training/supervised.ts";
import { type ArtefactManifest, fileHashes, readManifest, trainingTime } from "./manifest.ts";
import { artefactDir, moveRunAside, runDir } from "./runs.ts";

/** The images' licences, as a manifest records them. */
export const LICENCE = "Twemoji images CC-BY 4.0 (Twitter); Noto Emoji Apache-2.0 (Google)";

/** Where a network's artefact goes: assets/models/NAME (full), or its quick run's folder. */
export function folderOf(name: string, profile: Profile, root: string): string {
  return profile === "full" ? artefactDir(name, root) : `${runDir(name, profile, root)}/artefact`;
}

/** Check that the run in `dir` trains `hash` (or start it); another spec's run is an error. */
export async function claimRun(
  dir: string,
  name: string,
  profile: Profile,
  hash: string,
): Promise<void> {
  const path = `${dir}/run.json`;
  if (await exists(path)) {
    const stored = JSON.parse(await Deno.readTextFile(path)) as { specHash: string };
    if (stored.specHash !== hash) {
      throw new UserError(
        `${dir} is a run of another spec of ${name} (${stored.specHash}, today's is ${hash}); ` +
          `start over with \`deno task train ${name} --profile ${profile} --restart\` (the old ` +
          `run is moved aside, not deleted).`,
      );
    }
    return;
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify({ specHash: hash }, null, 2) + "\n");
}

/** What a run of a network that is not a denoiser did. */
export interface NetworkRunResult {
  dir: string;
  step: number;
  steps: number;
  movedAside?: string;
  /** The artefact, when the run finished. */
  artefact?: string;
  upToDate?: boolean;
}

/** Options of a run of a network that is not a denoiser. */
export interface NetworkRunOptions {
  profile?: Profile;
  minutes?: number;
  restart?: boolean;
  progress?: boolean;
  root?: string;
}

/**
 * The start of a network's run: with `restart`, the old run moved aside (never deleted);
 * an artefact already of today's spec `hash` is up to date; else the run is claimed for `hash`.
 */
export async function openNetworkRun(
  name: string,
  hash: string,
  options: NetworkRunOptions,
): Promise<
  NetworkRunResult & { upToDate: true } | {
    dir: string;
    out: string;
    hash: string;
    movedAside?: string;
  }
> {
  const profile = options.profile ?? "full";
  const root = options.root ?? ".";
  const dir = runDir(name, profile, root);
  const movedAside = options.restart ? await moveRunAside(dir) : undefined;
  const out = folderOf(name, profile, root);
  if (!options.restart && (await readManifest(out))?.specHash === hash) {
    return { dir, step: 0, steps: 0, upToDate: true };
  }
  await claimRun(dir, name, profile, hash);
  return { dir, out, hash, movedAside };
}

/** Where a supervised run in `dir` keeps its checkpoint and metrics, and its budget. */
export function runFiles(dir: string, options: NetworkRunOptions): SupervisedRunOptions {
  return {
    checkpointPath: `${dir}/checkpoint.bin`,
    metricsPath: `${dir}/metrics.jsonl`,
    minutes: options.minutes,
    progress: options.progress,
  };
}

/**
 * The end of a network's run at `step` of `steps`: a finished run is exported (by
 * `exportIt`), an unfinished one says where it stopped; the network is freed either way.
 */
export async function closeNetworkRun(
  opened: { dir: string; movedAside?: string },
  steps: number,
  step: number,
  network: { dispose(): void },
  exportIt: () => Promise<string>,
): Promise<NetworkRunResult> {
  const { dir, movedAside } = opened;
  try {
    if (step < steps) return { dir, step, steps, movedAside };
    return { dir, step, steps, movedAside, artefact: await exportIt() };
  } finally {
    network.dispose();
  }
}

/** What {@link writeRunManifest} records of a network that is not a denoiser. */
export interface RunManifestFields {
  spec: { name: string; description: string };
  profile: Profile;
  hash: string;
  /** The spec's profile (what its hash covers). */
  profileSpec: Record<string, unknown>;
  /** The images of its data, all of them, and their licence. */
  images: Float32Array;
  count: number;
  licence: string;
  steps: number;
  batchSize: number;
  parameters: number;
}

/**
 * The end of an export into `out`: the run's metrics copied from `run`, and the manifest of the
 * artefact's files with `fields` and the network's own scores (`scores`, e.g. a held-out
 * accuracy), written last.
 */
export async function writeRunManifest(
  out: string,
  run: string,
  fields: RunManifestFields,
  scores: Partial<ArtefactManifest>,
): Promise<void> {
  await Deno.copyFile(`${run}/metrics.jsonl`, `${out}/metrics.jsonl`);
  const records = await readRunMetrics(`${out}/metrics.jsonl`);
  const { images } = fields;
  const manifest: ArtefactManifest = {
    name: fields.spec.name,
    description: fields.spec.description,
    profile: fields.profile,
    specHash: fields.hash,
    spec: fields.profileSpec,
    dataset: {
      count: fields.count,
      sha256: await sha256Hex(new Uint8Array(images.buffer, images.byteOffset, images.byteLength)),
      licence: fields.licence,
    },
    steps: fields.steps,
    batchSize: fields.batchSize,
    training: trainingTime(records),
    finalLoss: records.at(-1)!.loss,
    parameters: fields.parameters,
    files: await fileHashes(out),
    ...scores,
  };
  await writeFileAtomic(`${out}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
}

/** The records of a supervised run's `metrics.jsonl`. */
export async function readRunMetrics(path: string): Promise<SupervisedMetrics[]> {
  return (await Deno.readTextFile(path)).trim().split("\n").map((line) => JSON.parse(line));
}

/**
 * The artefact of a network that is not a denoiser (a feature network, the CLIP, an
 * autoencoder) whose spec hashes to `hash`: in `full`, the committed one, which must be of
 * today's spec (and becomes a dependency of the chapter that loads it); in `quick`, made by
 * `makeQuick` when missing or stale (`restart`: an artefact of another spec is there, so its run
 * starts over).
 *
 * @throws UserError naming the command that makes a missing or stale `full` artefact
 */
export async function checkedArtefact(
  name: string,
  hash: string,
  profile: Profile,
  root: string,
  makeQuick: (restart: boolean) => Promise<unknown>,
): Promise<{ dir: string; manifest: ArtefactManifest }> {
  const dir = folderOf(name, profile, root);
  let manifest = await readManifest(dir);
  if (profile === "full") {
    if (!manifest) {
      throw new UserError(
        `${dir} holds no trained ${name}; make it with \`deno task train ${name}\`.`,
      );
    }
    if (manifest.specHash !== hash) {
      throw new UserError(
        `${dir} was made from another spec of ${name} (${manifest.specHash}, today's is ` +
          `${hash}); make it again with \`deno task train ${name} --restart\`.`,
      );
    }
    await recordDependency({
      path: `assets/models/${name}`,
      sha256: await sha256Hex(await Deno.readFile(`${dir}/manifest.json`)),
    });
  } else if (!manifest || manifest.specHash !== hash) {
    await makeQuick(manifest !== undefined);
    manifest = (await readManifest(dir))!;
  }
  return { dir, manifest };
}
