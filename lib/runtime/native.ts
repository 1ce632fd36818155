/**
 * The native TensorFlow backend: tfjs-node's kernels running on libtensorflow.
 *
 * `scripts/setup.ts` builds tfjs-node's binding (`tfjs_binding.node`) against a libtensorflow
 * into `.native/` at the project's root. This module loads that binding and registers the
 * `"tensorflow"` backend with the project's own `@tensorflow/tfjs`, without switching to it:
 * choosing a backend is `lib/runtime/backend.ts`'s job.
 *
 * Where to look: `$TFJS_NATIVE_DIR/tfjs_binding.node` when that variable is set (and nowhere
 * else), otherwise `.native/tfjs_binding.node`, then where tfjs-node's own loader looks
 * (`lib/napi-v8/` inside the package). With `@tensorflow/tfjs-node-gpu` installed and a CUDA GPU
 * listed by `nvidia-smi`, that package is loaded instead.
 *
 * @module
 */
import { createRequire } from "node:module";
import util from "node:util";
import type { TFJSBinding } from "@tensorflow/tfjs-node/dist/tfjs_binding.js";

type Require = ReturnType<typeof createRequire>;

/** What loading the native backend gave: its name and a detail line, or why it failed. */
export type NativeBackendResult =
  | { ok: true; name: "tensorflow"; detail: string }
  | { ok: false; reason: string };

/** The folder (absolute path) that `scripts/setup.ts` fills and this module loads from. */
export function nativeDir(): string {
  const override = Deno.env.get("TFJS_NATIVE_DIR");
  if (override) return override;
  return `${projectRoot()}/.native`;
}

/** The project's root folder: the parent of `lib/`. */
export function projectRoot(): string {
  const url = new URL("../..", import.meta.url);
  if (url.protocol !== "file:") return Deno.cwd();
  return decodeURIComponent(url.pathname).replace(/\/$/, "");
}

let loading: Promise<NativeBackendResult> | undefined;

/**
 * Load tfjs-node's binding and register the `"tensorflow"` backend with TensorFlow.js.
 *
 * Never throws: a missing or broken binding gives `{ ok: false, reason }`. The first call does
 * the work (about half a second); later calls return the same result at once, and a backend
 * named `"tensorflow"` registered by someone else counts as loaded.
 */
export function loadNativeBackend(): Promise<NativeBackendResult> {
  loading ??= load().catch((error) => ({
    ok: false as const,
    reason: `native backend failed to load: ${firstLine(error)}`,
  }));
  return loading;
}

async function load(): Promise<NativeBackendResult> {
  // Imported here, so that importing this module (as scripts/setup.ts does) stays cheap.
  const tf = await import("@tensorflow/tfjs");
  if (tf.findBackendFactory("tensorflow")) {
    return { ok: true, name: "tensorflow", detail: "registered before this module loaded it" };
  }
  patchNodeUtil();
  // libtensorflow logs its CPU features and oneDNN at start-up; keep warnings and errors only.
  if (Deno.env.get("TF_CPP_MIN_LOG_LEVEL") === undefined) Deno.env.set("TF_CPP_MIN_LOG_LEVEL", "2");
  const require = createRequire(`${projectRoot()}/lib/native.ts`);

  const gpu = await loadGpuPackage(tf, require);
  if (gpu.ok) return gpu;

  const candidates = Deno.env.get("TFJS_NATIVE_DIR")
    ? [`${nativeDir()}/tfjs_binding.node`]
    : [`${nativeDir()}/tfjs_binding.node`, ...packageBindingPaths(require)];
  const path = candidates.find(isFile);
  if (!path) {
    const reason = `native TensorFlow backend not set up: no binding at ${candidates[0]}` +
      " (run `deno task setup`)";
    return { ok: false, reason: gpu.reason ? `${gpu.reason}; ${reason}` : reason };
  }
  useOneIntraOpThread();
  const binding = require(path) as TFJSBinding;
  // tfjs-node's kernels, registered for the backend name "tensorflow", and its backend class.
  await import("@tensorflow/tfjs-node/dist/register_all_kernels.js");
  const { NodeJSKernelBackend } = await import(
    "@tensorflow/tfjs-node/dist/nodejs_kernel_backend.js"
  );
  tf.registerBackend(
    "tensorflow",
    () => new NodeJSKernelBackend(binding, "@tensorflow/tfjs-node"),
    3,
  );
  if (!tf.findBackend("tensorflow")) {
    tf.removeBackend("tensorflow");
    return { ok: false, reason: `the binding at ${path} loaded but its backend did not start` };
  }
  const device = binding.isUsingGpuDevice() ? "GPU" : "CPU";
  loadProjectOps();
  return {
    ok: true,
    name: "tensorflow",
    detail: `libtensorflow ${binding.TF_Version} (${device})`,
  };
}

/** The file `scripts/setup.ts` builds from the project's ops in lib/runtime/kernels/ (*.c). */
export const PROJECT_OPS_LIBRARY = "libdiffusion_ops.so";

let projectOps: { library?: Deno.DynamicLibrary<Record<never, never>>; reason?: string } = {};

/**
 * Loads the project's own TensorFlow ops (lib/runtime/kernels/*.c: the fused GroupNorm + SiLU, the
 * Adam step, the convolutions and their gradients, the attention core), which register themselves
 * with libtensorflow as the library loads. Without them the native backend runs TensorFlow's own ops in their place.
 */
function loadProjectOps(): void {
  const path = `${nativeDir()}/${PROJECT_OPS_LIBRARY}`;
  if (!isFile(path)) {
    projectOps = { reason: `no ${path} (run \`deno task setup\`)` };
    return;
  }
  try {
    projectOps = { library: Deno.dlopen(path, {}) };
  } catch (error) {
    projectOps = { reason: `${path} failed to load: ${firstLine(error)}` };
  }
}

/**
 * With the project's ops built, TensorFlow's own intra-op pool gets one thread (unless
 * TF_NUM_INTRAOP_THREADS says otherwise): the heavy kernels (convolutions, GroupNorm) then run on
 * the ops' own threads (lib/runtime/kernels/parallel.h), and the hundreds of small ops a step
 * stop handing work to a second thread and back. On the 2-core machine this halves a small op's
 * cost (an Add over [32, 16, 16, 32]: 147 → 70 µs) and takes a training step of the book's U-Net
 * from 1.19× to 1.14× PyTorch's. Read by libtensorflow when its first context is made, so set
 * before the binding loads.
 */
function useOneIntraOpThread(): void {
  if (Deno.env.get("TF_NUM_INTRAOP_THREADS") !== undefined) return;
  if (isFile(`${nativeDir()}/${PROJECT_OPS_LIBRARY}`)) Deno.env.set("TF_NUM_INTRAOP_THREADS", "1");
}

/** Whether the project's own ops are loaded into libtensorflow, and why not when they are not. */
export function projectOpsStatus(): { loaded: boolean; reason?: string } {
  return { loaded: projectOps.library !== undefined, reason: projectOps.reason };
}

/** Where tfjs-node's own loader (node-pre-gyp, N-API 8 under Deno) looks for the binding. */
function packageBindingPaths(require: Require): string[] {
  try {
    const pkg = require.resolve("@tensorflow/tfjs-node/package.json").replace(/package\.json$/, "");
    return [`${pkg}lib/napi-v8/tfjs_binding.node`];
  } catch {
    return [];
  }
}

/**
 * `@tensorflow/tfjs-node-gpu`, when it is installed (with its own binding and CUDA libtensorflow,
 * which its install step downloads) and `nvidia-smi` lists a GPU. Its entry module registers
 * and selects the "tensorflow" backend itself; the previously selected backend is restored.
 */
async function loadGpuPackage(
  tf: typeof import("@tensorflow/tfjs"),
  require: Require,
): Promise<NativeBackendResult | { ok: false; reason: "" }> {
  try {
    require.resolve("@tensorflow/tfjs-node-gpu/package.json");
  } catch {
    return { ok: false, reason: "" };
  }
  const gpuName = await cudaGpuName();
  if (!gpuName) return { ok: false, reason: "" };
  try {
    const previous = tf.engine().backendName;
    require("@tensorflow/tfjs-node-gpu");
    if (previous && previous !== "tensorflow") await tf.setBackend(previous);
    return { ok: true, name: "tensorflow", detail: `libtensorflow GPU (${gpuName})` };
  } catch (error) {
    return { ok: false, reason: `@tensorflow/tfjs-node-gpu failed to load: ${firstLine(error)}` };
  }
}

/** The first GPU that `nvidia-smi -L` lists, or undefined. */
async function cudaGpuName(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("nvidia-smi", { args: ["-L"], stderr: "null" }).output();
    const line = new TextDecoder().decode(out.stdout).split("\n").find((l) => l.startsWith("GPU"));
    return out.success && line
      ? line.replace(/^GPU \d+: /, "").replace(/ \(UUID.*$/, "")
      : undefined;
  } catch {
    return undefined;
  }
}

/** tfjs-node calls `util.isNullOrUndefined`, which Node removed and Deno's `node:util` lacks. */
function patchNodeUtil(): void {
  const nodeUtil = util as unknown as Record<string, unknown>;
  nodeUtil.isNullOrUndefined ??= (x: unknown) => x === null || x === undefined;
}

/** Whether `path` names an existing regular file (false for directories and missing paths). */
export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The first line of an error's message, for a one-line reason. */
export function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}
