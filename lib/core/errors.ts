/**
 * The two kinds of failure, told apart for whoever runs a command. A {@link UserError} is a
 * mistake or a missing piece the user can put right by following its message: a wrong option,
 * backend or schedule name, a missing package, a damaged file. The project's commands and
 * chapters print such an error alone, in one line, and exit with status 2
 * (lib/runtime/main.ts). Any other error is a bug of ours and keeps its stack trace.
 *
 * @module
 */

/** An error the user fixes by following its message (see the module comment). */
export class UserError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UserError";
  }
}
