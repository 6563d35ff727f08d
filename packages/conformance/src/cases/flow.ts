/** How events reach handlers: typed routing, the async iterator, per-sender order, the in-flight bound. */
import type { AnyEvent, EventEnvelope } from '@parley/core';
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { delay, type Envelope, keyOf, makeEvent, makeEvents, seqOf, withTimeout } from '../support.js';

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

const ordering: CaseDefinition = {
  id: 'ordering',
  skip: ({ capabilities }) =>
    capabilities.ordering !== 'none' ? undefined : `capabilities.ordering is '${capabilities.ordering}'`,
  async run(t) {
    const broker = await t.broker(t.destination());
    const senders = 16;
    const perSender = 50;
    const inFlight = new Map<string, number>();
    const overlaps: string[] = [];
    let running = 0;
    let peak = 0;
    const got = t.collector({
      before: async (envelope) => {
        const sender = envelope.sender_id;
        const busy = (inFlight.get(sender) ?? 0) + 1;
        inFlight.set(sender, busy);
        if (busy > 1) overlaps.push(keyOf(envelope));
        peak = Math.max(peak, ++running);
        try {
          // Handlers of varying length, so that a broker that does not keep order shows it.
          await (seqOf(envelope) % 7 === 0 ? delay(2) : new Promise((resolve) => setImmediate(resolve)));
        } finally {
          running--;
          inFlight.set(sender, (inFlight.get(sender) ?? 1) - 1);
        }
      },
    });
    const { sub } = t.consume(broker, { group: t.group(), concurrency: 8, ordering: 'per-sender' }, got);
    await sub.ready;
    // Interleaved: 0..15 are the first event of each sender, 16..31 the second, …
    const events = makeEvents(t.run, senders * perSender, { senders });
    await t.publishAll(broker, events);
    await t.waitForAll(got, events.map(keyOf));
    t.log(`${events.length} events, up to ${peak} handlers at once, ${got.duplicates} duplicates`);
    expect(overlaps, 'two events of one sender handled at once').toEqual([]);
    for (let s = 0; s < senders; s++) {
      const sender = `${t.run}-s${s}`;
      const order = got.received
        .filter((r) => r.envelope.sender_id === sender && !r.context.redelivered && r.context.attempt === 1)
        .map((r) => seqOf(r.envelope));
      expect(order, `order of ${sender}`).toEqual([...order].sort((a, b) => a - b));
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
