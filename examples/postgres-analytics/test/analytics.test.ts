/**
 * The analytics consumer as it runs in production, against the real PostgreSQL: 3,000 Rasa events (and one that
 * PostgreSQL refuses) wait in the file broker; the consumer is killed with SIGKILL mid-stream and started again.
 * Every event must then have exactly one row (redeliveries after the crash are harmless), the refused one must be
 * a visible dead letter, /health must answer, and SIGTERM must stop it cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AnyEvent, createBroker, type EventEnvelope, encodeEvent } from '@parley/core';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

const PG_URL = process.env.PG_URL ?? process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';
const root = fileURLToPath(new URL('..', import.meta.url));
const table = `analytics_test_${process.pid}_${randomBytes(4).toString('hex')}`;
const TOTAL = 3_000;

let dir: string;
let endpoints: string;
const db = new pg.Pool({ connectionString: PG_URL });
const children = new Set<ChildProcess>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-analytics-'));
  endpoints = join(dir, 'endpoints.yml');
  await writeFile(endpoints, `event_broker:\n  type: file\n  path: ${join(dir, 'rasa_event.log')}\n`);
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await db.query(`DROP TABLE IF EXISTS ${table}`);
  await db.end();
  await rm(dir, { recursive: true, force: true });
});

/** Event i of a conversation: user, bot, action and slot events in turn, across 10 conversations. */
function event(i: number): EventEnvelope<AnyEvent> {
  const base = { sender_id: `conversation-${i % 10}`, timestamp: 1_718_964_815 + i / 1000 };
  switch (i % 4) {
    case 0:
      return {
        ...base,
        event: 'user',
        text: `message ${i}`,
        parse_data: { intent: { name: 'greet', confidence: 0.9 } },
      };
    case 1:
      return { ...base, event: 'bot', text: `reply ${i}` };
    case 2:
      return { ...base, event: 'action', name: 'action_listen' };
    default:
      return { ...base, event: 'slot', name: 'counter', value: i };
  }
}

/** The consumer, as `pnpm start` runs it (node + tsx: a SIGKILL reaches the consumer itself, not a wrapper). */
function startConsumer(): { child: ChildProcess; port: Promise<number>; output: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      ...process.env,
      ENDPOINTS: endpoints,
      PG_URL,
      ANALYTICS_TABLE: table,
      PORT: '0',
      CONCURRENCY: '4',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let output = '';
  const port = new Promise<number>((resolve, reject) => {
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /health on port (\d+)/.exec(output);
      if (match) resolve(Number(match[1]));
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.on('exit', (code) =>
      reject(new Error(`the consumer exited (${code}) before it was ready:\n${output}`)),
    );
  });
  return { child, port, output: () => output };
}

const rows = async () => Number((await db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined && done(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });

it('one row per event across a SIGKILL and restart; the refused event a visible dead letter; SIGTERM stops it', async () => {
  const events = Array.from({ length: TOTAL }, (_, i) => event(i));
  // PostgreSQL refuses NUL in text: this one fails every attempt and is dead-lettered.
  const poison: EventEnvelope<AnyEvent> = {
    sender_id: 'conversation-x',
    event: 'user',
    timestamp: 1_718_964_900,
    text: 'nul \u0000 byte',
  };
  const publisher = await createBroker(endpoints);
  const results = await publisher.publishMany([...events.slice(0, 1500), poison, ...events.slice(1500)]);
  expect(results.every((r) => r.ok)).toBe(true);
  await publisher.close();

  const first = startConsumer();
  await first.port;
  await eventually(rows, (n) => n >= 200, '200 rows');
  first.child.kill('SIGKILL');
  await exited(first.child);
  const atKill = await rows();
  expect(atKill).toBeLessThan(TOTAL); // killed mid-stream

  const second = startConsumer();
  const port = await second.port;
  await eventually(rows, (n) => n >= TOTAL, `${TOTAL} rows`);
  const letters = await eventually(
    async () =>
      (await fetch(`http://127.0.0.1:${port}/dead-letters`)).json() as Promise<
        { reason: string; error: { message: string }; senderId: string }[]
      >,
    (list) => list.length > 0,
    'the dead letter',
  );
  expect(letters).toHaveLength(1);
  expect(letters[0]?.reason).toBe('handler-failed');
  expect(letters[0]?.senderId).toBe('conversation-x');
  expect(letters[0]?.error.message).toMatch(/0x00|\\u0000/);

  const health = await fetch(`http://127.0.0.1:${port}/health`);
  expect(health.status).toBe(200);
  const report = (await health.json()) as { ready: boolean; broker: string; stats: { deadLettered: number } };
  expect(report).toMatchObject({ ready: true, broker: 'file' });
  expect(report.stats.deadLettered).toBe(1);

  // Exactly one row per published event, keyed by the hash of the bytes the broker delivered.
  const expected = new Set(
    events.map((e) =>
      createHash('sha256')
        .update(encodeEvent(e, { format: 'python' }))
        .digest('hex'),
    ),
  );
  const stored = (await db.query(`SELECT event_id FROM ${table}`)).rows.map(
    (r: { event_id: string }) => r.event_id,
  );
  expect(stored).toHaveLength(TOTAL);
  expect(new Set(stored)).toEqual(expected);
  const typed = (
    await db.query(
      `SELECT event, count(*)::int AS n, count(intent)::int AS intents, count(slot)::int AS slots FROM ${table} GROUP BY event ORDER BY event`,
    )
  ).rows;
  expect(typed).toEqual([
    { event: 'action', n: 750, intents: 0, slots: 0 },
    { event: 'bot', n: 750, intents: 0, slots: 0 },
    { event: 'slot', n: 750, intents: 0, slots: 750 },
    { event: 'user', n: 750, intents: 750, slots: 0 },
  ]);

  second.child.kill('SIGTERM');
  expect(await exited(second.child)).toBe(0);
  expect(second.output()).toMatch(/analytics: stopped \(\d+ rows inserted, \d+ redeliveries ignored\)/);
});
