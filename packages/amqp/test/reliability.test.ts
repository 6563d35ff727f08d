/**
 * Regression tests for the defects fault injection found (issue 7 defect 2, issue 8 defects 1–6), each against a
 * real RabbitMQ: the tests' own node (own-node.ts), since several lower its limits or cut it off.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startFaultProxy } from '@parley/conformance';
import {
  type AnyEvent,
  type Broker,
  brokerConfig,
  type Delivery,
  type EventEnvelope,
  slotSet,
} from '@parley/core';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AmqpBrokerOptions, amqpBroker, amqpDriver, resolveAmqpSettings } from '../src/index.js';
import { type OwnNode, setRabbitEnv } from './own-node.js';
import { ownNode } from './support.js';

let node: OwnNode;
let raw: ChannelModel | undefined;
const open: Broker[] = [];
let n = 0;
const names = () => {
  const base = `rel-${process.pid}-${++n}`;
  return { exchange: `${base}-x`, queue: `${base}-q` };
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(() => {
  node = ownNode();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close({ timeoutMs: 2_000 })));
});
afterAll(async () => {
  await raw?.close().catch(() => {});
});

async function rawChannel(): Promise<Channel> {
  if (!raw) {
    raw = await connect(node.url);
    raw.on('error', () => {});
  }
  const channel = await raw.createChannel();
  channel.on('error', () => {});
  return channel;
}

function broker(options: Partial<AmqpBrokerOptions> & { exchange_name: string; queues: string[] }): Broker {
  const made = amqpBroker({
    url: node.url,
    retry_delay_in_seconds: 0.2,
    onWarning: () => {},
    ...options,
  });
  open.push(made);
  return made;
}

/** Everything in a queue, read with a raw client (acknowledged: gone afterwards). */
async function drain(queue: string, count: number, timeoutMs = 20_000) {
  const channel = await rawChannel();
  const got: { body: string; headers: Record<string, unknown> }[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < count && Date.now() < deadline) {
    const m = await channel.get(queue, { noAck: true });
    if (m) got.push({ body: m.content.toString(), headers: m.properties.headers ?? {} });
    else await sleep(20);
  }
  await channel.close();
  return got;
}

/** Driver settings for the own node, as endpoints.yml keys would give them. */
const settingsFor = (exchange: string, queue: string) =>
  resolveAmqpSettings(
    brokerConfig({ type: 'amqp', url: node.url, exchange_name: exchange, queues: [queue] }, 'test'),
    {
      warn: () => {},
    },
  );

const slot = (sender: string, value: unknown): EventEnvelope<AnyEvent> => ({
  sender_id: sender,
  ...slotSet('n', value as number),
});

describe('issue 7.2: a subscription whose queue cannot be declared fails alone', () => {
  it('reports the 406 to that subscription only; after a 300 ms cut the connection and the others go on', async () => {
    const proxy = await startFaultProxy({ upstream: { host: node.host, port: node.port } });
    try {
      const { exchange, queue } = names();
      // Someone else declared the queue of group "other" with arguments Parley does not use.
      const channel = await rawChannel();
      await channel.assertExchange(exchange, 'fanout', { durable: false });
      await channel.assertQueue(`${exchange}.other`, { durable: true, arguments: { 'x-max-length': 10 } });
      await channel.close();
      const b = broker({
        url: `amqp://guest:guest@${proxy.address}`,
        exchange_name: exchange,
        queues: [queue],
        heartbeat: 2,
      });
      const got: unknown[] = [];
      const good = b.subscribe((e) => void got.push(e.event === 'slot' ? e.value : undefined), {
        group: queue,
      });
      const errors: Error[] = [];
      const bad = b.subscribe(() => {}, { group: 'other', onError: (e) => errors.push(e) });
      await good.ready;
      await expect(bad.ready).rejects.toThrow(/PRECONDITION_FAILED - inequivalent arg 'x-max-length'/);
      await bad.closed;
      expect(bad.failure?.message).toMatch(
        /cannot consume group "other" from queue ".*\.other": .*406.*delete the queue or use another group/,
      );
      expect(errors.map((e) => e.message)).toEqual([bad.failure?.message]);

      await proxy.outage(300);
      const started = Date.now();
      await b.publish(slot('s', 1));
      const took = Date.now() - started;
      await expect.poll(() => got, { timeout: 10_000 }).toEqual([1]);
      const health = await b.health();
      console.info(
        `[7.2] publish after a 300 ms cut resolved in ${took} ms; health ${JSON.stringify(health)}`,
      );
      expect(took).toBeLessThan(5_000);
      expect(health).toMatchObject({ ready: true, subscriptions: 1, reconnects: 1 });
      expect(health.detail).toMatchObject({ connected: true, consumers: 1 });
      await expect.poll(() => good.stats.resumed).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});

describe('issue 8.1: RabbitMQ closes the publish channel, the connection stays', () => {
  afterEach(() => setRabbitEnv(node.node, 'max_message_size', 134217728)); // RabbitMQ 3.10's default

  it("an event over max_message_size fails alone with the broker's reason; the others are sent, and publishing goes on", async () => {
    setRabbitEnv(node.node, 'max_message_size', 4096);
    const { exchange, queue } = names();
    const b = broker({ exchange_name: exchange, queues: [queue] });
    await b.ready();
    const big = slot('s', 'x'.repeat(8_000));
    const results = await Promise.allSettled([
      ...Array.from({ length: 10 }, (_, i) => b.publish(slot('s', i))),
      b.publish(big),
      ...Array.from({ length: 10 }, (_, i) => b.publish(slot('s', 10 + i))),
    ]);
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused).toHaveLength(1);
    expect(String((refused[0] as PromiseRejectedResult).reason)).toMatch(
      /publish refused: RabbitMQ refused it: .*message size \d+ is larger than configured max size 4096/,
    );
    // The next oversized one is refused at once, without costing a channel; small ones keep going.
    const started = Date.now();
    await expect(b.publish(big)).rejects.toThrow(/over RabbitMQ's max_message_size \(4096 bytes\)/);
    await b.publish(slot('s', 20));
    expect(Date.now() - started).toBeLessThan(2_000);
    // Published before the refused one but not confirmed when RabbitMQ closed the channel: sent again (at least
    // once), so duplicates are allowed; each value comes, and in order.
    const values = (await drain(queue, 21)).map((m) => JSON.parse(m.body).value);
    await sleep(200);
    values.push(...(await drain(queue, 100, 500)).map((m) => JSON.parse(m.body).value));
    expect([...new Set(values)]).toEqual(Array.from({ length: 21 }, (_, i) => i));
    console.info(`[8.1] ${values.length} messages for 21 events (${values.length - 21} sent again)`);
    expect(await b.health()).toMatchObject({ ready: true, buffered: 0, detail: { connected: true } });
  });

  it('a deleted exchange is declared again (with its bindings) and the publish is sent again', async () => {
    const { exchange, queue } = names();
    const b = broker({ exchange_name: exchange, queues: [queue] });
    await b.publish(slot('s', 1));
    const channel = await rawChannel();
    await channel.deleteExchange(exchange); // the binding of `queue` goes with it
    await channel.close();
    const started = Date.now();
    await b.publish(slot('s', 2));
    await b.publish(slot('s', 3));
    console.info(`[8.1] publish after the exchange was deleted resolved in ${Date.now() - started} ms`);
    expect((await drain(queue, 3)).map((m) => JSON.parse(m.body).value)).toEqual([1, 2, 3]);
  });
});

describe("issue 8.2: one sender's events stay in order under socket backpressure", () => {
  it('20,000 events at full speed from 20 senders: no inversion', async () => {
    const { exchange, queue } = names();
    const b = broker({ exchange_name: exchange, queues: [queue], buffer_size: 25_000 });
    await b.ready();
    const pad = 'p'.repeat(400); // ~500-byte bodies: 10 MB in one burst, far over the socket's buffer
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 20_000 }, (_, i) => b.publish(slot(`s${i % 20}`, `${Math.floor(i / 20)}:${pad}`))),
    );
    const published = Date.now() - started;
    const last = new Map<string, number>();
    let inversions = 0;
    for (const m of await drain(queue, 20_000, 60_000)) {
      const event = JSON.parse(m.body);
      const seq = Number(String(event.value).split(':')[0]);
      if (seq <= (last.get(event.sender_id) ?? -1)) inversions++;
      last.set(event.sender_id, seq);
    }
    console.info(`[8.2] 20,000 events published in ${published} ms, ${inversions} inversions`);
    expect([...last.values()]).toEqual(Array.from({ length: 20 }, () => 999));
    expect(inversions).toBe(0);
  });
});

describe("issue 8.2, the driver's part: batches go out in the order send() was called", () => {
  it('two batches of one sender handed over at once, each waiting for the socket to drain: no interleaving', async () => {
    const { exchange, queue } = names();
    const driver = amqpDriver(settingsFor(exchange, queue));
    await driver.connect({ signal: new AbortController().signal, lost: () => {} });
    try {
      const pad = 'p'.repeat(2_000); // 2 × 3,000 × 2 KB: the socket pushes back within each batch
      const batch = (from: number) =>
        Array.from({ length: 3_000 }, (_, i) => ({
          id: `m-${from + i}`,
          body: Buffer.from(
            JSON.stringify({ sender_id: 's', event: 'slot', name: 'n', value: `${from + i}:${pad}` }),
          ),
          senderId: 's',
          eventName: 'slot',
          headers: {},
        }));
      // Core never does this for one sender; the driver keeps the order anyway, whoever calls it.
      const outcomes = await Promise.all([driver.send(batch(0)), driver.send(batch(3_000))]);
      expect(outcomes.flat().every((o) => o.ok)).toBe(true);
      const seqs = (await drain(queue, 6_000, 60_000)).map((m) =>
        Number(JSON.parse(m.body).value.split(':')[0]),
      );
      expect(seqs).toEqual(Array.from({ length: 6_000 }, (_, i) => i));
    } finally {
      await driver.close();
    }
  });
});

describe('issue 8.3: a poison message whose dead letter is hard to store', () => {
  it("headers near amqplib's 64 KiB limit: the dead letter keeps the body and the error, and it does not loop", async () => {
    const { exchange, queue } = names();
    const b = broker({ exchange_name: exchange, queues: [queue] });
    const errors: Error[] = [];
    const sub = b.subscribe(() => {}, { onError: (e) => errors.push(e) });
    await sub.ready;
    // A foreign producer's message: not an event, with headers that just fit amqplib's 64 KiB table (65,536 bytes
    // encoded): with the x-parley-* headers on top, they would not.
    const channel = await rawChannel();
    channel.publish(exchange, '', Buffer.from('not json'), { headers: { big: 'h'.repeat(65_300) } });
    await channel.close();
    await sleep(3_000);
    console.info(`[8.3] deliveries of the poison message in 3 s: ${sub.stats.received}`);
    expect(sub.stats.deadLettered).toBe(1);
    expect(sub.stats.received).toBe(1);
    const [dead] = await drain(`${queue}.dead-letter`, 1);
    expect(dead?.body).toBe('not json');
    expect(dead?.headers).toMatchObject({
      'x-parley-reason': 'undecodable',
      'x-parley-headers-dropped': expect.any(String),
    });
    expect(String(dead?.headers['x-parley-error'])).toMatch(/JSON/i);
    expect(dead?.headers.big).toBeUndefined();
    expect(errors).toEqual([]);
  });
});

describe('issue 8.4: a consumer channel RabbitMQ closes (consumer_timeout)', () => {
  beforeAll(() => {
    setRabbitEnv(node.node, 'consumer_timeout', 1_000);
    setRabbitEnv(node.node, 'channel_tick_interval', 200); // how often RabbitMQ checks the timeout
  });
  afterAll(() => {
    setRabbitEnv(node.node, 'consumer_timeout', 1_800_000);
    setRabbitEnv(node.node, 'channel_tick_interval', 60_000);
  });

  it('is reported and resumed; the message comes again; the held one is revoked and its ack not counted', async () => {
    const { exchange, queue } = names();
    const b = broker({ exchange_name: exchange, queues: [queue] });
    const errors: Error[] = [];
    const deliveries: { redelivered: boolean; aborted: boolean }[] = [];
    const sub = b.subscribe(
      async (_event, context) => {
        const record = { redelivered: context.redelivered, aborted: false };
        deliveries.push(record);
        if (deliveries.length > 1) return;
        // The first delivery is held past consumer_timeout: RabbitMQ closes the channel under it.
        await new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve()));
        record.aborted = true;
      },
      { onError: (e) => errors.push(e) },
    );
    await sub.ready;
    await b.publish(slot('s', 1));
    await expect.poll(() => deliveries.length, { timeout: 15_000 }).toBe(2);
    await expect.poll(() => sub.stats.acked, { timeout: 5_000 }).toBe(1);
    console.info(`[8.4] ${JSON.stringify(sub.stats)}; onError: ${errors.map((e) => e.message).join(' | ')}`);
    expect(deliveries).toEqual([
      { redelivered: false, aborted: true },
      { redelivered: true, aborted: false },
    ]);
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringMatching(
        /consumer of group ".*" lost .*delivery acknowledgement on channel \d+ timed out.*; resuming/,
      ),
    ]);
    expect(sub.stats).toMatchObject({ received: 2, acked: 1, revoked: 1, resumed: 1 });
    expect((await b.health()).detail).toMatchObject({ consumers: 1 });
  });

  it('ack() rejects once the channel that delivered the message is closed', async () => {
    const { exchange, queue } = names();
    const driver = amqpDriver(settingsFor(exchange, queue));
    const lost: Error[] = [];
    await driver.connect({ signal: new AbortController().signal, lost: (e) => lost.push(e) });
    try {
      const delivered: Delivery[] = [];
      const sinkLost: Error[] = [];
      await driver.consume(
        { group: queue, readAhead: 1, from: 'latest', ordering: 'per-sender' },
        { deliver: (d) => delivered.push(d), lost: (e) => sinkLost.push(e) },
      );
      const [outcome] = await driver.send([
        {
          id: 'm-1',
          body: Buffer.from('{"sender_id": "s", "event": "action", "name": "a"}'),
          senderId: 's',
          eventName: 'action',
          headers: {},
        },
      ]);
      expect(outcome).toEqual({ ok: true });
      await expect.poll(() => delivered.length).toBe(1);
      expect(delivered[0]!.id).toBe('m-1');
      await expect.poll(() => sinkLost.length, { timeout: 10_000 }).toBe(1);
      expect(delivered[0]!.revoked?.aborted).toBe(true);
      await expect(delivered[0]!.ack()).rejects.toThrow(
        /not acknowledged: its channel closed .*timed out.*RabbitMQ delivers it again/,
      );
      expect(lost).toEqual([]); // the connection stayed up
    } finally {
      await driver.close();
    }
  });
});

describe('issue 8.5: close on a black-holed network', () => {
  const script = join(import.meta.dirname, 'fixtures', 'close-stalled.ts');

  /** Runs the fixture in a child process, stalls the network when it is ready, and times its close and its exit. */
  async function closeStalled(withSubscription: boolean) {
    const proxy = await startFaultProxy({ upstream: { host: node.host, port: node.port } });
    try {
      const { exchange, queue } = names();
      const child = spawn(process.execPath, ['--import', 'tsx', script], {
        env: {
          ...process.env,
          URL: `amqp://guest:guest@${proxy.address}`,
          EXCHANGE: exchange,
          QUEUE: queue,
          SUBSCRIBE: withSubscription ? '1' : '',
        },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const exited = new Promise<number>((resolve) => child.once('exit', () => resolve(Date.now())));
      const lines: string[] = [];
      const line = (prefix: string) =>
        new Promise<string>((resolve) => {
          const check = () => {
            const found = lines.find((l) => l.startsWith(prefix));
            if (found) resolve(found);
            else child.stdout.once('data', check);
          };
          check();
        });
      let buffered = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const parts = buffered.split('\n');
        buffered = parts.pop()!;
        lines.push(...parts);
      });
      await line('ready');
      await proxy.stall();
      child.stdin.write('close\n');
      const closed = await line('closed');
      const closedAt = Date.now();
      const exit = await Promise.race([exited, sleep(30_000).then(() => undefined)]);
      if (exit === undefined) child.kill('SIGKILL');
      return {
        closeMs: Number(closed.split(' ')[1]),
        exitMs: exit === undefined ? Number.POSITIVE_INFINITY : exit - closedAt,
      };
    } finally {
      await proxy.close();
    }
  }

  it('close({ timeoutMs: 5000 }) with a subscription ends within its timeout, and the process exits', async () => {
    const { closeMs, exitMs } = await closeStalled(true);
    console.info(
      `[8.5] with a subscription: close took ${closeMs} ms, the process exited ${exitMs} ms later`,
    );
    expect(closeMs).toBeLessThan(5_500); // the timeout bounds the whole close
    expect(exitMs).toBeLessThan(2_000);
  });

  it('close({ timeoutMs: 5000 }) with nothing but publishing ends within its timeout, and the process exits', async () => {
    const { closeMs, exitMs } = await closeStalled(false);
    console.info(
      `[8.5] without subscriptions: close took ${closeMs} ms, the process exited ${exitMs} ms later`,
    );
    expect(closeMs).toBeLessThan(5_500); // the timeout bounds the whole close
    expect(exitMs).toBeLessThan(2_000);
  });
});

describe('issue 8.6: a publish that can never be encoded', () => {
  it("headers over amqplib's 64 KiB table: rejects at once as not retryable, and delays nothing after it", async () => {
    const { exchange, queue } = names();
    const b = broker({ exchange_name: exchange, queues: [queue] });
    await b.ready();
    const started = Date.now();
    const failing = b.publish(slot('s', 0), { headers: { big: 'h'.repeat(70_000) } });
    const after = Array.from({ length: 50 }, (_, i) => b.publish(slot('t', i)));
    await expect(failing).rejects.toMatchObject({
      code: 'MESSAGE_REFUSED',
      message: expect.stringMatching(/publish refused: cannot be encoded: .*field table/),
    });
    const rejectedIn = Date.now() - started;
    await Promise.all(after);
    const allIn = Date.now() - started;
    console.info(`[8.6] rejected in ${rejectedIn} ms; the 50 publishes after it resolved in ${allIn} ms`);
    expect(rejectedIn).toBeLessThan(1_000);
    expect(allIn).toBeLessThan(1_000);
  });
});
