/**
 * Unknown event names: a hand-written `event: 'usr'` is a typo and neither compiles nor publishes, while events
 * read from the wire (a newer Rasa's) and events built with `unknownEvent()` travel intact. The type assertions
 * below are checked by `tsc -p packages/core/tsconfig.json` (the package's typecheck), the rest by vitest.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type AnyEvent,
  type Broker,
  decodeEvent,
  type EventEnvelope,
  EventValidationError,
  encodeEvent,
  MemoryHub,
  memoryBroker,
  parseEvent,
  stringifyEvent,
  type UnknownEvent,
  type UserUttered,
  unknownEvent,
  unknownEventMark,
} from '../src/index.js';

const python = { format: 'python' } as const;

/** Never called: what the compiler accepts and refuses at a publish. */
function publishTypes(broker: Broker, decoded: EventEnvelope<AnyEvent>): void {
  // @ts-expect-error 'usr' is not an event name; a name Parley does not know needs unknownEvent()
  void broker.publish({ sender_id: 'a', event: 'usr', timestamp: 1, text: 'hi' });
  // @ts-expect-error a hand-built `user` event is a UserUttered: text is a string or null
  void broker.publish({ sender_id: 'a', event: 'user', timestamp: 1, text: 42 });
  void broker.publish({ sender_id: 'a', event: 'user', timestamp: 1, text: 'hi' });
  void broker.publish({ sender_id: 'a', ...unknownEvent({ event: 'agent_handoff', to: 'human' }) });
  void broker.publish(decoded);
  void broker.publish({ sender_id: 'a', event: 'usr', timestamp: 1 } as EventEnvelope<AnyEvent>, {
    allowUnknown: true,
  });
}
void publishTypes;

describe('types', () => {
  it('an event literal is typed by its name; an unknown name is not an event unless built with unknownEvent()', () => {
    type Envelope = EventEnvelope<AnyEvent>;
    expectTypeOf<{
      sender_id: string;
      event: 'user';
      timestamp: number;
      text: string;
    }>().toExtend<Envelope>();
    expectTypeOf<{
      sender_id: string;
      event: 'user';
      timestamp: number;
      text: number;
    }>().not.toExtend<Envelope>();
    expectTypeOf<{ sender_id: string; event: 'usr'; timestamp: number }>().not.toExtend<Envelope>();
    expectTypeOf<{ sender_id: string; event: string; timestamp: number }>().not.toExtend<Envelope>();
    const built = unknownEvent({ event: 'agent_handoff', to: 'human' });
    expectTypeOf(built).toExtend<UnknownEvent>();
    expectTypeOf(built.to).toEqualTypeOf<string>();
    expectTypeOf({ sender_id: 'a', ...built }).toExtend<Envelope>();
    // What the decoder returns may be any event, and is publishable as it is.
    expectTypeOf(decodeEvent).returns.toExtend<Envelope>();
    expectTypeOf<Extract<AnyEvent, { event: 'user' }>>().toEqualTypeOf<UserUttered>();
  });
});

describe('encoding an unknown event name', () => {
  it('refuses a hand-built one, naming the field, the value, the nearest name and how to allow it', () => {
    const typo = { sender_id: 'a', event: 'usr', timestamp: 1, text: 'hi' } as EventEnvelope<AnyEvent>;
    let error: unknown;
    try {
      stringifyEvent(typo);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(EventValidationError);
    expect((error as EventValidationError).message).toBe(
      '[parley] invalid "usr" event at event: expected a known event name, found "usr" (did you mean "user"?); ' +
        'to send an event name Parley does not know, build it with unknownEvent({ event: "usr", … }) ' +
        'or pass { allowUnknown: true }',
    );
    expect(error).toMatchObject({ code: 'EVENT_INVALID', path: 'event', eventName: 'usr' });
    const far = { sender_id: 'a', event: 'agent_handoff', timestamp: 1 } as EventEnvelope<AnyEvent>;
    expect(() => encodeEvent(far)).toThrow(/found "agent_handoff"; to send/);
  });

  it('encodes it with allowUnknown, or built with unknownEvent(), whose mark is never written', () => {
    const plain = {
      sender_id: 'a',
      event: 'agent_handoff',
      timestamp: 1,
      to: 'human',
    } as EventEnvelope<AnyEvent>;
    const expected = '{"sender_id": "a", "event": "agent_handoff", "timestamp": 1.0, "to": "human"}';
    expect(stringifyEvent(plain, { ...python, allowUnknown: true })).toBe(expected);
    const built = { sender_id: 'a', ...unknownEvent({ event: 'agent_handoff', timestamp: 1, to: 'human' }) };
    expect(built[unknownEventMark]).toBe(true);
    expect(stringifyEvent(built, python)).toBe(expected);
    expect(JSON.stringify(built)).toBe(
      '{"sender_id":"a","event":"agent_handoff","timestamp":1,"to":"human"}',
    );
    // `strict` still refuses every unknown name.
    expect(() => stringifyEvent(built, { strict: true })).toThrow('unknown event "agent_handoff"');
    // The mark does not make a known event valid: it is still checked against its schema.
    const wrong = unknownEvent({ event: 'user', timestamp: 1, text: 42 });
    expect(() => stringifyEvent({ sender_id: 'a', ...wrong })).toThrow('at text: expected a string or null');
  });

  it('unknownEvent() defaults timestamp to now and writes event and timestamp first, as Rasa does', () => {
    const before = Date.now() / 1000;
    const event = unknownEvent({ to: 'human', event: 'agent_handoff' });
    expect(Object.keys(event)).toEqual(['event', 'timestamp', 'to']);
    expect(event.timestamp).toBeGreaterThanOrEqual(before);
  });

  it('forwards what was decoded or parsed unchanged, byte for byte, and a spread copy of it too', () => {
    const line = '{"sender_id": "a", "event": "future_event", "timestamp": 1.0, "x": [1, 2.5]}';
    const decoded = decodeEvent(line);
    expect(stringifyEvent(decoded, python)).toBe(line);
    expect(stringifyEvent({ ...decoded, sender_id: 'b' }, python)).toBe(line.replace('"a"', '"b"'));
    const parsed = parseEvent(JSON.parse(line));
    expect(() => stringifyEvent(parsed as EventEnvelope<AnyEvent>)).not.toThrow();
    // Known events need no mark, and get none.
    expect(
      Object.getOwnPropertySymbols(decodeEvent('{"sender_id": "a", "event": "restart", "timestamp": 1}')),
    ).toEqual([]);
  });
});

describe('publishing an unknown event name', () => {
  it('is refused unless built with unknownEvent() or allowed, and what a subscriber got republishes as it came', async () => {
    const hub = new MemoryHub();
    const broker = memoryBroker({ hub, destination: 'in', format: 'python', onWarning: () => {} });
    const typo = { sender_id: 's', event: 'usr', timestamp: 1, text: 'hi' } as EventEnvelope<AnyEvent>;
    await expect(broker.publish(typo)).rejects.toThrow(
      'invalid "usr" event at event: expected a known event name, found "usr" (did you mean "user"?)',
    );
    const [result] = await broker.publishMany([typo]);
    expect(result?.ok).toBe(false);

    // A relay: every event that arrives on `in` is republished to `out` exactly as it came.
    const out = memoryBroker({ hub, destination: 'out', format: 'python', onWarning: () => {} });
    const relayed: Promise<void>[] = [];
    const relay = broker.subscribe(
      { '*': (event) => void relayed.push(out.publish(event)) },
      { from: 'beginning' },
    );
    const bodies: string[] = [];
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const reader = out.subscribe(
      (_event, context) => {
        bodies.push(Buffer.from(context.body).toString('utf8'));
        if (bodies.length === 3) done();
      },
      { from: 'beginning' },
    );
    await Promise.all([relay.ready, reader.ready]);
    await broker.publish({
      sender_id: 's',
      ...unknownEvent({ event: 'agent_handoff', timestamp: 1, to: 'human' }),
    });
    await broker.publish(typo, { allowUnknown: true });
    await broker.publish({ sender_id: 's', event: 'restart', timestamp: 2 });
    await all;
    await Promise.all(relayed);
    expect(bodies).toEqual([
      '{"sender_id": "s", "event": "agent_handoff", "timestamp": 1.0, "to": "human"}',
      '{"sender_id": "s", "event": "usr", "timestamp": 1.0, "text": "hi"}',
      '{"sender_id": "s", "event": "restart", "timestamp": 2.0}',
    ]);
    await Promise.all([broker.close(), out.close()]);
  });
});
