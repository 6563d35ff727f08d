/** Nothing is lost when things stop: subscribers come and go, publishers close mid-flight, handlers drain. */
import type { Subscription } from '@parley/core';
import { expect } from 'vitest';
import type { CaseContext, CaseDefinition } from '../harness.js';
import { delay, keyOf, makeEvents, untilAborted } from '../support.js';

const subscriberChurn: CaseDefinition = {
  id: 'subscriber-churn',
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    const group = t.group();
    const total = 300;
    const take = 30;
    const events = makeEvents(t.run, total, { senders: 10 });
    const keys = events.map(keyOf);
    // Each subscriber closes itself once it took `take` events, however fast they come; one collector for every
    // subscriber, since the union is what counts.
    let current: { sub: Subscription; taken: number; closed: boolean } | undefined;
    const got = t.collector({
      before: () => {
        if (current && ++current.taken === take) void current.sub.close();
      },
    });
    const open = async () => {
      const { sub } = t.consume(broker, { group, concurrency: 2 }, got);
      const state = { sub, taken: 0, closed: false };
      void sub.closed.then(() => (state.closed = true));
      current = state;
      await sub.ready;
      return state;
    };
    let subscriber = await open();
    let published = false;
    const publishing = (async () => {
      for (let i = 0; i < total; i += 10) await t.publishAll(broker, events.slice(i, i + 10));
      published = true;
    })();
    const complete = () => published && got.missing(keys).length === 0;
    let rounds = 1;
    try {
      for (;;) {
        const state = subscriber;
        await t.waitFor(
          () => state.closed || complete(),
          () => `subscriber ${rounds} to take ${take} events (${got.unique}/${total} in all)`,
        );
        await state.sub.close();
        if (complete()) break;
        subscriber = await open();
        rounds++;
      }
    } finally {
      await publishing;
    }
    t.log(`${rounds} subscribers, ${got.unique}/${total} events, ${got.duplicates} duplicates`);
    expect(rounds, 'subscribers that took part').toBeGreaterThanOrEqual(3);
    expect(got.missing(keys)).toEqual([]);
    expect(got.deadLetters).toEqual([]);
  },
};

const flushOnClose: CaseDefinition = {
  id: 'flush-on-close',
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    // The group exists before publishing: a broker subscribes once, then goes away.
    const creator = await t.broker(destination);
    const first = t.consume(creator, { group });
    await first.sub.ready;
    await creator.close();

    const publisher = await t.broker(destination);
    const events = makeEvents(t.run, 2_000, { senders: 20 });
    // Not awaited one by one: close() must flush what is still in flight.
    const outcomes = events.map((event) =>
      publisher.publish(event).then(
        () => undefined,
        (error: unknown) => error,
      ),
    );
    await publisher.close();
    const failed = (await Promise.all(outcomes)).filter((outcome) => outcome !== undefined);
    expect(failed.length, `publishes that failed: ${String(failed[0])}`).toBe(0);

    const reader = await t.broker(destination);
    const { sub, got } = t.consume(reader, { group, concurrency: 8 });
    await sub.ready;
    await t.waitForAll(got, events.map(keyOf));
  },
};

const drain: CaseDefinition = {
  id: 'drain',
  async run(t) {
    await drainSlowHandler(t);
    await drainCooperativeHandler(t);
  },
};

/** A handler that ignores the signal: close() waits for it, it is acknowledged, nothing starts after close(). */
async function drainSlowHandler(t: CaseContext): Promise<void> {
  const destination = t.destination('slow');
  const broker = await t.broker(destination);
  const group = t.group('slow');
  const [slow, next] = makeEvents(t.run, 2, { senders: 2 });
  const starts: { key: string; at: number }[] = [];
  let slowEnded = 0;
  let abortedAtEnd: boolean | undefined;
  const got = t.collector({
    before: async (envelope, context) => {
      starts.push({ key: keyOf(envelope), at: performance.now() });
      if (keyOf(envelope) !== keyOf(slow!)) return;
      await delay(300); // the slow handler under test; it ignores the signal on purpose
      abortedAtEnd = context.signal.aborted;
      slowEnded = performance.now();
    },
  });
  const { sub } = t.consume(broker, { group, concurrency: 1 }, got);
  await sub.ready;
  await t.publishAll(broker, [slow!]);
  await t.waitFor(() => starts.length >= 1, 'the slow handler to start');
  await t.publishAll(broker, [next!]);

  const closeCalled = performance.now();
  await sub.close();
  const closeResolved = performance.now();
  expect(slowEnded, 'the handler finished before close() resolved').toBeGreaterThan(0);
  expect(slowEnded).toBeLessThanOrEqual(closeResolved);
  expect(abortedAtEnd, 'context.signal is aborted once close() was called').toBe(true);
  expect(
    starts.filter((s) => s.at >= closeCalled).map((s) => s.key),
    'deliveries started after close()',
  ).toEqual([]);

  // The slow event was acknowledged; the one not started went back to the group.
  const successor = t.consume(broker, { group });
  await successor.sub.ready;
  await t.waitForAll(successor.got, [keyOf(next!)]);
  await t.quietPeriod(300);
  expect(successor.got.has(keyOf(slow!)), 'the drained event was delivered again').toBe(false);
}

/**
 * A handler that stops as soon as its signal aborts (what the contract asks of long handlers), with later events
 * of the same sender waiting behind it: when it finishes during close(), none of them may start.
 */
async function drainCooperativeHandler(t: CaseContext): Promise<void> {
  const destination = t.destination('cooperative');
  const broker = await t.broker(destination);
  const group = t.group('cooperative');
  const events = makeEvents(t.run, 4, { tag: 'c', start: 10 });
  const first = keyOf(events[0]!);
  const starts: { key: string; afterClose: boolean }[] = [];
  let closeCalled = false;
  const got = t.collector({
    before: async (envelope, context) => {
      starts.push({ key: keyOf(envelope), afterClose: closeCalled });
      if (keyOf(envelope) === first) await untilAborted(context.signal);
    },
  });
  const { sub } = t.consume(broker, { group, concurrency: 4 }, got);
  await sub.ready;
  await t.publishAll(broker, events);
  await t.waitFor(() => starts.length >= 1, 'the first handler to start');
  // Let the broker hand over what it will (brokers without a per-sender lock deliver the rest now).
  await t.quietPeriod(100);
  closeCalled = true;
  await sub.close();
  expect(
    starts.filter((s) => s.afterClose).map((s) => s.key),
    'handlers started after close() (events of the same sender waiting behind the one in flight)',
  ).toEqual([]);
  const successor = t.consume(broker, { group });
  await successor.sub.ready;
  await t.waitForAll(successor.got, events.slice(1).map(keyOf));
  await t.quietPeriod(200);
  expect(successor.got.has(first), 'the event acknowledged during close() was delivered again').toBe(false);
  expect(successor.got.duplicates, 'events delivered twice to the successor').toBe(0);
}

export const shutdownCases = [subscriberChurn, flushOnClose, drain];
