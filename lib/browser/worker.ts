/**
 * The live models' Web Worker: it holds the backend and the networks, and samples off the
 * page's main thread, so the page stays responsive while a batch is drawn.
 *
 * Messages from the page ({@link ToWorker}) and to it ({@link FromWorker}). The worker asks
 * the page for what it cannot load itself (a worker started from a `blob:` URL on a `file://`
 * page may load nothing): a model's bytes and the wasm binary, each by a `need` answered by a
 * `give`. A `sample` replaces any run still going: that one stops after its current step and
 * reports `cancelled`.
 *
 * This module is the bundle's entry; it runs only inside a worker.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type BrowserBackend, type BrowserBackendChoice, chooseBrowserBackend } from "./backend.ts";
import {
  decodeLiveModel,
  disposeLiveModel,
  type LiveDenoiser,
  type LiveModel,
  type LiveModelInfo,
  type LiveTextEncoder,
} from "./live_model.ts";
import { Cancelled, liveProbe, liveSample, type LiveSampleRequest } from "./live_sampling.ts";
import type { RgbaImage } from "../core/images.ts";
import { unpackAsset } from "./transport.ts";

/** A message from the page. */
export type ToWorker =
  | { type: "start"; backend: BrowserBackend | "auto" }
  | { type: "sample"; id: number; model: string; request: LiveSampleRequest }
  | { type: "probe"; id: number; model: string }
  /** The answer to a `need`: the gzipped file (lib/browser/transport.ts), or why not. */
  | { type: "give"; id: number; binary?: Uint8Array; error?: string };

/** A message to the page. */
export type FromWorker =
  | { type: "backend"; choice: BrowserBackendChoice }
  | { type: "need"; id: number; what: string }
  | { type: "loaded"; id: number; info: LiveModelInfo; ms: number }
  | {
    type: "step";
    id: number;
    index: number;
    total: number;
    t: number;
    xt: RgbaImage;
    predX0: RgbaImage;
    msPerStep: number;
  }
  | { type: "done"; id: number; image: RgbaImage; ms: number; msPerStep: number; note?: string }
  | { type: "probed"; id: number; values: Float32Array; backend: string }
  | { type: "cancelled"; id: number }
  | { type: "error"; id: number; message: string };

const scope = self as unknown as {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};
const post = (message: FromWorker) => scope.postMessage(message);

let asked = 0;
const waiting = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
/** Ask the page for `what` (`wasm-simd`, `wasm-plain`, `model:NAME`). */
function need(what: string): Promise<Uint8Array> {
  const id = ++asked;
  post({ type: "need", id, what });
  return new Promise<Uint8Array>((resolve, reject) => waiting.set(id, { resolve, reject }))
    .then((binary) => unpackAsset(binary, `assets/live/${what.replace(/^model:/, "")}`));
}

/** A pause of one task, so that messages that came in meanwhile are read. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(0);
  });
}

let backend: Promise<BrowserBackendChoice> | undefined;
const models = new Map<string, Promise<LiveModel>>();
/** Runs one after another; `latest` is the newest sample request's id. */
let queue: Promise<unknown> = Promise.resolve();
let latest = 0;

function start(wanted: BrowserBackend | "auto"): Promise<BrowserBackendChoice> {
  for (const model of models.values()) model.then(disposeLiveModel, () => {});
  models.clear();
  backend = chooseBrowserBackend(wanted, (variant) => need(`wasm-${variant}`));
  return backend;
}

function model(name: string, id: number): Promise<LiveModel> {
  let loading = models.get(name);
  if (!loading) {
    loading = (async () => {
      await (backend ?? start("auto"));
      const begun = performance.now();
      const built = decodeLiveModel(await need(`model:${name}`), `the live model ${name}`);
      post({ type: "loaded", id, info: built.info, ms: performance.now() - begun });
      return built;
    })();
    models.set(name, loading);
    const mine = loading;
    mine.catch(() => {
      if (models.get(name) === mine) models.delete(name); // a failed load may be tried again
    });
  }
  return loading;
}

async function denoiserAndText(
  name: string,
  id: number,
): Promise<{ denoiser: LiveDenoiser; text?: LiveTextEncoder }> {
  const denoiser = await model(name, id);
  if (!("network" in denoiser)) {
    throw new Error(
      `${name} is a text encoder, not a denoiser: name a denoiser in the widget's models`,
    );
  }
  const c = denoiser.info.conditioning;
  const text = c?.kind === "text" ? await model(c.encoder, id) as LiveTextEncoder : undefined;
  return { denoiser, text };
}

async function run(message: ToWorker & { type: "sample" }): Promise<void> {
  const { id } = message;
  if (id !== latest) return post({ type: "cancelled", id });
  const { denoiser, text } = await denoiserAndText(message.model, id);
  let note: string | undefined;
  const condition = message.request.condition;
  if (condition.kind === "text" && text) {
    const read = [condition.prompt, condition.negativePrompt ?? ""].map((p) =>
      text.tokenizer.encode(p)
    );
    const unknown = [...new Set(read.flatMap((r) => r.unknown))];
    note = [
      unknown.length ? `words the model never read, taken as [UNK]: ${unknown.join(", ")}` : "",
      read.some((r) => r.truncated)
        ? `a prompt is read up to its ${text.tokenizer.contextLength - 2}th word`
        : "",
    ].filter(Boolean).join("; ") || undefined;
  }
  const begun = performance.now();
  let last = begun;
  let stepMs = 0;
  const image = await liveSample(denoiser, text, message.request, async (step) => {
    // On wasm and cpu a whole run is one chain of microtasks: let a newer request's message in.
    await nextTask();
    const now = performance.now();
    stepMs = (now - begun) / (step.index + 1);
    if (now - last > 30 || step.index + 1 === step.total) {
      last = now;
      post({ type: "step", id, ...step, msPerStep: stepMs });
    }
  }, () => id !== latest);
  const ms = performance.now() - begun;
  post({ type: "done", id, image, ms, msPerStep: ms / message.request.steps, note });
}

async function probe(message: ToWorker & { type: "probe" }): Promise<void> {
  const { denoiser, text } = await denoiserAndText(message.model, message.id);
  const values = await liveProbe(denoiser, text);
  post({ type: "probed", id: message.id, values, backend: tf.getBackend() });
}

function failed(id: number, error: unknown) {
  if (error instanceof Cancelled) post({ type: "cancelled", id });
  else post({ type: "error", id, message: (error as Error)?.message ?? String(error) });
}

scope.onmessage = ({ data: message }) => {
  switch (message.type) {
    case "give": {
      const entry = waiting.get(message.id);
      waiting.delete(message.id);
      if (message.binary) entry?.resolve(message.binary);
      else {entry?.reject(
          new Error(message.error ?? "the page could not load a file the worker needs"),
        );}
      return;
    }
    case "start":
      queue = queue.then(() =>
        start(message.backend).then(
          (choice) => post({ type: "backend", choice }),
          (e) => failed(0, e),
        )
      );
      return;
    case "sample":
      latest = message.id;
      queue = queue.then(() => run(message).catch((e) => failed(message.id, e)));
      return;
    case "probe":
      queue = queue.then(() => probe(message).catch((e) => failed(message.id, e)));
      return;
  }
};
