/**
 * Async iteration over a subscription: the subscription's handler offers each event to the `for await` loop and
 * resolves (so the event is acknowledged) when the loop asks for the next one.
 */
import type { AnyEvent, EventEnvelope } from '../events/types.js';

export interface EventStreamState {
  /** Offered events the loop has not taken yet (at most the read-ahead, i.e. one). */
  ready: { event: EventEnvelope<AnyEvent>; processed: () => void; untaken: () => void }[];
  /** Loops waiting in `next()`. */
  waiting: ((result: IteratorResult<EventEnvelope<AnyEvent>>) => void)[];
  /** The event the loop is processing: resolving it acknowledges it; `currentUntaken` hands it back. */
  current: (() => void) | undefined;
  currentUntaken?: (() => void) | undefined;
}

/** The handler in iterator mode: hands the event to the loop, resolves (→ ack) when the loop wants the next. */
export function offerToStream(stream: EventStreamState, event: EventEnvelope<AnyEvent>): Promise<void> {
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

export function streamIterator(
  stream: EventStreamState,
  subscription: { readonly closing: AbortSignal; close(): Promise<void> },
): AsyncIterator<EventEnvelope<AnyEvent>> {
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
      if (subscription.closing.aborted) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => stream.waiting.push(resolve));
    },
    return: async () => {
      // `break` and a throw in the loop body both land here, and cannot be told apart: the event being
      // processed goes back to the group (it may come again) rather than risk losing a failed one.
      stream.currentUntaken?.();
      stream.current = undefined;
      stream.currentUntaken = undefined;
      await subscription.close();
      return { value: undefined, done: true };
    },
  };
}

/** The subscription closes: the loop's current event and those offered but not taken go back; loops end. */
export function endStream(stream: EventStreamState): void {
  // close() while the loop holds an event: the loop has not asked for the next one, so it is not done.
  stream.currentUntaken?.();
  stream.current = undefined;
  stream.currentUntaken = undefined;
  // Offered but never taken by the loop: failing them while closing makes the subscription release them.
  for (const { untaken } of stream.ready.splice(0)) untaken();
  for (const waiter of stream.waiting.splice(0)) waiter({ value: undefined, done: true });
}
