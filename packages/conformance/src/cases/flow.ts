/** How events reach handlers: typed routing, the async iterator, per-sender order, the in-flight bound. */
import type { AnyEvent, EventEnvelope } from '@parley/core';
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import {
  delay,
  type Envelope,
  keyOf,
  makeEvent,
  makeEvents,
  missingFromAll,
  preview,
  seqOf,
  unordered,
  withTimeout,
} from '../support.js';

const handlersAndIterator: CaseDefinition = {
  id: 'handlers-and-iterator',
  async run(t) {
    // A destination per subscription: brokers without consumer groups would share one destination's events.
    const [broker, filterBroker, iterBroker] = await Promise.all(
      ['typed', 'filter', 'iterator'].map((label) => t.broker(t.destination(label))),
    );
    const routed: [string, string][] = [];
    const mine = (e: Envelope) => e.sender_id.startsWith(t.run);
    // One sender throughout: its events come in publish order only where the broker keeps it.
    const ordered = t.capabilities.ordering !== 'none';
    const record = (route: string) => (e: Envelope) => void (mine(e) && routed.push([route, e.event]));
    const deadLetters = t.collector();
    const byType = t.subscribe(
      broker!,
      { user: record('user'), slot: record('slot'), '*': record('*') },
      { group: t.group('typed') },
      deadLetters,
    );
    // Types without a handler and no '*' are acknowledged and skipped.
    const userOnly: string[] = [];
    const filtered = t.subscribe(
      filterBroker!,
      { user: (e) => void (mine(e) && userOnly.push(e.event)) },
      { group: t.group('filter') },
      deadLetters,
    );
    await Promise.all([byType.ready, filtered.ready]);
    const kinds = ['user', 'slot', 'bot', 'custom'] as const;
    const typed = kinds.map((kind, i) => makeEvent(t.run, i, `${t.run}-s0`, kind));
    await Promise.all([t.publishAll(broker!, typed), t.publishAll(filterBroker!, typed)]);
    await t.waitFor(
      () => routed.length >= 4,
      () => `4 events routed by type (${routed.length})`,
    );
    await t.waitFor(() => filtered.stats.acked >= 4, 'the filtered subscription to acknowledge all 4 events');
    const expected: [string, string][] = [
      ['user', 'user'],
      ['slot', 'slot'],
      ['*', 'bot'],
      ['*', 'conformance_custom'],
    ];
    // In publish order where the broker keeps a sender's order; as a multiset where it keeps none.
    const asMultiset = (pairs: readonly [string, string][]) => pairs.map((pair) => pair.join(' ← ')).sort();
    if (ordered) expect(routed, 'routes, in publish order').toEqual(expected);
    else expect(asMultiset(routed), 'routes (any order)').toEqual(asMultiset(expected));
    expect(userOnly).toEqual(['user']);

    // The iterator: events (in order where the broker keeps it); `break` closes the subscription and leaves the
    // rest to the group.
    const group = t.group('iterator');
    const stream = t.track(iterBroker!.subscribe({ group, onDeadLetter: deadLetters.onDeadLetter }));
    await stream.ready;
    const events = makeEvents(t.run, 10, { start: 100 });
    await t.publishAll(iterBroker!, events);
    const seen: EventEnvelope<AnyEvent>[] = [];
    const stop = setTimeout(() => void stream.close(), t.timeoutMs);
    try {
      for await (const event of stream) {
        if (!mine(event)) continue;
        seen.push(event);
        if (seen.length === 4) break;
      }
    } finally {
      clearTimeout(stop);
    }
    const keys = events.map(keyOf);
    const taken = seen.map(keyOf);
    if (ordered) expect(taken, 'the loop got the first 4 events, in order').toEqual(keys.slice(0, 4));
    else {
      expect(
        taken.filter((key) => !keys.includes(key)),
        'the loop got events that were not published',
      ).toEqual([]);
      expect(new Set(taken).size, `the loop got 4 distinct events (any order): ${taken.join(', ')}`).toBe(4);
    }
    await withTimeout(stream.closed, t.timeoutMs, '`closed` after break');
    const next = t.consume(iterBroker!, { group });
    await next.sub.ready;
    await t.waitForAll(
      next.got,
      keys.filter((key) => !taken.includes(key)),
    );
    await t.quietPeriod(300);
    // The loop asked for the next event after each of the first 3 it took: those were acknowledged. The one it
    // broke on may come again (at-least-once), but need not.
    const [brokeOn] = taken.slice(3);
    const again = taken.slice(0, 3).filter((key) => next.got.has(key));
    expect(again, 'events the loop moved past came again').toEqual([]);
    if (brokeOn !== undefined && next.got.has(brokeOn))
      t.log('the event the loop broke on was delivered again');
    expect(deadLetters.deadLetters).toEqual([]);
  },
};

/** Consumers the `ordering` case runs where the broker has competing consumers: order must hold across them. */
const ORDERING_CONSUMERS = 3;

/**
 * Per-sender order, checked where it could break. Where the broker has competing consumers, three consumers of one
 * group (8 handlers each) share 16 senders' events:
 * - `ordering: 'group'`: one sender's events are handled one at a time across ALL consumers, in publish order;
 * - `ordering: 'consumer'`: each consumer handles a sender's events one at a time, in publish order; two consumers
 *   may handle one sender at once (that is allowed, not required).
 * A broker that declares `group` but locks senders per consumer only fails here; with one consumer it would not.
 */
const ordering: CaseDefinition = {
  id: 'ordering',
  title: ({ capabilities }) =>
    capabilities.ordering === 'none'
      ? 'ordering'
      : capabilities.competingConsumers
        ? `ordering (${capabilities.ordering}, ${ORDERING_CONSUMERS} consumers)`
        : `ordering (${capabilities.ordering}, 1 consumer)`,
  skip: ({ capabilities }) =>
    capabilities.ordering !== 'none' ? undefined : `capabilities.ordering is '${capabilities.ordering}'`,
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const scope = t.capabilities.ordering;
    const count = t.capabilities.competingConsumers ? ORDERING_CONSUMERS : 1;
    const brokers = await Promise.all(Array.from({ length: count }, () => t.broker(destination)));
    const senders = 16;
    const perSender = 50;
    /** Per sender, the consumers handling one of its events right now (one entry per handler). */
    const busy = new Map<string, number[]>();
    const within: string[] = [];
    const across: string[] = [];
    /** Every handler start, in time order. */
    const starts: { consumer: number; sender: string; seq: number; first: boolean }[] = [];
    let running = 0;
    let peak = 0;
    const collectors = brokers.map((_, consumer) =>
      t.collector({
        before: async (envelope, context) => {
          const sender = envelope.sender_id;
          const now = busy.get(sender) ?? [];
          if (now.includes(consumer)) within.push(`${keyOf(envelope)} on consumer ${consumer}`);
          else if (now.length > 0)
            across.push(`${keyOf(envelope)} on consumer ${consumer}, with ${now.join(', ')}`);
          now.push(consumer);
          busy.set(sender, now);
          starts.push({
            consumer,
            sender,
            seq: seqOf(envelope),
            first: !context.redelivered && context.attempt === 1,
          });
          peak = Math.max(peak, ++running);
          try {
            // Handlers of varying length, so that a broker that does not keep order shows it.
            await (seqOf(envelope) % 7 === 0 ? delay(2) : new Promise((resolve) => setImmediate(resolve)));
          } finally {
            running--;
            now.splice(now.indexOf(consumer), 1);
          }
        },
      }),
    );
    const subs = brokers.map(
      (broker, i) => t.consume(broker, { group, concurrency: 8, ordering: 'per-sender' }, collectors[i]).sub,
    );
    await Promise.all(subs.map((sub) => sub.ready));
    // Interleaved: 0..15 are the first event of each sender, 16..31 the second, …
    const events = makeEvents(t.run, senders * perSender, { senders });
    const keys = events.map(keyOf);
    await t.publishAll(brokers[0]!, events);
    await t.waitFor(
      () => missingFromAll(collectors, keys).length === 0,
      () =>
        `${keys.length} events across ${count} consumer(s) (missing: ${preview(missingFromAll(collectors, keys))})`,
    );
    const shares = collectors.map((c) => c.unique);
    t.log(
      `${events.length} events, shares ${shares.join(' / ')}, up to ${peak} handlers at once, ` +
        `${across.length} overlaps across consumers`,
    );
    if (count > 1 && shares.filter((n) => n > 0).length < 2) {
      t.log('only one consumer got events: order across consumers was not put to the test');
    }
    expect(within, 'two events of one sender handled at once by one consumer').toEqual([]);
    const outOfOrder = (consumer?: number) =>
      unordered(starts.filter((s) => s.first && (consumer === undefined || s.consumer === consumer)));
    if (scope === 'group') {
      expect(across, "two events of one sender handled at once by two consumers (ordering: 'group')").toEqual(
        [],
      );
      expect(
        outOfOrder(),
        "senders whose events started out of publish order across the group (ordering: 'group')",
      ).toEqual([]);
    } else {
      for (let consumer = 0; consumer < count; consumer++) {
        expect(outOfOrder(consumer), `senders out of publish order on consumer ${consumer}`).toEqual([]);
      }
    }
  },
};

const maxInFlight: CaseDefinition = {
  id: 'max-in-flight',
  async run(t) {
    const [wideBroker, narrowBroker] = await Promise.all([
      t.broker(t.destination('four')),
      t.broker(t.destination('one')),
    ]);
    // concurrency 4: never more than 4 handlers at once.
    let running = 0;
    let peak = 0;
    const wide = t.collector({
      before: async () => {
        peak = Math.max(peak, ++running);
        await delay(20);
        running--;
      },
    });
    const four = t.consume(wideBroker!, { group: t.group('four'), concurrency: 4, ordering: 'none' }, wide);
    // concurrency 1: event n+1 starts only after event n finished.
    const timeline: string[] = [];
    const narrow = t.collector({
      before: async (envelope) => {
        timeline.push(`start ${keyOf(envelope)}`);
        await delay(5);
        timeline.push(`end ${keyOf(envelope)}`);
      },
    });
    const one = t.consume(narrowBroker!, { group: t.group('one'), concurrency: 1, ordering: 'none' }, narrow);
    await Promise.all([four.sub.ready, one.sub.ready]);
    const events = makeEvents(t.run, 40, { senders: 40 });
    await Promise.all([t.publishAll(wideBroker!, events), t.publishAll(narrowBroker!, events)]);
    await t.waitForAll(wide, events.map(keyOf));
    await t.waitForAll(narrow, events.map(keyOf));
    t.log(`concurrency 4: up to ${peak} handlers at once`);
    expect(peak, 'handlers at once with concurrency 4').toBeLessThanOrEqual(4);
    timeline.forEach((entry, i) => {
      const expected = i % 2 === 0 ? 'start' : `end ${timeline[i - 1]!.slice('start '.length)}`;
      expect(entry.startsWith(expected), `concurrency 1: ${entry} after ${timeline[i - 1]}`).toBe(true);
    });
  },
};

export const flowCases = [handlersAndIterator, ordering, maxInFlight];
