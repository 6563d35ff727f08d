/**
 * `parley tail` end to end: on the file broker (replay from the beginning, filters, the readable view) and on
 * RabbitMQ, where it must read through a throwaway queue of its own: the production queue keeps every event and
 * nothing of tail's is left behind.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AMQP_URL,
  cleanUpAmqp,
  FIXTURES,
  pikaSection,
  REDIS_URL,
  run,
  start,
  tempDir,
  unique,
  wireLines,
  writeEndpoints,
} from './support.js';

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

describe('parley tail, file broker', () => {
  beforeEach(async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'file', path: join(dir, 'events.log') });
    const published = await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir);
    expect(published.code).toBe(0);
  });

  it('--from beginning --json prints every envelope exactly as it arrived, and leaves no group behind', async () => {
    const result = await run(['tail', '--from', 'beginning', '--json', '--max', '7'], dir);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').filter((l) => l !== '')).toEqual(wireLines('tracker_moodbot.jsonl'));
    expect(result.stderr).toContain('through a throwaway group');
    expect(result.stderr).toContain('7 events printed');
    // The file broker keeps a group's offset and lock in <path>.parley/: an ephemeral group keeps nothing there.
    const state = (() => {
      try {
        return readdirSync(join(dir, 'events.log.parley'));
      } catch {
        return [];
      }
    })();
    expect(state.filter((name) => name.startsWith('parley-tail-'))).toEqual([]);
  });

  it('--type and --sender filter, and the default view is one plain line per event', async () => {
    const result = await run(
      ['tail', '--from', 'beginning', '--type', 'user', '--sender', 'mysender', '--max', '2'],
      dir,
    );
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} {2}mysender +user +"\/greet" {2}intent=greet \(0\.54\)$/,
    );
    expect(lines[1]).toContain('"/mood_great"  intent=mood_great (0.60)');
    // NO_COLOR and a pipe: no escape codes.
    expect(result.stdout).not.toContain('\u001b[');
  });

  it('stops quietly when its reader goes away (parley tail | head -1)', async () => {
    const tail = start(['tail', '--from', 'beginning'], dir);
    await tail.waitFor('stdout', (text) => text.includes('\n'));
    tail.child.stdout?.destroy();
    // More events to print: the next write finds the pipe closed.
    expect((await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir)).code).toBe(0);
    const result = await tail.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).not.toContain('EPIPE');
  });

  it('refuses an unknown event type, naming it (exit 2)', async () => {
    const result = await run(['tail', '--type', 'usr'], dir);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--type: unknown event type "usr"');
  });
});

describe('parley tail, Redis Streams', () => {
  it('replays through a throwaway consumer group that is gone afterwards', async () => {
    const stream = unique('parley-cli-tail');
    const redis = new Redis(REDIS_URL);
    try {
      await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'redis', url: REDIS_URL, stream });
      expect((await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir)).code).toBe(0);
      const result = await run(['tail', '--from', 'beginning', '--json', '--max', '7'], dir);
      expect(result.code).toBe(0);
      expect(result.stdout.split('\n').filter((l) => l !== '')).toEqual(wireLines('tracker_moodbot.jsonl'));
      expect(await redis.xinfo('GROUPS', stream)).toEqual([]);
    } finally {
      const keys = await redis.keys(`${stream}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });
});

describe('parley tail, RabbitMQ', () => {
  const prefix = unique('parley-cli-tail');
  beforeAll(async () => {
    await writeEndpoints(join(dirForAmqp(), 'endpoints.yml'), pikaSection(prefix));
  });
  afterAll(() => cleanUpAmqp(prefix));

  it('reads through its own throwaway queue: the production queue keeps every event, nothing of tail stays', async () => {
    const cwd = dirForAmqp();
    // Rasa's queue exists before tail starts (Rasa declares it when it connects).
    expect((await run(['check'], cwd)).code).toBe(0);
    const tail = start(['tail', '--json', '--max', '7'], cwd);
    await tail.waitFor('stderr', /tailing the amqp broker through a throwaway group/);
    const queues = () =>
      execFileSync('rabbitmqctl', ['list_queues', 'name', '--quiet', '--no-table-headers']).toString();
    expect(queues()).toMatch(new RegExp(`${prefix}-x\\.parley-tail-`));

    expect((await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], cwd)).code).toBe(0);
    const result = await tail.exited;
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').filter((l) => l !== '')).toEqual(wireLines('tracker_moodbot.jsonl'));

    // Nothing stolen: Rasa's queue still holds all 7.
    const connection = await connect(AMQP_URL);
    const channel = await connection.createChannel();
    expect((await channel.checkQueue(`${prefix}-q`)).messageCount).toBe(7);
    await connection.close();
    // Nothing left: tail's queue and its dead-letter queue went with it.
    expect(queues()).not.toMatch(new RegExp(`${prefix}-x\\.parley-tail-`));
  });

  it('--from beginning is refused on a queue, saying why (exit 2)', async () => {
    const result = await run(['tail', '--from', 'beginning'], dirForAmqp());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--from beginning: the amqp broker cannot replay');
  });

  it('stops cleanly on SIGINT', async () => {
    const tail = start(['tail'], dirForAmqp());
    await tail.waitFor('stderr', /tailing/);
    tail.child.kill('SIGINT');
    const result = await tail.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('0 events printed');
  });
});

/** The RabbitMQ cases share one folder for their endpoints.yml (the per-test folder is the file broker's). */
const amqpDir = mkdtempSync(join(tmpdir(), 'parley-cli-amqp-'));
const dirForAmqp = () => amqpDir;
afterAll(() => rmSync(amqpDir, { recursive: true, force: true }));
