/**
 * `parley bridge --to OTHER.yml`: consumes from the broker of --endpoints and publishes every event to the broker
 * of --to. An event is acknowledged at the source only once the target confirmed it (the handler awaits the
 * target's publish), and one conversation's events go one at a time, in order. SIGINT or SIGTERM drains: events
 * in flight finish, and the counts are printed.
 */
import { Command } from 'commander';
import { DEFAULT_ENDPOINTS, openBroker } from '../broker.js';
import { CliError } from '../exit.js';
import { integer } from '../options.js';
import { note, progress } from '../output.js';
import { untilStopped } from '../signals.js';

interface BridgeOptions {
  readonly endpoints: string;
  readonly to: string;
  readonly group: string;
  readonly concurrency: number;
  readonly from: 'latest' | 'beginning';
}

export function bridgeCommand(): Command {
  return new Command('bridge')
    .description('consume from one broker and publish to another: acknowledged only once the target has it')
    .requiredOption('--to <path>', "the target's endpoints.yml")
    .option('--endpoints <path>', "the source's endpoints.yml", DEFAULT_ENDPOINTS)
    .option(
      '--group <name>',
      'the consumer group read at the source (durable: a restart goes on where it was)',
      'parley-bridge',
    )
    .option('--concurrency <n>', 'conversations bridged at once (each one stays in order)', integer(1), 8)
    .option(
      '--from <where>',
      'where a new group starts on brokers that replay: latest or beginning',
      'latest',
    )
    .addHelpText(
      'after',
      '\nExample:\n  parley bridge --endpoints rabbitmq.yml --to redis.yml --group to-redis\n',
    )
    .action(async (options: BridgeOptions) => {
      await bridge(options);
    });
}

async function bridge(options: BridgeOptions): Promise<void> {
  if (options.from !== 'latest' && options.from !== 'beginning') {
    throw new CliError(`--from: expected latest or beginning, found "${options.from}"`, 2);
  }
  const stop = untilStopped();
  const source = await openBroker(options.endpoints);
  let target: Awaited<ReturnType<typeof openBroker>> | undefined;
  try {
    target = await openBroker(options.to);
    const to = target.broker;
    const carryHeaders = to.capabilities.headers;
    let bridged = 0;
    const bar = progress('bridged');
    const subscription = source.broker.subscribe(
      async (event, context) => {
        // Resolves once the target confirmed it; only then does the source acknowledge.
        await to.publish(event, {
          allowUnknown: true,
          ...(carryHeaders && Object.keys(context.headers).length > 0 ? { headers: context.headers } : {}),
        });
        bridged += 1;
        bar.update(bridged);
      },
      {
        group: options.group,
        concurrency: options.concurrency,
        ordering: 'per-sender',
        from: options.from,
        onError: (error) => note(`warning: ${error.message.replace(/^\[parley\] /, '')}`),
      },
    );
    await Promise.race([subscription.ready, subscription.closed]);
    if (subscription.failure) throw subscription.failure;
    note(
      `bridging ${source.broker.name} (${options.endpoints}, group "${options.group}") to ${to.name} (${options.to}); Ctrl-C to stop`,
    );
    const signal = await Promise.race([stop.stopped, subscription.closed.then(() => undefined)]);
    await subscription.close();
    await to.flush({ timeoutMs: 30_000 });
    bar.stop();
    const { received, deadLettered, retried } = subscription.stats;
    note(
      `${signal ? `${signal}: ` : ''}bridged ${bridged} events (received ${received}, retried ${retried}, dead-lettered ${deadLettered})`,
    );
    if (subscription.failure) throw subscription.failure;
  } finally {
    stop.dispose();
    await source.broker.close({ timeoutMs: 30_000 }).catch(() => {});
    await target?.broker.close({ timeoutMs: 30_000 }).catch(() => {});
  }
}
