/**
 * Command-line arguments of `deno task book` and `deno task chapter`, read strictly: an unknown
 * option (a typo such as `--reusme`) is an error before anything runs.
 *
 * @module
 */

import type { Profile } from "../../lib/book/runtime.ts";
import { parseOptions } from "../../lib/runtime/options.ts";

/** Parsed arguments. */
export interface BookArgs {
  /** `--profile quick|full`. */
  profile?: Profile;
  /** `--backend NAME`. */
  backend?: string;
  /** `--only 01,02`. */
  only?: string[];
  /** `--freeze`. */
  freeze: boolean;
  /** `--verify`: rerun the chosen chapters and compare them with their frozen results. */
  verify: boolean;
  /** `--serve`. */
  serve: boolean;
  /** `--port N` for `--serve` (default 8080). */
  port: number;
  /** `--quiet`. */
  quiet: boolean;
  /** `--help`. */
  help: boolean;
  /** Words that are not options (the chapter to run). */
  positional: string[];
}

/**
 * Reads the builder's options. Throws on an unknown option, a missing value, a bad profile or
 * port, and (unless `allowPositionals`, for `deno task chapter ID`) on a stray word.
 */
export function parseBookArgs(
  args: readonly string[],
  usage = "see deno task book --help",
  config: { allowPositionals?: boolean } = {},
): BookArgs {
  const { values, positionals } = parseOptions(
    args,
    {
      profile: { type: "string" },
      backend: { type: "string" },
      only: { type: "string" },
      port: { type: "string" },
      freeze: { type: "boolean", default: false },
      verify: { type: "boolean", default: false },
      serve: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    usage,
    config,
  );
  if (values.profile !== undefined && values.profile !== "quick" && values.profile !== "full") {
    throw new Error(`unknown profile "${values.profile}": use --profile quick or --profile full`);
  }
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error("--port needs a port number");
  }
  return {
    profile: values.profile as Profile | undefined,
    backend: values.backend,
    only: values.only?.split(",").map((s) => s.trim()).filter(Boolean),
    freeze: values.freeze,
    verify: values.verify,
    serve: values.serve,
    port,
    quiet: values.quiet,
    help: values.help,
    positional: positionals,
  };
}

/**
 * {@link parseBookArgs} for a command-line entry point: on a malformed option, prints the
 * error and `usage` to stderr and returns undefined (the caller exits with status 2).
 */
export function parseBookArgsOrExplain(
  args: readonly string[],
  usage: string,
  config: { allowPositionals?: boolean } = {},
): BookArgs | undefined {
  try {
    return parseBookArgs(args, "", config);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return undefined;
  }
}
