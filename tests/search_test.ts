import { describe, it } from "node:test";
import assert from "node:assert/strict";
import MiniSearch from "minisearch";
import { pageSections } from "../scripts/book/search.ts";
import { QUERY_OPTIONS, SEARCH_OPTIONS } from "../lib/browser/search_options.ts";

const PAGE = `<html><body><main><article class="chapter">
<header><p class="chapter-kicker">Chapter 6</p><h1>Conditioning</h1><p>Outputs come from…</p></header>
<div class="chapter-body">
<p>Every model so far draws what it likes.</p>
<h2 id="classifier-free-guidance">Classifier-free guidance</h2>
<p>Step further: <span class="katex"><span class="katex-mathml"><math><mi>s</mi><annotation>s</annotation></math></span><span class="katex-html">s</span></span> times.</p>
<pre><code>guide(eps, epsNull, scale)</code></pre>
<figure><svg><text>axis 0.5</text></svg><figcaption><p>FID against the scale.</p></figcaption></figure>
<h3 id="rescale">Rescale</h3>
<ul><li>keeps the std</li></ul>
</div></article></main></body></html>`;

describe("the search index", () => {
  it("has one entry a section, with its prose, captions and code, each formula once", () => {
    const sections = pageSections("06-conditioning.html", PAGE);
    assert.deepEqual(sections.map((s) => s.id), [
      "06-conditioning.html",
      "06-conditioning.html#classifier-free-guidance",
      "06-conditioning.html#rescale",
    ]);
    assert.equal(sections[0].page, "Chapter 6 · Conditioning");
    assert.equal(sections[0].text, "Every model so far draws what it likes.");
    const guidance = sections[1];
    assert.equal(guidance.section, "Classifier-free guidance");
    assert.equal(guidance.text, "Step further: s times. FID against the scale.");
    assert.equal(guidance.code, "guide(eps, epsNull, scale)");
    assert.ok(!guidance.text.includes("axis"), "no text of drawn figures");
    assert.equal(sections[2].text, "keeps the std");
  });

  it("finds a section by its words, their prefixes and a typo, heading first", () => {
    const index = new MiniSearch({ ...SEARCH_OPTIONS });
    index.addAll(pageSections("06-conditioning.html", PAGE));
    const loaded = MiniSearch.loadJSON(JSON.stringify(index), SEARCH_OPTIONS);
    for (const query of ["classifier-free", "classif", "clasifier free", "epsNull"]) {
      assert.equal(
        loaded.search(query, QUERY_OPTIONS)[0]?.id,
        "06-conditioning.html#classifier-free-guidance",
        query,
      );
    }
    assert.deepEqual(loaded.search("rescale std", QUERY_OPTIONS).map((r) => r.id), [
      "06-conditioning.html#rescale",
    ]);
  });
});
