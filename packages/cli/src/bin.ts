#!/usr/bin/env node
/** The `parley` command. Exit codes: 0 done, 1 runtime failure, 2 usage or configuration error. */
import { readFileSync } from 'node:fs';
import { CommanderError } from 'commander';
import { describeError, EXIT_USAGE, exitCodeOf } from './exit.js';
import { createProgram } from './program.js';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
// `parley tail | head`: once the reader is gone there is nobody to print for; stop quietly, as shell tools do.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const program = createProgram(version);

try {
  await program.parseAsync(process.argv);
  process.exitCode = 0;
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version exit 0; commander has already printed what was wrong otherwise.
    process.exitCode = error.exitCode === 0 ? 0 : EXIT_USAGE;
  } else {
    process.stderr.write(`${describeError(error)}\n`);
    process.exitCode = exitCodeOf(error);
  }
}
