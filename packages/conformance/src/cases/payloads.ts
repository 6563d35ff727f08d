/** Bad payloads: undecodable or invalid ones are dead-lettered once and never stop a consumer; invalid events are never sent. */
import { encodeEvent } from '@parley/core';
import { expect } from 'vitest';
import { startFaultProxy } from '../fault-proxy.js';
import type { CaseContext, CaseDefinition } from '../harness.js';
import {
  bytesOf,
  type Envelope,
  hex,
  invalidConfidence,
  invalidSlot,
  keyOf,
  makeEvents,
} from '../support.js';

interface Bad {
  readonly what: string;
  readonly body: Uint8Array;
  readonly reason: 'undecodable' | 'invalid';
  /** For invalid events: the path the error must name. */
  readonly path?: string;
}

/**
 * Publishes valid events with a bad payload between each two (as a foreign producer, with the native client),
 * then checks that every valid one arrived and every bad one was dead-lettered exactly once, with its bytes.
 */
async function badPayloads(t: CaseContext, bad: readonly Bad[]): Promise<void> {
  const destination = t.destination();
  const broker = await t.broker(destination);
  const group = t.group();
  const { sub, got } = t.consume(broker, { group });
  await sub.ready;
  const valid = makeEvents(t.run, bad.length + 1, { senders: 2 });
  const raw = (event: Envelope) => encodeEvent(event);
  const { publishRaw } = t.options.probe;
  for (let i = 0; i < valid.length; i++) {
    await publishRaw.call(t.options.probe, destination, raw(valid[i]!), { senderId: valid[i]!.sender_id });
    const next = bad[i];
    if (next) await publishRaw.call(t.options.probe, destination, next.body, { senderId: `${t.run}-bad` });
  }
  await t.waitForAll(got, valid.map(keyOf));
  await t.waitFor(
    () => got.deadLetters.length >= bad.length,
    () => `${bad.length} dead letters (${got.deadLetters.length})`,
  );
  const declared = t.capabilities.deadLetter !== 'none' && t.options.probe.deadLetters;
  const stored = async () =>
    declared
      ? (await t.options.probe.deadLetters!(destination, group)).filter((l) =>
          Buffer.from(l.body).includes(t.run),
        )
      : [];
  if (declared) {
    await t.waitFor(
      async () => (await stored()).length >= bad.length,
      'the dead letters at the dead-letter destination',
    );
  }
  await t.quietPeriod(300);

  expect(
    got.deadLetters.map((l) => hex(l.body)).sort(),
    'onDeadLetter: each bad payload once, with its bytes',
  ).toEqual(bad.map((b) => hex(b.body)).sort());
  for (const item of bad) {
    const letter = got.deadLetters.find((l) => hex(l.body) === hex(item.body))!;
    expect(letter, item.what).toMatchObject({ reason: item.reason, attempts: 1, group });
    if (item.path)
      expect(letter.error.message, `${item.what}: the error names the path`).toContain(item.path);
  }
  if (declared) {
    expect(
      (await stored()).map((l) => hex(l.body)).sort(),
      'probe.deadLetters: each bad payload once',
    ).toEqual(bad.map((b) => hex(b.body)).sort());
  }
  expect(got.duplicates, 'valid events handled more than once').toBe(0);
}

const undecodablePayload: CaseDefinition = {
  id: 'undecodable-payload',
  run: (t) =>
    badPayloads(t, [
      { what: 'not JSON', body: bytesOf(`not json ${t.run} {`), reason: 'undecodable' },
      {
        what: 'not UTF-8',
        body: new Uint8Array(
          Buffer.concat([
            bytesOf(`{"sender_id": "${t.run}-x", "text": "`),
            Buffer.from([0xff, 0xfe, 0xc3]),
            bytesOf('"}'),
          ]),
        ),
        reason: 'undecodable',
      },
      {
        what: 'JSON without sender_id',
        body: bytesOf(`{"event": "user", "timestamp": 1, "text": "${t.run}"}`),
        reason: 'invalid',
      },
      { what: 'JSON that is not an object', body: bytesOf(`["${t.run}"]`), reason: 'invalid' },
    ]),
};

const invalidPayload: CaseDefinition = {
  id: 'invalid-payload',
  run: (t) =>
    badPayloads(t, [
      {
        what: 'slot without name',
        body: encodeEvent(invalidSlot(`${t.run}-x`), { validate: false }),
        reason: 'invalid',
        path: 'name',
      },
      {
        what: 'intent confidence as a string',
        body: encodeEvent(invalidConfidence(`${t.run}-x`), { validate: false }),
        reason: 'invalid',
        path: 'parse_data.intent.confidence',
      },
    ]),
};

/** Settles within one turn of the event loop (a rejection "at once"), or reports it still pending. */
async function settledAtOnce(promise: Promise<unknown>): Promise<unknown> {
  const pending = Symbol('pending');
  const outcome = await Promise.race([
    promise.then(
      () => 'resolved',
      (error: unknown) => error,
    ),
    new Promise((resolve) => setImmediate(() => resolve(pending))),
  ]);
  return outcome === pending ? 'still pending after one turn of the event loop' : outcome;
}

const publishValidation: CaseDefinition = {
  id: 'publish-validation',
  async run(t) {
    const broker = await t.broker(t.destination());
    const { sub, got } = t.consume(broker, { group: t.group() });
    await sub.ready;
    const [before, after] = makeEvents(t.run, 2);
    await t.publishAll(broker, [before!]);

    const cases = [
      { event: invalidSlot(`${t.run}-s0`), path: 'name' },
      { event: invalidConfidence(`${t.run}-s0`), path: 'parse_data.intent.confidence' },
    ];
    for (const { event, path } of cases) {
      const outcome = await settledAtOnce(broker.publish(event));
      expect(outcome, `publish of an invalid event (${path})`).toMatchObject({
        name: 'EventValidationError',
        code: 'EVENT_INVALID',
        path,
      });
      expect((outcome as Error).message).toContain(path);
    }
    const noSender = { event: 'bot', timestamp: 1, text: t.run } as unknown as Envelope;
    expect(await settledAtOnce(broker.publish(noSender)), 'publish without sender_id').toBeInstanceOf(Error);

    await t.publishAll(broker, [after!]);
    await t.waitForAll(got, [before!, after!].map(keyOf));
    await t.quietPeriod(300);
    expect(
      got.received.map((r) => r.key),
      'only the valid events were sent',
    ).toEqual([keyOf(before!), keyOf(after!)]);
    expect(got.deadLetters).toEqual([]);
  },
};

/** Events of the burst `batch-publish` sends through the fault proxy, and the most round trips it may take. */
const BURST = 1_000;
const MAX_BURST_TURNS = BURST / 4;

/**
 * `batchPublish`: the driver takes many messages per `send`. Every broker: `publishMany` gives one result per
 * entry (invalid ones fail, the rest go out) and one sender's batch arrives in order. TCP brokers (`chaos.upstream`)
 * also show what the flag is for: a burst of 1,000 publishes goes through the fault proxy in far fewer than 1,000
 * request/response turns. A driver that declares `batchPublish` but waits for the broker after each message fails
 * there; in-process brokers make no round trips, so only the first part runs for them.
 */
const batchPublish: CaseDefinition = {
  id: 'batch-publish',
  skip: ({ capabilities }) => (capabilities.batchPublish ? undefined : 'capabilities.batchPublish is false'),
  async run(t) {
    const broker = await t.broker(t.destination());
    const { sub, got } = t.consume(broker, { group: t.group() });
    await sub.ready;
    const bad = new Set([30, 61]);
    const events = makeEvents(t.run, 100).map((event, i) =>
      bad.has(i) ? invalidSlot(event.sender_id) : event,
    );
    const results = await broker.publishMany(events);
    expect(results).toHaveLength(100);
    results.forEach((result, i) => {
      if (!bad.has(i)) {
        expect(result, `entry ${i}`).toEqual({ ok: true });
      } else {
        expect(result.ok, `entry ${i} is invalid`).toBe(false);
        if (!result.ok)
          expect(result.error, `entry ${i}`).toMatchObject({ name: 'EventValidationError', path: 'name' });
      }
    });
    const good = events.filter((_, i) => !bad.has(i));
    await t.waitForAll(got, good.map(keyOf));
    if (t.capabilities.ordering !== 'none') {
      const order = [...new Set(got.received.map((r) => r.key))];
      expect(order, 'one sender: the events arrive in order').toEqual(good.map(keyOf));
    }
    expect(got.unique).toBe(98);
    const upstream = t.options.chaos?.upstream;
    if (upstream) await burstRoundTrips(t, upstream);
    else t.log('round trips not counted: no chaos.upstream (an in-process broker makes none)');
  },
};

/** 1,000 publishes at once through a fault proxy: they must take far fewer than 1,000 round trips. */
async function burstRoundTrips(t: CaseContext, upstream: { host: string; port: number }): Promise<void> {
  const proxy = await startFaultProxy({ upstream });
  t.defer(() => proxy.close());
  const destination = t.destination('burst');
  // The reader connects directly: only the publisher's traffic goes through the proxy.
  const reader = await t.broker(destination);
  const { sub, got } = t.consume(reader, { group: t.group('burst'), concurrency: 16 });
  await sub.ready;
  const publisher = await t.broker(destination, { host: proxy.host, port: proxy.port });
  // Connected first, so that the handshake's round trips are not counted as the burst's.
  await publisher.ready({ timeoutMs: t.timeoutMs });
  const before = proxy.stats.turns;
  const events = makeEvents(t.run, BURST, { senders: 10, start: 1_000, tag: 'burst' });
  const results = await publisher.publishMany(events);
  const turns = proxy.stats.turns - before;
  expect(results.filter((r) => !r.ok).length, 'publishes of the burst that failed').toBe(0);
  expect(
    proxy.stats.upstream,
    'connections the publisher made through the proxy (ctx.proxy)',
  ).toBeGreaterThan(0);
  t.log(`${BURST} publishes in ${turns} round trips through the proxy`);
  expect(
    turns,
    `round trips for a burst of ${BURST} publishes (batchPublish: a batch per round trip, not a message)`,
  ).toBeLessThanOrEqual(MAX_BURST_TURNS);
  await t.waitForAll(got, events.map(keyOf));
}

export const payloadCases = [undecodablePayload, invalidPayload, publishValidation, batchPublish];
