/**
 * What a case works with: its run id, fresh destinations and groups, brokers made by the adapter's `create()`, and
 * subscriptions, every one of them closed (and awaited) when the case ends, whatever happened.
 */
import type {
  AnyEvent,
  Broker,
  Capabilities,
  EventHandler,
  EventHandlers,
  PublishOptions,
  SubscribeOptions,
  Subscription,
} from '@parley/core';
import {
  Collector,
  type CollectorOptions,
  destinationName,
  type Envelope,
  MAX_QUIET_PERIOD_MS,
  newRunId,
  quietPeriod,
  type WaitOptions,
  waitFor,
  withTimeout,
} from './support.js';
import type { CaseName, CheckName, ConformanceOptions, Tolerances } from './types.js';

/** What the suite knows before registering cases: the adapter's options and what its brokers declare. */
export interface SuiteSetup {
  readonly options: ConformanceOptions;
  readonly adapter: string;
  readonly capabilities: Capabilities;
  /** How long to wait for deliveries. */
  readonly timeoutMs: number;
}

/** One case: its id, when it cannot run, and its body. */
export interface CaseDefinition {
  readonly id: CaseName;
  /** The test name when it differs from the id (a variant). */
  readonly title?: (setup: SuiteSetup) => string;
  /** Why the case cannot run for this adapter (a capability or a hook it lacks), or undefined to run it. */
  readonly skip?: (setup: SuiteSetup) => string | undefined;
  /** The vitest timeout of the case; default three delivery timeouts. */
  readonly testTimeoutMs?: (setup: SuiteSetup) => number;
  readonly run: (t: CaseContext) => Promise<void>;
}

export interface Consumer {
  readonly sub: Subscription;
  readonly got: Collector;
}

/** Per case: fresh names, tracked brokers and subscriptions, and cleanup. */
export class CaseContext {
  readonly run = newRunId();
  readonly id: CaseName;
  readonly setup: SuiteSetup;
  readonly #brokers: Broker[] = [];
  readonly #subscriptions: Subscription[] = [];
  readonly #destinations: string[] = [];
  readonly #deferred: (() => unknown)[] = [];

  constructor(id: CaseName, setup: SuiteSetup) {
    this.id = id;
    this.setup = setup;
  }

  get capabilities(): Capabilities {
    return this.setup.capabilities;
  }

  get options(): ConformanceOptions {
    return this.setup.options;
  }

  get timeoutMs(): number {
    return this.setup.timeoutMs;
  }

  get tolerances(): Tolerances {
    return this.options.tolerances ?? {};
  }

  /**
   * How long to wait for a message to reach a peer after its consumer let go of it (closed, crashed, lost its
   * lease): the delivery timeout plus the broker's `tolerances.redeliveryDelayMs`.
   */
  get handoverTimeoutMs(): number {
    return this.timeoutMs + (this.tolerances.redeliveryDelayMs ?? 0);
  }

  /**
   * A negative check's wait (nothing more may arrive): `ms`, or the adapter's `tolerances.quietPeriodMs` when it
   * sets one, for brokers that deliver slowly.
   */
  quietPeriod(ms: number): Promise<void> {
    const wanted = this.tolerances.quietPeriodMs;
    return wanted === undefined
      ? quietPeriod(ms)
      : quietPeriod(wanted, Math.max(wanted, MAX_QUIET_PERIOD_MS));
  }

  /** Why the adapter disabled a check within cases (`disable: { redelivered: '…' }`), or undefined when it is on. */
  disabledCheck(check: CheckName): string | undefined {
    return this.options.disable?.[check];
  }

  /** A fresh destination of this run, removed with `probe.cleanup` at the end. */
  destination(label?: string): string {
    const name = destinationName(this.run, this.id, label);
    this.#destinations.push(name);
    return name;
  }

  /** A group name of this run. */
  group(label = 'g'): string {
    return `g-${this.run}-${label}`;
  }

  /** A broker from the adapter's `create()`, closed at the end of the case. */
  async broker(destination: string, proxy?: { host: string; port: number }): Promise<Broker> {
    const broker = await this.options.create(proxy === undefined ? { destination } : { destination, proxy });
    this.#brokers.push(broker);
    return broker;
  }

  /** Keeps a subscription for closing at the end of the case. */
  track<S extends Subscription>(subscription: S): S {
    this.#subscriptions.push(subscription);
    return subscription;
  }

  /** A collector of this run (counts only the run's events). */
  collector(options?: CollectorOptions): Collector {
    return new Collector(this.run, options);
  }

  /**
   * Subscribes a collector (a new one unless given) with `options`; its `onDeadLetter` records dead letters,
   * so that brokers without a dead-letter destination accept the subscription too.
   */
  consume(broker: Broker, options: SubscribeOptions, collector: Collector = this.collector()): Consumer {
    const sub = this.track(
      broker.subscribe(collector.handler, { onDeadLetter: collector.onDeadLetter, ...options }),
    );
    return { sub, got: collector };
  }

  /** Like `broker.subscribe(handlers, options)`, tracked, with the run's dead letters recorded in `collector`. */
  subscribe(
    broker: Broker,
    handler: EventHandler | EventHandlers,
    options: SubscribeOptions,
    collector: Collector,
  ): Subscription {
    const withDeadLetters = { onDeadLetter: collector.onDeadLetter, ...options };
    return this.track(broker.subscribe(handler as EventHandlers, withDeadLetters));
  }

  /** Publishes every event (calls in order, awaited together). */
  async publishAll(broker: Broker, events: readonly Envelope[], options?: PublishOptions): Promise<void> {
    await Promise.all(events.map((event) => broker.publish(event as Envelope & AnyEvent, options)));
  }

  /** Waits for `condition` with the case's delivery timeout. */
  waitFor(
    condition: () => boolean | Promise<boolean>,
    what: WaitOptions['what'],
    timeoutMs?: number,
  ): Promise<void> {
    return waitFor(condition, { timeoutMs: timeoutMs ?? this.timeoutMs, what });
  }

  /** Waits until `collector` received every key. */
  waitForAll(collector: Collector, keys: readonly string[], timeoutMs?: number): Promise<void> {
    return this.waitFor(
      () => collector.missing(keys).length === 0,
      () => {
        const missing = collector.missing(keys);
        return `${keys.length} events (${missing.length} missing, e.g. ${missing.slice(0, 3).join(', ')})`;
      },
      timeoutMs,
    );
  }

  /** Runs `fn` at cleanup, after subscriptions and brokers closed (last deferred first). */
  defer(fn: () => unknown): void {
    this.#deferred.push(fn);
  }

  log(message: string): void {
    console.info(`[conformance] ${this.setup.adapter} ${this.id}: ${message}`);
  }

  /**
   * Closes everything the case opened, each close awaited (so that nothing leaks into the next case): first the
   * subscriptions, then the brokers, then deferred work, then the probe's cleanup. Returns the errors.
   */
  async dispose(): Promise<Error[]> {
    const errors: Error[] = [];
    const attempt = async (what: string, fn: () => unknown): Promise<void> => {
      try {
        await withTimeout(Promise.resolve().then(fn), this.timeoutMs, what);
      } catch (error) {
        errors.push(error instanceof Error ? error : new Error(String(error)));
      }
    };
    await Promise.all(
      this.#subscriptions.map((s, i) => attempt(`closing subscription ${i}`, () => s.close())),
    );
    await Promise.all(
      this.#brokers.map((b, i) => attempt(`closing broker ${i}`, () => b.close({ timeoutMs: 5_000 }))),
    );
    for (const fn of this.#deferred.reverse()) await attempt('cleanup', fn);
    const cleanup = this.options.probe.cleanup;
    if (cleanup) {
      for (const destination of this.#destinations) {
        await attempt(`probe.cleanup(${destination})`, () => cleanup.call(this.options.probe, destination));
      }
    }
    return errors;
  }
}
