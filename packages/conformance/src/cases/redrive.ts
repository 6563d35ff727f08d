/** Dead letters read and sent back through the contract: `broker.deadLetters(group)` and `broker.redrive()`. */
import { decodeEvent, type StoredDeadLetter } from '@parley/core';
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { hex, keyOf, makeEvents } from '../support.js';

/**
 * `redrive`: three events are dead-lettered; `deadLetters(group)` lists them with their original bytes, reason,
 * error, attempts, ids and message ids; `redrive({ group, ids: [one] })` sends back that one only (a handler that
 * now succeeds gets it) and removes it; `redrive({ group })` sends back the rest; then the group has none. Another
 * group of the destination, which handled the events the first time, gets nothing again: a redrive goes to its
 * group only.
 */
const deadLetterRedrive: CaseDefinition = {
  id: 'dead-letter-redrive',
  skip: ({ capabilities }) => (capabilities.redrive ? undefined : 'capabilities.redrive is false'),
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const broker = await t.broker(destination);
    let healed = false;
    const events = makeEvents(t.run, 5, { senders: 5 });
    const poison = events.slice(0, 3);
    const poisonKeys = new Set(poison.map(keyOf));
    const delivered = new Map<string, { id: string; body: Uint8Array }>();
    const got = t.collector({
      before: (envelope, context) => {
        const key = keyOf(envelope);
        if (!delivered.has(key)) delivered.set(key, { id: context.id, body: context.body });
        if (poisonKeys.has(key) && !healed) throw new Error(`poison ${key} of ${t.run}`);
      },
    });
    const maxAttempts = 2;
    const { sub } = t.consume(broker, { group, maxAttempts, backoff: { initialMs: 20, maxMs: 20 } }, got);
    const other = t.capabilities.consumerGroups ? t.consume(broker, { group: t.group('other') }) : undefined;
    await Promise.all([sub.ready, other?.sub.ready]);
    await t.publishAll(broker, events);
    await t.waitFor(
      () => got.deadLetters.length >= 3,
      () => `3 events to be dead-lettered (${got.deadLetters.length})`,
    );
    await t.waitForAll(got, events.slice(3).map(keyOf));

    const mine = async () =>
      (await broker.deadLetters(group)).filter((letter) => Buffer.from(letter.body).includes(t.run));
    // Listed in the order they were dead-lettered, which need not be publish order: sorted here by the event.
    const bySeq = (letters: readonly StoredDeadLetter[]) =>
      [...letters].sort((a, b) => keyOf(decodeEvent(a.body)).localeCompare(keyOf(decodeEvent(b.body))));
    await t.waitFor(async () => (await mine()).length >= 3, 'deadLetters(group) to list 3 dead letters');
    const listed = bySeq(await mine());
    expect(
      listed.map((letter) => keyOf(decodeEvent(letter.body))),
      'the events deadLetters(group) lists',
    ).toEqual([...poisonKeys].sort());
    expect(new Set(listed.map((letter) => letter.id)).size, 'distinct dead-letter ids').toBe(3);
    for (const letter of listed) {
      const key = keyOf(decodeEvent(letter.body));
      const original = delivered.get(key)!;
      expect(letter, `dead letter of ${key}`).toMatchObject({
        reason: 'handler-failed',
        attempts: maxAttempts,
        group,
        messageId: original.id,
      });
      expect(typeof letter.id === 'string' && letter.id.length > 0, `${key}: a dead-letter id`).toBe(true);
      expect(letter.error.message, `${key}: the error`).toContain(`poison ${key}`);
      expect(hex(letter.body), `${key}: the original bytes`).toBe(hex(original.body));
    }

    healed = true;
    const [one, ...rest] = listed as [StoredDeadLetter, ...StoredDeadLetter[]];
    const oneKey = keyOf(decodeEvent(one.body));
    expect(await broker.redrive({ group, ids: [one.id] }), 'redrive({ group, ids: [one] })').toEqual({
      redriven: 1,
    });
    await t.waitForAll(got, [oneKey]);
    await t.quietPeriod(200);
    expect(
      rest.map((letter) => keyOf(decodeEvent(letter.body))).filter((key) => got.has(key)),
      'dead letters not named in ids that came back',
    ).toEqual([]);
    expect(
      (await mine()).map((letter) => letter.id).sort(),
      'deadLetters(group) after redriving one: the others',
    ).toEqual(rest.map((letter) => letter.id).sort());

    await expect(
      broker.redrive({ group, ids: ['no-such-dead-letter'] }),
      'redrive of an id that is not there',
    ).rejects.toThrow();
    expect(await broker.redrive({ group }), 'redrive({ group }): the rest').toEqual({
      redriven: rest.length,
    });
    await t.waitForAll(got, [...poisonKeys]);
    expect(await mine(), 'deadLetters(group) after redriving all').toEqual([]);
    await t.quietPeriod(200);
    expect(got.deadLetters, 'dead letters (the 3 of the first round only)').toHaveLength(3);
    if (other) {
      expect(other.got.missing(events.map(keyOf)), 'events the other group never got').toEqual([]);
      expect(other.got.duplicates, 'events a redrive sent to another group').toBe(0);
    }
  },
};

export const redriveCases = [deadLetterRedrive];
