/**
 * The connection lifecycle of every broker, written once: the first connection (Rasa's `connection_attempts`),
 * and after the driver reports the connection `lost`, reconnecting with backoff for as long as the broker lives.
 * Subscriptions listen for `up` to resume their consumers, so every adapter resumes them the same way.
 */
import { ConnectionError, isPermanent } from '../errors.js';
import { backoffDelay, sleep } from './backoff.js';
import type { BackoffOptions, BrokerDriver } from './contract.js';
import type { Log } from './log.js';

export interface ConnectionOptions {
  readonly reconnect: BackoffOptions;
  /** Attempts at the first connection before giving up; reconnects after a loss never give up. */
  readonly connectAttempts: number;
  readonly log: Log;
  /** Whether anyone waits for the broker: only then do retry timers keep the process alive. */
  readonly wanted: () => boolean;
}

export class Connection {
  readonly #driver: BrokerDriver;
  readonly #options: ConnectionOptions;
  readonly #lifetime = new AbortController();
  #connecting: Promise<void> | undefined;
  #up = false;
  #everUp = false;
  /** Bumped on every loss: a `lost` from an older connection is ignored. */
  #generation = 0;
  #reconnects = 0;
  #lastError: unknown;
  /** A loss reported before `connect` resolved: acted on once it has. */
  #lostEarly: Error | undefined;
  readonly #listeners = new Set<(generation: number) => void>();
  /** Waiting for the outcome of the next attempt (`attempt()`). */
  readonly #attemptWaiters = new Set<{ resolve: () => void; reject: (error: unknown) => void }>();

  constructor(driver: BrokerDriver, options: ConnectionOptions) {
    this.#driver = driver;
    this.#options = options;
  }

  get signal(): AbortSignal {
    return this.#lifetime.signal;
  }

  /** True while connected (between a successful `connect` and the next loss). */
  get isUp(): boolean {
    return this.#up;
  }

  /** Which connection this is: 1 for the first, +1 per reconnect. */
  get generation(): number {
    return this.#generation;
  }

  get reconnects(): number {
    return this.#reconnects;
  }

  get lastError(): unknown {
    return this.#lastError;
  }

  /** Calls `listener` each time a connection comes up again after a loss (not for the first one). */
  onReconnect(listener: (generation: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once connected: at once while up, else after the (first or next) connection succeeds. */
  connected(): Promise<void> {
    if (this.#up) return Promise.resolve();
    this.#connecting ??= this.#connect();
    return this.#connecting;
  }

  /**
   * Resolves once connected; rejects as soon as one attempt fails, with its error. For publishers that must not
   * wait out an outage (`should_keep_unpublished_messages: false`).
   */
  attempt(): Promise<void> {
    if (this.#up) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#attemptWaiters.add({ resolve, reject });
      this.connected().catch(() => undefined);
    });
  }

  #settleAttempt(error?: unknown): void {
    for (const waiter of this.#attemptWaiters) {
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
    this.#attemptWaiters.clear();
  }

  /** Stops every attempt; `connected()` rejects from now on. */
  close(): void {
    this.#up = false;
    this.#lifetime.abort();
    this.#settleAttempt(new ConnectionError(this.#driver.name, 'closed'));
  }

  async #connect(): Promise<void> {
    const scope = this.#driver.name;
    const generation = this.#generation + 1;
    const limit = this.#everUp ? Number.POSITIVE_INFINITY : this.#options.connectAttempts;
    try {
      for (let attempt = 1; ; attempt++) {
        if (this.#lifetime.signal.aborted) throw new ConnectionError(scope, 'closed before it could connect');
        this.#lostEarly = undefined;
        this.#options.log.debug(`[parley] [${scope}] connecting (attempt ${attempt})`);
        try {
          await this.#driver.connect({
            signal: this.#lifetime.signal,
            lost: (error) => this.#lost(generation, error),
          });
        } catch (error) {
          this.#lastError = error;
          if (isPermanent(error)) {
            // Wrong credentials or no permission: retrying would only make the caller wait.
            const failure = new ConnectionError(
              scope,
              `${messageOf(error)} (not retried: no wait can fix this)`,
              {
                cause: error,
                permanent: true,
                code: (error as { code?: string }).code,
              },
            );
            this.#settleAttempt(failure);
            throw failure;
          }
          if (attempt >= limit) {
            const tries = attempt === 1 ? '1 connection attempt' : `${attempt} connection attempts`;
            const failure = new ConnectionError(scope, `gave up after ${tries}: ${messageOf(error)}`, {
              cause: error,
            });
            this.#settleAttempt(failure);
            throw failure;
          }
          this.#settleAttempt(
            new ConnectionError(scope, `cannot connect: ${messageOf(error)}`, { cause: error }),
          );
          const delay = backoffDelay(attempt, this.#options.reconnect);
          if (attempt === 1 || attempt % 10 === 0) {
            this.#options.log.warn(
              `[parley] [${scope}] cannot connect (attempt ${attempt}): ${messageOf(error)}; retrying in ${delay} ms`,
            );
          }
          // Keep the process alive only while someone waits for this broker.
          await sleep(delay, this.#lifetime.signal, this.#options.wanted());
          continue;
        }
        if (this.#lifetime.signal.aborted) throw new ConnectionError(scope, 'closed while connecting');
        const again = this.#everUp;
        this.#settleAttempt();
        this.#generation = generation;
        this.#up = true;
        this.#everUp = true;
        if (again) {
          this.#reconnects++;
          this.#options.log.info(`[parley] [${scope}] reconnected after ${attempt} attempt(s)`);
          for (const listener of [...this.#listeners]) listener(generation);
        } else {
          this.#options.log.info(
            `[parley] [${scope}] connected${attempt > 1 ? ` after ${attempt} attempts` : ''}`,
          );
        }
        if (this.#lostEarly) queueMicrotask(() => this.#lost(generation, this.#lostEarly!));
        return;
      }
    } finally {
      this.#connecting = undefined;
    }
  }

  #lost(generation: number, error: Error): void {
    if (this.#lifetime.signal.aborted) return;
    if (generation === this.#generation + 1 && !this.#up) {
      this.#lostEarly = error; // that connection is still being made
      return;
    }
    if (generation !== this.#generation || !this.#up) return; // an older connection's loss
    this.#up = false;
    this.#lastError = error;
    this.#options.log.warn(
      `[parley] [${this.#driver.name}] connection lost (${messageOf(error)}); reconnecting`,
    );
    void this.connected().catch(() => undefined);
  }
}

/** An error's message without the `[parley] [adapter]` prefix, for wrapping it in another Parley error. */
export function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^\[parley\](?: \[[^\]]+\])? /, '');
}
