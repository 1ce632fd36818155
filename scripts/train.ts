/**
 * Trains chapter 4's model headless: the same run, configuration and run folder as the chapter's
 * `full` profile (`lib/presets.ts`), always resuming where the last session stopped, for at most
 * a wall-clock budget. Use it to spend a night, or a GPU, on the book's model; then
 * `deno task chapter 04 --profile full --resume` picks the run up (and finishes it if steps
 * remain) and draws the chapter from it.
 *
 *   deno task train [--profile full|quick] [--minutes M] [--backend NAME]
 *
 * With `--minutes`, training stops at the first checkpoint after the budget is spent, so nothing
 * is lost; without it, the run goes to its last step.
 *
 * @module
 */
import { selectBackend } from "../lib/backend.ts";
import type { Profile } from "../lib/book.ts";
import { loadEmojiDataset } from "../lib/data.ts";
import {
  EMOJI16_SCHEDULE,
  EMOJI16_UNET,
  emoji16RunDir,
  emoji16TrainConfig,
  sampleGridWriter,
} from "../lib/presets.ts";
import { noiseSchedule } from "../lib/schedules.ts";
import { train } from "../lib/train.ts";
import { checkOptions, optionValue } from "../lib/options.ts";
import { createModel, unetConfig } from "../lib/unet.ts";

const USAGE = "usage: deno task train [--profile full|quick] [--minutes M] [--backend NAME]";

async function main(args: string[]): Promise<void> {
  checkOptions(args, ["--profile", "--minutes", "--backend"], USAGE);
  const profile = (optionValue(args, "--profile", USAGE) ?? "full") as Profile;
  if (profile !== "full" && profile !== "quick") {
    throw new Error(`unknown profile "${profile}"; ${USAGE}`);
  }
  const minutes = Number(optionValue(args, "--minutes", USAGE) ?? Infinity);
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number; ${USAGE}`);

  await selectBackend({ args });
  const dataset = await loadEmojiDataset({ size: 16 });
  const schedule = noiseSchedule(EMOJI16_SCHEDULE.name, EMOJI16_SCHEDULE.T);
  const dir = emoji16RunDir(profile);
  await Deno.mkdir(dir, { recursive: true });
  const config = emoji16TrainConfig(profile);
  const model = createModel(unetConfig(EMOJI16_UNET));
  const trainer = await train(model, dataset, schedule, config, {
    onSamples: sampleGridWriter(dir),
    resume: true,
    minutes,
  });
  console.error(
    `${dir}: step ${trainer.step} of ${config.steps}` +
      (trainer.step < config.steps!
        ? `; continue with \`deno task train --profile ${profile}\``
        : "; finished") +
      `, then \`deno task chapter 04 --profile ${profile} --resume\``,
  );
  trainer.model.dispose();
  trainer.dispose();
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`train: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
