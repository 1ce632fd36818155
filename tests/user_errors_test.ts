/**
 * A mistake of the user's ends a command in one line that says what to do, with exit status 2;
 * a bug of ours keeps its stack trace.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { withoutAnsi } from "../scripts/book/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function run(...args: string[]): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `more than one line:\n${stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(stderr, /Uncaught|\n\s+at /, `a stack trace:\n${stderr}`);
  assert.ok(!stderr.includes(String.fromCharCode(27)), `terminal colour codes:\n${stderr}`);
}

describe("user errors", () => {
  it("a chapter run with an unknown backend says so in one line, status 2", async () => {
    const { code, stderr } = await run("chapters/01-forward-process.ts", "--backend", "nope");
    assert.equal(code, 2);
    assertOneLine(stderr, /^01-forward-process: unknown backend "nope".*choose one of/);
  });

  it("deno task chapter and deno task book refuse an unknown backend before running anything", async () => {
    for (
      const args of [["scripts/chapter.ts", "01", "--backend=nope"], [
        "scripts/book.ts",
        "--backend",
        "nope",
      ]]
    ) {
      const { code, stderr } = await run(...args);
      assert.equal(code, 2, args.join(" "));
      assert.match(stderr, /^unknown backend "nope" \(from --backend\)/);
      assert.doesNotMatch(stderr, /Uncaught|\n\s+at /);
    }
  });

  it("deno task book --only with no such chapter names the chapters there are", async () => {
    const { code, stderr } = await run("scripts/book.ts", "--only", "99");
    assert.equal(code, 2);
    assertOneLine(stderr, /^book: no chapter matches 99; the chapters are: 01-forward-process/);
  });

  it("deno task train with an unknown model lists the zoo", async () => {
    const { code, stderr } = await run("scripts/train.ts", "nope");
    assert.equal(code, 2);
    assert.match(stderr, /^train: unknown model "nope"/);
  });

  it("a bug of ours keeps its stack trace", async () => {
    const { code, stderr } = await run("tests/fixtures/errors/bug.ts");
    assert.equal(code, 1);
    assert.match(stderr, /a bug of ours/);
    assert.match(withoutAnsi(stderr), /at inner/);
  });
});
