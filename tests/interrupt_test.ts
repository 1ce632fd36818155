/**
 * A training run killed (SIGKILL) in each window of its file writes — a checkpoint half
 * written, the previous one linked aside, the new one in place with the old not yet pruned, a
 * metrics record half appended — and at random moments, resumes to the very losses of a run
 * that was never interrupted, keeps no more checkpoints than it should and leaves no temporary
 * file behind.
 *
 * The kills at the write windows come from the process itself (the fault argument of
 * tests/fixtures/training/run_tiny.ts), so that they land however fast the machine writes.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Random } from "../lib/core/random.ts";

const CHILD = new URL("./fixtures/training/run_tiny.ts", import.meta.url).pathname;
const STEPS = 24;

async function run(dir: string, fault?: string): Promise<Deno.CommandOutput> {
  return await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, dir, String(STEPS), ...(fault ? [fault] : [])],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

async function losses(dir: string): Promise<number[]> {
  const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n");
  return lines.map((line) => JSON.parse(line)).map((record) => {
    assert.equal(typeof record.loss, "number");
    return record.loss;
  });
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("an interrupted training run", () => {
  it("killed in every window of its writes and at random moments, resumes to the uninterrupted losses bit for bit", async () => {
    const root = await Deno.makeTempDir({ prefix: "interrupt-" });
    const whole = `${root}/whole`, killed = `${root}/killed`;
    await Deno.mkdir(whole);
    await Deno.mkdir(killed);
    const reference = await run(whole);
    assert.ok(reference.success, text(reference.stderr));
    const expected = await losses(whole);
    assert.equal(expected.length, STEPS);

    /** Run with `fault`, which must kill the process; then look at what it left. */
    const killedBy = async (fault: string, left: (files: string[]) => void) => {
      const output = await run(killed, fault);
      assert.equal(
        output.signal,
        "SIGKILL",
        `${fault} did not kill the run: ${text(output.stderr)}`,
      );
      left(names(killed));
    };
    await killedBy("before-rename:3", (files) => {
      assert.equal(files.filter((n) => /^checkpoint\.bin\.\d+-\w+\.tmp$/.test(n)).length, 1);
    });
    await killedBy("mid-append:2", () => {
      const log = Deno.readTextFileSync(`${killed}/metrics.jsonl`);
      assert.ok(!log.endsWith("\n"), "the half record is not at the end of the log");
    });
    await killedBy("after-link:2", () => {});
    await killedBy("after-rename:2", (files) => {
      // The latest and three before it: the oldest is pruned by the next save.
      assert.equal(files.filter((n) => n.startsWith("checkpoint.step-")).length, 3);
    });
    const rng = new Random(11);
    for (let round = 0; round < 2; round++) {
      await run(killed, `timer:${Math.round(200 + rng.uniform() * 800)}`);
    }
    await killedBy("after-rename:last", (files) => {
      assert.equal(files.filter((n) => n.startsWith("checkpoint.step-")).length, 3);
    });

    const last = await run(killed);
    assert.ok(last.success, text(last.stderr));
    assert.match(text(last.stdout), /done/);
    assert.deepEqual(await losses(killed), expected);
    const left = names(killed);
    assert.deepEqual(left.filter((n) => n.endsWith(".tmp")), [], "temporary files were left");
    assert.deepEqual(left.filter((n) => n.endsWith(".bin")), [
      "checkpoint.bin",
      `checkpoint.step-0000${STEPS - 2}.bin`,
      `checkpoint.step-0000${STEPS - 1}.bin`,
    ]);
    await Deno.remove(root, { recursive: true });
  });
});
