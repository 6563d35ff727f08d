/**
 * The TypeScript shapes of Rasa events. Each event type is named after its Rasa class (`UserUttered` is the
 * `user` event) and carries the exact wire keys. Sub-objects that Rasa fills freely (metadata, entities, NLU
 * output) keep every extra key, so their types are open.
 */
import type { Static } from '@sinclair/typebox';
import type * as S from './schemas.js';
import type { unknownEventMark } from './unknown.js';

/** Event metadata. The tracker adds `model_id` and `assistant_id` to every event it logs. */
export interface EventMetadata {
  model_id?: string;
  assistant_id?: string;
  [key: string]: unknown;
}

/** An intent as NLU reports it. */
export interface Intent {
  name?: string | null;
  confidence?: number | null;
  [key: string]: unknown;
}

/** An extracted entity. Extractors add keys of their own (`confidence_entity`, `processors`, …). */
export interface Entity {
  entity: string;
  value: unknown;
  start?: number;
  end?: number;
  confidence?: number;
  extractor?: string | null;
  role?: string | null;
  group?: string | null;
  [key: string]: unknown;
}

/** A CALM command (`start flow`, `set slot`, `cancel flow`, …), Rasa Pro. */
export interface Command {
  command: string;
  [key: string]: unknown;
}

/** The NLU result of a `user` event. Rasa keeps `intent` and `entities` here, not on the event itself. */
export interface ParseData {
  intent?: Intent;
  entities?: Entity[];
  text?: string | null;
  message_id?: string | null;
  metadata?: Record<string, unknown> | null;
  intent_ranking?: Intent[];
  response_selector?: Record<string, unknown>;
  /** Rasa Pro (CALM): the commands the command generator predicted. */
  commands?: Command[];
  [key: string]: unknown;
}

export type UserUttered = Static<typeof S.UserUtteredSchema>;
export type BotUttered = Static<typeof S.BotUtteredSchema>;
export type SlotSet = Static<typeof S.SlotSetSchema>;
export type AllSlotsReset = Static<typeof S.AllSlotsResetSchema>;
export type EntitiesAdded = Static<typeof S.EntitiesAddedSchema>;
export type ActionExecuted = Static<typeof S.ActionExecutedSchema>;
export type FollowupAction = Static<typeof S.FollowupActionSchema>;
export type ActionExecutionRejected = Static<typeof S.ActionExecutionRejectedSchema>;
export type DefinePrevUserUtteredFeaturization = Static<typeof S.DefinePrevUserUtteredFeaturizationSchema>;
export type SessionStarted = Static<typeof S.SessionStartedSchema>;
export type Restarted = Static<typeof S.RestartedSchema>;
export type UserUtteranceReverted = Static<typeof S.UserUtteranceRevertedSchema>;
export type ActionReverted = Static<typeof S.ActionRevertedSchema>;
export type ConversationPaused = Static<typeof S.ConversationPausedSchema>;
export type ConversationResumed = Static<typeof S.ConversationResumedSchema>;
export type ReminderScheduled = Static<typeof S.ReminderScheduledSchema>;
export type ReminderCancelled = Static<typeof S.ReminderCancelledSchema>;
export type StoryExported = Static<typeof S.StoryExportedSchema>;
export type ActiveLoop = Static<typeof S.ActiveLoopSchema>;
export type LoopInterrupted = Static<typeof S.LoopInterruptedSchema>;
export type AgentUttered = Static<typeof S.AgentUtteredSchema>;
export type DialogueStackUpdated = Static<typeof S.DialogueStackUpdatedSchema>;
export type FlowStarted = Static<typeof S.FlowStartedSchema>;
export type FlowInterrupted = Static<typeof S.FlowInterruptedSchema>;
export type FlowResumed = Static<typeof S.FlowResumedSchema>;
export type FlowCompleted = Static<typeof S.FlowCompletedSchema>;
export type FlowCancelled = Static<typeof S.FlowCancelledSchema>;
export type RoutingSessionEnded = Static<typeof S.RoutingSessionEndedSchema>;
export type SessionEnded = Static<typeof S.SessionEndedSchema>;
export type ErrorHandled = Static<typeof S.ErrorHandledSchema>;
export type AgentStarted = Static<typeof S.AgentStartedSchema>;
export type AgentCompleted = Static<typeof S.AgentCompletedSchema>;
export type AgentInterrupted = Static<typeof S.AgentInterruptedSchema>;
export type AgentResumed = Static<typeof S.AgentResumedSchema>;
export type AgentCancelled = Static<typeof S.AgentCancelledSchema>;

/** Every event Rasa emits, discriminated on `event`. Narrow with `switch (e.event)`. */
export type RasaEvent = { [N in S.EventName]: Static<(typeof S.eventSchemas)[N]> }[S.EventName];

/** The event whose wire name is `N`: `EventOf<'slot'>` is `SlotSet`. */
export type EventOf<N extends S.EventName> = Extract<RasaEvent, { event: N }>;

/**
 * An event whose name Parley does not know (Rasa keeps adding them). Every field is kept as it came. It is not
 * part of the `RasaEvent` union, so that `switch (e.event)` still narrows: use `isKnownEvent()` first.
 *
 * Decoded and parsed events get it as they are; a hand-built one needs `unknownEvent({ event: 'name', … })`, so
 * that an object literal with a misspelt known name (`event: 'usr'`) is a type error rather than an UnknownEvent.
 */
export interface UnknownEvent {
  event: string;
  timestamp: number;
  metadata?: EventMetadata | null;
  [key: string]: unknown;
  /**
   * Set by the decoder, `parseEvent` and `unknownEvent()`: the unknown name is meant, not a typo. Publishing refuses
   * an unknown name without it (unless `{ allowUnknown: true }`). Build such events with `unknownEvent()`.
   */
  readonly [unknownEventMark]: true;
}

/** What lenient parsing returns: a known event, or an unknown one kept intact. */
export type AnyEvent = RasaEvent | UnknownEvent;

/** The flat wire envelope Rasa publishes: `{"sender_id": …, ...event}`. */
export type EventEnvelope<E extends AnyEvent = RasaEvent> = E & { sender_id: string };

/** One operation of an RFC 6902 JSON Patch, as carried (serialised) by the `stack` event. */
export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };
