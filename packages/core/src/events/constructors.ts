/**
 * Typed constructors with Rasa's defaults, writing keys in the order `Event.as_dict()` writes them, so an event
 * built here encodes byte-identically to the same event built by Rasa: `{event, timestamp, [metadata], fields…}`.
 */
import { dumpsPython } from '../wire/python-json.js';
import type { EventName } from './schemas.js';
import type * as T from './types.js';

type Base = { timestamp?: number; metadata?: T.EventMetadata };
/** The fields of event `N` that a caller gives: its own keys (optional where Rasa has a default), plus `timestamp` and `metadata`. */
export type EventInit<N extends EventName> = Base &
  Partial<Omit<T.EventOf<N>, 'event' | 'timestamp' | 'metadata'>>;

/** Seconds since the epoch, like Python's `time.time()`. */
export function now(): number {
  return Date.now() / 1000;
}

function build<E>(
  event: string,
  init: Base,
  fields: Record<string, unknown>,
  options?: { alwaysMetadata?: boolean },
): E {
  const out: Record<string, unknown> = { event, timestamp: init.timestamp ?? now() };
  const metadata = init.metadata ?? {};
  // Rasa writes `metadata` after `timestamp` when it is non-empty; `user` and `bot` then write it again (same
  // place, since dict.update keeps positions), or append it when it was empty.
  if (Object.keys(metadata).length > 0) out.metadata = metadata;
  for (const [key, value] of Object.entries(fields)) out[key] = value;
  if (options?.alwaysMetadata && !('metadata' in out)) out.metadata = metadata;
  for (const [key, value] of Object.entries(init)) {
    if (!(key in out) && value !== undefined) out[key] = value;
  }
  return out as E;
}

function pick<T extends object, K extends string>(init: T, keys: readonly K[]): Omit<T, K> {
  const rest: Record<string, unknown> = { ...(init as Record<string, unknown>) };
  for (const key of keys) delete rest[key];
  return rest as Omit<T, K>;
}

/** A `user` event. `intent` and `entities` are placed inside `parse_data`, where Rasa keeps them. */
export function userUttered(
  text: string | null,
  init: EventInit<'user'> & { intent?: T.Intent; entities?: T.Entity[] } = {},
): T.UserUttered {
  const own = ['text', 'intent', 'entities', 'parse_data', 'input_channel', 'message_id'] as const;
  const metadata = init.metadata ?? {};
  const parseData: T.ParseData = {
    intent: init.intent ?? {},
    entities: init.entities ?? [],
    text,
    message_id: init.message_id ?? null,
    metadata,
    ...init.parse_data,
  };
  const fields = {
    text,
    parse_data: parseData,
    input_channel: init.input_channel ?? null,
    message_id: init.message_id ?? null,
  };
  return build('user', pick(init, own), fields, { alwaysMetadata: true });
}

/** A `bot` event. */
export function botUttered(text: string | null, init: EventInit<'bot'> = {}): T.BotUttered {
  return build(
    'bot',
    pick(init, ['text', 'data']),
    { text, data: init.data ?? {} },
    { alwaysMetadata: true },
  );
}

/** A `slot` event. */
export function slotSet(name: string, value: unknown, init: EventInit<'slot'> = {}): T.SlotSet {
  return build('slot', pick(init, ['name', 'value']), { name, value });
}

/** An `action` event. */
export function actionExecuted(name: string | null, init: EventInit<'action'> = {}): T.ActionExecuted {
  const fields = {
    name,
    policy: init.policy ?? null,
    confidence: init.confidence ?? null,
    action_text: init.action_text ?? null,
    hide_rule_turn: init.hide_rule_turn ?? false,
  };
  return build(
    'action',
    pick(init, ['name', 'policy', 'confidence', 'action_text', 'hide_rule_turn']),
    fields,
  );
}

/** A `stack` event: the JSON Patch is serialised with Python's json.dumps, as Rasa does. */
export function dialogueStackUpdated(
  update: readonly T.JsonPatchOperation[] | string,
  init: Base = {},
): T.DialogueStackUpdated {
  return build('stack', init, { update: typeof update === 'string' ? update : dumpsPython(update) });
}

/** A `reminder` event. `date_time` accepts a Date (written like Python's `isoformat()`) or an ISO string. */
export function reminderScheduled(
  intent: string,
  dateTime: Date | string,
  init: EventInit<'reminder'> = {},
): T.ReminderScheduled {
  const fields = {
    intent,
    date_time: typeof dateTime === 'string' ? dateTime : pythonIsoformat(dateTime),
    entities: init.entities ?? null,
    name: init.name ?? globalThis.crypto.randomUUID(),
    kill_on_user_msg: init.kill_on_user_msg ?? true,
  };
  return build(
    'reminder',
    pick(init, ['intent', 'date_time', 'entities', 'name', 'kill_on_user_msg']),
    fields,
  );
}

/** `datetime.isoformat()` of an aware UTC datetime: microseconds only when non-zero, `+00:00` offset. */
function pythonIsoformat(date: Date): string {
  const iso = date.toISOString(); // 2024-06-21T10:13:35.060Z
  const ms = date.getUTCMilliseconds();
  return `${iso.slice(0, 19)}${ms === 0 ? '' : `.${String(ms).padStart(3, '0')}000`}+00:00`;
}

/** Rasa's defaults for the fields of every event type, in `as_dict()` order. */
const defaults: { [N in EventName]: () => Record<string, unknown> } = {
  user: () => ({}),
  bot: () => ({}),
  slot: () => ({ name: undefined, value: null }),
  reset_slots: () => ({}),
  entities: () => ({ entities: [] }),
  action: () => ({}),
  followup: () => ({ name: undefined }),
  action_execution_rejected: () => ({ name: undefined, policy: null, confidence: null }),
  user_featurization: () => ({ use_text_for_featurization: undefined }),
  session_started: () => ({}),
  restart: () => ({}),
  rewind: () => ({}),
  undo: () => ({}),
  pause: () => ({}),
  resume: () => ({}),
  reminder: () => ({}),
  cancel_reminder: () => ({}),
  export: () => ({}),
  active_loop: () => ({ name: null }),
  loop_interrupted: () => ({ is_interrupted: undefined }),
  agent: () => ({ text: null, data: null }),
  stack: () => ({ update: undefined }),
  flow_started: () => ({ flow_id: undefined }),
  flow_interrupted: () => ({ flow_id: undefined, step_id: undefined }),
  flow_resumed: () => ({ flow_id: undefined, step_id: undefined }),
  flow_completed: () => ({ flow_id: undefined, step_id: undefined }),
  flow_cancelled: () => ({ flow_id: undefined, step_id: undefined }),
  routing_session_ended: () => ({}),
  session_ended: () => ({}),
  error: () => ({ error_code: undefined }),
  agent_started: () => ({ agent_id: undefined, flow_id: undefined }),
  agent_completed: () => ({ agent_id: undefined, flow_id: undefined, status: undefined }),
  agent_interrupted: () => ({ agent_id: undefined, flow_id: undefined }),
  agent_resumed: () => ({ agent_id: undefined, flow_id: undefined }),
  agent_cancelled: () => ({ agent_id: undefined, flow_id: undefined, reason: undefined }),
};

/**
 * Any event by its wire name, with Rasa's defaults: `createEvent('flow_started', { flow_id: 'transfer' })`.
 * `timestamp` defaults to now. Fields a type requires (`slot.name`, `stack.update`, …) must be given.
 */
export function createEvent<N extends EventName>(
  name: N,
  init: EventInit<N> = {} as EventInit<N>,
): T.EventOf<N> {
  switch (name) {
    case 'user':
      return userUttered((init as EventInit<'user'>).text ?? null, init as EventInit<'user'>) as T.EventOf<N>;
    case 'bot':
      return botUttered((init as EventInit<'bot'>).text ?? null, init as EventInit<'bot'>) as T.EventOf<N>;
    case 'action':
      return actionExecuted(
        (init as EventInit<'action'>).name ?? null,
        init as EventInit<'action'>,
      ) as T.EventOf<N>;
    case 'reminder': {
      const r = init as EventInit<'reminder'>;
      return reminderScheduled(r.intent ?? '', r.date_time ?? new Date(), r) as T.EventOf<N>;
    }
  }
  const fields = defaults[name]();
  const given = init as Record<string, unknown>;
  for (const key of Object.keys(fields)) if (given[key] !== undefined) fields[key] = given[key];
  for (const [key, value] of Object.entries(fields)) if (value === undefined) delete fields[key];
  return build(name, pick(init as Base, Object.keys(fields)), fields);
}
