import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as Plot from "@observablehq/plot";
import { DOMParser } from "linkedom";
import { FONT_STACK, plotToSvg } from "../lib/book/plot.ts";

function parseSvg(markup: string) {
  return new DOMParser().parseFromString(markup, "image/svg+xml");
}

describe("plotToSvg", () => {
  it("renders a line chart as standalone SVG with a path", () => {
    const markup = plotToSvg({ marks: [Plot.lineY([1, 3, 2, 5])], width: 320, height: 200 });
    assert.match(markup, /^<svg /);
    const svg = parseSvg(markup).documentElement;
    assert.equal(svg.tagName.toLowerCase(), "svg");
    assert.equal(svg.getAttribute("xmlns"), "http://www.w3.org/2000/svg");
    assert.equal(svg.getAttribute("xmlns:xlink"), "http://www.w3.org/1999/xlink");
    assert.equal(svg.getAttribute("width"), "320");
    assert.equal(svg.getAttribute("viewBox"), "0 0 320 200");
    const line = svg.querySelector('g[aria-label="line"] path');
    assert.ok(line, "the line mark draws a <path>");
    assert.match(line.getAttribute("d") ?? "", /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+){3}$/);
  });

  it("labels log axes with plain numbers, not SI prefixes, unless told otherwise", () => {
    const data = [{ x: 1, y: 0.002 }, { x: 2, y: 0.5 }];
    const labels = (tickFormat?: string) =>
      [
        ...parseSvg(plotToSvg({
          y: { type: "log", ...(tickFormat ? { tickFormat } : {}) },
          marks: [Plot.dot(data, { x: "x", y: "y" })],
        })).documentElement.querySelectorAll('g[aria-label="y-axis tick label"] text'),
      ].map((t) => t.textContent);
    assert.ok(labels().includes("0.2"), `labels ${labels()}`);
    assert.ok(!labels().some((l) => /m$/.test(l ?? "")), `labels ${labels()}`);
    assert.ok(labels("~s").includes("200m"), "an explicit tickFormat wins");
  });

  it("draws text in currentColor and the book's font stack", () => {
    const svg = parseSvg(plotToSvg({ marks: [Plot.dot([[0, 0], [1, 1]])] })).documentElement;
    assert.equal(svg.getAttribute("fill"), "currentColor");
    assert.equal(svg.getAttribute("font-family"), FONT_STACK);
    assert.match(svg.getAttribute("style") ?? "", /color: inherit/);
    for (const axis of svg.querySelectorAll('g[aria-label$="-axis tick"]')) {
      assert.equal(axis.getAttribute("stroke"), "currentColor");
    }
  });

  it("returns a figure, every svg with xmlns, for a title and a legend", () => {
    const markup = plotToSvg({
      title: "Loss & steps",
      color: { legend: true },
      marks: [
        Plot.dot([{ x: 1, y: 2, c: "a" }, { x: 2, y: 1, c: "b" }], { x: "x", y: "y", fill: "c" }),
      ],
    });
    assert.match(markup, /^<figure /);
    assert.match(markup, /<h2>Loss &amp; steps<\/h2>/);
    const svgs = [...markup.matchAll(/<svg [^>]*>/g)].map((m) => m[0]);
    assert.ok(svgs.length >= 3, "two legend swatches and the chart");
    for (const tag of svgs) assert.match(tag, /xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  });

  it("applies a style given as a string or an object", () => {
    const fromString = parseSvg(plotToSvg({ style: "color: red;", marks: [Plot.lineY([1, 2])] }));
    assert.equal(fromString.documentElement.getAttribute("style"), "color: red;");
    const fromObject = parseSvg(
      plotToSvg({ style: { fontSize: "14px", color: "blue" }, marks: [Plot.lineY([1, 2])] }),
    );
    assert.equal(fromObject.documentElement.getAttribute("style"), "font-size: 14px; color: blue;");
  });
});
