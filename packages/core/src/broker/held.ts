/**
 * A delivery while a subscription holds it, from receipt until it is acknowledged, released or dead-lettered:
 * its lease renewed all along (SQS visibility, Redis claims), and the broker's revocation (a partition revoked, a
 * lease lost) turned into the handler's abort.
 */
import type { AnyEvent, Delivery, EventEnvelope } from './contract.js';

export interface Held {
  readonly delivery: Delivery;
  /** Which consumer (of this subscription) delivered it: a resumed consumer's deliveries replace older ones. */
  readonly consumer: number;
  envelope?: EventEnvelope<AnyEvent>;
  /** Why the broker took it back (revoked, lease lost), once it did. */
  revokedBy?: Error;
  /**
   * The handler's signal: made only when a handler (or a retry's backoff) asks for it, since most handlers never
   * do and an `AbortSignal.any` per delivery cost a tenth of consuming.
   */
  signal?: AbortSignal;
  /** Aborts `signal` when the broker takes the delivery back. */
  revoke?: AbortController;
  /** The renewal tick at which its lease is renewed next (Infinity while a renewal is under way). */
  renewAt: number;
  settled: boolean;
  /** Its neighbours in its Holding's list while held (see Holding). */
  previous: Held | undefined;
  next: Held | undefined;
}

/**
 * Leases are renewed every quarter of their duration, the first time one to two quarters after receipt: two renewals
 * may fail before a lease ends.
 */
const RENEW_FRACTION = 1 / 4;

export function held(delivery: Delivery, consumer: number): Held {
  // Every field from the start: one shape for all, not one per order in which they were set.
  return {
    delivery,
    consumer,
    envelope: undefined,
    revokedBy: undefined,
    signal: undefined,
    revoke: undefined,
    settled: false,
    renewAt: 0,
    previous: undefined,
    next: undefined,
  };
}

/** The handler's signal: aborted when the subscription closes (`closing`) or the broker takes the delivery back. */
export function signalOf(held: Held, closing: AbortSignal): AbortSignal {
  if (held.signal === undefined) {
    const revoke = new AbortController();
    if (held.revokedBy !== undefined) revoke.abort(held.revokedBy);
    held.revoke = revoke;
    held.signal = AbortSignal.any([closing, revoke.signal]);
  }
  return held.signal;
}

/** Marks it taken back by the broker, and aborts its handler's signal if one was asked for. */
export function revokeHeld(held: Held, reason: Error): void {
  held.revokedBy = reason;
  held.revoke?.abort(reason);
}

/**
 * What a subscription holds: its deliveries in the order received, each lease renewed every quarter of its duration,
 * and one listener per revocation signal however many deliveries share it (a channel's, a partition's): a listener
 * per delivery made every add and remove walk the signal's list of listeners. A signal none of whose deliveries is
 * held any more loses its listener at the next sweep (once the current I/O callbacks are done), not at once: a
 * partition's deliveries come and go every few messages, and an add and a remove each time showed in profiles.
 *
 * The deliveries are a list linked through themselves, and per signal and per lease duration only a count is kept:
 * Sets that filled and emptied with every batch reallocated their tables each time (allocation profile of a Redis
 * consumer: about 560 of its 3,700 bytes per delivery). What needs them all (a revocation, a renewal tick, close)
 * walks the list, which holds at most the read-ahead.
 */
export class Holding {
  #first: Held | undefined;
  #last: Held | undefined;
  readonly #watched = new Map<AbortSignal, { count: number; readonly onAbort: () => void }>();
  /** Signals none of whose deliveries was held any more at some point since the last sweep. */
  readonly #idle = new Set<AbortSignal>();
  /** One renewal timer per lease duration, however many deliveries: a timer per delivery showed in profiles. */
  readonly #renewals = new Map<number, Renewals>();
  readonly #lost: (held: Held, error?: unknown) => void;

  /** `lost` is called (once at most, while held) when the broker took one back or a renewal failed. */
  constructor(lost: (held: Held, error?: unknown) => void) {
    this.#lost = lost;
  }

  /** Starts holding: watches the broker's revocation signal, and renews the lease every quarter of it. */
  start(held: Held): void {
    held.previous = this.#last;
    held.next = undefined;
    if (this.#last === undefined) this.#first = held;
    else this.#last.next = held;
    this.#last = held;
    const { revoked, lease } = held.delivery;
    if (revoked) {
      if (revoked.aborted) queueMicrotask(() => this.#lost(held));
      else this.#watch(revoked);
    }
    if (lease) {
      let renewals = this.#renewals.get(lease.durationMs);
      if (renewals === undefined) {
        renewals = new Renewals(lease.durationMs, this, this.#lost);
        this.#renewals.set(lease.durationMs, renewals);
      }
      renewals.add(held);
    }
  }

  /** Stops holding (no more renewals). Returns false when it had stopped already (revoked meanwhile, say). */
  stop(held: Held): boolean {
    if (held.settled) return false;
    held.settled = true;
    const { previous, next } = held;
    if (previous === undefined) this.#first = next;
    else previous.next = next;
    if (next === undefined) this.#last = previous;
    else next.previous = previous;
    held.previous = undefined;
    held.next = undefined;
    const { revoked, lease } = held.delivery;
    if (revoked) this.#unwatch(revoked);
    if (lease) this.#renewals.get(lease.durationMs)?.delete();
    return true;
  }

  /** What is held now, oldest first (a copy: `lost` and releases change the list). */
  held(): Held[] {
    const all: Held[] = [];
    for (let h = this.#first; h !== undefined; h = h.next) all.push(h);
    return all;
  }

  #watch(signal: AbortSignal): void {
    const watched = this.#watched.get(signal);
    if (watched !== undefined) {
      watched.count++;
      return;
    }
    const onAbort = (): void => {
      this.#watched.delete(signal);
      this.#idle.delete(signal);
      for (const each of this.held()) if (each.delivery.revoked === signal) this.#lost(each);
    };
    this.#watched.set(signal, { count: 1, onAbort });
    signal.addEventListener('abort', onAbort, { once: true });
  }

  #unwatch(signal: AbortSignal): void {
    const watched = this.#watched.get(signal);
    if (watched === undefined || --watched.count > 0) return;
    if (this.#idle.size === 0) setImmediate(this.#sweep);
    this.#idle.add(signal);
  }

  /** Removes the listeners of signals still without a held delivery: a channel's would otherwise outlive it here. */
  readonly #sweep = (): void => {
    for (const signal of this.#idle) {
      const watched = this.#watched.get(signal);
      if (watched === undefined || watched.count > 0) continue;
      this.#watched.delete(signal);
      signal.removeEventListener('abort', watched.onAbort);
    }
    this.#idle.clear();
  };
}

/**
 * The renewals of one lease duration: one timer that ticks every quarter of it while any delivery with such a lease
 * is held, renewing those that are due. Stopped at a sweep once none is held (after the current I/O callbacks), not
 * at once: a fast handler settles each delivery before the next arrives, and a timer started and stopped per
 * delivery showed in profiles.
 */
class Renewals {
  readonly #durationMs: number;
  readonly #holding: Holding;
  readonly #lost: (held: Held, error?: unknown) => void;
  #count = 0;
  #tick = 0;
  #timer: NodeJS.Timeout | undefined;
  #sweeping = false;

  constructor(durationMs: number, holding: Holding, lost: (held: Held, error?: unknown) => void) {
    this.#durationMs = durationMs;
    this.#holding = holding;
    this.#lost = lost;
  }

  add(held: Held): void {
    // Not at the next tick, which may come at once: at the one after it, one to two periods from now.
    held.renewAt = this.#tick + 2;
    this.#count++;
    if (this.#timer === undefined) {
      const every = Math.max(10, Math.floor(this.#durationMs * RENEW_FRACTION));
      this.#timer = setInterval(this.#renewDue, every);
      this.#timer.unref(); // the handler keeps the process alive, not its lease
    }
  }

  delete(): void {
    if (--this.#count > 0 || this.#sweeping) return;
    this.#sweeping = true;
    setImmediate(this.#sweep);
  }

  readonly #sweep = (): void => {
    this.#sweeping = false;
    if (this.#count > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  };

  readonly #renewDue = (): void => {
    const tick = ++this.#tick;
    for (const held of this.#holding.held()) {
      const lease = held.delivery.lease;
      if (lease?.durationMs !== this.#durationMs || held.renewAt > tick) continue;
      held.renewAt = Number.POSITIVE_INFINITY; // one renewal at a time
      lease.renew().then(
        () => {
          // The next one a period after this one was answered.
          if (!held.settled) held.renewAt = this.#tick + 1;
        },
        // A failed renewal: the broker may hand it to a peer now, so stop as if it was taken back.
        (error: unknown) => {
          if (!held.settled) this.#lost(held, error);
        },
      );
    }
  };
}
