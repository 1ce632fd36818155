/**
 * How the book's binary files reach a page. Each file (a live model, tfjs's wasm binary, the
 * worker's source) is gzipped (the bundled worker to a quarter, float16 weights to about nine
 * tenths) and ships twice in `assets/live/`:
 *
 * - `NAME.bin`, the gzipped bytes, which a page served over HTTP fetches;
 * - `NAME.js`, a script that defines them in base64 (a third larger),
 *
 *     (self.workbookLiveAssets ??= {})["NAME"] = "<base64 of the gzipped file>";
 *
 *   for a page opened from disk: Chromium refuses `fetch` of a local file, but loads scripts.
 *
 * No TensorFlow.js and no Deno or Node API: the page's own small bundle imports it.
 *
 * @module
 */

import { UserError } from "../core/errors.ts";

/** The two forms of file `name` (see the module comment). */
export async function assetFiles(
  name: string,
  bytes: Uint8Array,
): Promise<{ script: string; binary: Uint8Array }> {
  const binary = await gzip(bytes);
  const script = `(self.workbookLiveAssets ??= {})[${JSON.stringify(name)}] = "${
    toBase64(binary)
  }";\n`;
  return { script, binary };
}

/**
 * The file from its gzipped bytes.
 *
 * @throws UserError naming `source` when they do not unpack (a truncated or damaged file)
 */
export async function unpackAsset(binary: Uint8Array, source: string): Promise<Uint8Array> {
  try {
    return await gunzip(binary);
  } catch (e) {
    throw new UserError(
      `${source} is damaged: its data does not unpack (${(e as Error).message}); rebuild the book.`,
    );
  }
}

async function pipe(bytes: Uint8Array, stream: TransformStream<Uint8Array, Uint8Array>) {
  const body = new Blob([bytes as BlobPart]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** gzip of `bytes`. */
export function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return pipe(
    bytes,
    new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
}

/** The bytes of gzip data. */
export function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  return pipe(
    bytes,
    new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** RFC 4648 base64 of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < bytes.length; i += 3 * 4096) {
    let chunk = "";
    const end = Math.min(bytes.length, i + 3 * 4096);
    for (let j = i; j < end; j += 3) {
      const n = (bytes[j] << 16) | ((bytes[j + 1] ?? 0) << 8) | (bytes[j + 2] ?? 0);
      chunk += BASE64[n >> 18] + BASE64[(n >> 12) & 63] +
        (j + 1 < end ? BASE64[(n >> 6) & 63] : "=") + (j + 2 < end ? BASE64[n & 63] : "=");
    }
    parts.push(chunk);
  }
  return parts.join("");
}

/**
 * The bytes of a base64 string.
 *
 * @throws UserError naming `source` when the text is not base64 of a whole file
 */
export function fromBase64(text: string, source = "data"): Uint8Array {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new UserError(
      `${source} is not base64 of a whole file (${text.length} characters); it was probably ` +
        "cut off: rebuild the book.",
    );
  }
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const bytes = new Uint8Array((text.length / 4) * 3 - padding);
  const value = new Uint8Array(128);
  for (let i = 0; i < BASE64.length; i++) value[BASE64.charCodeAt(i)] = i;
  for (let i = 0, o = 0; i < text.length; i += 4) {
    const n = (value[text.charCodeAt(i)] << 18) | (value[text.charCodeAt(i + 1)] << 12) |
      (value[text.charCodeAt(i + 2)] << 6) | value[text.charCodeAt(i + 3)];
    bytes[o++] = n >> 16;
    if (o < bytes.length) bytes[o++] = (n >> 8) & 255;
    if (o < bytes.length) bytes[o++] = n & 255;
  }
  return bytes;
}
