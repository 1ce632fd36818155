/**
 * Trains the zoo's models (lib/zoo/): headless, always continuing a compatible run, for at most
 * a wall-clock budget. A finished `full` run becomes the model's artefact in
 * `assets/models/NAME/`, which the book's chapters load.
 *
 *   deno task train NAME [--profile full|quick] [--minutes M] [--backend NAME] [--restart]
 *   deno task train NAME --resume-from STEP (go back to a kept checkpoint, e.g. after divergence)
 *   deno task train NAME --save-partial     (commit-ready state of an unfinished run)
 *
 * A model whose committed artefact is of today's spec is not trained again without
 * `--restart`.
 *   deno task train --list
 *
 * With `--minutes`, training stops at the first checkpoint after the budget is spent, so nothing
 * is lost; without it, the run goes to its last step. `--restart` moves the old run aside. A run
 * keeps its last three checkpoints; `--resume-from STEP` goes back to one of them (the later ones
 * are moved aside), and may do so under a changed training recipe in lib/zoo/specs.ts.
 *
 * @module
 */
import { selectBackend } from "../lib/runtime/backend.ts";
import { parseOptions } from "../lib/runtime/options.ts";
import type { Profile } from "../lib/runtime/options.ts";
import { exportArtefact, listModels } from "../lib/zoo/artefacts.ts";
import { savePartial, trainModel } from "../lib/zoo/runs.ts";
import { MODEL_SPECS } from "../lib/zoo/specs.ts";
import { TrainingDivergedError } from "../lib/training/trainer.ts";
import { endUserErrorsInOneLine } from "../lib/runtime/main.ts";
import { FEATURE_NETWORK_SPECS, trainFeatureNetwork } from "../lib/zoo/feature_networks.ts";
import { CLIP_SPECS, clipSpecHash, trainClipNetwork } from "../lib/zoo/clip_network.ts";
import {
  AUTOENCODER_SPECS,
  autoencoderSpecHash,
  trainAutoencoderNetwork,
} from "../lib/zoo/autoencoder.ts";
import {
  STYLE_LORA_SPECS,
  styleLoraHash,
  TOKEN_SPECS,
  tokenSpecHash,
  trainStyleLora,
  trainToken,
} from "../lib/zoo/fine_tunes.ts";
import { DREAMBOOTH_SPECS, dreamBoothHash, trainDreamBooth } from "../lib/zoo/dreambooth.ts";

/** The zoo's networks that are not denoisers, and its fine-tunes, with how each is trained. */
const FEATURE_RUNS = new Map<string, typeof trainFeatureNetwork>([
  ...[...FEATURE_NETWORK_SPECS.keys()].map((n) => [n, trainFeatureNetwork] as const),
  ...[...CLIP_SPECS.keys()].map((n) => [n, trainClipNetwork] as const),
  ...[...AUTOENCODER_SPECS.keys()].map((n) => [n, trainAutoencoderNetwork] as const),
  ...[...STYLE_LORA_SPECS.keys()].map((n) => [n, trainStyleLora] as const),
  ...[...TOKEN_SPECS.keys()].map((n) => [n, trainToken] as const),
  ...[...DREAMBOOTH_SPECS.keys()].map((n) => [n, trainDreamBooth] as const),
]);

const USAGE =
  `usage: deno task train NAME [--profile full|quick] [--minutes M] [--backend NAME] [--restart]
       deno task train NAME --resume-from STEP [--minutes M]   (back to a kept checkpoint)
       deno task train NAME --save-partial
       deno task train --list
models: ${[...MODEL_SPECS.keys(), ...FEATURE_RUNS.keys()].join(", ")}`;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseOptions(
      argv,
      {
        profile: { type: "string", default: "full" },
        minutes: { type: "string" },
        backend: { type: "string" },
        restart: { type: "boolean", default: false },
        "resume-from": { type: "string" },
        "save-partial": { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      USAGE.split("\n")[0],
      { allowPositionals: true },
    );
  } catch (error) {
    console.error(`train: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.list) {
    const more = [
      ...[...CLIP_SPECS.values()].map((spec) => ({
        ...spec,
        fullHash: () => clipSpecHash(spec, "full"),
      })),
      ...[...AUTOENCODER_SPECS.values()].map((spec) => ({
        ...spec,
        fullHash: () => autoencoderSpecHash(spec, "full"),
      })),
      ...[...STYLE_LORA_SPECS.values()].map((spec) => ({
        ...spec,
        fullHash: () => styleLoraHash(spec, "full"),
      })),
      ...[...TOKEN_SPECS.values()].map((spec) => ({
        ...spec,
        fullHash: () => tokenSpecHash(spec, "full"),
      })),
      ...[...DREAMBOOTH_SPECS.values()].map((spec) => ({
        ...spec,
        fullHash: () => dreamBoothHash(spec, "full"),
      })),
    ];
    console.log(await listModels(".", more));
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`train: name one model\n${USAGE}`);
    return 2;
  }
  const [name] = positionals;
  if (!MODEL_SPECS.has(name) && !FEATURE_RUNS.has(name)) {
    console.error(`train: unknown model "${name}"\n${USAGE}`);
    return 2;
  }
  const profile = values.profile as Profile;
  if (profile !== "full" && profile !== "quick") {
    console.error(`train: unknown profile "${profile}"; use full or quick\n${USAGE}`);
    return 2;
  }
  const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
  if (minutes !== undefined && !(minutes > 0)) {
    console.error(`train: --minutes must be a positive number\n${USAGE}`);
    return 2;
  }
  const resumeFrom = values["resume-from"] === undefined
    ? undefined
    : Number(values["resume-from"]);
  if (resumeFrom !== undefined && !(Number.isInteger(resumeFrom) && resumeFrom >= 0)) {
    console.error(`train: --resume-from needs a step number\n${USAGE}`);
    return 2;
  }
  if (resumeFrom !== undefined && values.restart) {
    console.error(`train: --resume-from continues the run and --restart starts over: choose one`);
    return 2;
  }
  const featureRun = FEATURE_RUNS.get(name);
  if (featureRun) {
    if (values["save-partial"] || resumeFrom !== undefined) {
      console.error(
        `train: ${name} is not a denoiser: it takes --profile, --minutes, --restart`,
      );
      return 2;
    }
    await selectBackend({ requested: values.backend });
    return reportFeatureRun(
      name,
      profile,
      await featureRun(name, { profile, minutes, restart: values.restart }),
    );
  }
  if (
    values["save-partial"] &&
    (profile !== "full" || values.restart || minutes !== undefined || resumeFrom !== undefined)
  ) {
    console.error(`train: --save-partial saves a full run as it is, and takes no other option`);
    return 2;
  }
  if (values["save-partial"]) {
    console.error(`train: ${name}'s run state is in ${await savePartial(name)}; commit it there`);
    return 0;
  }
  await selectBackend({ requested: values.backend });
  let run;
  try {
    run = await trainModel(name, { profile, minutes, restart: values.restart, resumeFrom });
  } catch (error) {
    if (!(error instanceof TrainingDivergedError)) throw error;
    const again = `deno task train ${name}${profile === "quick" ? " --profile quick" : ""}`;
    console.error(
      `train: ${error.message}\n` +
        (error.sane
          ? `train: lower the learning rate of ${name} in lib/zoo/specs.ts, then ` +
            `\`${again} --resume-from ${error.sane.step}\`.`
          : `train: start over with \`${again} --restart\` (the run is moved aside).`),
    );
    return 1;
  }
  if (run.upToDate) {
    console.error(
      `train: ${name} is trained (${run.steps} steps, assets/models/${name} is of today's spec); ` +
        `nothing to do. \`--restart\` trains it again.`,
    );
    return 0;
  }
  if (run.movedAside) {
    console.error(
      resumeFrom === undefined
        ? `train: the previous run was moved to ${run.movedAside}`
        : `train: the checkpoints after step ${resumeFrom} were moved to ${run.movedAside}`,
    );
  }
  if (run.step < run.steps) {
    console.error(
      `train: ${run.dir}: step ${run.step} of ${run.steps}; continue with ` +
        `\`deno task train ${name}${profile === "quick" ? " --profile quick" : ""}\``,
    );
    return 0;
  }
  const artefact = await exportArtefact(name, profile);
  console.error(`train: ${name} finished (${run.steps} steps); its artefact is ${artefact}`);
  return 0;
}

function reportFeatureRun(
  name: string,
  profile: Profile,
  run: Awaited<ReturnType<typeof trainFeatureNetwork>>,
): number {
  if (run.movedAside) console.error(`train: the previous run was moved to ${run.movedAside}`);
  if (run.upToDate) {
    console.error(`train: ${name} is made and of today's spec; \`--restart\` makes it again.`);
  } else if (run.artefact) {
    console.error(`train: ${name} finished; its artefact is ${run.artefact}`);
  } else {
    console.error(
      `train: ${run.dir}: step ${run.step} of ${run.steps}; continue with ` +
        `\`deno task train ${name}${profile === "quick" ? " --profile quick" : ""}\``,
    );
  }
  return 0;
}

if (import.meta.main) {
  endUserErrorsInOneLine("train");
  Deno.exit(await main(Deno.args));
}
