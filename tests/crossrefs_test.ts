/**
 * Numbered figures, tables and equations, and cross-references to them (scripts/book/crossrefs.ts):
 * labels on cell markers, numbering by kind in page order, references resolved within and across
 * pages, and what is refused.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { markerLabels, splitCells } from "../scripts/book/cells.ts";
import {
  ChapterNumbering,
  collectTargets,
  resolveCrossReferences,
  targetAttributes,
} from "../scripts/book/crossrefs.ts";
import { UserError } from "../lib/core/errors.ts";

describe("cross-references", () => {
  it("reads labels from a cell's marker, leaving the cell's text (and so its results) alone", () => {
    assert.deepEqual(markerLabels(" {#fig-a #tbl-b}"), ["fig-a", "tbl-b"]);
    assert.deepEqual(markerLabels(" [setup]"), []);
    assert.deepEqual(markerLabels(" {#fig-a fig-b}"), ["fig-a", "fig-b{"]);
    assert.throws(
      () => new ChapterNumbering(1, "chapters/01-x.ts").outputs(["figure"], ["fig-b{"], 7),
      /01-x\.ts:7: the cell's marker has "fig-b" in its \{…\} without a #; write a label as \{#fig-b\}/,
    );
    assert.equal(splitCells("// %% {#fig-a} [setup]\nconst a = 1;\n")[0].setup, true);
    const plain = "// %%\nconst a = 1;\n// %% [markdown]\n// Text.\n";
    const labelled = plain.replace("// %%\n", "// %% {#fig-a}\n");
    const [code] = splitCells(labelled);
    assert.deepEqual(code.labels, ["fig-a"]);
    assert.equal(code.text, splitCells(plain)[0].text);
    assert.equal(splitCells(plain)[0].labels, undefined);
  });

  it("numbers figures and tables apart, in page order, handing each kind its labels", () => {
    const numbering = new ChapterNumbering(4, "chapters/04-x.ts");
    const first = numbering.outputs(["text", "figure", "table", "images"], ["tbl-t", "fig-f"]);
    assert.deepEqual(first, [
      undefined,
      { id: "fig-f", number: "4.1", name: "Figure 4.1" },
      { id: "tbl-t", number: "4.1", name: "Table 4.1" },
      { id: "figure-4-2", number: "4.2", name: "Figure 4.2" },
    ]);
    const [widget] = numbering.outputs(["widget"]);
    assert.equal(widget?.name, "Figure 4.3");
    assert.equal(targetAttributes(first[1]), ' id="fig-f" data-number="4.1"');
    assert.throws(() => numbering.outputs(["figure"], ["fig-f"]), /fig-f is given twice/);
    assert.throws(
      () => numbering.outputs(["figure"], ["Figure-1"], 12),
      (e) => e instanceof UserError && /04-x\.ts:12.*fig-name/.test(e.message),
    );
  });

  it("numbers a labelled display equation, and leaves the others and $…$ alone", () => {
    const numbering = new ChapterNumbering(2, "chapters/02-x.ts");
    const prose = [
      "Inline $a$ and",
      "$$x = 1$$",
      "then",
      "$$y = 2,",
      "z = 3.$$ {#eq-yz}",
      "and $$w$$ {#eq-w}",
    ].join("\n");
    const out = numbering.equations(prose);
    assert.match(out, /\$\$x = 1\$\$\nthen/, "an unlabelled equation is not numbered");
    assert.match(
      out,
      /<div class="equation" id="eq-yz" data-number="2\.1">\n\n\$\$y = 2,\nz = 3\.\$\$\n\n<div class="equation-number">\(2\.1\)<\/div>\n<\/div>/,
    );
    assert.match(out, /and \$\$w\$\$ \{#eq-w\}/, "an equation inside a line is not display math");
    const next = new ChapterNumbering(2, "x").equations("$$a$$ {#eq-a}\nand text after.");
    assert.match(next, /<\/div>\n\nand text after\./, "text after it is a paragraph of its own");
  });

  it("refuses a label a complete cell has no output for, saying what the cell made", () => {
    const numbering = new ChapterNumbering(3, "chapters/03-x.ts");
    assert.throws(
      () => numbering.outputs(["figure"], ["fig-a", "fig-b"], 40, true),
      /03-x\.ts:40: the cell's label fig-b names nothing: the cell makes 1 figure\(s\) and 0 table/,
    );
    // A chapter that failed part-way is shown as far as it got: its labels are not held to it.
    assert.doesNotThrow(() => numbering.outputs([], ["fig-c"], 50, false));
  });

  it("links references on the same page and across pages, and reports the unknown", () => {
    const pages = new Map([
      ["01-a.md", '<figure class="output" id="fig-noise" data-number="1.2">'],
      ["02-b.md", '<div class="equation" id="eq-loss" data-number="2.1">'],
    ]);
    const targets = collectTargets(pages);
    assert.deepEqual(targets.get("eq-loss"), {
      label: "eq-loss",
      kind: "eq",
      number: "2.1",
      page: "02-b.html",
    });
    const text = [
      "See @fig-noise, then @eq-loss.",
      "Not these: `@fig-noise`, me@fig-noise.org, @fig-nowhere.",
      "```ts",
      "const x = '@fig-noise';",
      "```",
    ].join("\n");
    const { markdown, unresolved } = resolveCrossReferences(text, "02-b.html", targets);
    assert.match(markdown, /See <a class="xref" href="01-a\.html#fig-noise">Figure 1\.2<\/a>,/);
    assert.match(markdown, /then <a class="xref" href="#eq-loss">Eq\. \(2\.1\)<\/a>\./);
    assert.match(markdown, /`@fig-noise`, me@fig-noise\.org,/);
    assert.match(markdown, /const x = '@fig-noise';/);
    assert.match(markdown, /<span class="xref xref-missing"[^>]*>Figure \?\?<\/span>\./);
    assert.deepEqual(unresolved, [{ page: "02-b.html", label: "fig-nowhere" }]);
  });

  it("refuses one label on two pages, naming both", () => {
    const pages = new Map([
      ["01-a.md", '<figure id="fig-x" data-number="1.1">'],
      ["02-b.md", '<figure id="fig-x" data-number="2.4">'],
    ]);
    assert.throws(() => collectTargets(pages), /fig-x is on both 01-a\.html and 02-b\.html/);
  });
});
