/**
 * The benchmark: the reference U-Net (`bench/reference_unet.ts`, 522,048 parameters) trained and
 * sampled on every available TensorFlow.js backend, beside PyTorch (eager) and Keras (on
 * TensorFlow) running the same network in the same run.
 *
 * For each image size (16×16 and 32×32): the median time of a DDPM training step at batch 32
 * and of a DDIM sampling step (one forward pass and the update) at batch 64, after warm-up;
 * images per second; achieved GFLOP/s, from the analytic FLOP count of the network (a training
 * step counted as three forward passes); and each time as a ratio to PyTorch's and Keras'.
 *
 * The runtimes take turns: each round times a few steps of every runtime in a rotating order
 * (the peers are long-lived Python processes serving requests), so that a change in the
 * machine's load falls on all of them alike; the medians are over all rounds. The pure-JS cpu
 * backend, seconds a step, runs once at 16×16 after the rounds. The load average at the start
 * and end is recorded: on a busy machine PyTorch's OpenMP threads in particular slow down by
 * orders of magnitude, and no table taken then is worth reading.
 *
 * The peers run from `bench/.venv`, created once from the pip index with
 * `bench/requirements.txt`; where that cannot be done, they are skipped with one line.
 *
 * Usage: `deno task bench [--quick] [--sizes 16,32] [--backends tensorflow,wasm,cpu,webgpu]
 *         [--peers torch,keras] [--python PATH] [--device cpu|cuda] [--out PATH] [--profile]`
 *
 * `--python PATH` runs the peers with that interpreter and its installed packages instead of
 * `bench/.venv` (a machine whose PyTorch has CUDA, say); `--device cuda` puts PyTorch on the GPU,
 * the peer to set beside the webgpu backend.
 *
 * `--profile` also prints, per tfjs backend and size, the kernels of one training step by time
 * (tf.profile), the way the hot path was tuned.
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
import { EMOJI16_UNET } from "../lib/zoo/specs.ts";
import { DDIMScheduler } from "../lib/core/samplers/mod.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { Trainer } from "../lib/training/trainer.ts";
import { createModel, type DiffusionModel, unetConfig } from "../lib/core/models/mod.ts";
import { endUserErrorsInOneLine } from "../lib/runtime/main.ts";
import { UserError } from "../lib/core/errors.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const VENV = `${ROOT}/bench/.venv`;
const TRAIN_BATCH = 32;
const SAMPLE_BATCH = 64;
/** The book's network (lib/zoo/specs.ts) trains at its own batch, through lib/training/trainer.ts. */
const BOOK_CONFIG = unetConfig(EMOJI16_UNET);
const BOOK_BATCH = 64;
const ALL_BACKENDS = ["tensorflow", "webgpu", "wasm", "cpu"];
const ALL_PEERS = ["torch", "keras"];

let bookParameters: number | undefined;
/** Parameters of the book's network, as lib/core/models/unet.ts builds it. */
function bookParameterCount(): number {
  if (bookParameters === undefined) {
    const model = createModel(BOOK_CONFIG);
    bookParameters = model.parameterCount();
    model.dispose();
  }
  return bookParameters;
}

/** Steps measured (after warm-up) for one runtime. */
interface Plan {
  steps: number;
  warmup: number;
}

/** One line of the table: a runtime at one image size. */
export interface BenchRow {
  size: number;
  /** `tfjs tensorflow`, `tfjs wasm`, …, `pytorch`, `keras`. */
  runtime: string;
  /** Backend detail or framework version. */
  detail: string;
  trainMs: number;
  sampleMs: number;
  trainImagesPerSecond: number;
  sampleImagesPerSecond: number;
  /** Achieved GFLOP/s (reference network only: its FLOPs are counted analytically). */
  trainGflops?: number;
  sampleGflops?: number;
  /** This runtime's time ÷ the peer's, by peer (tfjs rows only). */
  trainRatio?: Record<string, number>;
  sampleRatio?: Record<string, number>;
  /** Steps timed after warm-up. */
  steps: number;
  /** Every measured time (ms), training then sampling. */
  trainSamples: number[];
  sampleSamples: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function row(
  size: number,
  runtime: string,
  detail: string,
  trainTimes: number[],
  sampleTimes: number[],
  network: "reference" | "book" = "reference",
): BenchRow {
  const trainMs = median(trainTimes), sampleMs = median(sampleTimes);
  const round = (x: number, digits = 1) => Number(x.toFixed(digits));
  const trainBatch = network === "book" ? BOOK_BATCH : TRAIN_BATCH;
  const flops = network === "reference" ? forwardFlops(size) : undefined;
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
    steps: trainTimes.length,
    trainSamples: trainTimes.map((t) => round(t)),
    sampleSamples: sampleTimes.map((t) => round(t)),
  };
}

/** Measured step times (ms) of one runtime at one size, gathered over the rounds. */
interface Samples {
  train: number[];
  sample: number[];
}

/** A runtime that can time `steps` training and sampling steps at a size, after `warmup`. */
interface Runtime {
  name: string;
  detail: string;
  run(size: number, steps: number, warmup: number): Promise<Samples>;
  /** The same for the book's network, where this runtime has it. */
  runBook?(steps: number, warmup: number): Promise<Samples>;
  /** Kernel counts and times of one training step (tfjs runtimes, after `run` at that size). */
  profile?(size: number): Promise<string>;
  close(): Promise<void>;
}

/**
 * A tfjs backend. Its model, optimizer state and inputs per size are created on first use while
 * the backend is active and kept for later rounds (tensors stay on the backend that made them).
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
  let book: { trainer: Trainer; ddim: DDIMScheduler; xs: tf.Tensor4D } | undefined;
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
    async runBook(steps, warmup) {
      await selectBackend({ requested: name, quiet: true });
      if (!book) {
        // Random images stand in for the emoji: the step's cost does not depend on the pixels.
        const random = new Random(7);
        const [s, c] = [BOOK_CONFIG.imageSize, BOOK_CONFIG.inChannels];
        const count = 4 * BOOK_BATCH;
        const images = Float32Array.from(random.normals(count * s * s * c), (v) => Math.tanh(v));
        const schedule = noiseSchedule("cosine", 1000);
        const trainer = new Trainer(createModel(BOOK_CONFIG), { images, count }, schedule, {
          steps: 1_000_000,
          batchSize: BOOK_BATCH,
        }, { progress: false });
        const ddim = new DDIMScheduler(schedule);
        ddim.setTimesteps(50);
        const xs = tf.tensor4d(random.normals(SAMPLE_BATCH * s * s * c), [SAMPLE_BATCH, s, s, c]);
        book = { trainer, ddim, xs };
      }
      const { trainer, ddim, xs } = book;
      const train = await timed(steps, warmup, () => trainer.trainStep());
      const model: DiffusionModel = trainer.ema;
      const t = ddim.timesteps[25];
      const sample = await timed(steps, warmup, async () => {
        const [next, x0] = tf.tidy(() => {
          const eps = model.apply(xs, tf.fill([SAMPLE_BATCH], t) as tf.Tensor1D);
          const { prevSample, predOriginalSample } = ddim.step(eps as tf.Tensor4D, t, xs);
          return [prevSample, predOriginalSample];
        });
        await next.data();
        tf.dispose([next, x0]);
      });
      return { train, sample };
    },
    async profile(size) {
      await selectBackend({ requested: name, quiet: true });
      const info = await tf.profile(() => referenceStep(size));
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
        `tfjs ${name} at ${size}×${size}: one training step, ${calls} kernel calls, ` +
        `${total.toFixed(1)} ms inside kernels`,
        ...entries.slice(0, 15).map(([kernel, e]) =>
          `  ${e.ms.toFixed(1).padStart(7)} ms ${String(e.count).padStart(4)}× ${kernel}`
        ),
      ].join("\n");
    },
    async close() {
      for (const { model, trainer, x0, xs } of states.values()) {
        await selectBackend({ requested: name, quiet: true });
        tf.dispose([x0, xs]);
        trainer.dispose();
        model.dispose();
      }
      if (book) {
        await selectBackend({ requested: name, quiet: true });
        book.xs.dispose();
        book.trainer.model.dispose();
        book.trainer.dispose();
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
  let info: { label: string; version: string; threads: number };
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
    // The book's network has a PyTorch port (bench/reference_unet.py), not a Keras one.
    ...(framework === "torch"
      ? {
        async runBook(steps: number, warmup: number) {
          const request = {
            network: "book",
            config: BOOK_CONFIG,
            size: BOOK_CONFIG.imageSize,
            batch: BOOK_BATCH,
            steps,
            warmup,
          };
          await writer.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
          const reply = await next();
          const count = bookParameterCount();
          if (reply.params !== count) {
            throw new Error(
              `the PyTorch port has ${reply.params} parameters, lib/core/models/unet.ts ${count}`,
            );
          }
          return { train: reply.train_ms, sample: reply.sample_ms };
        },
      }
      : {}),
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

async function loadAverage(): Promise<number | undefined> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return text ? Number(text.split(" ")[0]) : undefined;
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

function markdownTable(rows: BenchRow[], peers: string[]): string {
  const head = [
    "size",
    "runtime",
    "train ms",
    "train img/s",
    "train GFLOP/s",
    "DDIM step ms",
    "DDIM GFLOP/s",
    ...peers.map((p) => `train ÷ ${p}`),
    ...peers.map((p) => `DDIM ÷ ${p}`),
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => " --- ").join("|")}|`];
  for (const r of rows) {
    const ratio = (values: Record<string, number> | undefined, p: string) =>
      values?.[p] !== undefined ? `${values[p].toFixed(2)}×` : "";
    lines.push(
      `| ${
        [
          `${r.size}×${r.size}`,
          r.runtime,
          r.trainMs,
          r.trainImagesPerSecond,
          r.trainGflops ?? "",
          r.sampleMs,
          r.sampleGflops ?? "",
          ...peers.map((p) => ratio(r.trainRatio, p)),
          ...peers.map((p) => ratio(r.sampleRatio, p)),
        ].join(" | ")
      } |`,
    );
  }
  return lines.join("\n");
}

const USAGE = "usage: deno task bench [--quick] [--sizes 16,32] " +
  "[--backends tensorflow,wasm,cpu,webgpu] [--peers torch,keras] [--python PATH] " +
  "[--device cpu|cuda] [--out PATH] [--profile]";

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
  }, USAGE);
  const quick = values.quick;
  const list = (value: string | undefined, all: string[]) =>
    value?.split(",").map((s) => s.trim()).filter(Boolean) ?? all;
  const sizes = list(values.sizes, ["16", "32"]).map(Number);
  if (sizes.some((s) => !(s >= 4 && s % 4 === 0))) {
    throw new UserError(`--sizes takes multiples of 4 (the U-Net halves twice), got ${sizes}`);
  }
  const backends = list(values.backends, ALL_BACKENDS);
  const unknownBackend = backends.find((b) => !ALL_BACKENDS.includes(b));
  if (unknownBackend) throw new UserError(`unknown backend ${unknownBackend}; one of ${ALL_BACKENDS}`);
  const peers = list(values.peers, ALL_PEERS).filter((p) => p !== "none");
  const device = values.device;
  if (device !== "cpu" && device !== "cuda") {
    throw new UserError(`--device is cpu or cuda (where PyTorch runs), got ${device}`);
  }
  const python = values.python;
  const out = values.out ??
    (quick ? `${ROOT}/.cache/bench/bench-quick.json` : `${ROOT}/assets/bench/bench.json`);
  // Rounds × steps per round = measured steps; warm-up only in a runtime's first round.
  const plan = quick ? { rounds: 3, steps: 1, warmup: 1 } : { rounds: 5, steps: 2, warmup: 3 };
  const cpuPlan: Plan = quick ? { steps: 1, warmup: 1 } : { steps: 3, warmup: 1 };
  const say = (line: string) => console.error(`bench: ${line}`);
  const loadBefore = await loadAverage();
  const cores = navigator.hardwareConcurrency;
  if (loadBefore !== undefined && loadBefore > cores / 2) {
    say(
      `the machine is busy (load average ${loadBefore} on ${cores} cores): timings will be noisy`,
    );
  }

  if (backends.includes("tensorflow")) await ensureNativeBackend();
  const skipped: string[] = [];
  const skip = (reason: string) => {
    if (!skipped.includes(reason)) skipped.push(reason);
    say(`skipped ${reason}`);
  };
  const runtimes: Runtime[] = [];
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
  let cpu: Runtime | undefined;
  for (const backend of backends) {
    const runtime = await tfjsRuntime(backend);
    if (typeof runtime === "string") skip(runtime);
    else if (backend === "cpu") cpu = runtime; // pure JS, seconds a step: once, 16×16 only.
    else runtimes.push(runtime);
  }

  const samples = new Map<string, Samples>();
  /** Samples by workload: a size of the reference network, or the book's network. */
  const add = (runtime: Runtime, size: number | "book", more: Samples) => {
    const key = `${size} ${runtime.name}`;
    const all = samples.get(key) ?? { train: [], sample: [] };
    all.train.push(...more.train);
    all.sample.push(...more.sample);
    samples.set(key, all);
  };
  for (const size of sizes) {
    for (let round = 0; round < plan.rounds; round++) {
      say(`${size}×${size}, round ${round + 1} of ${plan.rounds}`);
      for (let k = 0; k < runtimes.length; k++) {
        const runtime = runtimes[(k + round) % runtimes.length];
        add(runtime, size, await runtime.run(size, plan.steps, round === 0 ? plan.warmup : 0));
      }
    }
    if (cpu && size === 16) {
      say("16×16 on tfjs cpu");
      add(cpu, size, await cpu.run(size, cpuPlan.steps, cpuPlan.warmup));
    }
  }
  // The book's network (16×16, batch 64) on every runtime that has it, in rounds the same way.
  const bookRuntimes = runtimes.filter((r) => r.runBook);
  for (let round = 0; round < plan.rounds; round++) {
    say(`the book's network, round ${round + 1} of ${plan.rounds}`);
    for (let k = 0; k < bookRuntimes.length; k++) {
      const runtime = bookRuntimes[(k + round) % bookRuntimes.length];
      const warmup = round === 0 ? plan.warmup : 0;
      add(runtime, "book", await runtime.runBook!(plan.steps, warmup));
    }
  }
  const profiles: string[] = [];
  if (values.profile) {
    for (const runtime of runtimes) {
      for (const size of sizes) if (runtime.profile) profiles.push(await runtime.profile(size));
    }
  }
  for (const runtime of [...runtimes, ...(cpu ? [cpu] : [])]) await runtime.close();
  const loadAfter = await loadAverage();

  /** The rows measured for a workload (a size, or the book's network), with ratios to the peers. */
  const tableRows = (key: number | "book"): BenchRow[] => {
    const network = key === "book" ? "book" : "reference";
    const size = key === "book" ? BOOK_CONFIG.imageSize : key;
    const measured = [...runtimes, ...(cpu ? [cpu] : [])]
      .filter((r) => samples.has(`${key} ${r.name}`))
      .sort((a, b) => Number(!a.name.startsWith("tfjs")) - Number(!b.name.startsWith("tfjs")))
      .map((r) => {
        const { train, sample } = samples.get(`${key} ${r.name}`)!;
        return row(size, r.name, r.detail, train, sample, network);
      });
    const peerRows = measured.filter((r) => !r.runtime.startsWith("tfjs"));
    for (const r of measured) {
      if (!r.runtime.startsWith("tfjs")) continue;
      r.trainRatio = {};
      r.sampleRatio = {};
      for (const p of peerRows) {
        r.trainRatio[p.runtime] = Number((r.trainMs / p.trainMs).toFixed(2));
        r.sampleRatio[p.runtime] = Number((r.sampleMs / p.sampleMs).toFixed(2));
      }
    }
    return measured;
  };
  const rows = sizes.flatMap((size) => tableRows(size));
  const bookRows = tableRows("book");
  const peerVersions = Object.fromEntries(
    runtimes.filter((r) => !r.name.startsWith("tfjs")).map((r) => [r.name, r.detail]),
  );

  const peerNames = [
    ...new Set(rows.filter((r) => !r.runtime.startsWith("tfjs")).map((r) => r.runtime)),
  ];
  const gpu = await gpuModel();
  // Only the load before the run tells of other work: the bench's own runtimes load the machine
  // while it runs, so the load after is high on an idle machine too.
  const busy = loadBefore !== undefined && loadBefore > cores / 2;
  const report = {
    generated: new Date().toISOString(),
    profile: quick ? "quick" : "full",
    ...(busy
      ? {
        warning: `taken on a busy machine (load average ${loadBefore} on ${cores} ` +
          "cores): the times are not representative, PyTorch's OpenMP threads least of all " +
          "(they slow down by orders of magnitude when a core is taken); rerun on an idle machine",
      }
      : {}),
    machine: {
      cpu: await cpuModel(),
      cores,
      ...(gpu ? { gpu } : {}),
      os: `${Deno.build.os} ${Deno.build.arch}`,
      loadAverage: { before: loadBefore, after: loadAfter },
    },
    versions: {
      deno: Deno.version.deno,
      tfjs: tf.version.tfjs,
      ...Object.fromEntries(
        [...runtimes, ...(cpu ? [cpu] : [])].filter((r) => r.name.startsWith("tfjs"))
          .map((r) => [r.name, r.detail]),
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
    bookNetwork: {
      name: "the book's U-Net (lib/zoo/specs.ts EMOJI16_UNET), trained by lib/training/trainer.ts",
      parameters: bookParameterCount(),
      trainBatch: BOOK_BATCH,
      sampleBatch: SAMPLE_BATCH,
      step: "ε-MSE, gradient clipped to norm 1, Adam, EMA; DDIM step with x̂₀ clipped",
    },
    bookRows,
    skipped,
  };
  const table = markdownTable(rows, peerNames);
  const where = gpu ? `${report.machine.cpu} and ${gpu}` : report.machine.cpu;
  console.log(
    `\nReference U-Net (${REFERENCE_PARAMETER_COUNT.toLocaleString("en")} parameters), ` +
      `train batch ${TRAIN_BATCH}, DDIM batch ${SAMPLE_BATCH}; ${where}, ` +
      `${cores} cores; medians of ${plan.rounds * plan.steps} steps in ${plan.rounds} ` +
      `interleaved rounds after ${plan.warmup} warm-up; load average ${loadBefore} → ${loadAfter}\n`,
  );
  console.log(table);
  if (bookRows.length > 0) {
    console.log(
      `\nThe book's network (${bookParameterCount().toLocaleString("en")} parameters, ` +
        `lib/training/trainer.ts), train batch ${BOOK_BATCH}, DDIM batch ${SAMPLE_BATCH}, 16×16\n`,
    );
    console.log(markdownTable(bookRows, peerNames));
  }
  for (const line of skipped) console.log(`skipped: ${line}`);
  if (report.warning) console.log(`warning: ${report.warning}`);
  for (const profile of profiles) console.log(`\n${profile}`);
  await Deno.mkdir(out.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(`${out}.tmp`, JSON.stringify(report, null, 2) + "\n");
  await Deno.rename(`${out}.tmp`, out);
  console.log(`\nwrote ${out.replace(`${ROOT}/`, "")}`);
}

if (import.meta.main) {
  endUserErrorsInOneLine("bench");
  await main(Deno.args);
}
