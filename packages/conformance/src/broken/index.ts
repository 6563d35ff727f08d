/**
 * Deliberately broken drivers: each breaks one promise of the contract, and names the cases that must fail against
 * it. The suite's own tests run those cases and assert that they FAIL (a suite that cannot fail proves nothing);
 * they ship with the package so that an adapter author sees what the suite catches, and how.
 *
 * Each one wraps the memory driver of `@parley/core` (or the relayed one, a memory hub behind a TCP hop, where the
 * breakage is about the network), so that everything but the one defect is a driver the suite passes.
 */
import {
  type Broker,
  type BrokerDriver,
  type Capabilities,
  ConnectionError,
  type ConsumerSink,
  type DriverFaults,
  defineBroker,
  type MemoryBrokerOptions,
  MemoryHub,
  memoryDriver,
} from '@parley/core';
import type { CaseName, ConformanceOptions } from '../types.js';
import { type Relay, relayDriver, startRelay } from './relay.js';

export { type Relay, type RelayDriverOptions, relayDriver, startRelay } from './relay.js';

/** What a driver under test needs while its cases run: the suite's options for it, and how to stop it. */
export interface DriverSetup {
  readonly options: ConformanceOptions;
  close(): Promise<void>;
}

/** A driver the suite must reject. */
export interface BrokenDriver {
  /** Its name, e.g. `duplicates-in-group`. */
  readonly name: string;
  /** What it does wrong. */
  readonly breaks: string;
  /** The cases that must fail against it (each passes against the driver it was made from). */
  readonly caughtBy: readonly CaseName[];
  /** Makes a fresh broker server for it (a hub, a relay) and the suite's options for it. */
  start(): Promise<DriverSetup>;
}

/**
 * How long the cases wait for deliveries against a broken driver: short, since many defects show as events that
 * never come (a case then fails by its timeout). The reference drivers get the suite's usual patience.
 */
export const BROKEN_TIMEOUT_MS = 2_000;
const REFERENCE_TIMEOUT_MS = 20_000;

type Wrap = (driver: BrokerDriver<MemoryHub>, destination: string) => BrokerDriver<MemoryHub>;

/** The suite's options for memory brokers on a fresh hub, their drivers passed through `wrap`. */
function memorySetup(
  name: string,
  wrap: Wrap,
  driverOptions: MemoryBrokerOptions = {},
  extra: Partial<ConformanceOptions> = {},
): DriverSetup {
  const hub = new MemoryHub(name);
  const faults = new WeakMap<Broker, DriverFaults>();
  return {
    options: {
      name,
      create: ({ destination }) => {
        const driver = wrap(memoryDriver({ ...driverOptions, hub, destination }), destination);
        const broker = defineBroker(driver, { onWarning: () => {} });
        if (driver.faults) faults.set(broker, driver.faults);
        return broker;
      },
      probe: {
        publishRaw: async (destination, body, options) => void hub.publishRaw(destination, body, options),
        deadLetters: async (destination, group) =>
          hub.deadLetters(destination, group).map(({ body, headers }) => ({ body, headers: { ...headers } })),
      },
      chaos: {
        faults: (broker) => faults.get(broker),
        restartBroker: () => hub.restart({ downMs: 200 }),
        events: 2_000,
      },
      timeoutMs: BROKEN_TIMEOUT_MS,
      report: false,
      ...extra,
    },
    close: async () => {},
  };
}

/** The suite's options for relayed brokers (a memory hub behind a TCP echo relay), made by `make`. */
async function relaySetup(
  name: string,
  make: (
    hub: MemoryHub,
    destination: string,
    relay: Relay,
    proxy?: { host: string; port: number },
  ) => BrokerDriver,
): Promise<DriverSetup> {
  const hub = new MemoryHub(name);
  const relay = await startRelay();
  return {
    options: {
      name,
      create: ({ destination, proxy }) =>
        defineBroker(make(hub, destination, relay, proxy), { onWarning: () => {} }),
      probe: {
        publishRaw: async (destination, body, options) => void hub.publishRaw(destination, body, options),
        deadLetters: async (destination, group) =>
          hub.deadLetters(destination, group).map(({ body, headers }) => ({ body, headers: { ...headers } })),
      },
      chaos: { upstream: { host: relay.host, port: relay.port }, events: 2_000 },
      timeoutMs: BROKEN_TIMEOUT_MS,
      report: false,
    },
    close: () => relay.close(),
  };
}

/** A reference driver's setup gets the suite's usual patience: a timeout there would be a false failure. */
const patient = (setup: DriverSetup): DriverSetup => ({
  ...setup,
  options: { ...setup.options, timeoutMs: REFERENCE_TIMEOUT_MS },
});

/** Drivers the broken ones are made from, which the suite passes: the controls of its own tests. */
export const referenceDrivers = {
  /** The memory driver, unchanged. */
  memory: { start: async (): Promise<DriverSetup> => patient(memorySetup('memory', (driver) => driver)) },
  /** A memory hub behind a TCP relay, connected through `ctx.proxy` when the suite gives one. */
  relayed: {
    start: async (): Promise<DriverSetup> =>
      patient(
        await relaySetup('relayed', (hub, destination, relay, proxy) =>
          relayDriver({ hub, destination, address: proxy ?? relay }),
        ),
      ),
  },
  /**
   * The memory driver, with every third `send` failing as retryable (a confirm timeout, a throttle): one sender's
   * events must still reach the broker in publish order (issue 7, defect 1: a resent batch overtook by a newer one).
   */
  flakySend: {
    start: async (): Promise<DriverSetup> => {
      let sends = 0;
      return patient(
        memorySetup('flaky-send', (driver) => ({
          ...driver,
          send: async (batch) => {
            if (++sends % 3 !== 1) return driver.send(batch);
            const error = new ConnectionError('flaky-send', 'no confirm in time (planned)');
            return batch.map(() => ({ ok: false as const, error, retryable: true }));
          },
        })),
      );
    },
  },
  /** The memory driver without the hub's group-wide sender lock, declaring what it keeps: `ordering: 'consumer'`. */
  consumerOrdering: {
    start: async (): Promise<DriverSetup> =>
      patient(memorySetup('consumer-ordering', perConsumerLock('consumer'))),
  },
} as const;

/** Consumers lock senders each for itself only (the hub is asked for no order), declaring `ordering`. */
function perConsumerLock(ordering: Capabilities['ordering']): Wrap {
  return (driver) => ({
    ...driver,
    capabilities: { ...driver.capabilities, ordering },
    // Core still serialises a sender within each subscription; across consumers, nothing does.
    consume: (options, sink) => driver.consume({ ...options, ordering: 'none' }, sink),
  });
}

/** The broken drivers, and the cases that catch each. */
export const brokenDrivers: readonly BrokenDriver[] = [
  {
    name: 'duplicates-in-group',
    breaks:
      'delivers each message to two consumers of a group (every other consumer reads a hidden copy of the group)',
    caughtBy: ['competing-consumers', 'ordering', 'delayed-retry'],
    start: async () => {
      const joined = new Map<string, number>();
      return memorySetup('duplicates-in-group', (driver, destination) => ({
        ...driver,
        consume: (options, sink) => {
          const key = `${destination}\u0000${options.group}`;
          const n = joined.get(key) ?? 0;
          joined.set(key, n + 1);
          return driver.consume(n % 2 === 0 ? options : { ...options, group: `${options.group}~copy` }, sink);
        },
      }));
    },
  },
  {
    name: 'sender-reordered',
    breaks: 'writes each batch in reverse order (a sender’s events reach the broker out of publish order)',
    caughtBy: ['ordering', 'batch-publish', 'handlers-and-iterator', 'chaos-cut'],
    start: async () =>
      memorySetup('sender-reordered', (driver) => ({
        ...driver,
        send: async (batch) => [...(await driver.send([...batch].reverse()))].reverse(),
      })),
  },
  {
    name: 'batch-dropped',
    breaks: 'reports every message of a batch sent, but drops the last one of each batch of two or more',
    caughtBy: ['roundtrip', 'batch-publish', 'flush-on-close'],
    start: async () =>
      memorySetup('batch-dropped', (driver) => ({
        ...driver,
        send: async (batch) => {
          if (batch.length < 2) return driver.send(batch);
          const outcomes = await driver.send(batch.slice(0, -1));
          return [...outcomes, { ok: true }];
        },
      })),
  },
  {
    name: 'ack-before-handler',
    breaks:
      'acknowledges each message as it delivers it, before any handler ran (release and ack do nothing)',
    caughtBy: ['retry-then-succeed', 'release-redelivers', 'cut-redelivers'],
    start: async () =>
      memorySetup('ack-before-handler', (driver) => ({
        ...driver,
        consume: (options, sink) => {
          const early: ConsumerSink = {
            deliver: (delivery) => {
              void delivery.ack().catch(() => undefined);
              sink.deliver({ ...delivery, ack: async () => {}, release: async () => {} });
            },
            lost: (error) => sink.lost(error),
          };
          return driver.consume(options, early);
        },
      })),
  },
  {
    name: 'lost-dead-letter',
    breaks: 'resolves deadLetter() without storing anything',
    caughtBy: ['dead-letter', 'undecodable-payload', 'dead-letter-redrive'],
    start: async () =>
      memorySetup('lost-dead-letter', (driver) => ({
        ...driver,
        deadLetter: async () => {},
      })),
  },
  {
    name: 'redrive-ignores-ids',
    breaks: 'redrives every dead letter of the group, whichever ids were asked for',
    caughtBy: ['dead-letter-redrive'],
    start: async () =>
      memorySetup('redrive-ignores-ids', (driver) => ({
        ...driver,
        deadLetters: {
          list: (group) => driver.deadLetters!.list(group),
          redrive: async (group) => driver.deadLetters!.redrive(group, await driver.deadLetters!.list(group)),
        },
      })),
  },
  {
    name: 'retry-delay-ignored',
    breaks: 'ignores the delay of release({ delayMs }): a failed event comes back at once',
    caughtBy: ['delayed-retry'],
    start: async () =>
      memorySetup('retry-delay-ignored', (driver) => ({
        ...driver,
        consume: (options, sink) =>
          driver.consume(options, {
            deliver: (delivery) => sink.deliver({ ...delivery, release: () => delivery.release() }),
            lost: (error) => sink.lost(error),
          }),
      })),
  },
  {
    name: 'delivery-count-per-consumer',
    breaks:
      'declares deliveryCount but counts deliveries per consumer (in the client), so a new consumer starts again at 1',
    caughtBy: ['delivery-count-dead-letter'],
    start: async () =>
      memorySetup('delivery-count-per-consumer', (driver) => ({
        ...driver,
        consume: (options, sink) => {
          const counts = new Map<string, number>();
          return driver.consume(options, {
            deliver: (delivery) => {
              const count = (counts.get(delivery.id) ?? 0) + 1;
              counts.set(delivery.id, count);
              sink.deliver({ ...delivery, deliveryCount: count });
            },
            lost: (error) => sink.lost(error),
          });
        },
      })),
  },
  {
    name: 'group-ordering-per-consumer',
    breaks:
      "declares ordering: 'group' but locks a sender within each consumer only (two consumers may hold one sender)",
    caughtBy: ['ordering', 'rebalance-while-retrying'],
    start: async () => memorySetup('group-ordering-per-consumer', perConsumerLock('group')),
  },
  {
    name: 'lease-never-renewed',
    breaks:
      'declares leases (150 ms) whose renew() resolves without renewing: long handlers lose their delivery',
    caughtBy: ['lease-extension'],
    start: async () =>
      memorySetup(
        'lease-never-renewed',
        (driver) => ({
          ...driver,
          consume: (options, sink) =>
            driver.consume(options, {
              deliver: (delivery) =>
                sink.deliver(
                  delivery.lease
                    ? { ...delivery, lease: { durationMs: delivery.lease.durationMs, renew: async () => {} } }
                    : delivery,
                ),
              lost: (error) => sink.lost(error),
            }),
        }),
        { leaseMs: 150 },
        { tolerances: { leaseMs: 150 } },
      ),
  },
  {
    name: 'proxy-bypassed',
    breaks: 'a TCP broker whose create() ignores ctx.proxy: the chaos tier would disturb nothing',
    caughtBy: ['chaos-cut', 'chaos-stall', 'cut-redelivers', 'close-unreachable', 'batch-publish'],
    start: () =>
      relaySetup('proxy-bypassed', (hub, destination, relay) =>
        relayDriver({ hub, destination, address: relay }),
      ),
  },
  {
    name: 'batch-one-per-send',
    breaks:
      'declares batchPublish but sends a batch one message at a time, waiting for the broker after each',
    caughtBy: ['batch-publish'],
    start: () =>
      relaySetup('batch-one-per-send', (hub, destination, relay, proxy) =>
        relayDriver({ hub, destination, address: proxy ?? relay, roundTripPerMessage: true }),
      ),
  },
];
