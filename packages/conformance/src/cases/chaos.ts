/**
 * The chaos tier: 4 publishers send `chaos.events` events while the connection is cut, stalled, or the broker
 * restarts. Every publish must resolve and every event must arrive; duplicates are allowed, counted and reported.
 */
import type { Broker } from '@parley/core';
import { expect } from 'vitest';
import { type FaultProxy, startFaultProxy } from '../fault-proxy.js';
import type { CaseContext, CaseDefinition, SuiteSetup } from '../harness.js';
import { delay, type Envelope, keyOf, makeEvents, seqOf, unordered, withTimeout } from '../support.js';

const PUBLISHERS = 4;
const WINDOW = 200;
const SENDERS = 40;
const CHAOS_WAIT_MS = 120_000;

/** One disturbance: it begins once `at` (a fraction) of the events were started, and ends `holdMs` later. */
interface Disruption {
  readonly at: number;
  readonly holdMs: number;
  begin(): Promise<void>;
  end(): Promise<void>;
}

interface Link {
  readonly publisher: Broker;
  readonly subscriber: Broker;
  /** Puts everything back to normal, whatever state the case ended in. */
  readonly heal: () => Promise<void>;
  /** Checks that the traffic really went where it was disturbed (through the fault proxy), after the load. */
  readonly verify?: () => void;
  /** Disturbed through a fault proxy (a real connection), rather than through the driver's `faults`. */
  readonly proxied?: boolean;
}

const chaosTimeout = (setup: SuiteSetup) => Math.max(CHAOS_WAIT_MS, setup.timeoutMs) + 60_000;

/**
 * A fault proxy in front of the broker, and a publisher and a subscriber connected through it. A `create()` that
 * ignores `ctx.proxy` would sail through every disruption: `verify` checks that both brokers' traffic went through.
 */
async function throughProxy(t: CaseContext) {
  const proxy = await startFaultProxy({ upstream: t.options.chaos!.upstream! });
  t.defer(() => proxy.close());
  const destination = t.destination();
  const address = { host: proxy.host, port: proxy.port };
  const link: Link = {
    publisher: await t.broker(destination, address),
    subscriber: await t.broker(destination, address),
    heal: () => proxy.restore(),
    verify: () => expectProxied(proxy, 2),
    proxied: true,
  };
  return { proxy, link };
}

/** The proxy carried the traffic of `brokers` brokers: each made a connection through it, and bytes flowed both ways. */
function expectProxied(proxy: FaultProxy, brokers: number): void {
  const { stats } = proxy;
  const seen = `the fault proxy saw ${stats.upstream} connections, ${stats.bytesUp} bytes up, ${stats.bytesDown} down`;
  const hint = 'does create() connect through ctx.proxy?';
  expect(
    stats.upstream,
    `${seen}: each of ${brokers} brokers connects through it (${hint})`,
  ).toBeGreaterThanOrEqual(brokers);
  expect(stats.bytesUp, `${seen} (${hint})`).toBeGreaterThan(0);
  expect(stats.bytesDown, `${seen} (${hint})`).toBeGreaterThan(0);
}

/**
 * Through the fault proxy, each broker noticed the cut and came back through core's one reconnection mechanism:
 * its `health().reconnects` counts at least one reconnect (a driver that reconnects on its own, or never noticed,
 * shows none). With driver `faults`, the contract does not say that a cut reports the connection lost, so the
 * counts are only logged.
 */
async function expectReconnected(
  t: CaseContext,
  link: Link,
  roles: readonly ('publisher' | 'subscriber')[],
): Promise<void> {
  const brokers = roles.map((role) => [role, link[role]] as const);
  if (!link.proxied) {
    const counts = await Promise.all(
      brokers.map(async ([role, b]) => `${role} ${(await b.health()).reconnects}`),
    );
    t.log(`health().reconnects after driver faults: ${counts.join(', ')}`);
    return;
  }
  const disabled = t.disabledCheck('reconnects');
  if (disabled !== undefined) {
    t.log(`health().reconnects not checked (disabled: ${disabled})`);
    return;
  }
  for (const [role, broker] of brokers) {
    const { reconnects } = await broker.health();
    expect(
      reconnects,
      `health().reconnects of the ${role} after its connection was cut (did the cut reach it?)`,
    ).toBeGreaterThanOrEqual(1);
  }
}

/** A publisher and a subscriber whose driver faults stand in for the connection (memory, file). */
async function withDriverFaults(t: CaseContext) {
  const destination = t.destination();
  const publisher = await t.broker(destination);
  const subscriber = await t.broker(destination);
  const faults = [publisher, subscriber].map((broker) => t.options.chaos!.faults!(broker));
  if (faults.some((f) => f === undefined)) {
    throw new Error('[conformance] chaos.faults returned nothing for a broker made by create()');
  }
  const cut = async () => void (await Promise.all(faults.map((f) => f!.cut())));
  const restore = async () => void (await Promise.all(faults.map((f) => f!.restore())));
  return { link: { publisher, subscriber, heal: restore } satisfies Link, cut, restore };
}

/** Publishes every event with 4 publishers (≤ 200 in flight each) while `disruptions` happen, then checks arrival. */
async function underLoad(t: CaseContext, link: Link, disruptions: readonly Disruption[]): Promise<void> {
  const total = t.options.chaos?.events ?? 10_000;
  const events = makeEvents(t.run, total, { senders: SENDERS });
  // Handlers that yield once, so that a disruption finds deliveries in flight (to hand back and redeliver).
  const got = t.collector({ before: () => new Promise((resolve) => setImmediate(resolve)) });
  const { sub } = t.consume(link.subscriber, { group: t.group(), concurrency: 32 }, got);
  await sub.ready;

  const queue = disruptions.map((d) => ({ ...d, after: Math.max(1, Math.floor(d.at * total)) }));
  const ends: Promise<void>[] = [];
  let previous: Promise<void> = Promise.resolve();
  let gate: Promise<void> | undefined;
  let started = 0;
  // Publishers pause while a disruption begins, so it lands where it should, then publish into it.
  const beforePublish = async (): Promise<void> => {
    while (gate) await gate;
    started++;
    const next = queue[0];
    if (next === undefined || started < next.after) return;
    queue.shift();
    const beginning = previous.then(() => next.begin());
    gate = beginning.catch(() => undefined);
    try {
      await beginning;
    } finally {
      gate = undefined;
    }
    previous = delay(next.holdMs).then(() => next.end());
    previous.catch(() => undefined); // awaited below
    ends.push(previous);
  };

  const failures: unknown[] = [];
  const publishLane = async (mine: readonly Envelope[]): Promise<void> => {
    const inFlight = new Set<Promise<void>>();
    for (const [i, event] of mine.entries()) {
      // Yield now and then: with an in-process broker, publishing would otherwise outrun every delivery, and a
      // disruption would find nothing in flight.
      if (i % 25 === 0) await new Promise((resolve) => setImmediate(resolve));
      await beforePublish();
      const publishing: Promise<void> = link.publisher
        .publish(event)
        .catch((error: unknown) => void failures.push(error))
        .finally(() => inFlight.delete(publishing));
      inFlight.add(publishing);
      if (inFlight.size >= WINDOW) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  };
  // Each sender belongs to one publisher, so its events are published in order.
  const lanes = Array.from({ length: PUBLISHERS }, (_, p) =>
    events.filter((_, i) => (i % SENDERS) % PUBLISHERS === p),
  );
  try {
    await Promise.all(lanes.map(publishLane));
    await Promise.all(ends);
  } finally {
    await Promise.allSettled(ends);
    await link.heal();
  }
  expect(failures.length, `publishes that failed, e.g. ${String(failures[0])}`).toBe(0);
  await t.waitFor(
    () => got.unique >= total,
    () => `${total} events to arrive (${got.unique} so far, ${got.duplicates} duplicates)`,
    Math.max(CHAOS_WAIT_MS, t.timeoutMs),
  );
  console.info(`[conformance] ${t.id}: ${total} sent, ${got.unique} received, ${got.duplicates} duplicates`);
  expect(got.missing(events.map(keyOf))).toEqual([]);
  expect(got.deadLetters).toEqual([]);
  link.verify?.();
  if (t.capabilities.ordering !== 'none') {
    // Publishes that failed during the disruption were sent again: never after a later event of their sender. The
    // first handling of each event is in publish order per sender (redeliveries may repeat older ones).
    const firsts = new Set<string>();
    const order: { sender: string; seq: number }[] = [];
    for (const { key, envelope } of got.received) {
      if (firsts.has(key)) continue;
      firsts.add(key);
      order.push({ sender: envelope.sender_id, seq: seqOf(envelope) });
    }
    expect(unordered(order), 'senders whose events were first handled out of publish order').toEqual([]);
  }
}

const chaosCut: CaseDefinition = {
  id: 'chaos-cut',
  skip: ({ options }) =>
    options.chaos?.upstream || options.chaos?.faults
      ? undefined
      : 'needs chaos.upstream (a TCP broker) or chaos.faults (a broker without a connection)',
  testTimeoutMs: chaosTimeout,
  async run(t) {
    const cuts = [0.25, 0.5, 0.75];
    if (t.options.chaos?.upstream) {
      const { proxy, link } = await throughProxy(t);
      const outage = (at: number): Disruption => ({
        at,
        holdMs: 1_000,
        begin: () => proxy.cut(),
        end: () => proxy.restore(),
      });
      await underLoad(t, link, cuts.map(outage));
      return expectReconnected(t, link, ['publisher', 'subscriber']);
    }
    const { link, cut, restore } = await withDriverFaults(t);
    await underLoad(
      t,
      link,
      cuts.map((at) => ({ at, holdMs: 1_000, begin: cut, end: restore })),
    );
    await expectReconnected(t, link, ['publisher', 'subscriber']);
  },
};

/**
 * A cut while deliveries are certainly in flight: 4 handlers are blocked on their first delivery when the
 * connection dies. What they held was never acknowledged, so once the connection is back the broker hands it out
 * again, marked `redelivered`, and every event ends up handled.
 */
const cutRedelivers: CaseDefinition = {
  id: 'cut-redelivers',
  skip: ({ options }) =>
    options.chaos?.upstream || options.chaos?.faults
      ? undefined
      : 'needs chaos.upstream (a TCP broker) or chaos.faults (a broker without a connection)',
  async run(t) {
    let link: Link;
    let cut: () => Promise<void>;
    let restore: () => Promise<void>;
    if (t.options.chaos?.upstream) {
      const made = await throughProxy(t);
      ({ link } = made);
      cut = () => made.proxy.cut();
      restore = () => made.proxy.restore();
    } else {
      ({ link, cut, restore } = await withDriverFaults(t));
    }
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const blocked = new Set<string>();
    let afterCut = false;
    let running = 0;
    const deliveries: { key: string; redelivered: boolean; afterCut: boolean }[] = [];
    const got = t.collector({
      before: async (envelope, context) => {
        const key = keyOf(envelope);
        deliveries.push({ key, redelivered: context.redelivered, afterCut });
        running++;
        try {
          // The first delivery of each event blocks until the gate opens, after the cut and the restore.
          if (!blocked.has(key)) {
            blocked.add(key);
            await gate;
          }
        } finally {
          running--;
        }
      },
    });
    const { sub } = t.consume(link.subscriber, { group: t.group(), concurrency: 4 }, got);
    await sub.ready;
    const events = makeEvents(t.run, 4, { senders: 4 });
    const keys = events.map(keyOf);
    try {
      await t.publishAll(link.publisher, events);
      await t.waitFor(
        () => running >= 4,
        () => `4 handlers blocked on their first delivery (${running})`,
      );
      // The deliveries in flight crossed the proxy (a broker that ignores ctx.proxy fails here, not by a timeout).
      link.verify?.();
      await cut();
      // Nothing can arrive while the connection is down: what comes from now on comes after the restore.
      afterCut = true;
      await restore();
    } finally {
      openGate();
      await link.heal();
    }
    const cameBack = () => deliveries.filter((d) => d.afterCut);
    const disabled = t.disabledCheck('redelivered');
    await t.waitFor(
      () => got.missing(keys).length === 0 && cameBack().some((d) => disabled !== undefined || d.redelivered),
      () =>
        `every event handled (${got.unique}/4) and one redelivered after the restore ` +
        `(${cameBack().length} deliveries after it, ${cameBack().filter((d) => d.redelivered).length} marked redelivered)`,
      t.handoverTimeoutMs,
    );
    await t.waitFor(() => running === 0, 'every handler to finish');
    await t.quietPeriod(200);
    t.log(
      `${deliveries.length} deliveries, ${cameBack().length} after the restore ` +
        `(${cameBack().filter((d) => d.redelivered).length} marked redelivered)`,
    );
    expect(got.missing(keys), 'events never handled').toEqual([]);
    await expectReconnected(t, link, ['subscriber']);
    if (disabled !== undefined) t.log(`context.redelivered not checked (disabled: ${disabled})`);
    else {
      expect(
        deliveries.filter((d) => !d.afterCut && d.redelivered).map((d) => d.key),
        'first deliveries marked redelivered',
      ).toEqual([]);
    }
    expect(got.deadLetters).toEqual([]);
  },
};

const chaosStall: CaseDefinition = {
  id: 'chaos-stall',
  skip: ({ options }) =>
    options.chaos?.upstream ? undefined : 'needs chaos.upstream: a fault proxy in front of a TCP broker',
  testTimeoutMs: chaosTimeout,
  async run(t) {
    const { proxy, link } = await throughProxy(t);
    return underLoad(t, link, [
      { at: 0.5, holdMs: 2_000, begin: () => proxy.stall(), end: () => proxy.restore() },
    ]);
  },
};

const chaosRestart: CaseDefinition = {
  id: 'chaos-restart',
  skip: ({ options }) => (options.chaos?.restartBroker ? undefined : 'needs chaos.restartBroker'),
  testTimeoutMs: chaosTimeout,
  async run(t) {
    const destination = t.destination();
    const link: Link = {
      publisher: await t.broker(destination),
      subscriber: await t.broker(destination),
      heal: async () => {},
    };
    let restarting: Promise<void> = Promise.resolve();
    // Publishing goes on while the broker restarts; the case waits for the restart before checking.
    const restart: Disruption = {
      at: 1 / 3,
      holdMs: 0,
      begin: async () => {
        restarting = t.options.chaos!.restartBroker!();
        restarting.catch(() => undefined);
      },
      end: () => restarting,
    };
    return underLoad(t, link, [restart]);
  },
};

/**
 * `persistent`: once `publish` resolved, an event survives a broker restart. The group exists before the events are
 * published, every client is gone during the restart, and a new one reads every event afterwards.
 */
const persistent: CaseDefinition = {
  id: 'persistent',
  skip: ({ capabilities, options }) =>
    !capabilities.persistent
      ? 'capabilities.persistent is false'
      : options.chaos?.restartBroker
        ? undefined
        : 'needs chaos.restartBroker to check capabilities.persistent',
  testTimeoutMs: chaosTimeout,
  async run(t) {
    const destination = t.destination();
    const group = t.group();
    const publisher = await t.broker(destination);
    const creator = t.consume(publisher, { group });
    await creator.sub.ready;
    await creator.sub.close();
    const events = makeEvents(t.run, 200, { senders: 10 });
    // Each publish resolved: the broker confirmed it.
    await t.publishAll(publisher, events);
    await publisher.close();
    await withTimeout(t.options.chaos!.restartBroker!(), CHAOS_WAIT_MS, 'chaos.restartBroker()');
    const reader = await t.broker(destination);
    const { sub, got } = t.consume(reader, { group, concurrency: 8 });
    await withTimeout(sub.ready, Math.max(CHAOS_WAIT_MS, t.timeoutMs), 'the subscription after the restart');
    await t.waitForAll(got, events.map(keyOf));
    expect(got.deadLetters).toEqual([]);
  },
};

/**
 * Shutting down while the broker is unreachable (never reached, even) must not hang: close() gives up after its
 * timeout, rejects what it could not send (never drops it silently), and ends the subscriptions.
 */
const closeUnreachable: CaseDefinition = {
  id: 'close-unreachable',
  skip: ({ options }) =>
    options.chaos?.upstream || options.chaos?.faults
      ? undefined
      : 'needs chaos.upstream (a TCP broker) or chaos.faults (a broker without a connection)',
  async run(t) {
    const destination = t.destination();
    let broker: Broker;
    let heal: () => Promise<void>;
    if (t.options.chaos?.upstream) {
      const proxy = await startFaultProxy({ upstream: t.options.chaos.upstream });
      t.defer(() => proxy.close());
      await proxy.cut();
      heal = async () => {
        await proxy.restore();
        // A broker that ignored ctx.proxy reached the broker directly, and its publish resolved: say why.
        expect(
          proxy.stats.accepted,
          'connection attempts through the fault proxy (ctx.proxy)',
        ).toBeGreaterThan(0);
      };
      broker = await t.broker(destination, { host: proxy.host, port: proxy.port });
    } else {
      broker = await t.broker(destination);
      const faults = t.options.chaos!.faults!(broker);
      if (!faults)
        throw new Error('[conformance] chaos.faults returned nothing for a broker made by create()');
      // Before anything used the broker: it never gets to connect.
      await faults.cut();
      heal = () => faults.restore();
    }
    try {
      const got = t.collector();
      const sub = t.track(
        broker.subscribe(got.handler, { group: t.group(), onDeadLetter: got.onDeadLetter }),
      );
      const [event] = makeEvents(t.run, 1);
      const outcome = broker.publish(event!).then(
        () => 'resolved',
        (error: unknown) => error,
      );
      await withTimeout(
        broker.close({ timeoutMs: 1_000 }),
        t.timeoutMs,
        'close({ timeoutMs: 1000 }) while the broker is unreachable',
      );
      expect(await outcome, 'a publish still unsent at close is rejected').toMatchObject({
        code: 'UNSENT_AT_CLOSE',
      });
      await withTimeout(sub.closed, t.timeoutMs, 'the subscription to end');
    } finally {
      await heal();
    }
  },
};

export const chaosCases = [chaosCut, cutRedelivers, chaosStall, chaosRestart, persistent, closeUnreachable];
