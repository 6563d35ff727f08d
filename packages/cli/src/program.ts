/** The `parley` program: one module per command under `commands/`. */
import { Command } from 'commander';
import { bridgeCommand } from './commands/bridge.js';
import { checkCommand } from './commands/check.js';
import { deadLettersCommand } from './commands/dead-letters.js';
import { exportCommand } from './commands/export.js';
import { publishCommand } from './commands/publish.js';
import { tailCommand } from './commands/tail.js';

export const EXIT_CODES_HELP = `
Exit codes:
  0  done
  1  runtime failure: broker unreachable or refusing, invalid events, events not delivered
  2  usage or configuration error: bad option or argument, unreadable or invalid endpoints.yml,
     adapter not installed, a command the broker cannot do

Every command reads the event_broker section of Rasa's endpoints.yml (--endpoints, default ./endpoints.yml)
and loads the adapter its type: names (pika → @parley/amqp, kafka → @parley/kafka, redis, sqs, file, memory).
`;

export function createProgram(version: string): Command {
  const program = new Command('parley')
    .description(
      "Rasa's conversation events on any Parley broker: tail, publish, bridge, export, check, dead letters",
    )
    .version(version)
    .addHelpText('after', EXIT_CODES_HELP);
  for (const command of [
    tailCommand(),
    publishCommand(),
    deadLettersCommand(),
    bridgeCommand(),
    exportCommand(),
    checkCommand(),
  ]) {
    program.addCommand(command);
  }
  configure(program);
  return program;
}

/**
 * Every command, nested ones included: errors are thrown to the bin (which exits 2 for usage errors) instead of
 * commander exiting 1, and followed by where to find the usage.
 */
function configure(command: Command): void {
  command.exitOverride().showHelpAfterError('(run with --help for usage)');
  for (const sub of command.commands) configure(sub);
}
