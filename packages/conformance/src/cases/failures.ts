/** Handlers that fail: retried with backoff, handed back on close, dead-lettered once after maxAttempts. */
import { decodeEvent } from '@parley/core';
import { expect } from 'vitest';
import type { CaseContext, CaseDefinition } from '../harness.js';
import { type Envelope, hex, keyOf, makeEvents, sameBytes, untilAborted, withTimeout } from '../support.js';

const fastBackoff = { initialMs: 20, maxMs: 50 };

/** Dead letters of `group` holding `body`, read with the native client (empty when the probe has none). */
async function probeDeadLetters(t: CaseContext, destination: string, group: string, body?: Uint8Array) {
  const read = t.options.probe.deadLetters;
  if (!read || t.capabilities.deadLetter === 'none') return [];
  const letters = await read.call(t.options.probe, destination, group);
  const mine = letters.filter((letter) => Buffer.from(letter.body).includes(t.run));
  return body === undefined ? mine : mine.filter((letter) => sameBytes(letter.body, body));
}

const retryThenSucceed: CaseDefinition = {
  id: 'retry-then-succeed',
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    const group = t.group();
    const attempts: number[] = [];
    const got = t.collector({
      before: (_, context) => {
        attempts.push(context.attempt);
        if (context.attempt < 3) throw new Error(`planned failure ${context.attempt}`);
      },
    });
    const { sub } = t.consume(broker, { group, maxAttempts: 5, backoff: fastBackoff }, got);
    await sub.ready;
    const [event] = makeEvents(t.run, 1);
    await t.publishAll(broker, [event!]);
    await t.waitForAll(got, [keyOf(event!)]);
    await t.waitFor(() => sub.stats.acked >= 1, 'the event to be acknowledged');
    await t.quietPeriod(300);
    expect(attempts, 'context.attempt of each try').toEqual([1, 2, 3]);
    expect(got.received.length, 'successful handlings').toBe(1);
    expect(sub.stats.retried).toBeGreaterThanOrEqual(2);
    expect(got.deadLetters).toEqual([]);
    expect(await probeDeadLetters(t, destination, group)).toEqual([]);
  },
};

/**
 * A subscription closes while its handlers hold unacknowledged events (they stop when their signal aborts, as the
 * contract asks of long handlers): the events go back to the group, and the next subscriber of the group gets them
 * marked `redelivered`, where the first one got them unmarked.
 */
const releaseRedelivers: CaseDefinition = {
  id: 'release-redelivers',
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const [holder, successor] = [await t.broker(destination), await t.broker(destination)];
    const held: { key: string; redelivered: boolean }[] = [];
    const holding = t.collector({
      before: async (envelope, context) => {
        held.push({ key: keyOf(envelope), redelivered: context.redelivered });
        await untilAborted(context.signal);
        throw new Error('stopped: the subscription closed');
      },
    });
    const first = t.consume(holder, { group, concurrency: 4 }, holding);
    await first.sub.ready;
    // Distinct senders: all four are in flight at once, whatever the ordering.
    const events = makeEvents(t.run, 4, { senders: 4 });
    const keys = events.map(keyOf);
    await t.publishAll(holder, events);
    await t.waitFor(
      () => held.length >= 4,
      () => `the first subscriber to hold 4 events (${held.length})`,
    );
    await withTimeout(first.sub.close(), t.timeoutMs, 'close() of the subscription holding 4 events');
    expect(holding.received, 'the holding subscriber acknowledged nothing').toEqual([]);

    const next = t.consume(successor, { group, concurrency: 4 });
    await next.sub.ready;
    // Handed back on close: a broker may take a rebalance to pass them on (tolerances.redeliveryDelayMs).
    await t.waitForAll(next.got, keys, t.handoverTimeoutMs);
    expect(next.got.deadLetters).toEqual([]);
    const disabled = t.disabledCheck('redelivered');
    if (disabled !== undefined) {
      t.log(`context.redelivered not checked (disabled: ${disabled})`);
      return;
    }
    expect(
      held.filter((h) => h.redelivered).map((h) => h.key),
      'first deliveries marked redelivered',
    ).toEqual([]);
    expect(
      keys.filter((key) => next.got.first(key)?.context.redelivered !== true),
      'events handed back on close that came again without context.redelivered',
    ).toEqual([]);
    expect(next.sub.stats.redelivered, 'stats.redelivered of the next subscriber').toBeGreaterThanOrEqual(4);
  },
};

const repeatedFailureRecovery: CaseDefinition = {
  id: 'repeated-failure-recovery',
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    const group = t.group();
    const events = makeEvents(t.run, 20, { senders: 5 });
    let failures = 0;
    const failing = t.collector({
      before: () => {
        failures++;
        throw new Error('this subscriber always fails');
      },
    });
    // Several subscribers in turn fail many times, then close: their messages must go back to the group.
    for (let round = 0; round < 3; round++) {
      const { sub } = t.consume(
        broker,
        { group, concurrency: 4, maxAttempts: 1_000, backoff: { initialMs: 50, maxMs: 50 } },
        failing,
      );
      await sub.ready;
      if (round === 0) await t.publishAll(broker, events);
      const target = failures + 8;
      await t.waitFor(
        () => failures >= target,
        () => `failing subscriber ${round} to fail 8 times (${failures})`,
      );
      await sub.close();
    }
    // Where the broker counts deliveries (capabilities.deliveryCount), the failed tries count as attempts: the
    // clean subscriber allows as many as the failing ones did.
    const clean = t.consume(broker, { group, concurrency: 4, maxAttempts: 1_000 });
    await clean.sub.ready;
    await t.waitForAll(clean.got, events.map(keyOf));
    t.log(`${failures} failures before a clean subscriber got all 20`);
    expect(failing.deadLetters, 'nothing may be dead-lettered').toEqual([]);
    expect(clean.got.deadLetters).toEqual([]);
  },
};

const deadLetter: CaseDefinition = {
  id: 'dead-letter',
  title: ({ capabilities }) =>
    capabilities.deadLetter === 'none'
      ? "dead-letter (deadLetter is 'none': onDeadLetter is required)"
      : 'dead-letter',
  async run(t) {
    if (t.capabilities.deadLetter === 'none') await requiresOnDeadLetter(t);
    const destination = t.destination();
    const broker = await t.broker(destination);
    const group = t.group();
    const headers = t.capabilities.headers ? { 'x-conformance-run': t.run } : undefined;
    // The poison comes first; later events of its sender and of others must still be consumed.
    const [poison, ...rest] = makeEvents(t.run, 8, { senders: 4 }) as [Envelope, ...Envelope[]];
    const attempts: number[] = [];
    const bodies: Uint8Array[] = [];
    const got = t.collector({
      before: (envelope, context) => {
        if (keyOf(envelope) !== keyOf(poison)) return;
        attempts.push(context.attempt);
        bodies.push(context.body);
        throw new Error(`poison ${t.run}`);
      },
    });
    const { sub } = t.consume(broker, { group, maxAttempts: 3, backoff: fastBackoff, concurrency: 2 }, got);
    await sub.ready;
    await t.publishAll(broker, [poison, ...rest], headers && { headers });
    await t.waitForAll(got, rest.map(keyOf));
    await t.waitFor(() => got.deadLetters.length >= 1, 'onDeadLetter to be called');

    const native = t.capabilities.deadLetter !== 'none';
    if (native && !t.options.probe.deadLetters) {
      throw new Error(
        `[conformance] probe.deadLetters is required when capabilities.deadLetter is '${t.capabilities.deadLetter}'`,
      );
    }
    if (native) {
      await t.waitFor(
        async () => (await probeDeadLetters(t, destination, group)).length >= 1,
        'the dead letter at the dead-letter destination (probe.deadLetters)',
      );
    }
    await t.quietPeriod(300);
    expect(attempts, 'tries of the poison').toEqual([1, 2, 3]);
    expect(got.deadLetters, 'onDeadLetter calls').toHaveLength(1);
    const letter = got.deadLetters[0]!;
    expect(letter).toMatchObject({
      reason: 'handler-failed',
      attempts: 3,
      group,
      senderId: poison.sender_id,
    });
    expect(letter.error.message).toContain(`poison ${t.run}`);
    expect(hex(letter.body), 'the dead letter holds the original bytes').toBe(hex(bodies[0]!));
    expect(decodeEvent(letter.body)).toEqual(poison);
    if (headers) expect(letter.headers).toMatchObject(headers);
    expect(sub.stats.deadLettered).toBe(1);
    if (native) {
      const stored = await probeDeadLetters(t, destination, group);
      expect(
        stored.map((s) => hex(s.body)),
        'dead letters at the destination',
      ).toEqual([hex(bodies[0]!)]);
      if (headers) expect(stored[0]!.headers).toMatchObject(headers);
    }
  },
};

/** Brokers without a dead-letter destination refuse a subscription that would drop failing events. */
async function requiresOnDeadLetter(t: CaseContext): Promise<void> {
  const broker = await t.broker(t.destination('config'));
  let error: unknown;
  try {
    t.track(broker.subscribe(() => {}, { group: t.group('config') }));
  } catch (caught) {
    error = caught;
  }
  expect(error, 'subscribe without onDeadLetter must throw').toBeInstanceOf(Error);
  expect((error as { code?: unknown }).code).toBe('BROKER_CONFIG');
}

export const failureCases = [retryThenSucceed, releaseRedelivers, repeatedFailureRecovery, deadLetter];
