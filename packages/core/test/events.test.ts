import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import {
  actionExecuted,
  botUttered,
  createEvent,
  decodeEvent,
  dialogueStackUpdated,
  EventDecodeError,
  type EventName,
  EventValidationError,
  encodeEvent,
  eventNames,
  eventsJsonSchema,
  isKnownEvent,
  parseEvent,
  type RasaEvent,
  reminderScheduled,
  safeDecodeEvent,
  safeParseEvent,
  slotSet,
  stackPatch,
  stringifyEvent,
  unknownEvent,
  userCommands,
  userEntities,
  userIntent,
  userUttered,
} from '../src/index.js';
import { wireLines } from './support/fixtures.js';

const lines = wireLines();

describe('real Rasa events (fixtures)', () => {
  it('has the fixture conversations', () => {
    expect(lines.length).toBe(94);
  });

  it.each(lines.map((l, i) => [i, l.conversation, l.line] as const))(
    'event %i of %s parses strictly and re-encodes byte-identically in the python format',
    (_i, _conversation, line) => {
      const envelope = decodeEvent(line, { strict: true });
      expect(isKnownEvent(envelope)).toBe(true);
      expect(stringifyEvent(envelope, { format: 'python' })).toBe(line);
      expect(Buffer.from(encodeEvent(envelope, { format: 'python' })).toString('utf8')).toBe(line);
      // compact round trip: same value, and compact → python is what Python itself would write from it
      const compact = encodeEvent(envelope);
      expect(decodeEvent(compact)).toEqual(envelope);
    },
  );

  it('covers the CALM event types', () => {
    const names = new Set(lines.map((l) => (JSON.parse(l.line) as { event: string }).event));
    for (const n of [
      'stack',
      'flow_started',
      'flow_completed',
      'user_featurization',
      'slot',
      'user',
      'bot',
    ]) {
      expect(names).toContain(n);
    }
  });

  it('validates every fixture event with the exported JSON Schema (an independent validator)', () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    const validate = ajv.compile(eventsJsonSchema());
    for (const { line } of lines)
      expect(validate(JSON.parse(line)), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ sender_id: 's', event: 'slot', timestamp: 1 })).toBe(false); // slot needs name and value
    expect(validate({ sender_id: 's', event: 'something_new', timestamp: 1, x: 1 })).toBe(true);
  });
});

describe('parseEvent', () => {
  it('names the path, the expectation and the found value', () => {
    const bad = {
      event: 'user',
      timestamp: 1.5,
      parse_data: { intent: { name: 'greet', confidence: 'high' } },
    };
    const result = safeParseEvent(bad);
    expect(result.success).toBe(false);
    if (result.success) return;
    expect(result.error).toBeInstanceOf(EventValidationError);
    expect(result.error.path).toBe('parse_data.intent.confidence');
    expect(result.error.message).toBe(
      '[parley] invalid "user" event at parse_data.intent.confidence: expected a number or null, found string "high"',
    );
  });

  it('reports missing required fields and array indexes', () => {
    expect(() => parseEvent({ event: 'slot', timestamp: 1, value: 2 })).toThrow(
      'invalid "slot" event at name: expected a string, found nothing (the key is missing)',
    );
    expect(() =>
      parseEvent({
        event: 'entities',
        timestamp: 1,
        entities: [{ entity: 'city', value: 'x' }, { value: 1 }],
      }),
    ).toThrow('at entities[1].entity: expected a string');
    expect(() => parseEvent({ event: 'action', name: 'x' })).toThrow('at timestamp: expected a number');
  });

  it('rejects non-objects and nameless events clearly', () => {
    expect(() => parseEvent([1])).toThrow('expected an event object, found an array of 1');
    expect(() => parseEvent(null)).toThrow('found null');
    expect(() => parseEvent({ timestamp: 1 })).toThrow('at event: expected a string (the event name)');
  });

  it('keeps unknown events intact, and rejects them when strict', () => {
    const input = { event: 'agent_handoff', timestamp: 2.5, to: 'human', nested: { a: [1] } };
    const event = parseEvent(input);
    // Every field, plus the mark that lets it be published again; the caller's object is left as it was.
    expect(event).toEqual(unknownEvent(input));
    expect(Object.getOwnPropertySymbols(input)).toEqual([]);
    expect(isKnownEvent(event)).toBe(false);
    expect(() => parseEvent(input, { strict: true })).toThrow('unknown event "agent_handoff"');
  });

  it('preserves extra keys on known events', () => {
    const input = {
      event: 'slot',
      timestamp: 1.5,
      name: 'a',
      value: 1,
      filled_by: 'LLM',
      future_key: [1, 2],
    };
    expect(parseEvent(input)).toEqual(input);
  });

  it('accepts what Python can write: NaN and Infinity in number fields', () => {
    const e = decodeEvent('{"sender_id": "s", "event": "action", "timestamp": 1.0, "confidence": NaN}');
    expect(e.event === 'action' && Number.isNaN(e.confidence)).toBe(true);
    expect(stringifyEvent(e, { format: 'python' })).toBe(
      '{"sender_id": "s", "event": "action", "timestamp": 1.0, "confidence": NaN}',
    );
  });

  it('keeps NaN and Infinity in the compact format too, rather than turning them into null', () => {
    const e = decodeEvent(
      '{"sender_id": "s", "event": "slot", "timestamp": 1.0, "name": "x", "value": [NaN, -Infinity]}',
    );
    const compact = stringifyEvent(e);
    expect(compact).not.toContain('null');
    const back = decodeEvent(compact);
    expect(back.event === 'slot' && back.value).toEqual([Number.NaN, Number.NEGATIVE_INFINITY]);
  });

  it('normalises legacy form events as Rasa does', () => {
    expect(parseEvent({ event: 'form', timestamp: 1, name: 'booking_form' })).toEqual({
      event: 'active_loop',
      timestamp: 1,
      name: 'booking_form',
    });
    expect(parseEvent({ event: 'form_validation', timestamp: 1, validate: false })).toEqual({
      event: 'loop_interrupted',
      timestamp: 1,
      is_interrupted: true,
    });
    expect(parseEvent({ event: 'form_validation', timestamp: 1 })).toMatchObject({ is_interrupted: false });
  });

  it('narrows the union on event', () => {
    const e = parseEvent({ event: 'slot', timestamp: 1, name: 'city', value: 'Berlin' }, { strict: true });
    if (e.event === 'slot') expect(e.name).toBe('city');
    else expect.fail('not narrowed');
  });
});

describe('decodeEvent', () => {
  it('rejects what is not an envelope, with the reason', () => {
    expect(() => decodeEvent('{"event": "restart", "timestamp": 1}')).toThrow(
      '[parley] invalid "restart" event at sender_id: expected a string (the conversation id), found nothing (the key is missing)',
    );
    expect(() => decodeEvent('[1, 2]')).toThrow(
      '[parley] invalid event: expected a JSON object (an event envelope), found an array of 2',
    );
    expect(() => decodeEvent('{"sender_id": "a", "event": }')).toThrow(
      /payload is not JSON: .*line 1, column 29/,
    );
    expect(() => decodeEvent(new Uint8Array([0x7b, 0xff, 0x7d]))).toThrow('payload is not valid UTF-8');
    // A byte order mark is not JSON (Rasa never writes one): said, not silently dropped by the UTF-8 decoder.
    expect(() =>
      decodeEvent(Buffer.from('\uFEFF{"sender_id": "a", "event": "restart", "timestamp": 1}')),
    ).toThrow('payload is not JSON: Unexpected U+FEFF at line 1, column 1');
    const r = safeDecodeEvent('');
    expect(!r.success && r.error).toBeInstanceOf(EventDecodeError);
  });

  it('valid JSON that is not a valid envelope is EVENT_INVALID, the missing sender_id included; bytes that are not JSON are EVENT_UNDECODABLE', () => {
    const code = (input: string | Uint8Array) => {
      const result = safeDecodeEvent(input);
      return result.success ? 'decoded' : `${result.error.name} ${result.error.code}`;
    };
    const invalid = 'EventValidationError EVENT_INVALID';
    const undecodable = 'EventDecodeError EVENT_UNDECODABLE';
    expect(code('{"event": "user", "timestamp": 1, "text": "hi"}')).toBe(invalid);
    expect(code('{"sender_id": 7, "event": "user", "timestamp": 1}')).toBe(invalid);
    expect(code('["x"]')).toBe(invalid);
    expect(code('42')).toBe(invalid);
    expect(code('{"sender_id": "a", "event": "slot", "timestamp": 1}')).toBe(invalid);
    expect(code('not json {')).toBe(undecodable);
    expect(code('')).toBe(undecodable);
    expect(code(new Uint8Array([0x7b, 0xff, 0x7d]))).toBe(undecodable);
    const noSender = safeDecodeEvent('{"event": "user", "timestamp": 1}');
    expect(!noSender.success && noSender.error).toMatchObject({ path: 'sender_id', eventName: 'user' });
  });

  it('limits nesting to 512 levels on every path, with or without Python tokens', () => {
    const deep = (n: number, ts: string) =>
      `{"sender_id": "s", "event": "x", "timestamp": ${ts}, "d": ${'['.repeat(n)}${']'.repeat(n)}}`;
    expect(() => decodeEvent(deep(600, '1.0'))).toThrow('nesting deeper than 512');
    expect(() => decodeEvent(deep(600, 'NaN'))).toThrow('nesting deeper than 512');
    expect(decodeEvent(deep(500, '1.0')).event).toBe('x');
  });

  it('accepts bytes, including non-ASCII written either way', () => {
    const escaped = '{"sender_id": "s\\u00e9", "event": "bot", "timestamp": 1.5, "text": "\\ud83d\\ude00"}';
    const raw = '{"sender_id":"sé","event":"bot","timestamp":1.5,"text":"😀"}';
    expect(decodeEvent(Buffer.from(escaped))).toEqual(decodeEvent(new TextEncoder().encode(raw)));
    expect(stringifyEvent(decodeEvent(raw), { format: 'python' })).toBe(
      '{"sender_id": "s\\u00e9", "event": "bot", "timestamp": 1.5, "text": "\\ud83d\\ude00"}',
    );
  });
});

describe('encodeEvent', () => {
  it('refuses to encode an invalid event or envelope', () => {
    expect(() => encodeEvent({ sender_id: 's', event: 'slot', timestamp: 1 } as never)).toThrow(
      'invalid "slot" event at name',
    );
    expect(() => encodeEvent({ event: 'restart', timestamp: 1 } as never)).toThrow(
      'invalid "restart" event at sender_id: expected a string (the conversation id)',
    );
  });
});

describe('constructors', () => {
  const t = 1718964815.060891;

  it('writes a user event exactly as Rasa does (key order, defaults, floats)', () => {
    const e = userUttered('hi', { timestamp: t, intent: { name: 'greet', confidence: 1 } });
    expect(stringifyEvent({ sender_id: 'u1', ...e }, { format: 'python' })).toBe(
      '{"sender_id": "u1", "event": "user", "timestamp": 1718964815.060891, "text": "hi", "parse_data": ' +
        '{"intent": {"name": "greet", "confidence": 1.0}, "entities": [], "text": "hi", "message_id": null, ' +
        '"metadata": {}}, "input_channel": null, "message_id": null, "metadata": {}}',
    );
    const withMeta = userUttered('hi', { timestamp: 2, metadata: { model_id: 'm' } });
    expect(Object.keys(withMeta)).toEqual([
      'event',
      'timestamp',
      'metadata',
      'text',
      'parse_data',
      'input_channel',
      'message_id',
    ]);
  });

  it('writes action, bot and slot events as Rasa does', () => {
    expect(
      stringifyEvent(
        { sender_id: 'u', ...actionExecuted('action_listen', { timestamp: 3 }) },
        { format: 'python' },
      ),
    ).toBe(
      '{"sender_id": "u", "event": "action", "timestamp": 3.0, "name": "action_listen", "policy": null, ' +
        '"confidence": null, "action_text": null, "hide_rule_turn": false}',
    );
    expect(botUttered('Hey!', { timestamp: 1 })).toEqual({
      event: 'bot',
      timestamp: 1,
      text: 'Hey!',
      data: {},
      metadata: {},
    });
    expect(slotSet('city', 'Berlin', { timestamp: 1 })).toEqual({
      event: 'slot',
      timestamp: 1,
      name: 'city',
      value: 'Berlin',
    });
  });

  it('defaults timestamp to now, in seconds', () => {
    const before = Date.now() / 1000;
    const e = createEvent('restart');
    expect(e.timestamp).toBeGreaterThanOrEqual(before);
    expect(e.timestamp).toBeLessThan(before + 5);
  });

  it('builds every event type into a valid event', () => {
    const required: Partial<Record<EventName, object>> = {
      slot: { name: 'a', value: 1 },
      stack: { update: '[]' },
      flow_started: { flow_id: 'f' },
      flow_interrupted: { flow_id: 'f', step_id: 's' },
      flow_resumed: { flow_id: 'f', step_id: 's' },
      flow_completed: { flow_id: 'f', step_id: 's' },
      flow_cancelled: { flow_id: 'f', step_id: 's' },
      agent_started: { agent_id: 'a', flow_id: 'f' },
      agent_completed: { agent_id: 'a', flow_id: 'f', status: 'done' },
      agent_interrupted: { agent_id: 'a', flow_id: 'f' },
      agent_resumed: { agent_id: 'a', flow_id: 'f' },
      agent_cancelled: { agent_id: 'a', flow_id: 'f', reason: 'timeout' },
      reminder: { intent: 'remind', date_time: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)).toISOString() },
    };
    for (const name of eventNames) {
      const event = createEvent(name, (required[name] ?? {}) as never) as RasaEvent;
      expect(event.event).toBe(name);
      expect(parseEvent(event, { strict: true })).toBe(event);
    }
    expect(createEvent('cancel_reminder', { timestamp: 1 })).toEqual({
      event: 'cancel_reminder',
      timestamp: 1,
    });
    expect(createEvent('active_loop', { timestamp: 1 })).toEqual({
      event: 'active_loop',
      timestamp: 1,
      name: null,
    });
  });

  it('writes reminder dates like Python isoformat() and uses kill_on_user_msg', () => {
    const e = reminderScheduled('remind', new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), {
      timestamp: 1,
      name: 'r1',
    });
    expect(e).toEqual({
      event: 'reminder',
      timestamp: 1,
      intent: 'remind',
      date_time: '2024-01-02T03:04:05.006000+00:00',
      entities: null,
      name: 'r1',
      kill_on_user_msg: true,
    });
  });

  it('serialises the stack patch with Python json.dumps, as Rasa does', () => {
    const e = dialogueStackUpdated([{ op: 'add', path: '/0', value: { flow_id: 'x', step_id: 'START' } }], {
      timestamp: 1,
    });
    expect(e.update).toBe('[{"op": "add", "path": "/0", "value": {"flow_id": "x", "step_id": "START"}}]');
  });
});

describe('readers', () => {
  const calm = lines
    .filter((l) => l.conversation === 'calm_add_contact_inspector')
    .map((l) => decodeEvent(l.line));

  it('parses stack updates as JSON Patch on demand', () => {
    const stack = calm.find((e) => e.event === 'stack');
    if (!stack) return expect.fail('no stack event');
    const patch = stackPatch(stack);
    expect(patch[0]).toMatchObject({
      op: 'add',
      path: '/0',
      value: { flow_id: 'add_contact', step_id: 'START' },
    });
    expect(stackPatch(stack)).toBe(patch); // cached
  });

  it('reads intent, entities and commands of a user event', () => {
    const user = calm.find((e) => e.event === 'user');
    if (!user) return expect.fail('no user event');
    expect(userIntent(user)).toEqual({ name: 'add_contact', confidence: 0.8393586103804717 });
    expect(userEntities(user)).toEqual([]);
    expect(userCommands(user)[0]).toEqual({ flow: 'add_contact', command: 'start flow' });
    expect(userIntent(userUttered('x'))).toBeUndefined();
    expect(userIntent(slotSet('a', 1))).toBeUndefined();
    expect(() => stackPatch(slotSet('a', 1))).toThrow('stackPatch() needs a "stack" event, got "slot"');
  });
});
