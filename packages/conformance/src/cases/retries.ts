/**
 * Retries seen from the broker's side: the backoff holds between tries (wherever the broker redelivers), a group's
 * membership may change while an event is being retried, and tries made by consumers that died count.
 */
import { decodeEvent } from '@parley/core';
import { expect } from 'vitest';
import type { CaseContext, CaseDefinition } from '../harness.js';
import {
  type Collector,
  type Envelope,
  hex,
  keyOf,
  makeEvents,
  missingFromAll,
  preview,
  seqOf,
  unordered,
  untilAborted,
  withTimeout,
} from '../support.js';

/** Timers may fire a little early relative to `performance.now()`; the jitter is the backoff's own (±20%). */
const TIMER_SLACK_MS = 5;
const JITTER = 0.2;

/**
 * No redelivery sooner than the backoff: each event fails twice, and the tries are at least `backoff.initialMs`
 * apart (less the 20% jitter). Where the broker has competing consumers, a second consumer of the group is there:
 * a broker that redelivers a released event to a peer at once, ignoring the delay, fails too.
 */
const delayedRetry: CaseDefinition = {
  id: 'delayed-retry',
  async run(t) {
    const backoffMs = t.tolerances.retryDelayMs ?? 200;
    const destination = t.destination();
    const group = t.group();
    const count = t.capabilities.competingConsumers ? 2 : 1;
    const brokers = await Promise.all(Array.from({ length: count }, () => t.broker(destination)));
    const tries = new Map<string, { at: number; attempt: number; consumer: number }[]>();
    const collectors = brokers.map((_, consumer) =>
      t.collector({
        before: (envelope, context) => {
          const key = keyOf(envelope);
          const list = tries.get(key) ?? [];
          list.push({ at: performance.now(), attempt: context.attempt, consumer });
          tries.set(key, list);
          if (list.length < 3) throw new Error(`planned failure ${list.length} of ${key}`);
        },
      }),
    );
    const backoff = { initialMs: backoffMs, maxMs: backoffMs, factor: 1 };
    const subs = brokers.map(
      (broker, i) => t.consume(broker, { group, maxAttempts: 5, backoff, concurrency: 2 }, collectors[i]).sub,
    );
    await Promise.all(subs.map((sub) => sub.ready));
    const events = makeEvents(t.run, 3, { senders: 3 });
    const keys = events.map(keyOf);
    await t.publishAll(brokers[0]!, events);
    await t.waitFor(
      () => missingFromAll(collectors, keys).length === 0,
      () => `3 events to succeed on their third try (missing ${preview(missingFromAll(collectors, keys))})`,
      t.timeoutMs + 4 * backoffMs,
    );
    await t.quietPeriod(200);
    const least = backoffMs * (1 - JITTER) - TIMER_SLACK_MS;
    const gaps: string[] = [];
    for (const key of keys) {
      const list = tries.get(key) ?? [];
      expect(
        list.map((entry) => entry.attempt),
        `context.attempt of each try of ${key}`,
      ).toEqual([1, 2, 3]);
      for (let i = 1; i < list.length; i++) {
        const gap = list[i]!.at - list[i - 1]!.at;
        gaps.push(`${Math.round(gap)}`);
        expect(
          gap,
          `ms between try ${i} and try ${i + 1} of ${key} (backoff ${backoffMs} ms, -20% jitter)`,
        ).toBeGreaterThanOrEqual(least);
      }
    }
    t.log(`gaps between tries (ms): ${gaps.join(', ')}; backoff ${backoffMs} ms`);
    for (const got of collectors) expect(got.deadLetters).toEqual([]);
  },
};

/**
 * A consumer joins while another retries an event, then the first leaves while a later event is being retried:
 * nothing is lost, nothing is dead-lettered, and where the order is group-wide (`ordering: 'group'`) no later
 * event of a sender is handled before its retried one succeeded.
 */
const rebalanceWhileRetrying: CaseDefinition = {
  id: 'rebalance-while-retrying',
  skip: ({ capabilities }) =>
    capabilities.competingConsumers ? undefined : 'capabilities.competingConsumers is false',
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const senders = 5;
    // The first event of each sender in each round fails twice, on whichever consumer.
    const failing = (envelope: Envelope) => seqOf(envelope) % 20 < senders;
    const failures = new Map<string, number>();
    /** Planned failures so far, per consumer. */
    const failed: [number, number] = [0, 0];
    /** Successful handlings of both consumers, in the order they happened. */
    const handled: { sender: string; seq: number }[] = [];
    const collector = (consumer: 0 | 1): Collector =>
      t.collector({
        before: (envelope) => {
          const key = keyOf(envelope);
          if (failing(envelope) && (failures.get(key) ?? 0) < 2) {
            failures.set(key, (failures.get(key) ?? 0) + 1);
            failed[consumer]++;
            throw new Error(`planned failure of ${key}`);
          }
          handled.push({ sender: envelope.sender_id, seq: seqOf(envelope) });
        },
      });
    // Attempts may restart on a new consumer where retries are in-process: room for that, so nothing dead-letters.
    const options = { group, concurrency: 4, maxAttempts: 10, backoff: { initialMs: 100, maxMs: 100 } };
    const first = t.consume(await t.broker(destination), options, collector(0));
    await first.sub.ready;
    const publisher = await t.broker(destination);
    const round1 = makeEvents(t.run, 20, { senders });
    await t.publishAll(publisher, round1);
    await t.waitFor(() => failed[0]! >= 1, 'a first failure, to join while it is retried');

    // Joins while round 1's first events are being retried.
    const second = t.consume(await t.broker(destination), options, collector(1));
    await second.sub.ready;
    const round2 = makeEvents(t.run, 20, { senders, start: 20 });
    const before = failed[0]!;
    await t.publishAll(publisher, round2);
    await t.waitFor(
      () => failed[0]! > before,
      'another failure on the first consumer, to leave while it is retried',
    );
    // Leaves while an event is being retried: what it holds goes to the consumer that stays.
    await withTimeout(first.sub.close(), t.timeoutMs, 'close() of the first consumer while it retries');

    const keys = [...round1, ...round2].map(keyOf);
    const collectors = [first.got, second.got];
    await t.waitFor(
      () => missingFromAll(collectors, keys).length === 0,
      () =>
        `${keys.length} events after a join and a leave (missing ${preview(missingFromAll(collectors, keys))})`,
      t.handoverTimeoutMs,
    );
    t.log(
      `planned failures ${failed.join(' / ')}, events handled ${first.got.unique} / ${second.got.unique} ` +
        '(the first consumer / the one that joined)',
    );
    expect([...first.got.deadLetters, ...second.got.deadLetters], 'dead letters').toEqual([]);
    expect(second.got.unique, 'events the consumer that joined handled').toBeGreaterThan(0);
    if (t.capabilities.ordering === 'group') {
      const firsts = new Set<string>();
      const order = handled.filter(
        ({ sender, seq }) => !firsts.has(`${sender}#${seq}`) && firsts.add(`${sender}#${seq}`),
      );
      expect(
        unordered(order),
        'senders with an event handled before an earlier one that was being retried',
      ).toEqual([]);
    }
  },
};

/**
 * `deliveryCount`: the broker counts deliveries, so tries made by consumers that died count. A poison event whose
 * consumer goes away (it closes while the handler still runs, as a crash would leave it) each time it is tried still
 * reaches the dead-letter destination after `maxAttempts` deliveries, without a try beyond them, with `attempts`
 * right and its message id.
 */
const deliveryCountDeadLetter: CaseDefinition = {
  id: 'delivery-count-dead-letter',
  skip: ({ capabilities }) =>
    capabilities.deliveryCount ? undefined : 'capabilities.deliveryCount is false',
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const maxAttempts = 3;
    const publisher = await t.broker(destination);
    const [poison] = makeEvents(t.run, 1);
    const poisonKey = keyOf(poison!);
    const tries: { round: number; attempt: number; id: string; body: Uint8Array }[] = [];
    const deadLetters = t.collector();
    const consumerOf = (round: number) =>
      t.collector({
        before: async (envelope, context) => {
          if (keyOf(envelope) !== poisonKey) return;
          tries.push({ round, attempt: context.attempt, id: context.id, body: context.body });
          // Never finishes on its own: its consumer goes away under it.
          await untilAborted(context.signal);
          throw new Error(`consumer ${round} went away while handling ${poisonKey}`);
        },
      });
    const subscribe = async (round: number) => {
      const got = consumerOf(round);
      const sub = t.subscribe(await t.broker(destination), got.handler, { group, maxAttempts }, deadLetters);
      await sub.ready;
      return sub;
    };
    // The group exists before the poison is published.
    let sub = await subscribe(1);
    await t.publishAll(publisher, [poison!]);
    for (let round = 1; round <= maxAttempts; round++) {
      await t.waitFor(
        () => tries.some((entry) => entry.round === round),
        () => `delivery ${round} of the poison (tries so far: ${tries.length})`,
      );
      expect(
        tries.at(-1)!.attempt,
        `context.attempt of delivery ${round} (the broker counts those of consumers that went away)`,
      ).toBe(round);
      await withTimeout(sub.close(), t.timeoutMs, `close() of consumer ${round} while it handles the poison`);
      sub = await subscribe(round + 1);
    }
    // Delivery maxAttempts + 1: over the limit, dead-lettered without a try.
    await t.waitFor(() => deadLetters.deadLetters.length >= 1, 'the poison to be dead-lettered');
    await t.quietPeriod(200);
    expect(
      tries.map((entry) => entry.attempt),
      'context.attempt of each delivery (the broker counts those of consumers that went away)',
    ).toEqual([1, 2, 3]);
    expect(
      tries.filter((entry) => entry.round > maxAttempts),
      `tries after ${maxAttempts} deliveries`,
    ).toEqual([]);
    expect(deadLetters.deadLetters, 'dead letters').toHaveLength(1);
    const letter = deadLetters.deadLetters[0]!;
    expect(letter).toMatchObject({
      attempts: maxAttempts,
      group,
      reason: 'handler-failed',
      messageId: tries[0]!.id,
    });
    expect(hex(letter.body), 'the dead letter holds the original bytes').toBe(hex(tries[0]!.body));
    expect(decodeEvent(letter.body)).toEqual(poison);
    await expectStoredDeadLetter(t, destination, group, tries[0]!.body);
  },
};

/** Where the broker has a dead-letter destination, the probe finds the dead letter there, once. */
async function expectStoredDeadLetter(
  t: CaseContext,
  destination: string,
  group: string,
  body: Uint8Array,
): Promise<void> {
  const read = t.options.probe.deadLetters;
  if (t.capabilities.deadLetter === 'none' || !read) return;
  const mine = async () =>
    (await read.call(t.options.probe, destination, group)).filter((letter) => hex(letter.body) === hex(body));
  await t.waitFor(async () => (await mine()).length >= 1, 'the dead letter at the dead-letter destination');
  expect((await mine()).length, 'dead letters of the poison at the destination').toBe(1);
}

export const retryCases = [delayedRetry, rebalanceWhileRetrying, deliveryCountDeadLetter];
