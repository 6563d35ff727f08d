/**
 * `parley bridge --to OTHER.yml`: consumes from the broker of --endpoints and publishes every event to the broker
 * of --to. An event is acknowledged at the source only once the target confirmed it (the handler awaits the
 * target's publish), and one conversation's events go one at a time, in order. SIGINT or SIGTERM drains: events
 * in flight finish, and the counts are printed.
 */
import { Command, Option } from 'commander';
import { connected, DEFAULT_ENDPOINTS, openBroker, timeoutOption } from '../broker.js';
import { integer } from '../options.js';
import { note, progress } from '../output.js';
import { untilStopped } from '../signals.js';

interface BridgeOptions {
  readonly endpoints: string;
  readonly timeout: number;
  readonly to: string;
  readonly group: string;
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly from: 'latest' | 'beginning';
}

export function bridgeCommand(): Command {
  return new Command('bridge')
    .description('consume from one broker and publish to another: acknowledged only once the target has it')
    .requiredOption('--to <path>', "the target's endpoints.yml")
    .option('--endpoints <path>', "the source's endpoints.yml", DEFAULT_ENDPOINTS)
    .addOption(timeoutOption())
    .option(
      '--group <name>',
      'the consumer group read at the source (durable: a restart goes on where it was)',
      'parley-bridge',
    )
    .option('--concurrency <n>', 'conversations bridged at once (each one stays in order)', integer(1), 8)
    .option(
      '--max-attempts <n>',
      'tries per event before it is dead-lettered at the source (the target refused it, or stayed down past its connection_attempts)',
      integer(1),
      5,
    )
    .addOption(
      new Option('--from <where>', 'where a new group starts, on brokers that replay')
        .choices(['latest', 'beginning'])
        .default('latest'),
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
  const stop = untilStopped();
  const source = await openBroker(options.endpoints);
  let target: Awaited<ReturnType<typeof openBroker>> | undefined;
  try {
    target = await openBroker(options.to);
    const to = target.broker;
    // The source must be there; the target may come later: events wait at the source until it confirms them.
    await connected(source.broker, options.timeout);
    const carryHeaders = to.capabilities.headers;
    let bridged = 0;
    const bar = progress('bridged');
    const subscription = source.broker.subscribe(
      async (event, context) => {
        // Resolves once the target confirmed it; only then does the source acknowledge. On a stop, a publish
        // still waiting for the target (unreachable) is given up: the source keeps the event and delivers it again.
        await abortable(
          to.publish(event, {
            allowUnknown: true,
            ...(carryHeaders && Object.keys(context.headers).length > 0 ? { headers: context.headers } : {}),
          }),
          context.signal,
        );
        bridged += 1;
        bar.update(bridged);
      },
      {
        group: options.group,
        concurrency: options.concurrency,
        maxAttempts: options.maxAttempts,
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
    bar.stop();
    // Every event the source acknowledged was confirmed by the target: nothing to flush. What the target may
    // still hold belongs to events given up on stop, which the source delivers again.
    const { received, deadLettered, retried } = subscription.stats;
    note(
      `${signal ? `${signal}: ` : ''}bridged ${bridged} events (received ${received}, retried ${retried}, dead-lettered ${deadLettered})`,
    );
    if (subscription.failure) throw subscription.failure;
  } finally {
    stop.dispose();
    await source.broker.close({ timeoutMs: DRAIN_MS }).catch(() => {});
    await target?.broker.close({ timeoutMs: TARGET_CLOSE_MS }).catch(() => {});
  }
}

/** How long a stop waits for the source to drain (handlers finish, acknowledgements sent). */
const DRAIN_MS = 10_000;
/** How long the target may still send what it holds on stop: only copies of events the source still has. */
const TARGET_CLOSE_MS = 2_000;

/** The promise, or a rejection as soon as the signal aborts (the promise itself goes on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('stopped'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
