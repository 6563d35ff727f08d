/**
 * `parley tail`: prints events as they arrive. By default it reads through a throwaway group of its own
 * (`ephemeral`: the broker keeps nothing of it once tail leaves), so it never takes events from a production
 * group; `--group` reads as a named group instead (and then does take its events).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type AnyEvent, type DeliveryContext, type EventEnvelope, eventNames } from '@parley/core';
import { Command, Option } from 'commander';
import { connected, DEFAULT_ENDPOINTS, openBroker, timeoutOption } from '../broker.js';
import { describeEvent } from '../describe.js';
import { UsageError } from '../exit.js';
import { integer, list } from '../options.js';
import { note, styler } from '../output.js';
import { untilStopped } from '../signals.js';

interface TailOptions {
  readonly endpoints: string;
  readonly timeout: number;
  readonly type?: string[];
  readonly sender?: string[];
  readonly from: 'latest' | 'beginning';
  readonly json?: boolean;
  readonly group?: string;
  readonly max?: number;
}

export function tailCommand(): Command {
  return new Command('tail')
    .description('print events as they arrive, through a throwaway group of its own unless --group is given')
    .option('--endpoints <path>', "Rasa's endpoints.yml", DEFAULT_ENDPOINTS)
    .addOption(timeoutOption())
    .option('--type <names>', 'only these event types, comma-separated (user,bot,slot,…)', list)
    .option('--sender <ids>', 'only these conversations (sender_id), comma-separated', list)
    .addOption(
      new Option('--from <where>', 'where to start, on brokers that replay')
        .choices(['latest', 'beginning'])
        .default('latest'),
    )
    .option('--json', 'one envelope per line, exactly as it arrived (for jq, or `parley publish`)')
    .option('--group <name>', 'read as this consumer group (takes its events) instead of a throwaway one')
    .option('--max <count>', 'stop after this many printed events', integer(1))
    .addHelpText(
      'after',
      '\nExamples:\n  parley tail --type user,bot\n  parley tail --from beginning --json | jq .text\n',
    )
    .action(async (options: TailOptions) => {
      await tail(options);
    });
}

async function tail(options: TailOptions): Promise<void> {
  const known = new Set<string>(eventNames);
  const unknown = (options.type ?? []).filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new UsageError(
      `--type: unknown event type ${unknown.map((n) => `"${n}"`).join(', ')}; expected some of ${[...known].join(', ')}`,
    );
  }
  const { broker } = await openBroker(options.endpoints);
  const stop = untilStopped();
  try {
    if (options.from === 'beginning' && !broker.capabilities.replay) {
      throw new UsageError(
        `--from beginning: the ${broker.name} broker cannot replay what was published before (it is a queue, not a log)`,
      );
    }
    await connected(broker, options.timeout);
    const types = options.type && new Set(options.type);
    const senders = options.sender && new Set(options.sender);
    const style = styler(process.stdout);
    const group =
      options.group ?? `parley-tail-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    let printed = 0;
    let reachedMax!: () => void;
    const done = new Promise<void>((resolve) => (reachedMax = resolve));
    const print = (event: EventEnvelope<AnyEvent>, context: DeliveryContext) => {
      if (types && !types.has(event.event)) return;
      if (senders && !senders.has(event.sender_id)) return;
      if (options.max !== undefined && printed >= options.max) return;
      process.stdout.write(`${options.json ? jsonLine(event, context) : describeEvent(event, style)}\n`);
      printed += 1;
      if (printed === options.max) reachedMax();
    };
    const subscription = broker.subscribe(print, {
      group,
      from: options.from,
      ephemeral: options.group === undefined,
      onError: (error) => note(`warning: ${error.message.replace(/^\[parley\] /, '')}`),
    });
    await Promise.race([subscription.ready, subscription.closed]);
    if (subscription.failure) throw subscription.failure;
    // The throwaway group is named too: the broker's own tools show it while tail runs.
    const how = options.group === undefined ? `a throwaway group, "${group}"` : `group "${group}"`;
    note(`tailing the ${broker.name} broker through ${how} (Ctrl-C to stop)`);
    await Promise.race([stop.stopped, done, subscription.closed]);
    await subscription.close();
    if (subscription.failure) throw subscription.failure;
    note(`${printed} event${printed === 1 ? '' : 's'} printed`);
  } finally {
    stop.dispose();
    await broker.close({ timeoutMs: 10_000 }).catch(() => {});
  }
}

/** The message exactly as it arrived when it is one line (Rasa's json.dumps always is), else re-encoded. */
function jsonLine(event: EventEnvelope<AnyEvent>, context: DeliveryContext): string {
  const text = Buffer.from(context.body.buffer, context.body.byteOffset, context.body.byteLength).toString(
    'utf8',
  );
  return text.includes('\n') ? JSON.stringify(event) : text;
}
