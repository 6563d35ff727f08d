/**
 * The publishing half of every broker: a bounded buffer in front of the driver. Events go out in batches, in
 * order; a publish resolves when the broker accepted its event. Retryable failures (no connection, broker busy)
 * are sent again after a backoff, before anything newer; the buffer holds events while the broker is away; when
 * it is full, a publish is refused at once. Nothing is dropped silently: every publish resolves or rejects.
 */
import { BrokerClosedError, BufferFullError, PublishError } from '../errors.js';
import { backoffDelay, sleep } from './backoff.js';
import type { BackoffOptions, BrokerDriver, OutgoingMessage, SendOutcome } from './contract.js';

interface Entry {
  /** Publish order: failed entries go back in this order. */
  readonly seq: number;
  readonly message: OutgoingMessage;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

export interface PublisherOptions {
  readonly bufferSize: number;
  readonly maxBatch: number;
  /** Batches sent while earlier ones still wait for their confirms. */
  readonly maxInFlightBatches: number;
  readonly backoff: BackoffOptions;
  /** Resolves once the driver is connected for the first time. */
  readonly connected: () => Promise<void>;
  readonly warn: (message: string) => void;
}

export class Publisher {
  readonly #driver: BrokerDriver;
  readonly #options: PublisherOptions;
  /** Waiting to be sent, oldest first. */
  #queue: Entry[] = [];
  /** Sent, waiting for the broker's outcome, per batch. */
  readonly #inFlight = new Set<Entry[]>();
  /** Retryable failures of the current round, sent again (in publish order) once every batch settled. */
  #retry: Entry[] = [];
  #lastError: Error | undefined;
  #seq = 0;
  #pumping = false;
  #closed = false;
  #failures = 0;
  #idle: (() => void)[] = [];
  readonly #abort = new AbortController();

  constructor(driver: BrokerDriver, options: PublisherOptions) {
    this.#driver = driver;
    this.#options = options;
  }

  /** Events not yet accepted by the broker. */
  get pending(): number {
    let sending = 0;
    for (const batch of this.#inFlight) sending += batch.length;
    return this.#queue.length + sending + this.#retry.length;
  }

  publish(message: OutgoingMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new BrokerClosedError(this.#driver.name));
    if (this.pending >= this.#options.bufferSize) {
      return Promise.reject(new BufferFullError(this.#driver.name, this.#options.bufferSize));
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ seq: this.#seq++, message, resolve, reject });
      this.#wake(); // a pump waiting for confirms may send this one right away
      if (!this.#pumping) {
        this.#pumping = true;
        // Start on the next microtask, so that a synchronous run of publishes goes out as one batch.
        queueMicrotask(() => void this.#pump());
      }
    });
  }

  /** Resolves once everything published so far has been accepted or has failed. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Refuses new publishes, waits up to `timeoutMs` for the buffer to empty, then rejects whatever is left (the
   * broker stayed unreachable): those publishes fail loudly rather than vanish.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    if (this.pending > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    this.#abort.abort();
    const left = [...[...this.#inFlight].flat(), ...this.#retry, ...this.#queue];
    this.#queue = [];
    this.#retry = [];
    for (const entry of left) {
      entry.reject(
        new PublishError(
          this.#driver.name,
          `not delivered: the broker was still unreachable when it closed (${left.length} events unsent after ${timeoutMs} ms)`,
          { code: 'UNSENT_AT_CLOSE' },
        ),
      );
    }
    this.#settleIdle();
  }

  /**
   * Sends batches back to back, several awaiting their confirms at once (a confirm round trip per batch would
   * cap throughput). A retryable failure stops new batches; once every batch in flight has settled, the failed
   * entries go first again, in publish order, after a backoff. So order holds, as with one batch at a time.
   */
  async #pump(): Promise<void> {
    while (!this.#abort.signal.aborted) {
      try {
        await this.#options.connected();
      } catch (error) {
        // The broker could not be reached at all (connectAttempts exhausted): fail what waits, loudly.
        const reason = error instanceof Error ? error : new Error(String(error));
        for (const entry of this.#queue.splice(0)) entry.reject(reason);
        break;
      }
      while (
        this.#queue.length > 0 &&
        this.#retry.length === 0 &&
        this.#inFlight.size < this.#options.maxInFlightBatches &&
        !this.#abort.signal.aborted
      ) {
        const batch = this.#queue.splice(0, this.#options.maxBatch);
        this.#inFlight.add(batch);
        void this.#send(batch.map((e) => e.message)).then((outcomes) => this.#settle(batch, outcomes));
      }
      if (this.#inFlight.size === 0 && this.#retry.length === 0) break; // nothing sent, nothing waiting
      await this.#roundDone();
      if (this.#retry.length > 0 && !this.#abort.signal.aborted) {
        this.#queue.unshift(...this.#retry.sort((a, b) => a.seq - b.seq));
        this.#retry = [];
        this.#failures++;
        const delay = backoffDelay(this.#failures, this.#options.backoff);
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          this.#options.warn(
            `[parley] [${this.#driver.name}] publish failed (${this.#lastError?.message ?? 'unknown error'}); ` +
              `${this.pending} events buffered, retrying in ${delay} ms`,
          );
        }
        await sleep(delay, this.#abort.signal);
      } else if (this.#failures > 0 && this.#inFlight.size === 0) {
        this.#options.warn(`[parley] [${this.#driver.name}] publishing again after an outage`);
        this.#failures = 0;
      }
    }
    this.#pumping = false;
    this.#settleIdle();
    if (this.#queue.length > 0 && !this.#abort.signal.aborted && !this.#pumping) {
      this.#pumping = true;
      queueMicrotask(() => void this.#pump());
    }
  }

  #settle(batch: Entry[], outcomes: readonly SendOutcome[]): void {
    this.#inFlight.delete(batch);
    batch.forEach((entry, i) => {
      const outcome = outcomes[i] ?? {
        ok: false,
        retryable: true,
        error: new Error('no outcome from driver'),
      };
      if (outcome.ok) entry.resolve();
      else if (outcome.retryable && !this.#abort.signal.aborted) {
        this.#retry.push(entry);
        this.#lastError = outcome.error;
      } else {
        entry.reject(
          outcome.error instanceof PublishError
            ? outcome.error
            : new PublishError(this.#driver.name, `publish refused: ${outcome.error.message}`, {
                cause: outcome.error,
              }),
        );
      }
    });
    this.#wake();
  }

  #roundWaiter: (() => void) | undefined;

  #wake(): void {
    const waiter = this.#roundWaiter;
    this.#roundWaiter = undefined;
    waiter?.();
  }

  /**
   * Resolves when the pump may go on: when there is something to send and room for it, or when every batch has
   * settled. After a retryable failure, only the latter: the failed entries must go first again.
   */
  #roundDone(): Promise<void> {
    return new Promise<void>((resolve) => {
      const check = () => {
        const room = this.#inFlight.size < this.#options.maxInFlightBatches;
        if (this.#inFlight.size === 0 || (this.#retry.length === 0 && this.#queue.length > 0 && room))
          resolve();
        else this.#roundWaiter = check;
      };
      check();
    });
  }

  #settleIdle(): void {
    if (this.pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** A driver that throws instead of returning outcomes has lost its connection: every message is retryable. */
  async #send(batch: OutgoingMessage[]): Promise<readonly SendOutcome[]> {
    try {
      return await this.#driver.send(batch);
    } catch (error) {
      const cause = error instanceof Error ? error : new Error(String(error));
      return batch.map(() => ({ ok: false, retryable: true, error: cause }));
    }
  }
}
