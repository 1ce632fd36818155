/**
 * How the project's commands and chapters end on a {@link UserError}: its message alone, in one
 * line, prefixed with the command's name, and exit status 2. Every other error goes on to
 * Deno's own report, stack trace included: it is a bug to fix, not a mistake to correct.
 *
 * @module
 */
import { UserError } from "../core/errors.ts";

/** The exit status of a user's mistake (as for a wrong option in most Unix tools). */
export const USER_ERROR_STATUS = 2;

/** Prints `label: message` of a user error and exits with status 2; anything else is left be. */
function endOnUserError(error: unknown, label: string): void {
  if (!(error instanceof UserError)) return;
  console.error(`${label}: ${error.message}`);
  Deno.exit(USER_ERROR_STATUS);
}

/**
 * From now on, a {@link UserError} that nothing catches (thrown at the top level, or a rejected
 * promise nobody awaits) ends the program in one line with status 2.
 */
export function endUserErrorsInOneLine(label: string): void {
  globalThis.addEventListener("unhandledrejection", (event) => endOnUserError(event.reason, label));
  globalThis.addEventListener("error", (event) => endOnUserError(event.error, label));
}
