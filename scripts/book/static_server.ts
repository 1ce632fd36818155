/**
 * A small static file server for the built site, with optional live reload: what `deno task
 * serve` listens with, and what the browser tests serve the site from.
 *
 * It listens on 127.0.0.1 unless told otherwise and answers every request, however malformed,
 * without throwing: the URL path is decoded once (a bad encoding is 400), paths with NUL or other
 * control bytes, backslashes, `..` segments or overlong names are 400, and a file is served only
 * when its real path (symbolic links followed) lies inside the real site folder; anything else is
 * 404. Only GET and HEAD are allowed (405 otherwise). An unexpected error is logged and answered
 * 500, and the server keeps serving.
 *
 * Live reload: HTML pages get a tiny script that listens to `/__reload` (Server-Sent Events);
 * {@link StaticServer.reload} tells every open page to reload itself.
 *
 * @module
 */

/** Options of {@link serveStatic}. */
export interface StaticServerOptions {
  /** The folder to serve (the site); it may be replaced while serving (resolved per request). */
  root: string;
  /** The interface to listen on (default 127.0.0.1, this machine only). */
  hostname?: string;
  /** The port (default 8080; 0 picks a free one). */
  port?: number;
  /** Inject the live-reload script into HTML pages and answer `/__reload` (default false). */
  liveReload?: boolean;
  /** Where unexpected errors are reported (default console.error). */
  log?: (message: string) => void;
}

/** A running {@link serveStatic} server. */
export interface StaticServer {
  /** The address it listens on (the port is the real one when 0 was asked for). */
  readonly addr: Deno.NetAddr;
  /** Tells every page connected to the live-reload stream to reload. */
  reload(): void;
  /** Ends the live-reload streams, stops listening and waits for open requests to finish. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/** The live-reload endpoint. */
export const RELOAD_PATH = "/__reload";

/** The longest URL path served, in bytes; longer is 400. */
const MAX_PATH_BYTES = 2048;

/** The longest name of one path segment, in bytes (a file name's limit on Linux). */
const MAX_SEGMENT_BYTES = 255;

const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  json: "application/json",
  svg: "image/svg+xml",
  png: "image/png",
  gif: "image/gif",
  jpg: "image/jpeg",
  webp: "image/webp",
  woff2: "font/woff2",
  txt: "text/plain; charset=utf-8",
};

const RELOAD_SCRIPT = `<script>(function () {
  var events = new EventSource("${RELOAD_PATH}");
  events.onmessage = function () { location.reload(); };
})();</script>\n`;

const NOT_FOUND_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>
<body><h1>Not found</h1><p>No such page in this book. <a href="/">Back to the contents</a>.</p>
</body></html>\n`;

/** Whether `hostname` names this machine only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/** The content type of a file name, by its extension. */
export function contentType(name: string): string {
  const dot = name.lastIndexOf(".");
  return CONTENT_TYPES[name.slice(dot + 1).toLowerCase()] ?? "application/octet-stream";
}

/** Why a request path is refused, or its decoded form (starting with `/`). */
type DecodedPath = { path: string } | { refused: string };

/**
 * The path of a request URL, taken from the raw URL (so that `..` is seen as the client sent it,
 * not collapsed by the URL parser), without query or fragment, decoded once and checked.
 */
export function decodeRequestPath(url: string): DecodedPath {
  const authority = url.indexOf("://");
  const slash = url.indexOf("/", authority < 0 ? 0 : authority + 3);
  let raw = slash < 0 ? "/" : url.slice(slash);
  const end = raw.search(/[?#]/);
  if (end >= 0) raw = raw.slice(0, end);
  const bytes = new TextEncoder();
  if (bytes.encode(raw).length > MAX_PATH_BYTES) return { refused: "path too long" };
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return { refused: "malformed percent-encoding" };
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) return { refused: "control character in path" };
  if (path.includes("\\")) return { refused: "backslash in path" };
  const segments = path.split("/");
  if (segments.includes("..")) return { refused: "'..' in path" };
  if (segments.some((s) => bytes.encode(s).length > MAX_SEGMENT_BYTES)) {
    return { refused: "path segment too long" };
  }
  return { path };
}

/** Errors of the file system that mean "there is no such file to serve". */
function isMissing(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory ||
    error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.FilesystemLoop;
}

/** The real path of `path` (symbolic links followed), or undefined when there is nothing. */
async function realPathOf(path: string): Promise<string | undefined> {
  try {
    return await Deno.realPath(path);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** The real path of `path` if it exists and lies inside `realRoot`, else undefined. */
async function realPathInside(realRoot: string, path: string): Promise<string | undefined> {
  const real = await realPathOf(path);
  if (real === undefined) return undefined;
  return real === realRoot || real.startsWith(`${realRoot}/`) ? real : undefined;
}

function plain(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function notFound(): Response {
  return new Response(NOT_FOUND_PAGE, {
    status: 404,
    headers: { "content-type": "text/html; charset=utf-8" },
  });
}

/** `html` with the live-reload script before its last `</body>` (or at its end). */
function withReloadScript(html: string): string {
  const at = html.toLowerCase().lastIndexOf("</body>");
  return at < 0 ? html + RELOAD_SCRIPT : html.slice(0, at) + RELOAD_SCRIPT + html.slice(at);
}

/** The clients of the live-reload stream. */
class ReloadStreams {
  #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #encoder = new TextEncoder();

  /** A new event stream; its first bytes are a comment, so a client knows it is connected. */
  open(): Response {
    let client: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = controller;
        this.#clients.add(controller);
        controller.enqueue(this.#encoder.encode(": connected\n\n"));
      },
      cancel: () => {
        this.#clients.delete(client);
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
  }

  /** Sends a `reload` event to every client. */
  send(): void {
    for (const client of this.#clients) {
      try {
        client.enqueue(this.#encoder.encode("data: reload\n\n"));
      } catch {
        this.#clients.delete(client); // the client went away
      }
    }
  }

  /** Ends every stream. */
  close(): void {
    for (const client of this.#clients) {
      try {
        client.close();
      } catch {
        // already closed
      }
    }
    this.#clients.clear();
  }
}

/** Answers one request; never throws (an unexpected error is logged and answered 500). */
async function answer(
  request: Request,
  options: Required<Pick<StaticServerOptions, "root" | "liveReload" | "log">>,
  streams: ReloadStreams,
): Promise<Response> {
  try {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return plain(405, "method not allowed", { allow: "GET, HEAD" });
    }
    const decoded = decodeRequestPath(request.url);
    if ("refused" in decoded) return plain(400, `bad request: ${decoded.refused}`);
    let { path } = decoded;
    if (options.liveReload && path === RELOAD_PATH) return streams.open();
    const realRoot = await realPathOf(options.root);
    if (!realRoot) return notFound();
    let real = await realPathInside(realRoot, `${options.root}${path}`);
    if (!real) return notFound();
    if ((await Deno.stat(real)).isDirectory) {
      if (!path.endsWith("/")) {
        // Relative links of the folder's index need the slash; the Location is relative too.
        const name = path.slice(path.lastIndexOf("/") + 1);
        return plain(301, "moved", { location: `${encodeURIComponent(name)}/` });
      }
      path += "index.html";
      real = await realPathInside(realRoot, `${options.root}${path}`);
      if (!real) return notFound();
    }
    const info = await Deno.stat(real);
    if (!info.isFile) return notFound();
    const type = contentType(real);
    const headers = { "content-type": type, "cache-control": "no-store" };
    if (request.method === "HEAD") return new Response(null, { headers });
    let body: Uint8Array | string = await Deno.readFile(real);
    if (options.liveReload && type.startsWith("text/html")) {
      body = withReloadScript(new TextDecoder().decode(body));
    }
    return new Response(body as BodyInit, { headers });
  } catch (error) {
    if (isMissing(error)) return notFound(); // the site was swapped between two looks
    options.log(`static server: ${request.method} ${request.url}: ${(error as Error).stack}`);
    return plain(500, "internal server error");
  }
}

/**
 * Serves the folder `options.root` on `options.hostname` (127.0.0.1 by default) and
 * `options.port` (8080 by default) until {@link StaticServer.shutdown}. Throws when the port
 * cannot be taken.
 */
export function serveStatic(options: StaticServerOptions): StaticServer {
  const settings = {
    root: options.root.replace(/\/+$/, "") || "/",
    liveReload: options.liveReload ?? false,
    log: options.log ?? ((message: string) => console.error(message)),
  };
  const streams = new ReloadStreams();
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 8080,
    onListen: () => {},
    onError: (error) => {
      settings.log(`static server: ${(error as Error).stack ?? error}`);
      return plain(500, "internal server error");
    },
  }, (request) => answer(request, settings, streams));
  return {
    addr: server.addr,
    reload: () => streams.send(),
    shutdown: async () => {
      streams.close();
      await server.shutdown();
    },
    finished: server.finished,
  };
}
