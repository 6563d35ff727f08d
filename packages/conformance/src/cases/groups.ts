/** Consumer groups: members share a group's events, groups each get all of them, new groups can replay. */
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { keyOf, makeEvents, missingFromAll, preview } from '../support.js';

const competingConsumers: CaseDefinition = {
  id: 'competing-consumers',
  skip: ({ capabilities }) =>
    capabilities.competingConsumers ? undefined : 'capabilities.competingConsumers is false',
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const [one, two] = [await t.broker(destination), await t.broker(destination)];
    const a = t.consume(one, { group, concurrency: 4 });
    const b = t.consume(two, { group, concurrency: 4 });
    await Promise.all([a.sub.ready, b.sub.ready]);

    const events = makeEvents(t.run, 200, { senders: 20 });
    const keys = events.map(keyOf);
    await t.publishAll(one, events);
    await t.waitFor(
      () => missingFromAll([a.got, b.got], keys).length === 0,
      () => `200 events shared by two consumers (missing: ${preview(missingFromAll([a.got, b.got], keys))})`,
    );
    const handled = a.got.received.length + b.got.received.length;
    const duplicates = handled - new Set([...a.got.counts.keys(), ...b.got.counts.keys()]).size;
    t.log(`split ${a.got.unique} / ${b.got.unique}, ${duplicates} duplicates`);
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
