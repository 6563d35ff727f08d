/**
 * The publishing half of every broker: a bounded buffer in front of the driver. Events go out in batches; a
 * publish resolves when the broker accepted its event. Retryable failures (no connection, broker busy) are sent
 * again after a backoff, before anything newer; the buffer holds events while the broker is away, bounded in events
 * and in bytes; when it is full, a publish is refused at once. Nothing is dropped silently: every publish resolves
 * or rejects.
 *
 * Order: one sender's events reach the broker in publish order whatever fails and is resent. Several batches may
 * await their outcome at once (a confirm round trip per batch would cap throughput). By default a sender never has
 * more than one batch in flight: its next events wait until that batch settled, so a resend can never overtake
 * them. A driver whose sends reach the broker in call order (`limits.orderedSends`) gets batches back to back; their
 * outcomes are read in send order, and a sender's later successes after one of its retryable failures are sent
 * again after it (duplicates, never reordering). A broker that keeps no order (`capabilities.ordering: 'none'`)
 * gets any batches at once.
 */
import { BrokerClosedError, BufferFullError, ParleyError, PublishError } from '../errors.js';
import { backoffDelay, sleep } from './backoff.js';
import type { BackoffOptions, BrokerDriver, OutgoingMessage, SendOutcome } from './contract.js';
import { messageId } from './message-id.js';

/**
 * One publish waiting for its outcome, and the message the driver is given: one object, not two (ten thousand may
 * wait at once, and what they keep alive is what every young-generation collection copies).
 */
class Entry implements OutgoingMessage {
  resolve!: () => void;
  reject!: (error: Error) => void;
  constructor(
    /** Publish order: failed entries go back in this order. */
    readonly seq: number,
    readonly id: string,
    readonly body: Uint8Array,
    readonly senderId: string,
    readonly eventName: string,
    readonly headers: Readonly<Record<string, string>>,
  ) {}
}

/**
 * The resolving functions of the promise just made: one executor for every publish, not a closure (and its
 * context) per publish around the entry. Emptied once taken, so that nothing keeps the last promise alive.
 */
const nothing = (): void => {};
const captured: { resolve: () => void; reject: (error: Error) => void } = {
  resolve: nothing,
  reject: nothing,
};
const capture = (resolve: () => void, reject: (error: Error) => void): void => {
  captured.resolve = resolve;
  captured.reject = reject;
};

/** A batch sent, with its outcomes once they came. */
interface InFlight {
  readonly batch: Entry[];
  outcomes?: readonly SendOutcome[];
}

export interface PublisherOptions {
  readonly bufferSize: number;
  readonly bufferBytes: number;
  readonly maxBatch: number;
  readonly backoff: BackoffOptions;
  /** Resolves once the driver is connected (at once while it is). */
  readonly connected: () => Promise<void>;
  /** Whether the driver is connected now: a full batch may then go out from inside `publish()`. */
  readonly isUp?: () => boolean;
  readonly warn: (message: string) => void;
}

const DEFAULT_IN_FLIGHT_BATCHES = 8;
const EARLIER_FAILED = 'not confirmed as sent: an earlier event of its sender failed and is sent again first';

export class Publisher {
  readonly #driver: BrokerDriver;
  readonly #options: PublisherOptions;
  readonly #maxBatch: number;
  readonly #maxBatchBytes: number;
  readonly #maxInFlight: number;
  readonly #maxMessageBytes: number;
  /** The driver reads message ids: one is made per publish (else `id` is ''). */
  readonly #messageIds: boolean;
  /** Waiting to be sent, in publish order. */
  #queue: Entry[] = [];
  /** How many entries of each sender wait in the queue: a take finds out at once when every one is busy. */
  readonly #queuedBySender = new Map<string, number>();
  /** Sent, waiting for the broker's outcome, per batch. */
  readonly #inFlight = new Set<Entry[]>();
  /** Senders with a batch in flight: their next events wait for it (unless sends are ordered). */
  readonly #busySenders = new Set<string>();
  /** The driver's sends reach the broker in call order: batches go back to back, their outcomes read in order. */
  readonly #orderedSends: boolean;
  /**
   * A sender has one batch in flight at a time: what keeps its order across resends when sends may overtake each
   * other. Not for a broker that keeps no order at all (SQS standard queues): there any batches go at once.
   */
  readonly #oneBatchPerSender: boolean;
  /** With ordered sends: the batches in flight in send order, each with its outcomes once they came. */
  #sent: InFlight[] = [];
  /** Senders with a retryable failure this round: their later successes are sent again after it. */
  readonly #failedSenders = new Set<string>();
  /** Retryable failures of the current round, sent again (in publish order) once every batch settled. */
  #retry: Entry[] = [];
  #lastError: Error | undefined;
  #seq = 0;
  #bytes = 0;
  #pending = 0;
  #pumping = false;
  #closed = false;
  #failures = 0;
  /** The last take found only senders with a batch in flight: wait for a settle or a new publish. */
  #blocked = false;
  #idle: (() => void)[] = [];
  readonly #abort = new AbortController();

  constructor(driver: BrokerDriver, options: PublisherOptions) {
    this.#driver = driver;
    this.#options = options;
    const limits = driver.limits ?? {};
    this.#maxBatch = driver.capabilities.batchPublish
      ? Math.max(1, Math.min(options.maxBatch, limits.maxBatchMessages ?? Number.POSITIVE_INFINITY))
      : 1;
    this.#maxBatchBytes = limits.maxBatchBytes ?? Number.POSITIVE_INFINITY;
    this.#maxInFlight = Math.max(1, limits.maxInFlightBatches ?? DEFAULT_IN_FLIGHT_BATCHES);
    this.#orderedSends = limits.orderedSends === true;
    this.#messageIds = limits.messageIds !== false;
    this.#oneBatchPerSender = !this.#orderedSends && driver.capabilities.ordering !== 'none';
    this.#maxMessageBytes = Math.min(
      limits.maxMessageBytes ?? Number.POSITIVE_INFINITY,
      Number.isFinite(this.#maxBatchBytes) ? this.#maxBatchBytes : Number.POSITIVE_INFINITY,
    );
  }

  /** Events not yet accepted by the broker. */
  get pending(): number {
    return this.#pending;
  }

  /** Bytes of the events not yet accepted by the broker. */
  get pendingBytes(): number {
    return this.#bytes;
  }

  /** Publishes one encoded event; its message id is made here, the same on every resend. */
  publish(
    body: Uint8Array,
    senderId: string,
    eventName: string,
    headers: Readonly<Record<string, string>>,
  ): Promise<void> {
    const scope = this.#driver.name;
    if (this.#closed) return Promise.reject(new BrokerClosedError(scope));
    const size = body.byteLength;
    if (size > this.#maxMessageBytes) {
      return Promise.reject(
        new PublishError(
          scope,
          `event of sender "${senderId}" is ${size} bytes, over the broker's limit of ${this.#maxMessageBytes} bytes: it was not sent`,
          { code: 'MESSAGE_TOO_LARGE' },
        ),
      );
    }
    if (this.#pending >= this.#options.bufferSize) {
      return Promise.reject(new BufferFullError(scope, this.#options.bufferSize));
    }
    if (this.#pending > 0 && this.#bytes + size > this.#options.bufferBytes) {
      return Promise.reject(
        new BufferFullError(scope, this.#pending, `${this.#bytes} bytes, limit ${this.#options.bufferBytes}`),
      );
    }
    const id = this.#messageIds ? messageId() : '';
    const entry = new Entry(this.#seq++, id, body, senderId, eventName, headers);
    const promise = new Promise<void>(capture);
    entry.resolve = captured.resolve;
    entry.reject = captured.reject;
    captured.resolve = captured.reject = nothing;
    this.#pending++;
    this.#bytes += size;
    this.#queued(senderId, 1);
    this.#queue.push(entry);
    this.#blocked = false; // its sender may be free
    this.#wake(); // a pump waiting for confirms may send this one right away
    if (!this.#pumping) {
      this.#pumping = true;
      // Start on the next microtask, so that a synchronous run of publishes goes out as one batch.
      queueMicrotask(() => void this.#pump());
    }
    // A full batch goes out at once, while the caller is still publishing: the broker works on it meanwhile.
    // Not where a sender may have a batch in flight: a take then scans the queue, not to be done per publish.
    if (this.#queue.length >= this.#maxBatch && !this.#oneBatchPerSender && this.#maySendNow())
      this.#sendBatches();
    return promise;
  }

  /** Resolves once everything published so far has been accepted or has failed. */
  idle(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Refuses new publishes, waits up to `timeoutMs` for the buffer to empty, then rejects whatever is left (the
   * broker stayed unreachable): those publishes fail loudly rather than vanish.
   */
  async close(timeoutMs: number, why = 'the broker was still unreachable when it closed'): Promise<void> {
    this.#closed = true;
    if (this.#pending > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    this.#abort.abort();
    const left = [...[...this.#inFlight].flat(), ...this.#retry, ...this.#queue];
    this.#queue = [];
    this.#queuedBySender.clear();
    this.#retry = [];
    this.#inFlight.clear();
    this.#sent = [];
    for (const entry of left) {
      this.#reject(
        entry,
        new PublishError(
          this.#driver.name,
          `not delivered: ${why} (${left.length} events unsent after ${timeoutMs} ms)`,
          { code: 'UNSENT_AT_CLOSE', cause: this.#lastError },
        ),
      );
    }
    this.#settleIdle();
  }

  /** Rejects everything waiting with `error` (the broker cannot be reached at all). */
  failWaiting(error: Error): void {
    const waiting = [...this.#retry.splice(0), ...this.#queue.splice(0)];
    this.#queuedBySender.clear();
    for (const entry of waiting) this.#reject(entry, error);
    this.#settleIdle();
  }

  /**
   * Sends batches back to back, several awaiting their outcome at once. A retryable failure stops new batches;
   * once every batch in flight has settled, the failed entries go first again, in publish order, after a backoff.
   */
  async #pump(): Promise<void> {
    while (!this.#abort.signal.aborted) {
      try {
        await this.#options.connected();
      } catch (error) {
        // The broker could not be reached at all (connectAttempts exhausted): fail what waits, loudly.
        this.failWaiting(error instanceof Error ? error : new Error(String(error)));
        break;
      }
      this.#sendBatches();
      if (this.#inFlight.size === 0 && this.#retry.length === 0 && this.#queue.length === 0) break;
      await this.#roundDone();
      if (this.#retry.length > 0 && this.#inFlight.size === 0 && !this.#abort.signal.aborted) {
        for (const entry of this.#retry) this.#queued(entry.senderId, 1);
        this.#queue = mergeBySeq(
          this.#retry.sort((a, b) => a.seq - b.seq),
          this.#queue,
        );
        this.#retry = [];
        this.#failedSenders.clear();
        this.#failures++;
        const delay = backoffDelay(this.#failures, this.#options.backoff);
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          this.#options.warn(
            `[parley] [${this.#driver.name}] publish failed (${messageOf(this.#lastError)}); ` +
              `${this.#pending} events buffered, retrying in ${delay} ms`,
          );
        }
        await sleep(delay, this.#abort.signal);
      } else if (this.#failures > 0 && this.#inFlight.size === 0 && this.#retry.length === 0) {
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

  /**
   * Whether a batch may go out outside the pump's turn, from inside `publish()` or as a batch settles (what else a
   * send needs, `#sendBatches` checks): connected and not between failed rounds, which the pump paces.
   */
  #maySendNow(): boolean {
    return this.#failures === 0 && this.#options.isUp?.() === true;
  }

  /** Sends batches while there is something to send and room in flight; each settles when its outcomes come. */
  #sendBatches(): void {
    while (
      this.#queue.length > 0 &&
      this.#retry.length === 0 &&
      this.#inFlight.size < this.#maxInFlight &&
      !this.#abort.signal.aborted
    ) {
      const batch = this.#take();
      if (batch.length === 0) {
        this.#blocked = true; // every waiting sender has a batch in flight
        break;
      }
      this.#inFlight.add(batch);
      if (this.#orderedSends) {
        const sent: InFlight = { batch };
        this.#sent.push(sent);
        void this.#send(batch).then((outcomes) => {
          sent.outcomes = outcomes;
          // In send order: a batch's outcomes wait for those of every batch sent before it.
          while (this.#sent[0]?.outcomes !== undefined) {
            const first = this.#sent.shift()!;
            this.#settle(first.batch, first.outcomes!);
          }
        });
      } else {
        if (this.#oneBatchPerSender) for (const entry of batch) this.#busySenders.add(entry.senderId);
        void this.#send(batch).then((outcomes) => this.#settle(batch, outcomes));
      }
    }
  }

  /**
   * The next batch: waiting entries in publish order, skipping senders with a batch in flight, within the
   * driver's limits on messages and bytes per batch.
   */
  #take(): Entry[] {
    const batch: Entry[] = [];
    let bytes = 0;
    if (this.#busySenders.size === 0) {
      // Fast path: no sender to skip (none is, with ordered sends).
      let n = 0;
      while (n < this.#queue.length && n < this.#maxBatch) {
        const size = this.#queue[n]!.body.byteLength;
        if (n > 0 && bytes + size > this.#maxBatchBytes) break;
        bytes += size;
        n++;
      }
      const taken = this.#queue.splice(0, n);
      for (const entry of taken) this.#queued(entry.senderId, -1);
      return taken;
    }
    // Every sender with events waiting has a batch in flight: nothing to take, and no need to scan the queue for it
    // (a scan per settled batch would make publishing a long queue quadratic).
    let free = false;
    for (const sender of this.#queuedBySender.keys()) {
      if (!this.#busySenders.has(sender)) {
        free = true;
        break;
      }
    }
    if (!free) return batch;
    const queue = this.#queue;
    /** Where the first entry taken was: every entry before it was skipped. */
    let first = -1;
    /** Entries skipped after the first taken one. */
    const skipped: Entry[] = [];
    let i = 0;
    // Scans until the batch is full: what follows stays queued as it is (copied once, not entry by entry).
    for (; i < queue.length && batch.length < this.#maxBatch; i++) {
      const entry = queue[i]!;
      const size = entry.body.byteLength;
      if (this.#busySenders.has(entry.senderId) || (batch.length > 0 && bytes + size > this.#maxBatchBytes)) {
        if (first >= 0) skipped.push(entry);
        // A sender skipped once stays skipped: its later events must not overtake this one.
        this.#busySenders.add(entry.senderId);
        continue;
      }
      if (first < 0) first = i;
      batch.push(entry);
      bytes += size;
    }
    // Senders marked busy only to be skipped in this scan are free again.
    this.#busySenders.clear();
    for (const inFlight of this.#inFlight) for (const e of inFlight) this.#busySenders.add(e.senderId);
    // What was not taken, in publish order. Nothing taken: the queue stays as it is.
    if (first >= 0) this.#queue = queue.slice(0, first).concat(skipped, queue.slice(i));
    for (const entry of batch) this.#queued(entry.senderId, -1);
    return batch;
  }

  /**
   * Counts entries of `sender` going into (1) or out of (-1) the queue: only where a sender's next events wait for
   * its batch in flight (elsewhere no sender is ever busy, and the count is never read).
   */
  #queued(sender: string, delta: 1 | -1): void {
    if (!this.#oneBatchPerSender) return;
    const n = (this.#queuedBySender.get(sender) ?? 0) + delta;
    if (n > 0) this.#queuedBySender.set(sender, n);
    else this.#queuedBySender.delete(sender);
  }

  #settle(batch: Entry[], outcomes: readonly SendOutcome[]): void {
    if (!this.#inFlight.delete(batch)) return; // rejected by close() meanwhile
    this.#blocked = false;
    if (this.#busySenders.size > 0) for (const entry of batch) this.#busySenders.delete(entry.senderId);
    if (outcomes.length !== batch.length) {
      // A driver bug, not an outage: retrying would loop forever and blame the broker at close.
      const error = new ParleyError(
        `driver contract error: send() returned ${outcomes.length} outcomes for ${batch.length} messages (one per message is required)`,
        'DRIVER_CONTRACT',
        { scope: this.#driver.name },
      );
      this.#options.warn(error.message);
      for (const entry of batch) this.#reject(entry, error);
      this.#wake();
      return;
    }
    /** Sent: resolved last, once the next batch is out (their callers' code runs on what they resolve). */
    const sent: Entry[] = [];
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i]!;
      let outcome = outcomes[i]!;
      const sender = entry.senderId;
      const demoted = outcome.ok && this.#failedSenders.size > 0 && this.#failedSenders.has(sender);
      if (demoted) {
        // Sent after an event of its sender that failed (ordered sends): again, after it.
        outcome = { ok: false, retryable: true, error: new PublishError(this.#driver.name, EARLIER_FAILED) };
      }
      if (outcome.ok) sent.push(entry);
      else if (outcome.retryable && !this.#abort.signal.aborted) {
        this.#retry.push(entry);
        this.#failedSenders.add(sender);
        if (!demoted) this.#lastError = outcome.error;
      } else {
        this.#reject(
          entry,
          outcome.error instanceof PublishError
            ? outcome.error
            : new PublishError(this.#driver.name, `publish refused: ${messageOf(outcome.error)}`, {
                cause: outcome.error,
                code: (outcome.error as { code?: string }).code,
              }),
        );
      }
    }
    // The next batch goes out now, not once the pump's turn comes: that is after the code of every caller resolved
    // here (a sender's batches go one at a time, and its next one would wait for all of that).
    if (this.#maySendNow()) this.#sendBatches();
    this.#wake();
    for (const entry of sent) this.#resolve(entry);
  }

  #resolve(entry: Entry): void {
    this.#pending--;
    this.#bytes -= entry.body.byteLength;
    entry.resolve();
  }

  #reject(entry: Entry, error: Error): void {
    this.#pending--;
    this.#bytes -= entry.body.byteLength;
    entry.reject(error);
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
        const room = this.#inFlight.size < this.#maxInFlight;
        const sendable = this.#queue.length > 0 && !this.#blocked && this.#retry.length === 0;
        if (this.#inFlight.size === 0 || (sendable && room)) resolve();
        else this.#roundWaiter = check;
      };
      check();
    });
  }

  #settleIdle(): void {
    if (this.#pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** A driver that throws instead of returning outcomes has lost its connection: every message is retryable. */
  async #send(batch: Entry[]): Promise<readonly SendOutcome[]> {
    try {
      return await this.#driver.send(batch);
    } catch (error) {
      const cause = error instanceof Error ? error : new Error(String(error));
      return batch.map(() => ({ ok: false, retryable: true, error: cause }));
    }
  }
}

/** Two runs each in publish order, merged into one. */
function mergeBySeq(a: Entry[], b: Entry[]): Entry[] {
  if (a.length === 0) return b;
  if (b.length === 0 || a[a.length - 1]!.seq < b[0]!.seq) return [...a, ...b];
  return [...a, ...b].sort((x, y) => x.seq - y.seq);
}

function messageOf(error: Error | undefined): string {
  return (error?.message ?? 'unknown error').replace(/^\[parley\](?: \[[^\]]+\])? /, '');
}
