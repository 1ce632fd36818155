/**
 * Setup shared by the test files that build and train a network.
 *
 * @module
 */

import type { UNetConfig } from "../lib/core/models/mod.ts";
import type { BookOptions } from "../scripts/book/build.ts";
import { copyDir } from "../scripts/book/results.ts";

/**
 * A U-Net small enough to train a few steps in a test: 8×8 RGB, 8 base channels, two levels
 * of one residual block, 4 groups, dropout 0.1, seed 3. Files add what they exercise
 * (attention, no middle attention, a context).
 */
export const TINY_UNET: Partial<UNetConfig> = {
  imageSize: 8,
  baseChannels: 8,
  channelMultipliers: [1, 2],
  resBlocksPerLevel: 1,
  groups: 4,
  dropout: 0.1,
  seed: 3,
};

/**
 * A copy of the fixture book (tests/fixtures/book: its chapters and lib) in a fresh folder of
 * the project's ignored .cache, at the fixture's depth so the chapters' relative imports of
 * lib/book/runtime.ts resolve the same way; `options` build it quietly, entirely inside `work`.
 * Call `copy()` before building and remove `work` afterwards.
 */
export function fixtureBook(root: string, name: string): {
  work: string;
  options: BookOptions;
  copy(): Promise<void>;
} {
  const work = `${root}/.cache/test/${name}-${crypto.randomUUID().slice(0, 8)}`;
  const options: BookOptions = {
    chaptersDir: `${work}/chapters`,
    cacheDir: `${work}/cache`,
    frozenDir: `${work}/frozen`,
    buildDir: `${work}/src`,
    siteDir: `${work}/site`,
    quiet: true,
    log: () => {},
  };
  const copy = async () => {
    await copyDir(`${root}/tests/fixtures/book/chapters`, `${work}/chapters`);
    await copyDir(`${root}/tests/fixtures/book/lib`, `${work}/lib`);
  };
  return { work, options, copy };
}
