/**
 * The live sampler: the page component that samples from the book's own trained models in the
 * reader's browser. It mounts on every
 *
 *   <div class="widget" data-widget="live-sampler"><script type="application/json">{…}</script></div>
 *
 * whose JSON is a {@link LiveWidgetConfig}, and talks to a Web Worker (lib/browser/worker.ts)
 * that runs the library's networks and samplers. Nothing loads before the reader presses
 * "Sample": then the worker, the backend and the model's weights, each named in the status line
 * while it loads. Every change of an input while a batch is drawn starts a new one (the old
 * stops after its current step); every fault (no backend, a weight file missing or cut short, a bad
 * input) is said in the widget, which stays usable.
 *
 * What it loads lies in `assets/live/` (lib/browser/transport.ts): served, it fetches the gzipped
 * `.bin` files; opened from `file://`, where a page may load scripts but not `fetch` files, it
 * runs the `.js` scripts that carry them. The worker starts from a `blob:` URL of its source for
 * the same reason. `data-state` (idle, running, done, error) and `data-cancelled` (runs replaced
 * by a newer one) on the widget's element say where it is.
 *
 * `window.workbookLive.probe(model, backend)` returns a network's output on the fixed input of
 * `liveProbe`, and `window.workbookLive.time(model, backend, request)` the time of a sampling
 * request, for the book's tests and benchmark (and the curious reader's console).
 *
 * This module is the bundle's entry; it runs only in a page.
 *
 * @module
 */

import type { FromWorker, ToWorker } from "./worker.ts";
import type { LiveCondition, LiveSampleRequest, LiveSamplerName } from "./live_sampling.ts";
import type { LivePageInfo } from "./live_model.ts";
import type { BrowserBackend, BrowserBackendChoice } from "./backend.ts";
import type { RgbaImage } from "../core/images.ts";
import { fromBase64, unpackAsset } from "./transport.ts";

/** What a chapter puts in the widget's JSON. */
export interface LiveWidgetConfig {
  /** The title line. */
  title?: string;
  /** The zoo models to offer, the first chosen at the start. */
  models: string[];
  /** Images per batch (default 16). */
  count?: number;
  /** Starting sampler, steps, η, guidance scale, seed, prompt. */
  sampler?: LiveSamplerName;
  steps?: number;
  eta?: number;
  guidance?: number;
  /** A LoRA model's starting strength (default 1). */
  loraStrength?: number;
  seed?: number;
  prompt?: string;
  negativePrompt?: string;
}

/** What the book's build writes before this script: the sizes of the files a widget loads. */
interface LiveFiles {
  /** File name in `assets/live/` (`live-worker.bin`, `NAME.js`, …) → bytes. */
  sizes: Record<string, number>;
  /** Model name → its description and conditioning, for the controls before it loads. */
  models: Record<string, LivePageInfo>;
}

type Global = typeof globalThis & {
  /** What the scripts of `assets/live/` define: name → base64 (lib/browser/transport.ts). */
  workbookLiveAssets?: Record<string, string>;
  workbookLiveFiles?: LiveFiles;
  workbookLive?: {
    probe(model: string, backend?: string): Promise<number[]>;
    time(
      model: string,
      backend: string,
      request: LiveSampleRequest,
    ): Promise<{ ms: number; backend?: BrowserBackendChoice }>;
  };
};
const page = globalThis as Global;
const here = (document.currentScript as HTMLScriptElement | null)?.src ?? document.baseURI;
const files: LiveFiles = page.workbookLiveFiles ?? { sizes: {}, models: {} };

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(bytes < 1e6 ? 2 : 1)} MB`;

const fromDisk = location.protocol === "file:";

/**
 * Run the script `file` (relative to this one) and return what it defined under `name`; the
 * element is removed once it ran. A script that is missing, or cut off so that it does not
 * parse, is an error that says so (its parse error is kept out of the console).
 */
function runScript(file: string, name: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const script = document.createElement("script");
    script.src = new URL(file, here).href;
    const shown = `assets/live/${file.replace(/^.*\//, "")}`;
    const parseError = (event: ErrorEvent) => {
      // From file:// every script is another origin's, so its errors come muted ("Script
      // error.", no file name): while this one loads, a muted error is taken to be its.
      if (event.filename !== script.src && event.filename !== "") return;
      event.preventDefault();
      reject(
        new Error(
          `${shown} is damaged: it does not parse, and was probably cut off; rebuild the book`,
        ),
      );
    };
    const done = () => {
      removeEventListener("error", parseError);
      script.remove();
    };
    addEventListener("error", parseError);
    script.onload = () => {
      done();
      const text = page.workbookLiveAssets?.[name];
      delete page.workbookLiveAssets?.[name];
      if (typeof text === "string") resolve(text);
      else {reject(
          new Error(
            `${shown} loaded but defines no "${name}": the file is damaged; rebuild the book`,
          ),
        );}
    };
    script.onerror = () => {
      done();
      reject(
        new Error(
          `could not load ${shown}: the file is missing from the site (rebuild the book with \`deno task book\`)`,
        ),
      );
    };
    document.head.appendChild(script);
  });
}

/** Live assets by name, gzipped, each read once and shared (a failed read is tried again). */
const assets = new Map<string, Promise<Uint8Array>>();

/**
 * Live asset `name` (a model, `wasm-simd`, `wasm-plain`, `live-worker`), gzipped: fetched as
 * `assets/live/NAME.bin` from a server, else from the script `NAME.js` that defines it.
 */
function liveAsset(name: string): Promise<Uint8Array> {
  let reading = assets.get(name);
  if (!reading) {
    reading = (async () => {
      if (!fromDisk) {
        const response = await fetch(new URL(`../live/${name}.bin`, here)).catch(() => undefined);
        if (response?.ok) return new Uint8Array(await response.arrayBuffer());
      }
      return fromBase64(await runScript(`../live/${name}.js`, name), `assets/live/${name}.js`);
    })();
    assets.set(name, reading);
    reading.catch(() => assets.delete(name));
  }
  return reading;
}

/** A worker from the bundled source, with the page answering its `need`s. */
async function startWorker(
  onMessage: (m: FromWorker) => void,
  onFault: (e: string) => void,
): Promise<Worker> {
  const source = await unpackAsset(await liveAsset("live-worker"), "assets/live/live-worker");
  const url = URL.createObjectURL(new Blob([source as BlobPart], { type: "text/javascript" }));
  const worker = new Worker(url);
  worker.onerror = (e) => {
    e.preventDefault();
    worker.terminate();
    onFault(
      `the sampling worker stopped (${e.message || "an error in the worker"}); press Sample ` +
        "to start it again, or reload the page",
    );
  };
  worker.onmessage = async ({ data }: MessageEvent<FromWorker>) => {
    URL.revokeObjectURL(url); // the worker has started: its source is no longer needed
    if (data.type !== "need") return onMessage(data);
    try {
      // A copy: the page keeps its own, for the next worker.
      const binary = await liveAsset(data.what.replace(/^model:/, ""));
      worker.postMessage({ type: "give", id: data.id, binary } satisfies ToWorker);
    } catch (e) {
      worker.postMessage(
        { type: "give", id: data.id, error: (e as Error).message } satisfies ToWorker,
      );
    }
  };
  return worker;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function field(label: string, input: HTMLElement, output?: HTMLElement): HTMLLabelElement {
  return el("label", { class: "live-field" }, [
    el("span", { text: label }),
    input,
    ...(output ? [output] : []),
  ]);
}

function select(options: [string, string][], value: string): HTMLSelectElement {
  const s = el("select");
  for (const [v, text] of options) s.append(el("option", { value: v, text }));
  s.value = value;
  return s;
}

function range(min: number, max: number, step: number, value: number): HTMLInputElement {
  return el("input", {
    type: "range",
    min: `${min}`,
    max: `${max}`,
    step: `${step}`,
    value: `${value}`,
  });
}

function draw(canvas: HTMLCanvasElement, image: RgbaImage) {
  canvas.width = image.width;
  canvas.height = image.height;
  const data = new ImageData(Uint8ClampedArray.from(image.data), image.width, image.height);
  canvas.getContext("2d")!.putImageData(data, 0, 0);
}

function mount(root: HTMLElement) {
  if (root.dataset.mounted) return;
  root.dataset.mounted = "true";
  let config: LiveWidgetConfig;
  try {
    config = JSON.parse(
      root.querySelector('script[type="application/json"]')?.textContent ?? "null",
    );
    if (!config || !Array.isArray(config.models) || config.models.length === 0) {
      throw new Error("it names no models");
    }
  } catch (e) {
    root.append(
      el("p", {
        class: "live-error",
        text: `This live sampler's settings are broken: ${(e as Error).message}.`,
      }),
    );
    return;
  }
  const about = (name: string) => files.models[name];
  const count = config.count ?? 16;

  const model = select(config.models.map((m) => [m, m]), config.models[0]);
  const sampler = select(
    [["ddpm", "DDPM"], ["ddim", "DDIM"], ["dpm-solver++", "DPM-Solver++(2M)"]],
    config.sampler ?? "ddim",
  );
  const steps = el("input", {
    type: "number",
    min: "1",
    max: "1000",
    value: `${config.steps ?? 25}`,
  });
  const eta = range(0, 1, 0.1, config.eta ?? 0);
  const etaOut = el("output");
  const seed = el("input", { type: "number", min: "0", value: `${config.seed ?? 0}` });
  const reseed = el("button", { type: "button", text: "new seed" });
  const backend = select([["auto", "auto"], ["webgpu", "WebGPU"], ["webgl", "WebGL"], [
    "wasm",
    "wasm",
  ], ["cpu", "cpu"]], "auto");
  const guidance = range(0, 10, 0.5, config.guidance ?? 3);
  const guidanceOut = el("output");
  // [0, 2]: what checkLiveRequest accepts (LIVE_LORA_STRENGTH; this bundle imports no tfjs).
  const loraStrength = range(0, 2, 0.25, config.loraStrength ?? 1);
  const loraOut = el("output");
  const prompt = el("input", {
    type: "text",
    value: config.prompt ?? "red apple",
    maxlength: "200",
  });
  const negative = el("input", {
    type: "text",
    value: config.negativePrompt ?? "",
    placeholder: "(none)",
    maxlength: "200",
  });
  const label = el("select");
  const mixWith = el("select");
  const mix = range(0, 1, 0.05, 1);
  const mixOut = el("output");
  const go = el("button", { type: "button", class: "live-go", text: "Sample" });

  const status = el("p", { class: "live-status", role: "status", "aria-live": "polite" });
  const fault = el("p", { class: "live-error", role: "alert", hidden: "" });
  const xtCanvas = el("canvas", { class: "live-canvas", "aria-label": "x_t" });
  const x0Canvas = el("canvas", { class: "live-canvas", "aria-label": "predicted x₀" });
  const stepLine = el("p", { class: "live-step", text: "x_T: not drawn yet" });
  const xtCaption = el("figcaption", { text: "x_t" });
  const readout = el("p", { class: "live-readout" });

  const etaField = field("DDIM η", eta, etaOut);
  const guidanceField = field("guidance scale s", guidance, guidanceOut);
  const loraField = field("LoRA strength", loraStrength, loraOut);
  const textFields = [field("prompt", prompt), field("negative prompt", negative)];
  const classFields = [
    field("class", label),
    field("mixed with", mixWith),
    field("mix w", mix, mixOut),
  ];
  root.append(
    el("p", {
      class: "live-title",
      text: config.title ?? "Sample from the book's model, in this page",
    }),
    el("div", { class: "live-controls" }, [
      ...(config.models.length > 1 ? [field("model", model)] : []),
      field("sampler", sampler),
      field("steps", steps),
      etaField,
      field("seed", seed),
      reseed,
      field("backend", backend),
      go,
    ]),
    el("div", { class: "live-controls" }, [
      ...textFields,
      ...classFields,
      guidanceField,
      loraField,
    ]),
    el("div", { class: "live-stage" }, [
      el("figure", {}, [xtCanvas, xtCaption]),
      el("figure", {}, [x0Canvas, el("figcaption", { text: "predicted x̂₀" })]),
    ]),
    stepLine,
    status,
    readout,
    fault,
  );

  const conditioning = () => about(model.value)?.conditioning ?? { kind: "none" };
  function showControls() {
    const c = conditioning();
    etaField.hidden = sampler.value !== "ddim";
    etaOut.value = Number(eta.value).toFixed(1);
    guidanceOut.value = Number(guidance.value).toFixed(1);
    mixOut.value = Number(mix.value).toFixed(2);
    guidanceField.hidden = c.kind === "none";
    loraOut.value = Number(loraStrength.value).toFixed(2);
    loraField.hidden = !about(model.value)?.lora;
    for (const f of textFields) f.hidden = c.kind !== "text";
    for (const f of classFields) f.hidden = c.kind !== "class";
    if (c.kind === "class" && label.dataset.model !== model.value) {
      label.dataset.model = model.value;
      label.replaceChildren(
        ...c.labels.map((name, k) => el("option", { value: `${k}`, text: name })),
      );
      mixWith.replaceChildren(
        el("option", { value: "", text: "(nothing)" }),
        ...c.labels.map((name, k) => el("option", { value: `${k}`, text: name })),
      );
    }
    classFields[2].hidden = c.kind !== "class" || mixWith.value === "";
    const ext = fromDisk ? "js" : "bin";
    const size = [
      "live-worker",
      model.value,
      ...(c.kind === "text" ? [c.encoder] : []),
    ].reduce((sum, name) => sum + (files.sizes[`${name}.${ext}`] ?? 0), 0);
    const info = about(model.value);
    if (!started) {
      status.textContent =
        `${model.value}${info ? ` (${info.parameters.toLocaleString("en")} parameters)` : ""}: ` +
        `press Sample to load the library and its weights (${megabytes(size)}${
          fromDisk ? " from disk" : ""
        }).`;
    }
  }

  function request(): LiveSampleRequest {
    const c = conditioning();
    const condition: LiveCondition = c.kind === "text"
      ? { kind: "text", prompt: prompt.value, negativePrompt: negative.value }
      : c.kind === "class"
      ? {
        kind: "class",
        label: Number(label.value),
        ...(mixWith.value === ""
          ? {}
          : { mixWith: Number(mixWith.value), weight: Number(mix.value) }),
      }
      : { kind: "none" };
    return {
      count,
      seed: Number(seed.value),
      sampler: sampler.value as LiveSamplerName,
      steps: Number(steps.value),
      eta: Number(eta.value),
      guidance: Number(guidance.value),
      ...(about(model.value)?.lora ? { loraStrength: Number(loraStrength.value) } : {}),
      condition,
    };
  }

  let worker: Promise<Worker> | undefined;
  let started = false;
  let id = 0;
  let choice: BrowserBackendChoice | undefined;
  const say = (text: string) => (status.textContent = text);
  /** Set when the next run must (re)start the worker's backend: at first, after a change of the
   * backend menu, and after the backend failed to start. */
  let restart = true;
  const fail = (text: string) => {
    fault.hidden = false;
    fault.textContent = text;
    root.dataset.state = "error";
    say("Stopped.");
  };
  /** The worker died: the next run starts a new one. */
  const workerFailed = (text: string) => {
    worker = undefined;
    restart = true;
    fail(text);
  };

  function onMessage(m: FromWorker) {
    if (m.type === "cancelled") {
      root.dataset.cancelled = `${Number(root.dataset.cancelled ?? 0) + 1}`;
      return;
    }
    // id 0: the backend's start, which every later run depends on.
    if ("id" in m && m.id !== id && m.id !== 0) return; // an older run's
    switch (m.type) {
      case "backend":
        choice = m.choice;
        root.dataset.backend = m.choice.name;
        say(`Running on ${m.choice.name} (${m.choice.detail}); loading ${model.value}…`);
        return;
      case "loaded":
        say(`${m.info.name} loaded in ${(m.ms / 1000).toFixed(1)} s; sampling…`);
        return;
      case "step":
        xtCaption.textContent = "x_t";
        draw(xtCanvas, m.xt);
        draw(x0Canvas, m.predX0);
        stepLine.textContent = `step ${m.index + 1} of ${m.total} · t = ${m.t} · ${
          m.msPerStep.toFixed(0)
        } ms per step`;
        return;
      case "done": {
        draw(xtCanvas, m.image);
        xtCaption.textContent = "x₀: the samples";
        root.dataset.state = "done";
        root.dataset.msPerStep = m.msPerStep.toFixed(1);
        fault.hidden = true;
        const passed = choice?.passedOver.map((p) => `${p.name}: ${p.reason}`).join("; ");
        readout.textContent =
          `${count} images in ${(m.ms / 1000).toFixed(2)} s, ${
            m.msPerStep.toFixed(0)
          } ms per step, ` +
          `on ${choice?.name} (${choice?.detail})${passed ? `. Not used: ${passed}` : ""}.`;
        say(m.note ? `Done. Note: ${m.note}.` : "Done.");
        return;
      }
      case "error":
        if (m.id === 0) restart = true; // the backend did not start: try again next time
        return fail(m.message);
      case "probed":
        return;
    }
  }

  async function run() {
    fault.hidden = true;
    started = true;
    root.dataset.state = "running";
    const wanted = request();
    try {
      worker ??= startWorker(onMessage, workerFailed);
      const w = await worker;
      if (restart) {
        restart = false;
        w.postMessage(
          { type: "start", backend: backend.value as BrowserBackend } satisfies ToWorker,
        );
      }
      say(`Sampling ${count} images with ${sampler.selectedOptions[0].text}…`);
      w.postMessage(
        { type: "sample", id: ++id, model: model.value, request: wanted } satisfies ToWorker,
      );
    } catch (e) {
      workerFailed((e as Error).message);
    }
  }

  for (
    const input of [
      sampler,
      steps,
      eta,
      seed,
      guidance,
      loraStrength,
      prompt,
      negative,
      label,
      mixWith,
      mix,
      model,
    ]
  ) {
    input.addEventListener("input", () => {
      showControls();
      if (started) run();
    });
  }
  backend.addEventListener("change", () => {
    restart = true;
    showControls();
    if (started) run();
  });
  reseed.addEventListener("click", () => {
    seed.value = `${Math.floor(Math.random() * 1e6)}`;
    showControls();
    if (started) run();
  });
  go.addEventListener("click", () => run());
  root.dataset.state = "idle";
  showControls();
}

/**
 * One worker for one question on `backend`: `first` is posted once the backend starts, and
 * `answer` sees every reply until it settles (it may post more).
 */
async function ask<T>(
  backend: string,
  first: ToWorker,
  answer: (m: FromWorker, done: (v: T) => void, post: (m: ToWorker) => void) => void,
): Promise<T> {
  let settle!: { resolve: (v: T) => void; reject: (e: Error) => void };
  const result = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
  const worker = await startWorker((m) => {
    if (m.type === "error") settle.reject(new Error(m.message));
    else answer(m, settle.resolve, (next) => worker.postMessage(next));
  }, (e) => settle.reject(new Error(e)));
  worker.postMessage({ type: "start", backend: backend as BrowserBackend } satisfies ToWorker);
  worker.postMessage(first);
  try {
    return await result;
  } finally {
    worker.terminate();
  }
}

/** The network's output on `liveProbe`'s fixed input. */
function probe(model: string, backend = "auto"): Promise<number[]> {
  return ask(backend, { type: "probe", id: 1, model }, (m, done) => {
    if (m.type === "probed") done(Array.from(m.values));
  });
}

/** Sample `request` twice (the first run warms up); the second run's time, and the backend. */
function time(model: string, backend: string, request: LiveSampleRequest) {
  let choice: BrowserBackendChoice | undefined;
  return ask<{ ms: number; backend?: BrowserBackendChoice }>(
    backend,
    { type: "sample", id: 1, model, request },
    (m, done, post) => {
      if (m.type === "backend") choice = m.choice;
      if (m.type === "done" && m.id === 1) post({ type: "sample", id: 2, model, request });
      if (m.type === "done" && m.id === 2) done({ ms: m.ms, backend: choice });
    },
  );
}

page.workbookLive = { probe, time };
const mountAll = () =>
  document.querySelectorAll<HTMLElement>('.widget[data-widget="live-sampler"]').forEach(mount);
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
