/**
 * The live models of the site: for pages holding a live sampler
 * (`<div class="widget" data-widget="live-sampler">` with its JSON), the build bundles the
 * library's browser code (lib/browser/widget.ts for the page, lib/browser/worker.ts for its
 * Web Worker) with `deno bundle`, and exports each model the widgets name, and the text encoder
 * a text model reads its prompts with, as a float16 live model (lib/zoo/live_export.ts):
 *
 *   assets/widgets/live-sampler.js   the widget, after the sizes of everything it may load
 *   assets/live/live-worker.*        the worker's source (it starts from a blob: URL)
 *   assets/live/NAME.*               each model; wasm-simd.* and wasm-plain.*, tfjs's wasm binaries
 *
 * each file of `assets/live/` gzipped as `.bin` and as a script `.js` that defines it, for pages
 * served and pages opened from disk (lib/browser/transport.ts).
 *
 * All of it is kept in `.cache/live/KEY/`, KEY hashing the library's sources, the lock file and
 * the models' weights, so a build that changed none of them copies instead of bundling.
 *
 * @module
 */

import { fileURLToPath as fromFileUrl } from "node:url";
import { exists, sha256Hex, writeFileAtomic } from "../../lib/runtime/files.ts";
import { liveModelBytes, liveModelSources, liveTextEncoderOf } from "../../lib/zoo/live_export.ts";
import { verifyCheckpoint } from "../../lib/training/checkpoint.ts";
import type { LiveModelInfo, LivePageInfo } from "../../lib/browser/live_model.ts";
import { assetFiles } from "../../lib/browser/transport.ts";
import { copyDir, removeIfPresent } from "./results.ts";

/** The live sampler's widget name. */
export const LIVE_WIDGET = "live-sampler";

/** What the site's live files weigh. */
export interface LiveReport {
  /** File (relative to the site's `assets/`) → bytes. */
  sizes: Record<string, number>;
  /** Whether they came from the cache. */
  cached: boolean;
}

const WIDGET_JSON = new RegExp(
  `data-widget="${LIVE_WIDGET}"[^>]*>\\s*<script type="application/json">([\\s\\S]*?)</script>`,
  "g",
);

/**
 * The models each live sampler of `page` names, in its order (the first is the one it starts
 * with); `label` names the page in errors.
 */
export function liveWidgetsOf(page: string, label = "a page"): string[][] {
  return [...page.matchAll(WIDGET_JSON)].map((match) => {
    let config: { models?: unknown };
    try {
      config = JSON.parse(match[1]);
    } catch (e) {
      throw new Error(`${label}: a live sampler's JSON is not valid: ${(e as Error).message}`);
    }
    if (!Array.isArray(config.models) || config.models.length === 0) {
      throw new Error(`${label}: a live sampler names no models: ${match[1].trim()}`);
    }
    return config.models as string[];
  });
}

/** The text encoder a live model reads its prompts with, if any. */
export function textEncoderOf(model: string): string | undefined {
  return liveTextEncoderOf(model);
}

/** The models the live samplers of `pages` name, with the text encoders they need. */
export function liveModelsOf(pages: Iterable<string>): string[] {
  const models = new Set<string>();
  for (const page of pages) {
    const title = /^title: (.*)$/m.exec(page)?.[1] ?? "a page";
    for (const name of liveWidgetsOf(page, title).flat()) {
      models.add(name);
      const encoder = textEncoderOf(name);
      if (encoder) models.add(encoder);
    }
  }
  return [...models].sort();
}

const LIBRARY = new URL("../../lib/", import.meta.url);
const WASM_DIST = "node_modules/@tensorflow/tfjs-backend-wasm/dist";

async function sourcesHash(root: string, models: string[]): Promise<string> {
  const parts: string[] = [];
  const walk = async (dir: string) => {
    const entries = [...Deno.readDirSync(dir)].sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      if (e.isDirectory) await walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".ts")) {
        parts.push(e.name, await Deno.readTextFile(`${dir}/${e.name}`));
      }
    }
  };
  await walk(fromFileUrl(LIBRARY));
  parts.push(await Deno.readTextFile(new URL(import.meta.url))); // this build step itself
  parts.push(await Deno.readTextFile(`${root}/deno.lock`).catch(() => ""));
  for (const name of models) {
    parts.push(name);
    for (const file of liveModelSources(name, root)) {
      parts.push(await sha256Hex(await Deno.readFile(file)));
    }
  }
  return (await sha256Hex(new TextEncoder().encode(parts.join("\0")))).slice(0, 16);
}

/** `deno bundle` of a browser entry of lib/browser (`worker.ts`, `widget.ts`), minified, as one classic script. */
export async function bundle(entry: string, root: string): Promise<string> {
  const out = await Deno.makeTempFile({ suffix: ".js" });
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--format",
        "iife",
        "--minify",
        "-o",
        out,
        fromFileUrl(new URL(`browser/${entry}`, LIBRARY)),
      ],
      cwd: root,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(
        `deno bundle of lib/browser/${entry} failed: ${new TextDecoder().decode(stderr).trim()}`,
      );
    }
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

async function makeLiveFiles(root: string, models: string[], dir: string): Promise<void> {
  const files = new Map<string, string | Uint8Array>();
  const add = async (name: string, bytes: Uint8Array) => {
    const { script, binary } = await assetFiles(name, bytes);
    files.set(`live/${name}.js`, script);
    files.set(`live/${name}.bin`, binary);
  };
  const about: Record<string, LivePageInfo> = {};
  for (const name of models) {
    const bytes = await liveModelBytes(name, root);
    const info = verifyCheckpoint(bytes, name).state.live as LiveModelInfo; // the header alone
    about[name] = {
      description: info.description,
      conditioning: info.conditioning,
      parameters: info.parameters,
      ...(info.lora ? { lora: info.lora } : {}),
    };
    await add(name, bytes);
  }
  for (
    const [variant, file] of [["simd", "tfjs-backend-wasm-simd.wasm"], [
      "plain",
      "tfjs-backend-wasm.wasm",
    ]]
  ) {
    const wasm = await Deno.readFile(`${root}/${WASM_DIST}/${file}`);
    await add(`wasm-${variant}`, wasm);
  }
  const worker = await bundle("worker.ts", root);
  await add("live-worker", new TextEncoder().encode(worker));
  const sizes: Record<string, number> = {};
  for (const [path, data] of files) {
    sizes[path.replace(/^.*\//, "")] = typeof data === "string"
      ? new TextEncoder().encode(data).length
      : data.length;
  }
  const widget = await bundle("widget.ts", root);
  files.set(
    "widgets/live-sampler.js",
    `self.workbookLiveFiles = ${JSON.stringify({ sizes, models: about })};\n${widget}`,
  );
  const staging = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  for (const [path, text] of files) await writeFileAtomic(`${staging}/${path}`, text);
  try {
    await Deno.rename(staging, dir);
  } catch (e) {
    // Another build made the same files meanwhile: keep theirs.
    await removeIfPresent(staging);
    if (!(await exists(dir))) throw e;
  }
}

/**
 * Writes the live files for `models` into the site's `assets/` folder (see the module comment),
 * from the cache when it has them. Returns their sizes.
 */
export async function writeLiveAssets(
  root: string,
  assets: string,
  models: string[],
): Promise<LiveReport> {
  const dir = `${root}/.cache/live/${await sourcesHash(root, models)}`;
  const cached = await exists(dir);
  if (!cached) await makeLiveFiles(root, models, dir);
  const sizes: Record<string, number> = {};
  for (const sub of ["widgets", "live"]) {
    await copyDir(`${dir}/${sub}`, `${assets}/${sub}`);
    for (const e of Deno.readDirSync(`${dir}/${sub}`)) {
      sizes[`${sub}/${e.name}`] = (await Deno.stat(`${dir}/${sub}/${e.name}`)).size;
    }
  }
  return { sizes, cached };
}
