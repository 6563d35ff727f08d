/** Consumer groups: members share a group's events, groups each get all of them, new groups can replay. */
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { delay, keyOf, makeEvents, missingFromAll, preview } from '../support.js';

/**
 * Two consumers of one group share its events: together they get every one, each event is handled by one of them
 * (a second handling only where the broker redelivered it), and both get a share. A broker that hands every event
 * to every consumer of a group, or all of them to one, fails here.
 */
const competingConsumers: CaseDefinition = {
  id: 'competing-consumers',
  skip: ({ capabilities }) =>
    capabilities.competingConsumers ? undefined : 'capabilities.competingConsumers is false',
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const [one, two] = [await t.broker(destination), await t.broker(destination)];
    // Handlers that take a moment, so that both consumers have work in flight at once.
    const slow = () => delay(1);
    const a = t.consume(one, { group, concurrency: 4 }, t.collector({ before: slow }));
    const b = t.consume(two, { group, concurrency: 4 }, t.collector({ before: slow }));
    await Promise.all([a.sub.ready, b.sub.ready]);

    const events = makeEvents(t.run, 200, { senders: 20 });
    const keys = events.map(keyOf);
    await t.publishAll(one, events);
    await t.waitFor(
      () => missingFromAll([a.got, b.got], keys).length === 0,
      () => `200 events shared by two consumers (missing: ${preview(missingFromAll([a.got, b.got], keys))})`,
    );
    // Late duplicates would come now.
    await t.quietPeriod(200);
    const handlings = [...a.got.received, ...b.got.received];
    const redelivered = (key: string) =>
      handlings.some((r) => r.key === key && (r.context.redelivered || r.context.attempt > 1));
    const twice = keys.filter((key) => (a.got.counts.get(key) ?? 0) + (b.got.counts.get(key) ?? 0) > 1);
    t.log(`split ${a.got.unique} / ${b.got.unique}, ${twice.length} handled more than once`);
    const unchecked = t.disabledCheck('redelivered');
    if (unchecked === undefined) {
      expect(
        twice.filter((key) => !redelivered(key)),
        'events handled more than once without being redelivered (each event goes to one consumer of a group)',
      ).toEqual([]);
    } else {
      // The broker cannot mark redeliveries: a few duplicates are allowed (at-least-once), not a copy per consumer.
      expect(
        twice.length,
        `events handled more than once (redelivered not checked: ${unchecked})`,
      ).toBeLessThanOrEqual(Math.ceil(keys.length * 0.05));
    }
    expect(a.got.unique, 'events the first consumer handled (each consumer gets a share)').toBeGreaterThan(0);
    expect(b.got.unique, 'events the second consumer handled (each consumer gets a share)').toBeGreaterThan(
      0,
    );
    expect(a.got.deadLetters.length + b.got.deadLetters.length).toBe(0);
  },
};

const fanOut: CaseDefinition = {
  id: 'fan-out',
  skip: ({ capabilities }) =>
    capabilities.consumerGroups ? undefined : 'capabilities.consumerGroups is false',
  async run(t) {
    const destination = t.destination();
    const [one, two] = [await t.broker(destination), await t.broker(destination)];
    const a = t.consume(one, { group: t.group('a'), concurrency: 4 });
    const b = t.consume(two, { group: t.group('b'), concurrency: 4 });
    await Promise.all([a.sub.ready, b.sub.ready]);
    const events = makeEvents(t.run, 100, { senders: 10 });
    await t.publishAll(one, events);
    await t.waitForAll(a.got, events.map(keyOf));
    await t.waitForAll(b.got, events.map(keyOf));
  },
};

const replay: CaseDefinition = {
  id: 'replay',
  skip: ({ capabilities }) => (capabilities.replay ? undefined : 'capabilities.replay is false'),
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    // One sender: a group that did read the history would get it before the marker published after it.
    const history = makeEvents(t.run, 10);
    await t.publishAll(broker, history);

    const fromStart = t.consume(broker, { group: t.group('beginning'), from: 'beginning' });
    await fromStart.sub.ready;
    await t.waitForAll(fromStart.got, history.map(keyOf));
    await fromStart.sub.close();

    const latest = t.consume(broker, { group: t.group('latest') });
    await latest.sub.ready;
    const [marker] = makeEvents(t.run, 1, { start: 10 });
    await t.publishAll(broker, [marker!]);
    await t.waitForAll(latest.got, [keyOf(marker!)]);
    await t.quietPeriod(200);
    const old = history.map(keyOf).filter((key) => latest.got.has(key));
    expect(old, "a new group with from: 'latest' (the default) read the history").toEqual([]);
  },
};

export const groupCases = [competingConsumers, fanOut, replay];
