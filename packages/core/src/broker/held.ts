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
 * What a subscription holds, with one listener per revocation signal however many deliveries share it (a channel's,
 * a partition's): a listener per delivery made every add and remove walk the signal's list of listeners. A signal
 * none of whose deliveries is held any more loses its listener at the next sweep (once the current I/O callbacks
 * are done), not at once: a partition's held set empties and fills again every few messages, and an add and a
 * remove each time showed in profiles.
 */
export class Holding {
  readonly #watched = new Map<AbortSignal, { readonly held: Set<Held>; readonly onAbort: () => void }>();
  /** Signals whose held set emptied since the last sweep. */
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
    const { revoked, lease } = held.delivery;
    if (revoked) {
      if (revoked.aborted) queueMicrotask(() => this.#lost(held));
      else this.#watch(revoked, held);
    }
    if (lease) {
      let renewals = this.#renewals.get(lease.durationMs);
      if (renewals === undefined) {
        renewals = new Renewals(Math.max(10, Math.floor(lease.durationMs * RENEW_FRACTION)), this.#lost);
        this.#renewals.set(lease.durationMs, renewals);
      }
      renewals.add(held);
    }
  }

  /** Stops holding (no more renewals). Returns false when it had stopped already (revoked meanwhile, say). */
  stop(held: Held): boolean {
    if (held.settled) return false;
    held.settled = true;
    const { revoked, lease } = held.delivery;
    if (revoked) this.#unwatch(revoked, held);
    if (lease) this.#renewals.get(lease.durationMs)?.delete(held);
    return true;
  }

  #watch(signal: AbortSignal, held: Held): void {
    let watched = this.#watched.get(signal);
    if (watched === undefined) {
      const set = new Set<Held>();
      const onAbort = (): void => {
        this.#watched.delete(signal);
        this.#idle.delete(signal);
        for (const each of [...set]) this.#lost(each);
      };
      watched = { held: set, onAbort };
      this.#watched.set(signal, watched);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    watched.held.add(held);
  }

  #unwatch(signal: AbortSignal, held: Held): void {
    const watched = this.#watched.get(signal);
    if (watched === undefined || !watched.held.delete(held) || watched.held.size > 0) return;
    if (this.#idle.size === 0) setImmediate(this.#sweep);
    this.#idle.add(signal);
  }

  /** Removes the listeners of signals still without a held delivery: a channel's would otherwise outlive it here. */
  readonly #sweep = (): void => {
    for (const signal of this.#idle) {
      const watched = this.#watched.get(signal);
      if (watched === undefined || watched.held.size > 0) continue;
      this.#watched.delete(signal);
      signal.removeEventListener('abort', watched.onAbort);
    }
    this.#idle.clear();
  };
}

/** The held deliveries of one lease duration, renewed by one timer that ticks every `every` ms while any is held. */
class Renewals {
  readonly #every: number;
  readonly #lost: (held: Held, error?: unknown) => void;
  readonly #held = new Set<Held>();
  #tick = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(every: number, lost: (held: Held, error?: unknown) => void) {
    this.#every = every;
    this.#lost = lost;
  }

  add(held: Held): void {
    // Not at the next tick, which may come at once: at the one after it, one to two periods from now.
    held.renewAt = this.#tick + 2;
    this.#held.add(held);
    if (this.#timer === undefined) {
      this.#timer = setInterval(this.#renewDue, this.#every);
      this.#timer.unref(); // the handler keeps the process alive, not its lease
    }
  }

  delete(held: Held): void {
    if (!this.#held.delete(held) || this.#held.size > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  readonly #renewDue = (): void => {
    const tick = ++this.#tick;
    for (const held of this.#held) {
      if (held.renewAt > tick) continue;
      held.renewAt = Number.POSITIVE_INFINITY; // one renewal at a time
      held.delivery.lease!.renew().then(
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
