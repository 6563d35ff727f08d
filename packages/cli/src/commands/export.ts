/**
 * `parley export --tracker-store URL`: what `rasa export` does. Reads Rasa's SQL tracker store and publishes its
 * events to the broker of endpoints.yml, in the order Rasa's exporter publishes them (by timestamp; within a
 * conversation, ties in the order they were stored), each as the stored event JSON with `sender_id` added last,
 * and with a `rasa-export-process-id` header (one uuid per run) where the broker carries headers.
 */
import { randomUUID } from 'node:crypto';
import { type AnyEvent, type EventEnvelope, safeDecodeEvent } from '@parley/core';
import { Command } from 'commander';
import { DEFAULT_ENDPOINTS, loadBrokerConfig, timeoutOption, withBroker } from '../broker.js';
import { withSender } from '../events-file.js';
import { CliError, UsageError } from '../exit.js';
import { list, seconds } from '../options.js';
import { note, progress } from '../output.js';
import {
  type EventFilter,
  type EventRow,
  openTrackerStore,
  trackerStoreFromEndpoints,
} from '../tracker-store.js';

interface ExportOptions {
  readonly endpoints: string;
  readonly timeout: number;
  readonly trackerStore?: string;
  readonly table: string;
  readonly minimumTimestamp?: number;
  readonly maximumTimestamp?: number;
  readonly conversationIds?: string[];
}

/** Rasa's header naming the export run, on every event it publishes. */
export const EXPORT_HEADER = 'rasa-export-process-id';
const PAGE = 1_000;

export function exportCommand(): Command {
  return new Command('export')
    .description("publish the events of Rasa's SQL tracker store to the broker, as `rasa export` does")
    .option(
      '--tracker-store <url>',
      "postgresql://user:password@host:5432/database, or sqlite:///path/to/rasa.db (or the file); default: endpoints.yml's tracker_store",
    )
    .option('--endpoints <path>', "Rasa's endpoints.yml (its event_broker)", DEFAULT_ENDPOINTS)
    .addOption(timeoutOption())
    .option('--table <name>', "the tracker store's events table", 'events')
    .option('--minimum-timestamp <seconds>', 'only events at or after this Unix time', seconds)
    .option('--maximum-timestamp <seconds>', 'only events before this Unix time', seconds)
    .option('--conversation-ids <ids>', 'only these conversations (sender ids), comma-separated', list)
    .addHelpText(
      'after',
      '\nExample:\n  parley export --tracker-store postgresql://rasa:secret@db:5432/rasa --minimum-timestamp 1718964815\n',
    )
    .action(async (options: ExportOptions) => {
      await exportEvents(options);
    });
}

async function exportEvents(options: ExportOptions): Promise<void> {
  const { minimumTimestamp: min, maximumTimestamp: max } = options;
  if (min !== undefined && max !== undefined && min > max) {
    throw new UsageError(
      `--minimum-timestamp (${min}) must not be greater than --maximum-timestamp (${max})`,
    );
  }
  await loadBrokerConfig(options.endpoints); // a missing or wrong endpoints.yml is said before anything is read
  const url = options.trackerStore ?? (await trackerStoreFromEndpoints(options.endpoints));
  if (url === undefined) {
    throw new UsageError(`no --tracker-store URL, and ${options.endpoints} has no tracker_store section`);
  }
  const store = await openTrackerStore(url, options.table);
  try {
    const filter: EventFilter = {
      ...(await conversations(store.conversationIds(), options.conversationIds)),
      ...(min === undefined ? {} : { minimumTimestamp: min }),
      ...(max === undefined ? {} : { maximumTimestamp: max }),
    };
    const total = await store.count(filter);
    if (total === 0) throw new CliError(`no events to export from ${store.description} with these filters`);
    await withBroker(options.endpoints, options.timeout, async ({ broker }) => {
      const processId = randomUUID();
      const publishOptions = broker.capabilities.headers ? { headers: { [EXPORT_HEADER]: processId } } : {};
      const header = broker.capabilities.headers ? `, ${EXPORT_HEADER} ${processId}` : '';
      note(`exporting ${total} events from ${store.description} to the ${broker.name} broker${header}`);
      const bar = progress('exporting', total);
      let published = 0;
      let invalid = 0;
      let after: EventRow | undefined;
      try {
        for (;;) {
          const rows = await store.page(filter, after, PAGE);
          if (rows.length === 0) break;
          after = rows[rows.length - 1];
          const events: EventEnvelope<AnyEvent>[] = [];
          const sources: EventRow[] = [];
          for (const row of rows) {
            const decoded = safeDecodeEvent(withSender(row.data, row.sender_id));
            if (decoded.success) {
              events.push(decoded.envelope);
              sources.push(row);
            } else {
              invalid += 1;
              process.stderr.write(
                `row id ${row.id} (${row.sender_id}): ${decoded.error.message.replace(/^\[parley\] /, '')}\n`,
              );
            }
          }
          const results = await broker.publishMany(events, publishOptions);
          const failedAt = results.findIndex((r) => !r.ok);
          if (failedAt >= 0) {
            published += failedAt;
            const result = results[failedAt];
            const timestamp = sources[failedAt]?.timestamp;
            throw new CliError(
              `published ${published} of ${total} events, then: ${result && !result.ok ? result.error.message.replace(/^\[parley\] /, '') : 'failed'}. To continue where it stopped, run the same export with --minimum-timestamp ${timestamp}`,
            );
          }
          published += events.length;
          bar.update(published + invalid);
        }
      } finally {
        bar.stop();
      }
      await broker.flush({ timeoutMs: 30_000 });
      note(`published ${published} events${invalid > 0 ? `; ${invalid} invalid rows skipped` : ''}`);
      if (invalid > 0)
        throw new CliError(`${invalid} rows of the tracker store are not valid Rasa events (listed above)`);
    });
  } finally {
    await store.close().catch(() => {});
  }
}

/** Rasa's check of `--conversation-ids`: unknown ones are reported, and none at all is an error. */
async function conversations(
  stored: Promise<string[]>,
  requested: readonly string[] | undefined,
): Promise<Pick<EventFilter, 'conversationIds'>> {
  if (requested === undefined) return {};
  const known = new Set(await stored);
  const missing = requested.filter((id) => !known.has(id));
  const found = requested.filter((id) => known.has(id));
  if (found.length === 0) {
    throw new CliError(
      `none of the requested conversation ids is in the tracker store: ${requested.join(', ')}`,
    );
  }
  if (missing.length > 0) note(`warning: not in the tracker store, skipped: ${missing.join(', ')}`);
  return { conversationIds: [...new Set(found)] };
}
