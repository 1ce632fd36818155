/**
 * Every chapter of the book runs end to end in the `quick` profile, ignoring frozen and cached
 * results. Each chapter checks its own claims as it runs (the closed form matches the chain, the
 * loss falls, a resumed run is bit-identical, DDIM beats DDPM's wall time, …) and fails if one
 * does not hold; this test fails with the chapter's name and error.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { buildBook, failureReport } from "../scripts/book/build.ts";

describe("the book's chapters", () => {
  it("all run in the quick profile and place their outputs", async () => {
    const work = await Deno.makeTempDir({ prefix: "chapters-quick-" });
    try {
      const report = await buildBook({
        profile: "quick",
        cacheDir: `${work}/cache`,
        frozenDir: `${work}/frozen`, // empty: nothing frozen may stand in for a run
        buildDir: `${work}/src`,
        siteDir: `${work}/site`,
        quiet: true,
        log: () => {},
      });
      assert.ok(report.ok, failureReport(report));
      assert.ok(report.chapters.length >= 5, `only ${report.chapters.length} chapters found`);
      for (const chapter of report.chapters) {
        assert.equal(chapter.origin, "ran", `${chapter.id} did not run`);
        assert.ok((chapter.meta?.outputs.length ?? 0) > 0, `${chapter.id} showed nothing`);
      }
      assert.deepEqual(report.mathErrors, []);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
});
