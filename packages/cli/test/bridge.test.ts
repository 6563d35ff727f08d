/**
 * `parley bridge` end to end: from RabbitMQ to the file broker through a TCP fault proxy that cuts the source
 * mid-stream, and from RabbitMQ to Redis Streams. Nothing may be lost, each conversation's events must arrive in
 * the order they were published, and SIGTERM stops the bridge cleanly with its counts.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startFaultProxy } from '@parley/conformance';
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AMQP_URL,
  type Bridged,
  bridgeEventLines,
  bridgeThroughCut,
  cleanUpAmqp,
  eventually,
  expectAllInOrder,
  pikaSection,
  REDIS_URL,
  run,
  SENDERS,
  start,
  tempDir,
  unique,
  writeEndpoints,
} from './support.js';

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

/** The 300 events of {@link bridgeEventLines} as a JSON Lines file. */
async function writeEvents(path: string): Promise<void> {
  await writeFile(path, `${bridgeEventLines().join('\n')}\n`);
}

describe('parley bridge', () => {
  const prefix = unique('parley-cli-bridge');
  afterAll(async () => {
    await cleanUpAmqp(prefix);
  });

  it('RabbitMQ → file, the source cut mid-stream: nothing lost, each conversation in order, SIGTERM prints counts', async () => {
    const log = join(dir, 'events.log');
    const arrived = () => {
      try {
        return readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Bridged);
      } catch {
        return [];
      }
    };
    const events = await bridgeThroughCut({
      dir,
      prefix,
      target: { type: 'file', path: log },
      group: 'to-file',
      received: arrived,
    });
    expectAllInOrder(events);
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
