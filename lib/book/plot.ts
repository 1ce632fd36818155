/**
 * Observable Plot figures as standalone markup, rendered without a browser.
 *
 * Plot draws into a DOM document; under Deno that document comes from linkedom. Text, axes
 * and grid lines use `currentColor` and the page's font stack, so a figure inlined in the
 * book follows its light or dark theme. (An SVG shown through `<img>` cannot inherit a
 * colour and draws in black.)
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";

/** The font stack figures use: the reader's system interface font. */
export const FONT_STACK =
  'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

const SVG_NS = "http://www.w3.org/2000/svg";
const XLINK_NS = "http://www.w3.org/1999/xlink";

/**
 * Renders a Plot specification to markup.
 *
 * - Without a legend, title, subtitle or caption Plot makes a bare chart, and this returns a
 *   standalone `<svg xmlns="http://www.w3.org/2000/svg" …>`, fit to be saved as an .svg file.
 * - With any of them Plot makes an HTML `<figure>` (headings, legend and chart), and this
 *   returns the figure's outerHTML, for inlining into a page; every `<svg>` in it carries
 *   `xmlns` too.
 *
 * The `style` option (string or object) becomes the root element's inline style. Without it,
 * text inherits the page colour (`currentColor`), the font is {@link FONT_STACK}, the chart
 * has no background, and Plot's own backgrounds (tips, halos) use the page's `Canvas` colour.
 */
export function plotToSvg(options: Plot.PlotOptions): string {
  const { document } = parseHTML("<!DOCTYPE html><html><head></head><body></body></html>");
  // linkedom's style property is read-only, which Plot's own `style` handling trips on:
  // render without it and set the inline style afterwards.
  const { style, ...rest } = options;
  const root = Plot.plot({
    ...plainLogTicks(rest),
    document: document as unknown as Document,
  }) as unknown as Element;
  const svgs = root.tagName.toLowerCase() === "svg"
    ? [root, ...root.querySelectorAll("svg")]
    : [...root.querySelectorAll("svg")];
  for (const svg of svgs) {
    svg.setAttribute("xmlns", SVG_NS);
    svg.setAttribute("xmlns:xlink", XLINK_NS);
    if (style === undefined && svg.getAttribute("font-family")) {
      svg.setAttribute("font-family", FONT_STACK);
    }
  }
  const own = root.getAttribute("style");
  const css = style === undefined || style === null ? DEFAULT_STYLE : cssText(style);
  root.setAttribute("style", own ? `${own.replace(/;?\s*$/, ";")} ${css}` : css);
  return root.outerHTML;
}

/**
 * Log axes label their ticks as plain numbers (0.5, 0.001, 1e-05) unless a `tickFormat` is
 * given: Plot's default SI prefixes write 0.5 as "500m", which reads as metres.
 */
function plainLogTicks(options: Plot.PlotOptions): Plot.PlotOptions {
  const out: Plot.PlotOptions = { ...options };
  for (const key of ["x", "y", "fx", "fy"] as const) {
    const scale = out[key];
    if (scale?.type === "log" && scale.tickFormat === undefined) {
      out[key] = { ...scale, tickFormat: "~g" };
    }
  }
  return out;
}

const DEFAULT_STYLE = "color: inherit; background: transparent; " +
  `font-family: ${FONT_STACK.replaceAll('"', "'")}; --plot-background: Canvas;`;

function cssText(style: string | Partial<CSSStyleDeclaration>): string {
  if (typeof style === "string") return style;
  return Object.entries(style)
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) =>
      `${
        key.startsWith("--") ? key : key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
      }: ${value};`
    )
    .join(" ");
}
