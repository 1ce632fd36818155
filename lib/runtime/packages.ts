/**
 * Advice that really restores a missing or damaged npm package of the project's
 * `node_modules/`. `deno install` alone does not: Deno's setup cache
 * (`node_modules/.deno/.setup-cache.bin`) still believes the package is laid out, and a package
 * folder that exists is not looked into. Removing the package's folder under
 * `node_modules/.deno/` and that cache first makes `deno install` lay the package out again,
 * from Deno's own package cache or the registry (tests/packages_test.ts follows this advice).
 *
 * @module
 */
import { relative } from "node:path";

/**
 * The shell command, to run in the repository root, that restores npm package `name` (e.g.
 * `emoji-datasource-twitter`, `@tensorflow/tfjs-node`) in the `node_modules` folder
 * `packageRoot`.
 */
export function reinstallCommand(packageRoot: string, name: string): string {
  let root = relative(Deno.cwd(), packageRoot) || ".";
  if (root.startsWith("..")) root = packageRoot;
  const quoted = (path: string) => /^[\w./+@-]+$/.test(path) ? path : `'${path}'`;
  const folder = `${root}/.deno/${name.replace("/", "+")}@`;
  return `rm -rf ${quoted(folder)}* ${quoted(`${root}/.deno/.setup-cache.bin`)} && deno install`;
}
