/**
 * A training run killed (SIGKILL) at random moments, some of them in the middle of a
 * checkpoint write, resumes to the very losses of a run that was never interrupted, keeps no
 * more checkpoints than it should and leaves no temporary file behind.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Random } from "../lib/core/random.ts";

const CHILD = new URL("./fixtures/training/run_tiny.ts", import.meta.url).pathname;
const STEPS = 24;

function start(dir: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, dir, String(STEPS)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function losses(dir: string): Promise<number[]> {
  const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n");
  return lines.map((line) => JSON.parse(line)).map((record) => {
    assert.equal(typeof record.loss, "number");
    return record.loss;
  });
}

/**
 * Kills `child` as soon as a temporary file is seen in `dir` (a checkpoint being written),
 * looking in a tight loop: the write takes about a millisecond.
 */
function killDuringWrite(child: Deno.ChildProcess, dir: string): void {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    if (names.some((n) => n.startsWith("checkpoint.bin.") && n.endsWith(".tmp"))) break;
  }
  try {
    child.kill("SIGKILL");
  } catch { /* it had finished */ }
}

async function finish(child: Deno.ChildProcess): Promise<Deno.CommandOutput> {
  return await child.output();
}

describe("an interrupted training run", () => {
  it("killed at random moments and during checkpoint writes, resumes to the uninterrupted losses bit for bit", async () => {
    const root = await Deno.makeTempDir({ prefix: "interrupt-" });
    const whole = `${root}/whole`, killed = `${root}/killed`;
    await Deno.mkdir(whole);
    await Deno.mkdir(killed);
    const reference = await finish(start(whole));
    assert.ok(reference.success, new TextDecoder().decode(reference.stderr));
    const expected = await losses(whole);
    assert.equal(expected.length, STEPS);

    const rng = new Random(11);
    let leftovers = 0;
    // Six rounds, every other one killed during a write; more of those if none left a
    // temporary file (the kill came after the rename).
    for (let round = 0; round < 6 || (leftovers === 0 && round < 14); round++) {
      const child = start(killed);
      if (round % 2 === 0 || round >= 6) {
        killDuringWrite(child, killed);
      } else {
        await new Promise((r) => setTimeout(r, 500 + rng.uniform() * 3500));
        try {
          child.kill("SIGKILL");
        } catch { /* it had finished */ }
      }
      await finish(child);
      leftovers += [...Deno.readDirSync(killed)].filter((e) => e.name.endsWith(".tmp")).length;
    }
    const last = await finish(start(killed));
    assert.ok(last.success, new TextDecoder().decode(last.stderr));
    assert.match(new TextDecoder().decode(last.stdout), /done/);

    assert.deepEqual(await losses(killed), expected);
    const names = [...Deno.readDirSync(killed)].map((e) => e.name).sort();
    assert.ok(leftovers > 0, "no kill landed during a checkpoint write: the test proved less");
    assert.deepEqual(names.filter((n) => n.endsWith(".tmp")), [], "temporary files were left");
    assert.deepEqual(names.filter((n) => n.endsWith(".bin")), [
      "checkpoint.bin",
      `checkpoint.step-0000${STEPS - 2}.bin`,
      `checkpoint.step-0000${STEPS - 1}.bin`,
    ]);
    await Deno.remove(root, { recursive: true });
  });
});
