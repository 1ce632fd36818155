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
 * The peers run from `bench/.venv`, created once from the pip index with
 * `bench/requirements.txt`; where that cannot be done, they are skipped with one line.
 *
 * Usage: `deno task bench [--quick] [--sizes 16,32] [--backends tensorflow,wasm,cpu,webgpu]
 *         [--peers torch,keras] [--out PATH]`
 *
 * Writes `assets/bench/bench.json` (a `--quick` run writes `.cache/bench/bench-quick.json`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/backend.ts";
import { ensureNativeBackend } from "./setup.ts";
import { Random } from "../lib/random.ts";
import {
  forwardFlops,
  REFERENCE_CONFIG,
  REFERENCE_PARAMETER_COUNT,
  ReferenceTrainer,
  ReferenceUNet,
} from "../bench/reference_unet.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const VENV = `${ROOT}/bench/.venv`;
const TRAIN_BATCH = 32;
const SAMPLE_BATCH = 64;
const ALL_BACKENDS = ["tensorflow", "webgpu", "wasm", "cpu"];
const ALL_PEERS = ["torch", "keras"];

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
  trainGflops: number;
  sampleGflops: number;
  /** This runtime's time ÷ the peer's, by peer (tfjs rows only). */
  trainRatio?: Record<string, number>;
  sampleRatio?: Record<string, number>;
  /** Steps timed after warm-up. */
  steps: number;
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
): BenchRow {
  const trainMs = median(trainTimes), sampleMs = median(sampleTimes);
  const flops = forwardFlops(size);
  const round = (x: number, digits = 1) => Number(x.toFixed(digits));
  return {
    size,
    runtime,
    detail,
    trainMs: round(trainMs),
    sampleMs: round(sampleMs),
    trainImagesPerSecond: round(TRAIN_BATCH / trainMs * 1000),
    sampleImagesPerSecond: round(SAMPLE_BATCH / sampleMs * 1000),
    trainGflops: round(3 * flops * TRAIN_BATCH / trainMs / 1e6),
    sampleGflops: round(flops * SAMPLE_BATCH / sampleMs / 1e6),
    steps: trainTimes.length,
  };
}

/** Times training and sampling of the reference U-Net on one tfjs backend. */
async function benchBackend(
  name: string,
  size: number,
  plan: Plan,
): Promise<BenchRow | string> {
  let detail: string;
  try {
    detail = (await selectBackend({ requested: name, quiet: true })).detail;
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    return `${name}: ${message.replace(/\. Set .*$/, ".")}`;
  }
  const model = new ReferenceUNet(REFERENCE_CONFIG, 0);
  const trainer = new ReferenceTrainer(model);
  const random = new Random(0);
  const pixels = size * size * 3;
  const x0 = tf.tensor4d(random.normals(TRAIN_BATCH * pixels), [TRAIN_BATCH, size, size, 3]);
  const xs = tf.tensor4d(random.normals(SAMPLE_BATCH * pixels), [SAMPLE_BATCH, size, size, 3]);
  const trainStep = async () => {
    const start = performance.now();
    // Noise and timesteps are drawn inside the timed step, as the peers do.
    const noise = tf.tensor4d(random.normals(TRAIN_BATCH * pixels), [TRAIN_BATCH, size, size, 3]);
    const t = Array.from({ length: TRAIN_BATCH }, () => random.int(0, 1000));
    const loss = trainer.step(x0, t, noise);
    const value = (await loss.data())[0];
    tf.dispose([loss, noise]);
    if (!Number.isFinite(value)) throw new Error(`${name}: the loss became ${value}`);
    return performance.now() - start;
  };
  const sampleStep = async () => {
    const start = performance.now();
    const next = trainer.ddimStep(xs, 500, 480);
    await next.data();
    next.dispose();
    return performance.now() - start;
  };
  const timed = async (step: () => Promise<number>) => {
    for (let i = 0; i < plan.warmup; i++) await step();
    const times: number[] = [];
    for (let i = 0; i < plan.steps; i++) times.push(await step());
    return times;
  };
  try {
    const trainTimes = await timed(trainStep);
    const sampleTimes = await timed(sampleStep);
    return row(size, `tfjs ${name}`, detail, trainTimes, sampleTimes);
  } finally {
    tf.dispose([x0, xs]);
    trainer.dispose();
    model.dispose();
  }
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

interface PeerReport {
  framework: string;
  label: string;
  version: string;
  threads: number;
  results: { size: number; params: number; train_ms: number[]; sample_ms: number[] }[];
}

/** Runs one peer (torch or keras) on one size in its own process. */
async function benchPeer(
  python: string,
  framework: string,
  size: number,
  plan: Plan,
): Promise<{ report: PeerReport; row: BenchRow } | string> {
  const args = [
    `${ROOT}/bench/reference_unet.py`,
    framework,
    "--sizes",
    String(size),
    "--batch",
    String(TRAIN_BATCH),
    "--sample-batch",
    String(SAMPLE_BATCH),
    "--steps",
    String(plan.steps),
    "--warmup",
    String(plan.warmup),
  ];
  const out = await new Deno.Command(python, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
    return `${framework}: ${lines[lines.length - 1]}`;
  }
  const report = JSON.parse(new TextDecoder().decode(out.stdout)) as PeerReport;
  const result = report.results[0];
  const name = framework === "torch" ? "pytorch" : "keras";
  return {
    report,
    row: row(
      size,
      name,
      `${report.label} ${report.version}, ${report.threads} threads`,
      result.train_ms,
      result.sample_ms,
    ),
  };
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
          r.trainGflops,
          r.sampleMs,
          r.sampleGflops,
          ...peers.map((p) => ratio(r.trainRatio, p)),
          ...peers.map((p) => ratio(r.sampleRatio, p)),
        ].join(" | ")
      } |`,
    );
  }
  return lines.join("\n");
}

function option(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
}

async function main(args: string[]): Promise<void> {
  const known = ["--quick", "--sizes", "--backends", "--peers", "--out"];
  for (const arg of args) {
    if (arg.startsWith("--") && !known.includes(arg.split("=")[0])) {
      throw new Error(
        `unknown option ${arg}; usage: deno task bench [--quick] [--sizes 16,32] ` +
          `[--backends tensorflow,wasm,cpu,webgpu] [--peers torch,keras] [--out PATH]`,
      );
    }
  }
  const quick = args.includes("--quick");
  const list = (name: string, all: string[]) =>
    (option(args, name)?.split(",").map((s) => s.trim()).filter(Boolean)) ?? all;
  const sizes = list("--sizes", ["16", "32"]).map(Number);
  if (sizes.some((s) => !(s >= 4 && s % 4 === 0))) {
    throw new Error(`--sizes takes multiples of 4 (the U-Net halves twice), got ${sizes}`);
  }
  const backends = list("--backends", ALL_BACKENDS);
  const unknownBackend = backends.find((b) => !ALL_BACKENDS.includes(b));
  if (unknownBackend) throw new Error(`unknown backend ${unknownBackend}; one of ${ALL_BACKENDS}`);
  const peers = list("--peers", ALL_PEERS).filter((p) => p !== "none");
  const out = option(args, "--out") ??
    (quick ? `${ROOT}/.cache/bench/bench-quick.json` : `${ROOT}/assets/bench/bench.json`);
  const plan: Plan = quick ? { steps: 3, warmup: 1 } : { steps: 10, warmup: 3 };
  const cpuPlan: Plan = quick ? { steps: 1, warmup: 1 } : { steps: 3, warmup: 1 };
  const say = (line: string) => console.error(`bench: ${line}`);

  if (backends.includes("tensorflow")) await ensureNativeBackend();
  const skipped: string[] = [];
  let python: string | undefined;
  if (peers.length) {
    try {
      python = await peerPython(say);
    } catch (error) {
      skipped.push(
        `PyTorch and Keras peers: bench/.venv could not be set up (${(error as Error).message})`,
      );
      say(skipped[skipped.length - 1]);
    }
  }

  const rows: BenchRow[] = [];
  const peerVersions: Record<string, string> = {};
  for (const size of sizes) {
    const peerRows: Record<string, BenchRow> = {};
    for (const peer of python ? peers : []) {
      say(`${peer} at ${size}×${size}`);
      const result = await benchPeer(python!, peer, size, plan);
      if (typeof result === "string") {
        skipped.push(result);
        say(`skipped ${result}`);
        continue;
      }
      peerRows[peer] = result.row;
      peerVersions[result.row.runtime] = result.report.version;
    }
    for (const backend of backends) {
      if (backend === "cpu" && size !== 16) continue; // pure JS: seconds a step; 16×16 only.
      say(`tfjs ${backend} at ${size}×${size}`);
      const result = await benchBackend(backend, size, backend === "cpu" ? cpuPlan : plan);
      if (typeof result === "string") {
        if (!skipped.includes(result)) skipped.push(result);
        say(`skipped ${result}`);
        continue;
      }
      result.trainRatio = {}, result.sampleRatio = {};
      for (const [peer, p] of Object.entries(peerRows)) {
        result.trainRatio[p.runtime] = Number((result.trainMs / p.trainMs).toFixed(2));
        result.sampleRatio[p.runtime] = Number((result.sampleMs / p.sampleMs).toFixed(2));
        void peer;
      }
      rows.push(result);
    }
    rows.push(...Object.values(peerRows));
  }

  const peerNames = [
    ...new Set(rows.filter((r) => !r.runtime.startsWith("tfjs")).map((r) => r.runtime)),
  ];
  const report = {
    generated: new Date().toISOString(),
    profile: quick ? "quick" : "full",
    machine: {
      cpu: await cpuModel(),
      cores: navigator.hardwareConcurrency,
      os: `${Deno.build.os} ${Deno.build.arch}`,
    },
    versions: {
      deno: Deno.version.deno,
      tfjs: tf.version.tfjs,
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
    plan: { steps: plan.steps, warmup: plan.warmup, cpu: cpuPlan },
    rows,
    skipped,
  };
  const table = markdownTable(rows, peerNames);
  console.log(
    `\nReference U-Net (${REFERENCE_PARAMETER_COUNT.toLocaleString("en")} parameters), ` +
      `train batch ${TRAIN_BATCH}, DDIM batch ${SAMPLE_BATCH}; ${report.machine.cpu}, ` +
      `${report.machine.cores} cores; medians of ${plan.steps} steps after ${plan.warmup} warm-up\n`,
  );
  console.log(table);
  for (const line of skipped) console.log(`skipped: ${line}`);
  await Deno.mkdir(out.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(`${out}.tmp`, JSON.stringify(report, null, 2) + "\n");
  await Deno.rename(`${out}.tmp`, out);
  console.log(`\nwrote ${out.replace(`${ROOT}/`, "")}`);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
