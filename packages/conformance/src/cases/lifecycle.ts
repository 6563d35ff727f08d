/** Opening and closing: concurrent and repeated closes, AbortSignal, close semantics, health. */
import { getEventListeners } from 'node:events';
import type { Subscription } from '@parley/core';
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { keyOf, makeEvents, untilAborted, withTimeout } from '../support.js';

const concurrentClose: CaseDefinition = {
  id: 'concurrent-close',
  async run(t) {
    const broker = await t.broker(t.destination());
    // Distinct groups where the broker has them, else members of one group.
    const shared = !t.capabilities.consumerGroups;
    const count = t.capabilities.consumerGroups || t.capabilities.competingConsumers ? 20 : 1;
    const subs: Subscription[] = [];
    for (let i = 0; i < count; i++) {
      subs.push(t.consume(broker, { group: t.group(shared ? 'shared' : `g${i}`), concurrency: 2 }).sub);
    }
    // Half are closed while still starting, half once consuming.
    await Promise.all(subs.slice(0, count / 2).map((s) => s.ready));
    const closes = subs.flatMap((s) => [s.close(), s.close()]);
    await withTimeout(
      Promise.all(closes),
      t.timeoutMs,
      `${count} subscriptions closing concurrently (twice each)`,
    );
    await withTimeout(Promise.all(subs.map((s) => s.closed)), t.timeoutMs, 'every `closed` promise');

    // Everything still works afterwards.
    const after = t.consume(broker, { group: t.group('after') });
    await after.sub.ready;
    const events = makeEvents(t.run, 10, { senders: 2 });
    await t.publishAll(broker, events);
    await t.waitForAll(after.got, events.map(keyOf));
    expect((await broker.health()).subscriptions, 'closed subscriptions are forgotten').toBe(1);
  },
};

const abort: CaseDefinition = {
  id: 'abort',
  async run(t) {
    const destination = t.destination();
    const broker = await t.broker(destination);
    // The other subscription: another group where there are groups, else another destination.
    const otherBroker = t.capabilities.consumerGroups ? broker : await t.broker(t.destination('other'));
    const group = t.group('aborted');
    const controller = new AbortController();
    const held: string[] = [];
    // A long handler that stops early when its subscription closes, as the contract asks of long handlers.
    const aborted = t.collector({
      before: async (envelope, context) => {
        held.push(keyOf(envelope));
        await untilAborted(context.signal);
        throw new Error('stopped: the subscription closed');
      },
    });
    const first = t.consume(broker, { group, concurrency: 2, signal: controller.signal }, aborted);
    const other = t.consume(otherBroker, { group: t.group('other') });
    await Promise.all([first.sub.ready, other.sub.ready]);

    const events = makeEvents(t.run, 10, { senders: 5 });
    await t.publishAll(broker, events);
    if (otherBroker !== broker) await t.publishAll(otherBroker, events);
    await t.waitFor(
      () => held.length >= 2,
      () => `the aborted subscription to hold 2 events (${held.length})`,
    );
    // With competing consumers, a peer in the group takes over; otherwise a later member does.
    const peerFirst = t.capabilities.competingConsumers;
    const peer = peerFirst ? t.consume(broker, { group }) : undefined;
    await peer?.sub.ready;

    const heldBefore = held.length;
    controller.abort();
    await withTimeout(first.sub.closed, t.timeoutMs, '`closed` of the aborted subscription');
    const successor = peer ?? t.consume(broker, { group });
    await successor.sub.ready;
    await t.waitForAll(successor.got, events.map(keyOf), t.handoverTimeoutMs);

    const later = makeEvents(t.run, 5, { senders: 5, start: 10 });
    await t.publishAll(otherBroker, later);
    await t.waitForAll(other.got, [...events, ...later].map(keyOf));
    await t.quietPeriod(200);
    expect(held.length, 'no delivery started after the abort').toBe(heldBefore);
    expect(aborted.received, 'the aborted handler acknowledged nothing').toEqual([]);

    // A long-lived signal (an application's shutdown signal) outlives the subscriptions given it: once they
    // closed, none of them may still listen to it.
    const shutdown = new AbortController();
    for (let i = 0; i < 3; i++) {
      const { sub } = t.consume(broker, { group: t.group('shutdown'), signal: shutdown.signal });
      await sub.ready;
      await sub.close();
    }
    expect(
      getEventListeners(shutdown.signal, 'abort').length,
      'abort listeners left by closed subscriptions',
    ).toBe(0);

    // A signal aborted before subscribe: the subscription ends at once.
    const stillborn = t.consume(broker, { group: t.group('stillborn'), signal: AbortSignal.abort() });
    await withTimeout(
      stillborn.sub.closed,
      t.timeoutMs,
      '`closed` of a subscription given an aborted signal',
    );
  },
};

const idempotentClose: CaseDefinition = {
  id: 'idempotent-close',
  async run(t) {
    const broker = await t.broker(t.destination());
    const { sub, got } = t.consume(broker, { group: t.group() });
    await sub.ready;
    await withTimeout(Promise.all([sub.close(), sub.close()]), t.timeoutMs, 'subscription.close() twice');
    await withTimeout(sub.closed, t.timeoutMs, 'subscription.closed');

    const first = broker.close();
    const second = broker.close();
    expect(second, 'broker.close() returns the same promise every time').toBe(first);
    await withTimeout(Promise.all([first, second]), t.timeoutMs, 'broker.close() twice');

    const [event] = makeEvents(t.run, 1);
    const error = await broker.publish(event!).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error, 'publish after close must reject').toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'BrokerClosedError', code: 'BROKER_CLOSED' });
    const results = await broker.publishMany([event!]);
    expect(results[0]?.ok, 'publishMany after close reports the failure').toBe(false);
    expect(() =>
      broker.subscribe(got.handler, { group: t.group(), onDeadLetter: got.onDeadLetter }),
    ).toThrow();
    expect(broker.isReady()).toBe(false);
  },
};

const health: CaseDefinition = {
  id: 'health',
  async run(t) {
    const broker = await t.broker(t.destination());
    await broker.ready({ timeoutMs: t.timeoutMs });
    expect(broker.isReady()).toBe(true);
    const { sub } = t.consume(broker, { group: t.group() });
    await sub.ready;
    const report = await broker.health();
    expect(report).toMatchObject({ ready: true, broker: broker.name, buffered: 0, subscriptions: 1 });
    await broker.close();
    expect(broker.isReady(), 'isReady() after close').toBe(false);
    expect((await broker.health()).ready, 'health().ready after close').toBe(false);
  },
};

export const lifecycleCases = [concurrentClose, abort, idempotentClose, health];
