/**
 * The zoo's artefacts: what a finished `full` run leaves for the book, committed under
 * `assets/models/NAME/`.
 *
 *   manifest.json     the spec and its hash, the dataset's fingerprint, steps, batch, wall time by
 *                     backend and device, final loss, licence of the data, the files' hashes and
 *                     the model's fingerprint (lib/zoo/fingerprint.ts)
 *   weights.ckpt      the EMA weights θ̄ and the last step's θ, float16 (lib/training/checkpoint.ts format)
 *   metrics.jsonl     the run's metrics records (loss, learning rate, per-t loss, speed)
 *   samples-STEP.png  the fixed-noise sample grids taken during training
 *
 * @module
 */
import type { Profile } from "../runtime/options.ts";
import {
  assignVariables,
  loadCheckpoint,
  loadModel,
  readCheckpointHeader,
  saveModel,
} from "../training/checkpoint.ts";
import { specTrainingData } from "./spec_data.ts";
import type { MetricsRecord } from "../training/trainer.ts";
import { createModel } from "../core/models/mod.ts";
import { computeFingerprint } from "./fingerprint.ts";
import { type ArtefactManifest, readManifest, trainingTime } from "./manifest.ts";
import { artefactDir, runDir, type RunRecord } from "./runs.ts";
import { MODEL_SPECS, type ModelSpec, modelSpec, profileSpec, specHash } from "./specs.ts";
import { exists, sha256Hex, writeFileAtomic } from "../runtime/files.ts";
import { FEATURE_NETWORK_SPECS, featureSpecHash } from "./feature_networks.ts";

export { type ArtefactManifest, readManifest, trainingTime } from "./manifest.ts";

/** The metrics records of a JSON-lines file. */
export async function readMetrics(path: string): Promise<MetricsRecord[]> {
  const lines = (await Deno.readTextFile(path)).split("\n");
  const records: MetricsRecord[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let record: MetricsRecord;
    try {
      record = JSON.parse(line);
    } catch (e) {
      throw new Error(`${path}:${i + 1} is not a JSON record (${(e as Error).message})`);
    }
    if (typeof record !== "object" || record === null || !Number.isFinite(record.step)) {
      throw new Error(`${path}:${i + 1} is not a metrics record (it has no step)`);
    }
    records.push(record);
  });
  return records;
}

/**
 * Export the finished run of `name` as its artefact: `assets/models/NAME/` for `full`, the run's
 * own `artefact/` folder for `quick`. Returns the folder.
 */
export async function exportArtefact(
  which: string | ModelSpec,
  profile: Profile,
  root = ".",
): Promise<string> {
  const spec = modelSpec(which);
  const name = spec.name;
  const run = runDir(name, profile, root);
  const out = profile === "full" ? artefactDir(name, root) : `${run}/artefact`;
  const checkpoint = await loadCheckpoint(`${run}/checkpoint.bin`);
  const steps = spec.training[profile].steps!;
  if (checkpoint.step !== steps) {
    throw new Error(
      `${run} has ${checkpoint.step} of ${steps} steps; finish it with \`deno task train ${name}\`.`,
    );
  }
  // The artefact is made anew: nothing of an earlier export (grids of another sampleEvery, a
  // committed partial run) stays behind.
  await Deno.mkdir(out, { recursive: true });
  for (const name of fileNames(out)) {
    if (ARTEFACT_FILE.test(name)) await Deno.remove(`${out}/${name}`);
  }
  await Deno.remove(`${out}/partial`, { recursive: true }).catch(() => {});
  const model = createModel(checkpoint.modelConfig);
  const ema = createModel(checkpoint.modelConfig, { trainable: false });
  try {
    assignVariables(model.parameters, checkpoint.tensors, "params/", run);
    assignVariables(model.buffers, checkpoint.tensors, "buffers/", run);
    assignVariables(ema.parameters, checkpoint.tensors, "ema/", run);
    assignVariables(ema.buffers, checkpoint.tensors, "emaBuffers/", run);
    await saveModel(`${out}/weights.ckpt`, model, { ema, step: steps, dtype: "float16" });
  } finally {
    model.dispose();
    ema.dispose();
  }
  for (const name of fileNames(run)) {
    if (name === "metrics.jsonl" || /^samples-\d+\.png$/.test(name)) {
      await Deno.copyFile(`${run}/${name}`, `${out}/${name}`);
    }
  }
  const files: Record<string, string> = {};
  for (const name of fileNames(out)) {
    if (name !== "manifest.json") {
      files[name] = await sha256Hex(await Deno.readFile(`${out}/${name}`));
    }
  }
  const metrics = await readMetrics(`${out}/metrics.jsonl`);
  const record = await Deno.readTextFile(`${run}/run.json`).then(
    (text) => JSON.parse(text) as RunRecord,
    () => undefined,
  );
  const { training: dataset } = await specTrainingData(spec, profile, root);
  const loaded = await loadModel(`${out}/weights.ckpt`);
  let manifest: ArtefactManifest;
  try {
    manifest = {
      name,
      description: spec.description,
      profile,
      specHash: await specHash(spec, profile),
      spec: profileSpec(spec, profile),
      dataset: {
        count: dataset.count,
        sha256: await sha256Hex(new Uint8Array(dataset.images.buffer)),
        licence: spec.dataLicence,
      },
      steps,
      batchSize: spec.training[profile].batchSize!,
      training: trainingTime(metrics),
      finalLoss: metrics.at(-1)!.loss,
      parameters: loaded.parameterCount(),
      files,
      ...(record?.lineage ? { lineage: record.lineage } : {}),
      // A full artefact is checked by its fingerprint; a quick one, made on demand, by the
      // library it was made with.
      ...(profile === "full"
        ? { fingerprint: await computeFingerprint(spec, profile, loaded, dataset) }
        : { libraryHash: await libraryHash() }),
    };
  } finally {
    loaded.dispose();
  }
  await writeFileAtomic(`${out}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
  return out;
}

/** The files an export writes (and removes first). */
const ARTEFACT_FILE = /^(weights\.ckpt|metrics\.jsonl|samples-\d+\.png|manifest\.json)$/;

/** The names of the files in `dir`, sorted. */
function fileNames(dir: string): string[] {
  return [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => e.name).sort();
}

/**
 * SHA-256 of every module of this library, `lib/` (path and source): a quick artefact made by
 * another library is made again, since its numbers may be another library's.
 */
export async function libraryHash(): Promise<string> {
  const lib = decodeURIComponent(new URL("../", import.meta.url).pathname);
  const parts: string[] = [];
  const walk = (dir: string) => {
    const entries = [...Deno.readDirSync(`${lib}${dir}`)].sort((a, b) => a.name < b.name ? -1 : 1);
    for (const entry of entries) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory) walk(`${path}/`);
      else if (/\.(ts|c)$/.test(entry.name)) {
        parts.push(path, Deno.readTextFileSync(`${lib}${path}`));
      }
    }
  };
  walk("");
  return (await sha256Hex(parts.join("\u0000"))).slice(0, 16);
}

function minutes(seconds: number): string {
  return `${(seconds / 60).toFixed(1)} min`;
}

/**
 * Two lines a model (the feature networks last, then `more`, networks kept elsewhere): trained (steps, wall time, where), stale (its spec changed since), partial
 * (a committed, unfinished run) or missing; and the state of a local run, if any.
 */
export async function listModels(
  root = ".",
  more: Iterable<{ name: string; description: string; fullHash(): Promise<string> }> = [],
): Promise<string> {
  const lines: string[] = [];
  for (const spec of MODEL_SPECS.values()) {
    const dir = artefactDir(spec.name, root);
    const manifest = await readManifest(dir);
    let state: string;
    if (manifest) {
      const where = manifest.training.map((t) => `${t.steps} on ${t.where}`).join(", ");
      const seconds = manifest.training.reduce((s, t) => s + t.seconds, 0);
      state = manifest.specHash === await specHash(spec, "full")
        ? `trained: ${manifest.steps} steps in ${minutes(seconds)} (${where})`
        : `stale: the spec changed since it was trained; deno task train ${spec.name} --restart`;
    } else {
      state = await exists(`${dir}/partial`)
        ? "partial: a committed, unfinished run; deno task train " + spec.name
        : "missing: deno task train " + spec.name;
    }
    for (const profile of ["full", "quick"] as const) {
      const run = runDir(spec.name, profile, root);
      const local = await readCheckpointHeader(`${run}/checkpoint.bin`).then(
        (c) => c.step,
        () => null,
      );
      if (local !== null) {
        state += `; local ${profile} run at step ${local} of ${spec.training[profile].steps}`;
      }
    }
    lines.push(`${spec.name.padEnd(18)} ${state}\n${"".padEnd(18)} ${spec.description}`);
  }
  const features = [...FEATURE_NETWORK_SPECS.values()].map((spec) => ({
    name: spec.name,
    description: spec.description,
    fullHash: () => featureSpecHash(spec, "full"),
  }));
  for (const spec of [...features, ...more]) {
    const manifest = await readManifest(artefactDir(spec.name, root));
    const state = !manifest
      ? "missing: deno task train " + spec.name
      : manifest.specHash === await spec.fullHash()
      ? `made: ${manifest.steps} steps in ${
        minutes(manifest.training.reduce((s, t) => s + t.seconds, 0))
      }`
      : `stale: the spec changed since it was made; deno task train ${spec.name} --restart`;
    lines.push(`${spec.name.padEnd(18)} ${state}\n${"".padEnd(18)} ${spec.description}`);
  }
  return lines.join("\n");
}
