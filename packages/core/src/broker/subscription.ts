/**
 * The consuming half of every broker: at-least-once delivery around a driver's raw deliveries. A message is
 * decoded and validated (or dead-lettered at once when it cannot be), handed to its handler, acknowledged after
 * the handler resolves, retried with backoff when it throws, and dead-lettered after `maxAttempts`. Events of one
 * sender are handled one at a time, in order. close() drains: no new work, in-flight handlers finish and ack,
 * the rest goes back to the group.
 */
import { BrokerConfigError, errorSummary } from '../errors.js';
import { eventSchemas } from '../events/schemas.js';
import type { AnyEvent, EventEnvelope } from '../events/types.js';
import { safeDecodeEvent } from '../wire/codec.js';
import { backoffDelay, sleep } from './backoff.js';
import type {
  BrokerDriver,
  DeadLetter,
  DeadLetterReason,
  Delivery,
  DeliveryContext,
  DriverConsumer,
  EventHandler,
  EventHandlers,
  EventStream,
  SubscribeOptions,
  SubscriptionStats,
} from './contract.js';

type Stats = { -readonly [K in keyof SubscriptionStats]: number };

export class SubscriptionImpl implements EventStream {
  readonly ready: Promise<void>;
  readonly closed: Promise<void>;
  readonly #stats: Stats = { received: 0, acked: 0, retried: 0, deadLettered: 0, redelivered: 0 };
  readonly #driver: BrokerDriver;
  readonly #handle: EventHandler;
  readonly #options: SubscribeOptions;
  readonly #group: string;
  readonly #maxAttempts: number;
  /** Aborted by close(): handlers see it in their context, backoff waits end early. */
  readonly #closing = new AbortController();
  #consumer: DriverConsumer | undefined;
  #closePromise: Promise<void> | undefined;
  #resolveClosed!: () => void;
  /** Per sender, the deliveries waiting for the one in flight (per-sender ordering). */
  readonly #waiting = new Map<string, { delivery: Delivery; envelope: EventEnvelope<AnyEvent> }[]>();
  #inFlight = 0;
  #drained: (() => void) | undefined;
  /** Iterator mode: events handed to the `for await` loop, and loops waiting for one. */
  #stream: StreamState | undefined;

  constructor(
    driver: BrokerDriver,
    handler: EventHandler | EventHandlers | undefined,
    options: SubscribeOptions,
    connected: () => Promise<void>,
    onClosed: (subscription: SubscriptionImpl) => void,
  ) {
    this.#driver = driver;
    this.#options = options;
    this.#group = options.group ?? driver.defaultGroup;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 5);
    if (driver.capabilities.deadLetter === 'none' && !options.onDeadLetter) {
      throw new BrokerConfigError(
        driver.name,
        'this broker has no dead-letter destination: pass onDeadLetter to subscribe(), so that events that keep failing are not lost',
      );
    }
    if (handler === undefined) {
      this.#stream = { ready: [], waiting: [], current: undefined };
      this.#handle = (event) => this.#offer(event);
    } else if (typeof handler === 'function') {
      this.#handle = handler;
    } else {
      const handlers = handler as Record<string, EventHandler | undefined>;
      this.#handle = (event, context) => {
        const own = Object.hasOwn(eventSchemas, event.event) ? handlers[event.event] : undefined;
        return (own ?? handlers['*'])?.(event, context);
      };
    }
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    const onAbort = () => void this.close();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    void this.closed.then(() => {
      options.signal?.removeEventListener('abort', onAbort);
      onClosed(this);
    });
    const concurrency = this.#stream ? 1 : Math.max(1, options.concurrency ?? 1);
    const group = this.#group;
    this.ready = (async () => {
      // Closing must not wait for a broker that never answers: stop waiting for it at once.
      await Promise.race([connected(), abortedPromise(this.#closing.signal)]);
      if (this.#closing.signal.aborted) return;
      this.#consumer = await driver.consume(
        {
          group,
          prefetch: concurrency,
          from: options.from ?? 'latest',
          ordering: options.ordering ?? 'per-sender',
        },
        (delivery) => this.#receive(delivery),
      );
      if (this.#closing.signal.aborted) await this.#consumer.close();
    })();
    // A subscription that cannot start reports why (onError, and `ready` rejects) and ends.
    this.ready.catch((error) => {
      options.onError?.(error instanceof Error ? error : new Error(String(error)));
      void this.close();
    });
    if (options.signal?.aborted) void this.close();
  }

  get stats(): SubscriptionStats {
    return { ...this.#stats };
  }

  close(): Promise<void> {
    this.#closePromise ??= (async () => {
      this.#closing.abort();
      await this.ready.catch(() => undefined);
      await this.#consumer?.stop().catch(this.#report);
      // Not started yet: back to the group, for another consumer or a later one. Taken in one go, so that
      // nothing finishing meanwhile can start one of them.
      const waiting = [...this.#waiting.values()].flat();
      for (const queue of this.#waiting.values()) queue.length = 0;
      await Promise.all(waiting.map(({ delivery }) => delivery.release().catch(this.#report)));
      if (this.#stream) this.#endStream();
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      await this.#consumer?.close().catch(this.#report);
      this.#resolveClosed();
    })();
    return this.#closePromise;
  }

  #report = (error: unknown): void => {
    this.#options.onError?.(error instanceof Error ? error : new Error(String(error)));
  };

  #receive(delivery: Delivery): void {
    this.#stats.received++;
    if (delivery.redelivered) this.#stats.redelivered++;
    if (this.#closing.signal.aborted) {
      void delivery.release().catch(this.#report);
      return;
    }
    const decoded = safeDecodeEvent(delivery.body, this.#options.strict ? { strict: true } : undefined);
    if (!decoded.success) {
      const reason: DeadLetterReason = decoded.error.code === 'EVENT_INVALID' ? 'invalid' : 'undecodable';
      this.#inFlight++;
      void this.#deadLetter(delivery, reason, decoded.error, 1, delivery.senderId).finally(() =>
        this.#done(),
      );
      return;
    }
    const envelope = decoded.envelope;
    if ((this.#options.ordering ?? 'per-sender') === 'per-sender') {
      const queue = this.#waiting.get(envelope.sender_id);
      if (queue) {
        queue.push({ delivery, envelope });
        return;
      }
      this.#waiting.set(envelope.sender_id, []);
    }
    this.#inFlight++;
    void this.#run(delivery, envelope);
  }

  async #run(delivery: Delivery, envelope: EventEnvelope<AnyEvent>): Promise<void> {
    let lastError: unknown;
    try {
      for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
        if (this.#closing.signal.aborted) {
          // Shutting down: hand it back rather than retry now; it comes again, to us or a peer.
          await delivery.release().catch(this.#report);
          return;
        }
        const context: DeliveryContext = {
          attempt,
          redelivered: delivery.redelivered,
          headers: delivery.headers,
          body: delivery.body,
          group: this.#group,
          signal: this.#closing.signal,
        };
        try {
          await this.#handle(envelope, context);
          await delivery.ack().then(() => this.#stats.acked++, this.#report);
          return;
        } catch (error) {
          lastError = error;
          if (this.#closing.signal.aborted) {
            // A failure while shutting down (often the abort itself): hand it back rather than retry or give up.
            await delivery.release().catch(this.#report);
            return;
          }
          if (attempt < this.#maxAttempts) {
            this.#stats.retried++;
            await sleep(backoffDelay(attempt, this.#options.backoff), this.#closing.signal);
          }
        }
      }
      await this.#deadLetter(delivery, 'handler-failed', lastError, this.#maxAttempts, envelope.sender_id);
    } finally {
      this.#done(envelope.sender_id);
    }
  }

  /** One delivery finished: start the sender's next one, or let close() finish. */
  #done(senderId?: string): void {
    this.#inFlight--;
    if (senderId !== undefined) {
      const queue = this.#waiting.get(senderId);
      // While closing, nothing new starts: close() hands the queued ones back.
      const next = this.#closing.signal.aborted ? undefined : queue?.shift();
      if (next) {
        this.#inFlight++;
        void this.#run(next.delivery, next.envelope);
      } else {
        this.#waiting.delete(senderId);
      }
    }
    if (this.#inFlight === 0) this.#drained?.();
  }

  async #deadLetter(
    delivery: Delivery,
    reason: DeadLetterReason,
    error: unknown,
    attempts: number,
    senderId: string | undefined,
  ): Promise<void> {
    const deadLetter: DeadLetter = {
      reason,
      body: delivery.body,
      headers: delivery.headers,
      error: errorSummary(error),
      attempts,
      group: this.#group,
      destination: this.#driver.destination,
      failedAt: Date.now(),
      ...(senderId === undefined ? {} : { senderId }),
    };
    try {
      if (this.#driver.deadLetter) {
        await this.#driver.deadLetter(deadLetter);
        // Stored: a failing callback is reported, but must not store it a second time.
        await Promise.resolve(this.#options.onDeadLetter?.(deadLetter)).catch(this.#report);
      } else {
        await this.#options.onDeadLetter?.(deadLetter);
      }
    } catch (failure) {
      // The dead letter could not be stored: keep the message at the broker (it comes back) rather than lose it.
      this.#report(failure);
      await delivery.release().catch(this.#report);
      return;
    }
    this.#stats.deadLettered++;
    await delivery.ack().catch(this.#report);
  }

  // ─── async iteration ───────────────────────────────────────────────────────────────────────────────────────

  /** The handler in iterator mode: hands the event to the loop, resolves (→ ack) when the loop wants the next. */
  #offer(event: EventEnvelope<AnyEvent>): Promise<void> {
    const stream = this.#stream!;
    return new Promise<void>((processed, untaken) => {
      const waiter = stream.waiting.shift();
      if (waiter) {
        stream.current = processed;
        stream.currentUntaken = () => untaken(new Error('the loop ended while processing this event'));
        waiter({ value: event, done: false });
      } else {
        stream.ready.push({ event, processed, untaken: () => untaken(new Error('subscription closed')) });
      }
    });
  }

  #endStream(): void {
    const stream = this.#stream!;
    // close() while the loop holds an event: the loop has not asked for the next one, so it is not done.
    stream.currentUntaken?.();
    stream.current = undefined;
    stream.currentUntaken = undefined;
    // Offered but never taken by the loop: failing them while closing makes #run release them to the group.
    for (const { untaken } of stream.ready.splice(0)) untaken();
    for (const waiter of stream.waiting.splice(0)) waiter({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<EventEnvelope<AnyEvent>> {
    const stream = this.#stream;
    if (!stream)
      throw new TypeError('[parley] this subscription has a handler; subscribe without one to iterate');
    return {
      next: () => {
        // Asking for the next event means the previous one was processed: acknowledge it.
        stream.current?.();
        stream.current = undefined;
        stream.currentUntaken = undefined;
        const item = stream.ready.shift();
        if (item) {
          stream.current = item.processed;
          stream.currentUntaken = item.untaken;
          return Promise.resolve({ value: item.event, done: false });
        }
        if (this.#closing.signal.aborted) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => stream.waiting.push(resolve));
      },
      return: async () => {
        // `break` and a throw in the loop body both land here, and cannot be told apart: the event being
        // processed goes back to the group (it may come again) rather than risk losing a failed one.
        stream.currentUntaken?.();
        stream.current = undefined;
        stream.currentUntaken = undefined;
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }
}

interface StreamState {
  /** Offered events the loop has not taken yet (at most `prefetch`, i.e. one). */
  ready: { event: EventEnvelope<AnyEvent>; processed: () => void; untaken: () => void }[];
  /** Loops waiting in `next()`. */
  waiting: ((result: IteratorResult<EventEnvelope<AnyEvent>>) => void)[];
  /** The event the loop is processing: resolving it acknowledges it; `currentUntaken` hands it back. */
  current: (() => void) | undefined;
  currentUntaken?: (() => void) | undefined;
}

/** Resolves when the signal aborts (never rejects). */
function abortedPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
