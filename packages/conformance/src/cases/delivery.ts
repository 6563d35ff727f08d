/** Events arrive intact: before and after subscribe, as bytes on the wire, from Rasa itself, nowhere else. */
import { isUtf8 } from 'node:buffer';
import { decodeEvent } from '@parley/core';
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { rasaSampleBodies } from '../rasa-sample.js';
import { type Envelope, keyOf, makeEvents, sameBytes, sampleEvents } from '../support.js';

const roundtrip: CaseDefinition = {
  id: 'roundtrip',
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    const group = t.group();
    const headers = t.capabilities.headers
      ? { 'x-conformance-run': t.run, 'x-conformance-case': t.id }
      : undefined;
    const publishOptions = headers && { headers };

    // The group exists before anything is published: subscribe, wait until it consumes, close.
    const creator = t.consume(broker, { group });
    await creator.sub.ready;
    await creator.sub.close();

    const before = [...makeEvents(t.run, 16, { senders: 4 }), ...sampleEvents(t.run)];
    await t.publishAll(broker, before, publishOptions);
    const { sub, got } = t.consume(broker, { group, concurrency: 4 });
    await sub.ready;
    await t.waitForAll(got, before.map(keyOf));

    const after = makeEvents(t.run, 16, { senders: 4, start: 100 });
    await t.publishAll(broker, after, publishOptions);
    const all = [...before, ...after];
    await t.waitForAll(got, all.map(keyOf));

    for (const event of all) {
      const received = got.first(keyOf(event))!;
      expect(received.envelope, `event ${keyOf(event)} arrived changed`).toEqual(event);
      if (headers) expect(received.context.headers, `headers of ${keyOf(event)}`).toMatchObject(headers);
    }
    expect(got.deadLetters, 'no event of the run may be dead-lettered').toEqual([]);
  },
};

const wireFormat: CaseDefinition = {
  id: 'wire-format',
  skip: ({ options }) => (options.probe.tap ? undefined : 'probe.tap is not provided'),
  async run(t) {
    const destination = t.destination();
    const tap = await t.options.probe.tap!(destination);
    t.defer(() => tap.close());
    const broker = await t.broker(destination);
    const headers = t.capabilities.headers ? { 'x-conformance-run': t.run } : undefined;
    const events = [...makeEvents(t.run, 16, { senders: 2 }), ...sampleEvents(t.run)];
    await t.publishAll(broker, events, headers && { headers });

    const wanted = new Map(events.map((e) => [keyOf(e), e]));
    let seen = new Map<string, { body: Uint8Array; headers: Record<string, string> }>();
    await t.waitFor(
      async () => {
        seen = new Map();
        for (const message of await tap.messages()) {
          const text = Buffer.from(message.body).toString('utf8');
          if (!text.includes(t.run)) continue;
          seen.set(keyOf(decodeEvent(message.body)), message);
        }
        return [...wanted.keys()].every((key) => seen.has(key));
      },
      () => `the tap to read ${wanted.size} messages (read ${seen.size})`,
    );
    for (const [key, event] of wanted) {
      const message = seen.get(key)!;
      expect(isUtf8(message.body), `${key}: body is UTF-8`).toBe(true);
      const text = Buffer.from(message.body).toString('utf8');
      expect(() => JSON.parse(text), `${key}: body is JSON`).not.toThrow();
      expect(text, `${key}: sender_id comes first, as Rasa writes it`).toMatch(/^\{\s*"sender_id"\s*:/);
      expect(decodeEvent(message.body), `${key}: decodes to the event published`).toEqual(event);
      if (headers) expect(message.headers, `${key}: headers on the wire`).toMatchObject(headers);
    }
  },
};

const foreignProducer: CaseDefinition = {
  id: 'foreign-producer',
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    // Rasa's bytes keep Rasa's sender ids: the destination is the run's own, so everything on it counts.
    const got = t.collector({
      accept: () => true,
      key: (_, context) => Buffer.from(context.body).toString('hex'),
    });
    const { sub } = t.consume(broker, { group: t.group() }, got);
    await sub.ready;
    const bodies = rasaSampleBodies();
    const headers = t.capabilities.headers ? { 'x-conformance-run': t.run } : undefined;
    for (const body of bodies) {
      const senderId = decodeEvent(body).sender_id;
      await t.options.probe.publishRaw(destination, body, headers ? { senderId, headers } : { senderId });
    }
    const keys = bodies.map((body) => Buffer.from(body).toString('hex'));
    await t.waitForAll(got, keys);
    bodies.forEach((body, i) => {
      const received = got.first(keys[i]!)!;
      expect(received.envelope, `sample line ${i}`).toEqual(decodeEvent(body));
      expect(sameBytes(received.context.body, body), `sample line ${i}: context.body is the raw bytes`).toBe(
        true,
      );
      if (headers) expect(received.context.headers).toMatchObject(headers);
    });
    if (t.capabilities.ordering !== 'none') {
      // One sender's events reach the handler in publish order (first deliveries; redeliveries may repeat).
      const senders = bodies.map((body) => decodeEvent(body).sender_id);
      const firstSeen = [...new Set(got.received.map((r) => keys.indexOf(r.key)))];
      for (const sender of new Set(senders)) {
        const seen = firstSeen.filter((i) => senders[i] === sender);
        expect(seen, `order of sender ${sender}`).toEqual([...seen].sort((a, b) => a - b));
      }
    }
    expect(got.deadLetters).toEqual([]);
  },
};

const isolation: CaseDefinition = {
  id: 'isolation',
  async run(t) {
    const [destA, destB] = [t.destination('a'), t.destination('b')];
    const [brokerA, brokerB] = [await t.broker(destA), await t.broker(destB)];
    const a = t.consume(brokerA, { group: t.group() });
    const b = t.consume(brokerB, { group: t.group() });
    await Promise.all([a.sub.ready, b.sub.ready]);

    const toA = makeEvents(t.run, 20, { senders: 4, tag: 'a' });
    const toB = makeEvents(t.run, 5, { tag: 'b', start: 100 });
    await t.publishAll(brokerA, toA);
    await t.waitForAll(a.got, toA.map(keyOf));
    await t.publishAll(brokerB, toB);
    await t.waitForAll(b.got, toB.map(keyOf));
    await t.quietPeriod(300);
    const only = (got: typeof a.got, events: Envelope[]) =>
      got.received.map((r) => r.key).filter((k) => !events.some((e) => keyOf(e) === k));
    expect(only(b.got, toB), 'events of A reached a subscriber of B').toEqual([]);
    expect(only(a.got, toA), 'events of B reached a subscriber of A').toEqual([]);
  },
};

const multiDestination: CaseDefinition = {
  id: 'multi-destination',
  async run(t) {
    const count = 8;
    const perDestination = 25;
    const lanes = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const broker = await t.broker(t.destination(`d${i}`));
        const consumer = t.consume(broker, { group: t.group(), concurrency: 2 });
        const events = makeEvents(t.run, perDestination, { senders: 3, tag: `d${i}-s` });
        return { broker, ...consumer, events };
      }),
    );
    await Promise.all(lanes.map((lane) => lane.sub.ready));
    await Promise.all(lanes.map((lane) => t.publishAll(lane.broker, lane.events)));
    await Promise.all(lanes.map((lane) => t.waitForAll(lane.got, lane.events.map(keyOf))));
    lanes.forEach((lane, i) => {
      const foreign = lane.got.received.filter((r) => !r.envelope.sender_id.startsWith(`${t.run}-d${i}-`));
      expect(
        foreign.map((r) => r.key),
        `destination ${i} received events of another`,
      ).toEqual([]);
    });
  },
};

export const deliveryCases = [roundtrip, wireFormat, foreignProducer, isolation, multiDestination];
