/**
 * Every chapter of the book runs end to end in the `quick` profile, ignoring frozen and cached
 * results. Each chapter checks its own claims as it runs (the closed form matches the chain, the
 * loss falls, a resumed run is bit-identical, DDIM beats DDPM's wall time, …) and fails if one
 * does not hold; this test fails with the chapter's name and error. A second run must then
 * give byte-identical outputs, measured wall times aside: every random draw is seeded.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { buildBook, failureReport } from "../scripts/book/build.ts";
import { compareResults } from "../scripts/book/verify.ts";

function quickRun(work: string, run: string) {
  return buildBook({
    profile: "quick",
    cacheDir: `${work}/cache-${run}`, // each run its own cache: both really run
    frozenDir: `${work}/frozen`, // empty: nothing frozen may stand in for a run
    buildDir: `${work}/src-${run}`,
    siteDir: `${work}/site-${run}`,
    quiet: true,
    log: () => {},
  });
}

describe("the book's chapters", () => {
  it("all run in the quick profile, place their outputs, and give the same bytes when run again", async () => {
    const work = await Deno.makeTempDir({ prefix: "chapters-quick-" });
    try {
      const report = await quickRun(work, "first");
      assert.ok(report.ok, failureReport(report));
      assert.ok(report.chapters.length >= 5, `only ${report.chapters.length} chapters found`);
      for (const chapter of report.chapters) {
        assert.equal(chapter.origin, "ran", `${chapter.id} did not run`);
        assert.ok((chapter.meta?.outputs.length ?? 0) > 0, `${chapter.id} showed nothing`);
      }
      assert.deepEqual(report.mathErrors, []);
      const again = await quickRun(work, "second");
      assert.ok(again.ok, failureReport(again));
      const differences: string[] = [];
      for (const first of report.chapters) {
        const second = again.chapters.find((c) => c.id === first.id)!;
        assert.equal(second.origin, "ran", `${first.id} did not run again`);
        for (
          const d of await compareResults(first.meta!, first.dir!, second.meta!, second.dir!, {
            exact: true,
          })
        ) {
          differences.push(`${first.id}, output ${d.output + 1}: ${d.message}`);
        }
      }
      assert.deepEqual(differences, [], "a second run gave other outputs");
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
});
