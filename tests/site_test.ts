/**
 * The site build (scripts/book/site.ts) on a small hand-made input: a build that fails in the site
 * generator (a broken layout) leaves the previous site byte for byte, leaves no temporary folder,
 * and says so; the next good build replaces the site, and clears what a killed build left.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { buildSite, type SiteInput } from "../scripts/book/site.ts";
import { copyDir, removeIfPresent } from "../scripts/book/results.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/** Every file under `dir`, by path relative to it, with its bytes. */
async function filesOf(dir: string, prefix = ""): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for await (const entry of Deno.readDir(`${dir}/${prefix}`)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory) {
      for (const [name, bytes] of await filesOf(dir, `${path}/`)) files.set(name, bytes);
    } else {
      files.set(path, await Deno.readFile(`${dir}/${path}`));
    }
  }
  return files;
}

/** The names in `dir` of a build's temporary folders (`*.incoming-*`, `*.outgoing-*`). */
async function leftovers(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (/\.(incoming|outgoing)/.test(entry.name)) names.push(entry.name);
  }
  return names.sort();
}

/** A chapter page the way the builder writes one, with `text` as its body. */
function page(text: string): string {
  return [
    "---",
    'title: "A test chapter"',
    'chapterId: "01-test"',
    "chapterNumber: 1",
    "layout: chapter.njk",
    'permalink: "01-test.html"',
    "templateEngineOverride: md",
    "---",
    "",
    text,
    "",
  ].join("\n");
}

describe("building the site", () => {
  const work = `${ROOT}/.cache/test/site-${crypto.randomUUID().slice(0, 8)}`;
  const base = `${work}/assets/layouts/base.njk`;
  let goodLayout = "";
  const input = (text: string, siteDir = `${work}/site`): SiteInput => ({
    root: ROOT,
    assetsDir: `${work}/assets`,
    buildDir: `${work}/src`,
    siteDir,
    pages: new Map([["01-test.md", page(text)]]),
    nav: [{ id: "01-test", number: 1, title: "A test chapter", url: "01-test.html" }],
    outputs: new Map([["01-test", `${work}/outputs`]]),
  });

  before(async () => {
    for (const folder of ["layouts", "pages", "styles", "widgets"]) {
      await copyDir(`${ROOT}/assets/${folder}`, `${work}/assets/${folder}`);
    }
    await Deno.mkdir(`${work}/outputs`, { recursive: true });
    await Deno.writeTextFile(
      `${work}/outputs/figure.svg`,
      '<svg xmlns="http://www.w3.org/2000/svg"/>',
    );
    goodLayout = await Deno.readTextFile(base);
  });
  after(() => removeIfPresent(work));

  it("keeps the previous site when the generator fails, and replaces it when it succeeds", async () => {
    const first = await buildSite(input("First text, $x_t$."));
    assert.equal(first.index, `${work}/site/index.html`);
    const site = await filesOf(`${work}/site`);
    for (const name of ["index.html", "01-test.html", "outputs/01-test/figure.svg"]) {
      assert.ok(site.has(name), `the first site has ${name}`);
    }
    assert.ok(site.size > 5, "the first site has its styles, widgets and KaTeX too");

    // An unclosed Nunjucks tag: Eleventy fails on every page that uses the layout.
    await Deno.writeTextFile(base, `${goodLayout}\n{% for item in book.chapters %}\n`);
    await assert.rejects(
      buildSite(input("Second text.")),
      (error: Error) => {
        assert.match(error.message, /^the site was not built: /);
        assert.ok(
          error.message.endsWith(`; the previous site in ${work}/site is unchanged`),
          error.message,
        );
        return true;
      },
    );
    assert.deepEqual(await filesOf(`${work}/site`), site, "every file of the site, same bytes");
    assert.deepEqual(await leftovers(work), [], "no temporary folder is left");

    // What a killed build leaves is cleared by the next one.
    await Deno.mkdir(`${work}/site.incoming-dead/assets`, { recursive: true });
    await Deno.mkdir(`${work}/site.outgoing-dead`);
    await Deno.writeTextFile(base, goodLayout);
    await buildSite(input("Third text."));
    const third = await Deno.readTextFile(`${work}/site/01-test.html`);
    assert.match(third, /Third text\./);
    assert.doesNotMatch(third, /First text/);
    assert.deepEqual(await leftovers(work), []);

    // Killed between the swap's two renames: the old site, moved aside, is put back, and a
    // failing build then leaves it as it was.
    const before = await filesOf(`${work}/site`);
    await Deno.rename(`${work}/site`, `${work}/site.outgoing-killed`);
    await Deno.writeTextFile(base, `${goodLayout}\n{% for x in book %}\n`);
    await assert.rejects(buildSite(input("Fourth text.")), /previous site .* is unchanged/);
    assert.deepEqual(await filesOf(`${work}/site`), before, "the site caught mid-swap is back");
    assert.deepEqual(await leftovers(work), []);
    await Deno.writeTextFile(base, goodLayout);
  });

  it("says when a failed first build wrote no site at all", async () => {
    await Deno.writeTextFile(base, `${goodLayout}\n{% if book %}\n`);
    try {
      await assert.rejects(buildSite(input("Text.", `${work}/other-site`)), (error: Error) => {
        assert.match(error.message, /^the site was not built: /);
        assert.ok(error.message.endsWith(`; no site was written to ${work}/other-site`));
        return true;
      });
      assert.equal(await Deno.stat(`${work}/other-site`).then(() => true, () => false), false);
      assert.deepEqual(await leftovers(work), []);
    } finally {
      await Deno.writeTextFile(base, goodLayout);
    }
  });
});
