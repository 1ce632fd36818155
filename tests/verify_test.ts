import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodePng } from "../lib/core/images.ts";
import { compareImages, sameFigure, sameText } from "../scripts/book/verify.ts";

describe("comparing a rebuilt book with its frozen results", () => {
  it("takes numbers to their stated precision and text exactly", () => {
    assert.equal(sameText("loss 0.0512 → 0.0101", "loss 0.0513 → 0.0100"), null);
    assert.match(sameText("loss 0.0512", "loss 0.0522")!, /0.0512 became 0.0522/);
    assert.equal(sameText("M 12.5,3 L 400.2,7", "M 12.5,3 L 400.3,7"), null, "0.1 % of 400");
    assert.match(sameText("linear", "cosine")!, /text differs/);
    assert.match(sameText("3812 images", "3811 images")!, /3812 became 3811/, "counts are exact");
    assert.equal(sameText('{"value":"1.5e-3"}', '{"value":"1.6e-3"}'), null, "one unit of e-4");
    assert.equal(sameText("|Δε| 9.5e-7", "|Δε| 7.5e-7"), null, "float32 rounding, either way");
    assert.match(sameText("|Δε| 9.5e-7", "|Δε| 2.5e-4")!, /became/);
  });

  it("lets a few pixels move, not the picture", () => {
    const image = (f: (i: number) => number) => {
      const data = new Uint8Array(32 * 32 * 4).map((_, i) => (i % 4 === 3 ? 255 : f(i)));
      return encodePng({ width: 32, height: 32, data });
    };
    const base = image((i) => (i * 7) % 256);
    assert.equal(compareImages(base, base), null);
    // A handful of values changed completely: a sampler's rounding, amplified.
    assert.equal(
      compareImages(base, image((i) => (i % 997 === 0 ? 255 - (i * 7) % 256 : (i * 7) % 256))),
      null,
    );
    // Every value shifted by 4 levels: another picture.
    assert.match(compareImages(base, image((i) => ((i * 7) % 256 + 4) % 256))!, /mean difference/);
  });

  it("lets a figure's marks move a fraction of a pixel, not its text or its embedded images", () => {
    const png = (shift: number) => {
      const data = new Uint8Array(8 * 8 * 4).map((
        _,
        i,
      ) => (i % 4 === 3 ? 255 : (i * 9 + shift) % 256));
      return btoa(String.fromCharCode(...encodePng({ width: 8, height: 8, data })));
    };
    const figure = (x: string, label: string, image: string) =>
      `<svg><circle cx="${x}" cy="10"/><image href="data:image/png;base64,${image}"/>` +
      `<text x="5">${label}</text></svg>`;
    const base = figure("268.5019124884469", "0.25", png(0));
    assert.equal(sameFigure(base, figure("268.8863185450439", "0.25", png(0))), null, "0.4 px");
    assert.match(sameFigure(base, figure("270.1", "0.25", png(0)))!, /268\.5019124884469 became/);
    assert.match(sameFigure(base, figure("268.5", "0.75", png(0)))!, /0\.25 became 0\.75/);
    assert.match(sameFigure(base, figure("268.5", "0.25", png(64)))!, /embedded image 1/);
  });
});
