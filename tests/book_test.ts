/**
 * The book runtime and builder on a tiny fixture book (tests/fixtures/book): cells, output
 * placement, caching, invalidation, failures and frozen results.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { callSiteLine, exportedSource } from "../lib/book/runtime.ts";
import { chapterTitle, codeCellOfLine, splitCells } from "../scripts/book/cells.ts";
import { fingerprint } from "../scripts/book/cache.ts";
import {
  displayScale,
  formatValue,
  runNote,
  setupSummary,
  spokenDuration,
} from "../scripts/book/render.ts";
import type { Chapter } from "../scripts/book/chapters.ts";
import { parseBookArgs } from "../scripts/book/args.ts";
import { type BookReport, buildBook, failureReport } from "../scripts/book/build.ts";
import { readResult, removeIfPresent } from "../scripts/book/results.ts";
import { fixtureBook } from "./helpers.ts";
import { exists } from "../lib/runtime/files.ts";
import { relativeUrl, slugify, tableOfContents } from "../_site_config.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const FIXTURE = `${ROOT}/tests/fixtures/book`;

describe("cells", () => {
  const source = [
    "import x from './x.ts';", // 1: code before the first marker
    "// %% [markdown]", // 2
    "// # Title here", // 3
    "//", // 4
    "// Some *prose* with $x_t$.", // 5
    "", // 6
    "// %%", // 7
    "const a = 1;", // 8
    "", // 9
    "// %% [markdown]", // 10
    "//   indented stays", // 11
    "// %%", // 12
    "", // 13
    "// %% Named cell", // 14
    "console.log(a); // %% not a marker", // 15
  ].join("\n");
  const cells = splitCells(source);

  it("splits prose and code, strips comment markers and drops empty cells", () => {
    assert.deepEqual(cells.map((c) => c.kind), ["code", "markdown", "code", "markdown", "code"]);
    assert.equal(cells[0].text, "import x from './x.ts';");
    assert.equal(cells[1].text, "# Title here\n\nSome *prose* with $x_t$.");
    assert.equal(cells[2].text, "const a = 1;");
    assert.equal(cells[3].text, "  indented stays");
    assert.equal(cells[4].text, "console.log(a); // %% not a marker");
  });

  it("keeps the file's line numbers, so a line maps to its code cell", () => {
    assert.deepEqual([cells[2].startLine, cells[2].endLine], [8, 9]);
    assert.equal(codeCellOfLine(cells, 1), 0);
    assert.equal(codeCellOfLine(cells, 8), 1);
    assert.equal(codeCellOfLine(cells, 15), 2);
    assert.equal(codeCellOfLine(cells, 5), -1, "a prose line belongs to no code cell");
    assert.equal(chapterTitle(cells), "Title here");
  });

  it("marks a [setup] cell, whose code and lines stay as they are", () => {
    const marked = splitCells(source.replace("// %%\nconst a", "// %% [setup]\nconst a"));
    assert.deepEqual(marked.map((c) => c.setup ?? false), [false, false, true, false, false]);
    assert.deepEqual(
      marked.map((c) => [c.text, c.startLine]),
      cells.map((c) => [c.text, c.startLine]),
    );
    assert.equal(
      setupSummary("import x from 'x';\nconst m = await loadPretrained('a');"),
      "imports, loading the models and data",
    );
    assert.equal(setupSummary("x.dispose();"), "plumbing");
  });
});

describe("runtime and builder helpers", () => {
  it("takes the outermost frame in the chapter file as the call site", () => {
    const main = "file:///book/chapters/01-a.ts";
    const stack = [
      "Error",
      "    at captureLine (file:///book/lib/book.ts:120:17)",
      "    at BookRuntime.table (file:///book/lib/book.ts:210:18)",
      `    at showSquares (${main}:24:14)`,
      "    at helper (file:///book/lib/other.ts:5:3)",
      `    at async ${main}:35:1`,
    ].join("\n");
    assert.equal(callSiteLine(stack, main), 35);
    assert.equal(callSiteLine(`Error\n    at f (${main}:7:2)`, main), 7);
    assert.equal(callSiteLine("Error\n    at f (file:///elsewhere.ts:3:1)", main), 0);
    assert.equal(
      callSiteLine(`Error\n    at f (${main}x:3:1)`, main),
      0,
      "a longer file name is not the chapter",
    );
  });

  it("keys a chapter by the modules it really imports, not by imports quoted in comments", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.mkdir(`${dir}/book/chapters`, { recursive: true });
      await Deno.mkdir(`${dir}/book/lib`);
      await Deno.writeTextFile(`${dir}/book/lib/a.ts`, "export const a = 1;\n");
      await Deno.writeTextFile(
        `${dir}/book/lib/b.ts`,
        '/**\n * ```ts\n * import { x } from "../lib/nowhere.ts";\n * ```\n */\nexport const b = 2;\n',
      );
      await Deno.writeTextFile(
        `${dir}/book/chapters/01-x.ts`,
        '// %%\nimport { a } from "../lib/a.ts";\nimport { b } from "../lib/b.ts";\nconsole.log(a + b);\n',
      );
      const print = await fingerprint(`${dir}/book/chapters/01-x.ts`);
      assert.deepEqual(print.modules, [`${dir}/book/lib/a.ts`, `${dir}/book/lib/b.ts`]);
      await Deno.writeTextFile(`${dir}/book/lib/a.ts`, "export const a = 3;\n");
      const after = await fingerprint(`${dir}/book/chapters/01-x.ts`);
      assert.notEqual(after.contentHash, print.contentHash, "a module's change changes the key");
      // A copy of the book elsewhere hashes alike (modules are named from the book's root).
      await Deno.rename(`${dir}/book`, `${dir}/moved`);
      const moved = await fingerprint(`${dir}/moved/chapters/01-x.ts`);
      assert.equal(moved.contentHash, after.contentHash);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  it("counts the contents of imported JSON data in the fingerprint", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(
        `${dir}/chapter.ts`,
        '// %%\nimport data from "./data.json" with { type: "json" };\nconsole.log(data);\n',
      );
      const print = async (value: number) => {
        await Deno.writeTextFile(`${dir}/data.json`, JSON.stringify({ value }));
        return await fingerprint(`${dir}/chapter.ts`);
      };
      const [a, b] = [await print(1), await print(2)];
      assert.deepEqual(a.modules, [`${dir}/data.json`]);
      assert.notEqual(a.contentHash, b.contentHash);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  it("formats values, display scales, slugs, relative links and tables of contents", () => {
    assert.equal(formatValue(3), "3");
    assert.equal(formatValue(0.123456), "0.1235");
    assert.equal(formatValue(0.00001234), "1.234e-5");
    assert.equal(formatValue(null), "");
    assert.equal(displayScale(16), 12);
    assert.equal(displayScale(137), 3);
    assert.equal(displayScale(128), 3);
    assert.equal(displayScale(2000), 1);
    assert.equal(
      slugify("The forward process $q(x_t \\mid x_0)$"),
      "the-forward-process-q-x-t-x-0",
    );
    assert.equal(relativeUrl("/"), "index.html");
    assert.equal(relativeUrl("/01-a.html"), "01-a.html");
    assert.deepEqual(
      tableOfContents('<h2 id="a">A</h2><p>x</p><h3 id="b">B <em>c</em></h3><h4 id="d">D</h4>'),
      [{ level: 2, id: "a", html: "A" }, { level: 3, id: "b", html: "B <em>c</em>" }],
    );
  });

  it("lists an exported function whole, doc comment and multi-line signature included", () => {
    const source = [
      "const hidden = 1;",
      "/**",
      " * Adds.",
      " */",
      "export function add(",
      "  a: number,",
      "  b: number,",
      "): number {",
      "  return a + b;",
      "}",
      "export const two = 2;",
    ].join("\n");
    assert.equal(exportedSource(source, "add"), source.split("\n").slice(1, 10).join("\n"));
    assert.equal(exportedSource(source, "two"), "export const two = 2;");
    assert.throws(() => exportedSource(source, "hidden", "m.ts"), /m.ts exports no "hidden"/);
  });

  it("parses the builder's arguments strictly: a typo is an error, not an option passed on", () => {
    const args = parseBookArgs(["--profile", "full", "--only=01,02"]);
    assert.equal(args.profile, "full");
    assert.deepEqual(args.only, ["01", "02"]);
    const chapter = parseBookArgs(["04", "--profile=quick"], "usage", { command: "chapter" });
    assert.deepEqual([chapter.positional, chapter.profile], [["04"], "quick"]);
    assert.throws(
      () => parseBookArgs(["04", "--reusme"], "usage", { command: "chapter" }),
      /Unknown option '--reusme'/,
    );
    assert.throws(
      () => parseBookArgs(["04", "--freeze"], "usage", { command: "chapter" }),
      /Unknown option '--freeze'/,
      "a chapter run takes none of the builder's options",
    );
    assert.throws(() => parseBookArgs(["--verify", "--freeze"]), /choose one/);
    assert.throws(() => parseBookArgs(["--verify", "--profile", "quick"]), /drop --profile/);
    assert.throws(() => parseBookArgs(["--profile", "huge"]), /unknown profile "huge"/);
    assert.throws(() => parseBookArgs(["04"]), /Unexpected argument '04'/);
    assert.throws(() => parseBookArgs(["--profile"]), /argument missing/);
  });
});

describe("a chapter page's run-it-yourself note", () => {
  it("gives the command, each profile's measured time and the zoo models, linked", () => {
    assert.deepEqual([48.4, 444.2, 600, 3900].map(spokenDuration), [
      "48 s",
      "7 min 24 s",
      "10 min",
      "1 h 5 min",
    ]);
    const chapter: Chapter = {
      id: "05-sampling",
      number: 5,
      title: "Sampling",
      file: "",
      source: "",
      cells: [],
    };
    const note = runNote(chapter, {
      timings: { full: 444.2 },
      models: ["emoji16-unet", "emoji-classifier"],
    });
    assert.match(note, /<code>npx -y deno@2\.9\.6 task chapter 05<\/code>/);
    assert.match(
      note,
      /quick profile \(not measured yet\).*book's \(7 min 24 s when last measured\)/,
    );
    assert.match(
      note,
      /the zoo's <a href="models\/emoji16-unet\.json"><code>emoji16-unet<\/code><\/a> and <a href="models\/emoji-classifier\.json">/,
    );
  });
});

describe("building the fixture book", () => {
  const { work, options, copy } = fixtureBook(ROOT, "book");
  const origins = (report: BookReport) =>
    Object.fromEntries(report.chapters.map((c) => [c.id, c.origin]));
  let first: BookReport;

  before(async () => {
    await copy();
    first = await buildBook(options);
  });
  after(async () => {
    await removeIfPresent(work);
  });

  it("runs every chapter and places outputs after the cell that made them", async () => {
    assert.equal(first.ok, true);
    assert.deepEqual(origins(first), { "01-basics": "ran", "02-plots": "ran" });
    const meta = first.chapters[0].meta!;
    assert.deepEqual(
      meta.outputs.map((o) => [o.kind, o.cell]),
      [
        ["metric", 2],
        ["table", 2], // made inside a helper defined in code cell 1, called from cell 2
        ["figure", 3],
        ["images", 3],
        ["animation", 3],
        ["widget", 4],
        ["text", 4],
      ],
    );
    assert.deepEqual((meta.outputs[1].data as { rows: unknown[] }).rows, [
      { k: 1, square: 1 },
      { k: 2, square: 4 },
      { k: 3, square: 9 },
    ]);
    const page = await Deno.readTextFile(`${work}/src/01-basics.md`);
    const table = page.indexOf('<figure class="output output-table"');
    const callingCell = page.indexOf("await showSquares(3);");
    const nextHeading = page.indexOf("## Pictures");
    assert.ok(
      callingCell > 0 && callingCell < table && table < nextHeading,
      "table after its calling cell",
    );
    assert.ok(page.indexOf("async function showSquares") < callingCell);
    assert.ok(!page.includes("# Fixture basics"), "the title is shown by the layout, not twice");
  });

  it("writes a site with relative links, math, code, outputs and the widget", async () => {
    const html = await Deno.readTextFile(`${work}/site/01-basics.html`);
    assert.match(html, /class="katex"/);
    assert.match(html, /class="language-ts"/);
    assert.match(html, /<svg[^>]*viewBox="0 0 120 40"/);
    assert.match(html, /src="outputs\/01-basics\/004-images\.png"/);
    assert.match(html, /data-widget="noise-explorer"><script type="application\/json">\{"T":20/);
    assert.match(html, /src="assets\/widgets\/noise-explorer\.js"/);
    assert.match(html, /href="02-plots\.html"/);
    assert.match(html, /<h2 id="a-helper-defined-here">/);
    assert.match(html, /href="#a-helper-defined-here"/, "table of contents");
    assert.doesNotMatch(html, /(href|src)="\//, "no absolute links");
    await Deno.stat(`${work}/site/outputs/01-basics/004-images.png`);
    await Deno.stat(`${work}/site/assets/katex/fonts/KaTeX_Main-Regular.woff2`);
    const index = await Deno.readTextFile(`${work}/site/index.html`);
    assert.match(index, /task book/);
    assert.match(index, /Twemoji/);
  });

  it("reuses the cache when nothing changed, and when only prose changed", async () => {
    const file = `${work}/chapters/02-plots.ts`;
    const source = await Deno.readTextFile(file);
    const edited = source.replace(
      "## A line chart",
      "## A line chart, renamed\n//\n// Bad math: $\\nosuchmacro x$, $\\frac{1}{$.",
    );
    await Deno.writeTextFile(file, edited);
    const again = await buildBook(options);
    assert.deepEqual(origins(again), { "01-basics": "cached", "02-plots": "cached" });
    assert.deepEqual(again.mathErrors.map((e) => e.page), ["02-plots.html", "02-plots.html"]);
    assert.match(again.mathErrors.map((e) => e.message).join("\n"), /Unexpected end of input/);
    assert.match(
      again.mathErrors.map((e) => e.message).join("\n"),
      /undefined control sequence \\nosuchmacro/,
    );
    assert.deepEqual(first.mathErrors, []);
    assert.equal(again.chapters[0].meta!.finishedAt, first.chapters[0].meta!.finishedAt);
    const html = await Deno.readTextFile(`${work}/site/02-plots.html`);
    assert.match(html, /A line chart, renamed/);
    assert.match(html, /<svg/, "cached outputs still shown");
  });

  it("re-runs chapters when a module they import changes", async () => {
    const lib = `${work}/lib/fixture_math.ts`;
    await Deno.writeTextFile(
      lib,
      (await Deno.readTextFile(lib)).replace(
        "export const OFFSET = 0;",
        "export const OFFSET = 1;",
      ),
    );
    const report = await buildBook(options);
    assert.deepEqual(origins(report), { "01-basics": "ran", "02-plots": "ran" });
    const table = report.chapters[0].meta!.outputs.find((o) => o.kind === "table")!;
    assert.deepEqual((table.data as { rows: { square: number }[] }).rows.map((r) => r.square), [
      2,
      5,
      10,
    ]);
  });

  it("reports a failing chapter by name and keeps the others' outputs", async () => {
    await Deno.copyFile(`${FIXTURE}/failing/03-broken.ts`, `${work}/chapters/03-broken.ts`);
    // A run killed before: its working folder is cleared; one of a live process is left be.
    const gone = new Deno.Command("true").spawn();
    await gone.status;
    const abandoned = `${options.cacheDir}/03-broken/somekey.${gone.pid}.running`;
    const live = `${options.cacheDir}/03-broken/otherkey.${Deno.pid}.running`;
    for (const dir of [abandoned, live]) await Deno.mkdir(dir, { recursive: true });
    const report = await buildBook(options);
    assert.equal(await exists(abandoned), false, "the killed run's folder was left");
    assert.equal(await exists(live), true, "a live run's folder was removed");
    assert.equal(report.ok, false);
    assert.deepEqual(report.failures.map((f) => f.id), ["03-broken"]);
    assert.match(report.failures[0].meta!.error!, /fixture chapter 03 fails on purpose/);
    assert.deepEqual(origins(report), {
      "01-basics": "cached",
      "02-plots": "cached",
      "03-broken": "failed",
    });
    assert.deepEqual(report.failures[0].meta!.outputs.map((o) => o.kind), ["metric"]);
    const page = await Deno.readTextFile(`${work}/site/03-broken.html`);
    assert.match(page, /This chapter failed to run/);
    assert.match(page, /before the failure/);
    const escape = String.fromCharCode(27);
    assert.ok(!report.failures[0].meta!.error!.includes(escape), "terminal colour codes");
    assert.ok(!page.includes(escape) && !/\[0m|\[31m/.test(page), "colour codes on the page");
    const plots = await Deno.readTextFile(`${work}/site/02-plots.html`);
    assert.match(plots, /<svg/);
    await Deno.remove(`${work}/chapters/03-broken.ts`);
  });

  it("freezes full results and prefers them in a build without a profile", async () => {
    const frozen = await buildBook({ ...options, only: ["02"], freeze: true });
    assert.equal(frozen.ok, true);
    assert.equal(frozen.chapters.find((c) => c.id === "02-plots")!.origin, "ran");
    const meta = await readResult(`${work}/frozen/02-plots`);
    assert.equal(meta?.profile, "full");
    // Frozen results are committed: text outputs live inside result.json, which deno fmt accepts.
    const files: string[] = [];
    for await (const entry of Deno.readDir(`${work}/frozen/02-plots`)) files.push(entry.name);
    assert.deepEqual(files, ["result.json"]);
    assert.match(meta!.outputs[0].inline!, /^<svg/);
    const fmt = await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--check", "--no-config", `${work}/frozen`],
      stdout: "null",
      stderr: "null",
    }).output();
    assert.equal(fmt.code, 0, "frozen results pass deno fmt --check");
    const report = await buildBook(options);
    assert.deepEqual(origins(report), { "01-basics": "cached", "02-plots": "frozen" });
    const html = await Deno.readTextFile(`${work}/site/02-plots.html`);
    assert.match(html, /<strong>full<\/strong> profile/);
    assert.match(html, /<svg/, "frozen figures are inlined from result.json");
  });

  it("records the quick profile's time beside the frozen results, and the page says both", async () => {
    const quick = await buildBook({ ...options, only: ["02"], freeze: true, profile: "quick" });
    assert.equal(quick.ok, true);
    const frozenDir = `${work}/frozen/02-plots`;
    const meta = await readResult(frozenDir);
    assert.equal(meta?.profile, "full", "the frozen outputs stay the full profile's");
    const timing = JSON.parse(await Deno.readTextFile(`${frozenDir}/quick.json`));
    assert.equal(timing.contentHash, meta!.contentHash);
    assert.ok(timing.seconds > 0);
    await buildBook(options);
    const html = await Deno.readTextFile(`${work}/site/02-plots.html`);
    assert.match(
      html,
      /<code>npx -y deno@2\.9\.6 task chapter 02<\/code> runs the quick profile \(\d+ s when last measured\); add <code>--profile full<\/code> for the book's \(\d+ s when last measured\)\. It loads no model of the zoo\./,
    );
    await buildBook({ ...options, only: ["02"], freeze: true });
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${frozenDir}/quick.json`)),
      timing,
      "a full refreeze of the same code keeps the quick time",
    );
  });

  it("verifies a rerun against the frozen results, and names what differs", async () => {
    const agrees = await buildBook({ ...options, only: ["02"], verify: true });
    assert.equal(agrees.ok, true);
    assert.deepEqual(agrees.chapters.find((c) => c.id === "02-plots")!.differences, []);
    // A frozen number that today's code no longer computes fails the check.
    const path = `${work}/frozen/02-plots/result.json`;
    const frozen = await Deno.readTextFile(path);
    const meta = JSON.parse(frozen);
    const metric = meta.outputs.find((o: { kind: string }) => o.kind === "metric");
    const value = metric.data.value as number;
    metric.data.value = value + 1;
    await Deno.writeTextFile(path, JSON.stringify(meta, null, 2));
    const differs = await buildBook({ ...options, only: ["02"], verify: true });
    assert.equal(differs.ok, false);
    const report = failureReport(differs);
    assert.match(report, /02-plots differs from its frozen results/);
    assert.match(report, new RegExp(`metric: ${value + 1} became ${value}`));
    await Deno.writeTextFile(path, frozen);
  });
});
