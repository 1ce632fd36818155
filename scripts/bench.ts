/**
 * The benchmark: the reference U-Net (`bench/reference_unet.ts`, 522,048 parameters) trained and
 * sampled on every available TensorFlow.js backend, beside PyTorch (eager) and Keras (on
 * TensorFlow) running the same network in the same run; then every network of the model zoo
 * (lib/zoo/specs.ts, lib/zoo/feature_networks.ts, lib/zoo/clip_network.ts) trained by the
 * library beside its PyTorch port.
 *
 * For each image size (16×16 and 32×32): the median time of a DDPM training step at batch 32
 * and of a DDIM sampling step (one forward pass and the update) at batch 64, after warm-up;
 * images per second; achieved GFLOP/s, from the analytic FLOP count of the network (a training
 * step counted as three forward passes); and each time as a ratio to PyTorch's and Keras'.
 *
 * The zoo's networks: every spec of `MODEL_SPECS`, its `full` network (completed by
 * `completeModelConfig`) at its `full` training batch, one row per distinct network and batch
 * (specs that share both share a row, named by all of them), then the feature classifier and the
 * tiny CLIP as their artefacts were built (scripts/bench/zoo.ts). Each row times a training step
 * and an inference step: a DDIM step for a denoiser, the features φ(x) for the classifier, the
 * text tower's token states for the CLIP. Each network kind has
 * a PyTorch port in `bench/reference_unet.py` (`PORTS`), which must have exactly the library
 * network's parameter count; a kind without a port fails the run.
 *
 * The runtimes take turns: each round times a few steps of every runtime in a rotating order
 * (the peers are long-lived Python processes serving requests), so that a change in the
 * machine's load falls on all of them alike; the medians are over all rounds. The pure-JS cpu
 * backend, seconds a step, runs once at 16×16 after the rounds.
 *
 * Other work on the machine is measured in windows (an idle one before the rounds, every round,
 * an idle one after) from the CPU time of the processes that are not the benchmark's, beside the
 * load average (scripts/bench/load.ts): on a busy machine PyTorch's OpenMP threads in particular
 * slow down by orders of magnitude, and no table taken then is worth reading. A busy run is
 * marked `busy: true` with its reason and written beside the output, `bench-busy.json` for
 * `bench.json`, so that the output (which the book's appendix shows) keeps the last idle run. A
 * full idle run to the default output also rewrites the tables of README.md's "Performance"
 * section (scripts/bench/tables.ts); `--readme` rewrites them from `assets/bench/bench.json`
 * alone, timing nothing.
 *
 * The peers run from `bench/.venv`, created once from the pip index with
 * `bench/requirements.txt`; where that cannot be done, they are skipped with one line.
 *
 * Usage: `deno task bench [--quick] [--sizes 16,32] [--backends tensorflow,wasm,cpu,webgpu]
 *         [--peers torch,keras] [--python PATH] [--device cpu|cuda] [--out PATH] [--profile]
 *         [--readme] [--fast-paths [--network NAME]] [--browser [--gpu]]`
 *
 * `--fast-paths` times one zoo network's training step (default emoji16-unet) on the native
 * backend with the project's own kernels switched on one after another
 * (scripts/bench/fast_paths.ts), and prints what each saves; it writes nothing.
 *
 * `--browser` is the benchmark's browser twin (scripts/bench/browser.ts): chapter 5's live sampler
 * (DDIM at 25 steps for 16 emoji) timed in headless Chromium on wasm and WebGL, beside the same
 * code under Deno on the native backend and wasm; it writes `assets/bench/bench-browser.json`.
 * With `--gpu`, on a machine with a GPU, WebGPU too.
 *
 * `--python PATH` runs the peers with that interpreter and its installed packages instead of
 * `bench/.venv` (a machine whose PyTorch has CUDA, say); `--device cuda` puts PyTorch on the GPU,
 * the peer to set beside the webgpu backend.
 *
 * `--profile` also prints, per tfjs backend, the kernels of one training step by time
 * (tf.profile) for the reference network at each size and for each zoo network, the way the hot
 * path was tuned.
 *
 * Writes `assets/bench/bench.json` (a `--quick` run writes `.cache/bench/bench-quick.json`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { ensureNativeBackend } from "./setup.ts";
import { parseOptions } from "../lib/runtime/options.ts";
import { Random } from "../lib/core/random.ts";
import {
  forwardFlops,
  REFERENCE_CONFIG,
  REFERENCE_PARAMETER_COUNT,
  ReferenceTrainer,
  ReferenceUNet,
} from "../bench/reference_unet.ts";
import { modelSpec } from "../lib/zoo/specs.ts";
import { timeFastPaths } from "./bench/fast_paths.ts";
import { benchBrowser } from "./bench/browser.ts";
import { endUserErrorsInOneLine } from "../lib/runtime/main.ts";
import { UserError } from "../lib/core/errors.ts";
import {
  allZooNetworks,
  benchmarkWorkload,
  type BenchWorkload,
  missingPortError,
  type ZooNetwork,
  zooNetworkKey,
  zooNetworkName,
  zooParameterCount,
} from "./bench/zoo.ts";
import {
  BUSY_SHARE,
  busyPath,
  busyVerdict,
  IDLE_WINDOW_SECONDS,
  loadAverage,
  LoadMeter,
} from "./bench/load.ts";
import {
  alignedTable,
  type BenchReport,
  type BenchRow,
  type NetworkRow,
  networkTable,
  referenceTable,
  replaceReadmeTables,
} from "./bench/tables.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const VENV = `${ROOT}/bench/.venv`;
const DEFAULT_OUT = `${ROOT}/assets/bench/bench.json`;
const README = `${ROOT}/README.md`;
const TRAIN_BATCH = 32;
const SAMPLE_BATCH = 64;
const ALL_BACKENDS = ["tensorflow", "webgpu", "wasm", "cpu"];
const ALL_PEERS = ["torch", "keras"];

/** Steps measured (after warm-up) for one runtime. */
interface Plan {
  steps: number;
  warmup: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The row of a runtime's measured times; `flops` per image's forward pass where counted. */
function row(
  size: number,
  runtime: string,
  detail: string,
  { train, sample }: Samples,
  trainBatch: number,
  flops?: number,
): BenchRow {
  const trainMs = median(train), sampleMs = median(sample);
  const round = (x: number, digits = 1) => Number(x.toFixed(digits));
  return {
    size,
    runtime,
    detail,
    trainMs: round(trainMs),
    sampleMs: round(sampleMs),
    trainImagesPerSecond: round(trainBatch / trainMs * 1000),
    sampleImagesPerSecond: round(SAMPLE_BATCH / sampleMs * 1000),
    ...(flops === undefined ? {} : {
      trainGflops: round(3 * flops * trainBatch / trainMs / 1e6),
      sampleGflops: round(flops * SAMPLE_BATCH / sampleMs / 1e6),
    }),
    steps: train.length,
    trainSamples: train.map((t) => round(t)),
    sampleSamples: sample.map((t) => round(t)),
  };
}

/** Measured step times (ms) of one runtime at one workload, gathered over the rounds. */
interface Samples {
  train: number[];
  sample: number[];
}

/** A runtime that can time `steps` training and sampling steps at a size, after `warmup`. */
interface Runtime {
  name: string;
  detail: string;
  run(size: number, steps: number, warmup: number): Promise<Samples>;
  /** The same for one of the zoo's networks, where this runtime has them. */
  runNetwork?(network: ZooNetwork, steps: number, warmup: number): Promise<Samples>;
  /** The network kinds this runtime has ports of (the PyTorch peer). */
  ports?: readonly string[];
  /** The id of the runtime's own process (the peers), whose CPU time is the benchmark's. */
  pid?: number;
  /** Kernel counts and times of one training step (tfjs runtimes, after `run` at that size). */
  profile?(size: number): Promise<string>;
  /** The same for a zoo network (after `runNetwork` on it). */
  profileNetwork?(network: ZooNetwork): Promise<string>;
  close(): Promise<void>;
}

/** The kernels of one profiled step by total time: calls, time inside kernels, the top 15. */
async function kernelSummary(
  label: string,
  info: Awaited<ReturnType<typeof tf.profile>>,
): Promise<string> {
  const byKernel = new Map<string, { count: number; ms: number }>();
  for (const kernel of info.kernels) {
    // customGrad scopes time the kernels inside them again: count those once.
    if (kernel.name === "unnamed scope") continue;
    const entry = byKernel.get(kernel.name) ?? { count: 0, ms: 0 };
    entry.count++;
    entry.ms += await kernel.kernelTimeMs as number;
    byKernel.set(kernel.name, entry);
  }
  const entries = [...byKernel].sort((a, b) => b[1].ms - a[1].ms);
  const total = entries.reduce((sum, [, e]) => sum + e.ms, 0);
  const calls = entries.reduce((sum, [, e]) => sum + e.count, 0);
  return [
    `${label}: one training step, ${calls} kernel calls, ${total.toFixed(1)} ms inside kernels`,
    ...entries.slice(0, 15).map(([kernel, e]) =>
      `  ${e.ms.toFixed(1).padStart(7)} ms ${String(e.count).padStart(4)}× ${kernel}`
    ),
  ].join("\n");
}

/**
 * A tfjs backend. Its models, optimizer states and inputs (per size of the reference network, per
 * zoo network) are created on first use while the backend is active and kept for later rounds
 * (tensors stay on the backend that made them).
 */
async function tfjsRuntime(name: string): Promise<Runtime | string> {
  let detail: string;
  try {
    detail = (await selectBackend({ requested: name, quiet: true })).detail;
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    return `${name}: ${message.replace(/\. Set .*$/, ".")}`;
  }
  const states = new Map<number, {
    model: ReferenceUNet;
    trainer: ReferenceTrainer;
    x0: tf.Tensor4D;
    xs: tf.Tensor4D;
    random: Random;
  }>();
  /** One training step of the reference network at `size` on fresh noise and timesteps. */
  const referenceStep = (size: number): tf.Scalar => {
    const { trainer, x0, random } = states.get(size)!;
    const noise = tf.tensor4d(random.normals(TRAIN_BATCH * size * size * 3), [
      TRAIN_BATCH,
      size,
      size,
      3,
    ]);
    const t = Array.from({ length: TRAIN_BATCH }, () => random.int(0, 1000));
    const loss = trainer.step(x0, t, noise);
    noise.dispose();
    return loss;
  };
  /** The zoo's networks' workloads by {@link zooNetworkKey}. */
  const workloads = new Map<string, BenchWorkload>();
  const workloadOf = (network: ZooNetwork) => {
    const key = zooNetworkKey(network.config, network.trainBatch);
    if (!workloads.has(key)) workloads.set(key, benchmarkWorkload(network, SAMPLE_BATCH));
    return workloads.get(key)!;
  };
  const timed = async (steps: number, warmup: number, step: () => Promise<unknown>) => {
    for (let i = 0; i < warmup; i++) await step();
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const start = performance.now();
      await step();
      times.push(performance.now() - start);
    }
    return times;
  };
  return {
    name: `tfjs ${name}`,
    detail,
    async run(size, steps, warmup) {
      await selectBackend({ requested: name, quiet: true });
      const pixels = size * size * 3;
      if (!states.has(size)) {
        const random = new Random(size);
        const model = new ReferenceUNet(REFERENCE_CONFIG, 0);
        states.set(size, {
          model,
          trainer: new ReferenceTrainer(model),
          x0: tf.tensor4d(random.normals(TRAIN_BATCH * pixels), [TRAIN_BATCH, size, size, 3]),
          xs: tf.tensor4d(random.normals(SAMPLE_BATCH * pixels), [SAMPLE_BATCH, size, size, 3]),
          random,
        });
      }
      const { trainer, xs } = states.get(size)!;
      // Noise and timesteps are drawn inside the timed step, as the peers do.
      const train = await timed(steps, warmup, async () => {
        const loss = referenceStep(size);
        const value = (await loss.data())[0];
        loss.dispose();
        if (!Number.isFinite(value)) throw new Error(`${name}: the loss became ${value}`);
      });
      const sample = await timed(steps, warmup, async () => {
        const next = trainer.ddimStep(xs, 500, 480);
        await next.data();
        next.dispose();
      });
      return { train, sample };
    },
    async runNetwork(network, steps, warmup) {
      await selectBackend({ requested: name, quiet: true });
      const workload = workloadOf(network);
      const train = await timed(steps, warmup, workload.train);
      const sample = await timed(steps, warmup, workload.infer);
      return { train, sample };
    },
    async profile(size) {
      await selectBackend({ requested: name, quiet: true });
      const info = await tf.profile(() => referenceStep(size));
      return await kernelSummary(`tfjs ${name}, the reference U-Net at ${size}×${size}`, info);
    },
    async profileNetwork(network) {
      await selectBackend({ requested: name, quiet: true });
      const workload = workloads.get(zooNetworkKey(network.config, network.trainBatch));
      if (!workload) return `tfjs ${name}: ${zooNetworkName(network)} was not timed`;
      const info = await tf.profile(async () => {
        await workload.train();
        return [];
      });
      return await kernelSummary(`tfjs ${name}, ${zooNetworkName(network)}`, info);
    },
    async close() {
      for (const { model, trainer, x0, xs } of states.values()) {
        await selectBackend({ requested: name, quiet: true });
        tf.dispose([x0, xs]);
        trainer.dispose();
        model.dispose();
      }
      for (const workload of workloads.values()) {
        await selectBackend({ requested: name, quiet: true });
        workload.dispose();
      }
    },
  };
}

/** bench/.venv's python, creating the venv once; or why the peers cannot run. */
async function peerPython(say: (line: string) => void): Promise<string> {
  const python = `${VENV}/bin/python`;
  const requirements = await Deno.readTextFile(`${ROOT}/bench/requirements.txt`);
  const marker = `${VENV}/.installed-requirements`;
  const installed = await Deno.readTextFile(marker).catch(() => "");
  if (installed === requirements) return python;
  say("creating bench/.venv with PyTorch, TensorFlow and Keras from the pip index (once, ~2.4 GB)");
  const run = async (command: string, args: string[]) => {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
      .output().catch((error) => ({
        success: false,
        stdout: new Uint8Array(),
        stderr: new TextEncoder().encode(String(error)),
      }));
    if (!out.success) {
      const text = new TextDecoder().decode(out.stderr).split("\n");
      throw new Error(
        text.find((l) => l.startsWith("ERROR")) ?? text.filter(Boolean).pop() ?? command,
      );
    }
  };
  await run("python3", ["-m", "venv", VENV]);
  await run(python, [
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    "--retries",
    "0",
    "--timeout",
    "15",
    "-r",
    `${ROOT}/bench/requirements.txt`,
  ]);
  await Deno.writeTextFile(`${marker}.tmp`, requirements);
  await Deno.rename(`${marker}.tmp`, marker);
  return python;
}

/** A peer (torch or keras): `bench/reference_unet.py --serve` answering one request a line. */
async function peerRuntime(
  python: string,
  framework: string,
  device: string,
): Promise<Runtime | string> {
  const process = new Deno.Command(python, {
    args: [
      `${ROOT}/bench/reference_unet.py`,
      framework,
      "--serve",
      "--batch",
      String(TRAIN_BATCH),
      "--sample-batch",
      String(SAMPLE_BATCH),
      "--device",
      device,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = readLines(process.stdout);
  const writer = process.stdin.getWriter();
  const stderr = new Response(process.stderr).text();
  const next = async () => {
    const line = await lines.next();
    if (line.done) {
      const text = (await stderr).trim().split("\n");
      throw new Error(`${framework}: ${text[text.length - 1] || "the process ended"}`);
    }
    return JSON.parse(line.value);
  };
  let info: { label: string; version: string; threads: number; ports?: string[] };
  try {
    info = await next();
  } catch (error) {
    return (error as Error).message;
  }
  return {
    name: framework === "torch" ? "pytorch" : "keras",
    detail: `${info.label} ${info.version}, ${info.threads} threads`,
    async run(size, steps, warmup) {
      await writer.write(new TextEncoder().encode(JSON.stringify({ size, steps, warmup }) + "\n"));
      const reply = await next();
      return { train: reply.train_ms, sample: reply.sample_ms };
    },
    // The zoo's networks have PyTorch ports (bench/reference_unet.py), not Keras ones.
    ...(framework === "torch"
      ? {
        ports: info.ports ?? [],
        async runNetwork(network: ZooNetwork, steps: number, warmup: number) {
          const request = {
            network: "zoo",
            task: network.task,
            config: network.config,
            size: network.config.imageSize,
            batch: network.trainBatch,
            ...(network.task === "denoising"
              ? {
                T: network.schedule.T,
                gradClipNorm: network.gradClipNorm,
                emaDecay: network.emaDecay,
              }
              : {
                learningRate: network.training.learningRate,
                weightDecay: network.training.weightDecay,
                ...("klWeight" in network.training ? { klWeight: network.training.klWeight } : {}),
              }),
            steps,
            warmup,
          };
          await writer.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
          const reply = await next();
          const count = zooParameterCount(network);
          if (reply.params !== count) {
            throw new Error(
              `the PyTorch port of the network kind "${network.kind}" (bench/reference_unet.py, ` +
                `for ${zooNetworkName(network)}) has ${reply.params} parameters, ` +
                `the library's network ${count}: make the port match it`,
            );
          }
          return { train: reply.train_ms, sample: reply.sample_ms };
        },
      }
      : {}),
    pid: process.pid,
    async close() {
      await writer.close().catch(() => {});
      await process.status;
    },
  };
}

/** The lines of a byte stream. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer) yield buffer;
}

async function cpuModel(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    const model = info.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown CPU";
    const flags = info.match(/^flags\s*:\s*(.+)$/m)?.[1].split(" ") ?? [];
    const simd = ["avx512f", "avx2", "fma"].filter((f) => flags.includes(f)).join(", ");
    return simd ? `${model} (${simd})` : model;
  } catch {
    return `${Deno.build.os} ${Deno.build.arch}`;
  }
}

/** The NVIDIA GPUs and driver, as nvidia-smi names them; undefined without one. */
async function gpuModel(): Promise<string | undefined> {
  let out: Deno.CommandOutput | undefined;
  try {
    out = await new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=name,driver_version", "--format=csv,noheader"],
      stdout: "piped",
      stderr: "null",
    }).output();
  } catch {
    return undefined; // no nvidia-smi: no NVIDIA GPU
  }
  const text = out.success ? new TextDecoder().decode(out.stdout).trim() : "";
  return text
    ? text.split("\n").map((line) => line.replace(/, ([\d.]+)$/, " (driver $1)")).join("; ")
    : undefined;
}

/** Each tfjs row's time ÷ each peer's at the same workload (`trainRatio`, `sampleRatio`). */
function addPeerRatios<R extends BenchRow>(rows: R[]): R[] {
  const peerRows = rows.filter((r) => !r.runtime.startsWith("tfjs"));
  for (const r of rows) {
    if (!r.runtime.startsWith("tfjs")) continue;
    r.trainRatio = {};
    r.sampleRatio = {};
    for (const p of peerRows) {
      r.trainRatio[p.runtime] = Number((r.trainMs / p.trainMs).toFixed(2));
      r.sampleRatio[p.runtime] = Number((r.sampleMs / p.sampleMs).toFixed(2));
    }
  }
  return rows;
}

/**
 * Rewrite one of README.md's generated blocks by `edit` (the "Performance" tables from an idle
 * report, or the browser twin's), then format the file as `deno fmt` does (its prose is wrapped
 * at the project's line width).
 */
async function writeReadme(edit: (readme: string) => string): Promise<void> {
  await Deno.writeTextFile(README, edit(await Deno.readTextFile(README)));
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", "--config", `${ROOT}/deno.json`, README],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!fmt.success) throw new Error("deno fmt README.md failed after writing the bench tables");
}

const USAGE = "usage: deno task bench [--quick] [--sizes 16,32] " +
  "[--backends tensorflow,wasm,cpu,webgpu] [--peers torch,keras] [--python PATH] " +
  "[--device cpu|cuda] [--out PATH] [--profile] [--readme] [--fast-paths [--network NAME]] " +
  "[--browser [--gpu]]";

async function main(args: string[]): Promise<void> {
  const { values } = parseOptions(args, {
    quick: { type: "boolean", default: false },
    sizes: { type: "string" },
    backends: { type: "string" },
    peers: { type: "string" },
    python: { type: "string" },
    device: { type: "string", default: "cpu" },
    out: { type: "string" },
    profile: { type: "boolean", default: false },
    readme: { type: "boolean", default: false },
    "fast-paths": { type: "boolean", default: false },
    network: { type: "string", default: "emoji16-unet" },
    browser: { type: "boolean", default: false },
    gpu: { type: "boolean", default: false },
  }, USAGE);
  const say = (line: string) => console.error(`bench: ${line}`);
  if (values.readme) {
    const report: BenchReport = JSON.parse(await Deno.readTextFile(DEFAULT_OUT));
    await writeReadme((readme) => replaceReadmeTables(readme, report));
    say(`wrote the tables of README.md from ${DEFAULT_OUT.replace(`${ROOT}/`, "")}`);
    return;
  }
  if (values.browser) {
    await ensureNativeBackend();
    await benchBrowser({
      root: ROOT,
      out: values.out ?? `${ROOT}/assets/bench/bench-browser.json`,
      gpu: values.gpu,
      say,
      // Only a default run (this CPU, the committed report) is what README.md shows.
      writeReadme: values.out || values.gpu ? undefined : writeReadme,
    });
    return;
  }
  if (values["fast-paths"]) {
    await ensureNativeBackend();
    await selectBackend({ requested: "tensorflow", quiet: true });
    const spec = modelSpec(values.network);
    const rows = await timeFastPaths(
      spec,
      values.quick ? { rounds: 2, steps: 2 } : { rounds: 6, steps: 3 },
    );
    console.log(
      `${spec.name}, training step on the native backend, batch ${spec.training.full.batchSize}:\n`,
    );
    console.log(alignedTable(
      ["variant", "median ms", "fastest ms", "kernels (Identity aside)"],
      rows.map((r) => [r.variant, r.medianMs, r.fastestMs, r.kernels]),
    ));
    return;
  }
  const quick = values.quick;
  const list = (value: string | undefined, all: string[]) =>
    value?.split(",").map((s) => s.trim()).filter(Boolean) ?? all;
  const sizes = list(values.sizes, ["16", "32"]).map(Number);
  if (sizes.some((s) => !(s >= 4 && s % 4 === 0))) {
    throw new UserError(`--sizes takes multiples of 4 (the U-Net halves twice), got ${sizes}`);
  }
  const backends = list(values.backends, ALL_BACKENDS);
  const unknownBackend = backends.find((b) => !ALL_BACKENDS.includes(b));
  if (unknownBackend) {
    throw new UserError(`unknown backend ${unknownBackend}; one of ${ALL_BACKENDS}`);
  }
  const peers = list(values.peers, ALL_PEERS).filter((p) => p !== "none");
  const device = values.device;
  if (device !== "cpu" && device !== "cuda") {
    throw new UserError(`--device is cpu or cuda (where PyTorch runs), got ${device}`);
  }
  const python = values.python;
  const out = values.out ?? (quick ? `${ROOT}/.cache/bench/bench-quick.json` : DEFAULT_OUT);
  // Rounds × steps per round = measured steps; warm-up only in a runtime's first round.
  const plan = quick ? { rounds: 3, steps: 1, warmup: 1 } : { rounds: 5, steps: 2, warmup: 3 };
  const cpuPlan: Plan = quick ? { steps: 1, warmup: 1 } : { steps: 3, warmup: 1 };
  const cores = navigator.hardwareConcurrency;
  const runtimes: Runtime[] = [];
  let cpu: Runtime | undefined;
  const meter = new LoadMeter(() => runtimes.flatMap((r) => r.pid === undefined ? [] : [r.pid]));
  const startLoadAverage = await loadAverage();

  if (backends.includes("tensorflow")) await ensureNativeBackend();
  const skipped: string[] = [];
  const skip = (reason: string) => {
    if (!skipped.includes(reason)) skipped.push(reason);
    say(`skipped ${reason}`);
  };
  if (peers.length) {
    try {
      const interpreter = python ?? await peerPython(say);
      for (const peer of peers) {
        const runtime = await peerRuntime(interpreter, peer, device);
        if (typeof runtime === "string") skip(runtime);
        else runtimes.push(runtime);
      }
    } catch (error) {
      skip(`PyTorch and Keras: bench/.venv could not be set up (${(error as Error).message})`);
    }
  }
  for (const backend of backends) {
    const runtime = await tfjsRuntime(backend);
    if (typeof runtime === "string") skip(runtime);
    else if (backend === "cpu") cpu = runtime; // pure JS, seconds a step: once, 16×16 only.
    else runtimes.push(runtime);
  }
  const all = [...runtimes, ...(cpu ? [cpu] : [])];
  const networks = await allZooNetworks();
  const noPort = runtimes.map((r) => r.ports && missingPortError(networks, r.ports, r.name))
    .find(Boolean);
  if (noPort) {
    for (const runtime of all) await runtime.close();
    throw noPort;
  }

  say(`measuring other work for ${IDLE_WINDOW_SECONDS} s before the rounds`);
  await meter.mark();
  await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_SECONDS * 1000));
  const endWindow = async (at: string) => {
    const { otherCores } = await meter.sample(at);
    if (otherCores !== undefined && otherCores > BUSY_SHARE * cores) {
      say(`other processes took ${otherCores} of ${cores} cores during ${at}`);
    }
  };
  await endWindow("before");

  /** Measured times by workload (a size of the reference network, or a zoo network's key). */
  const samples = new Map<string, Samples>();
  const add = (runtime: Runtime, workload: string, more: Samples) => {
    const key = `${workload} ${runtime.name}`;
    const sofar = samples.get(key) ?? { train: [], sample: [] };
    sofar.train.push(...more.train);
    sofar.sample.push(...more.sample);
    samples.set(key, sofar);
  };
  /** The runtimes measured at a workload, tfjs first, with their samples. */
  const measured = (workload: string) =>
    all.filter((r) => samples.has(`${workload} ${r.name}`))
      .sort((a, b) => Number(!a.name.startsWith("tfjs")) - Number(!b.name.startsWith("tfjs")))
      .map((r) => ({ runtime: r, times: samples.get(`${workload} ${r.name}`)! }));
  /** `plan.rounds` rounds of `step` on every runtime of `among`, in a rotating order. */
  const rounds = async (
    label: string,
    among: Runtime[],
    step: (runtime: Runtime, warmup: number) => Promise<void>,
  ) => {
    for (let round = 0; round < plan.rounds; round++) {
      say(`${label}, round ${round + 1} of ${plan.rounds}`);
      for (let k = 0; k < among.length; k++) {
        await step(among[(k + round) % among.length], round === 0 ? plan.warmup : 0);
      }
      await endWindow(`${label} round ${round + 1}`);
    }
  };

  for (const size of sizes) {
    await rounds(`${size}×${size}`, runtimes, async (runtime, warmup) => {
      add(runtime, String(size), await runtime.run(size, plan.steps, warmup));
    });
    if (cpu && size === 16) {
      say("16×16 on tfjs cpu");
      add(cpu, String(size), await cpu.run(size, cpuPlan.steps, cpuPlan.warmup));
      await endWindow("16×16 tfjs cpu");
    }
  }
  // The zoo's networks, each at its spec's batch, on every runtime that has them.
  const networkRuntimes = runtimes.filter((r) => r.runNetwork);
  for (const network of networks) {
    const workload = zooNetworkKey(network.config, network.trainBatch);
    await rounds(zooNetworkName(network), networkRuntimes, async (runtime, warmup) => {
      add(runtime, workload, await runtime.runNetwork!(network, plan.steps, warmup));
    });
  }
  const profiles: string[] = [];
  if (values.profile) {
    for (const runtime of runtimes) {
      for (const size of sizes) if (runtime.profile) profiles.push(await runtime.profile(size));
      for (const network of networks) {
        if (runtime.profileNetwork) profiles.push(await runtime.profileNetwork(network));
      }
    }
  }
  for (const runtime of all) await runtime.close();
  say(`measuring other work for ${IDLE_WINDOW_SECONDS} s after the rounds`);
  await meter.mark();
  await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_SECONDS * 1000));
  await endWindow("after");

  const rows = sizes.flatMap((size) =>
    addPeerRatios(
      measured(String(size)).map(({ runtime, times }) =>
        row(size, runtime.name, runtime.detail, times, TRAIN_BATCH, forwardFlops(size))
      ),
    )
  );
  const networkRows: NetworkRow[] = networks.flatMap((network) =>
    addPeerRatios(
      measured(zooNetworkKey(network.config, network.trainBatch)).map(({ runtime, times }) => ({
        specs: network.specs,
        task: network.task,
        kind: network.kind,
        parameters: zooParameterCount(network),
        trainBatch: network.trainBatch,
        sampleBatch: SAMPLE_BATCH,
        ...row(
          network.config.imageSize,
          runtime.name,
          runtime.detail,
          times,
          network.trainBatch,
        ),
      })),
    )
  );
  const peerVersions = Object.fromEntries(
    runtimes.filter((r) => !r.name.startsWith("tfjs")).map((r) => [r.name, r.detail]),
  );
  const peerNames = (of: BenchRow[]) => [
    ...new Set(of.filter((r) => !r.runtime.startsWith("tfjs")).map((r) => r.runtime)),
  ];
  const gpu = await gpuModel();
  const verdict = busyVerdict(meter.samples, cores);
  const cpuSeconds = meter.cpuSeconds();
  const report = {
    generated: new Date().toISOString(),
    profile: quick ? "quick" : "full",
    busy: verdict.busy,
    ...(verdict.busy
      ? {
        busyReason: `${verdict.reason}: the times are not representative, PyTorch's OpenMP ` +
          "threads least of all (they slow down by orders of magnitude when a core is taken); " +
          "rerun on an idle machine",
      }
      : {}),
    machine: {
      cpu: await cpuModel(),
      cores,
      ...(gpu ? { gpu } : {}),
      os: `${Deno.build.os} ${Deno.build.arch}`,
    },
    load: {
      method: "cores' worth of CPU time that processes other than the benchmark's used in each " +
        "window, from /proc/stat and /proc/PID/stat (scripts/bench/load.ts); a run is busy " +
        `when it exceeds ${BUSY_SHARE} of the cores in any window`,
      busyAbove: BUSY_SHARE * cores,
      startLoadAverage,
      samples: meter.samples,
      cpuSeconds,
    },
    versions: {
      deno: Deno.version.deno,
      tfjs: tf.version.tfjs,
      ...Object.fromEntries(
        all.filter((r) => r.name.startsWith("tfjs")).map((r) => [r.name, r.detail]),
      ),
      ...peerVersions,
    },
    network: {
      name: "reference U-Net (bench/reference_unet.ts)",
      parameters: REFERENCE_PARAMETER_COUNT,
      trainBatch: TRAIN_BATCH,
      sampleBatch: SAMPLE_BATCH,
      forwardFlopsPerImage: Object.fromEntries(sizes.map((s) => [s, forwardFlops(s)])),
      flopConvention: "2 per multiply–add; a training step counts as 3 forward passes",
    },
    plan: { ...plan, interleaved: true, cpu: cpuPlan },
    rows,
    zoo: {
      name: "the model zoo's networks (lib/zoo/specs.ts MODEL_SPECS, the classifier of " +
        "lib/zoo/feature_networks.ts, the tiny CLIP of lib/zoo/clip_network.ts, the " +
        "autoencoders of lib/zoo/autoencoder.ts), each at its " +
        "spec's full training batch, trained by the " +
        "library beside its PyTorch port",
      sampleBatch: SAMPLE_BATCH,
      step: {
        denoising: "ε-MSE, the spec's gradient clip, Adam, EMA (lib/training/trainer.ts); " +
          "inference: a DDIM step with x̂₀ clipped",
        classification: "the heads' cross-entropy, AdamW (classifierStep, " +
          "lib/training/classification.ts); inference: the features φ(x)",
        contrastive: "the symmetric InfoNCE loss, AdamW (lib/training/contrastive.ts); " +
          "inference: the text tower's token states τ(y)",
        reconstruction: "L1 + β·KL of the posterior draw, AdamW (lib/training/autoencoder.ts, " +
          "without the perceptual term the classifier's row times); inference: D(μ(x))",
      },
      networks: networks.map((n) => ({
        specs: n.specs,
        task: n.task,
        kind: n.kind,
        parameters: zooParameterCount(n),
        size: n.config.imageSize,
        trainBatch: n.trainBatch,
        config: n.config,
      })),
    },
    networkRows,
    skipped,
  };
  const where = gpu ? `${report.machine.cpu} and ${gpu}` : report.machine.cpu;
  const others = meter.samples.map((s) => s.otherCores ?? 0);
  const loads = meter.samples.map((s) => s.loadAverage ?? NaN);
  console.log(
    `\nReference U-Net (${REFERENCE_PARAMETER_COUNT.toLocaleString("en")} parameters), ` +
      `train batch ${TRAIN_BATCH}, DDIM batch ${SAMPLE_BATCH}; ${where}, ` +
      `${cores} cores; medians of ${plan.rounds * plan.steps} steps in ${plan.rounds} ` +
      `interleaved rounds after ${plan.warmup} warm-up\n`,
  );
  console.log(referenceTable(rows, peerNames(rows)));
  if (networkRows.length > 0) {
    console.log(
      `\nThe zoo's networks, trained by the library at each spec's batch; inference is a DDIM ` +
        `step of a denoiser, the features of the classifier and the text states of the CLIP, ` +
        `batch ${SAMPLE_BATCH}\n`,
    );
    console.log(networkTable(networkRows, peerNames(networkRows)));
  }
  console.log(
    `\nload: other processes took at most ${Math.max(...others).toFixed(2)} of ${cores} cores ` +
      `in a window (busy above ${BUSY_SHARE * cores}); 1-minute load average ` +
      `${startLoadAverage} at the start, ${loads.join(" → ")} after the windows; the benchmark ` +
      `used ${cpuSeconds.bench} CPU s (its peers ${cpuSeconds.peers} s) in ${cpuSeconds.wall} s`,
  );
  for (const line of skipped) console.log(`skipped: ${line}`);
  for (const profile of profiles) console.log(`\n${profile}`);
  const written = verdict.busy ? busyPath(out) : out;
  await Deno.mkdir(written.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(`${written}.tmp`, JSON.stringify(report, null, 2) + "\n");
  await Deno.rename(`${written}.tmp`, written);
  const shown = (path: string) => path.replace(`${ROOT}/`, "");
  if (verdict.busy) {
    console.log(`\nbusy: ${report.busyReason}`);
    console.log(`wrote ${shown(written)}; ${shown(out)} keeps the last idle run`);
  } else {
    console.log(`\nwrote ${shown(written)}`);
    if (!quick && out === DEFAULT_OUT) {
      await writeReadme((readme) => replaceReadmeTables(readme, report));
      console.log("wrote the tables of README.md's Performance section");
    }
  }
}

if (import.meta.main) {
  endUserErrorsInOneLine("bench");
  await main(Deno.args);
}
