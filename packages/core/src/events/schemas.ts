/**
 * Runtime schemas of every Rasa event, with the exact wire keys of Rasa's `Event.as_dict()`.
 *
 * Strictness rule: never reject what Rasa itself accepts. Rasa's own EVENT_SCHEMA requires little beyond `event`,
 * and old trackers lack keys that newer versions always write (e.g. `hide_rule_turn`), so most fields are
 * optional. Required are `timestamp` (every event Rasa has ever published carries one) and the fields Rasa's
 * readers cannot do without (`slot.name`, `stack.update`, `flow_*.flow_id`, …). Unknown keys are allowed and kept.
 */
import { type TObject, type TSchema, Type } from '@sinclair/typebox';
import type { Command, Entity, EventMetadata, Intent, ParseData } from './types.js';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Opt = <T extends TSchema>(schema: T) => Type.Optional(schema);
const OptNullable = <T extends TSchema>(schema: T) => Type.Optional(Nullable(schema));
/** Any JSON object. Not Type.Record: its compiled check walks every key through a regex, for nothing. */
const AnyObject = Type.Unsafe<Record<string, unknown>>(Type.Object({}));

/** Event metadata; the tracker adds `model_id` and `assistant_id` to every event it logs. */
export const EventMetadataSchema = Type.Unsafe<EventMetadata>(
  Type.Object(
    { model_id: Opt(Type.String()), assistant_id: Opt(Type.String()) },
    { $id: 'EventMetadata', description: 'Free-form event metadata.' },
  ),
);

/** An intent as NLU reports it (`parse_data.intent`, `parse_data.intent_ranking[]`). */
export const IntentSchema = Type.Unsafe<Intent>(
  Type.Object(
    { name: OptNullable(Type.String()), confidence: OptNullable(Type.Number()) },
    { $id: 'Intent' },
  ),
);

/** An extracted entity (`parse_data.entities[]`, `entities.entities[]`). */
export const EntitySchema = Type.Unsafe<Entity>(
  Type.Object(
    {
      entity: Type.String(),
      value: Type.Unknown(),
      start: Opt(Type.Integer()),
      end: Opt(Type.Integer()),
      confidence: Opt(Type.Number()),
      extractor: OptNullable(Type.String()),
      role: OptNullable(Type.String()),
      group: OptNullable(Type.String()),
    },
    { $id: 'Entity' },
  ),
);

/** A CALM command predicted for a user message (`parse_data.commands[]`, Rasa Pro). */
export const CommandSchema = Type.Unsafe<Command>(
  Type.Object({ command: Type.String() }, { $id: 'Command' }),
);

/** The NLU result carried by a `user` event. */
export const ParseDataSchema = Type.Unsafe<ParseData>(
  Type.Object(
    {
      intent: Opt(IntentSchema),
      entities: Opt(Type.Array(EntitySchema)),
      text: OptNullable(Type.String()),
      message_id: OptNullable(Type.String()),
      metadata: OptNullable(AnyObject),
      intent_ranking: Opt(Type.Array(IntentSchema)),
      response_selector: Opt(AnyObject),
      commands: Opt(Type.Array(CommandSchema)),
    },
    { $id: 'ParseData' },
  ),
);

const base = {
  timestamp: Type.Number({ description: 'Seconds since the epoch, a float (Python time.time()).' }),
  metadata: OptNullable(EventMetadataSchema),
};

function event<N extends string, P extends Record<string, TSchema>>(name: N, className: string, props: P) {
  return Type.Object(
    { event: Type.Literal(name), ...base, ...props },
    { $id: className, title: `${className} (\`${name}\`)` },
  );
}

/* Rasa Open Source */
export const UserUtteredSchema = event('user', 'UserUttered', {
  text: OptNullable(Type.String()),
  parse_data: Opt(ParseDataSchema),
  input_channel: OptNullable(Type.String()),
  message_id: OptNullable(Type.String()),
  /** Rasa Pro: when the event was anonymised. */
  anonymized_at: OptNullable(Type.Number()),
});
export const BotUtteredSchema = event('bot', 'BotUttered', {
  text: OptNullable(Type.String()),
  data: OptNullable(AnyObject),
  anonymized_at: OptNullable(Type.Number()),
});
export const SlotSetSchema = event('slot', 'SlotSet', {
  name: Type.String(),
  value: Type.Unknown(),
  /** Rasa Pro: what filled the slot. */
  filled_by: OptNullable(Type.String()),
  anonymized_at: OptNullable(Type.Number()),
});
export const AllSlotsResetSchema = event('reset_slots', 'AllSlotsReset', {});
export const EntitiesAddedSchema = event('entities', 'EntitiesAdded', { entities: Type.Array(EntitySchema) });
export const ActionExecutedSchema = event('action', 'ActionExecuted', {
  name: OptNullable(Type.String()),
  policy: OptNullable(Type.String()),
  confidence: OptNullable(Type.Number()),
  action_text: OptNullable(Type.String()),
  hide_rule_turn: Opt(Type.Boolean()),
});
export const FollowupActionSchema = event('followup', 'FollowupAction', { name: OptNullable(Type.String()) });
export const ActionExecutionRejectedSchema = event('action_execution_rejected', 'ActionExecutionRejected', {
  name: OptNullable(Type.String()),
  policy: OptNullable(Type.String()),
  confidence: OptNullable(Type.Number()),
});
export const DefinePrevUserUtteredFeaturizationSchema = event(
  'user_featurization',
  'DefinePrevUserUtteredFeaturization',
  { use_text_for_featurization: Opt(Type.Boolean()) },
);
export const SessionStartedSchema = event('session_started', 'SessionStarted', {});
export const RestartedSchema = event('restart', 'Restarted', {});
export const UserUtteranceRevertedSchema = event('rewind', 'UserUtteranceReverted', {});
export const ActionRevertedSchema = event('undo', 'ActionReverted', {});
export const ConversationPausedSchema = event('pause', 'ConversationPaused', {});
export const ConversationResumedSchema = event('resume', 'ConversationResumed', {});
export const ReminderScheduledSchema = event('reminder', 'ReminderScheduled', {
  intent: Type.String(),
  date_time: Type.String({ description: 'ISO-8601, as Python datetime.isoformat() writes it.' }),
  entities: OptNullable(Type.Array(EntitySchema)),
  name: OptNullable(Type.String()),
  /** The docs say `kill_on_user_message`; Rasa's code writes and reads `kill_on_user_msg`. */
  kill_on_user_msg: Opt(Type.Boolean()),
});
/** Rasa reads `name`, `intent` and `entities` on input but writes none of them (its docs disagree; the code wins). */
export const ReminderCancelledSchema = event('cancel_reminder', 'ReminderCancelled', {});
/** Rasa's docs mention `path`; the code never writes it. */
export const StoryExportedSchema = event('export', 'StoryExported', {});
export const ActiveLoopSchema = event('active_loop', 'ActiveLoop', {
  /** `null` means the loop was deactivated. */
  name: OptNullable(Type.String()),
});
export const LoopInterruptedSchema = event('loop_interrupted', 'LoopInterrupted', {
  is_interrupted: Opt(Type.Boolean()),
});
export const AgentUtteredSchema = event('agent', 'AgentUttered', {
  text: OptNullable(Type.String()),
  data: Opt(Type.Unknown()),
});

/* Rasa Pro (CALM) */
export const DialogueStackUpdatedSchema = event('stack', 'DialogueStackUpdated', {
  /** A JSON-Patch array serialised with Python's json.dumps: read it with `stackPatch(event)`. */
  update: Type.String(),
});
export const FlowStartedSchema = event('flow_started', 'FlowStarted', { flow_id: Type.String() });
const flowStep = { flow_id: Type.String(), step_id: Type.String() };
export const FlowInterruptedSchema = event('flow_interrupted', 'FlowInterrupted', flowStep);
export const FlowResumedSchema = event('flow_resumed', 'FlowResumed', flowStep);
export const FlowCompletedSchema = event('flow_completed', 'FlowCompleted', flowStep);
export const FlowCancelledSchema = event('flow_cancelled', 'FlowCancelled', flowStep);
export const RoutingSessionEndedSchema = event('routing_session_ended', 'RoutingSessionEnded', {});
/** Rasa puts the reason in `metadata._reason`. */
export const SessionEndedSchema = event('session_ended', 'SessionEnded', {});
/** The message is in `metadata.error_msg` and `metadata.error_source`. */
export const ErrorHandledSchema = event('error', 'ErrorHandled', { error_code: Opt(Type.Integer()) });
const agent = { agent_id: Type.String(), flow_id: Type.String() };
export const AgentStartedSchema = event('agent_started', 'AgentStarted', {
  ...agent,
  context_id: OptNullable(Type.String()),
});
export const AgentCompletedSchema = event('agent_completed', 'AgentCompleted', {
  ...agent,
  status: OptNullable(Type.String()),
});
export const AgentInterruptedSchema = event('agent_interrupted', 'AgentInterrupted', agent);
export const AgentResumedSchema = event('agent_resumed', 'AgentResumed', agent);
export const AgentCancelledSchema = event('agent_cancelled', 'AgentCancelled', {
  ...agent,
  reason: OptNullable(Type.String()),
});

/* Legacy names, accepted on input and normalised as Rasa does (to `active_loop` and `loop_interrupted`). */
export const LegacyFormSchema = event('form', 'LegacyForm', { name: OptNullable(Type.String()) });
export const LegacyFormValidationSchema = event('form_validation', 'LegacyFormValidation', {
  validate: Opt(Type.Boolean()),
});

/** Every event Rasa emits, by its wire name. */
export const eventSchemas = {
  user: UserUtteredSchema,
  bot: BotUtteredSchema,
  slot: SlotSetSchema,
  reset_slots: AllSlotsResetSchema,
  entities: EntitiesAddedSchema,
  action: ActionExecutedSchema,
  followup: FollowupActionSchema,
  action_execution_rejected: ActionExecutionRejectedSchema,
  user_featurization: DefinePrevUserUtteredFeaturizationSchema,
  session_started: SessionStartedSchema,
  restart: RestartedSchema,
  rewind: UserUtteranceRevertedSchema,
  undo: ActionRevertedSchema,
  pause: ConversationPausedSchema,
  resume: ConversationResumedSchema,
  reminder: ReminderScheduledSchema,
  cancel_reminder: ReminderCancelledSchema,
  export: StoryExportedSchema,
  active_loop: ActiveLoopSchema,
  loop_interrupted: LoopInterruptedSchema,
  agent: AgentUtteredSchema,
  stack: DialogueStackUpdatedSchema,
  flow_started: FlowStartedSchema,
  flow_interrupted: FlowInterruptedSchema,
  flow_resumed: FlowResumedSchema,
  flow_completed: FlowCompletedSchema,
  flow_cancelled: FlowCancelledSchema,
  routing_session_ended: RoutingSessionEndedSchema,
  session_ended: SessionEndedSchema,
  error: ErrorHandledSchema,
  agent_started: AgentStartedSchema,
  agent_completed: AgentCompletedSchema,
  agent_interrupted: AgentInterruptedSchema,
  agent_resumed: AgentResumedSchema,
  agent_cancelled: AgentCancelledSchema,
} as const satisfies Record<string, TObject>;

/** Event names that Rasa still reads but never writes. */
export const legacyEventSchemas = {
  form: LegacyFormSchema,
  form_validation: LegacyFormValidationSchema,
} as const;

/** Any event that is not (yet) known to Parley: only `event` and `timestamp` are checked; every field is kept. */
export const UnknownEventSchema = Type.Object(
  { event: Type.String(), ...base },
  { $id: 'UnknownEvent', description: 'An event name Parley does not know; all fields are kept.' },
);

export type EventName = keyof typeof eventSchemas;
export type LegacyEventName = keyof typeof legacyEventSchemas;
export const eventNames = Object.keys(eventSchemas) as EventName[];
