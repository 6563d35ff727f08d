// Redis Streams: Parley's redis adapter beside hand-written ioredis code doing the same work: pipelines of 500
// `XADD`s (the adapter's batch) with the same entry fields, and an `XREADGROUP COUNT 100` + `XACK` loop (the adapter
// runs with `read_ahead: 100`, the same batch). Needs Redis at REDIS_URL (default redis://127.0.0.1:6379); streams
// are named per measurement and deleted after, never flushed.
import { randomUUID } from 'node:crypto';
import { redisBroker } from '@parley/redis';
import { Redis } from 'ioredis';
import { benchBroker, stringifyAll, verdict } from './brokers.mjs';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PIPELINE = 500;
const COUNT = 100;

const create = (destination) =>
  redisBroker({ url: REDIS_URL, stream: destination, read_ahead: COUNT, onWarning: () => {} });

/**
 * @param {{ events?: number, runs?: number, concurrency?: number, rate?: number, seconds?: number }} [options]
 */
export async function run(options = {}) {
  const admin = new Redis(REDIS_URL, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  admin.on('error', () => {});
  try {
    await admin.connect();
  } catch (error) {
    console.log(`\nredis: NOT run: cannot connect to ${new URL(REDIS_URL).host}: ${error.message}`);
    process.exitCode = 1;
    return undefined;
  }
  const client = () => {
    const c = new Redis(REDIS_URL);
    c.on('error', () => {});
    return c;
  };

  /** Pipelines of 500 XADDs, one awaited after the other, with the adapter's fields. */
  const addAll = async (c, stream, bodies, events) => {
    for (let i = 0; i < bodies.length; i += PIPELINE) {
      const pipeline = c.pipeline();
      for (let j = i; j < Math.min(bodies.length, i + PIPELINE); j++) {
        const e = events[j];
        pipeline.xadd(
          stream,
          '*',
          'body',
          bodies[j],
          'event',
          e.event,
          'sender_id',
          e.sender_id,
          'message_id',
          randomUUID(),
        );
      }
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error);
      if (!results || failed) throw failed?.[0] ?? new Error('pipeline aborted');
    }
  };

  /**
   * Connect, then timed: a JSON.stringify of each event (the raw equivalent of the encoding) and the pipelines, with
   * the bodies as strings, as JSON.stringify gives them (ioredis writes a command of strings faster than one holding
   * a Buffer).
   */
  const rawPublish = async (destination, buffers, { envelopes }) => {
    const c = client();
    const bodies = buffers.map((b) => b.toString('utf8'));
    try {
      await c.ping();
      const start = performance.now();
      stringifyAll(envelopes);
      await addAll(c, destination, bodies, envelopes);
      return performance.now() - start;
    } finally {
      c.disconnect();
    }
  };

  /**
   * The entries added first (with their group); then timed, as the adapter's subscribe is: XREADGROUP COUNT 100 on a
   * connection of its own, JSON.parse of each body, one XACK of the read ids on the main connection, again.
   */
  const rawConsume = async (destination, bodies) => {
    const c = client();
    const reader = client();
    const group = `${destination}-g`;
    try {
      await c.xgroup('CREATE', destination, group, '$', 'MKSTREAM');
      const events = bodies.map((b) => JSON.parse(b.toString('utf8')));
      await addAll(c, destination, bodies, events);
      await reader.ping();
      const start = performance.now();
      let received = 0;
      while (received < bodies.length) {
        const reply = await reader.xreadgroupBuffer(
          'GROUP',
          group,
          'bench',
          'COUNT',
          COUNT,
          'BLOCK',
          1_000,
          'STREAMS',
          destination,
          '>',
        );
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) continue;
        const ids = [];
        for (const [id, fields] of entries) {
          for (let i = 0; i + 1 < fields.length; i += 2) {
            if (fields[i].toString() === 'body') JSON.parse(fields[i + 1].toString('utf8'));
          }
          ids.push(id);
        }
        await c.xack(destination, group, ...ids);
        received += entries.length;
      }
      return performance.now() - start;
    } finally {
      c.disconnect();
      reader.disconnect();
    }
  };

  try {
    const result = await benchBroker({
      name: 'redis',
      create,
      cleanup: async (destination) => {
        await admin.del(destination, `{${destination}}:dead-letters`);
      },
      baseline: {
        label: `ioredis by hand (JSON.stringify + pipelines of ${PIPELINE} XADD with the adapter's fields and the body as a string, awaited in turn; XREADGROUP COUNT ${COUNT}, JSON.parse, XACK per read)`,
        publish: rawPublish,
        consume: rawConsume,
      },
      options: { events: 10_000, runs: 7, ...options },
    });
    console.log('');
    verdict('publish', result.publishRatio, result.publishRatios, 0.9);
    verdict('consume', result.consumeRatio, result.consumeRatios, 0.9);
    return result;
  } finally {
    admin.disconnect();
  }
}
