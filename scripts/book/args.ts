/**
 * Command-line arguments of `deno task book` and `deno task chapter`.
 *
 * @module
 */

import type { Profile } from "../../lib/book/runtime.ts";

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
  /** `--serve`. */
  serve: boolean;
  /** `--port N` for `--serve` (default 8080). */
  port: number;
  /** `--quiet`. */
  quiet: boolean;
  /** `--help`. */
  help: boolean;
  /** Words that are not options (e.g. the chapter to run). */
  positional: string[];
  /** Everything this parser does not know (positional words too), in order, to pass on to a chapter. */
  rest: string[];
}

/** Reads the builder's options; unknown options are kept in `rest`. */
export function parseBookArgs(args: readonly string[]): BookArgs {
  const parsed: BookArgs = {
    freeze: false,
    serve: false,
    port: 8080,
    quiet: false,
    help: false,
    positional: [],
    rest: [],
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [name, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined || (inline === undefined && v.startsWith("--"))) {
        throw new Error(`${name} needs a value`);
      }
      return v;
    };
    switch (name) {
      case "--profile": {
        const v = value();
        if (v !== "quick" && v !== "full") {
          throw new Error(`unknown profile "${v}": use --profile quick or --profile full`);
        }
        parsed.profile = v;
        break;
      }
      case "--backend":
        parsed.backend = value();
        break;
      case "--only":
        parsed.only = value().split(",").map((s) => s.trim()).filter(Boolean);
        break;
      case "--port": {
        const v = Number(value());
        if (!Number.isInteger(v) || v < 1 || v > 65535) {
          throw new Error("--port needs a port number");
        }
        parsed.port = v;
        break;
      }
      case "--freeze":
        parsed.freeze = true;
        break;
      case "--serve":
        parsed.serve = true;
        break;
      case "--quiet":
        parsed.quiet = true;
        break;
      case "--help":
      case "-h":
        parsed.help = true;
        break;
      default:
        parsed.rest.push(arg);
        if (!arg.startsWith("-")) parsed.positional.push(arg);
    }
  }
  return parsed;
}

/**
 * {@link parseBookArgs} for a command-line entry point: on a malformed option, prints the
 * error and `usage` to stderr and returns undefined (the caller exits with status 2).
 */
export function parseBookArgsOrExplain(
  args: readonly string[],
  usage: string,
): BookArgs | undefined {
  try {
    return parseBookArgs(args);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return undefined;
  }
}
