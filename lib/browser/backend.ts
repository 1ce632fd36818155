/**
 * The backend of the reader's browser, picked the way the library picks under Deno: the fastest
 * that runs on real hardware,
 *
 *   WebGPU (a hardware adapter) → WebGL (a hardware renderer) → wasm (SIMD, else plain) → cpu,
 *
 * never a software GPU unless asked for by name (Chromium's SwiftShader runs WebGL and WebGPU
 * on the CPU, slower than wasm). Each backend that was passed over says why, so the page can
 * name what it runs on and what it could not use.
 *
 * The wasm backend loads its `.wasm` binary with `fetch`, which a page opened from `file://`
 * may not do for a file; the caller hands the binary over instead (the page loads it as a
 * script), and it is served to tfjs from a `blob:` URL.
 *
 * Deno- and Node-free: the browser bundle imports it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import "@tensorflow/tfjs-backend-webgpu";
import { UserError } from "../core/errors.ts";
import { registerWasmFastPaths } from "../runtime/kernels/wasm_fast_paths.ts";
import { activate, type AdapterFacts, classifyAdapter } from "../runtime/backend_start.ts";

/** The backends a browser may run. */
export const BROWSER_BACKENDS = ["webgpu", "webgl", "wasm", "cpu"] as const;
/** One of {@link BROWSER_BACKENDS}. */
export type BrowserBackend = typeof BROWSER_BACKENDS[number];

/** The backend in use, and why the faster ones were passed over. */
export interface BrowserBackendChoice {
  name: BrowserBackend;
  /** What it runs on: the adapter, the renderer, SIMD or not. */
  detail: string;
  /** The faster backends not used, each with its reason. */
  passedOver: { name: BrowserBackend; reason: string }[];
}

/** The wasm binaries, fetched by the caller: SIMD when the engine validates SIMD code, else plain. */
export type WasmBinaryLoader = (variant: "simd" | "plain") => Promise<Uint8Array>;

type Probe = { ok: true; detail: string } | { ok: false; reason: string };

/**
 * wasm-feature-detect's SIMD probe: a function using i8x16.splat and i8x16.popcnt, which
 * validates only where wasm has (standard) SIMD.
 */
const SIMD_PROBE = new Uint8Array([
  0,
  97,
  115,
  109,
  1,
  0,
  0,
  0,
  1,
  5,
  1,
  96,
  0,
  1,
  123,
  3,
  2,
  1,
  0,
  10,
  10,
  1,
  8,
  0,
  65,
  0,
  253,
  15,
  253,
  98,
  11,
]);

async function probeWebgpu(allowSoftware: boolean): Promise<Probe> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) return { ok: false, reason: "this browser has no WebGPU" };
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() =>
    null
  );
  if (!adapter) return { ok: false, reason: "WebGPU has no adapter here" };
  const { software, description } = classifyAdapter(adapter as unknown as AdapterFacts);
  if (software && !allowSoftware) {
    return {
      ok: false,
      reason: `WebGPU's adapter is a software one (${description}), slower than wasm`,
    };
  }
  return { ok: true, detail: description };
}

function probeWebgl(allowSoftware: boolean): Probe {
  let gl: WebGL2RenderingContext | null = null;
  try {
    gl = typeof OffscreenCanvas === "undefined"
      ? null
      : new OffscreenCanvas(1, 1).getContext("webgl2") as WebGL2RenderingContext | null;
  } catch {
    gl = null;
  }
  if (!gl) return { ok: false, reason: "this browser gives no WebGL 2 context here" };
  const debug = gl.getExtension("WEBGL_debug_renderer_info");
  const renderer = String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  if (classifyAdapter({ info: { description: renderer } }).software && !allowSoftware) {
    return { ok: false, reason: `WebGL renders in software here (${renderer}), slower than wasm` };
  }
  return { ok: true, detail: renderer };
}

/** Whether this engine's WebAssembly has SIMD. */
export function wasmHasSimd(): boolean {
  return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
}

/** The wasm binary is handed to tfjs once; a later switch back to wasm reuses it. */
let wasmStarted: Promise<Probe> | undefined;

function startWasm(loadBinary: WasmBinaryLoader): Promise<Probe> {
  wasmStarted ??= loadWasm(loadBinary);
  wasmStarted.then((p) => p.ok, () => false).then((ok) => {
    if (!ok) wasmStarted = undefined; // may be tried again
  });
  return wasmStarted;
}

async function loadWasm(loadBinary: WasmBinaryLoader): Promise<Probe> {
  if (typeof WebAssembly !== "object") {
    return { ok: false, reason: "this browser has no WebAssembly" };
  }
  const simd = wasmHasSimd();
  const bytes = await loadBinary(simd ? "simd" : "plain");
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: "application/wasm" }));
  // Every name tfjs may ask for maps to the one binary this engine can run.
  setWasmPaths({
    "tfjs-backend-wasm.wasm": url,
    "tfjs-backend-wasm-simd.wasm": url,
    "tfjs-backend-wasm-threaded-simd.wasm": url,
  });
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  tf.env().set("WASM_HAS_SIMD_SUPPORT", simd);
  registerWasmFastPaths(); // the library's replacements of slow stock kernels, as under Deno
  return { ok: true, detail: simd ? "SIMD, 1 thread" : "no SIMD (slower), 1 thread" };
}

/**
 * Start `wanted` (by name, software GPUs allowed), or with "auto" the first backend of the
 * module comment that starts.
 *
 * @throws UserError for an unknown name, or when the backend named cannot start here (saying why)
 */
export async function chooseBrowserBackend(
  wanted: BrowserBackend | "auto",
  loadWasm: WasmBinaryLoader,
): Promise<BrowserBackendChoice> {
  if (wanted !== "auto" && !(BROWSER_BACKENDS as readonly string[]).includes(wanted)) {
    throw new UserError(
      `unknown backend "${wanted}": use auto or one of ${BROWSER_BACKENDS.join(", ")}`,
    );
  }
  const order = wanted === "auto" ? BROWSER_BACKENDS : [wanted];
  const passedOver: BrowserBackendChoice["passedOver"] = [];
  for (const name of order) {
    const named = wanted !== "auto";
    let probe: Probe;
    try {
      probe = name === "webgpu"
        ? await probeWebgpu(named)
        : name === "webgl"
        ? probeWebgl(named)
        : name === "wasm"
        ? await startWasm(loadWasm)
        : { ok: true, detail: "plain JavaScript (slow)" };
    } catch (e) {
      probe = { ok: false, reason: `${name} could not load: ${(e as Error).message}` };
    }
    const failure = probe.ok
      ? await activate(name).then((why) => why && `${name} did not start: ${why}`)
      : probe.reason;
    if (failure === undefined && probe.ok) return { name, detail: probe.detail, passedOver };
    if (named) throw new UserError(`${name} cannot run here: ${failure}`);
    passedOver.push({ name, reason: failure! });
  }
  throw new UserError(`no backend could start: ${passedOver.map((p) => p.reason).join("; ")}`);
}
