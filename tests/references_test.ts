import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseReferences, referencesPage, resolveCitations } from "../scripts/book/references.ts";

const REFERENCES = parseReferences(JSON.stringify([
  {
    key: "ho2020",
    authors: ["Jonathan Ho", "Ajay Jain", "Pieter Abbeel"],
    year: 2020,
    title: "DDPM",
    venue: "NeurIPS",
    url: "https://arxiv.org/abs/2006.11239",
  },
  {
    key: "ho2022",
    authors: ["Jonathan Ho", "Tim Salimans"],
    year: 2022,
    title: "CFG",
    venue: "arXiv",
    url: "https://arxiv.org/abs/2207.12598",
  },
  {
    key: "vincent2011",
    authors: ["Pascal Vincent"],
    year: 2011,
    title: "DSM",
    venue: "Neural Computation",
    url: "https://doi.org/x",
  },
]));
const text = (html: string) => html.replace(/<[^>]+>/g, "").replace(/&amp;/g, "&");

describe("citations by key", () => {
  it("resolve as Pandoc writes them, with links to the entries", () => {
    const { markdown, citations } = resolveCitations(
      [
        "Linear [@ho2020, DDPM], guided [@ho2022; @vincent2011], scored [FID, @ho2020].",
        "As @ho2022 showed, across a line [@vincent2011,",
        "denoising score matching].",
      ].join("\n"),
      "05-sampling.html",
      "chapter 5",
      REFERENCES,
    );
    assert.equal(
      text(markdown),
      "Linear (Ho et al., 2020, DDPM), guided (Ho & Salimans, 2022; Vincent, 2011), scored " +
        "(FID, Ho et al., 2020).\nAs Ho & Salimans (2022) showed, across a line (Vincent, 2011,\n" +
        "denoising score matching).".replace("&", "&"),
    );
    assert.match(
      markdown,
      /<a class="citation" id="cite-ho2020-2" href="references.html#ref-ho2020"/,
    );
    assert.deepEqual(citations.get("ho2020")!.map((c) => c.anchor), [
      "cite-ho2020-1",
      "cite-ho2020-2",
    ]);
    assert.equal(citations.get("vincent2011")!.length, 2);
  });

  it("leave code, npm scopes, e-mails, Markdown links and HTML (attributes, scripts) alone", () => {
    const source = [
      "Import `@ho2020` from npm:@tensorflow/tfjs, write to a@ho2020.org or [bob@ho2020.org],",
      "[a link](x.html).",
      "````md",
      "```",
      'const cite = "[@ho2020]";',
      "````",
      '<img alt="as in [@ho2020]" src="x.png"><script type="application/json">{"a": "@ho2020"}',
      "</script><pre>@ho2020</pre>",
    ].join("\n");
    const { markdown, citations } = resolveCitations(source, "p.html", "p", REFERENCES);
    assert.equal(markdown, source);
    assert.equal(citations.size, 0);
  });

  it("say which page cites an unknown key, and what to do", () => {
    assert.throws(
      () => resolveCitations("as [@song2021] showed", "05-sampling.html", "chapter 5", REFERENCES),
      /05-sampling\.html cites @song2021, which assets\/references\.json does not have; add it/,
    );
    assert.throws(
      () => resolveCitations("as @hoo2020 showed", "05-sampling.html", "chapter 5", REFERENCES),
      /cites @hoo2020/,
      "a narrative citation of a typo is refused too",
    );
    assert.throws(() => parseReferences('[{"key": "ho2020"}]'), /lacks authors, year, title/);
    assert.throws(() => parseReferences("[{"), /references\.json is not valid JSON/);
    assert.throws(() => parseReferences("{}"), /must hold a JSON array/);
    const entry = { key: "ho2020", authors: ["J. Ho"], year: 2020, title: "T", venue: "V" };
    const one = (changes: object) => JSON.stringify([{ ...entry, url: "https://x", ...changes }]);
    assert.throws(
      () => parseReferences(one({ year: "2020" })),
      /ho2020 needs its year as a number/,
    );
    assert.throws(() => parseReferences(one({ authors: "J. Ho" })), /needs authors as a list/);
    assert.throws(() => parseReferences(one({ url: "javascript:x" })), /needs an http\(s\) url/);
    assert.throws(() => parseReferences(one({ key: "fig-a2020" })), /reads as a cross-reference/);
  });

  it("find citations after a stray backtick in an earlier paragraph", () => {
    const { citations } = resolveCitations(
      "A ` alone.\n\nThen [@ho2020].",
      "p.html",
      "p",
      REFERENCES,
    );
    assert.equal(citations.get("ho2020")?.length, 1);
  });

  it("list every entry with a link back to each place that cites it", () => {
    const first = resolveCitations("[@ho2020] and [@ho2020]", "02.html", "chapter 2", REFERENCES);
    const page = referencesPage(REFERENCES, first.citations);
    assert.match(
      page,
      /<li id="ref-ho2020"><span class="ref-authors">Jonathan Ho, Ajay Jain, Pieter Abbeel<\/span> \(2020\)/,
    );
    assert.match(
      page,
      /href="02.html#cite-ho2020-1"[^>]*>chapter 2<\/a> <a class="backlink" href="02.html#cite-ho2020-2"/,
    );
    assert.doesNotMatch(page.split('id="ref-vincent2011"')[1].split("</li>")[0], /Cited in/);
  });
});
