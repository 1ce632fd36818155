/**
 * Files written whole or not at all, and content hashes.
 *
 * @module
 */

/**
 * Write `data` to `path` atomically: to a temporary name in the same folder, then rename, so a
 * process killed mid-write leaves the previous file intact. Creates the folder when missing.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  const temporary = temporaryPath(path);
  try {
    if (typeof data === "string") await Deno.writeTextFile(temporary, data);
    else await Deno.writeFile(temporary, data);
    await Deno.rename(temporary, path);
  } catch (e) {
    await Deno.remove(temporary).catch(() => {});
    throw e;
  }
}

/**
 * A temporary name beside `path` for a file being written: `path.PID-TIME.tmp` (git ignores
 * `*.tmp`; the process id tells {@link removeStaleTemporaries} whose it is).
 */
export function temporaryPath(path: string): string {
  return `${path}.${Deno.pid}-${Date.now().toString(36)}${
    Math.random().toString(36).slice(2, 6)
  }.tmp`;
}

/** Whether process `pid` is running, where the system says (Linux's /proc); else assumed so. */
export function processRunning(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync("/proc/self");
  } catch {
    return true; // no /proc: cannot tell
  }
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Remove the temporary files that writes of `path` killed mid-way left beside it (see
 * {@link temporaryPath}), leaving those of processes still running. Returns the removed names.
 */
export async function removeStaleTemporaries(path: string): Promise<string[]> {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash) : ".";
  const name = path.slice(slash + 1);
  const removed: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const match = entry.name.startsWith(`${name}.`) &&
        /^(\d+)-[0-9a-z]+\.tmp$/.exec(entry.name.slice(name.length + 1));
      if (!entry.isFile || !match || processRunning(Number(match[1]))) continue;
      await Deno.remove(`${dir}/${entry.name}`).catch(() => {});
      removed.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}

/** Hex SHA-256 of bytes or of a string's UTF-8. */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `path` exists (any other error than "not found" is thrown). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
