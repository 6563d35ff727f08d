/**
 * `parley publish FILE`: publishes the events of a JSON Lines file or a Rasa tracker dump. Every event is
 * validated first: each bad one is reported with its line (or index) and reason, and nothing is sent, unless
 * `--skip-invalid` says to send the valid ones.
 */
import { Command } from 'commander';
import { DEFAULT_ENDPOINTS, timeoutOption, withBroker } from '../broker.js';
import { readEventsFile } from '../events-file.js';
import { CliError } from '../exit.js';
import { note, progress } from '../output.js';

interface PublishOptions {
  readonly endpoints: string;
  readonly timeout: number;
  readonly sender?: string;
  readonly skipInvalid?: boolean;
  readonly dryRun?: boolean;
}

/** Events handed to the broker at once: bounded, so that progress moves and memory stays flat. */
const CHUNK = 500;

export function publishCommand(): Command {
  return new Command('publish')
    .description('publish the events of a JSON Lines file or a Rasa tracker dump, validated first')
    .argument(
      '<file>',
      'JSON Lines (one envelope per line), a tracker dump ({sender_id, events}), or a JSON array of events',
    )
    .option('--endpoints <path>', "Rasa's endpoints.yml", DEFAULT_ENDPOINTS)
    .addOption(timeoutOption())
    .option('--sender <id>', 'sender_id for events that have none (and for every event of a tracker dump)')
    .option(
      '--skip-invalid',
      'publish the valid events and report the invalid ones, instead of sending nothing',
    )
    .option('--dry-run', 'validate only: report what would be published')
    .addHelpText(
      'after',
      '\nExamples:\n  parley publish conversation.jsonl\n  parley publish tracker.json --sender alice\n',
    )
    .action(async (file: string, options: PublishOptions) => {
      await publish(file, options);
    });
}

async function publish(file: string, options: PublishOptions): Promise<void> {
  const { events, invalid } = await readEventsFile(file, options.sender);
  for (const bad of invalid) process.stderr.write(`${file}: ${bad.where}: ${bad.reason}\n`);
  if (invalid.length > 0 && !options.skipInvalid) {
    const valid = events.length === 1 ? 'the 1 valid one' : `the ${events.length} valid ones`;
    throw new CliError(
      `${file}: ${invalid.length} invalid event${invalid.length === 1 ? '' : 's'}: nothing was published (--skip-invalid publishes ${valid})`,
    );
  }
  if (options.dryRun) {
    note(`${file}: ${events.length} valid events; nothing published (--dry-run)`);
    return;
  }
  await withBroker(options.endpoints, options.timeout, async ({ broker }) => {
    const bar = progress('publishing', events.length);
    let published = 0;
    let failed = 0;
    let firstError: Error | undefined;
    try {
      for (let start = 0; start < events.length; start += CHUNK) {
        const results = await broker.publishMany(events.slice(start, start + CHUNK));
        for (const result of results) {
          if (result.ok) published += 1;
          else {
            failed += 1;
            firstError ??= result.error;
          }
        }
        bar.update(published + failed);
        // A broker that refuses (or is unreachable and not buffering) would refuse the rest too.
        if (failed > 0) break;
      }
    } finally {
      bar.stop();
    }
    const skipped = invalid.length > 0 ? `, ${invalid.length} invalid skipped` : '';
    if (failed > 0) {
      const unsent = events.length - published;
      throw new CliError(
        `published ${published} of ${events.length} events to the ${broker.name} broker; ${unsent} not sent${skipped}: ${firstError?.message.replace(/^\[parley\] /, '')}`,
      );
    }
    note(`published ${published} events to the ${broker.name} broker${skipped}`);
  });
}
