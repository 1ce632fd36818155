/**
 * Choosing the TensorFlow.js backend that runs the book's models.
 *
 * The request comes from, in order: `selectBackend({ requested })`, a `--backend NAME` (or
 * `--backend=NAME`) flag, the environment variable `DIFFUSION_BACKEND`. Without one (or with
 * `auto`) the fastest backend that starts is used:
 *
 *   tensorflow (native libtensorflow) → webgpu (hardware GPUs only) → wasm → cpu
 *
 * An explicit request that cannot start is an error, never a silent fallback. The wasm and cpu
 * backends get the convolution gradient kernels of lib/runtime/kernels/ before use, and wasm the
 * faster Slice, SplitV, Sum and Identity of lib/runtime/kernels/wasm_fast_paths.ts; the native
 * backend's kernels that take shape operands make each one once (native_fast_paths.ts).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { loadNativeBackend } from "./native.ts";
import { optionValue } from "./options.ts";
import { registerCpuGradientKernels } from "./kernels/cpu_gradients.ts";
import { registerWasmGradientKernels } from "./kernels/wasm_gradients.ts";
import { registerWasmFastPaths } from "./kernels/wasm_fast_paths.ts";
import { registerNativeFastPaths } from "./kernels/native_fast_paths.ts";
import { UserError } from "../core/errors.ts";
import { activate, type AdapterFacts, classifyAdapter, firstLine } from "./backend_start.ts";

export { classifyAdapter };

/** A TensorFlow.js backend the book knows how to start. */
export type BackendName = "tensorflow" | "webgpu" | "wasm" | "cpu";

/** The backends in the order automatic selection tries them: fastest first. */
export const BACKEND_NAMES: readonly BackendName[] = ["tensorflow", "webgpu", "wasm", "cpu"];

/** The backend in use, what it runs on, and every backend tried before it. */
export interface BackendReport {
  /** The active backend, equal to `tf.getBackend()`. */
  name: BackendName;
  /** What it runs on, e.g. `SIMD, 1 thread` for wasm or the adapter for webgpu. */
  detail: string;
  /** Backends tried, in order, ending with the chosen one. */
  tried: { name: BackendName; ok: boolean; reason: string }[];
}

/** Options of {@link selectBackend}. */
export interface SelectBackendOptions {
  /** A backend name or "auto"; overrides the flag and the environment. */
  requested?: string;
  /** Command-line arguments to read `--backend` from (default `Deno.args`). */
  args?: string[];
  /** Do not print the one-line report. */
  quiet?: boolean;
}

/** The environment variable that names the backend when no flag does. */
export const BACKEND_ENV = "DIFFUSION_BACKEND";
/** Set to 1 to let an explicit `--backend webgpu` run on a software (CPU) adapter. */
export const WEBGPU_ALLOW_SOFTWARE_ENV = "DIFFUSION_WEBGPU_ALLOW_SOFTWARE";

type StartResult = { ok: true; detail: string } | { ok: false; reason: string; advice: string };

/**
 * The value of a `--backend NAME` or `--backend=NAME` flag in `args` (the last one wins), or
 * undefined when there is none.
 */
export function backendFromArgs(args: readonly string[]): string | undefined {
  const usage = `name one of ${BACKEND_NAMES.join(", ")} or auto (e.g. --backend wasm)`;
  return optionValue(args, "--backend", usage);
}

let last: { key: string; report: Promise<BackendReport> } | undefined;
let current: BackendReport | undefined;

/**
 * The active tfjs backend and what it runs on, e.g. `webgpu (NVIDIA H100 …)` or
 * `tensorflow (…)`, as training logs record it; the bare name when it was not started by
 * {@link selectBackend}.
 */
export function activeBackendLabel(): string {
  const name = tf.getBackend();
  return current?.name === name ? `${name} (${current.detail})` : String(name);
}

/**
 * Picks, starts and reports the TensorFlow.js backend.
 *
 * The request is `options.requested`, else a `--backend` flag in `options.args` (default
 * `Deno.args`), else `$DIFFUSION_BACKEND`; "auto" or none tries tensorflow → webgpu (a
 * hardware adapter only) → wasm → cpu. Throws on an unknown name, and when an explicitly
 * requested backend cannot start, saying why. Prints one line such as
 * `backend: wasm (SIMD, 1 thread) — tensorflow unavailable: …` unless `quiet`. A second call
 * with the same request returns the same report at once.
 */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<BackendReport> {
  const request = resolveRequest(options);
  const key = `${request.name}|${readEnv(WEBGPU_ALLOW_SOFTWARE_ENV) === "1"}`;
  if (last?.key === key) {
    const previous = await last.report.catch(() => undefined);
    if (previous !== undefined && tf.getBackend() === previous.name) return previous;
  }
  const report = choose(request);
  last = { key, report };
  const chosen = await report;
  current = chosen;
  if (!options.quiet) console.error(describeReport(chosen));
  return chosen;
}

/** The one line printed by {@link selectBackend}. */
export function describeReport(report: BackendReport): string {
  const failures = report.tried.filter((t) => !t.ok).map((t) =>
    `${t.name} unavailable: ${t.reason}`
  );
  return `backend: ${report.name} (${report.detail})` +
    (failures.length > 0 ? ` — ${failures.join("; ")}` : "");
}

interface Request {
  name: BackendName | "auto";
  source: string;
}

/**
 * The backend a name asks for (`raw` as typed: case and spaces do not matter; empty is auto).
 *
 * @throws UserError naming `source` and the known backends for any other name
 */
export function backendName(raw: string | undefined, source: string): BackendName | "auto" {
  const name = (raw ?? "").trim().toLowerCase();
  if (name === "" || name === "auto") return "auto";
  if (!(BACKEND_NAMES as readonly string[]).includes(name)) {
    throw new UserError(
      `unknown backend "${raw}" (from ${source}): choose one of ${BACKEND_NAMES.join(", ")}, ` +
        `or auto`,
    );
  }
  return name as BackendName;
}

function resolveRequest(options: SelectBackendOptions): Request {
  let raw: string | undefined;
  let source = "";
  if (options.requested !== undefined) {
    raw = options.requested;
    source = "selectBackend({ requested })";
  } else {
    raw = backendFromArgs(options.args ?? Deno.args);
    source = "the --backend flag";
    if (raw === undefined) {
      raw = readEnv(BACKEND_ENV);
      source = `$${BACKEND_ENV}`;
    }
  }
  return { name: backendName(raw, source), source };
}

async function choose(request: Request): Promise<BackendReport> {
  const tried: BackendReport["tried"] = [];
  if (request.name !== "auto") {
    const result = await start(request.name, true);
    if (!result.ok) {
      throw new Error(
        `backend "${request.name}" was requested by ${request.source} but cannot start: ` +
          `${result.reason}. ${result.advice}`,
      );
    }
    tried.push({ name: request.name, ok: true, reason: "" });
    return { name: request.name, detail: result.detail, tried };
  }
  for (const name of BACKEND_NAMES) {
    const result = await start(name, false);
    tried.push({ name, ok: result.ok, reason: result.ok ? "" : result.reason });
    if (result.ok) return { name, detail: result.detail, tried };
  }
  throw new Error(
    `no TensorFlow.js backend could start: ${
      tried.map((t) => `${t.name}: ${t.reason}`).join("; ")
    }`,
  );
}

function start(name: BackendName, explicit: boolean): Promise<StartResult> {
  switch (name) {
    case "tensorflow":
      return startTensorflow();
    case "webgpu":
      return startWebgpu(explicit && readEnv(WEBGPU_ALLOW_SOFTWARE_ENV) === "1");
    case "wasm":
      return startWasm();
    case "cpu":
      return startCpu();
  }
}

const OTHERS = `choose another with --backend NAME (${BACKEND_NAMES.join(", ")}) or auto`;

async function startTensorflow(): Promise<StartResult> {
  const advice = `Run \`deno task setup\` to build the native backend, or ${OTHERS}`;
  let loaded: Awaited<ReturnType<typeof loadNativeBackend>>;
  try {
    loaded = await loadNativeBackend();
  } catch (error) {
    return { ok: false, reason: firstLine(error), advice };
  }
  if (!loaded.ok) return { ok: false, reason: loaded.reason, advice };
  registerNativeFastPaths();
  const failure = await activate("tensorflow");
  return failure === undefined
    ? { ok: true, detail: loaded.detail }
    : { ok: false, reason: failure, advice };
}

async function startWebgpu(allowSoftware: boolean): Promise<StartResult> {
  const advice = `Run on a machine with a GPU, or ${OTHERS}`;
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (gpu === undefined) return { ok: false, reason: "navigator.gpu is missing", advice };
  // Loading libtensorflow after a WebGPU adapter has opened Mesa's Vulkan drivers (which
  // load their own LLVM) crashes the process; loaded in the other order both work. So the
  // native backend, if set up, is loaded (not activated) before any adapter is requested.
  await loadNativeBackend().catch(() => undefined);
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (error) {
    return { ok: false, reason: `requestAdapter failed: ${firstLine(error)}`, advice };
  }
  if (adapter === null) return { ok: false, reason: "no WebGPU adapter", advice };
  const { software, description } = classifyAdapter(adapter as unknown as AdapterFacts);
  if (software && !allowSoftware) {
    return {
      ok: false,
      reason: `only a software adapter (${description}), far slower than wasm`,
      advice: `Set ${WEBGPU_ALLOW_SOFTWARE_ENV}=1 to use it anyway (to test the code path), ` +
        `or ${OTHERS}`,
    };
  }
  await import("@tensorflow/tfjs-backend-webgpu");
  const failure = await activate("webgpu");
  return failure === undefined
    ? { ok: true, detail: software ? `software: ${description}` : description }
    : { ok: false, reason: failure, advice };
}

async function startWasm(): Promise<StartResult> {
  // Under Deno the package resolves to its Node build, which finds its .wasm files next to
  // itself (__dirname), so no setWasmPaths is needed. tfjs disables wasm threads whenever it
  // believes it runs in Node, as it does under Deno: one thread.
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  registerWasmGradientKernels();
  registerWasmFastPaths();
  const failure = await activate("wasm");
  if (failure !== undefined) {
    return { ok: false, reason: failure, advice: `Reinstall the npm packages, or ${OTHERS}` };
  }
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const threads = wasm.getThreadsCount();
  return {
    ok: true,
    detail: `${simd ? "SIMD" : "no SIMD"}, ${threads} thread${threads === 1 ? "" : "s"}`,
  };
}

async function startCpu(): Promise<StartResult> {
  registerCpuGradientKernels();
  const failure = await activate("cpu");
  if (failure !== undefined) return { ok: false, reason: failure, advice: OTHERS };
  // The cpu backend would advertise tfjs-node on its first write; the book has its own
  // native backend (tensorflow), so that advice does not apply here.
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  return { ok: true, detail: "plain JavaScript" };
}

/**
 * Makes `cpu` (plain JavaScript, with the project's gradient kernels) the active backend for a
 * while, for numbers that must be the same on every machine; `tf.setBackend(previous)` goes back.
 */
export async function activateCpuBackend(): Promise<void> {
  const started = await startCpu();
  if (!started.ok) throw new Error(`the cpu backend did not start: ${started.reason}`);
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}
