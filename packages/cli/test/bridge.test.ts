/**
 * `parley bridge` end to end: from RabbitMQ to the file broker through a TCP fault proxy that cuts the source
 * mid-stream, and from RabbitMQ to Redis Streams. Nothing may be lost, each conversation's events must arrive in
 * the order they were published, and SIGTERM stops the bridge cleanly with its counts.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FaultProxy, startFaultProxy } from '@parley/conformance';
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AMQP_URL,
  cleanUpAmqp,
  pikaSection,
  REDIS_URL,
  run,
  start,
  tempDir,
  unique,
  writeEndpoints,
} from './support.js';

const SENDERS = ['alice', 'bob', 'carol'];
const PER_SENDER = 100;

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

/** 300 slot events, the senders interleaved, each numbered within its conversation (`value`). */
async function writeEvents(path: string): Promise<void> {
  const lines: string[] = [];
  for (let i = 0; i < PER_SENDER; i += 1) {
    for (const sender of SENDERS) {
      lines.push(
        JSON.stringify({
          sender_id: sender,
          event: 'slot',
          timestamp: 1_700_000_000 + i,
          name: 'n',
          value: i,
        }),
      );
    }
  }
  await writeFile(path, `${lines.join('\n')}\n`);
}

/** Nothing lost, and per conversation the events' first arrivals in publish order (at-least-once may repeat). */
function expectAllInOrder(events: readonly { sender_id: string; value: number }[]): void {
  for (const sender of SENDERS) {
    const firsts: number[] = [];
    for (const e of events) if (e.sender_id === sender && !firsts.includes(e.value)) firsts.push(e.value);
    expect(firsts, `the events of ${sender}`).toEqual(Array.from({ length: PER_SENDER }, (_, i) => i));
  }
}

/** Polls until `check` holds (the bridge runs in another process). */
async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 45_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('parley bridge', () => {
  const prefix = unique('parley-cli-bridge');
  let proxy: FaultProxy | undefined;
  afterAll(async () => {
    await proxy?.close();
    await cleanUpAmqp(prefix);
  });

  it('RabbitMQ → file, the source cut mid-stream: nothing lost, each conversation in order, SIGTERM prints counts', async () => {
    const amqp = new URL(AMQP_URL);
    proxy = await startFaultProxy({ upstream: { host: amqp.hostname, port: Number(amqp.port || 5672) } });
    const direct = await writeEndpoints(join(dir, 'rabbitmq.yml'), pikaSection(prefix));
    await writeEndpoints(join(dir, 'source.yml'), {
      ...pikaSection(prefix),
      port: proxy.port,
      connection_attempts: 50,
    });
    const log = join(dir, 'events.log');
    await writeEndpoints(join(dir, 'target.yml'), { type: 'file', path: log });
    await writeEvents(join(dir, 'events.jsonl'));
    // Two halves: the first while the bridge runs, the second while its connection is cut.
    const lines = readFileSync(join(dir, 'events.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l !== '');
    await writeFile(join(dir, 'first.jsonl'), `${lines.slice(0, 150).join('\n')}\n`);
    await writeFile(join(dir, 'second.jsonl'), `${lines.slice(150).join('\n')}\n`);

    const bridge = start(
      ['bridge', '--endpoints', 'source.yml', '--to', 'target.yml', '--group', 'to-file'],
      dir,
    );
    await bridge.waitFor('stderr', /bridging amqp/);
    expect((await run(['publish', 'first.jsonl', '--endpoints', direct], dir)).code).toBe(0);

    const arrived = () => {
      try {
        return readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as { sender_id: string; value: number });
      } catch {
        return [];
      }
    };
    await eventually(() => arrived().length >= 30, 'the first events to be bridged');
    await proxy.cut();
    expect((await run(['publish', 'second.jsonl', '--endpoints', direct], dir)).code).toBe(0);
    const duringCut = new Set(arrived().map((e) => `${e.sender_id}/${e.value}`)).size;
    expect(duringCut).toBeLessThanOrEqual(150);
    await proxy.restore();
    await eventually(
      () => new Set(arrived().map((e) => `${e.sender_id}/${e.value}`)).size === 300,
      'all 300 events',
    );

    bridge.child.kill('SIGTERM');
    const result = await bridge.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/SIGTERM: bridged \d+ events \(received \d+, retried 0, dead-lettered 0\)/);
    expect(proxy.stats.cut).toBeGreaterThan(0);
    expectAllInOrder(arrived());
  });

  it('RabbitMQ → Redis Streams: every event, each conversation in order', async () => {
    const stream = unique('parley-cli-bridge');
    const redis = new Redis(REDIS_URL);
    try {
      const source = await writeEndpoints(join(dir, 'source.yml'), pikaSection(prefix));
      await writeEndpoints(join(dir, 'target.yml'), { type: 'redis', url: REDIS_URL, stream });
      await writeEvents(join(dir, 'events.jsonl'));

      const bridge = start(
        ['bridge', '--endpoints', source, '--to', 'target.yml', '--group', 'to-redis'],
        dir,
      );
      await bridge.waitFor('stderr', /bridging amqp/);
      expect((await run(['publish', 'events.jsonl', '--endpoints', source], dir)).code).toBe(0);
      const entries = async () =>
        (await redis.xrange(stream, '-', '+')).map(([, fields]) => {
          const body = fields[fields.indexOf('body') + 1] ?? '{}';
          return JSON.parse(body) as { sender_id: string; value: number };
        });
      await eventually(async () => (await entries()).length >= 300, 'all 300 events in the stream');

      bridge.child.kill('SIGINT');
      const result = await bridge.exited;
      expect(result.code).toBe(0);
      expect(result.stderr).toContain('SIGINT: bridged 300 events');
      const events = await entries();
      expect(events).toHaveLength(300);
      expectAllInOrder(events);
    } finally {
      const keys = await redis.keys(`${stream}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it('acknowledges at the source only what the target confirmed: with the target down, the source keeps every event', async () => {
    const stream = unique('parley-cli-bridge');
    const redisUrl = new URL(REDIS_URL);
    const redisProxy = await startFaultProxy({
      upstream: { host: redisUrl.hostname, port: Number(redisUrl.port || 6379) },
    });
    const redis = new Redis(REDIS_URL);
    const group = 'held';
    const queue = `${prefix}-x.${group}`;
    try {
      const source = await writeEndpoints(join(dir, 'source.yml'), pikaSection(prefix));
      await writeEndpoints(join(dir, 'target.yml'), {
        type: 'redis',
        url: `redis://${redisProxy.address}`,
        stream,
      });
      const lines = Array.from({ length: 30 }, (_, i) =>
        JSON.stringify({
          sender_id: SENDERS[i % 3],
          event: 'slot',
          timestamp: 1_700_000_000 + i,
          name: 'n',
          value: i,
        }),
      );
      await writeFile(join(dir, 'events.jsonl'), `${lines.join('\n')}\n`);
      const args = ['bridge', '--endpoints', source, '--to', 'target.yml', '--group', group];

      await redisProxy.cut(); // the target is down
      const first = start(args, dir);
      await first.waitFor('stderr', /bridging amqp/);
      expect((await run(['publish', 'events.jsonl', '--endpoints', source], dir)).code).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      first.child.kill('SIGTERM');
      const stopped = await first.exited;
      expect(stopped.code).toBe(0);
      expect(stopped.stderr).toContain('SIGTERM: bridged 0 events');
      const connection = await connect(AMQP_URL);
      const channel = await connection.createChannel();
      expect((await channel.checkQueue(queue)).messageCount).toBe(30);
      await connection.close();

      await redisProxy.restore(); // the target is back: a new bridge delivers everything, in order
      const second = start(args, dir);
      const entries = async () =>
        (await redis.xrange(stream, '-', '+')).map(([, fields]) => {
          const body = fields[fields.indexOf('body') + 1] ?? '{}';
          return JSON.parse(body) as { sender_id: string; value: number };
        });
      await eventually(
        async () => new Set((await entries()).map((e) => e.value)).size === 30,
        'all 30 events',
      );
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
      for (const sender of SENDERS) {
        const values = (await entries()).filter((e) => e.sender_id === sender).map((e) => e.value);
        const firsts = values.filter((v, i) => values.indexOf(v) === i);
        expect(firsts).toEqual(firsts.toSorted((a, b) => a - b));
      }
    } finally {
      await redisProxy.close();
      const keys = await redis.keys(`${stream}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it('needs --to (exit 2)', async () => {
    const result = await run(['bridge'], dir);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("required option '--to <path>' not specified");
  });
});
