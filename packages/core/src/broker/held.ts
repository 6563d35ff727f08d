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
  renewal?: NodeJS.Timeout;
  /** Removes the listener on the broker's revocation signal (often one signal shared by a channel's deliveries). */
  unlisten?: () => void;
  settled: boolean;
}

/** Lease renewal starts after a third of the lease, so that two renewals may fail before it ends. */
const RENEW_FRACTION = 1 / 3;

export function held(delivery: Delivery, consumer: number): Held {
  return { delivery, consumer, settled: false };
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
 * Starts holding: wires the broker's revocation signal, and renews the lease every third of it. `lost` is called
 * (once at most, while held) when the broker took it back or a renewal failed, with the renewal's error.
 */
export function startHolding(held: Held, lost: (error?: unknown) => void): void {
  const { revoked, lease } = held.delivery;
  if (revoked) {
    if (revoked.aborted) queueMicrotask(() => lost());
    else {
      // Removed once settled: a channel's deliveries may share one signal, which would otherwise keep a listener
      // (and its delivery) for every message the channel ever delivered.
      const onRevoked = () => lost();
      revoked.addEventListener('abort', onRevoked, { once: true });
      held.unlisten = () => revoked.removeEventListener('abort', onRevoked);
    }
  }
  if (lease) {
    const every = Math.max(10, Math.floor(lease.durationMs * RENEW_FRACTION));
    const renew = (): void => {
      held.renewal = setTimeout(() => {
        if (held.settled) return;
        // A failed renewal: the broker may hand it to a peer now, so stop as if it was taken back.
        lease.renew().then(renew, lost);
      }, every);
      held.renewal.unref(); // the handler keeps the process alive, not its lease
    };
    renew();
  }
}

/** Stops holding (no more renewals). Returns false when it had stopped already (revoked meanwhile, say). */
export function stopHolding(held: Held): boolean {
  if (held.settled) return false;
  held.settled = true;
  clearTimeout(held.renewal);
  held.unlisten?.();
  return true;
}
