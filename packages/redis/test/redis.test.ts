/**
 * What only the Redis adapter does, against real Redis: its config keys, the entry layout and trimming, the
 * Cluster key naming, recovering from a deleted group, and a consumer killed with SIGKILL mid-handler.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type AnyEvent,
  type Broker,
  ConfigError,
  createBroker,
  type DeliveryContext,
  type EventEnvelope,
  stringifyEvent,
  userUttered,
} from '@parley/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deadLetterKey, hashTag, redisBroker, resolveRedisSettings } from '../src/index.js';
import {
  REDIS_URL,
  rawClient,
  requireSharedRedis,
  startCluster,
  startOwnServer,
  startSentinel,
  startSentinelSet,
} from './support.js';

await requireSharedRedis();
const here = dirname(fileURLToPath(import.meta.url));
const raw = rawClient();
const run = `parley-test-${process.pid}-${Date.now().toString(36)}`;
let counter = 0;
const streams = new Set<string>();
const newStream = (label: string) => {
  const stream = `${run}-${label}-${counter++}`;
  streams.add(stream);
  return stream;
};
const open: Broker[] = [];
const children = new Set<ChildProcess>();
const make = (stream: string, extra: Parameters<typeof redisBroker>[0] = {}) => {
  const broker = redisBroker({ url: REDIS_URL, stream, onWarning: () => {}, ...extra });
  open.push(broker);
  return broker;
};
const event = (i: number, sender = `${run}-s0`): EventEnvelope<AnyEvent> =>
  ({
    sender_id: sender,
    ...userUttered(`hello ${i}`),
    timestamp: 1_700_000_000 + i,
  }) as EventEnvelope<AnyEvent>;

async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  await Promise.all(open.splice(0).map((broker) => broker.close({ timeoutMs: 2_000 })));
});

afterAll(async () => {
  const keys = [...streams].flatMap((s) => [s, deadLetterKey(s)]);
  if (keys.length > 0) await raw.del(...keys);
  raw.disconnect();
});

/** EVALSHA and EVAL calls the server has counted so far (INFO commandstats). */
async function evalshaCalls(): Promise<number> {
  const info = await raw.info('commandstats');
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(m[1]);
  return calls;
}

const config = (options: Record<string, unknown>) => ({ source: 'endpoints.yml', type: 'redis', options });

describe('config', () => {
  it('has defaults for every key', () => {
    const settings = resolveRedisSettings(config({}));
    expect(settings).toMatchObject({
      connection: { mode: 'standalone', host: '127.0.0.1', port: 6379, db: 0, tls: false },
      stream: 'rasa_core_events',
      deadLetterStream: '{rasa_core_events}:dead-letters',
      group: 'parley',
      blockMs: 2_000,
      claimIdleMs: 30_000,
      maxLen: undefined,
      maxAgeMs: undefined,
    });
    expect(settings.consumer).toMatch(/-\d+-[a-z0-9]+$/);
  });

  it('reads a URL, with credentials, database and TLS', () => {
    const { connection } = resolveRedisSettings(
      config({ url: 'rediss://bot:s%40cret@redis.example:6380/3' }),
    );
    expect(connection).toEqual({
      mode: 'standalone',
      host: 'redis.example',
      port: 6380,
      username: 'bot',
      password: 's@cret',
      db: 3,
      tls: true,
    });
  });

  it('reads sentinels and cluster nodes', () => {
    expect(
      resolveRedisSettings(config({ sentinels: ['10.0.0.1:26379', '10.0.0.2'], name: 'mymaster' }))
        .connection,
    ).toMatchObject({
      mode: 'sentinel',
      name: 'mymaster',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26379 },
      ],
    });
    expect(resolveRedisSettings(config({ cluster: 'a:7000' })).connection).toMatchObject({
      mode: 'cluster',
      nodes: [{ host: 'a', port: 7000 }],
    });
  });

  it.each([
    [{ streem: 'x' }, /event_broker: unknown key "streem" \(did you mean "stream"\?\) for the redis broker/],
    [{ url: 'redis://a', host: 'b' }, /event_broker\.host: expected either url or host/],
    [{ url: 'amqp://a' }, /event_broker\.url: expected redis:\/\/ or rediss:\/\//],
    [{ url: 'redis://:pw@a/x' }, /event_broker\.url: expected the URL path to be a database number/],
    [{ sentinels: ['a:1'] }, /event_broker\.name: required with sentinels/],
    [{ name: 'mymaster' }, /event_broker\.name: is the Sentinel master name: set sentinels too/],
    [{ cluster: ['a:1'], url: 'redis://b' }, /event_broker\.cluster: expected one of url\/host/],
    [{ cluster: ['a:1'], db: 2 }, /event_broker\.db: Redis Cluster has database 0 only/],
    [{ stream: 'a}b' }, /event_broker\.stream: expected a key without "\{" or "\}"/],
    [{ max_len: 0 }, /event_broker\.max_len: expected an integer >= 1, found 0/],
    [{ claim_idle_in_seconds: 'soon' }, /event_broker\.claim_idle_in_seconds: expected a number/],
  ])('rejects %j naming the key', (options, message) => {
    expect(() => resolveRedisSettings(config(options))).toThrow(ConfigError);
    expect(() => resolveRedisSettings(config(options))).toThrow(message);
  });

  it('never prints a password', () => {
    let text = '';
    try {
      resolveRedisSettings(config({ url: 'redis://u:hunter2@a/x' }));
    } catch (error) {
      text = String(error);
    }
    expect(text).toContain('event_broker.url');
    expect(text).not.toContain('hunter2');
  });

  it('createBroker loads the adapter for type: redis, with the keys of endpoints.yml', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-redis-endpoints-'));
    const stream = newStream('endpoints');
    const file = join(dir, 'endpoints.yml');
    writeFileSync(
      file,
      `event_broker:\n  type: redis\n  url: ${REDIS_URL}\n  stream: ${stream}\n  max_len: 1000\n`,
    );
    try {
      // Resolved from this package: its own name points at its build (dist), as an app's install would.
      const broker = await createBroker(file, { resolveFrom: join(here, '..'), onWarning: () => {} });
      open.push(broker);
      expect(broker.name).toBe('redis');
      await broker.publish(event(0));
      expect(await raw.xlen(stream)).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('max_attempts is the default of every subscription', async () => {
    const stream = newStream('attempts');
    const broker = make(stream, { max_attempts: 2 });
    const attempts: number[] = [];
    const sub = broker.subscribe(
      (_, context) => {
        attempts.push(context.attempt);
        throw new Error('always');
      },
      { group: 'g', backoff: { initialMs: 10, maxMs: 10 } },
    );
    await sub.ready;
    await broker.publish(event(0));
    await waitFor(() => sub.stats.deadLettered === 1, 'the dead letter');
    expect(attempts).toEqual([1, 2]);
  });
});

describe('entries', () => {
  it('carry the Rasa body byte for byte, the event name, sender_id and headers as fields', async () => {
    const stream = newStream('fields');
    const broker = make(stream);
    const envelope = event(1, 'conversation-é');
    await broker.publish(envelope, { headers: { trace: 'abc' } });
    const [[id, fields]] = (await raw.xrangeBuffer(stream, '-', '+')) as unknown as [[Buffer, Buffer[]]];
    expect(id.toString()).toMatch(/^\d+-\d+$/);
    const map = new Map<string, Buffer>();
    for (let i = 0; i < fields.length; i += 2) map.set(fields[i]!.toString(), fields[i + 1]!);
    expect(map.get('body')!.toString()).toBe(stringifyEvent(envelope, { format: 'python' }));
    expect(map.get('event')!.toString()).toBe('user');
    expect(map.get('sender_id')!.toString()).toBe('conversation-é');
    expect(map.get('header:trace')!.toString()).toBe('abc');
    expect(map.get('message_id')!.toString()).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('max_len trims approximately, in the same XADD', async () => {
    const stream = newStream('trim');
    const broker = make(stream, { max_len: 100 });
    await Promise.all(Array.from({ length: 2_000 }, (_, i) => broker.publish(event(i))));
    const length = await raw.xlen(stream);
    // `~` trims whole radix-tree nodes (100 entries by default): near max_len, never below it.
    expect(length).toBeGreaterThanOrEqual(100);
    expect(length).toBeLessThan(400);
  });

  it('a batch goes out as script calls of a hundred entries, in publish order, one id per entry', async () => {
    const stream = newStream('script');
    const broker = make(stream);
    const before = await evalshaCalls();
    await Promise.all(Array.from({ length: 250 }, (_, i) => broker.publish(event(i))));
    const entries = (await raw.xrange(stream, '-', '+')) as [string, string[]][];
    expect(entries.map(([, fields]) => JSON.parse(fields[1]!).text)).toEqual(
      Array.from({ length: 250 }, (_, i) => `hello ${i}`),
    );
    expect(entries[0]![1]).toEqual([
      'body',
      stringifyEvent(event(0), { format: 'python' }),
      'event',
      'user',
      'sender_id',
      `${run}-s0`,
      'message_id',
      expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
    ]);
    // Three calls or more (other tests may run scripts meanwhile): at least ceil(250 / 100) of them.
    expect((await evalshaCalls()) - before).toBeGreaterThanOrEqual(3);
  });

  it('an entry Redis refuses for its content rejects its publish at once, naming the reason', async () => {
    const stream = newStream('wrongtype');
    await raw.set(stream, 'not a stream');
    const broker = make(stream);
    const started = Date.now();
    await expect(broker.publish(event(1))).rejects.toThrow(/XADD to .* failed: WRONGTYPE/);
    // Not retried: a resend cannot fix it.
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('with a user that may not run scripts: entries are added by pipelined XADD, after one warning', async () => {
    const stream = newStream('noscript');
    const user = `${run}-noscript`;
    await raw.call('ACL', 'SETUSER', user, 'on', '>secret', '~*', '&*', '+@all', '-@scripting');
    try {
      const warnings: string[] = [];
      const url = new URL(REDIS_URL);
      url.username = user;
      url.password = 'secret';
      const broker = make(stream, { url: url.toString(), onWarning: (m) => warnings.push(m) });
      await Promise.all(Array.from({ length: 250 }, (_, i) => broker.publish(event(i))));
      await Promise.all(Array.from({ length: 10 }, (_, i) => broker.publish(event(250 + i))));
      const entries = (await raw.xrange(stream, '-', '+')) as [string, string[]][];
      expect(entries.map(([, fields]) => JSON.parse(fields[1]!).text)).toEqual(
        Array.from({ length: 260 }, (_, i) => `hello ${i}`),
      );
      const refused = warnings.filter((w) => /refused the publishing script/.test(w));
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatch(/NOPERM.*@scripting/s);
      expect(warnings.some((w) => /publish failed/.test(w))).toBe(false);
    } finally {
      await raw.call('ACL', 'DELUSER', user);
    }
  });

  it('a group replays from the start with from: beginning, and starts at the end by default', async () => {
    const stream = newStream('replay');
    const broker = make(stream);
    for (let i = 0; i < 3; i++) await broker.publish(event(i));
    const seen: string[] = [];
    const sub = broker.subscribe((e) => void seen.push((e as { text?: string }).text ?? ''), {
      group: 'old',
      from: 'beginning',
    });
    await sub.ready;
    await waitFor(() => seen.length === 3, 'the history');
    const groups = (await raw.xinfo('GROUPS', stream)) as unknown[][];
    expect(groups.map((g) => g[1])).toEqual(['old']);
  });
});

describe('consumer groups', () => {
  it('a deleted group is created again where the consumer stood: nothing replayed, nothing lost, no crash loop', async () => {
    const stream = newStream('nogroup');
    const broker = make(stream, { block_in_seconds: 0.2 });
    const seen: number[] = [];
    const errors: Error[] = [];
    const sub = broker.subscribe((e) => void seen.push(e.timestamp as number), {
      group: 'g',
      onError: (error) => errors.push(error),
    });
    await sub.ready;
    for (let i = 0; i < 5; i++) await broker.publish(event(i));
    await waitFor(() => seen.length === 5, 'the first 5 events');
    await raw.xgroup('DESTROY', stream, 'g');
    for (let i = 5; i < 10; i++) await broker.publish(event(i));
    await waitFor(() => seen.length >= 10, 'the events published after the group was deleted');
    // And once more, with the stream itself gone: MKSTREAM makes it again.
    await raw.del(stream);
    await waitFor(() => sub.stats.resumed >= 2, 'the consumer to resume after the stream was deleted');
    for (let i = 10; i < 12; i++) await broker.publish(event(i));
    await waitFor(() => seen.length >= 12, 'the events published after the stream was deleted');
    expect([...new Set(seen)].sort()).toEqual(Array.from({ length: 12 }, (_, i) => 1_700_000_000 + i));
    expect(seen).toHaveLength(12); // nothing replayed
    expect(sub.failure).toBeUndefined();
    expect(errors.some((e) => /NOGROUP/.test(e.message))).toBe(true);
  });

  it('a consumer killed with SIGKILL mid-handler: a peer handles its entry after the claim idle time, not before', async () => {
    const stream = newStream('sigkill');
    const claimIdle = 1.5;
    const child = spawnConsumer(stream, 'g', claimIdle, 'hold');
    await child.next('ready');
    const publisher = make(stream);
    await publisher.publish(event(0));
    const holding = await child.next('holding');

    const peer = make(stream, { claim_idle_in_seconds: claimIdle });
    const got: { at: number; context: DeliveryContext }[] = [];
    const sub = peer.subscribe((_, context) => void got.push({ at: Date.now(), context }), { group: 'g' });
    await sub.ready;
    // The child holds it for twice the claim idle time, renewing its lease: the peer must not get it.
    await new Promise((r) => setTimeout(r, claimIdle * 2_000));
    expect(got, 'handed to the peer while its holder was alive').toEqual([]);

    child.process.kill('SIGKILL');
    const killedAt = Date.now();
    const [pending] = (await raw.xpending(stream, 'g', '-', '+', 1)) as [string, string, number, number][];
    const idleAtKill = pending![2];
    await waitFor(() => got.length === 1, 'the peer to handle the entry', 15_000);
    const waited = got[0]!.at - killedAt;
    expect(waited, 'claimed before the claim idle time').toBeGreaterThanOrEqual(
      claimIdle * 1000 - idleAtKill - 50,
    );
    expect(waited, 'claimed long after the claim idle time').toBeLessThan(claimIdle * 1000 + 3_000);
    expect(got[0]!.context).toMatchObject({ id: holding.id, attempt: 2, redelivered: true });
  });

  it('a poison event that kills every consumer is dead-lettered after max attempts (delivery counts), and redriven', async () => {
    const stream = newStream('poison');
    const claimIdle = 0.5;
    const publisher = make(stream);
    for (const n of [1, 2]) {
      const child = spawnConsumer(stream, 'g', claimIdle, 'crash');
      await child.next('ready');
      if (n === 1) await publisher.publish(event(0));
      const holding = await child.next('holding');
      expect(holding.attempt).toBe(n);
      await child.exited;
    }
    // Delivered twice, twice its consumer died: with maxAttempts 2 the next delivery dead-letters it unhandled.
    const consumer = make(stream, { claim_idle_in_seconds: claimIdle });
    const handled: number[] = [];
    const sub = consumer.subscribe((_, context) => void handled.push(context.attempt), {
      group: 'g',
      maxAttempts: 2,
    });
    await sub.ready;
    await waitFor(() => sub.stats.deadLettered === 1, 'the dead letter');
    expect(handled).toEqual([]);
    const [letter] = await consumer.deadLetters('g');
    expect(letter).toMatchObject({
      reason: 'handler-failed',
      attempts: 2,
      group: 'g',
      error: { code: 'DELIVERY_LIMIT' },
    });
    expect(await raw.xlen(deadLetterKey(stream))).toBe(1);

    // Another group of the stream must not see the redriven entry.
    const other: string[] = [];
    const otherSub = consumer.subscribe((e) => void other.push(e.sender_id), { group: 'other' });
    await otherSub.ready;
    expect(await consumer.redrive({ group: 'g' })).toEqual({ redriven: 1 });
    await waitFor(() => handled.length === 1, 'the redriven event');
    expect(await consumer.deadLetters('g')).toEqual([]);
    await new Promise((r) => setTimeout(r, 300));
    expect(other).toEqual([]);
  });
});

describe('persistence', () => {
  it.each([
    [
      ['--appendonly', 'no'],
      /without an append-only file \(appendonly no\): events whose publish resolved are lost/,
    ],
    [
      ['--appendonly', 'yes', '--appendfsync', 'everysec'],
      /syncs its append-only file once a second: up to about a second/,
    ],
  ])('warns at connect when a resolved publish can be lost (%j)', async (args, warning) => {
    const server = await startOwnServer(args);
    try {
      const warnings: string[] = [];
      const broker = redisBroker({
        url: server.url,
        stream: `${run}-persist`,
        onWarning: (m) => warnings.push(m),
      });
      open.push(broker);
      await broker.ready();
      await waitFor(() => warnings.length > 0, 'the warning');
      expect(warnings).toEqual([expect.stringMatching(warning)]);
      expect(warnings[0]).toMatch(/^\[parley\] \[redis\] /);
      await broker.close();
    } finally {
      await server.stop();
    }
  });

  it('says nothing with appendfsync always', async () => {
    const server = await startOwnServer();
    try {
      const warnings: string[] = [];
      const broker = redisBroker({
        url: server.url,
        stream: `${run}-persist`,
        onWarning: (m) => warnings.push(m),
      });
      open.push(broker);
      await broker.ready();
      await broker.publish(event(0));
      expect(warnings).toEqual([]);
      await broker.close();
    } finally {
      await server.stop();
    }
  });
});

describe('Sentinel', () => {
  it('finds the master through the sentinels and publishes and consumes there', async () => {
    const setup = await startSentinel();
    try {
      const broker = redisBroker({
        sentinels: [setup.sentinel],
        name: 'mymaster',
        stream: `${run}-sentinel`,
        onWarning: () => {},
      });
      open.push(broker);
      const seen: number[] = [];
      const sub = broker.subscribe((e) => void seen.push(e.timestamp as number), { group: 'g' });
      await sub.ready;
      await Promise.all([0, 1, 2].map((i) => broker.publish(event(i))));
      await waitFor(() => seen.length === 3, 'the events');
      const master = rawClient(setup.master.url);
      expect(await master.xlen(`${run}-sentinel`)).toBe(3);
      master.disconnect();
      await broker.close();
    } finally {
      await setup.stop();
    }
  });
});

describe('Sentinel failover', () => {
  it('under publishing: publishes go on on the promoted replica; what a resolved publish survives is measured', async () => {
    const set = await startSentinelSet();
    try {
      const stream = `${run}-failover`;
      const broker = redisBroker({
        sentinels: [...set.sentinels],
        name: 'mymaster',
        stream,
        onWarning: () => {},
      });
      open.push(broker);
      await broker.ready();
      const resolvedAt = new Map<number, number>();
      const failures: unknown[] = [];
      const publishing: Promise<void>[] = [];
      let killedAt = 0;
      const started = Date.now();
      for (let i = 0; Date.now() - started < 8_000; i++) {
        if (killedAt === 0 && Date.now() - started > 1_500) {
          killedAt = Date.now();
          await set.master.stop(); // SIGKILL: the sentinels see it down after 1 s and promote the replica
        }
        publishing.push(
          broker.publish(event(i)).then(
            () => void resolvedAt.set(1_700_000_000 + i, Date.now()),
            (error: unknown) => void failures.push(error),
          ),
        );
        await new Promise((r) => setTimeout(r, 2));
      }
      await Promise.all(publishing);
      expect(failures, 'publishes that failed').toEqual([]);
      expect(set.masterAddress()).toBe(`127.0.0.1:${set.replica.port}`);
      const promoted = rawClient(set.replica.url);
      const entries = await promoted.xrange(stream, '-', '+');
      promoted.disconnect();
      const stored = new Set(
        entries.map(
          ([, fields]) =>
            (JSON.parse(fields[fields.indexOf('body') + 1]!) as { timestamp: number }).timestamp,
        ),
      );
      const times = [...resolvedAt.values()].sort((a, b) => a - b);
      const firstAfter = times.find((t) => t > killedAt)!;
      const lost = [...resolvedAt].filter(([ts]) => !stored.has(ts));
      const lostAfter = lost.filter(([, at]) => at > killedAt);
      console.info(
        `[redis] failover: ${resolvedAt.size} publishes resolved, ${lost.length} of them missing on the promoted replica ` +
          `(Redis replicates asynchronously: what the replica had not received when the master died); the first ` +
          `publish resolved ${firstAfter - killedAt} ms after the master was killed`,
      );
      expect(lostAfter, 'resolved on the new master, then missing').toEqual([]);
    } finally {
      await set.stop();
    }
  }, 60_000);
});

describe('ephemeral groups', () => {
  it('leave no group behind once their last consumer left', async () => {
    const stream = newStream('ephemeral');
    const broker = make(stream);
    const sub = broker.subscribe(() => {}, { group: 'tail', ephemeral: true });
    await sub.ready;
    await broker.publish(event(0));
    await waitFor(() => sub.stats.acked === 1, 'the event');
    expect(((await raw.xinfo('GROUPS', stream)) as unknown[][]).length).toBe(1);
    await sub.close();
    expect(await raw.xinfo('GROUPS', stream)).toEqual([]);
  });
});

describe('Redis Cluster', () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  beforeAll(async () => {
    cluster = await startCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('a stream and its dead-letter stream hash to one slot', async () => {
    const node = rawClient(`redis://${cluster.nodes[0]}`);
    try {
      for (const stream of ['rasa_core_events', 'bots.events', '{bots}.events', 'a{b}c{d}']) {
        const [a, b] = await Promise.all([
          node.call('CLUSTER', 'KEYSLOT', stream),
          node.call('CLUSTER', 'KEYSLOT', deadLetterKey(stream)),
        ]);
        expect(b, `${stream} vs ${deadLetterKey(stream)}`).toBe(a);
      }
    } finally {
      node.disconnect();
    }
    expect(hashTag('{bots}.events')).toBe('bots');
    expect(deadLetterKey('rasa_core_events')).toBe('{rasa_core_events}:dead-letters');
  });

  it('publishes, consumes, dead-letters and redrives on a cluster (no CROSSSLOT)', async () => {
    const broker = redisBroker({
      cluster: cluster.nodes as string[],
      stream: `${run}-cluster`,
      onWarning: () => {},
    });
    open.push(broker);
    let fail = true;
    const handled: number[] = [];
    const sub = broker.subscribe(
      (e) => {
        if (fail && e.timestamp === 1_700_000_000) throw new Error('poison');
        handled.push(e.timestamp as number);
      },
      { group: 'g', maxAttempts: 1 },
    );
    await sub.ready;
    await Promise.all(Array.from({ length: 50 }, (_, i) => broker.publish(event(i, `${run}-s${i % 5}`))));
    await waitFor(
      () => handled.length === 49 && sub.stats.deadLettered === 1,
      'the events and the dead letter',
    );
    fail = false;
    expect(await broker.redrive({ group: 'g' })).toEqual({ redriven: 1 });
    await waitFor(() => handled.length === 50, 'the redriven event');
    expect(await broker.deadLetters('g')).toEqual([]);
  });
});

/** A consumer process (test/peers/consumer.ts) and the JSON lines it writes. */
function spawnConsumer(stream: string, group: string, claimIdle: number, mode: 'hold' | 'crash') {
  // node itself with tsx's loader, not the tsx binary: that one is a wrapper whose SIGKILL leaves its node child alive.
  const loader = pathToFileURL(join(here, '../../../node_modules/tsx/dist/loader.mjs')).href;
  const child = spawn(process.execPath, ['--import', loader, join(here, 'peers/consumer.ts')], {
    env: {
      ...process.env,
      REDIS_URL,
      STREAM: stream,
      GROUP: group,
      CLAIM_IDLE: String(claimIdle),
      MODE: mode,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const wake of waiters.splice(0)) wake();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    process: child,
    exited,
    /** The next line of this type (waits for it). */
    async next(type: string): Promise<Record<string, unknown> & { id?: string; attempt?: number }> {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const index = lines.findIndex((line) => line.type === type);
        if (index >= 0) return lines.splice(index, 1)[0]!;
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`the consumer process never said ${type}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
  };
}
