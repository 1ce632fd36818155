/**
 * A run's metrics log, `metrics.jsonl`: one JSON record a line, each with the `step` it was taken
 * at. A run resumed from a checkpoint at step s first drops the records after s (logged by the
 * interrupted session after its last checkpoint, and about to be logged again), so that the log
 * reads as one uninterrupted run.
 *
 * @module
 */
import { writeFileAtomic } from "../runtime/files.ts";

/** Keep the records of `path` up to `step` (all of them are dropped at step 0; no file: an empty one). */
export async function keepRecordsUpTo(path: string, step: number): Promise<void> {
  let kept = "";
  if (step > 0) {
    try {
      kept = (await Deno.readTextFile(path)).split("\n").filter((line) => {
        try {
          return line.trim().length > 0 && JSON.parse(line).step <= step;
        } catch {
          return false;
        }
      }).map((line) => line + "\n").join("");
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  await writeFileAtomic(path, kept);
}
