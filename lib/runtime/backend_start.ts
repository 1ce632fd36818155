/**
 * Starting a TensorFlow.js backend, and telling a hardware GPU from a software one: the parts of
 * backend choice that the library's (lib/runtime/backend.ts) and the reader's browser's
 * (lib/browser/backend.ts) share. No Deno or Node API: the browser bundles it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** The parts of a WebGPU adapter that tell a hardware GPU from a software one. */
export interface AdapterFacts {
  isFallbackAdapter?: boolean;
  info?: {
    vendor?: string;
    architecture?: string;
    device?: string;
    description?: string;
    isFallbackAdapter?: boolean;
  };
}

/** Names of CPU implementations of WebGPU/Vulkan/D3D: Mesa's, SwiftShader, Microsoft's WARP. */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|softpipe|swiftshader|software|basic render|\bwarp\b/i;
/** Vulkan's vendor id of Mesa's CPU drivers (0x10005), which wgpu reports as the vendor. */
const MESA_CPU_VENDOR = String(0x10005);

/**
 * Describes the adapter and says whether it is a software (CPU) implementation: the adapter's
 * own fallback flag, a known software driver name, or Mesa's CPU vendor id.
 */
export function classifyAdapter(adapter: AdapterFacts): { software: boolean; description: string } {
  const info = adapter.info ?? {};
  const names = [info.description, info.device, info.architecture, info.vendor]
    .filter((s): s is string => typeof s === "string" && s !== "");
  const software = adapter.isFallbackAdapter === true || info.isFallbackAdapter === true ||
    SOFTWARE_ADAPTER.test(names.join(" ")) || info.vendor === MESA_CPU_VENDOR;
  const description = info.description || [
    info.vendor ? `vendor ${info.vendor}` : "",
    info.architecture ?? "",
    info.device ? `device ${info.device}` : "",
  ].filter((s) => s !== "").join(", ") || "unnamed adapter";
  return { software, description };
}

/**
 * Makes `name` the active tfjs backend. Returns undefined on success, or why it failed (tfjs
 * logs the reason as warnings, which are caught here so that automatic selection stays quiet).
 */
export async function activate(name: string): Promise<string | undefined> {
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.map(String).join(" "));
  try {
    if (await tf.setBackend(name)) {
      await tf.ready();
      return undefined;
    }
    const why = warnings.find((w) => !w.startsWith("Initialization of backend"));
    return `tfjs could not initialise it${why === undefined ? "" : `: ${firstLine(why)}`}`;
  } catch (error) {
    return firstLine(error);
  } finally {
    console.warn = warn;
  }
}

/** The first non-empty line of an error's message. */
export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n").find((line) => line.trim() !== "")?.trim() ?? text;
}
