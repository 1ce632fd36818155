/**
 * Figures more than one chapter draws, as Observable Plot options for `book.figure`.
 *
 * @module
 */
import * as Plot from "@observablehq/plot";
import type { MetricsRecord } from "../training/trainer.ts";
import type { SampleQuality } from "../metrics/evaluate.ts";
import type { KernelDistanceDifference } from "../metrics/kid.ts";

/** Options of {@link lossCurve}. */
export interface LossCurveOptions {
  /** Also draw each run's logged values (the mean loss of each logging window). */
  showLogged?: boolean;
  /** Weight of the previous value in the exponential smoothing, s ← a s + (1 − a) loss (0.9). */
  smoothing?: number;
  /** The y axis's label (default "MSE on ε"). */
  yLabel?: string;
}

/**
 * Training loss against step for one or more runs, from their metrics records, smoothed by an
 * exponential moving average of the logged values (the raw loss of a step is noisy: each batch
 * draws its own timesteps, and the loss at small t is far larger than at large t).
 */
export function lossCurve(
  runs: Record<string, readonly MetricsRecord[]>,
  options: LossCurveOptions = {},
): Plot.PlotOptions {
  const a = options.smoothing ?? 0.9;
  const several = Object.keys(runs).length > 1;
  const rows = Object.entries(runs).flatMap(([run, metrics]) => {
    let smoothed = metrics[0]?.loss ?? 0;
    return metrics.flatMap((m) => {
      smoothed = a * smoothed + (1 - a) * m.loss;
      const curve = (what: string) => several ? `${run}, ${what}` : what;
      return [
        ...(options.showLogged ? [{ step: m.step, loss: m.loss, curve: curve("logged") }] : []),
        {
          step: m.step,
          loss: smoothed,
          curve: several && !options.showLogged ? run : curve("smoothed"),
        },
      ];
    });
  });
  return {
    width: 720,
    height: 280,
    color: { legend: true },
    x: { label: "step" },
    y: { label: options.yLabel ?? "MSE on ε", type: "log", grid: true },
    marks: [Plot.lineY(rows, { x: "step", y: "loss", stroke: "curve" })],
  };
}

/**
 * The columns every quality table of the book shows for a sample set (chapter 7's metrics on the
 * emoji classifier's features): FID, KID × 10³ with its spread over subsets, precision, recall.
 */
export function qualityColumns(q: SampleQuality): Record<string, string> {
  return {
    FID: q.fid.toFixed(2),
    "KID × 10³": `${(1000 * q.kid.mean).toFixed(2)} ± ${(1000 * q.kid.std).toFixed(2)}`,
    precision: q.precision.toFixed(3),
    recall: q.recall.toFixed(3),
  };
}

/** A row of {@link panelLines}: a point of one series in one panel. */
export interface PanelPoint {
  x: number;
  value: number;
  /** The panel (facet) it is drawn in. */
  panel: string;
  /** The series (colour) within the panel; one series when absent. */
  series?: string;
}

/**
 * Lines with dots side by side in panels that share the x axis and not the y axis' meaning
 * (loss and accuracy, FID and KID): one panel per `panel`, one colour per `series`.
 */
export function panelLines(
  points: readonly PanelPoint[],
  options: { xLabel: string; logX?: boolean; height?: number },
): Plot.PlotOptions {
  const several = points.some((p) => p.series !== undefined);
  return {
    width: 720,
    height: options.height ?? 240,
    fx: { label: null },
    x: { label: options.xLabel, ...(options.logX ? { type: "log" } : {}) },
    y: { grid: true, label: null },
    ...(several ? { color: { legend: true } } : {}),
    facet: { data: points as PanelPoint[], x: "panel" },
    marks: [
      Plot.lineY(points as PanelPoint[], {
        x: "x",
        y: "value",
        fx: "panel",
        marker: "dot",
        ...(several ? { stroke: "series" } : {}),
      }),
    ],
  };
}

/**
 * `book.metric`'s value and caption for KID(a) − KID(b) over paired subsets
 * (`kernelDistanceDifference`): the difference × 10³ with its spread, and what it says.
 */
export function kidComparison(
  a: string,
  b: string,
  d: KernelDistanceDifference,
): { value: string; caption: string } {
  const verdict = Math.abs(d.mean) <= 2 * d.std
    ? "within twice its spread: this run does not tell the two apart"
    : `beyond twice its spread: ${d.mean > 0 ? b : a} is the better by KID`;
  return {
    value: `${(1000 * d.mean).toFixed(1)} ± ${(1000 * d.std).toFixed(1)}`,
    caption: `KID × 10³ of ${a} minus that of ${b}, over ${d.subsets} paired subsets of ` +
      `${d.subsetSize} samples each; ${verdict}`,
  };
}
