/**
 * The benchmark's browser twin (`deno task bench --browser`): the book's live sampler timed in
 * headless Chromium on each of its CPU backends (wasm, and WebGL on SwiftShader, the CPU
 * renderer a machine without a GPU has), beside the same code and weights under Deno (the
 * native backend and wasm), in the same run. The workload is chapter 5's widget: DDIM at 25
 * steps for 16 emoji from emoji16-unet's float16 live weights. Each runtime samples once to
 * warm up, then once timed.
 *
 * The page is a bare one beside the site's live files (scripts/book/live.ts), opened from
 * `file://`; the timing is the worker's own (`workbookLive.time`), so page load and transfers
 * are left out. With `--gpu` Chromium is started with its GPU flags and WebGPU is timed too:
 * the row for a machine with a GPU.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { chromium } from "playwright-core";
import { selectBackend } from "../../lib/runtime/backend.ts";
import { decodeLiveModel, type LiveDenoiser } from "../../lib/browser/live_model.ts";
import { liveSample, type LiveSampleRequest } from "../../lib/browser/live_sampling.ts";
import { liveModelBytes } from "../../lib/zoo/live_export.ts";
import { liveModelsOf, liveWidgetsOf, textEncoderOf, writeLiveAssets } from "../book/live.ts";
import { removeIfPresent } from "../book/results.ts";
import { writeFileAtomic } from "../../lib/runtime/files.ts";
import { loadAverage } from "./load.ts";
import { alignedTable, replaceBetween } from "./tables.ts";

/** The chapter-5 widget's workload. */
export const BROWSER_WORKLOAD: LiveSampleRequest = {
  count: 16,
  seed: 0,
  sampler: "ddim",
  steps: 25,
  condition: { kind: "none" },
};
const MODEL = "emoji16-unet";
const CHROMIUM = "/usr/bin/chromium";

/** One timed runtime. */
export interface BrowserBenchRow {
  /** Where it ran: `chromium` or `deno`. */
  runtime: string;
  /** The backend, and what it ran on. */
  backend: string;
  detail: string;
  /** Seconds for the whole batch (25 steps), and per step. */
  seconds: number;
  msPerStep: number;
}

/** What a chapter page with live samplers loads, in bytes, served and from disk. */
export interface PageDownload {
  /** The chapter file. */
  chapter: string;
  /** The models its samplers offer. */
  models: string[];
  /** The widget's script, the worker, the wasm binary and the first model (with its encoder). */
  firstSample: { served: number; fromDisk: number };
  /** The same with every model loaded. */
  everyModel: { served: number; fromDisk: number };
}

/** What `deno task bench --browser` writes. */
export interface BrowserBenchReport {
  date: string;
  model: string;
  workload: LiveSampleRequest;
  cores: number;
  loadAverage: { before?: number; after?: number };
  rows: BrowserBenchRow[];
  pages: PageDownload[];
}

/**
 * The bytes each chapter page with a live sampler loads, from the sizes of the site's live
 * files (`sizes`: path under `assets/` → bytes): served, the `.bin` files; from disk, the
 * scripts that define them (the widget's own script either way).
 */
export function pageDownloads(
  chapters: { file: string; text: string }[],
  sizes: Record<string, number>,
): PageDownload[] {
  const bytes = (names: string[], ext: "bin" | "js") =>
    sizes["widgets/live-sampler.js"] +
    ["live-worker", "wasm-simd", ...names].reduce((sum, n) => {
      const size = sizes[`live/${n}.${ext}`];
      if (size === undefined) throw new Error(`the site has no assets/live/${n}.${ext}`);
      return sum + size;
    }, 0);
  const both = (names: string[]) => ({ served: bytes(names, "bin"), fromDisk: bytes(names, "js") });
  return chapters.flatMap(({ file, text }) => {
    const widgets = liveWidgetsOf(text);
    if (widgets.length === 0) return [];
    const withEncoders = (models: string[]) => [
      ...new Set(models.flatMap((m) => [m, textEncoderOf(m) ?? []].flat())),
    ];
    return [{
      chapter: file,
      models: widgets.flat(),
      firstSample: both(withEncoders(widgets.map((w) => w[0]))),
      everyModel: both(withEncoders(widgets.flat())),
    }];
  });
}

async function timeInDeno(backend: string, bytes: Uint8Array): Promise<BrowserBenchRow> {
  const report = await selectBackend({ requested: backend, quiet: true });
  const model = decodeLiveModel(bytes, MODEL) as LiveDenoiser;
  try {
    await liveSample(model, undefined, BROWSER_WORKLOAD, () => {});
    const begun = performance.now();
    await liveSample(model, undefined, BROWSER_WORKLOAD, () => {});
    const ms = performance.now() - begun;
    return {
      runtime: "deno",
      backend: tf.getBackend(),
      detail: report.detail,
      seconds: ms / 1000,
      msPerStep: ms / BROWSER_WORKLOAD.steps,
    };
  } finally {
    model.network.dispose();
  }
}

/** Times the workload in Chromium and under Deno; prints the table and writes `out`. */
export async function benchBrowser(options: {
  root: string;
  out: string;
  gpu?: boolean;
  say: (line: string) => void;
  /** Rewrites README.md by the edit given (the bench's own writer). */
  writeReadme?: (edit: (readme: string) => string) => Promise<void>;
}): Promise<BrowserBenchReport> {
  const { root, say } = options;
  const before = await loadAverage();
  const work = await Deno.makeTempDir({ prefix: "bench-browser-" });
  const rows: BrowserBenchRow[] = [];
  const chapters = [...Deno.readDirSync(`${root}/chapters`)]
    .filter((e) => e.isFile && e.name.endsWith(".ts")).map((e) => e.name).sort()
    .map((file) => ({ file, text: Deno.readTextFileSync(`${root}/chapters/${file}`) }));
  let pages: PageDownload[];
  try {
    const live = await writeLiveAssets(root, `${work}/assets`, [
      ...new Set([MODEL, ...liveModelsOf(chapters.map((c) => c.text))]),
    ]);
    pages = pageDownloads(chapters, live.sizes);
    await Deno.writeTextFile(
      `${work}/bench.html`,
      '<!doctype html><meta charset="utf-8"><title>bench</title>' +
        '<script src="assets/widgets/live-sampler.js"></script>',
    );
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        ...(options.gpu
          ? ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--ignore-gpu-blocklist"]
          : ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]),
      ],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`file://${work}/bench.html`);
      for (const backend of options.gpu ? ["webgpu", "webgl", "wasm"] : ["wasm", "webgl"]) {
        say(`chromium ${backend}…`);
        const timed = await page.evaluate(
          ([model, b, request]) =>
            (globalThis as unknown as {
              workbookLive: {
                time(m: string, b: string, r: unknown): Promise<
                  { ms: number; backend?: { name: string; detail: string } }
                >;
              };
            }).workbookLive.time(model as string, b as string, request),
          [MODEL, backend, BROWSER_WORKLOAD] as const,
        ).catch((e: Error) => {
          say(`chromium ${backend} skipped: ${e.message.split("\n")[0]}`);
          return undefined;
        });
        if (!timed) continue;
        rows.push({
          runtime: "chromium",
          backend,
          detail: timed.backend?.detail ?? "",
          seconds: timed.ms / 1000,
          msPerStep: timed.ms / BROWSER_WORKLOAD.steps,
        });
      }
    } finally {
      await browser.close();
    }
  } finally {
    await removeIfPresent(work);
  }
  const bytes = await liveModelBytes(MODEL, root);
  for (const backend of ["tensorflow", "wasm"]) {
    say(`deno ${backend}…`);
    rows.push(await timeInDeno(backend, bytes));
  }
  const report: BrowserBenchReport = {
    date: new Date().toISOString(),
    model: MODEL,
    workload: BROWSER_WORKLOAD,
    cores: navigator.hardwareConcurrency,
    loadAverage: { before, after: await loadAverage() },
    rows,
    pages,
  };
  await writeFileAtomic(options.out, JSON.stringify(report, null, 2) + "\n");
  console.log(`${browserTable(report)}\n\n${downloadTable(report)}`);
  await options.writeReadme?.((readme) =>
    replaceBetween(readme, BROWSER_README_BEGIN, BROWSER_README_END, browserReadme(report))
  );
  return report;
}

/** The first line of README.md's block that this benchmark writes. */
export const BROWSER_README_BEGIN =
  "<!-- bench-browser:begin: written by `deno task bench --browser` from assets/bench/bench-browser.json; edit there -->";
/** Its last line. */
export const BROWSER_README_END = "<!-- bench-browser:end -->";

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

/** What each page loads, as a table. */
export function downloadTable(report: BrowserBenchReport): string {
  return alignedTable(
    ["page", "models", "first sample, served", "every model, served", "first sample, from disk"],
    report.pages.map((p) => [
      p.chapter.replace(/\.ts$/, ""),
      p.models.join(", "),
      megabytes(p.firstSample.served),
      megabytes(p.everyModel.served),
      megabytes(p.firstSample.fromDisk),
    ]),
  );
}

/** README.md's block: when and where it was measured, the times, and what the pages load. */
export function browserReadme(report: BrowserBenchReport): string {
  const load = [report.loadAverage.before, report.loadAverage.after]
    .map((v) => v?.toFixed(2) ?? "?").join(" and ");
  return [
    `Measured ${report.date.slice(0, 10)} on ${report.cores} cores (load average ${load} before ` +
    `and after): ${report.model}, DDIM at ${report.workload.steps} steps for ` +
    `${report.workload.count} emoji, the second of two runs.`,
    browserTable(report),
    "What a chapter page loads for its live samplers (the widget's script, the worker's bundle, " +
    "the wasm binary and the weights): served over HTTP the gzipped `.bin` files, from disk the " +
    "scripts that carry them in base64.",
    downloadTable(report),
  ].join("\n\n");
}

/** The report as a table, each time beside Deno's native one. */
export function browserTable(report: BrowserBenchReport): string {
  const native = report.rows.find((r) => r.runtime === "deno" && r.backend === "tensorflow");
  return alignedTable(
    ["runtime", "backend", "on", "s (16 emoji, DDIM 25)", "ms per step", "× deno native"],
    report.rows.map((r) => [
      r.runtime,
      r.backend,
      r.detail,
      r.seconds.toFixed(2),
      r.msPerStep.toFixed(0),
      native ? (r.seconds / native.seconds).toFixed(1) : "",
    ]),
  );
}
