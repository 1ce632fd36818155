import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DOMParser } from "linkedom";
import { selectBackend } from "../lib/runtime/backend.ts";
import {
  architectureDiagram,
  blockLabels,
  type DiagramLayout,
  type DiagramNode,
  layoutArchitecture,
} from "../lib/book/diagram.ts";
import { EMOJI16_UNET } from "../lib/zoo/specs.ts";
import { type Architecture, contextUnet, UNet, unetConfig } from "../lib/core/models/mod.ts";

await selectBackend({ requested: "cpu", quiet: true });

/** The network chapter 4 trains. */
function chapterFourArchitecture(): Architecture {
  const model = new UNet(unetConfig(EMOJI16_UNET));
  const architecture = model.architecture();
  model.dispose();
  return architecture;
}

/** A deeper network: four levels, two blocks per level, attention at two resolutions. */
function deepArchitecture(): Architecture {
  const model = new UNet(unetConfig({
    imageSize: 16,
    baseChannels: 8,
    channelMultipliers: [1, 2, 2, 4],
    resBlocksPerLevel: 2,
    attentionResolutions: [8, 2],
    attentionHeads: 2,
    groups: 4,
  }));
  const architecture = model.architecture();
  model.dispose();
  return architecture;
}

function courseArchitecture(): Architecture {
  const model = contextUnet();
  const architecture = model.architecture();
  model.dispose();
  return architecture;
}

const node = (layout: DiagramLayout, id: string): DiagramNode => {
  const found = layout.nodes.find((n) => n.block.id === id);
  assert.ok(found, `no node for block ${id}`);
  return found;
};

const centreY = (n: DiagramNode) => n.y + n.height / 2;

function assertNoOverlaps(layout: DiagramLayout): void {
  const nodes = layout.nodes;
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i];
      const b = nodes[j];
      const apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y ||
        b.y + b.height <= a.y;
      assert.ok(apart, `${a.block.id} and ${b.block.id} overlap`);
    }
  }
}

function assertUShape(architecture: Architecture): DiagramLayout {
  const layout = layoutArchitecture(architecture);
  // Every block is drawn exactly once.
  assert.deepEqual(
    layout.nodes.map((n) => n.block.id).sort(),
    architecture.blocks.map((b) => b.id).sort(),
  );
  assertNoOverlaps(layout);
  const column = (c: DiagramNode["column"]) => layout.nodes.filter((n) => n.column === c);
  const encoderX = new Set(column("encoder").map((n) => n.x));
  const decoderX = new Set(column("decoder").map((n) => n.x));
  assert.equal(encoderX.size, 1, "the encoder is one column");
  assert.equal(decoderX.size, 1, "the decoder is one column");
  const [left] = encoderX;
  const [right] = decoderX;
  assert.ok(left < right, "encoder on the left, decoder on the right");
  for (const n of column("middle")) {
    assert.ok(n.x > left && n.x + n.width < right + n.width, `${n.block.id} sits between`);
    assert.ok(n.y > Math.max(...layout.bands.map((b) => b.y)), "the middle row is at the bottom");
  }
  for (const n of column("header")) assert.equal(n.block.kind, "embedding");
  // Bands: resolutions fall from top to bottom, without gaps or overlaps.
  for (let k = 1; k < layout.bands.length; k++) {
    assert.ok(layout.bands[k].resolution < layout.bands[k - 1].resolution);
    assert.equal(layout.bands[k].y, layout.bands[k - 1].y + layout.bands[k - 1].height);
  }
  for (const n of [...column("encoder"), ...column("decoder")]) {
    const band = layout.bands[n.band];
    assert.ok(n.y >= band.y && n.y + n.height <= band.y + band.height, `${n.block.id} in band`);
    if (n.column === "encoder") assert.equal(band.resolution, n.block.resolution);
  }
  // The main path runs down the encoder and up the decoder.
  for (const e of layout.edges.filter((e) => e.kind === "main")) {
    const [x0, y0] = e.points[0];
    const [x1, y1] = e.points[e.points.length - 1];
    const from = node(layout, e.from).column;
    const to = node(layout, e.to).column;
    if (from === "encoder" && to === "encoder") assert.ok(y1 > y0 && x1 === x0, e.from);
    if (from === "decoder" && to === "decoder") assert.ok(y1 < y0 && x1 === x0, e.from);
  }
  return layout;
}

describe("layoutArchitecture", () => {
  it("draws chapter 4's U-Net as a U with every skip straight across its band", () => {
    const architecture = chapterFourArchitecture();
    const layout = assertUShape(architecture);
    assert.deepEqual(layout.bands.map((b) => b.resolution), [16, 8, 4]);
    assert.deepEqual(layout.bands.map((b) => b.channels), [32, 64, 64]);
    const skips = layout.edges.filter((e) => e.kind === "skip");
    assert.equal(skips.length, 6, "six saved encoder outputs");
    for (const e of skips) {
      const from = node(layout, e.from);
      const to = node(layout, e.to);
      assert.equal(from.column, "encoder");
      assert.equal(to.column, "decoder");
      assert.equal(centreY(from), centreY(to), `${e.from} → ${e.to} is horizontal`);
      assert.equal(e.points.length, 2);
      assert.equal(e.label, `${from.block.outChannels} ch`);
    }
    // Input top left, output top right; the middle row holds the three middle blocks in order.
    assert.equal(node(layout, "input").y, node(layout, "output.conv").y);
    assert.deepEqual(
      layout.nodes.filter((n) => n.column === "middle").map((n) => n.block.id),
      ["mid.res.0", "mid.attn", "mid.res.1"],
    );
    // The upsampler reads 4×4 maps and sits in the 4×4 band; the downsampler writes 8×8 maps.
    assert.equal(layout.bands[node(layout, "up.2.upsample").band].resolution, 4);
    assert.equal(layout.bands[node(layout, "down.0.downsample").band].resolution, 8);
    // Every residual block, and nothing else, carries the time badge.
    for (const n of layout.nodes) {
      const expected = n.block.kind === "resblock" || n.block.kind === "embedding" ? ["t"] : [];
      assert.deepEqual(n.badges, expected, n.block.id);
    }
    assert.equal(layout.nodes.filter((n) => n.block.kind === "attention").length, 4);
  });

  it("keeps skips horizontal in a deeper network with two blocks per level", () => {
    const layout = assertUShape(deepArchitecture());
    assert.deepEqual(layout.bands.map((b) => b.resolution), [16, 8, 4, 2]);
    const skips = layout.edges.filter((e) => e.kind === "skip");
    assert.equal(skips.length, 1 + 4 * 2 + 3, "input conv, every block, every downsampler");
    for (const e of skips) {
      assert.equal(centreY(node(layout, e.from)), centreY(node(layout, e.to)), e.from);
    }
  });

  it("lays out the course's ContextUnet with its skips and both embeddings", () => {
    const layout = assertUShape(courseArchitecture());
    for (const e of layout.edges.filter((e) => e.kind === "skip")) {
      assert.equal(centreY(node(layout, e.from)), centreY(node(layout, e.to)), e.from);
    }
    assert.deepEqual(node(layout, "up1").badges, ["t", "c"]);
    assert.deepEqual(node(layout, "up2").badges, ["t", "c"]);
    assert.deepEqual(node(layout, "timeEmbed").badges, ["t"]);
    assert.deepEqual(node(layout, "contextEmbed").badges, ["c"]);
    assert.equal(node(layout, "out").label, "Output 64+64→3");
  });

  it("labels blocks with their channels, skip channels written apart", () => {
    const labels = blockLabels(chapterFourArchitecture());
    assert.equal(labels.get("input.conv"), "Conv 3→32");
    assert.equal(labels.get("down.1.res.0"), "ResBlock 32→64");
    assert.equal(labels.get("mid.res.0"), "ResBlock 64");
    assert.equal(labels.get("up.1.res.1"), "ResBlock 64+32→64");
    assert.equal(labels.get("up.0.res.0"), "ResBlock 64+32→32");
    assert.equal(labels.get("down.0.downsample"), "↓ Downsample 32");
    assert.equal(labels.get("time"), "Time embedding 32→128");
  });

  it("rejects edges to unknown blocks and widths too narrow for two columns", () => {
    const architecture = chapterFourArchitecture();
    const broken = {
      ...architecture,
      edges: [...architecture.edges, { from: "nowhere", to: "input", kind: "main" as const }],
    };
    assert.throws(() => layoutArchitecture(broken), /nowhere → input names a block/);
    assert.throws(() => layoutArchitecture(architecture, { width: 300 }), /too narrow.*at least/);
    assert.throws(
      () => layoutArchitecture({ ...architecture, blocks: [], edges: [] }),
      /no blocks/,
    );
  });
});

describe("architectureDiagram", () => {
  it("writes a standalone SVG with one box per block and one red arrow per skip", () => {
    const architecture = chapterFourArchitecture();
    const markup = architectureDiagram(architecture, { idPrefix: "net & 1" });
    const svg = new DOMParser().parseFromString(markup, "image/svg+xml").documentElement;
    assert.equal(svg.tagName.toLowerCase(), "svg");
    assert.equal(svg.getAttribute("xmlns"), "http://www.w3.org/2000/svg");
    assert.equal(svg.getAttribute("fill"), "currentColor");
    const [, , width, height] = (svg.getAttribute("viewBox") ?? "").split(" ").map(Number);
    assert.equal(width, 760);
    assert.ok(height > 300 && height < 800, `height ${height}`);
    assert.equal(svg.querySelectorAll("g.block").length, architecture.blocks.length);
    assert.equal(svg.querySelectorAll("g.block.attention").length, 4);
    assert.equal(
      svg.querySelectorAll("path.edge.skip").length,
      architecture.edges.filter((e) => e.kind === "skip").length,
    );
    // Ids are prefixed, sanitised and unique, and every marker reference resolves.
    const ids = [...svg.querySelectorAll("[id]")].map((e) => e.getAttribute("id")!);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) assert.match(id, /^net---1-/);
    for (const path of svg.querySelectorAll("path[marker-end]")) {
      const ref = /url\(#(.+)\)/.exec(path.getAttribute("marker-end")!)![1];
      assert.ok(ids.includes(ref), `marker ${ref} exists`);
    }
    // Lines and outlines follow the theme's text colour.
    const outlines = [...svg.querySelectorAll("g.block rect")].map((r) => r.getAttribute("stroke"));
    assert.ok(outlines.every((s) => s === "currentColor"));
    assert.match(svg.querySelector("title")!.textContent!, /1,113,955 parameters/);
  });

  it("escapes text", () => {
    const markup = architectureDiagram(chapterFourArchitecture(), { title: "a < b & c" });
    assert.match(markup, /<title id="arch-title">a &lt; b &amp; c<\/title>/);
  });
});
