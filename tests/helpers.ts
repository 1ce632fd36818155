/**
 * Setup shared by the test files that build and train a network.
 *
 * @module
 */

import type { UNetConfig } from "../lib/unet.ts";

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
