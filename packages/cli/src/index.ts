/**
 * @parley/cli: the `parley` command. The program is exported for embedding and tests; the bin runs it.
 */
export { describeEvent } from './describe.js';
export { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, exitCodeOf, UsageError } from './exit.js';
export { createProgram } from './program.js';
