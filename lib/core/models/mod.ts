/**
 * The library's networks: the interface every denoiser implements, the registry of kinds, and
 * the built-in kinds (the DDPM U-Net and the course's ContextUnet), registered on import.
 *
 * @module
 */
export * from "./network.ts";
export { completeModelConfig, createModel, type ModelKind, registerModelKind } from "./registry.ts";
export * from "./unet.ts";
export * from "./context_unet.ts";
export * from "./classifier.ts";
export * from "./perceptual.ts";
export * from "./adapt.ts";

import type { ContextUNetConfig } from "./context_unet.ts";
import type { UNetConfig } from "./unet.ts";

/** The configuration of a built-in network kind. */
export type ModelConfig = UNetConfig | ContextUNetConfig;
