/**
 * The consuming half of every broker: at-least-once delivery around a driver's raw deliveries. A message is
 * decoded and validated (or dead-lettered at once when it cannot be), handed to its handler, acknowledged after
 * the handler resolves, tried again when it throws (in-process, or through the broker where it redelivers with a
 * delay), and dead-lettered after `maxAttempts`. Core owns concurrency (the driver only reads ahead), the
 * per-sender lock, lease renewal while it holds a message, and resuming the consumer after its connection or
 * channel was lost. close() drains: no new work, in-flight handlers finish and ack, the rest goes back.
 */
import { BrokerConfigError, ParleyError } from '../errors.js';
import { eventSchemas } from '../events/schemas.js';
import type { AnyEvent, EventEnvelope } from '../events/types.js';
import { decodeOrError } from '../wire/codec.js';
import { abortedPromise, backoffDelay, bounded, sleep } from './backoff.js';
import type { Connection } from './connection.js';
import { messageOf } from './connection.js';
import type {
  BrokerDriver,
  DeadLetterReason,
  Delivery,
  DeliveryContext,
  DriverConsumer,
  EventHandler,
  EventHandlers,
  EventStream,
  ReleaseOptions,
  SubscribeOptions,
  SubscriptionStats,
} from './contract.js';
import { DeadLettering } from './dead-lettering.js';
import { type Held, Holding, held as holding, revokeHeld, signalOf } from './held.js';
import type { Log } from './log.js';
import { SenderLock } from './sender-lock.js';
import { type EventStreamState, endStream, offerToStream, streamIterator } from './stream.js';

type Stats = { -readonly [K in keyof SubscriptionStats]: number };

/** What the broker gives every subscription besides its options. */
export interface SubscriptionEnvironment {
  readonly driver: BrokerDriver;
  readonly connection: Connection;
  /** Bodies larger than this are dead-lettered unparsed. */
  readonly maxBodyBytes: number;
  readonly readAhead: number | undefined;
  readonly log: Log;
  readonly onClosed: (subscription: SubscriptionImpl) => void;
}

const UNTRIED: ReleaseOptions = { untried: true };
/** How long a failed consume waits for a connection loss to be reported before it counts as its own failure. */
const LOSS_GRACE_MS = 250;

export class SubscriptionImpl implements EventStream {
  readonly ready: Promise<void>;
  readonly closed: Promise<void>;
  #failure: Error | undefined;
  readonly #stats: Stats = {
    received: 0,
    acked: 0,
    retried: 0,
    deadLettered: 0,
    redelivered: 0,
    revoked: 0,
    resumed: 0,
  };
  readonly #env: SubscriptionEnvironment;
  readonly #driver: BrokerDriver;
  readonly #handle: EventHandler;
  readonly #options: SubscribeOptions;
  readonly #group: string;
  readonly #maxAttempts: number;
  readonly #concurrency: number;
  readonly #readAhead: number;
  readonly #perSender: boolean;
  readonly #brokerRetry: boolean;
  /** Aborted by close(): handlers see it in their context, backoff waits end early. */
  readonly #closing = new AbortController();
  /**
   * `#closing` aborted, as a plain field for the per-message paths: an AbortSignal's shape changes with what is done
   * to it (listeners, max listeners), and reading `aborted` on a new subscription's signal deoptimized them.
   */
  #closed = false;
  #consumer: DriverConsumer | undefined;
  /** Bumped each time the consumer is (re)started. */
  #consumerId = 0;
  #resuming: Promise<void> | undefined;
  #closePromise: Promise<void> | undefined;
  /** Resolves when the broker's close deadline passed: stop waiting for handlers that never finish. */
  readonly #forced: Promise<void>;
  #force!: () => void;
  #resolveClosed!: () => void;
  readonly #unlisten: () => void;
  /** Held deliveries waiting for a free handler slot, oldest first. */
  readonly #ready: Held[] = [];
  /** Per sender: one holder, the others waiting behind it. */
  readonly #senders = new SenderLock<Held>();
  /** What is held (received, not yet settled), its leases renewed and revocations watched. */
  readonly #holding = new Holding((held, error) => {
    if (error !== undefined) this.#report(error);
    this.#revoke(held);
  });
  #running = 0;
  /** Work in flight that close() waits for: handlers and dead-lettering. */
  #busy = 0;
  #drained: (() => void) | undefined;
  readonly #deadLetters: DeadLettering;
  /** Iterator mode: events handed to the `for await` loop, and loops waiting for one. */
  readonly #stream: EventStreamState | undefined;

  constructor(
    env: SubscriptionEnvironment,
    handler: EventHandler | EventHandlers | undefined,
    options: SubscribeOptions,
  ) {
    const { driver } = env;
    this.#env = env;
    this.#driver = driver;
    this.#options = options;
    this.#group = options.group ?? driver.defaultGroup;
    this.#deadLetters = new DeadLettering(driver, this.#group, {
      log: env.log,
      onDeadLetter: options.onDeadLetter,
      report: (error) => this.#report(error),
    });
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 5);
    this.#perSender = (options.ordering ?? 'per-sender') === 'per-sender';
    this.#brokerRetry = driver.capabilities.retry === 'broker';
    if (driver.capabilities.deadLetter === 'none' && !options.onDeadLetter) {
      throw new BrokerConfigError(
        driver.name,
        'this broker has no dead-letter destination: pass onDeadLetter to subscribe(), so that events that keep failing are not lost',
      );
    }
    if (handler === undefined) {
      this.#stream = { ready: [], waiting: [], current: undefined };
      this.#handle = (event) => offerToStream(this.#stream!, event);
    } else if (typeof handler === 'function') {
      this.#handle = handler;
    } else {
      const handlers = handler as Record<string, EventHandler | undefined>;
      this.#handle = (event, context) => {
        const own = Object.hasOwn(eventSchemas, event.event) ? handlers[event.event] : undefined;
        return (own ?? handlers['*'])?.(event, context);
      };
    }
    this.#concurrency = this.#stream ? 1 : Math.max(1, Math.floor(options.concurrency ?? 1));
    this.#readAhead = this.#stream
      ? 1
      : Math.max(this.#concurrency, Math.floor(options.readAhead ?? env.readAhead ?? this.#concurrency));
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#forced = new Promise((resolve) => (this.#force = resolve));
    const onAbort = () => void this.close();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.#unlisten = env.connection.onReconnect(() => void this.#resume('the connection was lost'));
    void this.closed.then(() => {
      options.signal?.removeEventListener('abort', onAbort);
      this.#unlisten();
      env.onClosed(this);
    });
    const group = this.#group;
    const flow = `concurrency ${this.#concurrency}, read-ahead ${this.#readAhead}`;
    this.ready = (async () => {
      // Closing must not wait for a broker that never answers: stop waiting for it at once.
      await Promise.race([env.connection.connected(), abortedPromise(this.#closing.signal)]);
      if (await this.#startUntilUp()) {
        env.log.info(`[parley] [${driver.name}] consuming group "${group}" (${flow})`);
      }
    })();
    // A subscription that cannot start reports why (onError, `failure`, and `ready` rejects) and ends.
    this.ready.catch((error) => this.#fail(error));
    if (options.signal?.aborted) void this.close();
  }

  get stats(): SubscriptionStats {
    return { ...this.#stats };
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  close(): Promise<void> {
    this.#closePromise ??= (async () => {
      this.#closed = true;
      this.#closing.abort();
      await this.ready.catch(() => undefined);
      await this.#resuming;
      await bounded(this.#consumer?.stop(), this.#report);
      // Not started yet: back to the group, for another consumer or a later one. Taken in one go, so that
      // nothing finishing meanwhile can start one of them.
      const waiting = [...this.#ready.splice(0), ...this.#senders.takeAllWaiting()];
      await Promise.all(waiting.map((held) => this.#release(held, UNTRIED)));
      if (this.#stream) endStream(this.#stream);
      if (this.#busy > 0)
        await Promise.race([new Promise<void>((resolve) => (this.#drained = resolve)), this.#forced]);
      await bounded(this.#consumer?.close(), this.#report);
      const { acked, retried, deadLettered } = this.#stats;
      this.#env.log.info(
        `[parley] [${this.#driver.name}] subscription to group "${this.#group}" drained and closed (${acked} acknowledged, ${retried} retries, ${deadLettered} dead-lettered)`,
      );
      this.#resolveClosed();
    })();
    return this.#closePromise;
  }

  /**
   * The broker's close deadline passed while handlers still run: give up on them. What they hold goes back to the
   * group (they are told through their signal, already aborted), leases stop, and the subscription ends now.
   */
  async forceClose(): Promise<void> {
    void this.close();
    this.#force();
    await Promise.all(this.#holding.held().map((held) => this.#release(held)));
    await this.#closePromise;
  }

  #report = (error: unknown): void => {
    this.#options.onError?.(error instanceof Error ? error : new Error(String(error)));
  };

  /** The subscription cannot go on: say why, once, and end it. */
  #fail(error: unknown): void {
    if (this.#failure !== undefined || this.#closing.signal.aborted) return;
    const failure =
      error instanceof ParleyError
        ? error
        : new ParleyError(
            `subscription to group "${this.#group}" failed: ${messageOf(error)}`,
            'SUBSCRIPTION_FAILED',
            {
              scope: this.#driver.name,
              cause: error,
            },
          );
    this.#failure = failure;
    if (this.#options.onError) this.#report(failure);
    else this.#env.log.warn(failure.message);
    void this.close();
  }

  /**
   * Starts the consumer, waiting for the connection as long as it is down. A failure while the connection is up
   * is this subscription's own (its queue cannot be declared, say): it throws, and the connection goes on.
   * Resolves false when the subscription closed first.
   */
  async #startUntilUp(): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      await Promise.race([this.#env.connection.connected(), abortedPromise(this.#closing.signal)]);
      if (this.#closing.signal.aborted) return false;
      try {
        await this.#start();
        return true;
      } catch (failure) {
        if (this.#closing.signal.aborted) throw failure;
        // A consume that fails as the connection drops often fails a moment before the driver reports the loss:
        // look again after a moment before calling it this subscription's own failure.
        if (this.#env.connection.isUp) await sleep(LOSS_GRACE_MS, this.#closing.signal);
        if (this.#env.connection.isUp && !this.#closing.signal.aborted) throw failure;
        await sleep(backoffDelay(attempt), this.#closing.signal);
      }
    }
  }

  async #start(): Promise<void> {
    const id = ++this.#consumerId;
    const consumer = await this.#driver.consume(
      {
        group: this.#group,
        readAhead: this.#readAhead,
        from: this.#options.from ?? 'latest',
        ordering: this.#perSender ? 'per-sender' : 'none',
        ephemeral: this.#options.ephemeral === true,
      },
      {
        deliver: (delivery) => this.#receive(delivery, id),
        lost: (error) => {
          if (id === this.#consumerId) void this.#resume(messageOf(error), error);
        },
      },
    );
    this.#consumer = consumer;
    if (this.#closing.signal.aborted) await bounded(consumer.close(), this.#report);
  }

  /**
   * The consumer was lost (its channel closed, or the whole connection): start a new one. What the old one
   * delivered and nobody started yet is dropped: the broker delivers it again to the new one.
   */
  #resume(why: string, error?: Error): Promise<void> {
    if (this.#closing.signal.aborted || this.#failure) return Promise.resolve();
    this.#resuming ??= (async () => {
      await this.ready.catch(() => undefined);
      const old = this.#consumer;
      this.#consumer = undefined;
      const stale = this.#consumerId;
      this.#consumerId++; // deliveries of the old consumer are recognised as stale from now on
      for (const held of this.#holding.held()) if (held.consumer <= stale) this.#revoke(held);
      await bounded(old?.close(), () => undefined);
      this.#report(
        new ParleyError(`consumer of group "${this.#group}" lost (${why}); resuming`, 'CONSUMER_LOST', {
          scope: this.#driver.name,
          cause: error,
        }),
      );
      try {
        if (await this.#startUntilUp()) {
          this.#stats.resumed++;
          this.#env.log.info(`[parley] [${this.#driver.name}] consumer of group "${this.#group}" resumed`);
        }
      } catch (failure) {
        this.#fail(failure);
      }
    })().finally(() => {
      this.#resuming = undefined;
    });
    return this.#resuming;
  }

  #receive(delivery: Delivery, consumer: number): void {
    this.#stats.received++;
    if (delivery.redelivered) this.#stats.redelivered++;
    const held = holding(delivery, consumer);
    if (this.#closed || consumer !== this.#consumerId) {
      void this.#release(held, UNTRIED);
      return;
    }
    this.#hold(held);
    const body = delivery.body;
    if (body.byteLength > this.#env.maxBodyBytes) {
      const error = new ParleyError(
        `message of ${body.byteLength} bytes is over the limit of ${this.#env.maxBodyBytes} bytes (maxBodyBytes): not parsed`,
        'EVENT_TOO_LARGE',
        { scope: this.#driver.name },
      );
      this.#track(this.#deadLetter(held, 'undecodable', error, 1, delivery.senderId));
      return;
    }
    const envelope = decodeOrError(body, this.#options.strict === true);
    if (envelope instanceof ParleyError) {
      const reason: DeadLetterReason = envelope.code === 'EVENT_INVALID' ? 'invalid' : 'undecodable';
      this.#track(this.#deadLetter(held, reason, envelope, 1, delivery.senderId));
      return;
    }
    held.envelope = envelope;
    if (this.#perSender && !this.#senders.acquire(envelope.sender_id, held)) return;
    this.#ready.push(held);
    this.#dispatch();
  }

  /** Starts handlers while slots are free. */
  #dispatch(): void {
    while (this.#running < this.#concurrency && this.#ready.length > 0 && !this.#closed) {
      const held = this.#ready.shift()!;
      if (held.settled) {
        this.#next(held);
        continue;
      }
      this.#running++; // given back as the handling ends
      this.#handleFirst(held);
    }
  }

  /**
   * The first attempt, at once: a handler that returns without a promise and does not throw is acknowledged
   * without an async function and its promise per message (they showed in profiles). Anything else goes on in
   * #run, from what the first attempt did.
   */
  #handleFirst(held: Held): void {
    const attempt = this.#firstAttempt(held.delivery);
    if (attempt > this.#maxAttempts || this.#closed) {
      this.#track(this.#run(held));
      return;
    }
    const context = new HandlerContext(held, attempt, this.#group, this.#closing.signal);
    let handled: unknown;
    try {
      handled = this.#handle(held.envelope!, context);
    } catch (error) {
      this.#track(this.#run(held, { error }));
      return;
    }
    if (isThenable(handled)) {
      this.#track(this.#run(held, { pending: handled }));
      return;
    }
    this.#ackHandled(held);
    this.#running--;
    this.#next(held);
  }

  /** Counts work close() must wait for. */
  #track(work: Promise<void>): void {
    this.#busy++;
    void work.then(this.#tracked, this.#tracked);
  }

  /** A piece of tracked work ended (one function for all: a closure per delivery showed in profiles). */
  readonly #tracked = (): void => {
    this.#busy--;
    if (this.#busy === 0) this.#drained?.();
    this.#dispatch();
  };

  /** Starts holding: lease renewal, and the revocation signal wired to the handler's. */
  #hold(held: Held): void {
    this.#holding.start(held);
  }

  /** Stops holding. Returns false when it was already settled (revoked meanwhile, say). */
  #unhold(held: Held): boolean {
    return this.#holding.stop(held);
  }

  /** The broker took it back: neither ack nor retry it; the handler's signal aborts. */
  #revoke(held: Held): void {
    if (!this.#unhold(held)) return;
    this.#stats.revoked++;
    // Waiting ones leave their queue lazily: #dispatch skips settled ones, and their sender's next may start.
    revokeHeld(held, new ParleyError('the broker took this delivery back', 'DELIVERY_REVOKED'));
  }

  async #release(held: Held, options?: ReleaseOptions): Promise<void> {
    if (!this.#unhold(held)) return;
    await held.delivery.release(options).catch(this.#report);
  }

  /** Acknowledges a dead-lettered delivery: not counted in `stats.acked`. */
  async #ackDeadLetter(held: Held): Promise<void> {
    if (!this.#unhold(held)) return;
    try {
      await held.delivery.ack();
    } catch (error) {
      // Not acknowledged (its channel or lease is gone): the broker delivers it again.
      this.#report(error);
    }
  }

  /**
   * Acknowledges a handled delivery, counted in `stats.acked` and tracked, without an async function's promise and
   * a `then` of it (once per message: they showed in profiles).
   */
  #ackHandled(held: Held): void {
    if (!this.#unhold(held)) return;
    let acked: Promise<void>;
    try {
      acked = held.delivery.ack();
    } catch (error) {
      acked = Promise.reject(error);
    }
    this.#busy++;
    acked.then(this.#acked, this.#notAcked);
  }

  readonly #acked = (): void => {
    this.#stats.acked++;
    this.#tracked();
  };

  /** Not acknowledged (its channel or lease is gone): the broker delivers it again. */
  readonly #notAcked = (error: unknown): void => {
    this.#report(error);
    this.#tracked();
  };

  /** The attempt a delivery starts at: the broker's count where it keeps one, so crashed tries count too. */
  #firstAttempt(delivery: Delivery): number {
    return Math.max(1, delivery.deliveryCount ?? 1);
  }

  /** Runs the attempts of a delivery; `first`: what its first attempt did, when #handleFirst made it. */
  async #run(
    held: Held,
    first?: { readonly error: unknown } | { readonly pending: PromiseLike<unknown> },
  ): Promise<void> {
    const { delivery } = held;
    const envelope = held.envelope!;
    let lastError: unknown;
    let attempt = this.#firstAttempt(delivery);
    if (attempt > this.#maxAttempts) {
      // Delivered more often than it may be tried, and never settled: the consumers it went to died with it.
      lastError = new ParleyError(
        `delivered ${attempt - 1} times without being settled (its consumers stopped or crashed while holding it)`,
        'DELIVERY_LIMIT',
        { scope: this.#driver.name },
      );
    }
    try {
      for (; attempt <= this.#maxAttempts; attempt++) {
        const made = first;
        first = undefined;
        if (made === undefined) {
          if (held.settled) return; // revoked while waiting or backing off
          if (this.#closing.signal.aborted) {
            // Shutting down: hand it back rather than retry now; it comes again, to us or a peer.
            await this.#release(held);
            return;
          }
        }
        try {
          if (made === undefined) {
            const context = new HandlerContext(held, attempt, this.#group, this.#closing.signal);
            const handled = this.#handle(envelope, context);
            // A handler that returned at once (no promise) costs no turn of the event loop.
            if (isThenable(handled)) await handled;
          } else if ('error' in made) {
            throw made.error;
          } else {
            await made.pending;
          }
          // The handler's slot is free for the next one while the broker confirms (a commit or a delete can take a
          // round trip); close() still waits for the acknowledgement.
          this.#ackHandled(held);
          return;
        } catch (error) {
          lastError = error;
          if (held.settled) return;
          if (this.#closing.signal.aborted) {
            // A failure while shutting down (often the abort itself): hand it back rather than retry or give up.
            await this.#release(held);
            return;
          }
          if (attempt < this.#maxAttempts) {
            this.#stats.retried++;
            const delay = backoffDelay(attempt, this.#options.backoff);
            this.#env.log.debug(
              `[parley] [${this.#driver.name}] handler failed for an event of sender ${JSON.stringify(envelope.sender_id)} ` +
                `(group "${this.#group}", attempt ${attempt} of ${this.#maxAttempts}): ${messageOf(error)}; trying again in ${delay} ms`,
            );
            if (this.#brokerRetry) {
              // The broker redelivers it after the delay (to any consumer); its sender's next events go back too,
              // so that they come after it again.
              for (const next of this.#senders.takeWaiting(envelope.sender_id))
                await this.#release(next, UNTRIED);
              await this.#release(held, { delayMs: delay });
              return;
            }
            await sleep(delay, signalOf(held, this.#closing.signal));
          }
        }
      }
      await this.#deadLetter(held, 'handler-failed', lastError, Math.max(attempt - 1, 1), envelope.sender_id);
    } finally {
      this.#running--;
      this.#next(held);
    }
  }

  /** A sender's turn ended: its next waiting delivery becomes ready. */
  #next(held: Held): void {
    if (!this.#perSender || held.envelope === undefined) return;
    const next = this.#senders.release(held.envelope.sender_id);
    if (next === undefined) return;
    if (this.#closing.signal.aborted) {
      // While closing, nothing new starts: hand it back.
      void this.#release(next, UNTRIED);
      return;
    }
    this.#ready.push(next);
  }

  async #deadLetter(
    held: Held,
    reason: DeadLetterReason,
    error: unknown,
    attempts: number,
    senderId: string | undefined,
  ): Promise<void> {
    if (held.settled) return;
    const { delivery } = held;
    const letter = this.#deadLetters.letter(delivery, reason, error, attempts, senderId);
    const backOff = await this.#deadLetters.store(delivery, letter);
    if (backOff !== undefined) {
      // Not stored: the message goes back to the broker (it comes again) rather than be lost, after a backoff.
      if (!this.#brokerRetry) await sleep(backOff, this.#closing.signal);
      await this.#release(held, this.#brokerRetry ? { delayMs: backOff } : undefined);
      return;
    }
    this.#stats.deadLettered++;
    if (delivery.reject) this.#unhold(held);
    else await this.#ackDeadLetter(held);
    await this.#deadLetters.stored(delivery, letter);
  }

  // ─── async iteration ───────────────────────────────────────────────────────────────────────────────────────

  [Symbol.asyncIterator](): AsyncIterator<EventEnvelope<AnyEvent>> {
    if (!this.#stream)
      throw new TypeError('[parley] this subscription has a handler; subscribe without one to iterate');
    return streamIterator(this.#stream, {
      closing: this.#closing.signal,
      close: () => this.close(),
    });
  }
}

/** What a handler is told about its delivery; the signal is made only if the handler reads it. */
class HandlerContext implements DeliveryContext {
  readonly #held: Held;
  readonly #closing: AbortSignal;
  readonly id: string;
  readonly redelivered: boolean;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;

  constructor(
    held: Held,
    readonly attempt: number,
    readonly group: string,
    closing: AbortSignal,
  ) {
    const { delivery } = held;
    this.#held = held;
    this.#closing = closing;
    this.id = delivery.id;
    this.redelivered = delivery.redelivered;
    this.headers = delivery.headers;
    this.body = delivery.body;
  }

  get signal(): AbortSignal {
    return signalOf(this.#held, this.#closing);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
