/**
 * The public shape of the suite: what an adapter passes to `runConformance`, and the case names it may disable.
 */
import type { Broker, DriverFaults } from '@parley/core';

/** Every case of the suite, in the order they run. */
export const caseNames = [
  'roundtrip',
  'wire-format',
  'foreign-producer',
  'isolation',
  'multi-destination',
  'competing-consumers',
  'fan-out',
  'retry-then-succeed',
  'release-redelivers',
  'repeated-failure-recovery',
  'subscriber-churn',
  'concurrent-close',
  'flush-on-close',
  'abort',
  'idempotent-close',
  'health',
  'undecodable-payload',
  'invalid-payload',
  'publish-validation',
  'handlers-and-iterator',
  'drain',
  'ordering',
  'max-in-flight',
  'replay',
  'dead-letter',
  'batch-publish',
  'delayed-retry',
  'rebalance-while-retrying',
  'delivery-count-dead-letter',
  'dead-letter-redrive',
  'lease-extension',
  'consumer-crash',
  'chaos-cut',
  'cut-redelivers',
  'chaos-stall',
  'chaos-restart',
  'persistent',
  'close-unreachable',
] as const;

/** The id of one conformance case: what `disable` takes and what the report lists. */
export type CaseName = (typeof caseNames)[number];

/**
 * Checks within cases that `disable` can turn off without skipping the cases that make them:
 * - `redelivered`: `DeliveryContext.redelivered` is not asserted (false on a first delivery, true once the broker
 *   hands a message out again), for brokers that cannot tell. The cases still check that the messages come back.
 * - `reconnects`: `health().reconnects` is not asserted after a cut through the fault proxy (`chaos-cut`,
 *   `cut-redelivers`). It shows that the cut reached the broker and that core's one reconnection mechanism brought
 *   it back (the driver reported the connection `lost` rather than reconnecting on its own).
 */
export const checkNames = ['redelivered', 'reconnects'] as const;

/** The id of a check within cases, which `disable` takes too. */
export type CheckName = (typeof checkNames)[number];

export interface ConformanceContext {
  /** A fresh, unique destination for this test (exchange/topic/stream/queue/file name: [a-z0-9-_.], ≤ 60 chars). */
  readonly destination: string;
  /** Set in chaos cases for TCP brokers: connect through this address (the suite's fault proxy) instead of the broker. */
  readonly proxy?: { readonly host: string; readonly port: number };
}

/** One message as the broker's native client reads it. */
export interface ProbeMessage {
  readonly body: Uint8Array;
  readonly headers: Record<string, string>;
}

/** The oracle: the broker's native client, independent of the adapter under test. */
export interface Probe {
  /** Publishes raw bytes as a foreign producer (e.g. Rasa itself) would, with the native client. */
  publishRaw(
    destination: string,
    body: Uint8Array,
    options?: { senderId?: string; headers?: Record<string, string> },
  ): Promise<void>;
  /** Dead letters of a group, read with the native client. Required when capabilities.deadLetter !== 'none'. */
  deadLetters?(destination: string, group: string): Promise<ProbeMessage[]>;
  /** Starts recording what is published to a destination, read with the native client; used to check the wire bytes. */
  tap?(destination: string): Promise<{ messages(): Promise<ProbeMessage[]>; close(): Promise<void> }>;
  /** Removes what a test created (optional). */
  cleanup?(destination: string): Promise<void>;
}

export interface ChaosOptions {
  /** TCP brokers: the broker's address; the suite starts a fault proxy in front of it and passes ctx.proxy to create(). */
  readonly upstream?: { readonly host: string; readonly port: number };
  /** Restarts the broker itself while events flow (e.g. rabbitmqctl stop_app / start_app). */
  readonly restartBroker?: () => Promise<void>;
  /** Brokers with no connection to cut (memory, file): the driver's fault injection for a broker made by create(). */
  readonly faults?: (broker: Broker) => DriverFaults | undefined;
  /** Events per chaos case. Default 10,000. */
  readonly events?: number;
}

/**
 * How patient the suite is with a slow broker. Every field is optional; the defaults suit a broker on the same
 * machine (memory, file, a local RabbitMQ). Raise them for brokers whose timings are coarse (SQS delays and
 * visibility timeouts count in seconds, a Kafka rebalance takes a session timeout) rather than disabling cases.
 */
export interface Tolerances {
  /**
   * How long a negative check waits to see that nothing more arrives (a stray delivery, a redelivery). Default:
   * each case's own (100 to 300 ms). Quiet periods are capped at 500 ms unless this asks for more: a longer one
   * slows every case down.
   */
  readonly quietPeriodMs?: number;
  /**
   * How long the broker may take to hand a message to another consumer once its consumer let go of it (closed,
   * crashed, lost its lease): a Kafka rebalance or session timeout, an SQS visibility timeout. It is added to
   * `timeoutMs` wherever a case waits for such a handover (`release-redelivers`, `abort`, `cut-redelivers`,
   * `rebalance-while-retrying`, `consumer-crash`, `lease-extension`). Default 0.
   */
  readonly redeliveryDelayMs?: number;
  /**
   * The broker's lease: how long it lends a delivery before handing it to a peer unless renewed (SQS visibility
   * timeout, Redis Streams min-idle time, the memory broker's `leaseMs`). Required where `capabilities.leases` is
   * declared: `lease-extension` holds a delivery for several leases.
   */
  readonly leaseMs?: number;
  /**
   * The retry backoff `delayed-retry` configures (`backoff.initialMs`, with `factor: 1`), and so the least gap it
   * accepts between two tries (minus the 20% jitter). Default 200 ms; raise it where the broker's delays are coarse.
   */
  readonly retryDelayMs?: number;
}

/**
 * How to run a consumer in a child process, for `consumer-crash`: the suite spawns `node` on a runner script it
 * ships, which imports `module`, makes a broker with its `create` export (the same contract as
 * `ConformanceOptions.create`), subscribes, and blocks in its handler until the suite kills it with SIGKILL.
 */
export interface ConsumerProcess {
  /** Absolute path (or `file:` URL) of an ES module exporting the factory. */
  readonly module: string;
  /** The factory's export name. Default `create`. */
  readonly export?: string;
  /** Extra `node` options, e.g. `['--import', 'tsx']` for a TypeScript module. */
  readonly execArgv?: readonly string[];
  /** Extra environment of the child (where your broker lives, say). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface ConformanceOptions {
  /** The adapter's name, shown in the test names and the report. */
  readonly name: string;
  /** Makes a broker for one destination. Called several times per case (publisher, consumers, peers). */
  readonly create: (ctx: ConformanceContext) => Broker | Promise<Broker>;
  readonly probe: Probe;
  /**
   * Cases this adapter cannot run, each with the reason shown in the skip: `{ replay: 'mock cluster keeps no history' }`;
   * and checks it cannot pass, with the reason shown in the cases that skip them: `{ redelivered: 'no such flag' }`.
   */
  readonly disable?: Partial<Record<CaseName | CheckName, string>>;
  readonly chaos?: ChaosOptions;
  /** How long to wait for deliveries (default 20 s; raise for slow brokers). */
  readonly timeoutMs?: number;
  /** Timings for slow brokers: quiet periods, redelivery delays, the lease, the retry backoff. */
  readonly tolerances?: Tolerances;
  /** A consumer in a child process, for `consumer-crash` (skipped without it). */
  readonly consumerProcess?: ConsumerProcess;
  /**
   * Where the machine-readable report goes, relative to the working directory: default `conformance-report.json`;
   * `false` writes none. Set it when one package runs the suite for several adapters, so that they do not
   * overwrite each other's report.
   */
  readonly report?: string | false;
}
