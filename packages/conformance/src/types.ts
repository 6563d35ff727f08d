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
 */
export const checkNames = ['redelivered'] as const;

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
  /**
   * Where the machine-readable report goes, relative to the working directory: default `conformance-report.json`;
   * `false` writes none. Set it when one package runs the suite for several adapters, so that they do not
   * overwrite each other's report.
   */
  readonly report?: string | false;
}
