/**
 * The advice for a missing npm package works: a project with the emoji package removed from its
 * `node_modules` fails to load the dataset with an error that gives a command, and running that
 * command, as printed, brings the dataset back.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadEmojiDataset } from "../lib/data/emoji.ts";
import { UserError } from "../lib/core/errors.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function sh(command: string, cwd: string): Promise<Deno.CommandOutput> {
  // `deno` in the advice is whatever Deno runs this test (it may be npx's).
  const deno = Deno.execPath();
  return await new Deno.Command("sh", {
    args: ["-c", command.replaceAll(/(^|&& )deno /g, `$1'${deno}' `)],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

describe("a missing npm package", () => {
  it("is reported with a command that restores it, and that command works", async () => {
    const project = await Deno.makeTempDir({ prefix: "packages-" });
    const imports = { "emoji-datasource-twitter": "npm:emoji-datasource-twitter@16.0.0" };
    await Deno.writeTextFile(
      `${project}/deno.json`,
      JSON.stringify({ nodeModulesDir: "auto", imports }),
    );
    await Deno.copyFile(`${ROOT}/deno.lock`, `${project}/deno.lock`);
    const installed = await sh("deno install", project);
    assert.ok(installed.success, new TextDecoder().decode(installed.stderr));
    const options = {
      packageRoot: `${project}/node_modules`,
      vendors: ["twitter" as const],
      size: 16 as const,
      limit: 4,
      cacheDir: `${project}/cache`,
    };
    assert.equal((await loadEmojiDataset(options)).count, 4);

    for (
      const damage of [
        "node_modules/emoji-datasource-twitter",
        "node_modules/emoji-datasource-twitter/emoji.json",
      ]
    ) {
      await sh("deno install", project);
      await Deno.remove(`${project}/${damage}`, { recursive: true });
      // What the user was told before: `deno install` alone, which does not bring it back.
      await sh("deno install", project);
      const error = await loadEmojiDataset(options).then(() => undefined, (e) => e);
      assert.ok(error instanceof UserError, `${damage}: ${error}`);
      const command = /in the repository root: (.*)$/.exec(error.message)?.[1];
      assert.ok(command, `no command in: ${error.message}`);
      const followed = await sh(command, project);
      assert.ok(followed.success, new TextDecoder().decode(followed.stderr));
      assert.equal((await loadEmojiDataset(options)).count, 4, `${damage}: not restored`);
    }
    await Deno.remove(project, { recursive: true });
  });
});
