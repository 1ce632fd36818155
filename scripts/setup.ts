/**
 * Set up the native TensorFlow backend (tfjs-node) once, into `.native/`.
 *
 * tfjs-node's own install step downloads libtensorflow and a prebuilt binding from the internet.
 * Where that host answers, its route is tried first. Otherwise libtensorflow comes from the
 * `tensorflow-cpu` wheel, which pip resolves from its configured index: the wheel carries
 * `libtensorflow_cc.so.2`, which exports TensorFlow's C API, and the C headers. The binding's
 * C++ sources (shipped in the tfjs-node package) are compiled against it with node-gyp.
 *
 * Layout of `.native/`: `lib/` (libtensorflow_cc.so.2 and libtensorflow_framework.so.2, ~850 MB),
 * `include/` (the C API headers the binding includes), `tfjs_binding.node` (its run path finds
 * `lib/`), `setup.json` (what was built, or why it failed), `setup.log` (the last build's output),
 * and `libdiffusion_ops.so`, the project's own ops (GroupNorm + SiLU, the Adam step, the
 * convolutions and their gradients, the attention core) compiled from
 * lib/runtime/kernels/group_norm_silu.c, adam_step.c, conv2d.c, attention.c and memory.c with the
 * machine's C compiler (`ops.json` records for which version of the source; optional: without it
 * the native backend runs TensorFlow's own ops for them).
 * The binding is also copied to where tfjs-node's own loader looks, so that
 * `import "@tensorflow/tfjs-node"` works too.
 *
 * Idempotent: a marker that matches the wanted versions ends the work in milliseconds; so does a
 * recorded failure, which `--force` retries. Never throws and never fails its caller: on failure
 * it prints one line (unless quiet) and returns `ok: false`.
 *
 * Usage: `deno task setup [--force] [--quiet]`
 *
 * @module
 */
import { createRequire } from "node:module";
import { writeFileAtomic } from "../lib/runtime/files.ts";
import { reinstallCommand } from "../lib/runtime/packages.ts";
import {
  firstLine,
  isFile,
  nativeDir,
  PROJECT_OPS_LIBRARY,
  projectRoot,
} from "../lib/runtime/native.ts";

/** The TensorFlow release whose wheel provides libtensorflow. */
export const TENSORFLOW_VERSION = "2.21.0";
/** The tfjs-node release whose binding is built (the same as the project's @tensorflow/tfjs). */
export const TFJS_NODE_VERSION = "4.22.0";
/** The N-API version the binding is built for; tfjs-node's loader picks `lib/napi-v8` here. */
export const NAPI_VERSION = 8;
const NODE_GYP = "node-gyp@12.4.0";
const TFJS_NODE_HOST = "https://storage.googleapis.com/tf-builds/";

/** What `ensureNativeBackend` gave: whether the backend is ready, and a line saying why (not). */
export interface SetupResult {
  ok: boolean;
  reason: string;
}

/** Options of `ensureNativeBackend`. */
export interface SetupOptions {
  /** Print nothing, not even the failure line. */
  quiet?: boolean;
  /** Rebuild even when a marker says the work was done (or failed) before. */
  force?: boolean;
}

interface Marker {
  key: string;
  ok: boolean;
  reason: string;
  source?: string;
  binding?: string;
  seconds?: number;
}

/**
 * Make sure the native backend is built: at once when `.native/setup.json` records a build (or a
 * failure) of the same versions on this platform, otherwise by building it (about a minute).
 */
export async function ensureNativeBackend(options: SetupOptions = {}): Promise<SetupResult> {
  const say = (line: string) => {
    if (!options.quiet) console.error(`setup: ${line}`);
  };
  try {
    const result = await ensure(options, say);
    if (!result.ok) {
      say(`native TensorFlow backend unavailable, falling back to wasm: ${result.reason}`);
    }
    return result;
  } catch (error) {
    const reason = `setup failed unexpectedly: ${firstLine(error)}`;
    say(`native TensorFlow backend unavailable, falling back to wasm: ${reason}`);
    return { ok: false, reason };
  }
}

async function ensure(options: SetupOptions, say: (line: string) => void): Promise<SetupResult> {
  const dir = nativeDir();
  const key = [
    `tensorflow ${TENSORFLOW_VERSION}`,
    `tfjs-node ${TFJS_NODE_VERSION}`,
    `napi ${NAPI_VERSION}`,
    `${Deno.build.os}-${Deno.build.arch}`,
  ].join(", ");
  const cached = options.force ? undefined : readMarker(dir, key);
  if (cached?.ok) {
    placeForPackageLoader(cached.binding!);
    await ensureProjectOps(dir, options.force, say);
    return { ok: true, reason: `already set up (${cached.source})` };
  }
  if (cached) {
    return { ok: false, reason: `${cached.reason} (\`deno task setup --force\` retries)` };
  }

  await Deno.mkdir(dir, { recursive: true });
  const unlock = await lock(dir, say);
  try {
    // Another process may have finished the work while this one waited for the lock.
    const done = options.force ? undefined : readMarker(dir, key);
    if (done) return { ok: done.ok, reason: done.reason };
    const started = performance.now();
    const built = await build(dir, say);
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    const marker: Marker = { key, ok: built.ok, reason: built.reason, seconds };
    if (built.ok) Object.assign(marker, { source: built.source, binding: built.binding });
    await writeFileAtomic(`${dir}/setup.json`, JSON.stringify(marker, null, 2) + "\n");
    if (built.ok) say(`ready in ${seconds} s: ${built.reason}`);
    if (built.ok) await ensureProjectOps(dir, options.force, say);
    return { ok: built.ok, reason: built.reason };
  } finally {
    unlock();
  }
}

type Built = { ok: true; reason: string; source: string; binding: string } | {
  ok: false;
  reason: string;
};

async function build(dir: string, say: (line: string) => void): Promise<Built> {
  const pkg = await tfjsNodePackage();
  if (!pkg) {
    return {
      ok: false,
      reason: "the npm package @tensorflow/tfjs-node is not installed; restore it: " +
        reinstallCommand(`${Deno.cwd()}/node_modules`, "@tensorflow/tfjs-node"),
    };
  }
  const log: string[] = [];
  const failed = async (reason: string): Promise<Built> => {
    await writeFileAtomic(`${dir}/setup.log`, log.join("\n") + "\n");
    return { ok: false, reason };
  };

  if (await reachable(TFJS_NODE_HOST)) {
    say("tfjs-node's download host answers: trying tfjs-node's own install step");
    const installed = await run("node", ["scripts/install.js"], { cwd: pkg, log });
    const binding = `${pkg}/lib/napi-v${NAPI_VERSION}/tfjs_binding.node`;
    if (installed.ok && isFile(binding) && (await verify(binding, log)).ok) {
      return {
        ok: true,
        reason: "tfjs-node's prebuilt binding",
        source: "tfjs-node download",
        binding,
      };
    }
    say("tfjs-node's own install step did not work; building from the tensorflow-cpu wheel");
  }

  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    return await failed(
      `no wheel route for ${Deno.build.os}-${Deno.build.arch} (linux-x86_64 only)`,
    );
  }
  for (const tool of ["python3", "node", "npx", "make", "g++"]) {
    if (!(await run("sh", ["-c", `command -v ${tool}`], { log })).ok) {
      return await failed(`${tool} is not on PATH (needed to build tfjs-node's binding)`);
    }
  }

  say(`fetching the tensorflow-cpu ${TENSORFLOW_VERSION} wheel (about 270 MB) with pip`);
  const wheelDir = `${dir}/wheel`;
  await Deno.remove(wheelDir, { recursive: true }).catch(() => {});
  const pip = await run("python3", [
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--disable-pip-version-check",
    "--retries",
    "1",
    "--timeout",
    "20",
    `tensorflow-cpu==${TENSORFLOW_VERSION}`,
    "-d",
    wheelDir,
  ], { log });
  if (!pip.ok) {
    const why = pip.output.split("\n").find((l) => l.startsWith("ERROR:"))?.slice(7);
    return await failed(
      `pip could not get tensorflow-cpu==${TENSORFLOW_VERSION}${why ? `: ${why}` : ""}`,
    );
  }

  say("extracting libtensorflow (about 850 MB) and its C headers into .native/");
  const extracted = await run("python3", ["-c", EXTRACT_PY, wheelDir, dir], { log });
  await Deno.remove(wheelDir, { recursive: true }).catch(() => {});
  if (!extracted.ok) {
    return await failed("extracting libtensorflow from the wheel failed (.native/setup.log)");
  }

  say("compiling tfjs-node's binding against it with node-gyp (about half a minute)");
  const buildDir = `${dir}/build`;
  await Deno.remove(buildDir, { recursive: true }).catch(() => {});
  await Deno.mkdir(buildDir, { recursive: true });
  await copyDir(`${pkg}/binding`, `${buildDir}/binding`);
  await Deno.writeTextFile(`${buildDir}/binding.gyp`, bindingGyp(dir));
  const nodeGypArgs = ["-y", NODE_GYP, "rebuild", "-j", "2"];
  const headers = await nodeHeadersDir();
  if (headers) nodeGypArgs.push(`--nodedir=${headers}`);
  const compiled = await run("npx", nodeGypArgs, { cwd: buildDir, log });
  const product = `${buildDir}/build/Release/tfjs_binding.node`;
  if (!compiled.ok || !isFile(product)) {
    return await failed("node-gyp could not build tfjs-node's binding (.native/setup.log)");
  }
  const binding = `${dir}/tfjs_binding.node`;
  await Deno.copyFile(product, `${binding}.tmp`);
  await Deno.rename(`${binding}.tmp`, binding);
  await Deno.remove(buildDir, { recursive: true }).catch(() => {});

  say("checking the binding");
  const checked = await verify(binding, log);
  if (!checked.ok) return await failed(`the built binding does not run: ${checked.reason}`);
  placeForPackageLoader(binding);
  await writeFileAtomic(`${dir}/setup.log`, log.join("\n") + "\n");
  return {
    ok: true,
    reason: `${checked.reason} from the tensorflow-cpu ${TENSORFLOW_VERSION} wheel`,
    source: `tensorflow-cpu ${TENSORFLOW_VERSION} wheel, binding built with ${NODE_GYP}`,
    binding,
  };
}

/**
 * Copy libtensorflow's two libraries out of the wheel, and the C headers that tfjs-node's
 * binding includes, found by following `#include "..."` from its five entry headers.
 */
const EXTRACT_PY = String.raw`
import glob, os, re, shutil, sys, zipfile
wheel_dir, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(glob.glob(os.path.join(wheel_dir, "tensorflow_cpu-*.whl"))[0])
os.makedirs(os.path.join(out, "lib"), exist_ok=True)
for name in ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2"):
    target = os.path.join(out, "lib", name)
    with z.open("tensorflow/" + name) as src, open(target + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    os.chmod(target + ".tmp", 0o755)
    os.replace(target + ".tmp", target)
prefix = "tensorflow/include/"
names = set(z.namelist())
todo = ["tensorflow/c/c_api.h", "tensorflow/c/eager/c_api.h", "tensorflow/c/tf_datatype.h",
        "tensorflow/c/tf_status.h", "tensorflow/c/tf_tensor.h",
        "tensorflow/core/platform/ctstring_internal.h"]
seen = set()
while todo:
    header = todo.pop()
    if header in seen or prefix + header not in names:
        continue
    seen.add(header)
    text = z.read(prefix + header)
    target = os.path.join(out, "include", header)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(text)
    todo += [m.decode() for m in re.findall(rb'#include\s+"([^"]+)"', text)]
print("extracted libtensorflow and", len(seen), "headers")
`;
import { endUserErrorsInOneLine } from "../lib/runtime/main.ts";

/** node-gyp's description of the binding: tfjs-node's sources, linked to the wheel's libraries. */
function bindingGyp(dir: string): string {
  return JSON.stringify(
    {
      targets: [{
        target_name: "tfjs_binding",
        sources: ["binding/tfjs_backend.cc", "binding/tfjs_binding.cc"],
        include_dirs: [`${dir}/include`],
        defines: [`NAPI_VERSION=${NAPI_VERSION}`],
        // $ORIGIN/lib finds the libraries beside .native/tfjs_binding.node; the absolute path
        // serves the copy in tfjs-node's package folder.
        libraries: [
          `-Wl,-rpath,$$ORIGIN/lib:${dir}/lib`,
          `${dir}/lib/libtensorflow_cc.so.2`,
          `${dir}/lib/libtensorflow_framework.so.2`,
        ],
      }],
    },
    null,
    2,
  );
}

/** The project's own TensorFlow ops, compiled beside the binding (see lib/runtime/native.ts). */
const OPS_SOURCES = ["group_norm_silu.c", "adam_step.c", "conv2d.c", "attention.c", "memory.c"]
  .map((name) => new URL(`../lib/runtime/kernels/${name}`, import.meta.url).pathname);
/** What they include (a change to one rebuilds them). */
const OPS_HEADERS = ["tf_kernel_api.h", "parallel.h", "vector8.h"].map((name) =>
  new URL(`../lib/runtime/kernels/${name}`, import.meta.url).pathname
);
/**
 * The compiler's flags: AVX2 and FMA where the CPU has them (the kernels' eight-lane vectors are
 * one AVX register), else the x86-64 baseline (two SSE registers). Not `-march=native`, so that
 * a `.native/` carried to another x86-64 machine with AVX2 still runs.
 */
function opsFlags(): string[] {
  const cpuinfo = (() => {
    try {
      return Deno.readTextFileSync("/proc/cpuinfo");
    } catch {
      return "";
    }
  })();
  const avx2 = / avx2( |$)/m.test(cpuinfo) && / fma( |$)/m.test(cpuinfo);
  return ["-O3", ...(avx2 ? ["-mavx2", "-mfma"] : []), "-fPIC", "-shared", "-Wall"];
}

/**
 * Compile the project's ops (`OPS_SOURCES`) into `.native/libdiffusion_ops.so` against the
 * libtensorflow the binding uses, once per version of the sources (`.native/ops.json`). Optional:
 * without a C compiler the native backend runs TensorFlow's own ops in their place, so a failure
 * is one line, never an error.
 */
async function ensureProjectOps(
  dir: string,
  force: boolean | undefined,
  say: (line: string) => void,
): Promise<void> {
  const parts = await Promise.all(
    [...OPS_SOURCES, ...OPS_HEADERS].map((path) => Deno.readTextFile(path)),
  );
  const source = new TextEncoder().encode(parts.join("\u0000"));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", source));
  const hash = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const pkg = await tfjsNodePackage();
  const framework = [`${dir}/lib`, `${pkg}/deps/lib`]
    .map((lib) => `${lib}/libtensorflow_framework.so.2`)
    .find(isFile);
  const flags = opsFlags();
  const key = `${OPS_SOURCES.map((p) => p.slice(p.lastIndexOf("/") + 1)).join(" ")} ${hash}, ` +
    `${flags.join(" ")}, ${framework}`;
  const target = `${dir}/${PROJECT_OPS_LIBRARY}`;
  try {
    const marker = JSON.parse(Deno.readTextFileSync(`${dir}/ops.json`));
    if (!force && marker.key === key && (!marker.ok || isFile(target))) return;
  } catch {
    // No marker yet: build.
  }
  const log: string[] = [];
  let reason = "";
  if (!framework) reason = "libtensorflow_framework.so.2 not found beside the binding";
  else {
    const frameworkDir = framework.replace(/\/[^/]*$/, "");
    const args = [...flags, ...OPS_SOURCES, "-o", `${target}.tmp`, framework];
    const built = await run("cc", [...args, `-Wl,-rpath,${frameworkDir}`, "-lm", "-pthread"], {
      log,
    });
    if (built.ok) await Deno.rename(`${target}.tmp`, target);
    else {
      const lines = built.output.split("\n").map((l) => l.trim()).filter((l) => l !== "");
      reason = /spawn|not ?found/i.test(lines[0] ?? "")
        ? "no C compiler (`cc`) on the PATH"
        : `cc failed: ${lines.find((l) => /error/.test(l)) ?? lines[0] ?? "no output"}`;
    }
  }
  const ok = reason === "";
  // A library from an older source must not stand in for one that failed to build.
  if (!ok) await Deno.remove(target).catch(() => {});
  await writeFileAtomic(`${dir}/ops.json`, JSON.stringify({ key, ok, reason }, null, 2) + "\n");
  say(
    ok
      ? `built the project's own ops: GroupNorm + SiLU, the Adam step, the convolutions ` +
        `and the attention core (${PROJECT_OPS_LIBRARY})`
      : `the project's own ops were not built (${reason}); the native backend runs TensorFlow's ` +
        `ops in their place`,
  );
}

/** Load the binding in a fresh process and run one convolution on it. */
async function verify(binding: string, log: string[]): Promise<SetupResult> {
  const code = `
    import * as tf from "@tensorflow/tfjs";
    import { loadNativeBackend } from "${
    new URL("../lib/runtime/native.ts", import.meta.url).href
  }";
    const loaded = await loadNativeBackend();
    if (!loaded.ok) throw new Error(loaded.reason);
    await tf.setBackend("tensorflow");
    const y = tf.conv2d(tf.ones([1, 4, 4, 2]), tf.ones([3, 3, 2, 1]), 1, "same");
    const sum = (await y.sum().data())[0];
    if (sum !== 200) throw new Error("conv2d of ones summed to " + sum + ", not 200");
    console.log(loaded.detail);`;
  const dir = binding.replace(/\/[^/]*$/, "");
  const result = await run(Deno.execPath(), ["eval", "--ext=ts", code], {
    cwd: projectRoot(),
    env: { TFJS_NATIVE_DIR: dir },
    log,
  });
  const detail = result.stdout.trim().split("\n").pop();
  return result.ok && detail ? { ok: true, reason: detail } : {
    ok: false,
    reason: result.output.split("\n").find((l) => /error/i.test(l)) ?? "see .native/setup.log",
  };
}

/** Copy the binding to `lib/napi-v8/` in tfjs-node's package folder, where its loader looks. */
function placeForPackageLoader(binding: string): void {
  try {
    const pkg = createRequire(import.meta.url)
      .resolve("@tensorflow/tfjs-node/package.json")
      .replace(/\/package\.json$/, "");
    const target = `${pkg}/lib/napi-v${NAPI_VERSION}/tfjs_binding.node`;
    if (target === binding || isFile(target)) return;
    Deno.mkdirSync(`${pkg}/lib/napi-v${NAPI_VERSION}`, { recursive: true });
    Deno.copyFileSync(binding, `${target}.tmp`);
    Deno.renameSync(`${target}.tmp`, target);
  } catch {
    // Only `import "@tensorflow/tfjs-node"` needs this copy; lib/runtime/native.ts loads .native's.
  }
}

/** tfjs-node's package folder, installing the npm package first if needed. */
async function tfjsNodePackage(): Promise<string | undefined> {
  const require = createRequire(import.meta.url);
  const find = () => {
    try {
      return require.resolve("@tensorflow/tfjs-node/package.json").replace(/\/package\.json$/, "");
    } catch {
      return undefined;
    }
  };
  if (find()) return find();
  // A dynamic import makes Deno install the package (without running its install script).
  await import("@tensorflow/tfjs-node/dist/version.js").catch(() => {});
  return find();
}

/** The prefix under which Node's own headers lie (`include/node/node_api.h`), if any. */
async function nodeHeadersDir(): Promise<string | undefined> {
  const which = await run("sh", ["-c", "command -v node"], { log: [] });
  const node = await Deno.realPath(which.stdout.trim()).catch(() => "");
  const prefix = node.replace(/\/bin\/node$/, "");
  return prefix !== node && isFile(`${prefix}/include/node/node_api.h`) ? prefix : undefined;
}

/** Whether an HTTP host answers within three seconds. */
async function reachable(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(3000) });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/** Run a program, appending its output to `log`; never throws. */
async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; log: string[] },
): Promise<{ ok: boolean; stdout: string; output: string }> {
  options.log.push(`$ ${command} ${args.join(" ").slice(0, 200)}`);
  try {
    const out = await new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    const stdout = decoder.decode(out.stdout);
    const output = stdout + decoder.decode(out.stderr);
    options.log.push(output);
    return { ok: out.success, stdout, output };
  } catch (error) {
    options.log.push(String(error));
    return { ok: false, stdout: "", output: String(error) };
  }
}

/** Take `.native/setup.lock`, waiting while a live process holds it; gives the release. */
async function lock(dir: string, say: (line: string) => void): Promise<() => void> {
  const path = `${dir}/setup.lock`;
  for (let waited = 0;; waited++) {
    try {
      await Deno.writeTextFile(path, String(Deno.pid), { createNew: true });
      return () => Deno.removeSync(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const holder = Number(await Deno.readTextFile(path).catch(() => "0"));
    if (!holder || !isFile(`/proc/${holder}/cmdline`)) {
      await Deno.remove(path).catch(() => {});
      continue;
    }
    if (waited === 0) say(`waiting for process ${holder}, which is setting up .native/`);
    if (waited > 900) throw new Error(`process ${holder} held ${path} for 15 minutes`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function readMarker(dir: string, key: string): Marker | undefined {
  try {
    const marker = JSON.parse(Deno.readTextFileSync(`${dir}/setup.json`)) as Marker;
    if (marker.key !== key) return undefined;
    if (!marker.ok) return marker;
    const libs = marker.source?.startsWith("tensorflow-cpu")
      ? [`${dir}/lib/libtensorflow_cc.so.2`, `${dir}/lib/libtensorflow_framework.so.2`]
      : [];
    return [marker.binding!, ...libs].every(isFile) ? marker : undefined;
  } catch {
    return undefined;
  }
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

if (import.meta.main) {
  endUserErrorsInOneLine("setup");
  const args = new Set(Deno.args);
  const unknown = [...args].filter((a) => a !== "--force" && a !== "--quiet");
  if (unknown.length) {
    console.error(
      `setup: unknown option ${unknown[0]}; usage: deno task setup [--force] [--quiet]`,
    );
    Deno.exit(2);
  }
  const result = await ensureNativeBackend({
    force: args.has("--force"),
    quiet: args.has("--quiet"),
  });
  if (result.ok && !args.has("--quiet")) console.error(`setup: native backend ${result.reason}`);
}
