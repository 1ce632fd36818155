import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as Plot from "@observablehq/plot";
import { DOMParser } from "linkedom";
import { heatmap, heatmapImage } from "../lib/book/heatmap.ts";
import { decodePng, type RgbaImage } from "../lib/core/images.ts";
import { plotToSvg } from "../lib/book/plot.ts";

const pixel = (image: RgbaImage, row: number, column: number) => {
  const i = 4 * (row * image.width + column);
  return [...image.data.subarray(i, i + 4)];
};

/** The colour Plot's own scale gives a value, as [r, g, b, 255]. */
function plotColour(value: number, scheme: Plot.ColorScheme, domain: [number, number]): number[] {
  const diverging = domain[0] < 0 && domain[1] > 0;
  const css = String(
    Plot.scale({ color: { type: diverging ? "diverging" : "linear", scheme, domain } })
      .apply(value),
  );
  const rgb = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(css);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3]), 255];
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(css);
  assert.ok(hex, `unexpected colour ${css}`);
  return [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16), 255];
}

describe("heatmapImage", () => {
  it("colours value (r, c) of a row-major grid at pixel (r, c), as Plot's scale does", () => {
    const values = [-1, 0, 1, 0.5, -0.5, 0];
    const image = heatmapImage(values, {
      rows: 2,
      columns: 3,
      x: [0, 3],
      y: [0, 2],
      domain: [-1, 1],
    });
    assert.equal(image.width, 3);
    assert.equal(image.height, 2);
    for (let r = 0; r < 2; r++) {
      for (let c = 0; c < 3; c++) {
        assert.deepEqual(pixel(image, r, c), plotColour(values[r * 3 + c], "rdbu", [-1, 1]));
      }
    }
  });

  it("clamps values outside the domain and uses viridis for one-signed domains", () => {
    const image = heatmapImage([-5, 0, 1, 9], {
      rows: 1,
      columns: 4,
      x: [0, 4],
      y: [0, 1],
      domain: [0, 1],
    });
    assert.deepEqual(pixel(image, 0, 0), pixel(image, 0, 1));
    assert.deepEqual(pixel(image, 0, 2), pixel(image, 0, 3));
    assert.deepEqual(pixel(image, 0, 1), plotColour(0, "viridis", [0, 1]));
    assert.deepEqual(pixel(image, 0, 2), plotColour(1, "viridis", [0, 1]));
  });

  it("says what is wrong with a grid or a domain", () => {
    const base = {
      rows: 2,
      columns: 2,
      x: [0, 1] as [number, number],
      y: [0, 1] as [number, number],
    };
    assert.throws(
      () => heatmapImage([1, 2, 3], { ...base, domain: [0, 1] }),
      /3 values do not fill a 2×2/,
    );
    assert.throws(() => heatmapImage([1, 2, 3, 4], { ...base, domain: [1, 1] }), /domain \[1, 1\]/);
    assert.throws(
      () => heatmapImage([1, 2, 3, 4], { ...base, rows: 0, domain: [0, 1] }),
      /positive integers/,
    );
  });
});

describe("heatmap", () => {
  function render(reverse: boolean) {
    // Row 0 is all −1 (red), row 1 all +1 (blue).
    const values = [-1, -1, -1, 1, 1, 1];
    const markup = plotToSvg({
      width: 300,
      height: 200,
      marginTop: 40,
      y: { reverse },
      marks: heatmap(values, {
        rows: 2,
        columns: 3,
        x: [0, 30],
        y: [0, 2],
        domain: [-1, 1],
        label: "v",
      }),
    });
    const svg = new DOMParser().parseFromString(markup, "image/svg+xml").documentElement;
    const [grid, bar] = [...svg.querySelectorAll("image")];
    const png = (element: Element) => {
      const href = element.getAttribute("href")!;
      assert.match(href, /^data:image\/png;base64,/);
      const binary = atob(href.slice(href.indexOf(",") + 1));
      return decodePng(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    };
    return { svg, grid, gridImage: png(grid), barImage: png(bar) };
  }

  it("draws the grid as one pixelated image spanning the data extent, row 0 at y[0]", () => {
    const red = plotColour(-1, "rdbu", [-1, 1]);
    const blue = plotColour(1, "rdbu", [-1, 1]);
    const upward = render(false);
    assert.equal(upward.grid.getAttribute("image-rendering"), "pixelated");
    assert.equal(upward.grid.getAttribute("preserveAspectRatio"), "none");
    assert.equal(upward.gridImage.width, 3);
    assert.equal(upward.gridImage.height, 2);
    // Plot's y axis points up: y = 0 (row 0) is at the bottom of the picture.
    assert.deepEqual(pixel(upward.gridImage, 0, 0), blue);
    assert.deepEqual(pixel(upward.gridImage, 1, 0), red);
    const downward = render(true);
    assert.deepEqual(pixel(downward.gridImage, 0, 0), red);
    // The image fills the frame: x from 0 to 30 is the whole x range.
    const x = Number(upward.grid.getAttribute("x"));
    const width = Number(upward.grid.getAttribute("width"));
    assert.ok(x > 0 && width > 200 && x + width <= 300, `image at ${x} + ${width}`);
  });

  it("adds a colour bar from the low to the high end of the domain, labelled", () => {
    const { svg, barImage } = render(false);
    assert.equal(barImage.width, 256);
    assert.deepEqual(pixel(barImage, 0, 0), plotColour(-1, "rdbu", [-1, 1]));
    assert.deepEqual(pixel(barImage, 0, 255), plotColour(1, "rdbu", [-1, 1]));
    const texts = [...svg.querySelectorAll("text")].map((t) => t.textContent);
    for (const label of ["−1", "0", "1", "v"]) assert.ok(texts.includes(label), label);
  });
});
