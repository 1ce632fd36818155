// %% [markdown]
// # Appendix: performance
//
// How fast a training step runs decides how good the book's models can be, so the workbook
// measures its speed against what a reader would otherwise use. `deno task bench` trains and
// samples one fixed network, the reference U-Net of `bench/` (522,048 parameters: three
// resolutions, GroupNorm, SiLU, a sinusoidal time embedding and skip connections), on every
// TensorFlow.js backend the machine has, and in the same run the same network in PyTorch (eager)
// and in Keras 3 on TensorFlow. A training step is one DDPM step at batch 32 (noise, forward,
// MSE, backward, Adam); a sampling step is one DDIM update at batch 64. The runtimes take turns
// in interleaved rounds, so that a change in the machine's load falls on all of them alike, and
// each time is the median of the rounds. The ratios are ours ÷ the peer's: 1 is as fast, 2 is
// twice as slow.
//
// The benchmark also times every network the book actually trains, each spec of the model zoo
// (chapter 4's U-Net with attention, 1.1 M parameters; chapter 2's half-width one; chapter 7's
// feature classifier), through the library's own training step (for a U-Net, clipping and EMA
// included), beside a PyTorch port of its kind (`bench/reference_unet.py`, with exactly the same
// parameter count) trained the same way. A U-Net's inference step is a DDIM step; the
// classifier's is the features the book's metrics compute, both at batch 64.
//
// The tables below are read from the files the benchmark wrote (`assets/bench/bench.json` on a
// CPU machine, `assets/bench/bench-gpu.json` on a GPU machine); rerun `deno task bench` and
// rebuild the book to refresh them.

// %% [setup]
import * as Plot from "@observablehq/plot";
import { book } from "../lib/book/runtime.ts";
import cpuReport from "../assets/bench/bench.json" with { type: "json" };
import gpuReport from "../assets/bench/bench-gpu.json" with { type: "json" };

/** The parts of a `deno task bench` report this page shows. */
interface BenchReport {
  generated: string;
  machine: { cpu: string; cores: number; gpu?: string };
  versions: Record<string, string>;
  rows: {
    size: number;
    runtime: string;
    trainMs: number;
    sampleMs: number;
    trainImagesPerSecond: number;
    trainGflops?: number;
    trainRatio?: Record<string, number>;
    sampleRatio?: Record<string, number>;
  }[];
  /** The zoo's networks through the library's training step, each beside its PyTorch port. */
  networkRows?: (BenchReport["rows"][number] & {
    specs: string[];
    /** Absent in reports made before the classifier was timed: denoising. */
    task?: "denoising" | "classification";
    kind: string;
    parameters: number;
    trainBatch: number;
  })[];
  /** Set when other work loaded the machine during the run (scripts/bench/load.ts). */
  busy?: boolean;
  busyReason?: string;
}

const machines = [
  { name: "CPU", report: cpuReport as BenchReport },
  { name: "GPU", report: gpuReport as BenchReport },
];
const describeMachine = ({ machine }: BenchReport) =>
  machine.gpu
    ? `${machine.gpu}, ${machine.cores}-core ${machine.cpu}`
    : `${machine.cores}-core ${machine.cpu}`;
const ratio = (r: BenchReport["rows"][number], peer: string, key: "trainRatio" | "sampleRatio") =>
  r[key]?.[peer] === undefined ? "" : `${r[key]![peer].toFixed(2)}×`;

// %% [markdown]
// ## The tables
//
// One table per machine. "GFLOP/s" is how much of the machine a runtime puts to work: with $F$ the
// network's analytic FLOP count for one image's forward pass (two per multiply–add), $B$ the
// batch and $t$ the measured time,
//
// $$\text{train GFLOP/s} = \frac{3 F B}{t}, \qquad \text{DDIM GFLOP/s} = \frac{F B}{t},$$
//
// a training step counting as three forward passes (the forward pass and the two gradient
// passes of every layer).

// %% {#tbl-bench-reference #tbl-bench-emoji16}
const tableOf = (rows: BenchReport["rows"], inference = "DDIM step") =>
  rows.map((r) => ({
    size: `${r.size}×${r.size}`,
    runtime: r.runtime,
    "train step (ms)": r.trainMs,
    "images/s": r.trainImagesPerSecond,
    ...(r.trainGflops === undefined ? {} : { "GFLOP/s": r.trainGflops }),
    [`${inference} (ms)`]: r.sampleMs,
    "train ÷ PyTorch": ratio(r, "pytorch", "trainRatio"),
    [`${inference.split(" ")[0]} ÷ PyTorch`]: ratio(r, "pytorch", "sampleRatio"),
  }));
for (const { name, report } of machines) {
  const versions = Object.entries(report.versions).map(([k, v]) => `${k}: ${v}`).join("; ");
  await book.table(tableOf(report.rows), {
    caption: `${name}, the reference U-Net: ${describeMachine(report)}; measured ` +
      `${report.generated.slice(0, 10)}. ${versions}`,
  });
  const networks = Map.groupBy(report.networkRows ?? [], (r) => r.specs.join(", "));
  for (const [specs, rows] of networks) {
    const { kind, parameters, trainBatch, task } = rows[0];
    const classifier = task === "classification";
    await book.table(tableOf(rows, classifier ? "features step" : "DDIM step"), {
      caption: `${name}, the zoo's ${specs} (${kind}, ${parameters.toLocaleString("en")} ` +
        `parameters), trained at its spec's batch of ${trainBatch} ` +
        (classifier
          ? "by lib/training/classification.ts (the heads' cross-entropy, AdamW), "
          : "by lib/training/trainer.ts (with gradient clipping and the EMA), ") +
        "beside a PyTorch port trained the same way.",
    });
  }
  if (report.busy) {
    await book.text(`Note on the ${name} tables: taken on a busy machine (${report.busyReason}).`);
  }
}

// %% [markdown]
// ## Side by side
//
// Training-step time of every runtime on a log scale, per machine and image size. On the CPU the
// native TensorFlow backend is the one to beat the Python frameworks with; wasm is the portable
// fallback and pure JavaScript a last resort. On the GPU, TensorFlow.js reaches the card through
// WebGPU, one dispatch per kernel, while PyTorch launches CUDA kernels directly: for a network
// this small the per-kernel overhead, not the arithmetic, sets the pace.

// %%
const bars = machines.flatMap(({ name, report }) =>
  report.rows.map((r) => ({
    row: `${name} ${r.size}×${r.size} · ${r.runtime}`,
    runtime: r.runtime,
    ms: r.trainMs,
  }))
);
await book.figure({
  width: 720,
  height: 50 + 22 * bars.length,
  marginLeft: 190,
  marginRight: 70,
  x: { type: "log", label: "training step (ms, log scale)", grid: true },
  y: { label: null, domain: bars.map((b) => b.row) },
  color: { legend: true },
  marks: [
    // Bars on a log axis start at 1 ms.
    Plot.barX(bars, { x1: 1, x2: "ms", y: "row", fill: "runtime" }),
    Plot.text(bars, { x: "ms", y: "row", text: (d) => `${d.ms} ms`, dx: 4, textAnchor: "start" }),
  ],
}, {
  caption: "Median training-step time of the reference U-Net, batch 32, by machine and image size.",
});
const fastestCpu = cpuReport.rows.filter((r) => r.size === 16 && r.runtime.startsWith("tfjs"))
  .sort((a, b) => a.trainMs - b.trainMs)[0] as BenchReport["rows"][number];
await book.metric(
  "fastest TensorFlow.js training step on the CPU, 16×16",
  `${fastestCpu.trainMs} ms (${fastestCpu.runtime}, ${
    ratio(fastestCpu, "pytorch", "trainRatio")
  } PyTorch)`,
);

// %% [markdown]
// ## What it means for the book
//
// The models in this book were trained with the native backend on a CPU. WebGPU under Deno is
// correct on a real GPU (the backend suite checks its losses and gradients against `cpu`), but
// for networks of this size its per-dispatch cost keeps it within a small factor of a good CPU
// rather than the orders of magnitude a CUDA framework gets. The book's training loop therefore
// keeps the number of kernels per step low: Adam's moments and the EMA live in one flat vector
// each, so the optimizer is a dozen kernels whatever the number of parameter tensors. The same
// count decides the native backend's speed on the CPU, where every TensorFlow op costs tens of
// microseconds however little it computes. There the heavy and the many-op layers are ops of the
// project's own (`lib/runtime/kernels/`): each GroupNorm + SiLU pair is one kernel forward and one
// backward (TensorFlow's ops took 47), the attention core one op each way, the optimiser step one,
// and the convolutions the project's own register-blocked loops, faster than TensorFlow's on these
// shapes, a layer's whole backward in one op. A training step of the book's U-Net went from 2,009
// kernels to about 900, and from 1.5 times PyTorch's time to about the same (@tbl-bench-emoji16).
