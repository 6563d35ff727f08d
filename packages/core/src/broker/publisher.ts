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
  readonly message: OutgoingMessage;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

export interface PublisherOptions {
  readonly bufferSize: number;
  readonly maxBatch: number;
  readonly backoff: BackoffOptions;
  /** Resolves once the driver is connected for the first time. */
  readonly connected: () => Promise<void>;
  readonly warn: (message: string) => void;
}

export class Publisher {
  readonly #driver: BrokerDriver;
  readonly #options: PublisherOptions;
  /** Waiting to be sent, oldest first; a batch being sent is in #sending. */
  #queue: Entry[] = [];
  #sending: Entry[] = [];
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
    return this.#queue.length + this.#sending.length;
  }

  publish(message: OutgoingMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new BrokerClosedError(this.#driver.name));
    if (this.pending >= this.#options.bufferSize) {
      return Promise.reject(new BufferFullError(this.#driver.name, this.#options.bufferSize));
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ message, resolve, reject });
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
    const left = [...this.#sending, ...this.#queue];
    this.#queue = [];
    for (const entry of left) {
      entry.reject(
        new PublishError(
          this.#driver.name,
          `not delivered: the broker was still unreachable when it closed (${left.length} events unsent after ${timeoutMs} ms)`,
          { code: 'UNSENT_AT_CLOSE' },
        ),
      );
    }
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#abort.signal.aborted) {
        try {
          await this.#options.connected();
        } catch (error) {
          // The broker could not be reached at all (connectAttempts exhausted): fail what waits, loudly.
          const reason = error instanceof Error ? error : new Error(String(error));
          for (const entry of this.#queue.splice(0)) entry.reject(reason);
          break;
        }
        if (this.#abort.signal.aborted) break;
        this.#sending = this.#queue.splice(0, this.#options.maxBatch);
        const outcomes = await this.#send(this.#sending.map((e) => e.message));
        const again: Entry[] = [];
        let lastError: Error | undefined;
        this.#sending.forEach((entry, i) => {
          const outcome = outcomes[i] ?? {
            ok: false,
            retryable: true,
            error: new Error('no outcome from driver'),
          };
          if (outcome.ok) entry.resolve();
          else if (outcome.retryable && !this.#abort.signal.aborted) {
            again.push(entry);
            lastError = outcome.error;
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
        this.#sending = [];
        if (again.length === 0) {
          if (this.#failures > 0)
            this.#options.warn(`[parley] [${this.#driver.name}] publishing again after an outage`);
          this.#failures = 0;
          continue;
        }
        // Retry before anything newer, to keep the order.
        this.#queue.unshift(...again);
        this.#failures++;
        const delay = backoffDelay(this.#failures, this.#options.backoff);
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          this.#options.warn(
            `[parley] [${this.#driver.name}] publish failed (${lastError?.message ?? 'unknown error'}); ` +
              `${this.pending} events buffered, retrying in ${delay} ms`,
          );
        }
        await sleep(delay, this.#abort.signal);
      }
    } finally {
      this.#pumping = false;
      if (this.pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
      else if (this.#queue.length > 0 && !this.#abort.signal.aborted) {
        this.#pumping = true;
        queueMicrotask(() => void this.#pump());
      }
    }
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
