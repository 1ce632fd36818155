/**
 * The static server of `deno task serve` (scripts/book/static_server.ts) under hostile requests:
 * hundreds of malformed and traversal paths, sent raw so that nothing normalises them first, are
 * each answered 400 or 404 (405 for other methods), never with a file from outside the site, and
 * the server keeps serving. It listens on 127.0.0.1 unless told otherwise, serves the right
 * content types, and live reload reaches a connected page. Also `--host` of the book's options.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseBookArgs } from "../scripts/book/args.ts";
import { removeIfPresent } from "../scripts/book/results.ts";
import {
  decodeRequestPath,
  isLoopbackHost,
  RELOAD_PATH,
  serveStatic,
  type StaticServer,
} from "../scripts/book/static_server.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/** The status, headers and body text of one raw HTTP/1.1 exchange. */
interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/**
 * Sends `requestLine` exactly as written (fetch and URL would collapse `..` and re-encode the
 * path), with a Host header, and reads the answer until the server closes the connection.
 */
async function rawRequest(port: number, requestLine: string): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = `${requestLine}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(request));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    const bytes = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
    chunks.reduce((at, c) => (bytes.set(c, at), at + c.length), 0);
    const text = new TextDecoder().decode(bytes);
    const split = text.indexOf("\r\n\r\n");
    const head = split < 0 ? text : text.slice(0, split);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
    return { status, head, body: split < 0 ? "" : text.slice(split + 4) };
  } finally {
    conn.close();
  }
}

/** Encodings of `..`: plain, percent-encoded in both cases, double-encoded, overlong UTF-8. */
const DOTS = [
  "..",
  "%2e%2e",
  "%2E%2E",
  ".%2e",
  "%2E.",
  "%252e%252e",
  "%c0%ae%c0%ae",
  "%e0%80%ae%e0%80%ae",
  "%uff0e%uff0e",
  "..%00",
  "\u2025", // the two-dot leader, sent as raw UTF-8
  "%ef%bc%8e%ef%bc%8e", // fullwidth full stops
];

/** Encodings of a path separator. */
const SEPARATORS = ["/", "%2f", "%2F", "%5c", "%5C", "\\", "%252f", "%c0%af", "%c1%9c", "//"];

/** Paths that try to leave the site (generated) or are malformed in other ways (listed). */
function hostilePaths(): string[] {
  const paths: string[] = [];
  for (const dots of DOTS) {
    for (const sep of SEPARATORS) {
      for (const depth of [1, 2, 4]) {
        const up = `${dots}${sep}`.repeat(depth);
        paths.push(`/${up}secret.txt`, `/${up}etc${sep}passwd`, `/sub/${up}${up}secret.txt`);
      }
    }
  }
  paths.push(
    "/leak.txt", // a symbolic link to the secret
    "/leakdir/secret.txt", // a symbolic link to the parent folder
    "/leakdir/",
    "/leakdir",
    "/..",
    "/../",
    "/sub/..",
    "/sub/../..",
    "/./../secret.txt",
    "/%2e%2e",
    "/..;/secret.txt",
    "/...",
    "//etc/passwd",
    "///etc/passwd",
    "/%2fetc%2fpasswd",
    "/%2F%2Fetc%2Fpasswd",
    "/etc/passwd",
    "/%00",
    "/index.html%00",
    "/index.html%00.txt",
    "/%0d%0aSet-Cookie:%20x=1",
    "/%zz",
    "/%",
    "/%%32%65%%32%65/secret.txt",
    "/%e9",
    "/%c0%ae",
    "/%ff%fe",
    "/\u00e9t\u00e9/../../secret.txt",
    "/\u{1F600}/..%2f..%2fsecret.txt",
    "/sub\\..\\..\\secret.txt",
    "/C:\\Windows\\win.ini",
    `/${"a/".repeat(1100)}`,
    `/${"a".repeat(300)}`,
    `/${"%2e%2e%2f".repeat(300)}secret.txt`,
    "http://127.0.0.1/../secret.txt", // absolute form
    "http://127.0.0.1/%2e%2e/secret.txt",
    "..%2f..%2f..%2fetc%2fpasswd", // no leading slash
    "/..%2f..%2f..%2fetc%2fpasswd", // the request of the issue
    "*",
  );
  return paths;
}

describe("the static server", () => {
  const work = `${ROOT}/.cache/test/serve-${crypto.randomUUID().slice(0, 8)}`;
  const site = `${work}/site`;
  const secret = `SECRET-${crypto.randomUUID()}`;
  let server: StaticServer;
  let base: string;

  before(async () => {
    await Deno.mkdir(`${site}/sub`, { recursive: true });
    await Deno.mkdir(`${work}/etc`);
    await Deno.writeTextFile(`${work}/secret.txt`, secret);
    await Deno.writeTextFile(`${work}/etc/passwd`, secret);
    await Deno.writeTextFile(`${site}/index.html`, "<html><body><h1>Home</h1></body></html>");
    await Deno.writeTextFile(`${site}/sub/index.html`, "<html><body>Sub index</body></html>");
    await Deno.writeTextFile(`${site}/style.css`, "body { color: red }");
    await Deno.writeTextFile(`${site}/app.js`, "console.log(1);");
    await Deno.writeTextFile(`${site}/data.json`, "{}");
    await Deno.writeTextFile(`${site}/notes.txt`, "notes");
    await Deno.writeTextFile(`${site}/figure.svg`, '<svg xmlns="http://www.w3.org/2000/svg"/>');
    await Deno.writeFile(`${site}/pixel.png`, new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    await Deno.symlink(`${work}/secret.txt`, `${site}/leak.txt`);
    await Deno.symlink(work, `${site}/leakdir`);
    server = serveStatic({ root: site, port: 0, liveReload: true, log: () => {} });
    base = `http://127.0.0.1:${server.addr.port}`;
  });
  after(async () => {
    await server?.shutdown();
    await removeIfPresent(work);
  });

  it("listens on 127.0.0.1 unless told otherwise", () => {
    assert.equal(server.addr.hostname, "127.0.0.1");
    assert.notEqual(server.addr.port, 0);
  });

  it("answers every malformed or traversal path with 400 or 404, never with the secret", async () => {
    const paths = hostilePaths();
    assert.ok(paths.length > 300, `${paths.length} paths`);
    const wrong: string[] = [];
    for (const path of paths) {
      const response = await rawRequest(server.addr.port, `GET ${path} HTTP/1.1`);
      if (response.status !== 400 && response.status !== 404) {
        wrong.push(`${response.status} for ${path.slice(0, 80)}`);
      }
      if (`${response.head}${response.body}`.includes(secret)) {
        wrong.push(`the secret for ${path.slice(0, 80)}`);
      }
    }
    assert.deepEqual(wrong, []);
    const home = await fetch(`${base}/`);
    assert.equal(home.status, 200, "still serving");
    assert.match(await home.text(), /<h1>Home<\/h1>/);
  });

  it("allows only GET and HEAD", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"]) {
      for (const path of ["/", "/index.html", "/../secret.txt", "/%zz"]) {
        const response = await rawRequest(server.addr.port, `${method} ${path} HTTP/1.1`);
        assert.ok(
          response.status === 405 || response.status === 400,
          `${method} ${path}: ${response.status}`,
        );
        assert.ok(!response.body.includes(secret));
      }
    }
    const head = await rawRequest(server.addr.port, "HEAD /index.html HTTP/1.1");
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
  });

  it("serves files with their content types, folders by their index, and a 404 page", async () => {
    const types: Record<string, string> = {
      "/": "text/html",
      "/index.html": "text/html",
      "/sub/": "text/html",
      "/style.css": "text/css",
      "/app.js": "text/javascript",
      "/data.json": "application/json",
      "/notes.txt": "text/plain",
      "/figure.svg": "image/svg+xml",
      "/pixel.png": "image/png",
    };
    for (const [path, type] of Object.entries(types)) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 200, path);
      assert.ok(response.headers.get("content-type")?.startsWith(type), `${path}: ${type}`);
      await response.body?.cancel();
    }
    const sub = await fetch(`${base}/sub/`);
    assert.match(await sub.text(), /Sub index/);
    const folder = await fetch(`${base}/sub`, { redirect: "manual" });
    assert.equal(folder.status, 301);
    assert.equal(folder.headers.get("location"), "sub/");
    const missing = await fetch(`${base}/no-such-page.html`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /Not found/);
  });

  it("reloads connected pages: HTML carries the script, the stream carries the event", async () => {
    const page = await (await fetch(`${base}/index.html`)).text();
    assert.match(page, new RegExp(`EventSource\\("${RELOAD_PATH}"\\)[\\s\\S]*</body>`));
    const events = await fetch(`${base}${RELOAD_PATH}`);
    assert.equal(events.headers.get("content-type"), "text/event-stream");
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    const timeout = setTimeout(() => reader.cancel(), 5000);
    try {
      let text = (await reader.read()).value ?? "";
      assert.match(text, /^: connected/);
      server.reload();
      while (!text.includes("data: reload")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      assert.match(text, /data: reload\n\n/);
    } finally {
      clearTimeout(timeout);
      await reader.cancel();
    }
  });
});

describe("request paths", () => {
  it("are decoded once and refused when they could leave the folder", () => {
    assert.deepEqual(decodeRequestPath("http://h/a%20b.html?x=1#y"), { path: "/a b.html" });
    assert.deepEqual(decodeRequestPath("http://h/%252e%252e/x"), { path: "/%2e%2e/x" });
    for (const url of ["http://h/%2e%2e/x", "http://h/a/..", "http://h/%zz", "http://h/a%5cb"]) {
      assert.ok("refused" in decodeRequestPath(url), url);
    }
  });
});

describe("--host", () => {
  it("is 127.0.0.1 by default, and widened only when asked", () => {
    assert.equal(parseBookArgs(["--serve"]).host, "127.0.0.1");
    assert.equal(parseBookArgs(["--serve", "--host", "0.0.0.0"]).host, "0.0.0.0");
    assert.equal(parseBookArgs(["--serve", "--host=::"]).host, "::");
    assert.throws(() => parseBookArgs(["--serve", "--host", ""]), /--host needs an address/);
    assert.throws(() => parseBookArgs(["--serve", "--host"]), /argument missing/);
  });

  it("tells loopback addresses from the others", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) {
      assert.ok(isLoopbackHost(host), host);
    }
    for (const host of ["0.0.0.0", "::", "192.168.1.2", "example.org", "127.0.0.1.example.org"]) {
      assert.ok(!isLoopbackHost(host), host);
    }
  });
});
