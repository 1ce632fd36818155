/**
 * The book's trained models, live in headless Chromium: the real book is built from its frozen
 * results, and the live samplers of chapters 5 and 6 are used as a reader would, from file://
 * and from a server. Each produces images without console errors and without a request leaving
 * the book; each network's output ε̂ on the fixed probe input equals Deno's on `cpu` (the same
 * float16 weights, decoded by the same code) within 1e-4 on wasm. WebGL computes on the GPU in
 * float32 with the GPU's own exp and rsqrt; on SwiftShader (Chromium's CPU renderer, all this
 * machine has) it differs from cpu by about 1e-4 where wasm differs by 2e-6, and is held to
 * 1e-4 of ε̂'s largest value. A missing or truncated weight file, an unavailable backend, or
 * inputs changed mid-run are said in the page, which stays usable.
 *
 * Skipped, with a message, when /usr/bin/chromium is absent (Debian: `apt-get install chromium`).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { chromium } from "playwright-core";
import type { Browser, Locator, Page } from "playwright-core";
import { buildBook } from "../scripts/book/build.ts";
import { removeIfPresent } from "../scripts/book/results.ts";
import { serveStatic } from "../scripts/book/static_server.ts";
import { liveModelBytes } from "../lib/zoo/live_export.ts";
import {
  decodeLiveModel,
  type LiveDenoiser,
  type LiveTextEncoder,
} from "../lib/browser/live_model.ts";
import { liveProbe } from "../lib/browser/live_sampling.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const CHROMIUM = "/usr/bin/chromium";
const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!hasChromium) {
  console.log(`live e2e: skipped, ${CHROMIUM} not found (install Debian's chromium to run it)`);
}
/** Chromium's own log line for a file it could not load (not something the page threw). */
const RESOURCE_FAILED = /^console: Failed to load resource/;

/** Bytes of the live files each page fetched, by URL (for the served page's download). */
const liveBytes = new Map<string, number>();

interface Opened {
  page: Page;
  /** Console errors, page errors, and requests that left the book. */
  problems: string[];
  close(): Promise<void>;
}

async function open(browser: Browser, url: string, origin: string): Promise<Opened> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  const live = /\/assets\/(live\/|widgets\/live-)/;
  page.on("response", async (r) => {
    if (live.test(r.url())) liveBytes.set(r.url(), (await r.body().catch(() => null))?.length ?? 0);
  });
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.name}: ${e.message}`));
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("blob:") && !u.startsWith("data:")) {
      problems.push(`request outside the book: ${u}`);
    }
  });
  await page.goto(url, { waitUntil: "load" });
  return { page, problems, close: () => context.close() };
}

/** Waits until the widget is done or failed, and returns which. */
async function settled(widget: Locator, timeout = 180_000): Promise<string> {
  await widget.page().waitForFunction(
    (el) => el?.getAttribute("data-state") === "done" || el?.getAttribute("data-state") === "error",
    await widget.elementHandle(),
    { timeout },
  );
  return (await widget.getAttribute("data-state"))!;
}

/** The standard deviation of the x_t canvas's pixel values: 0 for a blank or flat canvas. */
function canvasSpread(widget: Locator): Promise<number> {
  return widget.locator("canvas").first().evaluate((c: HTMLCanvasElement) => {
    const { data } = c.getContext("2d")!.getImageData(0, 0, c.width, c.height);
    let sum = 0, sq = 0;
    for (const v of data) (sum += v, sq += v * v);
    const mean = sum / data.length;
    return Math.sqrt(sq / data.length - mean * mean);
  });
}

/** The x_t canvas's RGBA values (x_0 once a run is done). */
function canvasPixels(widget: Locator): Promise<number[]> {
  return widget.locator("canvas").first().evaluate((c: HTMLCanvasElement) =>
    Array.from(c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data)
  );
}

async function sampleOnce(widget: Locator, label: string): Promise<void> {
  await widget.locator(".live-go").click();
  const state = await settled(widget);
  assert.equal(state, "done", `${label}: ${await widget.locator(".live-error").textContent()}`);
  assert.ok(await canvasSpread(widget) > 10, `${label}: the canvas shows no images`);
  assert.match(await widget.locator(".live-readout").textContent() ?? "", /ms per step, on wasm/);
}

describe("the book's models live in the page", { skip: !hasChromium }, () => {
  const work = `${ROOT}/.cache/test/live-${crypto.randomUUID().slice(0, 8)}`;
  const site = `${work}/site`;
  let browser: Browser;
  let server: ReturnType<typeof serveStatic>;
  let base: string;

  before(async () => {
    const report = await buildBook({
      run: false,
      quiet: true,
      log: () => {},
      buildDir: `${work}/src`,
      siteDir: site,
    });
    assert.equal(report.ok, true, "the book builds from its stored results");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // SwiftShader gives WebGL on a machine without a GPU, so that WebGL is tested too.
      args: [
        "--no-sandbox",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--no-first-run",
      ],
    });
    server = serveStatic({ root: site, port: 0 });
    base = `http://127.0.0.1:${server.addr.port}`;
  });
  after(async () => {
    await browser?.close();
    await server?.shutdown();
    await removeIfPresent(work);
  });

  it("chapter 5 samples in the page from file:// and from a server, all from the book", async () => {
    for (
      const [url, origin] of [
        [`file://${site}/05-sampling.html`, "file://"],
        [`${base}/05-sampling.html`, base],
      ]
    ) {
      liveBytes.clear();
      const { page, problems, close } = await open(browser, url, origin);
      try {
        const widget = page.locator('.widget[data-widget="live-sampler"]');
        assert.equal(await widget.getAttribute("data-state"), "idle");
        assert.match(await widget.locator(".live-status").textContent() ?? "", /press Sample/);
        await sampleOnce(widget, url);
        assert.deepEqual(problems, [], url);
        if (origin === base) {
          // What a reader downloads for the first batch: the widget, worker, wasm and weights.
          const total = [...liveBytes.values()].reduce((a, b) => a + b, 0);
          assert.ok(liveBytes.size >= 4 && total < 5e6, `chapter 5 downloads ${total} bytes`);
          console.log(
            `live e2e: chapter 5's first batch downloaded ${(total / 1e6).toFixed(2)} MB`,
          );
        }
      } finally {
        await close();
      }
    }
  });

  it("chapter 6 draws from a prompt, a negative prompt, a class and a mixed context", async () => {
    const { page, problems, close } = await open(
      browser,
      `file://${site}/06-conditioning.html`,
      "file://",
    );
    try {
      const widget = page.locator('.widget[data-widget="live-sampler"]');
      await widget.locator('input[type="text"]').first().fill("red apple zebraxyz");
      await widget.locator('input[type="text"]').nth(1).fill("green");
      await sampleOnce(widget, "text16-unet");
      assert.match(await widget.locator(".live-status").textContent() ?? "", /\[UNK\]: zebraxyz/);
      for (const [model, mix] of [["class16-unet", ""], ["context16-unet", "3"]]) {
        await widget.locator("select").first().selectOption(model);
        await widget.locator("select").filter({ has: page.locator('option[value=""]') })
          .selectOption(mix);
        await sampleOnce(widget, `${model}${mix ? " mixed" : ""}`);
      }
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });

  it("chapter 9's LoRA slider turns the adapter from the base (s = 0) to as trained (s = 1)", async () => {
    const { page, problems, close } = await open(
      browser,
      `file://${site}/09-fine-tuning.html`,
      "file://",
    );
    try {
      const widget = page.locator('.widget[data-widget="live-sampler"]');
      const strengthField = widget.locator("label.live-field", { hasText: "LoRA strength" });
      const slider = strengthField.locator('input[type="range"]');
      assert.ok(await strengthField.isVisible(), "the LoRA strength is offered");
      await sampleOnce(widget, "LoRA at s = 1");
      const adapted = await canvasPixels(widget);
      await slider.evaluate((input: HTMLInputElement) => {
        input.value = "0";
        input.dispatchEvent(new Event("input"));
      });
      assert.equal(await settled(widget), "done");
      const atZero = await canvasPixels(widget);
      await widget.locator("select").first().selectOption("text16-unet");
      assert.equal(await settled(widget), "done");
      assert.ok(!(await strengthField.isVisible()), "no LoRA strength for the base");
      const plain = await canvasPixels(widget);
      assert.deepEqual(atZero, plain, "s = 0 draws the base's images");
      assert.notDeepEqual(adapted, plain, "s = 1 draws others");
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });

  it("each network's output equals Deno's on cpu within 1e-4, on wasm and on WebGL", async () => {
    await tf.setBackend("cpu");
    const clip = decodeLiveModel(await liveModelBytes("tiny-clip", ROOT)) as LiveTextEncoder;
    const { page, problems, close } = await open(
      browser,
      `file://${site}/06-conditioning.html`,
      "file://",
    );
    try {
      for (
        const name of [
          "emoji16-unet",
          "class16-unet",
          "context16-unet",
          "text16-unet",
          "text16-lora-openmoji-r4",
        ]
      ) {
        const model = decodeLiveModel(await liveModelBytes(name, ROOT)) as LiveDenoiser;
        const deno = await liveProbe(model, name.startsWith("text16") ? clip : undefined);
        model.network.dispose();
        const scale = deno.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        for (const backend of ["wasm", "webgl"]) {
          const chromium = await page.evaluate(
            ([m, b]) =>
              (globalThis as unknown as {
                workbookLive: { probe(m: string, b: string): Promise<number[]> };
              }).workbookLive.probe(m, b),
            [name, backend],
          );
          assert.equal(chromium.length, deno.length, `${name} on ${backend}`);
          const worst = chromium.reduce((w, v, i) => Math.max(w, Math.abs(v - deno[i])), 0);
          const bound = backend === "wasm" ? 1e-4 : 1e-4 * scale;
          assert.ok(worst < bound, `${name} on ${backend}: max |Chromium − Deno| = ${worst}`);
        }
      }
      assert.deepEqual(problems, []);
    } finally {
      clip.encoder.dispose();
      await close();
    }
  });

  it("says in the page what went wrong, and stays usable", async () => {
    const weights = `${site}/assets/live/emoji16-unet.js`;
    const whole = await Deno.readTextFile(weights);
    const { page, problems, close } = await open(
      browser,
      `file://${site}/05-sampling.html`,
      "file://",
    );
    try {
      const widget = page.locator('.widget[data-widget="live-sampler"]');
      const error = widget.locator(".live-error");
      const backend = widget.locator("select").filter({
        has: page.locator('option[value="webgpu"]'),
      });
      // Weights cut off in the middle, then missing.
      // (Cut as a download is cut: mid-string, so that the script does not even parse.)
      await Deno.writeTextFile(weights, whole.slice(0, Math.floor(whole.length / 2)));
      await widget.locator(".live-go").click();
      assert.equal(await settled(widget), "error");
      assert.match(await error.textContent() ?? "", /cut off|damaged/);
      await Deno.remove(weights);
      await widget.locator(".live-go").click();
      assert.equal(await settled(widget), "error");
      assert.match(
        await error.textContent() ?? "",
        /could not load assets\/live\/emoji16-unet\.js/,
      );
      // A backend this machine lacks, asked for by name.
      await backend.selectOption("webgpu");
      assert.equal(await settled(widget), "error");
      assert.match(await error.textContent() ?? "", /webgpu cannot run here/);
      // The file restored and the backend back on auto, it samples; a change of the inputs
      // mid-run starts the new run.
      await Deno.writeTextFile(weights, whole);
      await backend.selectOption("auto");
      await page.waitForFunction(
        (el) => /step \d+ of 25/.test(el?.textContent ?? ""),
        await widget.locator(".live-step").elementHandle(),
        { timeout: 120_000 },
      );
      await widget.locator('input[type="number"]').first().fill("10");
      assert.equal(await settled(widget), "done");
      assert.ok(Number(await widget.getAttribute("data-cancelled")) >= 1, "the first run stopped");
      assert.match(await widget.locator(".live-step").textContent() ?? "", /step 10 of 10/);
      assert.match(await widget.locator(".live-readout").textContent() ?? "", /on wasm/);
      assert.ok(await error.isHidden(), "the error is cleared once a run succeeds");
      assert.deepEqual(problems.filter((p) => !RESOURCE_FAILED.test(p)), []);
    } finally {
      await Deno.writeTextFile(weights, whole);
      await close();
    }
  });
});
