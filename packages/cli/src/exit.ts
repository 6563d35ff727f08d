/**
 * Exit codes and the errors that choose them. Every failure ends as one line on stderr, `[parley] …`, that says
 * what to fix; credentials are redacted from it whatever produced the message.
 *
 * - 0: done;
 * - 1: a runtime failure: the broker is unreachable or refused something, events were invalid or not delivered;
 * - 2: a usage or configuration error: an unknown option, a missing argument, an unreadable or invalid
 *   endpoints.yml, an adapter that is not installed, a command the broker cannot do (no dead letters, no replay).
 */
import { redactUrl } from '@parley/core';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A failure the user can act on, with the exit code it ends with. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILURE, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** The command line (or what it names) is wrong: exit 2. */
export class UsageError extends CliError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT_USAGE, options);
    this.name = 'UsageError';
  }
}

/** Codes of Parley errors that mean the configuration is wrong rather than the broker failing. */
const CONFIG_CODES = new Set(['CONFIG_INVALID', 'BROKER_CONFIG']);

/** The exit code an error ends the process with. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CONFIG_CODES.has(code) ? EXIT_USAGE : EXIT_FAILURE;
}

/** The one line printed for an error: `[parley] …`, with every URL's password redacted. */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return redactUrl(message.startsWith('[parley]') ? message : `[parley] ${message}`);
}
