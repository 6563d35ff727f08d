/**
 * Rasa's tracker-store semantics, so that Rasa's event-broker examples translate line for line: saving a tracker
 * streams the events added since the last save, in order, each as `{sender_id, ...event}` (TrackerStore.save →
 * stream_events, whose diff is purely positional).
 */
import type { Broker, PublishResult } from '../broker/contract.js';
import { PublishError } from '../errors.js';
import type { AnyEvent, EventEnvelope } from '../events/types.js';

/** A conversation: its id and its events, oldest first (Rasa's DialogueStateTracker, reduced to what is stored). */
export interface Tracker {
  readonly sender_id: string;
  readonly events: readonly AnyEvent[];
}

/** Creates a tracker to append events to. */
export function createTracker(
  senderId: string,
  events: readonly AnyEvent[] = [],
): Tracker & { events: AnyEvent[] } {
  return { sender_id: senderId, events: [...events] };
}

export interface TrackerStoreOptions {
  /** Where saved events are streamed. Without one, the store only stores. */
  readonly eventBroker?: Broker;
}

/** Rasa's InMemoryTrackerStore: keeps trackers in memory and streams new events to the event broker. */
export class InMemoryTrackerStore {
  readonly eventBroker: Broker | undefined;
  readonly #trackers = new Map<string, Tracker>();

  constructor(options: TrackerStoreOptions = {}) {
    this.eventBroker = options.eventBroker;
  }

  /**
   * Streams the events added since the last save (by position, as Rasa does), waits until the broker accepted
   * them, then stores the tracker. When a publish fails the tracker is not stored, so the next save sends those
   * events again: at least once, never lost.
   * @throws PublishError naming how many events were not accepted.
   */
  async save(tracker: Tracker): Promise<void> {
    const stored = this.#trackers.get(tracker.sender_id);
    const fresh = tracker.events.slice(stored?.events.length ?? 0);
    if (this.eventBroker && fresh.length > 0) {
      const envelopes = fresh.map(
        (event) => ({ sender_id: tracker.sender_id, ...event }) as EventEnvelope<AnyEvent>,
      );
      const results = await this.eventBroker.publishMany(envelopes);
      const failed = results.filter((r): r is Extract<PublishResult, { ok: false }> => !r.ok);
      if (failed.length > 0) {
        throw new PublishError(
          this.eventBroker.name,
          `tracker "${tracker.sender_id}": ${failed.length} of ${fresh.length} events not accepted (${failed[0]?.error.message})`,
          { cause: failed[0]?.error },
        );
      }
    }
    this.#trackers.set(tracker.sender_id, { sender_id: tracker.sender_id, events: [...tracker.events] });
  }

  /** The stored tracker of a conversation, or undefined. */
  async retrieve(senderId: string): Promise<Tracker | undefined> {
    const tracker = this.#trackers.get(senderId);
    return tracker && { sender_id: tracker.sender_id, events: [...tracker.events] };
  }

  /** Every stored conversation id. */
  async keys(): Promise<string[]> {
    return [...this.#trackers.keys()];
  }
}
