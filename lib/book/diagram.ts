/**
 * The U-Net's architecture diagram, drawn as SVG from the network's own description
 * ({@link Architecture}, from `model.architecture()`), never by hand.
 *
 * The layout is the "U" of Ronneberger et al. (2015): one horizontal band per resolution,
 * largest at the top; the encoder runs down the left column, the middle blocks sit in a row
 * under the lowest band, and the decoder climbs the right column. Skip connections run straight
 * across a band, from the encoder block whose output is saved to the decoder block that
 * concatenates it. A block sits in the band of the resolution it works at: an encoder block by
 * its output, a decoder block by its input (so a downsampler opens the band below and an
 * upsampler closes the band it reads from, and every skip stays inside one band). Blocks that
 * receive the time (or context) embedding carry a small "t" (or "c") badge instead of one line
 * each from the embedding.
 *
 * Lines and text use `currentColor` and block kinds are told apart by a few translucent fills,
 * so the figure reads in light and dark themes when inlined in a page.
 *
 * ```ts
 * const svg = architectureDiagram(model.architecture(), { idPrefix: "unet16" });
 * await book.figure(svg, { caption: "The network" });
 * ```
 *
 * @module
 */

import type { Architecture, ArchitectureBlock } from "../core/models/mod.ts";
import { FONT_STACK } from "./plot.ts";

/** Where a node is drawn. */
export type DiagramColumn = "header" | "encoder" | "middle" | "decoder";

/** A block placed on the diagram (x, y: top-left corner of its box). */
export interface DiagramNode {
  /** The block it draws. */
  block: ArchitectureBlock;
  /** Column: embeddings in the header, then encoder, middle row, decoder. */
  column: DiagramColumn;
  /** Index into {@link DiagramLayout.bands}; −1 for the header and the middle row. */
  band: number;
  /** Left edge. */
  x: number;
  /** Top edge. */
  y: number;
  /** Box width. */
  width: number;
  /** Box height. */
  height: number;
  /** Text in the box, e.g. `ResBlock 64+32→64`. */
  label: string;
  /** Embedding badges, e.g. `["t"]` for a block the time embedding is added to. */
  badges: string[];
}

/** One resolution band. */
export interface DiagramBand {
  /** Side of the feature maps in this band, in pixels. */
  resolution: number;
  /** Channels of the level at this resolution, when the architecture lists it. */
  channels: number | null;
  /** Top edge. */
  y: number;
  /** Height. */
  height: number;
}

/** A drawn connection: a polyline from `points[0]` to the last point (where the arrow is). */
export interface DiagramEdge {
  /** Source block id. */
  from: string;
  /** Target block id. */
  to: string;
  /** The main path, or a skip connection across the U. */
  kind: "main" | "skip";
  /** Polyline vertices. */
  points: [number, number][];
  /** Label drawn on the line (skip edges: the channels carried across). */
  label?: string;
}

/** Where everything goes; {@link architectureDiagram} only paints it. */
export interface DiagramLayout {
  /** Drawing width. */
  width: number;
  /** Drawing height. */
  height: number;
  /** Resolution bands, top (largest) to bottom. */
  bands: DiagramBand[];
  /** Every block, once: embeddings in the header, the others in their column. */
  nodes: DiagramNode[];
  /** Main-path and skip edges (embedding edges become badges). */
  edges: DiagramEdge[];
  /** Vertical centre of the middle row (NaN when the network has no middle blocks). */
  middleY: number;
  /** Top of the legend row. */
  legendY: number;
  /** Horizontal centres of the encoder and decoder columns. */
  columnCentres: { encoder: number; decoder: number };
}

/** Options of {@link layoutArchitecture} and {@link architectureDiagram}. */
export interface DiagramOptions {
  /** Drawing width in pixels (default 760, the book's text measure). */
  width?: number;
  /** Prefix of the SVG's element ids, unique per page (default `arch`). */
  idPrefix?: string;
  /** Accessible title of the figure (default: a sentence naming the network). */
  title?: string;
}

/** Translucent fill of each block kind (the outline and text use `currentColor`). */
export const KIND_COLOURS: Readonly<Record<ArchitectureBlock["kind"], string>> = {
  input: "currentColor",
  conv: "currentColor",
  output: "currentColor",
  concat: "currentColor",
  resblock: "#4e79a7",
  attention: "#f28e2b",
  downsample: "#59a14f",
  upsample: "#b07aa1",
  embedding: "#edc948",
};

/** Colour of skip connections. */
export const SKIP_COLOUR = "#e15759";

const KIND_NAMES: Readonly<Record<ArchitectureBlock["kind"], string>> = {
  input: "input",
  conv: "convolution",
  output: "output",
  concat: "concatenation",
  resblock: "residual block",
  attention: "self-attention",
  downsample: "downsample",
  upsample: "upsample",
  embedding: "embedding MLP",
};

const ROW = 32;
const BOX = 22;
const BAND_PAD = 6;
const LABEL_AREA = 64;
const MARGIN = 8;
const MIN_COLUMN_WIDTH = 150;

/** Width of a label at the diagram's 11.5 px font, estimated (≈ 0.6 em a character). */
function textWidth(text: string): number {
  return 6.9 * [...text].length;
}

function arrow(a: number, b: number): string {
  return a === b ? `${a}` : `${a}→${b}`;
}

function badgeOf(embedding: ArchitectureBlock): string {
  if (embedding.id.startsWith("time")) return "t";
  if (embedding.id.startsWith("context")) return "c";
  return embedding.id.slice(0, 1).toLowerCase();
}

function labelOf(block: ArchitectureBlock, skipChannels: number): string {
  const { inChannels: i, outChannels: o } = block;
  switch (block.kind) {
    case "input":
      return `Input x_t · ${i} ch`;
    case "conv":
      return `Conv ${arrow(i, o)}`;
    case "resblock":
      return skipChannels > 0
        ? `ResBlock ${i - skipChannels}+${skipChannels}→${o}`
        : `ResBlock ${arrow(i, o)}`;
    case "attention":
      return `Self-attention ${o}`;
    case "downsample":
      return `↓ Downsample ${arrow(i, o)}`;
    case "upsample":
      return skipChannels > 0
        ? `↑ Upsample ${i - skipChannels}+${skipChannels}→${o}`
        : `↑ Upsample ${arrow(i, o)}`;
    case "output":
      return skipChannels > 0
        ? `Output ${i - skipChannels}+${skipChannels}→${o}`
        : `Output ${arrow(i, o)}`;
    case "embedding":
      return `${block.id.startsWith("context") ? "Context" : "Time"} embedding ${arrow(i, o)}`;
    case "concat":
      return `Concat ${o}`;
  }
}

/** Channels each block receives through skip connections (0 for most blocks). */
function skipChannelsInto(architecture: Architecture): Map<string, number> {
  const byId = new Map(architecture.blocks.map((b) => [b.id, b]));
  const skipInto = new Map<string, number>();
  for (const e of architecture.edges) {
    const from = byId.get(e.from);
    if (e.kind === "skip" && from) {
      skipInto.set(e.to, (skipInto.get(e.to) ?? 0) + from.outChannels);
    }
  }
  return skipInto;
}

/**
 * The text each block shows on the diagram, by block id: kind and channels, with the channels
 * that arrive through a skip connection written apart, e.g. `ResBlock 64+32→64` for a block that
 * concatenates 32 skip channels to its 64 input channels.
 */
export function blockLabels(architecture: Architecture): Map<string, string> {
  const skipInto = skipChannelsInto(architecture);
  return new Map(architecture.blocks.map((b) => [b.id, labelOf(b, skipInto.get(b.id) ?? 0)]));
}

/**
 * Places every block of an architecture: bands by resolution, encoder left, middle row at the
 * bottom, decoder right, skip sources and targets on the same row wherever their order allows.
 */
export function layoutArchitecture(
  architecture: Architecture,
  options: DiagramOptions = {},
): DiagramLayout {
  const width = options.width ?? 760;
  const blocks = architecture.blocks;
  if (blocks.length === 0) {
    throw new Error(
      "layoutArchitecture: the architecture has no blocks; pass model.architecture().",
    );
  }
  const byId = new Map(blocks.map((b) => [b.id, b]));
  for (const e of architecture.edges) {
    if (!byId.has(e.from) || !byId.has(e.to)) {
      throw new Error(
        `layoutArchitecture: edge ${e.from} → ${e.to} names a block that is not in the ` +
          `architecture; pass the unchanged result of model.architecture().`,
      );
    }
  }
  const predecessor = new Map<string, string>();
  for (const e of architecture.edges) if (e.kind === "main") predecessor.set(e.to, e.from);
  const skipInto = skipChannelsInto(architecture);
  const badges = new Map<string, string[]>();
  for (const e of architecture.edges) {
    if (e.kind !== "embedding") continue;
    const list = badges.get(e.to) ?? [];
    const badge = badgeOf(byId.get(e.from)!);
    if (!list.includes(badge)) list.push(badge);
    badges.set(e.to, list);
  }

  const embeddings = blocks.filter((b) => b.path === "embedding");
  const encoder = blocks.filter((b) => b.path === "stem" || b.path === "encoder");
  const middle = blocks.filter((b) => b.path === "middle");
  const decoder = blocks.filter((b) => b.path === "decoder" || b.path === "head");
  const bandResolution = (b: ArchitectureBlock) => {
    if (b.path === "decoder" || b.path === "head") {
      const from = predecessor.get(b.id);
      return from ? byId.get(from)!.resolution : b.resolution;
    }
    return b.resolution;
  };
  const resolutions = [...new Set([...encoder, ...decoder].map(bandResolution))]
    .sort((a, b) => b - a);

  // Columns as wide as their longest label (and its badges) needs.
  const boxWidth = (b: ArchitectureBlock) =>
    textWidth(labelOf(b, skipInto.get(b.id) ?? 0)) + 20 +
    15 * (b.path === "embedding" ? 1 : badges.get(b.id)?.length ?? 0);
  const columnWidth = Math.max(MIN_COLUMN_WIDTH, ...[...encoder, ...decoder].map(boxWidth));
  const leftX = LABEL_AREA + MARGIN;
  const rightX = width - MARGIN - columnWidth;
  if (rightX - leftX < columnWidth + 100) {
    throw new Error(
      `layoutArchitecture: width ${width} is too narrow for two columns of blocks; ` +
        `use at least ${Math.ceil(2 * columnWidth + LABEL_AREA + 2 * MARGIN + 100)}.`,
    );
  }
  const nodes: DiagramNode[] = [];
  const nodeOf = new Map<string, DiagramNode>();
  const place = (
    block: ArchitectureBlock,
    column: DiagramColumn,
    band: number,
    x: number,
    rowTop: number,
    boxWidth: number,
  ) => {
    const node: DiagramNode = {
      block,
      column,
      band,
      x,
      y: rowTop + (ROW - BOX) / 2,
      width: boxWidth,
      height: BOX,
      label: labelOf(block, skipInto.get(block.id) ?? 0),
      badges: block.path === "embedding" ? [badgeOf(block)] : badges.get(block.id) ?? [],
    };
    nodes.push(node);
    nodeOf.set(block.id, node);
  };

  let y = MARGIN;
  // Header: column titles and the embedding MLPs, centred between the columns.
  const headerTop = y;
  if (embeddings.length > 0) {
    const widths = embeddings.map(boxWidth);
    const total = widths.reduce((a, b) => a + b, 0) + 8 * (embeddings.length - 1);
    let x = (leftX + columnWidth + rightX) / 2 - total / 2;
    embeddings.forEach((e, k) => {
      place(e, "header", -1, x, headerTop, widths[k]);
      x += widths[k] + 8;
    });
  }
  y += ROW + 4;

  const bands: DiagramBand[] = [];
  resolutions.forEach((resolution, band) => {
    const left = encoder.filter((b) => bandResolution(b) === resolution);
    const right = decoder.filter((b) => bandResolution(b) === resolution).reverse();
    // Skip pairs (i in left, j in right), kept where both orders agree so lines never cross.
    const pairs: [number, number][] = [];
    for (const e of architecture.edges) {
      if (e.kind !== "skip") continue;
      const i = left.findIndex((b) => b.id === e.from);
      const j = right.findIndex((b) => b.id === e.to);
      if (i >= 0 && j >= 0) pairs.push([i, j]);
    }
    pairs.sort((a, b) => a[0] - b[0]);
    const kept: [number, number][] = [];
    for (const p of pairs) if (kept.length === 0 || p[1] > kept[kept.length - 1][1]) kept.push(p);
    kept.push([left.length, right.length]);
    const rows: [ArchitectureBlock | null, ArchitectureBlock | null][] = [];
    let i = 0;
    let j = 0;
    for (const [pi, pj] of kept) {
      const gap = Math.max(pi - i, pj - j);
      for (let k = 0; k < gap; k++) {
        rows.push([i + k < pi ? left[i + k] : null, j + k < pj ? right[j + k] : null]);
      }
      if (pi < left.length || pj < right.length) rows.push([left[pi] ?? null, right[pj] ?? null]);
      i = pi + 1;
      j = pj + 1;
    }
    const top = y;
    rows.forEach(([l, r], k) => {
      const rowTop = top + BAND_PAD + k * ROW;
      if (l) place(l, "encoder", band, leftX, rowTop, columnWidth);
      if (r) place(r, "decoder", band, rightX, rowTop, columnWidth);
    });
    const height = rows.length * ROW + 2 * BAND_PAD;
    const level = architecture.levels.find((l) => l.resolution === resolution);
    bands.push({ resolution, channels: level ? level.channels : null, y: top, height });
    y += height;
  });

  // Middle row: between the two columns' centre lines, under the lowest band.
  let middleY = NaN;
  if (middle.length > 0) {
    y += 10;
    const from = leftX + columnWidth / 2 + 36;
    const to = rightX + columnWidth / 2 - 36;
    const gap = 14;
    const w = Math.min(columnWidth, (to - from - gap * (middle.length - 1)) / middle.length);
    const total = middle.length * w + gap * (middle.length - 1);
    let x = (from + to) / 2 - total / 2;
    for (const b of middle) {
      place(b, "middle", -1, x, y, w);
      x += w + gap;
    }
    middleY = y + ROW / 2;
    y += ROW;
  }
  const bottomY = y + 10;
  y += 20;
  const legendY = y;
  const height = legendY + ROW + MARGIN;

  // Edges.
  const cx = (n: DiagramNode) => n.x + n.width / 2;
  const cy = (n: DiagramNode) => n.y + n.height / 2;
  const edges: DiagramEdge[] = [];
  for (const e of architecture.edges) {
    if (e.kind === "embedding") continue;
    const a = nodeOf.get(e.from);
    const b = nodeOf.get(e.to);
    if (!a || !b) continue;
    let points: [number, number][];
    if (e.kind === "skip") {
      const x1 = a.x + a.width;
      const x2 = b.x;
      if (cy(a) === cy(b)) points = [[x1, cy(a)], [x2, cy(b)]];
      else {
        const xm = (x1 + x2) / 2;
        points = [[x1, cy(a)], [xm, cy(a)], [xm, cy(b)], [x2, cy(b)]];
      }
      edges.push({
        from: e.from,
        to: e.to,
        kind: "skip",
        points,
        label: `${a.block.outChannels} ch`,
      });
      continue;
    }
    const column = `${a.column}>${b.column}`;
    switch (column) {
      case "encoder>encoder":
        points = [[cx(a), a.y + a.height], [cx(b), b.y]];
        break;
      case "decoder>decoder":
        points = [[cx(a), a.y], [cx(b), b.y + b.height]];
        break;
      case "encoder>middle":
        points = [[cx(a), a.y + a.height], [cx(a), cy(b)], [b.x, cy(b)]];
        break;
      case "middle>middle":
        points = [[a.x + a.width, cy(a)], [b.x, cy(b)]];
        break;
      case "middle>decoder":
        points = [[a.x + a.width, cy(a)], [cx(b), cy(a)], [cx(b), b.y + b.height]];
        break;
      case "encoder>decoder":
        points = [[cx(a), a.y + a.height], [cx(a), bottomY], [cx(b), bottomY], [
          cx(b),
          b.y + b.height,
        ]];
        break;
      default:
        points = [[cx(a), cy(a)], [cx(b), cy(b)]];
    }
    edges.push({ from: e.from, to: e.to, kind: "main", points });
  }
  const columnCentres = { encoder: leftX + columnWidth / 2, decoder: rightX + columnWidth / 2 };
  return { width, height, bands, nodes, edges, middleY, legendY, columnCentres };
}

function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

const round = (v: number) => Math.round(v * 10) / 10;

/**
 * The architecture as a standalone SVG string (see the module comment for the layout).
 * Inline it in a page (e.g. with `book.figure`) so that `currentColor` follows the theme.
 */
export function architectureDiagram(
  architecture: Architecture,
  options: DiagramOptions = {},
): string {
  const layout = layoutArchitecture(architecture, options);
  const prefix = (options.idPrefix ?? "arch").replace(/[^A-Za-z0-9_-]/g, "-");
  const { width } = layout;
  const title = options.title ??
    `Architecture of the ${
        architecture.kind === "unet" ? "U-Net" : "course's ContextUnet"
      }: ${architecture.imageSize}×${architecture.imageSize} input, ` +
      `${architecture.parameterCount.toLocaleString("en-US")} parameters`;
  const out: string[] = [];
  const head = (height: number) => [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" ` +
    `height="${height}" role="img" aria-labelledby="${prefix}-title" ` +
    `font-family="${escapeXml(FONT_STACK)}" font-size="11.5" fill="currentColor" ` +
    `style="color: inherit; background: transparent; max-width: 100%; height: auto;">`,
    `<title id="${prefix}-title">${escapeXml(title)}</title>`,
    `<defs>`,
    `<marker id="${prefix}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" ` +
    `markerHeight="7" orient="auto-start-reverse"><path d="M0,1L9,5L0,9z" fill="currentColor"/></marker>`,
    `<marker id="${prefix}-skip" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" ` +
    `markerHeight="7" orient="auto-start-reverse"><path d="M0,1L9,5L0,9z" fill="${SKIP_COLOUR}"/></marker>`,
    `</defs>`,
  ];

  // Bands, with resolution and channels in the label area.
  layout.bands.forEach((band, k) => {
    out.push(
      `<rect class="band" x="0" y="${band.y}" width="${width}" height="${band.height}" ` +
        `fill="currentColor" fill-opacity="${k % 2 === 0 ? 0.045 : 0.02}"/>`,
      `<text x="${MARGIN}" y="${band.y + band.height / 2 - 3}" font-size="14" font-weight="600">` +
        `${band.resolution}×${band.resolution}</text>`,
    );
    if (band.channels !== null) {
      out.push(
        `<text x="${MARGIN}" y="${band.y + band.height / 2 + 12}" font-size="10.5" ` +
          `fill-opacity="0.7">${band.channels} ch</text>`,
      );
    }
  });
  const columnTitle = (x: number, text: string) =>
    out.push(
      `<text x="${x}" y="${MARGIN + ROW / 2}" dy="0.35em" text-anchor="middle" font-size="12" ` +
        `font-weight="600" fill-opacity="0.8">${text}</text>`,
    );
  columnTitle(layout.columnCentres.encoder, "encoder ↓");
  columnTitle(layout.columnCentres.decoder, "decoder ↑");
  if (Number.isFinite(layout.middleY)) {
    const sizes = [
      ...new Set(layout.nodes.filter((n) => n.column === "middle").map((n) => n.block.resolution)),
    ].map((r) => `${r}×${r}`).join(", ");
    out.push(
      `<text x="${MARGIN}" y="${layout.middleY - 3}" font-size="12" font-weight="600" ` +
        `fill-opacity="0.8">middle</text>`,
      `<text x="${MARGIN}" y="${layout.middleY + 10}" font-size="10.5" fill-opacity="0.7">` +
        `${sizes}</text>`,
    );
  }

  // Edges under the boxes.
  for (const e of layout.edges) {
    const d = e.points.map(([x, y], i) => `${i === 0 ? "M" : "L"}${round(x)},${round(y)}`).join(
      "",
    );
    if (e.kind === "main") {
      out.push(
        `<path class="edge main" d="${d}" fill="none" stroke="currentColor" stroke-opacity="0.7" ` +
          `stroke-width="1.3" marker-end="url(#${prefix}-arrow)"/>`,
      );
    } else {
      out.push(
        `<path class="edge skip" d="${d}" fill="none" stroke="${SKIP_COLOUR}" stroke-width="1.5" ` +
          `marker-end="url(#${prefix}-skip)"/>`,
      );
      const [x1, y1] = e.points[0];
      const [x2] = e.points[e.points.length - 1];
      out.push(
        `<text x="${round((x1 + x2) / 2)}" y="${round(y1 - 4)}" text-anchor="middle" ` +
          `font-size="10" fill="${SKIP_COLOUR}">${escapeXml(e.label ?? "")}</text>`,
      );
    }
  }

  // Blocks.
  const badgeCircle = (x: number, y: number, letter: string) =>
    `<circle cx="${round(x)}" cy="${
      round(y)
    }" r="6.5" fill="${KIND_COLOURS.embedding}" fill-opacity="0.85" stroke="currentColor" stroke-opacity="0.5"/>` +
    `<text x="${round(x)}" y="${round(y)}" dy="0.35em" text-anchor="middle" font-size="9.5" ` +
    `font-style="italic" font-weight="600" fill="#222">${escapeXml(letter)}</text>`;
  for (const n of layout.nodes) {
    const colour = KIND_COLOURS[n.block.kind];
    const neutral = colour === "currentColor";
    const textX = n.x + (n.width - 15 * n.badges.length) / 2;
    out.push(
      `<g class="block ${n.block.kind}" data-id="${escapeXml(n.block.id)}">`,
      `<title>${
        escapeXml(
          `${n.block.id}: ${
            KIND_NAMES[n.block.kind]
          }, ${n.block.inChannels}→${n.block.outChannels} channels${
            n.block.resolution > 0 ? ` at ${n.block.resolution}×${n.block.resolution}` : ""
          }`,
        )
      }</title>`,
      `<rect x="${round(n.x)}" y="${round(n.y)}" width="${round(n.width)}" height="${n.height}" ` +
        `rx="4" fill="${colour}" fill-opacity="${neutral ? 0.07 : 0.28}" stroke="currentColor" ` +
        `stroke-opacity="0.55"/>`,
      `<text x="${round(textX)}" y="${round(n.y + n.height / 2)}" dy="0.35em" ` +
        `text-anchor="middle">${escapeXml(n.label)}</text>`,
      ...n.badges.map((letter, k) =>
        badgeCircle(n.x + n.width - 10 - 15 * (n.badges.length - 1 - k), n.y + n.height / 2, letter)
      ),
      `</g>`,
    );
  }

  // Legend: the kinds present, skip connections, embedding badges.
  const kinds = [...new Set(layout.nodes.map((n) => n.block.kind))].filter((k) =>
    KIND_COLOURS[k] !== "currentColor"
  );
  const items: string[] = [];
  let x = MARGIN;
  let y = layout.legendY;
  const advance = (w: number) => {
    if (x + w > width - MARGIN) {
      x = MARGIN;
      y += ROW - 8;
    }
    const at = x;
    x += w;
    return at;
  };
  for (const kind of kinds) {
    const name = KIND_NAMES[kind];
    const at = advance(26 + name.length * 6.4 + 14);
    items.push(
      `<rect x="${round(at)}" y="${y + 3}" width="20" height="13" rx="3" fill="${
        KIND_COLOURS[kind]
      }" fill-opacity="0.28" stroke="currentColor" stroke-opacity="0.55"/>`,
      `<text x="${round(at + 26)}" y="${y + 9.5}" dy="0.35em">${name}</text>`,
    );
  }
  {
    const at = advance(34 + 17 * 6.4 + 14);
    items.push(
      `<path d="M${round(at)},${y + 9.5}L${round(at + 26)},${y + 9.5}" stroke="${SKIP_COLOUR}" ` +
        `stroke-width="1.5" marker-end="url(#${prefix}-skip)"/>`,
      `<text x="${round(at + 32)}" y="${y + 9.5}" dy="0.35em">skip (concatenated)</text>`,
    );
  }
  const letters = [...new Set(layout.nodes.flatMap((n) => n.badges))];
  for (const letter of letters) {
    const text = letter === "t"
      ? "takes the time embedding"
      : letter === "c"
      ? "takes the context embedding"
      : `takes the ${letter} embedding`;
    const at = advance(20 + text.length * 6.4 + 14);
    items.push(badgeCircle(at + 7, y + 9.5, letter));
    items.push(`<text x="${round(at + 19)}" y="${y + 9.5}" dy="0.35em">${text}</text>`);
  }
  out.push(`<g class="legend" font-size="11">`, ...items, `</g>`, `</svg>`);
  const height = Math.max(layout.height, y + ROW + MARGIN);
  return [...head(height), ...out].join("\n");
}
