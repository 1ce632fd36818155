/**
 * The benchmark's report (`assets/bench/bench.json`) and the Markdown tables made from it: the
 * ones `deno task bench` prints, and the block of README.md's "Performance" section, which is
 * written from the last idle run's report, never by hand.
 *
 * @module
 */

/** One line of a table: a runtime at one image size. */
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

/** A row of one of the zoo's networks: which network, then its times as a {@link BenchRow}. */
export interface NetworkRow extends BenchRow {
  /** The specs (lib/zoo/specs.ts, lib/zoo/feature_networks.ts) that train this network so. */
  specs: string[];
  /**
   * What it is trained for; its inference step (`sampleMs`) is a DDIM step of a denoiser and the
   * features of a classifier, the text tower's token states of a CLIP, a reconstruction of an
   * autoencoder. Absent in reports made before the classifier was timed: denoising.
   */
  task?: "denoising" | "classification" | "contrastive" | "reconstruction";
  /** The network kind (`config.kind`). */
  kind: string;
  /** Trainable parameters, as the library's network counts them. */
  parameters: number;
  trainBatch: number;
  sampleBatch: number;
}

/** The parts of a report the tables read. */
export interface BenchReport {
  generated: string;
  profile: string;
  /** True when other work loaded the machine (see scripts/bench/load.ts); absent in old reports. */
  busy?: boolean;
  machine: { cpu: string; cores: number; gpu?: string };
  network: { parameters: number; trainBatch: number; sampleBatch: number };
  plan: { rounds: number; steps: number; warmup: number };
  load?: { samples: { otherCores?: number }[] };
  rows: BenchRow[];
  /** The zoo's networks (absent in reports made before they were timed). */
  networkRows?: NetworkRow[];
}

/**
 * A Markdown table with every column padded to its widest cell, as `deno fmt` lays tables out,
 * so that it reads in a terminal as well.
 */
export function alignedTable(head: string[], body: (string | number)[][]): string {
  const cells = [head, ...body.map((r) => r.map(String))];
  const widths = head.map((_, j) => Math.max(3, ...cells.map((r) => (r[j] ?? "").length)));
  const line = (r: string[]) => `| ${widths.map((w, j) => (r[j] ?? "").padEnd(w)).join(" | ")} |`;
  return [
    line(head),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...cells.slice(1).map(line),
  ]
    .join("\n");
}

const times = (x: number) => `${x.toFixed(2)}×`;
const ratioCell = (values: Record<string, number> | undefined, peer: string) =>
  values?.[peer] !== undefined ? times(values[peer]) : "";

/** The reference network's table as the benchmark prints it: a row per runtime and size. */
export function referenceTable(rows: readonly BenchRow[], peers: readonly string[]): string {
  return alignedTable(
    [
      "size",
      "runtime",
      "train ms",
      "train img/s",
      "train GFLOP/s",
      "DDIM step ms",
      "DDIM GFLOP/s",
      ...peers.map((p) => `train ÷ ${p}`),
      ...peers.map((p) => `DDIM ÷ ${p}`),
    ],
    rows.map((r) => [
      `${r.size}×${r.size}`,
      r.runtime,
      r.trainMs,
      r.trainImagesPerSecond,
      r.trainGflops ?? "",
      r.sampleMs,
      r.sampleGflops ?? "",
      ...peers.map((p) => ratioCell(r.trainRatio, p)),
      ...peers.map((p) => ratioCell(r.sampleRatio, p)),
    ]),
  );
}

/** The zoo's networks as the benchmark prints them: a row per network and runtime. */
export function networkTable(rows: readonly NetworkRow[], peers: readonly string[]): string {
  return alignedTable(
    [
      "network",
      "kind",
      "parameters",
      "size",
      "batch",
      "runtime",
      "train ms",
      "train img/s",
      "inference ms",
      ...peers.map((p) => `train ÷ ${p}`),
      ...peers.map((p) => `inference ÷ ${p}`),
    ],
    rows.map((r) => [
      r.specs.join(", "),
      r.kind,
      r.parameters.toLocaleString("en"),
      `${r.size}×${r.size}`,
      r.trainBatch,
      r.runtime,
      r.trainMs,
      r.trainImagesPerSecond,
      r.sampleMs,
      ...peers.map((p) => ratioCell(r.trainRatio, p)),
      ...peers.map((p) => ratioCell(r.sampleRatio, p)),
    ]),
  );
}

/** How the README names a runtime in a table (its detail follows the table). */
function runtimeLabel(runtime: string): string {
  return runtime.startsWith("tfjs ") ? `tfjs \`${runtime.slice(5)}\`` : runtime;
}

/** The line under a README table that says what each runtime was. */
function runtimeDetails(rows: readonly BenchRow[]): string {
  const details = new Map(rows.map((r) => [r.runtime, r.detail]));
  return [...details].map(([runtime, detail]) => `${runtimeLabel(runtime)}: ${detail}`)
    .join("; ") + ".";
}

/** A time for the README: tenths of a millisecond below a second, whole milliseconds above. */
function milliseconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms).toLocaleString("en")} ms` : `${ms} ms`;
}

/**
 * A row's time as a multiple of PyTorch's at the same workload (`pytorch`; "1" on its own row,
 * blank without one).
 */
function perPyTorch(r: BenchRow, pytorch: BenchRow | undefined, key: "trainMs" | "sampleMs") {
  if (!pytorch) return "";
  return r === pytorch ? "1" : times(r[key] / pytorch[key]);
}

/** The first line of README.md's generated block. */
export const README_BEGIN =
  "<!-- bench:begin: written by `deno task bench` from assets/bench/bench.json; edit there -->";
/** The last line of README.md's generated block. */
export const README_END = "<!-- bench:end -->";

/** Whether two network rows time the same network (the same specs at the same batch). */
function sameNetwork(a: NetworkRow, b: NetworkRow): boolean {
  return a.specs.join() === b.specs.join() && a.trainBatch === b.trainBatch;
}

/**
 * The README's tables of an idle report: the reference network with a row per runtime and a
 * column pair (time, ÷ PyTorch) per size, training steps then DDIM steps; then the zoo's
 * networks, a row per network and runtime. A busy report is refused: its times are not to be
 * published.
 */
export function readmeTables(report: BenchReport): string {
  if (report.busy) {
    throw new Error(
      `the report of ${report.generated} was taken on a busy machine; the README shows idle runs only`,
    );
  }
  const { machine, network, plan } = report;
  const sizes = [...new Set(report.rows.map((r) => r.size))].sort((a, b) => a - b);
  const runtimes = [...new Set(report.rows.map((r) => r.runtime))];
  const rowOf = (runtime: string, size: number) =>
    report.rows.find((r) => r.runtime === runtime && r.size === size);
  const step = (key: "train" | "sample") =>
    sizes.flatMap((size) => [`${size}×${size} ${key === "train" ? "train" : "DDIM"}`, "÷ PyTorch"]);
  const cells = (runtime: string, key: "trainMs" | "sampleMs") =>
    sizes.flatMap((size) => {
      const r = rowOf(runtime, size);
      return r ? [milliseconds(r[key]), perPyTorch(r, rowOf("pytorch", size), key)] : ["", ""];
    });
  const reference = alignedTable(
    ["runtime", ...step("train"), ...step("sample")],
    runtimes.map((runtime) => [
      runtimeLabel(runtime),
      ...cells(runtime, "trainMs"),
      ...cells(runtime, "sampleMs"),
    ]),
  );
  const others = report.load?.samples.map((s) => s.otherCores ?? 0) ?? [];
  const where = machine.gpu ? `${machine.gpu} and a ${machine.cores}-core ${machine.cpu}` : (
    `a ${machine.cores}-core ${machine.cpu}`
  );
  const parts = [
    `Measured ${report.generated.slice(0, 10)} on ${where}, medians of ` +
    `${plan.rounds * plan.steps} steps in ${plan.rounds} interleaved rounds` +
    (others.length
      ? `; other processes took at most ${Math.max(...others).toFixed(2)} cores in any window.`
      : "."),
    `The reference U-Net (${network.parameters.toLocaleString("en")} parameters), ` +
    `training batch ${network.trainBatch}, DDIM batch ${network.sampleBatch}:`,
    reference,
    runtimeDetails(report.rows),
  ];
  const networkRows = report.networkRows ?? [];
  if (networkRows.length) {
    parts.push(
      "The zoo's networks (`MODEL_SPECS` in `lib/zoo/specs.ts`, the classifier of " +
        "`lib/zoo/feature_networks.ts`), each trained by the library at its spec's batch beside " +
        "its PyTorch port in `bench/reference_unet.py`; inference is a DDIM step of a denoiser, " +
        "the features of the classifier and the text tower's token states of the tiny CLIP, " +
        `batch ${networkRows[0].sampleBatch}:`,
      alignedTable(
        [
          "network",
          "kind",
          "parameters",
          "size",
          "batch",
          "runtime",
          "train step",
          "÷ PyTorch",
          "inference",
          "÷ PyTorch",
        ],
        networkRows.map((r) => {
          const pytorch = networkRows.find((p) => p.runtime === "pytorch" && sameNetwork(p, r));
          return [
            r.specs.join(", "),
            r.kind,
            r.parameters.toLocaleString("en"),
            `${r.size}×${r.size}`,
            r.trainBatch,
            runtimeLabel(r.runtime),
            milliseconds(r.trainMs),
            perPyTorch(r, pytorch, "trainMs"),
            milliseconds(r.sampleMs),
            perPyTorch(r, pytorch, "sampleMs"),
          ];
        }),
      ),
      runtimeDetails(networkRows),
    );
  }
  return parts.join("\n\n");
}

/**
 * `text` with what lies between the lines `begin` and `end` replaced by `body`; an error when
 * the markers are missing.
 */
export function replaceBetween(text: string, begin: string, end: string, body: string): string {
  const from = text.indexOf(begin);
  const to = text.indexOf(end, from);
  if (from < 0 || to < 0) {
    throw new Error(
      `README.md has no block between "${begin}" and "${end}" to write the tables in`,
    );
  }
  return `${text.slice(0, from + begin.length)}\n\n${body}\n\n${text.slice(to)}`;
}

/**
 * `readme` with the text between {@link README_BEGIN} and {@link README_END} replaced by the
 * report's tables; an error when the markers are missing.
 */
export function replaceReadmeTables(readme: string, report: BenchReport): string {
  return replaceBetween(readme, README_BEGIN, README_END, readmeTables(report));
}
