/**
 * Command-line options of the project's scripts and chapters, read with Node's
 * `util.parseArgs` in strict mode: an unknown option, a missing value or a stray word is an
 * error that names it and shows the usage, before anything runs.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UserError } from "../core/errors.ts";

/** Which size of a chapter runs: `quick` (tiny models, minutes on a CPU) or `full` (the published book). */
export type Profile = "quick" | "full";

/** The options' declarations, as `util.parseArgs` takes them. */
export type OptionSpecs = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parse `args` strictly against `options`; throws `Error("<what is wrong>; <usage>")`.
 *
 * ```ts
 * const { values } = parseOptions(Deno.args, { minutes: { type: "string" } }, USAGE);
 * ```
 */
export function parseOptions<O extends OptionSpecs>(
  args: readonly string[],
  options: O,
  usage: string,
  config: { allowPositionals?: boolean } = {},
) {
  try {
    return parseArgs({
      args: [...args],
      options,
      strict: true,
      allowPositionals: config.allowPositionals ?? false,
    });
  } catch (error) {
    const message = (error as Error).message.replace(/\.?\s*(To specify|Did you forget).*$/s, "");
    throw new UserError(usage ? `${message}; ${usage}` : message);
  }
}

/**
 * The value of the last `--name value` or `--name=value` in `args`, or undefined when the
 * option is absent; for a library that reads one option among others it does not own (the
 * backend from a chapter's arguments). Throws, with the usage line, on a missing value.
 */
export function optionValue(
  args: readonly string[],
  name: string,
  usage: string,
): string | undefined {
  const i = args.findLastIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  const value = args[i] === name ? args[i + 1] : args[i].slice(name.length + 1);
  if (value === undefined || value === "" || value.startsWith("--")) {
    throw new UserError(`${name} needs a value; ${usage}`);
  }
  return value;
}
