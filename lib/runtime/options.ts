/**
 * Command-line options of the project's scripts and chapters: `--name value` or
 * `--name=value`, the last one winning, and (for the scripts) every name checked against the
 * script's list.
 *
 * @module
 */

/** Throws, with the script's usage line, on an option that is not in `known`. */
export function checkOptions(args: readonly string[], known: readonly string[], usage: string) {
  for (const arg of args) {
    if (arg.startsWith("--") && !known.includes(arg.split("=")[0])) {
      throw new Error(`unknown option ${arg}; ${usage}`);
    }
  }
}

/**
 * The value of the last `--name value` or `--name=value` in `args`, or undefined when the
 * option is absent. Throws, with the usage line, when the option is given without a value.
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
    throw new Error(`${name} needs a value; ${usage}`);
  }
  return value;
}
