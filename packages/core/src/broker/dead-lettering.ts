/**
 * A subscription's dead-letter policy, in one place: the dead letter of a delivery (original bytes, reason,
 * error, attempts, ids), where it is stored (the broker's own mechanism, the driver's destination, or the
 * subscriber's `onDeadLetter`), the backoff when storing keeps failing, and the warning that makes it visible.
 */
import { errorSummary } from '../errors.js';
import { backoffDelay } from './backoff.js';
import { messageOf } from './connection.js';
import type { BrokerDriver, DeadLetter, DeadLetterReason, Delivery, SubscribeOptions } from './contract.js';
import type { Log } from './log.js';

/** At most one dead-letter warning per subscription in this time, with a count of the rest. */
const WARNING_EVERY_MS = 5_000;

export class DeadLettering {
  readonly #driver: BrokerDriver;
  readonly #group: string;
  readonly #log: Log;
  readonly #onDeadLetter: SubscribeOptions['onDeadLetter'];
  readonly #report: (error: unknown) => void;
  #failures = 0;
  #lastWarning = 0;
  #unwarned = 0;

  constructor(
    driver: BrokerDriver,
    group: string,
    options: {
      readonly log: Log;
      readonly onDeadLetter: SubscribeOptions['onDeadLetter'];
      readonly report: (error: unknown) => void;
    },
  ) {
    this.#driver = driver;
    this.#group = group;
    this.#log = options.log;
    this.#onDeadLetter = options.onDeadLetter;
    this.#report = options.report;
  }

  /** The dead letter of a delivery. */
  letter(
    delivery: Delivery,
    reason: DeadLetterReason,
    error: unknown,
    attempts: number,
    senderId: string | undefined,
  ): DeadLetter {
    return {
      messageId: delivery.id,
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
  }

  /**
   * Stores it: the broker's own dead-lettering (`reject`), else the driver's destination, else `onDeadLetter`.
   * Returns how long to back off before the message goes back, when it could not be stored (then it must not be
   * acknowledged: the message comes back rather than be lost), or undefined when it was stored.
   */
  async store(delivery: Delivery, letter: DeadLetter): Promise<number | undefined> {
    try {
      if (delivery.reject) await delivery.reject(letter);
      else if (this.#driver.deadLetter) await this.#driver.deadLetter(letter);
      else await this.#onDeadLetter?.(letter);
    } catch (failure) {
      this.#report(failure);
      // A destination that keeps failing must not make the message loop hot.
      return backoffDelay(++this.#failures, { initialMs: 500, maxMs: 30_000 });
    }
    this.#failures = 0;
    return undefined;
  }

  /** After a dead letter was stored and its message settled: the callback (once) and the warning. */
  async stored(delivery: Delivery, letter: DeadLetter): Promise<void> {
    if (delivery.reject || this.#driver.deadLetter) {
      // Stored by the broker: a failing callback is reported, but must not store it a second time.
      await Promise.resolve(this.#onDeadLetter?.(letter)).catch(this.#report);
    }
    this.#warn(letter);
  }

  /** A dead letter is visible by default: one warning every 5 s at most, counting the rest. */
  #warn(letter: DeadLetter): void {
    const now = Date.now();
    if (now - this.#lastWarning < WARNING_EVERY_MS) {
      this.#unwarned++;
      return;
    }
    const more = this.#unwarned;
    this.#lastWarning = now;
    this.#unwarned = 0;
    const where = this.#driver.deadLetter ? "the broker's dead-letter destination" : 'onDeadLetter';
    const sender = letter.senderId === undefined ? '' : `, sender ${JSON.stringify(letter.senderId)}`;
    this.#log.warn(
      `[parley] [${this.#driver.name}] dead-lettered an event of group "${this.#group}" to ${where} (${letter.reason}` +
        `${sender}, ${letter.attempts} attempt(s)): ${messageOf(letter.error.message)}` +
        `${more > 0 ? ` (and ${more} more since the last warning)` : ''}`,
    );
  }
}
