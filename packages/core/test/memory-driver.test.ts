import { describe, expect, it } from 'vitest';
import type {
  BrokerDriver,
  DeadLetter,
  Delivery,
  DriverConsumeOptions,
  DriverConsumer,
  OutgoingMessage,
} from '../src/broker/contract.js';
import { MemoryHub, memoryDriver } from '../src/broker/memory.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const message = (
  text: string,
  senderId = 'alice',
  headers: Record<string, string> = {},
): OutgoingMessage => ({
  id: `m-${text}`,
  body: encoder.encode(text),
  senderId,
  eventName: 'user',
  headers,
});
const text = (delivery: { readonly body: Uint8Array }): string => decoder.decode(delivery.body);

/** Dispatch runs on setImmediate: a few turns let every possible delivery happen. */
async function dispatched(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** A consumer that keeps what it receives, unacknowledged, for the test to settle. */
async function collect(
  driver: BrokerDriver,
  options: Partial<DriverConsumeOptions> = {},
): Promise<{ deliveries: Delivery[]; consumer: DriverConsumer; texts: () => string[] }> {
  const deliveries: Delivery[] = [];
  const consumer = await driver.consume(
    { group: 'g', readAhead: 100, from: 'latest', ordering: 'none', ...options },
    sink((delivery) => deliveries.push(delivery)),
  );
  return { deliveries, consumer, texts: () => deliveries.map(text) };
}

async function send(driver: BrokerDriver, ...texts: string[]): Promise<void> {
  const outcomes = await driver.send(texts.map((t) => message(t)));
  expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
}

/** A consumer sink that only delivers (these tests drive connections themselves). */
const sink = (deliver: (delivery: Delivery) => unknown) => ({
  deliver: (delivery: Delivery) => void deliver(delivery),
  lost: () => {},
});

/** A connect session that records losses. */
const session = (signal = new AbortController().signal) => {
  const losses: Error[] = [];
  return { signal, lost: (error: Error) => void losses.push(error), losses };
};

const fresh = (options: Parameters<typeof memoryDriver>[0] = {}): BrokerDriver<MemoryHub> =>
  memoryDriver({ hub: new MemoryHub(), ...options });

describe('hub and driver', () => {
  it('declares what it guarantees and who it is', () => {
    const driver = fresh({ destination: 'events' });
    expect(driver).toMatchObject({
      name: 'memory',
      destination: 'events',
      defaultFormat: 'compact',
      defaultGroup: 'parley',
    });
    expect(driver.capabilities).toEqual({
      consumerGroups: true,
      competingConsumers: true,
      ordering: 'group',
      replay: true,
      deadLetter: 'native',
      batchPublish: true,
      persistent: false,
      headers: true,
      deliveryCount: true,
      retry: 'broker',
      leases: false,
      redrive: true,
    });
    expect(driver.client).toBeInstanceOf(MemoryHub);
    expect(fresh().destination).toBe('rasa_core_events');
  });

  it('shares named hubs process-wide: two drivers are two clients of one broker', async () => {
    expect(MemoryHub.shared('memory-test')).toBe(MemoryHub.shared('memory-test'));
    expect(MemoryHub.shared('memory-test')).not.toBe(MemoryHub.shared());
    const destination = `shared-${Math.random()}`;
    const a = memoryDriver({ hub: 'memory-test', destination });
    const b = memoryDriver({ hub: MemoryHub.shared('memory-test'), destination });
    expect(a.client).toBe(b.client);
    const received = await collect(b);
    await send(a, 'hello');
    await dispatched();
    expect(received.texts()).toEqual(['hello']);
    await Promise.all([a.close(), b.close()]);
  });

  it('stores copies of bodies and headers, with sender and event name, in an append-only log', async () => {
    const driver = fresh();
    const body = encoder.encode('one');
    expect(
      await driver.send([{ id: 'm1', body, senderId: 'bob', eventName: 'bot', headers: { trace: 'x' } }]),
    ).toEqual([{ ok: true }]);
    body[0] = 0;
    expect(driver.client.messages('rasa_core_events')).toEqual([
      { offset: 0, body: encoder.encode('one'), headers: { trace: 'x' }, senderId: 'bob', eventName: 'bot' },
    ]);
  });

  it('delivers foreign messages published raw, with their headers and no sender', async () => {
    const driver = fresh();
    const received = await collect(driver);
    driver.client.publishRaw('rasa_core_events', encoder.encode('{"event":"user"}'), { headers: { a: '1' } });
    await dispatched();
    expect(received.deliveries).toMatchObject([
      { headers: { a: '1' }, senderId: undefined, redelivered: false },
    ]);
    expect(received.texts()).toEqual(['{"event":"user"}']);
  });

  it('stores dead letters per destination and group, in order', async () => {
    const driver = fresh();
    const letter = (n: number, group = 'g'): DeadLetter => ({
      messageId: String(n),
      reason: 'handler-failed',
      body: encoder.encode(`m${n}`),
      headers: {},
      error: { name: 'Error', message: `boom ${n}` },
      attempts: 5,
      group,
      destination: 'rasa_core_events',
      failedAt: n,
    });
    await driver.deadLetter?.(letter(1));
    await driver.deadLetter?.(letter(2, 'other'));
    await driver.deadLetter?.(letter(3));
    expect(driver.client.deadLetters('rasa_core_events', 'g').map((dl) => dl.failedAt)).toEqual([1, 3]);
    expect(driver.client.deadLetters('rasa_core_events', 'other')).toHaveLength(1);
    expect(driver.client.deadLetters('elsewhere', 'g')).toEqual([]);
  });
});

describe('groups and consumers', () => {
  it('fans out: every group receives every message', async () => {
    const driver = fresh();
    const a = await collect(driver, { group: 'a' });
    const b = await collect(driver, { group: 'b' });
    await send(driver, '1', '2', '3');
    await dispatched();
    expect(a.texts()).toEqual(['1', '2', '3']);
    expect(b.texts()).toEqual(['1', '2', '3']);
  });

  it('shares a group among competing consumers, round-robin', async () => {
    const driver = fresh();
    const a = await collect(driver);
    const b = await collect(driver);
    await send(driver, '1', '2', '3', '4');
    await dispatched();
    expect(a.texts()).toEqual(['1', '3']);
    expect(b.texts()).toEqual(['2', '4']);
  });

  it('competes across drivers on one hub, as separate processes would', async () => {
    const hub = new MemoryHub();
    const one = memoryDriver({ hub });
    const two = memoryDriver({ hub });
    const a = await collect(one, { readAhead: 1 });
    const b = await collect(two, { readAhead: 1 });
    await send(one, '1', '2');
    await dispatched();
    expect([...a.texts(), ...b.texts()].sort()).toEqual(['1', '2']);
    expect(a.deliveries).toHaveLength(1);
  });

  it('keeps at most readAhead deliveries unacknowledged per consumer', async () => {
    const driver = fresh();
    const received = await collect(driver, { readAhead: 2 });
    await send(driver, '1', '2', '3', '4', '5');
    await dispatched();
    expect(received.texts()).toEqual(['1', '2']);
    expect(driver.client.groups('rasa_core_events')).toEqual([
      { name: 'g', cursor: 2, pending: 3, inFlight: 2, consumers: 1 },
    ]);
    await received.deliveries[0]!.ack();
    await dispatched();
    expect(received.texts()).toEqual(['1', '2', '3']);
  });

  it('redelivers released messages first, in their original order, marked redelivered', async () => {
    const driver = fresh();
    const received = await collect(driver, { readAhead: 3 });
    await send(driver, '1', '2', '3', '4', '5');
    await dispatched();
    const [first, second, third] = received.deliveries;
    await second!.release();
    await first!.release();
    await dispatched();
    expect(received.texts()).toEqual(['1', '2', '3', '1', '2']);
    expect(received.deliveries.map((d) => d.redelivered)).toEqual([false, false, false, true, true]);
    await third!.ack();
    await dispatched();
    expect(received.texts().slice(5)).toEqual(['4']);
    expect(received.deliveries[5]!.redelivered).toBe(false);
  });

  it('keeps the group cursor across consumer churn: nothing lost, unacked ones come back', async () => {
    const driver = fresh();
    const first = await collect(driver);
    await send(driver, '1', '2', '3');
    await dispatched();
    await first.deliveries[0]!.ack();
    await first.deliveries[1]!.ack();
    await first.consumer.close();
    await first.consumer.close();
    await send(driver, '4', '5');
    const second = await collect(driver, { from: 'latest' });
    await dispatched();
    expect(second.texts()).toEqual(['3', '4', '5']);
    expect(second.deliveries.map((d) => d.redelivered)).toEqual([true, false, false]);
    expect(first.texts()).toEqual(['1', '2', '3']);
  });

  it('starts a new group at the beginning or the end of the log; an existing group keeps its place', async () => {
    const driver = fresh();
    await send(driver, 'old1', 'old2');
    const beginning = await collect(driver, { group: 'replay', from: 'beginning' });
    const latest = await collect(driver, { group: 'live', from: 'latest' });
    await send(driver, 'new');
    await dispatched();
    expect(beginning.texts()).toEqual(['old1', 'old2', 'new']);
    expect(latest.texts()).toEqual(['new']);
    await latest.consumer.close();
    const again = await collect(driver, { group: 'live', from: 'beginning' });
    await dispatched();
    expect(again.texts()).toEqual(['new']);
  });

  it('stop ends new deliveries; those made stay open until settled', async () => {
    const driver = fresh();
    const received = await collect(driver, { readAhead: 1 });
    await send(driver, '1', '2');
    await dispatched();
    await received.consumer.stop();
    await received.deliveries[0]!.ack();
    await dispatched();
    expect(received.texts()).toEqual(['1']);
    expect(driver.client.groups('rasa_core_events')[0]).toMatchObject({ pending: 1, inFlight: 0 });
  });
});

describe('per-sender ordering', () => {
  /** Two consumers, readAhead 10, acking after a random delay; records what each sender had in flight. */
  async function run(ordering: 'per-sender' | 'none') {
    const driver = fresh();
    const handled = new Map<string, string[]>();
    const inFlight = new Map<string, number>();
    let maxPerSender = 0;
    let firstRound = -1;
    const handle = (delivery: Delivery): void => {
      const sender = delivery.senderId!;
      inFlight.set(sender, (inFlight.get(sender) ?? 0) + 1);
      maxPerSender = Math.max(maxPerSender, inFlight.get(sender)!);
      setTimeout(() => {
        inFlight.set(sender, inFlight.get(sender)! - 1);
        handled.set(sender, [...(handled.get(sender) ?? []), text(delivery)]);
        void delivery.ack();
      }, Math.random() * 3);
    };
    const options = { group: 'g', readAhead: 10, from: 'latest', ordering } as const;
    await driver.consume(options, sink(handle));
    await driver.consume(options, sink(handle));
    const batch = Array.from({ length: 60 }, (_, i) => message(`${i}`, ['a', 'b', 'c'][i % 3]));
    await driver.send(batch);
    await dispatched();
    firstRound = driver.client.groups('rasa_core_events')[0]!.inFlight;
    await waitFor(() => [...handled.values()].flat().length === 60);
    return { handled, maxPerSender, firstRound };
  }

  it('never has two messages of one sender in flight; each sender in log order; others pass', async () => {
    const { handled, maxPerSender, firstRound } = await run('per-sender');
    expect(maxPerSender).toBe(1);
    expect(firstRound).toBe(3);
    const expected = (offset: number) => Array.from({ length: 20 }, (_, i) => `${i * 3 + offset}`);
    expect(handled.get('a')).toEqual(expected(0));
    expect(handled.get('b')).toEqual(expected(1));
    expect(handled.get('c')).toEqual(expected(2));
  });

  it('locks nothing with ordering none', async () => {
    const { maxPerSender, firstRound } = await run('none');
    expect(firstRound).toBe(20);
    expect(maxPerSender).toBeGreaterThan(1);
  });
});

describe('faults', () => {
  it('cut: the client is told, sends fail retryably, what its consumers held goes back (revoked); connect waits for restore', async () => {
    const hub = new MemoryHub();
    const flaky = memoryDriver({ hub });
    const steady = memoryDriver({ hub });
    const first = session();
    await flaky.connect(first);
    const onFlaky = await collect(flaky, { readAhead: 1 });
    await send(steady, '1');
    await dispatched();
    expect(onFlaky.texts()).toEqual(['1']);

    await flaky.faults!.cut();
    expect(first.losses.map((e) => e.message)).toEqual(['[parley] [memory] connection lost']);
    expect(flaky.isReady()).toBe(false);
    expect(onFlaky.deliveries[0]!.revoked?.aborted).toBe(true);
    const [outcome] = await flaky.send([message('x')]);
    expect(outcome).toMatchObject({ ok: false, retryable: true });
    await expect(onFlaky.deliveries[0]!.ack()).rejects.toThrow('taken back');
    await expect(collect(flaky)).rejects.toThrow('connection lost');

    // A peer gets what the cut consumer held, marked redelivered, with the broker's delivery count.
    const onSteady = await collect(steady, { readAhead: 1 });
    await dispatched();
    expect(onSteady.deliveries).toMatchObject([{ redelivered: true, deliveryCount: 2, id: '0' }]);
    await onSteady.consumer.close();

    let connected = false;
    const connecting = flaky.connect(session()).then(() => (connected = true));
    await dispatched();
    expect(connected).toBe(false);
    await flaky.faults!.restore();
    await connecting;
    expect(flaky.isReady()).toBe(true);
    // The client consumes again (core does this for every live subscription after a reconnect).
    const again = await collect(flaky, { readAhead: 1 });
    await dispatched();
    expect(again.texts()).toEqual(['1']);
    expect(again.deliveries[0]!.deliveryCount).toBe(3);
  });

  it('connect gives up when its signal aborts during a cut', async () => {
    const driver = fresh();
    await driver.faults!.cut();
    const controller = new AbortController();
    const connecting = driver.connect(session(controller.signal));
    controller.abort(new Error('gave up'));
    await expect(connecting).rejects.toThrow('gave up');
  });

  it('restart: every driver drops and reconnects; logs, cursors and dead letters survive', async () => {
    const hub = new MemoryHub();
    const one = memoryDriver({ hub });
    const two = memoryDriver({ hub });
    const a = await collect(one, { group: 'a' });
    await collect(two, { group: 'b' }); // the group exists before the restart
    await send(one, '1', '2');
    await dispatched();
    await a.deliveries[0]!.ack();
    await one.deadLetter!({
      messageId: '0',
      reason: 'invalid',
      body: encoder.encode('bad'),
      headers: {},
      error: { name: 'Error', message: 'bad' },
      attempts: 1,
      group: 'a',
      destination: 'rasa_core_events',
      failedAt: 0,
    });

    let readyDuringRestart = true;
    const restarting = hub.restart({ downMs: 5 });
    readyDuringRestart = one.isReady() || two.isReady();
    await restarting;
    expect(readyDuringRestart).toBe(false);
    expect(one.isReady() && two.isReady()).toBe(true);
    // Consumers were dropped with their connections; new ones get what was not acknowledged.
    const a2 = await collect(one, { group: 'a' });
    const b2 = await collect(two, { group: 'b' });
    await dispatched();
    expect(a2.texts()).toEqual(['2']);
    expect(b2.texts()).toEqual(['1', '2']);
    expect(b2.deliveries.every((d) => d.redelivered)).toBe(true);
    expect(hub.messages('rasa_core_events')).toHaveLength(2);
    expect(hub.deadLetters('rasa_core_events', 'a')).toHaveLength(1);
  });

  it('ack is idempotent', async () => {
    const driver = fresh();
    const received = await collect(driver);
    await send(driver, '1');
    await dispatched();
    await received.deliveries[0]!.ack();
    await received.deliveries[0]!.ack();
    await received.deliveries[0]!.release();
    await dispatched();
    expect(received.texts()).toEqual(['1']);
    expect(driver.client.groups('rasa_core_events')[0]).toMatchObject({ pending: 0, inFlight: 0 });
  });
});

describe('retention', () => {
  it('drops the oldest messages every group consumed, to stay within maxRetained', async () => {
    const driver = fresh({ maxRetained: 3 });
    const received = await collect(driver);
    await send(driver, '1', '2', '3');
    await dispatched();
    for (const delivery of received.deliveries) await delivery.ack();
    await send(driver, '4', '5');
    expect(driver.client.messages('rasa_core_events').map((m) => [m.offset, text(m)])).toEqual([
      [2, '3'],
      [3, '4'],
      [4, '5'],
    ]);
    const replay = await collect(driver, { group: 'late', from: 'beginning' });
    await dispatched();
    expect(replay.texts()).toEqual(['3', '4', '5']);
  });

  it('refuses, retryably, rather than drop what a group has not consumed', async () => {
    const driver = fresh({ maxRetained: 3 });
    const received = await collect(driver, { readAhead: 1 });
    await send(driver, '1', '2');
    await dispatched();
    const outcomes = await driver.send([message('3'), message('4')]);
    expect(outcomes[0]).toEqual({ ok: true });
    expect(outcomes[1]).toMatchObject({ ok: false, retryable: true, error: { code: 'BROKER_FULL' } });
    expect(() => driver.client.publishRaw('rasa_core_events', encoder.encode('raw'))).toThrow('broker full');

    await received.deliveries[0]!.ack();
    expect(await driver.send([message('4')])).toEqual([{ ok: true }]);
    expect(driver.client.messages('rasa_core_events').map(text)).toEqual(['2', '3', '4']);
    await dispatched();
    for (let i = 1; i < 4; i++) {
      await received.deliveries[i]!.ack();
      await dispatched();
    }
    expect(received.texts()).toEqual(['1', '2', '3', '4']);
  });

  it('keeps a released message, though its group cursor moved past it', async () => {
    const driver = fresh({ maxRetained: 2 });
    const received = await collect(driver, { readAhead: 2 });
    await send(driver, '1', '2');
    await dispatched();
    await received.deliveries[1]!.ack();
    await received.deliveries[0]!.release();
    const [outcome] = await driver.send([message('3')]);
    expect(outcome).toMatchObject({ ok: false, retryable: true });
  });

  it('rejects a retention bound that cannot work', () => {
    expect(() => fresh({ maxRetained: 0 })).toThrow('maxRetained must be a positive integer');
  });
});

describe('close', () => {
  it('is idempotent, releases unacked deliveries to the group, and refuses what comes after', async () => {
    const hub = new MemoryHub();
    const closing = memoryDriver({ hub });
    const staying = memoryDriver({ hub });
    const received = await collect(closing, { readAhead: 1 });
    await send(staying, '1');
    await dispatched();
    expect(received.texts()).toEqual(['1']);

    await closing.close();
    await closing.close();
    expect(closing.isReady()).toBe(false);
    // Taken back by close: an ack now did not happen, and says so.
    await expect(received.deliveries[0]!.ack()).rejects.toThrow('taken back');
    expect(received.deliveries[0]!.revoked?.aborted).toBe(true);
    expect(await closing.send([message('x')])).toMatchObject([{ ok: false, retryable: false }]);
    await expect(closing.connect(session())).rejects.toThrow('closed');
    await expect(
      closing.consume(
        { group: 'g', readAhead: 1, from: 'latest', ordering: 'none' },
        sink(() => {}),
      ),
    ).rejects.toThrow('closed');

    const taker = await collect(staying);
    await dispatched();
    expect(taker.deliveries).toMatchObject([{ redelivered: true }]);
  });

  it('a pending connect fails when the driver closes during a cut', async () => {
    const driver = fresh();
    await driver.faults!.cut();
    const connecting = driver.connect(session());
    await driver.close();
    await expect(connecting).rejects.toThrow('closed');
  });
});
