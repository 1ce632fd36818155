/**
 * Heat-maps of large grids for Observable Plot, rendered without a canvas.
 *
 * Plot's `raster` mark and its continuous colour legends paint on a `<canvas>`, which the
 * headless document used under Deno (linkedom) does not have; a `cell` mark per value makes an
 * SVG of megabytes for a 1000 × 1000 grid. Here the grid becomes one PNG image (one pixel per
 * value, drawn with crisp pixels) inside the plot's frame, with a colour bar in the top margin:
 *
 *   pixel(r, c) = colour(values[r · columns + c]),  colour = Plot.scale({ color: … }).apply.
 *
 * ```ts
 * await book.figure({
 *   marginTop: 40,
 *   marks: heatmap(values, { rows: 32, columns: 1000, x: [0, 1000], y: [0, 32], domain: [-1, 1] }),
 * });
 * ```
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { encodePng, type RgbaImage } from "../core/images.ts";

/** Options of {@link heatmap} and {@link heatmapImage}. */
export interface HeatmapOptions {
  /** Number of rows of the grid. */
  rows: number;
  /** Number of columns of the grid. */
  columns: number;
  /** Data extent of the columns: the left edge of column 0 and the right edge of the last. */
  x: [number, number];
  /** Data extent of the rows: the edge of row 0 and the far edge of the last row. */
  y: [number, number];
  /** Values mapped to the ends of the colour scheme (and the middle, for a diverging one). */
  domain: [number, number];
  /** A Plot colour scheme (default `rdbu` when the domain straddles 0, else `viridis`). */
  scheme?: Plot.ColorScheme;
  /** Label printed beside the colour bar. */
  label?: string;
  /** Draw the colour bar in the top margin (default true; needs marginTop ≥ 36). */
  colourBar?: boolean;
}

const STEPS = 1024;

function colourScale(options: HeatmapOptions): (v: number) => [number, number, number] {
  const [lo, hi] = options.domain;
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo)) {
    throw new Error(
      `heatmap: domain [${lo}, ${hi}] must be two finite numbers, the first smaller.`,
    );
  }
  const diverging = lo < 0 && hi > 0;
  const scale = Plot.scale({
    color: {
      type: diverging ? "diverging" : "linear",
      scheme: options.scheme ?? (diverging ? "rdbu" : "viridis"),
      domain: [lo, hi],
      clamp: true,
    },
  });
  // A table of STEPS + 1 colours (the scale returns CSS strings, parsed once per entry); with
  // STEPS even, the middle of the domain is an entry of its own.
  const table: [number, number, number][] = [];
  for (let k = 0; k <= STEPS; k++) {
    const css = String(scale.apply(lo + (hi - lo) * k / STEPS));
    const m = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(css) ??
      /#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(css);
    if (!m) {
      throw new Error(`heatmap: cannot read the colour "${css}" of scheme ${options.scheme}.`);
    }
    const base = m[0].startsWith("#") ? 16 : 10;
    table.push([parseInt(m[1], base), parseInt(m[2], base), parseInt(m[3], base)]);
  }
  return (v) => {
    const k = Math.round((v - lo) / (hi - lo) * STEPS);
    return table[Number.isNaN(k) ? 0 : Math.min(STEPS, Math.max(0, k))];
  };
}

/**
 * The grid as an RGBA image, row 0 on top: pixel (r, c) is the colour of
 * `values[r · columns + c]` on the scheme over `domain` (values outside are clamped).
 */
export function heatmapImage(values: ArrayLike<number>, options: HeatmapOptions): RgbaImage {
  const { rows, columns } = options;
  if (!(Number.isInteger(rows) && Number.isInteger(columns) && rows > 0 && columns > 0)) {
    throw new Error(`heatmap: rows and columns must be positive integers, got ${rows}×${columns}.`);
  }
  if (values.length !== rows * columns) {
    throw new Error(
      `heatmap: ${values.length} values do not fill a ${rows}×${columns} grid ` +
        `(${rows * columns} needed); pass them row by row.`,
    );
  }
  const colour = colourScale(options);
  const data = new Uint8Array(rows * columns * 4);
  for (let i = 0; i < rows * columns; i++) {
    const [r, g, b] = colour(values[i]);
    data[4 * i] = r;
    data[4 * i + 1] = g;
    data[4 * i + 2] = b;
    data[4 * i + 3] = 255;
  }
  return { width: columns, height: rows, data };
}

function flipRows(image: RgbaImage): RgbaImage {
  const stride = image.width * 4;
  const data = new Uint8Array(image.data.length);
  for (let r = 0; r < image.height; r++) {
    data.set(image.data.subarray(r * stride, (r + 1) * stride), (image.height - 1 - r) * stride);
  }
  return { ...image, data };
}

function dataUrl(image: RgbaImage): string {
  const bytes = encodePng(image);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return `data:image/png;base64,${btoa(binary)}`;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Plot marks drawing the grid as one crisp image over the data extent `x` × `y` (so the x and
 * y scales and axes are ordinary linear scales), plus an optional colour bar in the top margin.
 * Row 0 is drawn at `y[0]`: on Plot's default upward y axis, at the bottom.
 */
export function heatmap(values: ArrayLike<number>, options: HeatmapOptions): Plot.Markish[] {
  const image = heatmapImage(values, options);
  const bar = heatmapImage(
    Array.from(
      { length: 256 },
      (_, k) => options.domain[0] + (options.domain[1] - options.domain[0]) * k / 255,
    ),
    { ...options, rows: 1, columns: 256 },
  );
  const [x0, x1] = options.x;
  const [y0, y1] = options.y;
  const draw: Plot.RenderFunction = (_index, scales, _values, dimensions, context) => {
    const sx = scales.x;
    const sy = scales.y;
    if (!sx || !sy) throw new Error("heatmap: the plot needs x and y scales.");
    const doc = context.document;
    const g = doc.createElementNS(SVG_NS, "g");
    const left = Math.min(sx(x0)!, sx(x1)!);
    const right = Math.max(sx(x0)!, sx(x1)!);
    const top = Math.min(sy(y0)!, sy(y1)!);
    const bottom = Math.max(sy(y0)!, sy(y1)!);
    // Row 0 belongs at y0: flip the image when y0 is drawn below y1 (Plot's upward y axis).
    const flipped = sy(y0)! > sy(y1)! ? flipRows(image) : image;
    const mirrored = sx(x0)! > sx(x1)!;
    const img = doc.createElementNS(SVG_NS, "image");
    img.setAttribute("x", String(left));
    img.setAttribute("y", String(top));
    img.setAttribute("width", String(right - left));
    img.setAttribute("height", String(bottom - top));
    img.setAttribute("preserveAspectRatio", "none");
    img.setAttribute("image-rendering", "pixelated");
    img.setAttribute("style", "image-rendering: pixelated");
    if (mirrored) img.setAttribute("transform", `translate(${left + right} 0) scale(-1 1)`);
    img.setAttribute("href", dataUrl(flipped));
    g.appendChild(img);
    if (options.colourBar ?? true) {
      const width = Math.min(
        240,
        (dimensions.width - dimensions.marginLeft - dimensions.marginRight) / 2,
      );
      const bx = dimensions.width - dimensions.marginRight - width;
      const by = 6;
      const strip = doc.createElementNS(SVG_NS, "image");
      strip.setAttribute("x", String(bx));
      strip.setAttribute("y", String(by));
      strip.setAttribute("width", String(width));
      strip.setAttribute("height", "10");
      strip.setAttribute("preserveAspectRatio", "none");
      strip.setAttribute("href", dataUrl(bar));
      g.appendChild(strip);
      const [lo, hi] = options.domain;
      const ticks = lo < 0 && hi > 0 ? [lo, 0, hi] : [lo, (lo + hi) / 2, hi];
      for (const v of ticks) {
        const t = doc.createElementNS(SVG_NS, "text");
        t.setAttribute("x", String(bx + (v - lo) / (hi - lo) * width));
        t.setAttribute("y", String(by + 22));
        t.setAttribute("text-anchor", v === lo ? "start" : v === hi ? "end" : "middle");
        t.setAttribute("font-size", "10");
        t.setAttribute("fill", "currentColor");
        t.textContent = String(Number(v.toPrecision(3))).replace("-", "−");
        g.appendChild(t);
      }
      if (options.label) {
        const t = doc.createElementNS(SVG_NS, "text");
        t.setAttribute("x", String(bx - 8));
        t.setAttribute("y", String(by + 9));
        t.setAttribute("text-anchor", "end");
        t.setAttribute("font-size", "11");
        t.setAttribute("fill", "currentColor");
        t.textContent = options.label;
        g.appendChild(t);
      }
    }
    return g as unknown as SVGElement;
  };
  // Invisible corner points give the x and y scales their domains.
  const corners = Plot.dot([[x0, y0], [x1, y1]], { x: (d) => d[0], y: (d) => d[1], r: 0 });
  return [corners, draw];
}
