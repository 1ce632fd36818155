import { describe, it } from "node:test";
import assert from "node:assert/strict";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(`${ROOT}/${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* sources(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

/** The relative imports of a module, resolved to paths from the project root. */
function localImports(path: string, text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+"(\.{1,2}\/[^"]+)"/gms)) {
    found.push(new URL(m[1], `file:///${path}`).pathname.slice(1));
  }
  return found;
}

/** lib/'s rooms, in the order data flows: a room may import only from rooms before it. */
const ROOMS = ["core", "runtime", "data", "training", "browser", "zoo", "metrics", "book"];

describe("lib/ is laid out by concept, and data flows one way", () => {
  it("lib/core/ is pure TensorFlow.js: no Deno or Node API, so the browser can bundle it", async () => {
    for await (const path of sources("lib/core")) {
      const text = await Deno.readTextFile(`${ROOT}/${path}`);
      const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
      assert.doesNotMatch(code, /\bDeno\./, `${path} uses the Deno API`);
      assert.doesNotMatch(code, /from\s+"node:/, `${path} imports a Node module`);
      for (const target of localImports(path, text)) {
        assert.ok(target.startsWith("lib/core/"), `${path} imports ${target}, outside lib/core/`);
      }
    }
  });

  it("each room imports only from the rooms before it, and lib/ from neither chapters nor scripts", async () => {
    const allowed = new Map(ROOMS.map((room, i) => [room, new Set(ROOMS.slice(0, i + 1))]));
    for await (const path of sources("lib")) {
      const room = path.split("/")[1];
      assert.ok(allowed.has(room), `${path} is in no room of lib/ (${ROOMS.join(", ")})`);
      const text = await Deno.readTextFile(`${ROOT}/${path}`);
      for (const target of localImports(path, text)) {
        assert.ok(target.startsWith("lib/"), `${path} imports ${target}, outside lib/`);
        const into = target.split("/")[1];
        assert.ok(allowed.get(room)!.has(into), `${path} (${room}) imports ${target} (${into})`);
      }
    }
  });
});
