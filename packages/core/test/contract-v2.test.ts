/**
 * Contract v2 in core, against the memory broker and drivers wrapped around it: publish order across resends,
 * driver contract errors, publishing limits, buffer bytes, reconnection and resuming consumers, broker-side
 * retries and delivery counts, leases, and dead letters read back and redriven.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  type BrokerDriver,
  ConnectionError,
  defineBroker,
  type EventEnvelope,
  MemoryHub,
  memoryDriver,
  type OutgoingMessage,
  type SendOutcome,
  slotSet,
} from '../src/index.js';

const quiet = { onWarning: () => {} };
const uniq = () => `t-${Math.random().toString(36).slice(2, 10)}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const event = (sender: string, n: number) =>
  ({ sender_id: sender, ...slotSet('n', n, { timestamp: 1 }) }) as EventEnvelope;

/** The `n` slot values each sender's messages carry, in the order the hub stored them. */
function storedOrder(hub: MemoryHub, destination: string): Map<string, number[]> {
  const order = new Map<string, number[]>();
  for (const message of hub.messages(destination)) {
    const { sender_id, value } = JSON.parse(Buffer.from(message.body).toString('utf8'));
    order.set(sender_id, [...(order.get(sender_id) ?? []), value]);
  }
  return order;
}

/** The memory driver with `send` replaced. */
function wrap(
  inner: BrokerDriver<MemoryHub>,
  send: (batch: readonly OutgoingMessage[], call: number) => Promise<readonly SendOutcome[]>,
): BrokerDriver<MemoryHub> {
  let calls = 0;
  return { ...inner, name: 'wrapped', send: (batch) => send(batch, ++calls) };
}

/** The memory driver (with `orderedSends` as given), counting the sends made inside a synchronous run of publishes. */
function countingSends(inner: BrokerDriver<MemoryHub>, orderedSends: boolean) {
  let publishing = false;
  const counted = {
    sent: 0,
    driver: {
      ...wrap(inner, (batch) => {
        if (publishing) counted.sent++;
        return inner.send(batch);
      }),
      limits: { ...inner.limits, orderedSends },
    },
    whilePublishing<T>(run: () => T): T {
      publishing = true;
      try {
        return run();
      } finally {
        publishing = false;
      }
    },
  };
  return counted;
}

/**
 * Publishes 400 events in batches of 10 through the memory driver (with `overrides` on it), each send taking 5 ms;
 * returns the most sends awaiting their outcome at once.
 */
async function peakInFlight(
  overrides: Partial<BrokerDriver<MemoryHub>>,
  sender: (n: number) => string,
): Promise<number> {
  const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
  let inFlight = 0;
  let peak = 0;
  const driver = {
    ...wrap(inner, async (batch) => {
      peak = Math.max(peak, ++inFlight);
      await sleep(5);
      inFlight--;
      return inner.send(batch);
    }),
    ...overrides,
  };
  const broker = defineBroker(driver, { ...quiet, maxBatch: 10 });
  await Promise.all(Array.from({ length: 400 }, (_, n) => broker.publish(event(sender(n), n))));
  await broker.close();
  return peak;
}

describe('publishing: order, limits, contract errors', () => {
  it('keeps each sender in publish order when a pipelined batch fails retryably and a later one succeeds', async () => {
    // Issue 7, defect 1: with up to 8 batches in flight, batch 1 failing once while batch 2 succeeded used to put
    // s0's [512, 528, …] before [0, 16, …].
    const hub = new MemoryHub();
    const destination = uniq();
    const inner = memoryDriver({ hub, destination });
    let sends = 0;
    const driver = wrap(inner, async (batch, call) => {
      sends++;
      if (call === 1) {
        await sleep(20); // settles after the next batches: they must not have overtaken it
        return batch.map(() => ({ ok: false, retryable: true, error: new Error('confirm timeout') }));
      }
      return inner.send(batch);
    });
    const broker = defineBroker(driver, { ...quiet, maxBatch: 32, reconnect: { initialMs: 1, maxMs: 1 } });
    const senders = 16;
    const publishes: Promise<void>[] = [];
    for (let n = 0; n < 1024; n++) publishes.push(broker.publish(event(`s${n % senders}`, n)));
    await Promise.all(publishes);
    const order = storedOrder(hub, destination);
    for (let s = 0; s < senders; s++) {
      const seen = order.get(`s${s}`)!;
      expect(seen, `order of s${s}`).toEqual([...seen].sort((a, b) => a - b));
      expect(seen).toHaveLength(1024 / senders);
    }
    expect(sends).toBeGreaterThan(1024 / 32); // batched, and the failed one went again
    await broker.close();
  });

  it('still pipelines batches of different senders', async () => {
    const peak = await peakInFlight({}, (n) => `s${n}`);
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(8);
  });

  it("sends one sender's batches back to back when the driver declares ordered sends", async () => {
    const peak = await peakInFlight({ limits: { orderedSends: true } }, () => 'one-sender');
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(8);
  });

  it("sends one sender's batches at once to a broker that keeps no order", async () => {
    const { capabilities } = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const peak = await peakInFlight(
      { capabilities: { ...capabilities, ordering: 'none' } },
      () => 'one-sender',
    );
    expect(peak).toBeGreaterThan(1);
  });

  it('sends full batches while the caller is still publishing, once connected, with ordered sends', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const counted = countingSends(memoryDriver({ hub, destination }), true);
    const broker = defineBroker(counted.driver, { ...quiet, maxBatch: 100 });
    await broker.ready();
    const publishes = counted.whilePublishing(() =>
      Array.from({ length: 1_000 }, (_, n) => broker.publish(event('one-sender', n))),
    );
    // The broker works on the first batches while the caller encodes the rest; at most 8 await their outcome.
    expect(counted.sent).toBe(8);
    await Promise.all(publishes);
    expect(storedOrder(hub, destination).get('one-sender')).toEqual(
      Array.from({ length: 1_000 }, (_, n) => n),
    );
    await broker.close();
  });

  it('sends nothing from inside publish() before it is connected, nor where a sender waits for its batch', async () => {
    for (const connectFirst of [false, true]) {
      const hub = new MemoryHub();
      const destination = uniq();
      // Not connected yet; or connected, without ordered sends: each sender's next events wait for its batch.
      const counted = countingSends(memoryDriver({ hub, destination }), !connectFirst);
      const broker = defineBroker(counted.driver, { ...quiet, maxBatch: 100 });
      if (connectFirst) await broker.ready();
      const publishes = counted.whilePublishing(() =>
        Array.from({ length: 1_000 }, (_, n) => broker.publish(event(`s${n % 4}`, n))),
      );
      expect(counted.sent, `connected first: ${connectFirst}`).toBe(0);
      await Promise.all(publishes);
      expect(hub.messages(destination)).toHaveLength(1_000);
      await broker.close();
    }
  });

  it("sends a sender's next batch before the callers of its settled one go on", async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const log: string[] = [];
    const driver = wrap(inner, (batch, call) => {
      log.push(`send ${call}`);
      return inner.send(batch);
    });
    const broker = defineBroker(driver, { ...quiet, maxBatch: 10 });
    await broker.ready();
    // One sender: its second batch waits for the first one's outcome.
    const publishes = Array.from({ length: 20 }, (_, n) => broker.publish(event('one-sender', n)));
    const first = publishes[0]!.then(() => log.push('first publish resolved'));
    await Promise.all([...publishes, first]);
    expect(log).toEqual(['send 1', 'send 2', 'first publish resolved']);
    await broker.close();
  });

  it('gives every message a random (version 4) UUID of its own', async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const ids: string[] = [];
    const driver = wrap(inner, (batch) => {
      for (const message of batch) ids.push(message.id);
      return inner.send(batch);
    });
    const broker = defineBroker(driver, quiet);
    await Promise.all(Array.from({ length: 5_000 }, (_, n) => broker.publish(event(`s${n % 7}`, n))));
    await broker.close();
    expect(new Set(ids).size).toBe(5_000);
    for (const id of ids)
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // Every hex digit of the random part turns up: the bytes are not, say, all taken from one position.
    expect(new Set(ids.join('').replaceAll('-', ''))).toEqual(new Set('0123456789abcdef'));
  });

  it('makes no message ids for a driver that declares it has no use for them', async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const ids: string[] = [];
    const driver = {
      ...wrap(inner, (batch) => {
        for (const message of batch) ids.push(message.id);
        return inner.send(batch);
      }),
      limits: { ...inner.limits, messageIds: false },
    };
    const broker = defineBroker(driver, quiet);
    await Promise.all(Array.from({ length: 50 }, (_, n) => broker.publish(event(`s${n % 7}`, n))));
    await broker.close();
    expect(ids).toEqual(Array.from({ length: 50 }, () => ''));
  });

  it("with ordered sends, sends a sender's later successes again after its failed batch: never reordered", async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const inner = memoryDriver({ hub, destination });
    const driver = {
      ...wrap(inner, async (batch, call) => {
        if (call === 1) {
          await sleep(20); // its outcome comes after those of the batches sent behind it, which succeeded
          return batch.map(() => ({ ok: false, retryable: true, error: new Error('confirm timeout') }));
        }
        return inner.send(batch);
      }),
      limits: { ...inner.limits, orderedSends: true },
    };
    const broker = defineBroker(driver, { ...quiet, maxBatch: 32, reconnect: { initialMs: 1, maxMs: 1 } });
    const senders = 4;
    await Promise.all(Array.from({ length: 512 }, (_, n) => broker.publish(event(`s${n % senders}`, n))));
    for (const [sender, seen] of storedOrder(hub, destination)) {
      // Duplicates are allowed (what was stored behind the failed batch goes again after it); the last copies are
      // in publish order, and every event is there.
      const last = seen.filter((n, i) => seen.indexOf(n, i + 1) === -1);
      expect(last, `last copies of ${sender}`).toEqual([...last].sort((a, b) => a - b));
      expect(last).toHaveLength(512 / senders);
      expect(seen.length, `${sender} had events stored behind the failed batch`).toBeGreaterThan(last.length);
    }
    await broker.close();
  });

  it('fails a batch at once, naming the driver, when send returns fewer outcomes than messages', async () => {
    // Issue 7, defect 4: this used to be retried forever and blamed on the broker at close.
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const warnings: string[] = [];
    const driver = wrap(inner, async (batch) => (await inner.send(batch)).slice(1));
    const broker = defineBroker(driver, { onWarning: (m) => warnings.push(m) });
    const started = Date.now();
    const results = await Promise.allSettled([broker.publish(event('a', 1)), broker.publish(event('a', 2))]);
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      const error = (result as PromiseRejectedResult).reason;
      expect(error.code).toBe('DRIVER_CONTRACT');
      expect(error.message).toMatch(
        /^\[parley\] \[wrapped\] driver contract error: send\(\) returned 1 outcomes for 2/,
      );
    }
    expect(warnings.some((w) => w.includes('driver contract error'))).toBe(true);
    await broker.close();
  });

  it("honours the driver's limits: messages and bytes per batch, and the largest message", async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const batches: number[][] = [];
    const driver: BrokerDriver<MemoryHub> = {
      ...wrap(inner, async (batch) => {
        batches.push(batch.map((m) => m.body.byteLength));
        return inner.send(batch);
      }),
      limits: { maxBatchMessages: 10, maxBatchBytes: 2_000, maxMessageBytes: 1_000 },
    };
    const broker = defineBroker(driver, quiet);
    await Promise.all(Array.from({ length: 95 }, (_, n) => broker.publish(event(`s${n}`, n))));
    expect(batches.every((b) => b.length <= 10)).toBe(true);
    expect(batches.every((b) => b.reduce((x, y) => x + y, 0) <= 2_000)).toBe(true);
    expect(batches.flat()).toHaveLength(95);
    const big = { ...event('big', 0), value: 'x'.repeat(2_000) } as EventEnvelope;
    await expect(broker.publish(big)).rejects.toMatchObject({
      code: 'MESSAGE_TOO_LARGE',
      message: expect.stringMatching(/over the broker's limit of 1000 bytes/),
    });
    await broker.close();
  });

  it('one message per send when the driver does not batch', async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const sizes: number[] = [];
    const driver: BrokerDriver<MemoryHub> = {
      ...wrap(inner, async (batch) => {
        sizes.push(batch.length);
        return inner.send(batch);
      }),
      capabilities: { ...inner.capabilities, batchPublish: false },
    };
    const broker = defineBroker(driver, quiet);
    await Promise.all(Array.from({ length: 20 }, (_, n) => broker.publish(event('a', n))));
    expect(new Set(sizes)).toEqual(new Set([1]));
    await broker.close();
  });

  it('bounds the outage buffer in bytes as well as events', async () => {
    const driver = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    await driver.faults!.cut();
    const broker = defineBroker(driver, { ...quiet, bufferBytes: 3_000 });
    const big = (n: number) => ({ ...event('a', n), value: 'x'.repeat(900) }) as EventEnvelope;
    const accepted = [broker.publish(big(1)), broker.publish(big(2)), broker.publish(big(3))];
    for (const p of accepted) p.catch(() => {});
    await expect(broker.publish(big(4))).rejects.toMatchObject({
      code: 'BUFFER_FULL',
      message: expect.stringContaining('bufferBytes'),
    });
    expect((await broker.health()).bufferedBytes).toBeGreaterThan(2_700);
    await driver.faults!.restore();
    await Promise.all(accepted);
    await broker.close();
  });

  it('gives every message an id that stays the same when it is sent again', async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const ids: string[][] = [];
    const driver = wrap(inner, async (batch, call) => {
      ids.push(batch.map((m) => m.id));
      if (call === 1) return batch.map(() => ({ ok: false, retryable: true, error: new Error('busy') }));
      return inner.send(batch);
    });
    const broker = defineBroker(driver, { ...quiet, reconnect: { initialMs: 1, maxMs: 1 } });
    await Promise.all([broker.publish(event('a', 1)), broker.publish(event('a', 2))]);
    expect(ids[0]).toHaveLength(2);
    expect(ids[1]).toEqual(ids[0]);
    expect(new Set(ids[0]).size).toBe(2);
    await broker.close();
  });
});

describe('reconnection and resuming consumers (core owns them)', () => {
  it('reconnects after a loss and resumes every live subscription', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const driver = memoryDriver({ hub, destination });
    const broker = defineBroker(driver, { ...quiet, reconnect: { initialMs: 5, maxMs: 20 } });
    const seen: number[] = [];
    const errors: string[] = [];
    const subs = ['a', 'b'].map((group) =>
      broker.subscribe((e) => void seen.push((e as { value: number }).value), {
        group,
        onError: (error) => errors.push(error.message),
      }),
    );
    await Promise.all(subs.map((s) => s.ready));
    await broker.publish(event('x', 1));
    await waitFor(() => seen.length === 2, 'both groups to get event 1');
    await driver.faults!.cut();
    expect(broker.isReady()).toBe(false);
    const during = broker.publish(event('x', 2));
    await sleep(50);
    await driver.faults!.restore();
    await during;
    await waitFor(() => seen.length === 4, 'both groups to get event 2 after the reconnect');
    expect(subs.map((s) => s.stats.resumed)).toEqual([1, 1]);
    const health = await broker.health();
    expect(health).toMatchObject({ ready: true, reconnects: 1, subscriptions: 2 });
    expect(errors.some((e) => e.includes('lost'))).toBe(true);
    await broker.close();
  });

  it("reports one subscription's failure to it alone: the connection and the others go on", async () => {
    const hub = new MemoryHub();
    const inner = memoryDriver({ hub, destination: uniq() });
    const driver: BrokerDriver<MemoryHub> = {
      ...inner,
      consume: (options, sink) =>
        options.group === 'broken'
          ? Promise.reject(new Error('PRECONDITION_FAILED - inequivalent arg'))
          : inner.consume(options, sink),
    };
    const broker = defineBroker(driver, quiet);
    const errors: Error[] = [];
    const broken = broker.subscribe(() => {}, { group: 'broken', onError: (e) => errors.push(e) });
    await expect(broken.ready).rejects.toThrow('PRECONDITION_FAILED');
    await broken.closed;
    expect(broken.failure?.message).toContain('PRECONDITION_FAILED');
    expect(errors).toHaveLength(1);
    const got: unknown[] = [];
    const fine = broker.subscribe((e) => void got.push(e), { group: 'fine' });
    await fine.ready;
    await broker.publish(event('a', 1));
    await waitFor(() => got.length === 1, 'the other subscription to work');
    expect(broker.isReady()).toBe(true);
    await broker.close();
  });
});

describe('revocation signals shared by many deliveries', () => {
  it('leave no listener behind once their deliveries are settled (one channel, many messages)', async () => {
    const channel = new AbortController();
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    // As AMQP does: every delivery of a channel carries the channel's signal.
    const driver: BrokerDriver<MemoryHub> = {
      ...inner,
      consume: (options, sink) =>
        inner.consume(options, { ...sink, deliver: (d) => sink.deliver({ ...d, revoked: channel.signal }) }),
    };
    const broker = defineBroker(driver, quiet);
    const sub = broker.subscribe(() => {}, { group: 'g', concurrency: 4 });
    await sub.ready;
    await Promise.all(Array.from({ length: 200 }, (_, i) => broker.publish(event(`s${i % 8}`, i))));
    await waitFor(() => sub.stats.acked === 200, 'every event acknowledged');
    // Removed at the sweep after the last settle (not at every settle: see Holding), so once that has run.
    await new Promise((resolve) => setImmediate(resolve));
    expect(getEventListeners(channel.signal, 'abort').length).toBe(0);
    await broker.close();
  });
});

describe('retries through the broker, delivery counts, leases', () => {
  it('retries through the broker with the backoff as delay, attempts from its delivery count', async () => {
    const broker = defineBroker(memoryDriver({ hub: new MemoryHub(), destination: uniq() }), quiet);
    const tries: { attempt: number; at: number; id: string }[] = [];
    const sub = broker.subscribe(
      (_, context) => {
        tries.push({ attempt: context.attempt, at: Date.now(), id: context.id });
        if (context.attempt < 3) throw new Error('not yet');
      },
      { group: 'g', backoff: { initialMs: 100, maxMs: 100 } },
    );
    await sub.ready;
    await broker.publish(event('a', 1));
    await waitFor(() => sub.stats.acked === 1, 'the third try to succeed');
    expect(tries.map((t) => t.attempt)).toEqual([1, 2, 3]);
    expect(new Set(tries.map((t) => t.id)).size).toBe(1);
    for (let i = 1; i < tries.length; i++) expect(tries[i]!.at - tries[i - 1]!.at).toBeGreaterThanOrEqual(75);
    await broker.close();
  });

  it('dead-letters a poison event whose consumers die with it, once the broker counted maxAttempts deliveries', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const poison = event('p', 1);
    await defineBroker(memoryDriver({ hub, destination }), quiet)
      .publish(poison)
      .catch(() => {});
    const group = 'g';
    // A consumer that never settles and is closed ("crashes") each time: its message goes back every time.
    for (let round = 0; round < 3; round++) {
      const broker = defineBroker(memoryDriver({ hub, destination }), quiet);
      let started = false;
      const sub = broker.subscribe(
        () => {
          started = true;
          return new Promise(() => {}); // hangs, as a crashing handler would
        },
        { group, from: 'beginning', maxAttempts: 3 },
      );
      await sub.ready;
      await waitFor(() => started, `round ${round} to start the handler`);
      // The hub takes it back as if the process died (its connection drops for good).
      await broker.close({ timeoutMs: 10 });
    }
    const broker = defineBroker(memoryDriver({ hub, destination }), quiet);
    const handled: unknown[] = [];
    const sub = broker.subscribe((e) => void handled.push(e), { group, maxAttempts: 3 });
    await sub.ready;
    await waitFor(() => sub.stats.deadLettered === 1, 'the poison to be dead-lettered');
    expect(handled).toEqual([]);
    const [letter] = await broker.deadLetters(group);
    expect(letter).toMatchObject({ reason: 'handler-failed', attempts: 3, messageId: '0', senderId: 'p' });
    expect(letter!.error.message).toContain('delivered 3 times without being settled');
    await broker.close();
  });

  it('renews leases while it holds a delivery: a long handler is never handed to a peer', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const make = () => defineBroker(memoryDriver({ hub, destination, leaseMs: 60 }), quiet);
    const [one, two] = [make(), make()];
    const handledBy: string[] = [];
    const subscribe = (broker: typeof one, name: string) =>
      broker.subscribe(
        async () => {
          handledBy.push(name);
          await sleep(300); // five leases long
        },
        { group: 'g', readAhead: 4 },
      );
    const subs = [subscribe(one, 'one'), subscribe(two, 'two')];
    await Promise.all(subs.map((s) => s.ready));
    await one.publish(event('a', 1));
    await waitFor(() => subs.some((s) => s.stats.acked === 1), 'the long handler to finish');
    await sleep(100);
    expect(handledBy).toHaveLength(1);
    expect(subs.map((s) => s.stats.revoked)).toEqual([0, 0]);
    await Promise.all([one.close(), two.close()]);
  });
});

describe('dead letters through the contract', () => {
  it('lists a group’s dead letters and redrives them, one by id, then the rest', async () => {
    const broker = defineBroker(memoryDriver({ hub: new MemoryHub(), destination: uniq() }), quiet);
    let healthy = false;
    const handled: number[] = [];
    const sub = broker.subscribe(
      (e) => {
        if (!healthy) throw new Error('broken handler');
        handled.push((e as { value: number }).value);
      },
      { group: 'g', maxAttempts: 1 },
    );
    await sub.ready;
    await Promise.all([1, 2, 3].map((n) => broker.publish(event(`s${n}`, n))));
    await waitFor(() => sub.stats.deadLettered === 3, 'three dead letters');
    const letters = await broker.deadLetters('g');
    expect(letters.map((l) => l.reason)).toEqual(['handler-failed', 'handler-failed', 'handler-failed']);
    expect(new Set(letters.map((l) => l.id)).size).toBe(3);
    healthy = true;
    await expect(broker.redrive({ group: 'g', ids: ['nope'] })).rejects.toThrow(
      'no dead letter of group "g"',
    );
    expect(await broker.redrive({ group: 'g', ids: [letters[1]!.id] })).toEqual({ redriven: 1 });
    await waitFor(() => handled.length === 1, 'the redriven one');
    expect(handled).toEqual([2]);
    expect((await broker.deadLetters('g')).map((l) => l.id)).toEqual([letters[0]!.id, letters[2]!.id]);
    expect(await broker.redrive({ group: 'g' })).toEqual({ redriven: 2 });
    await waitFor(() => handled.length === 3, 'the rest');
    expect(await broker.deadLetters('g')).toEqual([]);
    await broker.close();
  });
});

describe('dead letters are visible by default', () => {
  it('warns naming the group, the reason and where it went, at most once per 5 s', async () => {
    const warnings: string[] = [];
    const broker = defineBroker(memoryDriver({ hub: new MemoryHub(), destination: uniq() }), {
      onWarning: (m) => warnings.push(m),
    });
    const sub = broker.subscribe(
      () => {
        throw new Error('handler bug');
      },
      { group: 'orders', maxAttempts: 1 },
    );
    await sub.ready;
    await Promise.all([1, 2, 3].map((n) => broker.publish(event(`s${n}`, n))));
    await waitFor(() => sub.stats.deadLettered === 3, 'three dead letters');
    const mine = warnings.filter((w) => w.includes('dead-lettered'));
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatch(
      /^\[parley\] \[memory\] dead-lettered an event of group "orders" to the broker's dead-letter destination \(handler-failed, sender "s1", 1 attempt\(s\)\): handler bug$/,
    );
    await broker.close();
  });
});

describe('failing fast', () => {
  const refusing = (error: Error) => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    let attempts = 0;
    const driver: BrokerDriver<MemoryHub> = {
      ...inner,
      connect: async () => {
        attempts++;
        throw error;
      },
    };
    return { driver, attempts: () => attempts };
  };

  it('gives up at once on a failure no retry can fix (wrong credentials), saying so', async () => {
    const { driver, attempts } = refusing(
      new ConnectionError(
        'memory',
        'authentication failed (403 ACCESS-REFUSED): check username and password',
        {
          permanent: true,
          code: 'AUTH_FAILED',
        },
      ),
    );
    const broker = defineBroker(driver, { ...quiet, reconnect: { initialMs: 50, maxMs: 50 } });
    const started = Date.now();
    const error = (await broker.publish(event('a', 1)).catch((e: unknown) => e)) as ConnectionError;
    expect(Date.now() - started).toBeLessThan(500);
    expect(attempts()).toBe(1);
    expect(error).toMatchObject({ code: 'AUTH_FAILED', retryable: false });
    expect(error.message).toBe(
      '[parley] [memory] authentication failed (403 ACCESS-REFUSED): check username and password (not retried: no wait can fix this)',
    );
    await expect(broker.ready({ timeoutMs: 1_000 })).rejects.toThrow('authentication failed');
    const sub = broker.subscribe(() => {}, { group: 'g' });
    await expect(sub.ready).rejects.toThrow('authentication failed');
    await broker.close();
  });

  it('bufferWhileDisconnected: false rejects a publish when a connection attempt fails, before the first connection too', async () => {
    const refused = () => new ConnectionError('memory', 'connect ECONNREFUSED 127.0.0.1:1');
    const failFast = refusing(refused());
    const broker = defineBroker(failFast.driver, {
      ...quiet,
      bufferWhileDisconnected: false,
      reconnect: { initialMs: 50, maxMs: 50 },
    });
    const started = Date.now();
    await expect(broker.publish(event('a', 1))).rejects.toThrow('cannot connect: connect ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(500);
    await broker.close({ timeoutMs: 100 });

    // The default buffers: still pending while attempts go on.
    const patient = refusing(refused());
    const buffering = defineBroker(patient.driver, { ...quiet, reconnect: { initialMs: 20, maxMs: 20 } });
    let settled = false;
    const pending = buffering.publish(event('a', 1)).finally(() => (settled = true));
    pending.catch(() => {});
    await sleep(200);
    expect(settled).toBe(false);
    expect(patient.attempts()).toBeGreaterThan(2);
    await buffering.close({ timeoutMs: 50 });
    await expect(pending).rejects.toMatchObject({ code: 'UNSENT_AT_CLOSE' });
  });
});

describe('logging', () => {
  it('logs connects, retries, dead letters and drains to a pino/console-shaped logger', async () => {
    const lines: string[] = [];
    const logger = {
      debug: (m: string) => lines.push(`debug ${m}`),
      info: (m: string) => lines.push(`info ${m}`),
      warn: (m: string) => lines.push(`warn ${m}`),
      error: (m: string) => lines.push(`error ${m}`),
    };
    const broker = defineBroker(memoryDriver({ hub: new MemoryHub(), destination: uniq() }), { logger });
    const sub = broker.subscribe(
      () => {
        throw new Error('nope');
      },
      { group: 'g', maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
    );
    await sub.ready;
    await broker.publish(event('a', 1));
    await waitFor(() => sub.stats.deadLettered === 1, 'the dead letter');
    await broker.close();
    const has = (pattern: RegExp) => lines.some((line) => pattern.test(line));
    expect(has(/^info \[parley\] \[memory\] connected$/)).toBe(true);
    expect(has(/^info \[parley\] \[memory\] consuming group "g" \(concurrency 1, read-ahead 1\)$/)).toBe(
      true,
    );
    expect(has(/^debug .*handler failed .*attempt 1 of 2\): nope; trying again in \d+ ms$/)).toBe(true);
    expect(has(/^warn .*dead-lettered an event of group "g"/)).toBe(true);
    expect(
      has(
        /^info .*subscription to group "g" drained and closed \(0 acknowledged, 1 retries, 1 dead-lettered\)$/,
      ),
    ).toBe(true);
  });

  it('writes debug output to stderr with PARLEY_DEBUG=1, and nothing without it', async () => {
    const { makeLog } = await import('../src/broker/log.js');
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof write;
    const previous = process.env.PARLEY_DEBUG;
    try {
      delete process.env.PARLEY_DEBUG;
      makeLog({}).debug('[parley] hidden');
      process.env.PARLEY_DEBUG = '1';
      makeLog({}).debug('[parley] shown');
    } finally {
      process.stderr.write = write;
      if (previous === undefined) delete process.env.PARLEY_DEBUG;
      else process.env.PARLEY_DEBUG = previous;
    }
    expect(written).toEqual(['[parley] shown\n']);
  });
});

describe('oversized bodies', () => {
  it('dead-letters a body over maxBodyBytes unparsed, and goes on', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const broker = defineBroker(memoryDriver({ hub, destination }), { ...quiet, maxBodyBytes: 1_000 });
    const got: unknown[] = [];
    const sub = broker.subscribe((e) => void got.push(e), { group: 'g' });
    await sub.ready;
    hub.publishRaw(
      destination,
      Buffer.from(JSON.stringify({ sender_id: 'big', event: 'bot', text: 'x'.repeat(5_000) })),
    );
    await broker.publish(event('small', 1));
    await waitFor(
      () => got.length === 1 && sub.stats.deadLettered === 1,
      'the small event and one dead letter',
    );
    const [letter] = await broker.deadLetters('g');
    expect(letter).toMatchObject({ reason: 'undecodable', error: { code: 'EVENT_TOO_LARGE' } });
    expect(letter!.error.message).toContain('over the limit of 1000 bytes (maxBodyBytes): not parsed');
    expect(letter!.body.byteLength).toBeGreaterThan(5_000);
    await broker.close();
  });
});

describe('ephemeral groups', () => {
  it('leave nothing behind once their last consumer left', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const broker = defineBroker(memoryDriver({ hub, destination }), quiet);
    const got: unknown[] = [];
    const sub = broker.subscribe((e) => void got.push(e), { group: 'tail', ephemeral: true });
    await sub.ready;
    await broker.publish(event('a', 1));
    await waitFor(() => got.length === 1, 'the event');
    expect(hub.groups(destination).map((g) => g.name)).toEqual(['tail']);
    await sub.close();
    expect(hub.groups(destination)).toEqual([]);
    await broker.close();
  });
});

describe('close({ timeoutMs }) bounds the whole close', () => {
  it('gives up on a handler that never finishes: its event goes back to the group', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const broker = defineBroker(memoryDriver({ hub, destination }), quiet);
    let started = false;
    const sub = broker.subscribe(
      () => {
        started = true;
        return new Promise(() => {}); // ignores its signal, never resolves
      },
      { group: 'g' },
    );
    await sub.ready;
    await broker.publish(event('a', 1));
    await waitFor(() => started, 'the handler to start');
    const begun = Date.now();
    await broker.close({ timeoutMs: 300 });
    expect(Date.now() - begun).toBeLessThan(2_000);
    await sub.closed;
    const peer = defineBroker(memoryDriver({ hub, destination }), quiet);
    const got: unknown[] = [];
    const next = peer.subscribe((e) => void got.push(e), { group: 'g' });
    await next.ready;
    await waitFor(() => got.length === 1, 'a peer to get the event back');
    await peer.close();
  });
});

describe('read-ahead handed back untried', () => {
  it('does not use up attempts where the broker counts deliveries', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    await defineBroker(memoryDriver({ hub, destination }), quiet).publish(event('s0', 0));
    const others = defineBroker(memoryDriver({ hub, destination }), quiet);
    for (let s = 1; s <= 4; s++) await others.publish(event(`s${s}`, s));
    for (let round = 0; round < 3; round++) {
      const broker = defineBroker(memoryDriver({ hub, destination }), quiet);
      let blocked = false;
      const sub = broker.subscribe(
        () => {
          blocked = true;
          return new Promise(() => {}); // holds the first event; the other four wait, read ahead
        },
        { group: 'g', from: 'beginning', concurrency: 1, readAhead: 5, maxAttempts: 5 },
      );
      await sub.ready;
      await waitFor(() => blocked && sub.stats.received === 5, `round ${round}: one held, four read ahead`);
      await broker.close({ timeoutMs: 10 });
    }
    const broker = defineBroker(memoryDriver({ hub, destination }), quiet);
    const attempts = new Map<string, number>();
    const sub = broker.subscribe((e, context) => void attempts.set(e.sender_id, context.attempt), {
      group: 'g',
      maxAttempts: 5,
    });
    await sub.ready;
    await waitFor(() => attempts.size === 5, 'every event handled');
    // s0 was in a handler three times; the others were only read ahead, which costs nothing.
    expect(Object.fromEntries(attempts)).toEqual({ s0: 4, s1: 1, s2: 1, s3: 1, s4: 1 });
    expect(sub.stats.deadLettered).toBe(0);
    await Promise.all([broker.close(), others.close()]);
  });
});
