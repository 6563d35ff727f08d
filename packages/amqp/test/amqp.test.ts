import { startFaultProxy } from '@parley/conformance';
import {
  type AnyEvent,
  type Broker,
  createBroker,
  type EventEnvelope,
  parseEndpoints,
  slotSet,
  userUttered,
} from '@parley/core';
import { type ChannelModel, connect, type GetMessage, type Message } from 'amqplib';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { amqpBroker } from '../src/index.js';
import { restartApp } from './own-node.js';
import { AMQP_URL, deleteQueuesWithPrefix, ownNode } from './support.js';

const prefix = `amqp-test-${process.pid}-`;
let n = 0;
const names = () => {
  const base = `${prefix}${++n}`;
  return { exchange: `${base}-x`, queue: `${base}-q` };
};
const quiet = { onWarning: () => {} };
const open: Broker[] = [];
const track = <B extends Broker>(b: B): B => {
  open.push(b);
  return b;
};
let raw: ChannelModel | undefined;
const rawChannel = async () => {
  raw ??= await connect(AMQP_URL);
  const ch = await raw.createChannel();
  ch.on('error', () => {});
  return ch;
};

afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close({ timeoutMs: 2_000 })));
});
afterAll(async () => {
  await raw?.close().catch(() => {});
  await deleteQueuesWithPrefix(prefix);
});

async function getAll(queue: string, count: number, timeoutMs = 10_000): Promise<GetMessage[]> {
  const ch = await rawChannel();
  const got: GetMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < count && Date.now() < deadline) {
    const m = await ch.get(queue, { noAck: true });
    if (m) got.push(m);
    else await new Promise((r) => setTimeout(r, 50));
  }
  await ch.close();
  return got;
}

/** Collects events until `count` distinct ones (by sender and timestamp) arrived: redeliveries are duplicates. */
function collector(count: number) {
  const seen: EventEnvelope<AnyEvent>[] = [];
  const distinct = new Set<string>();
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  return {
    seen,
    all,
    handler: (e: EventEnvelope<AnyEvent>) => {
      seen.push(e);
      distinct.add(`${e.sender_id}/${e.timestamp}/${e.event === 'slot' ? String(e.value) : ''}`);
      if (distinct.size === count) done();
    },
  };
}

describe('messages and topology, exactly as Rasa', () => {
  it('publishes persistent messages to the fanout exchange with routing key "", python json.dumps bodies', async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    await broker.ready();
    const event = {
      sender_id: 'ü-1',
      ...userUttered('Grüß dich', { timestamp: 1718964816.1, intent: { name: 'greet', confidence: 1 } }),
    };
    await broker.publish(event);
    const [m] = await getAll(queue, 1);
    expect(m).toBeDefined();
    expect(m!.fields.exchange).toBe(exchange);
    expect(m!.fields.routingKey).toBe('');
    expect(m!.properties.deliveryMode).toBe(2);
    expect(m!.properties.contentType).toBeUndefined();
    expect(m!.properties.appId).toBeUndefined();
    expect(m!.content.toString()).toBe(
      '{"sender_id": "\\u00fc-1", "event": "user", "timestamp": 1718964816.1, "text": "Gr\\u00fc\\u00df dich", ' +
        '"parse_data": {"intent": {"name": "greet", "confidence": 1.0}, "entities": [], "text": "Gr\\u00fc\\u00df dich", ' +
        '"message_id": null, "metadata": {}}, "input_channel": null, "message_id": null, "metadata": {}}',
    );
  });

  it('sends RASA_ENVIRONMENT as app_id', async () => {
    const { exchange, queue } = names();
    process.env.RASA_ENVIRONMENT = 'staging';
    try {
      const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
      await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    } finally {
      delete process.env.RASA_ENVIRONMENT;
    }
    const [m] = await getAll(queue, 1);
    expect(m!.properties.appId).toBe('staging');
  });

  it("declares the exchange and queues with Rasa's flags: a Rasa-style declaration after Parley's succeeds", async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    await broker.ready();
    const ch = await rawChannel();
    // aio-pika's defaults, as Rasa declares them; any difference would close the channel with 406.
    await ch.checkExchange(exchange);
    await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: false, internal: false });
    await ch.assertQueue(queue, { durable: true, exclusive: false, autoDelete: false });
    await expect(ch.assertExchange(exchange, 'fanout', { durable: true })).rejects.toThrow(
      /PRECONDITION_FAILED/,
    );
  });

  it('fans out to every configured queue', async () => {
    const { exchange, queue } = names();
    const broker = track(
      amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [`${queue}-a`, `${queue}-b`], ...quiet }),
    );
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    expect(await getAll(`${queue}-a`, 1)).toHaveLength(1);
    expect(await getAll(`${queue}-b`, 1)).toHaveLength(1);
  });
});

describe('endpoints.yml', () => {
  it('loads type: pika with Rasa keys through createBroker', async () => {
    const { exchange, queue } = names();
    const url = new URL(AMQP_URL);
    const config = parseEndpoints(
      `event_broker:\n  type: pika\n  url: ${url.hostname}\n  port: ${url.port || 5672}\n  username: guest\n` +
        `  password: \${RABBIT_PASSWORD}\n  queues:\n    - ${queue}\n  exchange_name: ${exchange}\n`,
      'endpoints.yml',
      { env: { RABBIT_PASSWORD: 'guest' } },
    );
    const broker = track(await createBroker(config!, quiet));
    expect(broker.name).toBe('amqp');
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    expect(await getAll(queue, 1)).toHaveLength(1);
  });

  it('createBroker takes the same section as a plain object: { type: "pika", url, … }', async () => {
    const { exchange, queue } = names();
    const url = new URL(AMQP_URL);
    const broker = track(
      await createBroker(
        {
          type: 'pika',
          url: url.hostname,
          port: url.port || '5672',
          username: decodeURIComponent(url.username) || 'guest',
          // biome-ignore lint/suspicious/noTemplateCurlyInString: endpoints.yml's `${VAR}` syntax
          password: '${RABBIT_PASSWORD}',
          queues: [queue],
          exchange_name: exchange,
        },
        { ...quiet, env: { RABBIT_PASSWORD: decodeURIComponent(url.password) || 'guest' } },
      ),
    );
    expect(broker.name).toBe('amqp');
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    expect(await getAll(queue, 1)).toHaveLength(1);
  });
});

describe('reliability', () => {
  it('resumes every consumer after the connection drops, and loses nothing', async () => {
    const { exchange, queue } = names();
    const proxy = await startFaultProxy({
      upstream: { host: new URL(AMQP_URL).hostname, port: Number(new URL(AMQP_URL).port || 5672) },
    });
    try {
      const url = `amqp://guest:guest@${proxy.address}`;
      const broker = track(
        amqpBroker({ url, exchange_name: exchange, queues: [queue], heartbeat: 2, ...quiet }),
      );
      const a = collector(40);
      const b = collector(40);
      const subA = broker.subscribe(a.handler, { group: 'a' });
      const subB = broker.subscribe(b.handler, { group: 'b' });
      await Promise.all([subA.ready, subB.ready]);
      for (let i = 0; i < 20; i++) await broker.publish({ sender_id: 's', ...slotSet('n', i) });
      await proxy.cut();
      // Published while the connection is down: buffered, sent once it is back.
      const later = Array.from({ length: 20 }, (_, i) =>
        broker.publish({ sender_id: 's', ...slotSet('n', 20 + i) }),
      );
      await new Promise((r) => setTimeout(r, 500));
      expect(broker.isReady()).toBe(false);
      await proxy.restore();
      await Promise.all(later);
      await Promise.all([a.all, b.all]);
      const values = (seen: EventEnvelope<AnyEvent>[]) =>
        [...new Set(seen.map((e) => (e.event === 'slot' ? e.value : -1)))].sort(
          (x, y) => Number(x) - Number(y),
        );
      expect(values(a.seen)).toEqual(Array.from({ length: 40 }, (_, i) => i));
      expect(values(b.seen)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    } finally {
      await proxy.close();
    }
  });

  it('keeps what is published before the first connection, and sends it once RabbitMQ answers', async () => {
    const { exchange, queue } = names();
    const proxy = await startFaultProxy({
      upstream: { host: new URL(AMQP_URL).hostname, port: Number(new URL(AMQP_URL).port || 5672) },
    });
    try {
      await proxy.refuse();
      const broker = track(
        amqpBroker({
          url: `amqp://guest:guest@${proxy.address}`,
          exchange_name: exchange,
          queues: [queue],
          retry_delay_in_seconds: 0.2,
          ...quiet,
        }),
      );
      const publishes = Array.from({ length: 10 }, (_, i) =>
        broker.publish({ sender_id: 's', ...slotSet('n', i) }),
      );
      await new Promise((r) => setTimeout(r, 700));
      expect((await broker.health()).buffered).toBe(10);
      await proxy.restore();
      await Promise.all(publishes);
      const got = await getAll(queue, 10);
      expect(got.map((m) => JSON.parse(m.content.toString()).value)).toEqual(
        Array.from({ length: 10 }, (_, i) => i),
      );
    } finally {
      await proxy.close();
    }
  });

  it('gives up on the first connection after connection_attempts, failing what waits (Rasa: ConnectionException)', async () => {
    const broker = track(
      amqpBroker({
        url: 'amqp://guest:guest@127.0.0.1:1',
        connection_attempts: 2,
        retry_delay_in_seconds: 0.05,
        ...quiet,
      }),
    );
    await expect(broker.publish({ sender_id: 's', ...slotSet('a', 1) })).rejects.toThrow(
      /\[parley\] \[amqp\] gave up after 2 connection attempts: cannot connect to amqp:\/\/guest:<redacted>@127\.0\.0\.1:1/,
    );
  });

  it('fails at once on a wrong password or a vhost it may not use, saying which (never retried)', async () => {
    const url = new URL(AMQP_URL);
    const wrong = track(
      amqpBroker({
        url: `amqp://guest:not-the-password@${url.host}`,
        retry_delay_in_seconds: 0.05,
        ...quiet,
      }),
    );
    const started = Date.now();
    const error = await wrong.publish({ sender_id: 's', ...slotSet('a', 1) }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(error).toMatchObject({ code: 'AUTH_FAILED', retryable: false });
    expect(String(error)).toMatch(
      /^ConnectionError: \[parley\] \[amqp\] authentication failed \(check username and password\) at amqp:\/\/guest:<redacted>@/,
    );
    expect(String(error)).not.toContain('not-the-password');
    const vhost = track(amqpBroker({ url: `amqp://guest:guest@${url.host}/no-such-vhost`, ...quiet }));
    await expect(vhost.ready({ timeoutMs: 3_000 })).rejects.toThrow(
      /authorisation failed \(check that the user may use the virtual host/,
    );
  });

  it('fails fast instead of buffering with should_keep_unpublished_messages: false, before the first connection too', async () => {
    const { exchange, queue } = names();
    const proxy = await startFaultProxy({
      upstream: { host: new URL(AMQP_URL).hostname, port: Number(new URL(AMQP_URL).port || 5672) },
    });
    try {
      const broker = track(
        amqpBroker({
          url: `amqp://guest:guest@${proxy.address}`,
          exchange_name: exchange,
          queues: [queue],
          should_keep_unpublished_messages: false,
          retry_delay_in_seconds: 0.2,
          ...quiet,
        }),
      );
      await broker.ready();
      await proxy.cut();
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      await expect(broker.publish({ sender_id: 's', ...slotSet('a', 1) })).rejects.toThrow(
        /cannot connect to amqp:\/\/guest:<redacted>@127\.0\.0\.1:\d+/,
      );
      expect(Date.now() - started).toBeLessThan(2_000);
      // Never connected at all: the same.
      const never = track(
        amqpBroker({
          url: `amqp://guest:guest@${proxy.address}`,
          exchange_name: exchange,
          queues: [queue],
          raise_on_failure: true,
          ...quiet,
        }),
      );
      await expect(never.publish({ sender_id: 's', ...slotSet('a', 1) })).rejects.toThrow(/cannot connect/);
    } finally {
      await proxy.close();
    }
  });

  it('fails over to the next host in hosts', async () => {
    const { exchange, queue } = names();
    const url = new URL(AMQP_URL);
    const broker = track(
      amqpBroker({
        url: 'amqp://guest:guest@127.0.0.1:1',
        hosts: [`amqp://guest:guest@${url.host}`],
        exchange_name: exchange,
        queues: [queue],
        ...quiet,
      }),
    );
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    expect(await getAll(queue, 1)).toHaveLength(1);
    expect((await broker.health()).detail?.host).toBe(`amqp://guest:<redacted>@${url.host}`);
  });
});

describe('prefetch', () => {
  it('the prefetch key sets the default concurrency of subscriptions, and the channel prefetch', async () => {
    const { exchange, queue } = names();
    const broker = track(
      amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], prefetch: 4, ...quiet }),
    );
    let running = 0;
    let most = 0;
    const c = collector(12);
    const sub = broker.subscribe(
      async (e) => {
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 30));
        running--;
        c.handler(e);
      },
      { ordering: 'none' },
    );
    await sub.ready;
    await Promise.all(
      Array.from({ length: 12 }, (_, i) => broker.publish({ sender_id: `s${i}`, ...slotSet('n', i) })),
    );
    await c.all;
    expect(most).toBe(4);
  });
});

describe('groups', () => {
  it("reads Rasa's queues by name, and gives any other group a queue of its own exchange", async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const rasa = collector(1);
    const own = collector(1);
    const subs = [
      broker.subscribe(rasa.handler, { group: queue }),
      broker.subscribe(own.handler, { group: 'analytics' }),
    ];
    await Promise.all(subs.map((s) => s.ready));
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    await Promise.all([rasa.all, own.all]);
    const ch = await rawChannel();
    await ch.checkQueue(`${exchange}.analytics`); // throws (404) when missing
    await ch.close();
  });
});

describe('ephemeral groups', () => {
  it('consume from an exclusive, auto-delete queue that is gone once the subscription closes', async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const c = collector(1);
    const sub = broker.subscribe(c.handler, { group: 'demo', ephemeral: true });
    await sub.ready;
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    await c.all;
    await sub.close();
    // The queue went with its last consumer; the dead-letter queue is the broker connection's until it closes.
    await expect((await rawChannel()).checkQueue(`${exchange}.demo`)).rejects.toThrow(/404/);
    await expect((await rawChannel()).checkQueue(`${exchange}.demo.dead-letter`)).rejects.toThrow(/405/);
    await broker.close();
    await expect((await rawChannel()).checkQueue(`${exchange}.demo.dead-letter`)).rejects.toThrow(/404/);
  });

  it("refuses one of Rasa's queues as an ephemeral group", async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const sub = broker.subscribe(() => {}, { group: queue, ephemeral: true });
    await expect(sub.ready).rejects.toThrow(/is one of queues .*cannot be ephemeral/);
  });
});

describe('dead letters', () => {
  it('go to <group>.dead-letter with the original bytes, the error and the attempt count in headers', async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const sub = broker.subscribe(
      () => {
        throw new Error('handler exploded');
      },
      { maxAttempts: 3, backoff: { initialMs: 10, maxMs: 20 } },
    );
    await sub.ready;
    await broker.publish({ sender_id: 'dl', ...slotSet('a', 1, { timestamp: 5 }) });
    const [m] = await getAll(`${queue}.dead-letter`, 1);
    expect(m!.content.toString()).toBe(
      '{"sender_id": "dl", "event": "slot", "timestamp": 5.0, "name": "a", "value": 1}',
    );
    expect(m!.properties.headers).toMatchObject({
      'x-parley-reason': 'handler-failed',
      'x-parley-error': 'handler exploded',
      'x-parley-attempts': '3',
      'x-parley-group': queue,
      'x-parley-sender-id': 'dl',
    });
    expect(sub.stats.deadLettered).toBe(1);
  });
});

describe('dead letters through the contract: deadLetters() and redrive()', () => {
  it("lists a group's dead letters without consuming them, and redrives the chosen ones to that group only", async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const other = collector(1);
    await broker.subscribe(other.handler, { group: 'other' }).ready;
    let failing = true;
    const handled: number[] = [];
    const sub = broker.subscribe(
      (e) => {
        if (failing) throw new Error(`no ${e.event === 'slot' ? String(e.value) : ''}`);
        handled.push(e.event === 'slot' ? Number(e.value) : -1);
      },
      { maxAttempts: 1 },
    );
    await sub.ready;
    for (let i = 0; i < 3; i++)
      await broker.publish({ sender_id: 'dl', ...slotSet('n', i) }, { headers: { k: `v${i}` } });
    await expect.poll(() => sub.stats.deadLettered, { timeout: 10_000 }).toBe(3);
    await other.all;

    const letters = await broker.deadLetters(queue);
    expect(letters.map((l) => [l.reason, l.error.message, l.attempts, l.senderId, l.headers])).toEqual(
      [0, 1, 2].map((i) => ['handler-failed', `no ${i}`, 1, 'dl', { k: `v${i}` }]),
    );
    expect(new Set(letters.map((l) => l.id)).size).toBe(3);
    expect(letters.every((l) => l.id.startsWith('dl-') && l.messageId !== '' && l.group === queue)).toBe(
      true,
    );
    // Listing took nothing: a second look sees the same, in the same order.
    expect((await broker.deadLetters(queue)).map((l) => l.id)).toEqual(letters.map((l) => l.id));

    failing = false;
    expect(await broker.redrive({ group: queue, ids: [letters[0]!.id, letters[2]!.id] })).toEqual({
      redriven: 2,
    });
    await expect.poll(() => [...handled].sort(), { timeout: 10_000 }).toEqual([0, 2]);
    expect((await broker.deadLetters(queue)).map((l) => l.id)).toEqual([letters[1]!.id]);
    // The other group got each event once, when it was published: a redrive goes to its own group only.
    await new Promise((r) => setTimeout(r, 300));
    expect(other.seen).toHaveLength(3);
    await expect(broker.redrive({ group: queue, ids: ['nope'] })).rejects.toThrow(
      /no dead letter of group .* has the id "nope"/,
    );
    expect(await broker.redrive({ group: queue })).toEqual({ redriven: 1 });
    await expect.poll(() => [...handled].sort(), { timeout: 10_000 }).toEqual([0, 1, 2]);
    expect(await broker.deadLetters(queue)).toEqual([]);
  });

  it('a group with no dead-letter queue yet has no dead letters', async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    expect(await broker.deadLetters('never-consumed')).toEqual([]);
  });
});

describe('deliveries', () => {
  it('carry the message id Parley published with; a foreign message without one gets a hash of its bytes, stable across redeliveries', async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const ids: [string, boolean][] = [];
    const sub = broker.subscribe(
      (_e, context) => {
        ids.push([context.id, context.redelivered]);
        if (ids.length === 2) throw new Error('once more');
      },
      { maxAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
    );
    await sub.ready;
    const tap = await rawChannel();
    const { queue: tapQueue } = await tap.assertQueue('', { exclusive: true });
    await tap.bindQueue(tapQueue, exchange, '');
    await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
    const [sent] = await getAll(tapQueue, 1);
    tap.publish(
      exchange,
      '',
      Buffer.from('{"sender_id": "s", "event": "slot", "timestamp": 1.0, "name": "b", "value": 2}'),
    );
    await expect.poll(() => ids.length, { timeout: 10_000 }).toBe(3);
    expect(ids[0]![0]).toBe(sent!.properties.messageId);
    expect(ids[1]![0]).toMatch(/^sha256:[0-9a-f]{32}$/);
    expect(ids[2]![0]).toBe(ids[1]![0]); // tried again in-process: the same message
    await tap.close();
  });

  it('are acknowledged together: one basic.ack covers a run of settled deliveries, and none is left unacked', async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    const total = 300;
    for (let i = 0; i < total; i++) await broker.publish({ sender_id: `s${i % 10}`, ...slotSet('n', i) });
    // amqplib's channels share one prototype: its ack is counted for the adapter's consumer channel too.
    const probe = await rawChannel();
    const prototype = Object.getPrototypeOf(probe) as { ack: (message: Message, allUpTo?: boolean) => void };
    await probe.close();
    const ack = prototype.ack;
    const frames: boolean[] = []; // one per basic.ack sent, true when it covers every delivery up to its tag
    prototype.ack = function (this: unknown, message: Message, allUpTo?: boolean) {
      frames.push(allUpTo === true);
      return ack.call(this, message, allUpTo);
    };
    try {
      const done = collector(total);
      const sub = broker.subscribe(done.handler, { concurrency: 32, ordering: 'none' });
      await done.all;
      await sub.close();
    } finally {
      prototype.ack = ack;
    }
    expect(frames.length, 'basic.ack frames for 300 deliveries').toBeLessThan(total / 2);
    expect(frames.some((multiple) => multiple)).toBe(true);
    // Closing requeues whatever is unacked: every delivery was acknowledged, so nothing is back.
    const ch = await rawChannel();
    expect((await ch.checkQueue(queue)).messageCount).toBe(0);
    await ch.close();
  });

  it("declares ordering: 'consumer': two consumers of one queue may handle one sender at once", async () => {
    const { exchange, queue } = names();
    const broker = track(amqpBroker({ url: AMQP_URL, exchange_name: exchange, queues: [queue], ...quiet }));
    expect(broker.capabilities).toMatchObject({ ordering: 'consumer', retry: 'in-process', redrive: true });
    let running = 0;
    let most = 0;
    const done = collector(10);
    const handler = async (e: EventEnvelope<AnyEvent>) => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 50));
      running--;
      done.handler(e);
    };
    await Promise.all([broker.subscribe(handler).ready, broker.subscribe(handler).ready]);
    for (let i = 0; i < 10; i++) await broker.publish({ sender_id: 'one', ...slotSet('n', i) });
    await done.all;
    // Each consumer keeps the sender to one at a time; RabbitMQ gives the queue to both.
    expect(most).toBe(2);
  });
});

describe("RabbitMQ restart (on the tests' own node)", () => {
  it('reconnects after rabbitmqctl stop_app / start_app and resumes consuming', async () => {
    const node = ownNode();
    const { exchange, queue } = names();
    const broker = track(
      amqpBroker({ url: node.url, exchange_name: exchange, queues: [queue], heartbeat: 2, ...quiet }),
    );
    const c = collector(2);
    const sub = broker.subscribe(c.handler);
    await sub.ready;
    await broker.publish({ sender_id: 's', ...slotSet('before', 1) });
    const restarting = restartApp(node.node);
    await expect.poll(() => broker.isReady(), { timeout: 20_000 }).toBe(false);
    // Published while RabbitMQ is down: buffered, sent once it is back.
    const during = broker.publish({ sender_id: 's', ...slotSet('during', 2) });
    await restarting;
    await during;
    await c.all;
    expect(c.seen.map((e) => (e.event === 'slot' ? e.name : ''))).toContain('during');
    await expect.poll(() => sub.stats.resumed).toBe(1);
  }, 90_000);

  it("a publisher that reconnects first does not lose its process's groups: Rasa's exchange and bindings are gone after a restart", async () => {
    const node = ownNode();
    const { exchange, queue } = names();
    const options = { url: node.url, exchange_name: exchange, queues: [queue], ...quiet };
    // Two brokers of one process; the publisher comes back long before the subscriber.
    const publisher = track(amqpBroker({ ...options, retry_delay_in_seconds: 0.2 }));
    const subscriber = track(amqpBroker({ ...options, retry_delay_in_seconds: 4 }));
    const got = new Set<number>();
    const sub = subscriber.subscribe((e) => void got.add(e.event === 'slot' ? Number(e.value) : -1), {
      group: 'not-in-queues',
    });
    await sub.ready;
    const restarting = restartApp(node.node);
    const publishes: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      publishes.push(publisher.publish({ sender_id: 's', ...slotSet('n', i) }));
      await new Promise((r) => setTimeout(r, 300));
    }
    await Promise.all([...publishes, restarting]);
    await expect.poll(() => got.size, { timeout: 20_000 }).toBe(20);
    await expect.poll(() => sub.stats.resumed).toBe(1);
  }, 90_000);
});
