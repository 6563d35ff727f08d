/**
 * Events whose name Parley does not know. Rasa keeps adding event types, so such events must travel intact; but a
 * hand-written `event: 'usr'` is a typo, not a new Rasa event. The difference is made explicit: an unknown event
 * is publishable when it carries {@link unknownEventMark}, which the decoder and `parseEvent` put on what they read
 * (it came from outside) and {@link unknownEvent} puts on what a caller builds on purpose.
 */
import { now } from './constructors.js';
import type { EventMetadata, UnknownEvent } from './types.js';

/**
 * The mark of an event whose unknown name is meant: an enumerable symbol property, so spread copies
 * (`{ sender_id, ...event }`) keep it, while `JSON.stringify` and both wire formats never write it. A registered
 * symbol (`Symbol.for`), so two copies of `@parley/core` in one process agree on it.
 */
export const unknownEventMark: unique symbol = Symbol.for('parley.unknownEvent');

/** What {@link unknownEvent} takes: any fields, an `event` name, and `timestamp` (default: now). */
export interface UnknownEventInit {
  event: string;
  timestamp?: number;
  metadata?: EventMetadata | null;
  [key: string]: unknown;
}

/** An {@link UnknownEvent} with the fields it was built from, typed as given. */
export type UnknownEventOf<I extends UnknownEventInit> = Omit<I, 'timestamp'> & UnknownEvent;

/**
 * An event whose name Parley does not know, built on purpose: `unknownEvent({ event: 'agent_handoff', to: 'human' })`.
 * Without it a hand-built event with an unknown name does not compile, and is refused at publish, because it is
 * most likely a typo. `event` and `timestamp` (default: now, in seconds) come first, as Rasa writes them, then
 * the other fields in their order. A known name is still validated against its schema when encoded.
 */
export function unknownEvent<I extends UnknownEventInit>(init: I): UnknownEventOf<I> {
  const { event, timestamp, ...fields } = init;
  return { event, timestamp: timestamp ?? now(), ...fields, [unknownEventMark]: true } as UnknownEventOf<I>;
}

/** True when `value` carries {@link unknownEventMark}. @internal */
export function hasUnknownMark(value: object): boolean {
  return (value as { [unknownEventMark]?: unknown })[unknownEventMark] === true;
}

/** Puts the mark on an object the caller owns (a freshly decoded one). @internal */
export function markUnknown<T extends object>(value: T): T {
  (value as { [unknownEventMark]?: true })[unknownEventMark] = true;
  return value;
}
