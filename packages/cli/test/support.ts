/**
 * Runs the built `parley` as a user does (`node dist/bin.js …`, a process of its own) against real brokers: the
 * file broker in a temporary folder, RabbitMQ (`AMQP_URL`), Redis (`REDIS_URL`) and PostgreSQL (`PG_URL`).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFaultProxy } from '@parley/conformance';
import type { Broker } from '@parley/core';
import { connect } from 'amqplib';
import { expect } from 'vitest';

export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('../../../fixtures/rasa/', import.meta.url));
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const PG_URL =
  process.env.PG_URL ?? process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

/** A name no other test (or earlier run) uses. */
export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running `parley`: its output so far, and ways to wait for it and stop it. */
export interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout or stderr (as chosen) matches. Rejects if the process exits first, naming its output. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp | ((text: string) => boolean)): Promise<void>;
  readonly exited: Promise<Result>;
}

/** Environment of every run: no colour, no terminal, nothing from the developer's shell that changes output. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { FORCE_COLOR: _f, PARLEY_DEBUG: _d, ...rest } = process.env;
  return { ...rest, NO_COLOR: '1', ...extra };
}

/** Starts `parley ARGS` in `cwd`. */
export function start(args: readonly string[], cwd: string, extraEnv?: Record<string, string>): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: env(extraEnv),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  const changed = () => {
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
    changed();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
    changed();
  });
  const exited = new Promise<Result>((resolve) => {
    child.on('close', (code) => {
      resolve({ code, stdout: out, stderr: err });
      changed();
    });
  });
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(stream, pattern) {
      const matches = () => {
        const text = stream === 'stdout' ? out : err;
        return typeof pattern === 'function' ? pattern(text) : pattern.test(text);
      };
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (matches()) {
            listeners.delete(check);
            resolve();
          } else if (done) {
            listeners.delete(check);
            reject(new Error(`parley exited before ${String(pattern)} on ${stream}:\n${out}\n${err}`));
          }
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Runs `parley ARGS` to the end. */
export function run(
  args: readonly string[],
  cwd: string,
  extraEnv?: Record<string, string>,
): Promise<Result> {
  return start(args, cwd, extraEnv).exited;
}

/** A temporary folder, removed by the returned function. */
export async function tempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'parley-cli-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes an endpoints.yml with this event_broker section; returns its path. */
export async function writeEndpoints(path: string, section: Record<string, unknown>): Promise<string> {
  const lines = Object.entries(section).map(([key, value]) =>
    Array.isArray(value)
      ? `  ${key}:\n${value.map((item) => `    - ${String(item)}`).join('\n')}`
      : `  ${key}: ${String(value)}`,
  );
  await writeFile(path, `event_broker:\n${lines.join('\n')}\n`);
  return path;
}

/** RabbitMQ's pika section with names of this test's own: `prefix-x` exchange, `prefix-q` queue. */
export function pikaSection(prefix: string, url = AMQP_URL): Record<string, unknown> {
  const parsed = new URL(url);
  return {
    type: 'pika',
    url: parsed.hostname,
    port: parsed.port || 5672,
    username: decodeURIComponent(parsed.username || 'guest'),
    password: decodeURIComponent(parsed.password || 'guest'),
    exchange_name: `${prefix}-x`,
    queues: [`${prefix}-q`],
    connection_attempts: 3,
    retry_delay_in_seconds: 0.2,
  };
}

/** Deletes every queue whose name starts with `prefix`, and the `prefix-x` exchange: no durable queue left behind. */
export async function cleanUpAmqp(prefix: string): Promise<void> {
  let names: string[] = [];
  try {
    names = execFileSync('rabbitmqctl', ['list_queues', 'name', '--quiet', '--no-table-headers'])
      .toString()
      .split('\n')
      .map((s) => s.trim())
      .filter((name) => name.startsWith(prefix));
  } catch {
    // rabbitmqctl missing (a remote AMQP_URL): the queues this test knows are deleted below all the same
  }
  const connection = await connect(AMQP_URL);
  const channel = await connection.createChannel();
  for (const name of new Set([...names, `${prefix}-q`, `${prefix}-q.dead-letter`]))
    await channel.deleteQueue(name);
  await channel.deleteExchange(`${prefix}-x`);
  await connection.close();
}

/** Fixture events as Rasa's broker publishes them: one envelope per line (fixtures/rasa/wire). */
export function wireLines(name: string): string[] {
  return readFileSync(join(FIXTURES, 'wire', name), 'utf8')
    .split('\n')
    .filter((line) => line !== '');
}

/** librdkafka's mock cluster (`kcat`, started as packages/kafka's tests start it), or `KAFKA_URL`'s cluster. */
export interface KafkaCluster {
  /** Bootstrap servers, comma-separated. */
  readonly url: string;
  /** True on the mock cluster, which needs `idempotent: false` (see {@link kafkaSection}). */
  readonly mock: boolean;
  stop(): Promise<void>;
}

/**
 * Starts the mock cluster: `kcat -P` stays alive while its stdin is open and logs the mock's bootstrap servers
 * (random ports each start); closing stdin ends it. With `KAFKA_URL`, that cluster instead.
 */
export async function startKafka(brokers = 3): Promise<KafkaCluster> {
  const external = process.env.KAFKA_URL;
  if (external) return { url: external, mock: false, stop: async () => {} };
  const child = spawn(
    'kcat',
    ['-b', 'localhost:0', '-X', `test.mock.num.brokers=${brokers}`, '-P', '-t', 'parley-mock-keepalive'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`kcat mock cluster did not start: ${log}`)), 10_000);
    child.once('error', (error) =>
      reject(new Error(`the Kafka tests need kcat (apt-get install kcat) or KAFKA_URL: ${error.message}`)),
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const match = /replaced with (\S+)/.exec(log) ?? /bootstrap\.servers=(\S+)/.exec(log);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`kcat exited (${code}): ${log}`)));
  });
  child.stderr?.resume();
  return {
    url,
    mock: true,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Rasa's kafka section for `topic`, with the mock cluster's needs: short group timings, no idempotent producer.
 * `partition_by_sender` keys events by conversation: one conversation's events share a partition, so stay in order.
 */
export function kafkaSection(cluster: KafkaCluster, topic: string): Record<string, unknown> {
  return {
    type: 'kafka',
    url: cluster.url,
    topic,
    partition_by_sender: true,
    security_protocol: 'PLAINTEXT',
    session_timeout_ms: 6000,
    heartbeat_interval_ms: 500,
    ...(cluster.mock ? { idempotent: false } : {}),
  };
}

/** The bridge tests' conversations: 3 senders of 100 slot events each, interleaved, numbered by `value`. */
export const SENDERS = ['alice', 'bob', 'carol'];
export const PER_SENDER = 100;

/** What a bridge test reads back at its target. */
export interface Bridged {
  readonly sender_id: string;
  readonly value: number;
}

/** The 300 events as JSON Lines, in publish order. */
export function bridgeEventLines(): string[] {
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
  return lines;
}

/** Polls until `check` holds (the bridge runs in another process). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 45_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * `parley bridge` from RabbitMQ, reached through a fault proxy, to `target`, with the source cut mid-stream: half of
 * {@link bridgeEventLines} published before the cut, half during it. Waits until `received()` (what the target holds
 * so far, repeats included) has all 300, stops the bridge with SIGTERM, checks its exit and counts, and returns what
 * arrived. Nothing may be lost; the callers check order where their target keeps it.
 */
export async function bridgeThroughCut(options: {
  readonly dir: string;
  readonly prefix: string;
  readonly target: Record<string, unknown>;
  readonly group: string;
  readonly env?: Record<string, string>;
  readonly received: () => readonly Bridged[] | Promise<readonly Bridged[]>;
}): Promise<readonly Bridged[]> {
  const { dir, prefix, target, group, env: extraEnv, received } = options;
  const amqp = new URL(AMQP_URL);
  const proxy = await startFaultProxy({ upstream: { host: amqp.hostname, port: Number(amqp.port || 5672) } });
  try {
    const direct = await writeEndpoints(join(dir, 'rabbitmq.yml'), pikaSection(prefix));
    await writeEndpoints(join(dir, 'source.yml'), {
      ...pikaSection(prefix),
      port: proxy.port,
      connection_attempts: 50,
    });
    await writeEndpoints(join(dir, 'target.yml'), target);
    const lines = bridgeEventLines();
    await writeFile(join(dir, 'first.jsonl'), `${lines.slice(0, 150).join('\n')}\n`);
    await writeFile(join(dir, 'second.jsonl'), `${lines.slice(150).join('\n')}\n`);

    const bridge = start(
      ['bridge', '--endpoints', 'source.yml', '--to', 'target.yml', '--group', group],
      dir,
      extraEnv,
    );
    await bridge.waitFor('stderr', new RegExp(`bridging amqp .* to ${String(target.type)}`));
    expect((await run(['publish', 'first.jsonl', '--endpoints', direct], dir)).code).toBe(0);
    const distinct = async () => new Set((await received()).map((e) => `${e.sender_id}/${e.value}`)).size;
    await eventually(async () => (await distinct()) >= 30, 'the first events to be bridged');
    await proxy.cut();
    expect((await run(['publish', 'second.jsonl', '--endpoints', direct], dir)).code).toBe(0);
    expect(await distinct(), 'events bridged while the source was cut off').toBeLessThanOrEqual(150);
    await proxy.restore();
    await eventually(async () => (await distinct()) === 300, 'all 300 events at the target');

    bridge.child.kill('SIGTERM');
    const result = await bridge.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/SIGTERM: bridged \d+ events \(received \d+, retried 0, dead-lettered 0\)/);
    expect(proxy.stats.cut, 'the proxy cut the source').toBeGreaterThan(0);
    return await received();
  } finally {
    await proxy.close();
  }
}

/** Nothing lost, and per conversation the events' first arrivals in publish order (at-least-once may repeat). */
export function expectAllInOrder(events: readonly Bridged[]): void {
  for (const sender of SENDERS) {
    const firsts: number[] = [];
    for (const e of events) if (e.sender_id === sender && !firsts.includes(e.value)) firsts.push(e.value);
    expect(firsts, `the events of ${sender}`).toEqual(Array.from({ length: PER_SENDER }, (_, i) => i));
  }
}

/**
 * Subscribes `group` with a handler that always fails ("the analytics database is down", 2 attempts), runs `feed`
 * once it is ready (whatever puts the events on the broker, when they are not there yet), and resolves once `count`
 * events were dead-lettered, the subscription closed.
 */
export async function deadLetterAll(
  broker: Broker,
  count: number,
  options: { readonly group?: string; readonly from?: 'beginning' } = {},
  feed: () => Promise<void> = async () => {},
): Promise<void> {
  let failed = 0;
  let allFailed!: () => void;
  const done = new Promise<void>((resolve) => (allFailed = resolve));
  const subscription = broker.subscribe(
    () => {
      throw new Error('the analytics database is down');
    },
    {
      ...options,
      maxAttempts: 2,
      backoff: { initialMs: 1, maxMs: 1 },
      onDeadLetter: () => {
        failed += 1;
        if (failed === count) allFailed();
      },
    },
  );
  await subscription.ready;
  await feed();
  await done;
  await subscription.close();
}
