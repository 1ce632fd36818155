/**
 * End to end: build the fixture book, serve it on 127.0.0.1 and open every page in headless
 * Chromium. Pages load without console errors, math and figures render, the noise explorer
 * repaints when its slider moves, the theme toggle works, and the site also works from file://.
 * Every page fits a phone's width (390 px) without scrolling sideways, and its pixel images are
 * drawn crisp, large enough to see and with alt text.
 *
 * The real book (chapters/) is checked the same way when every chapter has a stored result (cached
 * or frozen): running real chapters is the builder's job, not this test's. Set
 * BOOK_SCREENSHOTS=/some/dir to keep a screenshot of every page in both themes.
 *
 * Skipped, with a message, when /usr/bin/chromium is absent (Debian: `apt-get install chromium`).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { buildBook } from "../scripts/book/build.ts";
import { removeIfPresent } from "../scripts/book/results.ts";
import { serveStatic } from "../scripts/book/static_server.ts";
import { fixtureBook } from "./helpers.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const CHROMIUM = "/usr/bin/chromium";
const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!hasChromium) {
  console.log(`site e2e: skipped, ${CHROMIUM} not found (install Debian's chromium to run it)`);
}
const SHOTS = Deno.env.get("BOOK_SCREENSHOTS");
/** A phone's screen in CSS pixels (an iPhone 12 to 15). */
const PHONE = { width: 390, height: 844 };

interface PageProblems {
  errors: string[];
}

/** Opens a page and collects console errors, page errors and failed requests. */
async function open(
  browser: Browser,
  url: string,
  scheme: "light" | "dark" = "light",
  viewport = { width: 1280, height: 900 },
) {
  const context = await browser.newContext({
    viewport,
    colorScheme: scheme,
  });
  const page = await context.newPage();
  const problems: PageProblems = { errors: [] };
  page.on("console", (message) => {
    if (message.type() === "error") problems.errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.errors.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) => {
    // A click that leaves the page cancels its lazy images: not a fault of the site.
    if (request.failure()?.errorText === "net::ERR_ABORTED") return;
    problems.errors.push(`request failed: ${request.url()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) {
      problems.errors.push(`HTTP ${response.status()}: ${response.url()}`);
    }
  });
  await page.goto(url, { waitUntil: "load" });
  await page.evaluate(() => document.fonts.ready.then(() => true));
  return { page, problems, close: () => context.close() };
}

async function pageNames(site: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(site)) {
    if (entry.isFile && entry.name.endsWith(".html")) names.push(entry.name);
  }
  return names.sort();
}

/**
 * The pixel images of the page a reader cannot see well: each must be drawn crisp (nearest
 * neighbour), never shrunk below its own pixels, enlarged when small, and have alt text.
 */
function unreadableImages(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLImageElement>(".output img")].flatMap((img) => {
      const problems: string[] = [];
      const shown = img.getBoundingClientRect().width;
      if (getComputedStyle(img).imageRendering !== "pixelated") problems.push("blurred");
      if (shown + 0.5 < img.naturalWidth) problems.push(`shrunk to ${shown} px`);
      if (img.naturalWidth < 200 && shown < 2 * img.naturalWidth) problems.push("not enlarged");
      if (!(img.alt ?? "").trim()) problems.push("no alt text");
      return problems.map((p) => `${img.getAttribute("src")}: ${p}`);
    })
  );
}

async function checkPage(page: Page, name: string): Promise<void> {
  // Images are lazy: load them all now, and list those that fail to decode.
  const brokenImages = await page.evaluate(async () => {
    const images = [...document.querySelectorAll("img")];
    const results = await Promise.all(images.map(async (img) => {
      img.loading = "eager";
      try {
        await img.decode();
        return img.naturalWidth > 0 ? null : img.getAttribute("src");
      } catch {
        return img.getAttribute("src");
      }
    }));
    return results.filter((src) => src !== null);
  });
  assert.deepEqual(brokenImages, [], `${name}: images failed to load`);
  assert.deepEqual(await unreadableImages(page), [], `${name}: images a reader cannot see well`);
  const counts = await page.evaluate(() => ({
    katex: document.querySelectorAll(".katex").length,
    katexErrors: document.querySelectorAll(".katex-error").length,
    figures: document.querySelectorAll(".output svg, .output img, .widget canvas").length,
    outputs: document.querySelectorAll(".output").length,
    sidebar: document.querySelectorAll(".chapter-list a").length,
    footer: document.querySelector(".attribution")?.textContent ?? "",
    missingReferences: [...document.querySelectorAll(".xref-missing")].map((e) => e.textContent),
    katexFont: document.fonts.check("16px KaTeX_Main"),
  }));
  assert.equal(counts.katexErrors, 0, `${name}: KaTeX could not render some math`);
  assert.deepEqual(counts.missingReferences, [], `${name}: references to nothing`);
  assert.ok(counts.sidebar > 0, `${name}: the chapter sidebar is empty`);
  assert.match(counts.footer, /Twemoji/, `${name}: the footer credits the image sets`);
  if (name !== "index.html" && name !== "references.html") {
    assert.ok(counts.katex > 0, `${name}: no rendered math`);
    assert.ok(counts.katexFont, `${name}: KaTeX fonts did not load`);
    if (counts.outputs > 0) assert.ok(counts.figures > 0, `${name}: outputs but no svg/img/canvas`);
  }
}

async function checkWidget(page: Page, name: string): Promise<void> {
  const widgets = await page.locator('.widget[data-widget="noise-explorer"]').count();
  if (widgets === 0) return;
  const canvas = page.locator(".noise-explorer-xt").first();
  await canvas.waitFor();
  const pixels = () => canvas.evaluate((c: HTMLCanvasElement) => c.toDataURL());
  const readout = () => page.locator(".nx-readout span").nth(1).textContent();
  const before = [await pixels(), await readout()];
  await page.locator(".nx-t").first().evaluate((input: HTMLInputElement) => {
    input.value = String(Number(input.max) - 1);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  });
  const afterMove = [await pixels(), await readout()];
  assert.notEqual(afterMove[0], before[0], `${name}: the widget's canvas did not change with t`);
  assert.notEqual(afterMove[1], before[1], `${name}: the alphaBar readout did not change with t`);
}

async function checkTheme(page: Page): Promise<void> {
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await background();
  await page.locator(".theme-toggle").click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  assert.notEqual(await background(), light, "the theme toggle changes the page colours");
}

/** A phone's width: the page fits it, nothing wider than the screen but inside a scroller. */
async function checkPhoneWidth(browser: Browser, url: string, name: string): Promise<void> {
  const { page, problems, close } = await open(browser, url, "light", PHONE);
  try {
    await page.evaluate(() =>
      Promise.all(
        [...document.querySelectorAll("img")].map((img) => {
          img.loading = "eager";
          return img.decode().catch(() => {});
        }),
      )
    );
    const overflow = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      screen: document.documentElement.clientWidth,
      wide: [...document.querySelectorAll<HTMLElement>(".chapter-body > *, .site-footer, .topbar")]
        .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
        .map((el) => `${el.tagName.toLowerCase()}.${el.className}`).slice(0, 5),
    }));
    assert.ok(
      overflow.page <= overflow.screen,
      `${name}: ${overflow.page} px wide at a ${overflow.screen} px phone screen (${overflow.wide})`,
    );
    assert.deepEqual(await unreadableImages(page), [], `${name}: images unreadable on a phone`);
    assert.deepEqual(problems.errors, [], `${name}: errors at phone width`);
    if (SHOTS) {
      await page.screenshot({
        path: `${SHOTS}/${name.replace(/\.html$/, "").replace(/ /g, "-")}-phone.png`,
        fullPage: true,
      });
    }
  } finally {
    await close();
  }
}

async function checkSite(browser: Browser, site: string, label: string): Promise<void> {
  const server = serveStatic({ root: site, port: 0 });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const names = await pageNames(site);
    assert.ok(names.includes("index.html"), `${label}: no index.html`);
    for (const name of names) {
      for (const scheme of SHOTS ? ["light", "dark"] as const : ["light"] as const) {
        const { page, problems, close } = await open(browser, `${base}/${name}`, scheme);
        try {
          await checkPage(page, name);
          await checkWidget(page, name);
          if (scheme === "light" && name === names[0]) await checkTheme(page);
          assert.deepEqual(problems.errors, [], `${label} ${name}: errors while loading`);
          if (SHOTS) {
            await Deno.mkdir(SHOTS, { recursive: true });
            await page.screenshot({
              path: `${SHOTS}/${label}-${name.replace(/\.html$/, "")}-${scheme}.png`,
              fullPage: true,
            });
          }
        } finally {
          await close();
        }
      }
      await checkPhoneWidth(browser, `${base}/${name}`, `${label} ${name}`);
    }
  } finally {
    await server.shutdown();
  }
}

describe("the built site in a browser", { skip: !hasChromium }, () => {
  const { work, options: fixture, copy } = fixtureBook(ROOT, "site");
  let browser: Browser;

  before(async () => {
    await copy();
    const report = await buildBook(fixture);
    assert.equal(report.ok, true, "the fixture book builds");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await removeIfPresent(work);
  });

  /** Runs `check` on a page of the real book built above (if it was), then asks for no errors. */
  async function onRealBookPage(file: string, check: (page: Page) => Promise<void>) {
    const site = `${work}/real-site`;
    if (!(await Deno.stat(site).then(() => true, () => false))) return; // see "serves the real book"
    const { page, problems, close } = await open(browser, `file://${site}/${file}`);
    try {
      await check(page);
      assert.deepEqual(problems.errors, [], file);
    } finally {
      await close();
    }
  }

  it("serves every page without errors, with math, figures and a working widget", async () => {
    await checkSite(browser, `${work}/site`, "fixture");
  });

  it("works from file:// with relative links", async () => {
    const { page, problems, close } = await open(browser, `file://${work}/site/index.html`);
    try {
      await page.locator(".chapter-cards a").first().click();
      await page.waitForLoadState("load");
      assert.match(page.url(), /^file:\/\/.*\/01-basics\.html$/);
      assert.ok(await page.locator(".chapter-body .katex").count() > 0);
      await checkPage(page, "01-basics.html (file://)");
      await checkWidget(page, "01-basics.html (file://)");
      await page.locator(".pager-next").click();
      await page.waitForLoadState("load");
      assert.match(page.url(), /02-plots\.html$/);
      assert.deepEqual(problems.errors, []);
    } finally {
      await close();
    }
  });

  it("serves the real book when every chapter has a stored result", async () => {
    const check = await buildBook({ run: false, site: false, quiet: true, log: () => {} });
    const stored = check.chapters.filter((c) => c.origin === "cached" || c.origin === "frozen");
    if (check.chapters.length === 0 || stored.length < check.chapters.length) {
      console.log(
        `site e2e: real book not checked (${stored.length} of ${check.chapters.length} chapters ` +
          "have stored results; `deno task book` stores them)",
      );
      return;
    }
    const report = await buildBook({
      run: false,
      quiet: true,
      log: () => {},
      buildDir: `${work}/real-src`,
      siteDir: `${work}/real-site`,
    });
    assert.equal(report.ok, true);
    await checkSite(browser, `${work}/real-site`, "book");
  });

  it("folds each chapter's setup cell until clicked, and copies any code block", async () => {
    await onRealBookPage("07-evaluation.html", async (page) => {
      await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
      const setup = page.locator("details.cell-setup").first();
      assert.equal(await setup.getAttribute("open"), null, "folded at first");
      assert.ok(!(await setup.locator("pre").isVisible()));
      assert.match(await setup.locator("summary").textContent() ?? "", /^Setup: imports/);
      await setup.locator("summary").click();
      assert.ok(await setup.locator("pre").isVisible(), "unfolded by a click");
      const lesson = page.locator(".chapter-body div.cell-code pre").first();
      assert.ok(await lesson.isVisible(), "the lesson's code stays open");
      await lesson.locator(".copy-code").click();
      await page.waitForFunction(() =>
        document.querySelector(".chapter-body div.cell-code pre .copy-code")?.textContent ===
          "Copied"
      );
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      const shown = await lesson.locator("code").textContent();
      assert.equal(copied, shown);
      assert.ok(!copied.includes("Copy"), "the button's own text is not copied");
    });
  });

  it("links a citation to its reference, and the reference back to the citation", async () => {
    await onRealBookPage("07-evaluation.html", async (page) => {
      const citation = page.locator("a.citation", { hasText: "Heusel et al., 2017" }).first();
      await citation.click();
      await page.waitForURL(/references\.html#ref-heusel2017$/);
      const entry = page.locator("#ref-heusel2017");
      assert.match(await entry.textContent() ?? "", /Two Time-Scale Update Rule/);
      await entry.locator("a.backlink", { hasText: "chapter 7" }).click();
      await page.waitForURL(/07-evaluation\.html#cite-heusel2017-1$/);
      assert.ok(await page.locator("#cite-heusel2017-1").isVisible());
      assert.equal(await page.locator(".sidebar-extra a").getAttribute("href"), "references.html");
    });
  });

  it("numbers figures, tables and equations, and links references to them across chapters", async () => {
    await onRealBookPage("05-sampling.html", async (page) => {
      const toEquation = page.locator("a.xref", { hasText: "Eq. (1.1)" }).first();
      assert.equal(
        await toEquation.getAttribute("href"),
        "01-forward-process.html#eq-forward-step",
      );
      await toEquation.click();
      await page.waitForURL(/01-forward-process\.html#eq-forward-step$/);
      const equation = page.locator("#eq-forward-step");
      assert.ok(await equation.isVisible());
      assert.equal(await equation.locator(".equation-number").textContent(), "(1.1)");
      // On the page itself: the reference names the number the figure's caption shows.
      const toFigure = page.locator("a.xref", { hasText: /^Figure 1\.\d+$/ }).first();
      const name = (await toFigure.textContent())!;
      const href = (await toFigure.getAttribute("href"))!;
      assert.match(href, /^#fig-[a-z0-9-]+$/);
      await toFigure.click();
      const figure = page.locator(href);
      assert.ok(await figure.isVisible());
      assert.equal(await figure.locator(".figure-number").textContent(), `${name}:`);
      const tables = await page.locator("figure.output-table .figure-number").allTextContents();
      assert.deepEqual(tables.slice(0, 1), ["Table 1.1:"], "tables are numbered on their own");
    });
  });

  it("searches the book from every page, served and from file://", async () => {
    const site = `${work}/real-site`;
    if (!(await Deno.stat(site).then(() => true, () => false))) return; // see the test above
    const server = serveStatic({ root: site, port: 0 });
    try {
      for (
        const url of [
          `http://127.0.0.1:${server.addr.port}/05-sampling.html`,
          `file://${site}/01-forward-process.html`,
        ]
      ) {
        const { page, problems, close } = await open(browser, url);
        try {
          await page.keyboard.press("/");
          const box = page.locator(".search-input");
          assert.ok(await box.evaluate((el) => el === document.activeElement), "/ focuses it");
          await box.fill("classifier-free");
          const first = page.locator(".search-hit").first();
          await first.waitFor({ timeout: 15_000 });
          assert.match(await first.getAttribute("href") ?? "", /^06-conditioning\.html#/, url);
          assert.match(await first.textContent() ?? "", /Classifier-free guidance/);
          // The combobox pattern: a screen reader hears the list open and the option chosen.
          assert.equal(await box.getAttribute("aria-expanded"), "true");
          await box.press("ArrowDown");
          assert.equal(await box.getAttribute("aria-activedescendant"), "search-hit-0");
          assert.equal(await page.locator("#search-hit-0").getAttribute("aria-selected"), "true");
          await box.press("Enter");
          await page.waitForURL(/06-conditioning\.html#classifier-free-guidance$/);
          await box.fill("zzqx nothing");
          await page.locator(".search-note").waitFor();
          assert.match(await page.locator(".search-note").textContent() ?? "", /Nothing/);
          assert.deepEqual(problems.errors, [], url);
        } finally {
          await close();
        }
      }
    } finally {
      await server.shutdown();
    }
  });
});
