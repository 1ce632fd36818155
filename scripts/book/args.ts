/**
 * Command-line arguments of `deno task book` and `deno task chapter`, read strictly: an unknown
 * option (a typo such as `--reusme`) is an error before anything runs.
 *
 * @module
 */

import type { Profile } from "../../lib/runtime/options.ts";
import { parseOptions } from "../../lib/runtime/options.ts";
import { UserError } from "../../lib/core/errors.ts";
import { backendName } from "../../lib/runtime/backend.ts";

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
  /** `--host ADDRESS` for `--serve` (default 127.0.0.1, this machine only). */
  host: string;
  /** `--port N` for `--serve` (default 8080). */
  port: number;
  /** `--quiet`. */
  quiet: boolean;
  /** `--help`. */
  help: boolean;
  /** Words that are not options (the chapter to run). */
  positional: string[];
}

/** The options of `deno task chapter`: a chapter's own, and `--quiet`, `--help`. */
const CHAPTER_OPTIONS = {
  profile: { type: "string" },
  backend: { type: "string" },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The options of `deno task book` and `deno task serve`. */
const BOOK_OPTIONS = {
  ...CHAPTER_OPTIONS,
  only: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  freeze: { type: "boolean", default: false },
  verify: { type: "boolean", default: false },
  serve: { type: "boolean", default: false },
} as const;

/**
 * Reads the builder's options (`command: "chapter"`: those of `deno task chapter ID`, which takes
 * one word, the chapter). Throws on an unknown option, a missing value, a bad profile, host or
 * port, a stray word, and options that contradict each other.
 */
export function parseBookArgs(
  args: readonly string[],
  usage = "see deno task book --help",
  config: { command?: "book" | "chapter" } = {},
): BookArgs {
  const chapter = config.command === "chapter";
  const { values, positionals } = parseOptions(
    args,
    chapter ? CHAPTER_OPTIONS : BOOK_OPTIONS,
    usage,
    { allowPositionals: chapter },
  ) as { values: Record<string, string | boolean | undefined>; positionals: string[] };
  if (values.profile !== undefined && values.profile !== "quick" && values.profile !== "full") {
    throw new UserError(
      `unknown profile "${values.profile}": use --profile quick or --profile full`,
    );
  }
  if (values.backend !== undefined) backendName(values.backend as string, "--backend");
  if (values.verify && values.freeze) {
    throw new UserError(
      "--verify checks the frozen results and --freeze replaces them: choose one",
    );
  }
  if (values.verify && values.profile === "quick") {
    throw new UserError(
      "--verify reruns the full profile, whose results are frozen; drop --profile",
    );
  }
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UserError("--port needs a port number");
  }
  const host = values.host === undefined ? "127.0.0.1" : String(values.host).trim();
  if (host === "") throw new UserError("--host needs an address, e.g. --host 0.0.0.0");
  return {
    profile: values.profile as Profile | undefined,
    backend: values.backend as string | undefined,
    only: (values.only as string | undefined)?.split(",").map((s) => s.trim()).filter(Boolean),
    freeze: values.freeze === true,
    verify: values.verify === true,
    serve: values.serve === true,
    host,
    port,
    quiet: values.quiet === true,
    help: values.help === true,
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
  config: { command?: "book" | "chapter" } = {},
): BookArgs | undefined {
  try {
    return parseBookArgs(args, "", config);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return undefined;
  }
}
