/**
 * fast-check arbitraries for Rasa wire events: every event type in `eventSchemas` with realistic fields, unknown
 * event names with arbitrary extra fields, and the `{sender_id, ...event}` envelope around them.
 *
 * `nonFinite` decides whether NaN and ±Infinity may appear in number positions: the compact format (plain JSON)
 * cannot carry them, the python format must.
 */
import fc from 'fast-check';
import {
  type AnyEvent,
  dumpsPython,
  type EventEnvelope,
  type EventName,
  eventSchemas,
  type JsonPatchOperation,
  legacyEventSchemas,
  unknownEvent as markedUnknownEvent,
  type UnknownEventInit,
} from '../../src/index.js';

export interface GenOptions {
  /** Allow NaN, Infinity and -Infinity in number positions (python format only). */
  readonly nonFinite: boolean;
}

type Arb = fc.Arbitrary<unknown>;
type Dict = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------
// Strings

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const controlChar = fc
  .oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }))
  .map((c) => String.fromCharCode(c));
const emoji = fc.constantFrom(
  '😀',
  '👍🏽',
  '👨‍👩‍👧',
  '🇩🇪',
  'e\u0301',
  '\u{10ffff}',
  '\u{1f9d1}\u200d\u{1f4bb}',
  '中文',
);
const tricky = fc.constantFrom(
  '"',
  '\\',
  '/',
  '\\u0041',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\uffff',
  '\u0000',
  '</',
);
const oneCodePoint = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 });
const oneAscii = fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 });

/** One unit of text: any code point, plus what escapes get wrong (lone surrogates, controls, emoji, quotes). */
const unit = fc.oneof(
  { arbitrary: oneCodePoint, weight: 6 },
  { arbitrary: oneAscii, weight: 6 },
  { arbitrary: loneSurrogate, weight: 1 },
  { arbitrary: controlChar, weight: 2 },
  { arbitrary: emoji, weight: 2 },
  { arbitrary: tricky, weight: 2 },
);

/** Full-unicode text, lone surrogates included. */
export const text = (maxLength = 16) => fc.string({ unit, maxLength });

/** A realistic identifier (intent, action, slot, flow name) or, sometimes, any text. */
export const identifier = fc.oneof(
  {
    arbitrary: fc.constantFrom(
      'greet',
      'action_listen',
      'utter_greet',
      'add_contact',
      'pattern_collect_information',
    ),
    weight: 2,
  },
  { arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/), weight: 4 },
  { arbitrary: text(12), weight: 2 },
);

const hex32 = fc.stringMatching(/^[0-9a-f]{32}$/);

/** Object keys, including the ones that trip JavaScript: `__proto__`, index-like keys, the empty key. */
export const key = fc.oneof(
  { arbitrary: identifier, weight: 4 },
  { arbitrary: text(8), weight: 3 },
  {
    arbitrary: fc.constantFrom(
      '__proto__',
      'constructor',
      'toString',
      '0',
      '1',
      '10',
      '007',
      '-1',
      '4294967294',
      '',
    ),
    weight: 1,
  },
);

const nullable = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> =>
  fc.oneof({ arbitrary: arb, weight: 4 }, { arbitrary: fc.constant(null), weight: 1 });

// ---------------------------------------------------------------------------------------------------------
// Numbers and JSON values

const NON_FINITE = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

/** Numbers Python and JavaScript print differently, or that lose their int/float nature. */
const edgeNumbers = fc.constantFrom(
  0,
  -0,
  1,
  -1,
  0.1,
  0.5,
  1e-5,
  1e-7,
  123456789.125,
  1e15,
  1e16,
  1e21,
  1e22,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 60,
  -(2 ** 63),
  Number.MAX_SAFE_INTEGER,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  2.2250738585072014e-308,
);

/** Any number: integers, doubles (with -0), edge cases; NaN and ±Infinity only when `nonFinite`. */
export function anyNumber({ nonFinite }: GenOptions): fc.Arbitrary<number> {
  return fc.oneof(
    { arbitrary: fc.integer(), weight: 3 },
    { arbitrary: fc.double({ noNaN: !nonFinite, noDefaultInfinity: !nonFinite }), weight: 3 },
    { arbitrary: edgeNumbers, weight: 2 },
    { arbitrary: nonFinite ? fc.constantFrom(...NON_FINITE) : fc.integer(), weight: 1 },
  );
}

/** Any JSON value (and, with `nonFinite`, what Python's json writes beyond JSON), with full-unicode strings. */
export function jsonValue(options: GenOptions): Arb {
  const { value } = fc.letrec<{ value: unknown; array: unknown[]; object: Dict }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true, maxDepth: 4 },
      fc.constant(null),
      fc.boolean(),
      anyNumber(options),
      text(),
      tie('array'),
      tie('object'),
    ),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.dictionary(key, tie('value'), { maxKeys: 4, noNullPrototype: true }),
  }));
  return fc.oneof({ arbitrary: value, weight: 3 }, { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 1 });
}

/** Unknown keys with arbitrary values; never one of `reserved`. */
function extras(options: GenOptions, reserved: readonly string[], maxKeys = 3): fc.Arbitrary<Dict> {
  const free = key.filter((k) => !reserved.includes(k));
  return fc.oneof(
    { arbitrary: fc.constant({}), weight: 3 },
    { arbitrary: fc.dictionary(free, jsonValue(options), { maxKeys, noNullPrototype: true }), weight: 1 },
  );
}

/** `record` plus, sometimes, unknown keys after it (Rasa and its extractors add their own). */
function open(
  record: fc.Arbitrary<Dict>,
  options: GenOptions,
  reserved: readonly string[],
): fc.Arbitrary<Dict> {
  return fc.tuple(record, extras(options, reserved)).map(([r, x]) => ({ ...r, ...x }));
}

// ---------------------------------------------------------------------------------------------------------
// Event parts

/** Python `time.time()`: float seconds, now and then integral. */
export const timestamp = fc.oneof(
  { arbitrary: fc.double({ min: 1e9, max: 2e9, noNaN: true }), weight: 8 },
  { arbitrary: fc.integer({ min: 1e9, max: 2e9 }), weight: 2 },
  { arbitrary: fc.constantFrom(1718964815.060891, 1517821726.211031, 1e9, 2e9), weight: 1 },
);

/** A probability, sometimes exactly 0 or 1 (which Python writes as `0.0` and `1.0`). */
function confidence({ nonFinite }: GenOptions): fc.Arbitrary<number> {
  return fc.oneof(
    { arbitrary: fc.double({ min: 0, max: 1, noNaN: true }), weight: 6 },
    { arbitrary: fc.constantFrom(0, 1), weight: 2 },
    { arbitrary: nonFinite ? fc.constantFrom(...NON_FINITE) : fc.constant(0.5), weight: 1 },
  );
}

/** An optional Python float (`anonymized_at`). */
function float(options: GenOptions): fc.Arbitrary<number> {
  return fc.oneof(timestamp, anyNumber(options));
}

function metadata(options: GenOptions): Arb {
  const filled = open(
    fc.record(
      {
        model_id: hex32,
        assistant_id: fc.oneof(fc.constant('20240418-073244-narrow-archive'), text()),
        utter_action: identifier,
        _reason: text(),
        error_msg: text(),
        execution_times: fc.dictionary(identifier, fc.double({ min: 0, max: 10, noNaN: true }), {
          maxKeys: 2,
        }),
      },
      { requiredKeys: [] },
    ),
    options,
    ['model_id', 'assistant_id'],
  );
  return fc.oneof(
    { arbitrary: filled, weight: 4 },
    { arbitrary: fc.constant({}), weight: 1 },
    { arbitrary: fc.constant(null), weight: 1 },
  );
}

function intent(options: GenOptions): fc.Arbitrary<Dict> {
  return open(
    fc.record(
      { name: nullable(identifier), confidence: nullable(confidence(options)) },
      { requiredKeys: [] },
    ),
    options,
    ['name', 'confidence'],
  );
}

const ENTITY_KEYS = ['entity', 'value', 'start', 'end', 'confidence', 'extractor', 'role', 'group'];

function entity(options: GenOptions): fc.Arbitrary<Dict> {
  const offset = fc.oneof({ arbitrary: fc.nat(200), weight: 4 }, { arbitrary: fc.integer(), weight: 1 });
  return open(
    fc.record(
      {
        entity: identifier,
        start: offset,
        end: offset,
        value: jsonValue(options),
        confidence: confidence(options),
        extractor: nullable(fc.constantFrom('DIETClassifier', 'RegexEntityExtractor', 'LLM')),
        role: nullable(identifier),
        group: nullable(identifier),
        confidence_entity: confidence(options),
        processors: fc.array(identifier, { maxLength: 2 }),
      },
      { requiredKeys: ['entity', 'value'] },
    ),
    options,
    [...ENTITY_KEYS, 'confidence_entity', 'confidence_role'],
  );
}

function command(options: GenOptions): fc.Arbitrary<Dict> {
  const name = fc.oneof(
    fc.constantFrom('start flow', 'set slot', 'cancel flow', 'chitchat', 'clarify', 'skip question'),
    text(),
  );
  return fc
    .tuple(
      fc.record(
        { flow: identifier, name: identifier, value: jsonValue(options), extractor: fc.constant('LLM') },
        { requiredKeys: [] },
      ),
      name,
      extras(options, ['command', 'flow', 'name', 'value', 'extractor']),
    )
    .map(([fields, c, x]) => ({ ...fields, ...x, command: c }));
}

function parseData(options: GenOptions): fc.Arbitrary<Dict> {
  return open(
    fc.record(
      {
        intent: intent(options),
        entities: fc.array(entity(options), { maxLength: 3 }),
        text: nullable(text()),
        message_id: nullable(hex32),
        metadata: nullable(fc.dictionary(key, jsonValue(options), { maxKeys: 2, noNullPrototype: true })),
        intent_ranking: fc.array(intent(options), { maxLength: 4 }),
        response_selector: fc.dictionary(identifier, jsonValue(options), {
          maxKeys: 2,
          noNullPrototype: true,
        }),
        commands: fc.array(command(options), { maxLength: 3 }),
        text_tokens: fc.array(fc.tuple(fc.nat(50), fc.nat(50)), { maxLength: 3 }),
        flows_in_prompt: fc.array(identifier, { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    options,
    [
      'intent',
      'entities',
      'text',
      'message_id',
      'metadata',
      'intent_ranking',
      'response_selector',
      'commands',
      'text_tokens',
      'flows_in_prompt',
    ],
  );
}

/** A JSON Pointer such as `/0/frame_id` (with `~0`/`~1` escapes now and then). */
const pointer = fc
  .array(fc.oneof(fc.nat(5).map(String), identifier, fc.constantFrom('-', 'a~0b', 'c~1d')), { maxLength: 3 })
  .map((parts) => parts.map((p) => `/${p}`).join(''));

function patchOperation(options: GenOptions): fc.Arbitrary<JsonPatchOperation> {
  const frame = fc.record({
    frame_id: fc.stringMatching(/^[A-Z0-9]{8}$/),
    flow_id: identifier,
    step_id: fc.oneof(fc.constantFrom('START', 'END', '0_collect_name'), identifier),
    frame_type: fc.constantFrom('regular', 'interrupt', 'call'),
    type: fc.constantFrom('flow', 'pattern_collect_information', 'search'),
  });
  return fc.oneof(
    fc.record({
      op: fc.constantFrom('add' as const, 'replace' as const, 'test' as const),
      path: pointer,
      value: fc.oneof(frame, jsonValue(options)),
    }),
    fc.record({ op: fc.constant('remove' as const), path: pointer }),
    fc.record({ op: fc.constantFrom('move' as const, 'copy' as const), from: pointer, path: pointer }),
  );
}

/** `stack.update`: a JSON Patch serialised as Rasa does (Python json.dumps), or as plain JSON, or any text. */
function stackUpdate(options: GenOptions): fc.Arbitrary<string> {
  const ops = fc.array(patchOperation(options), { maxLength: 4 });
  return fc.oneof(
    { arbitrary: ops.map((o) => dumpsPython(o)), weight: 4 },
    { arbitrary: ops.map((o) => JSON.stringify(o)), weight: 1 },
    { arbitrary: text(), weight: 1 },
  );
}

/** `datetime.isoformat()` of an aware datetime, or (old trackers) any string. */
const dateTime = fc.oneof(
  fc
    .date({
      min: new Date('2000-01-01T00:00:00Z'),
      max: new Date('2100-01-01T00:00:00Z'),
      noInvalidDate: true,
    })
    .map((d) => `${d.toISOString().slice(0, 23)}000+00:00`),
  text(),
);

// ---------------------------------------------------------------------------------------------------------
// Events

interface Fields {
  readonly required?: Record<string, Arb>;
  readonly optional?: Record<string, Arb>;
}

/** The fields of every event type: those its schema requires, and those it allows. */
export function eventFields(o: GenOptions): { readonly [N in EventName]: Fields } {
  const str = identifier;
  const flowStep = { required: { flow_id: str, step_id: str } };
  const agent = { agent_id: str, flow_id: str };
  const anonymized_at = nullable(float(o));
  return {
    user: {
      optional: {
        text: nullable(text()),
        parse_data: parseData(o),
        input_channel: nullable(
          fc.oneof(fc.constantFrom('rest', 'socketio', 'inspector', 'cmdline'), text()),
        ),
        message_id: nullable(hex32),
        anonymized_at,
      },
    },
    bot: {
      optional: {
        text: nullable(text()),
        data: nullable(
          open(
            fc.record(
              {
                elements: nullable(fc.array(jsonValue(o), { maxLength: 2 })),
                quick_replies: nullable(jsonValue(o)),
                buttons: nullable(fc.array(fc.record({ title: text(), payload: text() }), { maxLength: 2 })),
                attachment: nullable(jsonValue(o)),
                image: nullable(text()),
                custom: nullable(jsonValue(o)),
              },
              { requiredKeys: [] },
            ),
            o,
            ['elements', 'quick_replies', 'buttons', 'attachment', 'image', 'custom'],
          ),
        ),
        anonymized_at,
      },
    },
    slot: {
      required: { name: str, value: jsonValue(o) },
      optional: {
        filled_by: nullable(fc.oneof(fc.constantFrom('LLM', 'NLUCommandAdapter'), text())),
        anonymized_at,
      },
    },
    reset_slots: {},
    entities: { required: { entities: fc.array(entity(o), { maxLength: 3 }) } },
    action: {
      optional: {
        name: nullable(str),
        policy: nullable(fc.oneof(fc.constantFrom('policy_2_MemoizationPolicy', 'FlowPolicy'), text())),
        confidence: nullable(confidence(o)),
        action_text: nullable(text()),
        hide_rule_turn: fc.boolean(),
      },
    },
    followup: { optional: { name: nullable(str) } },
    action_execution_rejected: {
      optional: { name: nullable(str), policy: nullable(text()), confidence: nullable(confidence(o)) },
    },
    user_featurization: { optional: { use_text_for_featurization: fc.boolean() } },
    session_started: {},
    restart: {},
    rewind: {},
    undo: {},
    pause: {},
    resume: {},
    reminder: {
      required: { intent: str, date_time: dateTime },
      optional: {
        entities: nullable(fc.array(entity(o), { maxLength: 2 })),
        name: nullable(str),
        kill_on_user_msg: fc.boolean(),
      },
    },
    cancel_reminder: {},
    export: {},
    active_loop: { optional: { name: nullable(str) } },
    loop_interrupted: { optional: { is_interrupted: fc.boolean() } },
    agent: { optional: { text: nullable(text()), data: jsonValue(o) } },
    stack: { required: { update: stackUpdate(o) } },
    flow_started: { required: { flow_id: str } },
    flow_interrupted: flowStep,
    flow_resumed: flowStep,
    flow_completed: flowStep,
    flow_cancelled: flowStep,
    routing_session_ended: {},
    session_ended: {},
    error: { optional: { error_code: fc.oneof(fc.integer({ min: 0, max: 599 }), fc.integer()) } },
    agent_started: { required: agent, optional: { context_id: nullable(str) } },
    agent_completed: {
      required: agent,
      optional: { status: nullable(fc.constantFrom('completed', 'failed')) },
    },
    agent_interrupted: { required: agent },
    agent_resumed: { required: agent },
    agent_cancelled: { required: agent, optional: { reason: nullable(text()) } },
  };
}

const ENVELOPE_KEYS = ['sender_id', 'event', 'timestamp', 'metadata'];

/** A valid event of type `name`, in `as_dict()` order, with unknown extra keys on some. */
export function knownEvent(
  name: EventName,
  o: GenOptions,
  fields = eventFields(o)[name],
): fc.Arbitrary<Dict> {
  const required = fields.required ?? {};
  const optional = fields.optional ?? {};
  const own = [...Object.keys(required), ...Object.keys(optional)];
  const model: Record<string, Arb> = {
    event: fc.constant(name),
    timestamp,
    metadata: metadata(o),
    ...required,
    ...optional,
  };
  return open(fc.record(model, { requiredKeys: ['event', 'timestamp', ...Object.keys(required)] }), o, [
    ...ENVELOPE_KEYS,
    ...own,
  ]);
}

/** An event name Parley does not know (never a legacy name either). */
export const unknownEventName = fc
  .oneof(
    fc.constantFrom(
      'agent_handoff',
      'llm_call',
      '__proto__',
      'constructor',
      'toString',
      '',
      'USER',
      'slot ',
      'form_',
    ),
    fc.stringMatching(/^[a-z][a-z_]{0,20}$/),
    text(12),
  )
  .filter((n) => !Object.hasOwn(eventSchemas, n) && !Object.hasOwn(legacyEventSchemas, n));

/**
 * An event with an unknown name: `timestamp`, maybe `metadata`, and any extra fields; built with `unknownEvent()`, as
 * a caller must to publish it (decoded ones carry the same mark, so both compare equal).
 */
export function unknownEvent(o: GenOptions): fc.Arbitrary<Dict> {
  const free = key.filter((k) => !ENVELOPE_KEYS.includes(k));
  return fc
    .tuple(
      fc.record(
        { event: unknownEventName, timestamp, metadata: metadata(o) },
        { requiredKeys: ['event', 'timestamp'] },
      ),
      fc.dictionary(free, jsonValue(o), { maxKeys: 5, noNullPrototype: true }),
    )
    .map(([e, x]) => markedUnknownEvent({ ...e, ...x } as UnknownEventInit) as Dict);
}

/** A sender id: a Rasa-like id or any unicode text. */
export const senderId = fc.oneof(
  { arbitrary: hex32, weight: 2 },
  { arbitrary: fc.constantFrom('default', 'mysender', ''), weight: 1 },
  { arbitrary: text(24), weight: 3 },
);

/** A generated wire envelope (known or unknown event). */
export type Envelope = EventEnvelope<AnyEvent>;

/** The wire envelope `{sender_id, ...event}` around `event`. */
export function envelopeOf(event: fc.Arbitrary<Dict>): fc.Arbitrary<Envelope> {
  return fc.tuple(senderId, event).map(([sender_id, e]) => ({ sender_id, ...e }) as unknown as Envelope);
}

/** Envelopes of every known event type (equally likely) and, one time in eight, of an unknown one. */
export function envelope(o: GenOptions): fc.Arbitrary<Envelope> {
  const fields = eventFields(o);
  const known = fc.oneof(
    ...(Object.keys(eventSchemas) as EventName[]).map((name) => knownEvent(name, o, fields[name])),
  );
  return envelopeOf(fc.oneof({ arbitrary: known, weight: 7 }, { arbitrary: unknownEvent(o), weight: 1 }));
}
