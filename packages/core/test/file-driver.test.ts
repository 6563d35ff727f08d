import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DeadLetter, Delivery, DriverConsumeOptions, OutgoingMessage } from '../src/broker/contract.js';
import {
  type FileBrokerOptions,
  fileBroker,
  fileDriver,
  isRetryableFileError,
  readDeadLetters,
} from '../src/broker/file.js';

const PYTHON = '/usr/bin/python3';

let dir: string;
let path: string;
let warnings: string[];
const cleanups: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-file-'));
  path = join(dir, 'logs', 'rasa_event.log');
  warnings = [];
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

/** A connect session that records losses. */
const session = () => {
  const losses: Error[] = [];
  return { signal: new AbortController().signal, lost: (error: Error) => void losses.push(error), losses };
};

/** A connected driver on this test's file, closed after the test; `losses` are what it reported lost. */
async function driver(options: FileBrokerOptions = {}) {
  const d = fileDriver({ path, pollIntervalMs: 20, onWarning: (m) => warnings.push(m), ...options });
  cleanups.push(() => d.close());
  const s = session();
  await d.connect(s);
  return Object.assign(d, { losses: s.losses });
}

type Driver = Awaited<ReturnType<typeof driver>>;

const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
const line = (sender: string, n: number) =>
  `{"sender_id": "${sender}", "event": "user", "text": "${sender}${n}"}`;
let ids = 0;
const message = (body: string, senderId = 'x'): OutgoingMessage => ({
  id: `m${ids++}`,
  body: bytes(body),
  senderId,
  eventName: 'user',
  headers: {},
});

/** Consumes group `g` from the beginning, recording every delivery (and what the sink was told was lost). */
async function consume(d: Driver, options: Partial<DriverConsumeOptions> = {}) {
  const got: Delivery[] = [];
  const lost: Error[] = [];
  const consumer = await d.consume(
    { group: 'g', readAhead: 10, from: 'beginning', ordering: 'none', ephemeral: false, ...options },
    { deliver: (delivery) => void got.push(delivery), lost: (error) => void lost.push(error) },
  );
  return {
    got,
    lost,
    consumer,
    bodies: () => got.map((delivery) => text(delivery.body)),
    until: (count: number) =>
      vi.waitFor(() => expect(got.length).toBeGreaterThanOrEqual(count), { timeout: 5_000, interval: 10 }),
  };
}

const settle = (ms = 120) => new Promise((done) => setTimeout(done, ms));
const offsetOf = async (group = 'g') =>
  JSON.parse(await readFile(`${path}.parley/${group}.offset`, 'utf8')) as { offset: number };

describe('publishing', () => {
  it('appends each body as one line, byte for byte, creating parent directories', async () => {
    const d = await driver();
    const bodies = [line('a', 1), '{"sender_id": "b", "text": "caf\\u00e9"}', line('a', 2)];
    expect(await d.send(bodies.map((b) => message(b)))).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(await d.send([message(line('c', 1))])).toEqual([{ ok: true }]);
    expect(await readFile(path, 'utf8')).toBe([...bodies, line('c', 1)].map((b) => `${b}\n`).join(''));
    expect(d.destination).toBe(path);
    expect(d.client).toEqual({
      path,
      deadLetterPath: `${path}.dead-letter.jsonl`,
      offsetsDir: `${path}.parley`,
    });
    expect(d.defaultFormat).toBe('python');
    expect(d.defaultGroup).toBe('parley');
  });

  it('refuses a body with a raw line break (not retryable) and writes the rest of the batch', async () => {
    const d = await driver();
    const [first, broken, last] = await d.send([
      message(line('a', 1)),
      message('{"a":\n1}'),
      message(line('a', 2)),
    ]);
    expect(first).toEqual({ ok: true });
    expect(broken).toMatchObject({ ok: false, retryable: false });
    expect(broken?.ok === false && broken.error.message).toMatch(/^\[parley\] \[file\] .*raw line break/);
    expect(last).toEqual({ ok: true });
    expect(await readFile(path, 'utf8')).toBe(`${line('a', 1)}\n${line('a', 2)}\n`);
  });

  it('never interleaves concurrent batches mid-line, even from two writers', async () => {
    const writers = [await driver(), await driver()];
    await Promise.all(
      writers.flatMap((d, w) =>
        Array.from({ length: 20 }, (_, b) =>
          d.send(Array.from({ length: 50 }, (_, i) => message(line(`w${w}`, b * 50 + i)))),
        ),
      ),
    );
    const lines = (await readFile(path, 'utf8')).split('\n').slice(0, -1);
    expect(lines).toHaveLength(2_000);
    for (const w of [0, 1]) {
      const mine = lines.filter((l) => l.startsWith(`{"sender_id": "w${w}"`));
      expect(mine).toEqual(Array.from({ length: 1_000 }, (_, n) => line(`w${w}`, n)));
    }
  });

  it('reports write errors as retryable only when waiting can help', async () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE']) {
      expect(isRetryableFileError(Object.assign(new Error(code), { code }))).toBe(true);
    }
    for (const code of ['EACCES', 'EISDIR', 'EROFS', 'ENOENT', undefined]) {
      expect(isRetryableFileError(Object.assign(new Error('x'), { code }))).toBe(false);
    }
    expect(isRetryableFileError(null)).toBe(false);
    await mkdir(path, { recursive: true }); // a directory where the log should be
    const [outcome] = await (await driver()).send([message(line('a', 1))]);
    expect(outcome).toMatchObject({ ok: false, retryable: false });
    expect(outcome?.ok === false && outcome.error.message).toContain('EISDIR');
  });
});

describe('consuming', () => {
  it.skipIf(!existsSync(PYTHON))('reads a file written by Rasa (python3 missing: skipped)', async () => {
    // Exactly Rasa's FileEventBroker: a logging.FileHandler with format %(message)s, json.dumps per event.
    const script = `
import json, logging, sys
logger = logging.getLogger("event-logger")
logger.setLevel(logging.INFO)
handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(logging.Formatter("%(message)s"))
logger.propagate = False
logger.addHandler(handler)
for event in [
    {"sender_id": "s1", "event": "action", "timestamp": 1.0, "name": "action_listen"},
    {"sender_id": "s1", "event": "user", "timestamp": 1.5, "text": "caf\\u00e9\\nline two", "metadata": {}},
    {"sender_id": "s2", "event": "bot", "timestamp": 2.25, "text": "\\U0001F600", "data": {}},
]:
    logger.info(json.dumps(event))
    logger.handlers[0].flush()
`;
    await mkdir(join(dir, 'logs'));
    execFileSync(PYTHON, ['-c', script, path]);
    const written = await readFile(path);
    const d = await driver();
    const c = await consume(d);
    await c.until(3);
    const lines = written.toString('latin1').split('\n').slice(0, -1);
    expect(c.got.map((g) => Buffer.from(g.body).toString('latin1'))).toEqual(lines);
    expect(JSON.parse(c.bodies()[1] ?? '')).toMatchObject({ text: 'café\nline two' });
    // Sent back through the driver, the same bodies give Rasa's file byte for byte.
    const copy = fileDriver({ path: join(dir, 'copy.log') });
    await copy.send(c.got.map((g) => ({ ...message(''), body: g.body })));
    expect(await readFile(join(dir, 'copy.log'))).toEqual(written);
    await copy.close();
  });

  it('tails lines appended after it started, by this driver and by another writer', async () => {
    const d = await driver();
    const c = await consume(d);
    await d.send([message(line('a', 1))]);
    await c.until(1);
    await appendFile(path, `${line('b', 1)}\n${line('b', 2)}\n`);
    await c.until(3);
    expect(c.bodies()).toEqual([line('a', 1), line('b', 1), line('b', 2)]);
    expect(c.got.every((g) => !g.redelivered && Object.keys(g.headers).length === 0)).toBe(true);
  });

  it('waits for the newline of a partial last line', async () => {
    await mkdir(join(dir, 'logs'));
    await writeFile(path, `${line('a', 1)}\n{"sender_id": "a", `);
    const c = await consume(await driver());
    await c.until(1);
    await settle();
    expect(c.got).toHaveLength(1);
    await appendFile(path, '"event": "user"}\n');
    await c.until(2);
    expect(c.bodies()).toEqual([line('a', 1), '{"sender_id": "a", "event": "user"}']);
  });

  it('strips CRLF line ends and a UTF-8 BOM, and skips blank lines', async () => {
    await mkdir(join(dir, 'logs'));
    await writeFile(path, `\uFEFF${line('a', 1)}\r\n\r\n${line('a', 2)}\r\n\n${line('a', 3)}\n`);
    const c = await consume(await driver());
    await c.until(3);
    await settle();
    expect(c.bodies()).toEqual([line('a', 1), line('a', 2), line('a', 3)]);
  });

  it('hands out deliveries round-robin to competing consumers of one group, each line once', async () => {
    const d = await driver();
    const consumers = [await consume(d, { readAhead: 1 }), await consume(d, { readAhead: 1 })];
    const acking = setInterval(() => {
      for (const c of consumers) for (const g of c.got) void g.ack();
    }, 5);
    await d.send(Array.from({ length: 20 }, (_, n) => message(line('s', n))));
    await vi.waitFor(() => expect(consumers[0]!.got.length + consumers[1]!.got.length).toBe(20));
    clearInterval(acking);
    const all = consumers.flatMap((c) => c.bodies());
    expect(new Set(all).size).toBe(20);
    expect(consumers.every((c) => c.got.length >= 5)).toBe(true);
  });

  it('stop() ends new deliveries but keeps acks working', async () => {
    const d = await driver();
    const c = await consume(d, { readAhead: 1 });
    await d.send([message(line('a', 1)), message(line('a', 2))]);
    await c.until(1);
    await c.consumer.stop();
    await c.got[0]?.ack();
    await settle();
    expect(c.got).toHaveLength(1);
    expect((await offsetOf()).offset).toBe(line('a', 1).length + 1);
  });

  it('keeps per-sender order: never two lines of one sender in flight', async () => {
    const d = await driver();
    const c = [
      await consume(d, { readAhead: 5, ordering: 'per-sender' }),
      await consume(d, { readAhead: 5 }),
    ];
    await d.send(
      [line('a', 1), line('a', 2), line('b', 1), 'not json', line('b', 2), line('a', 3)].map((l) =>
        message(l),
      ),
    );
    const delivered = () => c.flatMap((x) => x.got);
    await vi.waitFor(() => expect(delivered()).toHaveLength(3));
    await settle();
    const bodies = () => delivered().map((g) => text(g.body));
    expect(bodies().sort()).toEqual([line('a', 1), line('b', 1), 'not json'].sort());
    await delivered()
      .find((g) => text(g.body) === line('a', 1))
      ?.ack();
    await vi.waitFor(() => expect(bodies()).toContain(line('a', 2)));
    await settle();
    expect(bodies()).not.toContain(line('a', 3));
    expect(bodies()).not.toContain(line('b', 2));
  });

  it('delivers a released line again, first, marked redelivered', async () => {
    const d = await driver();
    const c = await consume(d, { readAhead: 1 });
    await d.send([message(line('a', 1)), message(line('a', 2))]);
    await c.until(1);
    await c.got[0]?.release();
    await c.until(2);
    expect(c.bodies()).toEqual([line('a', 1), line('a', 1)]);
    expect(c.got[1]?.redelivered).toBe(true);
    // Handed back by its consumer, not taken back: its signal stays quiet, and an ack of it is refused.
    expect(c.got[0]?.revoked?.aborted).toBe(false);
    await expect(c.got[0]!.ack()).rejects.toMatchObject({ code: 'DELIVERY_TAKEN_BACK' });
    expect((await offsetOf()).offset).toBe(0);
    await c.got[1]?.ack();
    await c.until(3);
    expect(c.bodies()[2]).toBe(line('a', 2));
    expect(c.got[2]?.redelivered).toBe(false);
  });
});

describe('offsets', () => {
  it('advances only over a contiguous prefix of acked lines', async () => {
    const d = await driver();
    const lines = [line('a', 1), line('b', 1), line('c', 1)];
    await d.send(lines.map((l) => message(l)));
    const c = await consume(d);
    await c.until(3);
    expect((await offsetOf()).offset).toBe(0);
    await c.got[1]?.ack();
    await c.got[2]?.ack();
    await settle(50);
    expect((await offsetOf()).offset).toBe(0);
    await c.got[0]?.ack();
    expect((await offsetOf()).offset).toBe(lines.join('\n').length + 1);
  });

  it('lets a later consumer of the group continue from the offset: no loss, no replay of acked lines', async () => {
    const d = await driver();
    await d.send([1, 2, 3, 4].map((n) => message(line('a', n))));
    const first = await consume(d);
    await first.until(4);
    await first.got[0]?.ack();
    await first.got[1]?.ack();
    await first.consumer.close();
    await d.close();
    const again = await consume(await driver());
    await again.until(2);
    await settle();
    expect(again.bodies()).toEqual([line('a', 3), line('a', 4)]);
  });

  it('starts a new group at its creation (latest, across restarts) or at the first line (beginning)', async () => {
    const d = await driver();
    await d.send([message(line('a', 1)), message(line('a', 2))]);
    const late = await consume(d, { group: 'late', from: 'latest' });
    await settle();
    expect(late.got).toHaveLength(0);
    await late.consumer.close();
    await d.send([message(line('a', 3))]); // published while nobody consumes "late"
    const back = await consume(d, { group: 'late', from: 'latest' });
    await back.until(1);
    expect(back.bodies()).toEqual([line('a', 3)]);
    const all = await consume(d, { group: 'all', from: 'beginning' });
    await all.until(3);
    expect(all.bodies()).toEqual([1, 2, 3].map((n) => line('a', n)));
  });

  it('does not start a latest group inside a line being written', async () => {
    await mkdir(join(dir, 'logs'));
    await writeFile(path, `${line('a', 1)}\n{"sender_id": "a", "ev`);
    const c = await consume(await driver(), { from: 'latest' });
    await appendFile(path, `ent": "user"}\n${line('a', 2)}\n`);
    await c.until(1);
    await settle();
    expect(c.bodies()).toEqual([line('a', 2)]);
  });

  it('starts again from 0, with a warning, when the file is truncated or replaced', async () => {
    const d = await driver();
    await d.send([message(line('long-sender', 1)), message(line('long-sender', 2))]);
    const c = await consume(d);
    await c.until(2);
    await Promise.all(c.got.map((g) => g.ack()));
    await writeFile(path, '{"sender_id": "t"}\n'); // truncated in place
    await c.until(3);
    expect(c.bodies()[2]).toBe('{"sender_id": "t"}');
    expect(warnings.some((w) => /truncated: group "g" starts again from 0/.test(w))).toBe(true);
    await c.got[2]?.ack();
    await writeFile(join(dir, 'next'), '{"sender_id": "r1"}\n{"sender_id": "r2"}\n');
    await rename(join(dir, 'next'), path); // replaced by a new file, as log rotation does
    await c.until(5);
    expect(c.bodies().slice(3)).toEqual(['{"sender_id": "r1"}', '{"sender_id": "r2"}']);
    expect(warnings.some((w) => /replaced: group "g" starts again from 0/.test(w))).toBe(true);
    await Promise.all(c.got.slice(3).map((g) => g.ack()));
    // Rewritten in place and already longer than the offset when next looked at (logrotate's copytruncate).
    await writeFile(path, '{"sender_id": "rewritten-with-a-longer-line"}\n{"sender_id": "z"}\n');
    await c.until(7);
    expect(c.bodies().slice(5)).toEqual([
      '{"sender_id": "rewritten-with-a-longer-line"}',
      '{"sender_id": "z"}',
    ]);
  });

  it('keeps persisting offsets after restarting a group that had acked nothing', async () => {
    const d = await driver();
    await d.send([message(line('long-sender', 1))]);
    const c = await consume(d);
    await c.until(1);
    await writeFile(path, '{"sender_id": "t"}\n');
    await c.until(2);
    await c.got[1]?.ack();
    expect((await offsetOf()).offset).toBe('{"sender_id": "t"}\n'.length);
  });

  it('keeps nothing of an ephemeral group once its last consumer left; a group that exists stays durable', async () => {
    const d = await driver();
    await d.send([message(line('a', 1))]);
    const tail = await consume(d, { group: 'tail', ephemeral: true });
    const peer = await consume(d, { group: 'tail', ephemeral: true });
    await vi.waitFor(() => expect(tail.got.length + peer.got.length).toBe(1));
    await [...tail.got, ...peer.got][0]?.ack();
    expect(await readdir(`${path}.parley`)).toEqual(['tail.lock']);
    await tail.consumer.close();
    await peer.consumer.close();
    expect(await readdir(`${path}.parley`)).toEqual([]);
    const durable = await consume(d, { group: 'kept' });
    await durable.until(1);
    await durable.got[0]?.ack();
    await durable.consumer.close();
    const visitor = await consume(d, { group: 'kept', ephemeral: true });
    await settle();
    expect(visitor.got).toEqual([]); // it continues from the group's offset
    await visitor.consumer.close();
    expect(await readdir(`${path}.parley`)).toEqual(['kept.offset']);
  });

  it('escapes group names into safe file names and refuses empty ones', async () => {
    const d = await driver();
    const c = await consume(d, { group: '../evil/x y' });
    await c.consumer.close();
    expect(await readdir(`${path}.parley`)).toEqual(['..%2Fevil%2Fx%20y.offset']);
    await expect(consume(d, { group: '' })).rejects.toThrow(/invalid group/);
  });
});

describe('locks', () => {
  it('refuses a group another live process consumes, naming the lock file', async () => {
    const lock = `${path}.parley/g.lock`;
    await mkdir(`${path}.parley`, { recursive: true });
    await writeFile(lock, `${process.ppid}\n`);
    const d = await driver();
    await expect(consume(d)).rejects.toThrow(`lock file ${lock}`);
    await expect(consume(d)).rejects.toThrow(`process ${process.ppid}`);
    expect(await readFile(lock, 'utf8')).toBe(`${process.ppid}\n`);
  });

  it('takes over a stale lock with a warning and removes its own on close', async () => {
    const lock = `${path}.parley/g.lock`;
    await mkdir(`${path}.parley`, { recursive: true });
    await writeFile(lock, '999999\n');
    const d = await driver();
    const c = await consume(d);
    expect(await readFile(lock, 'utf8')).toBe(`${process.pid}\n`);
    expect(warnings.some((w) => w.includes(`took over the stale lock ${lock} of process 999999`))).toBe(true);
    const other = await consume(d); // same process: competes instead of being refused
    await other.consumer.close();
    await c.consumer.close();
    expect(existsSync(lock)).toBe(false);
  });
});

describe('faults', () => {
  it('cut: the session is lost, sends fail as retryable, consumers leave (deliveries revoked), connect waits for restore', async () => {
    const d = await driver();
    const c = await consume(d, { readAhead: 2 });
    await d.send([message(line('a', 1)), message(line('a', 2))]);
    await c.until(2);
    expect(c.got.map((g) => g.revoked?.aborted)).toEqual([false, false]);
    await d.faults?.cut();
    expect(d.isReady()).toBe(false);
    expect(d.losses.map((e) => e.message)).toEqual([
      '[parley] [file] storage unavailable (simulated outage)',
    ]);
    expect(c.got.map((g) => g.revoked?.aborted)).toEqual([true, true]);
    expect(c.lost).toEqual([]); // a lost connection is reported once, to the session
    const [outcome] = await d.send([message(line('a', 3))]);
    expect(outcome).toMatchObject({ ok: false, retryable: true });
    expect(outcome?.ok === false && outcome.error.message).toBe(
      '[parley] [file] storage unavailable (simulated outage)',
    );
    // Taken back by the outage: not acknowledged, it comes again.
    await expect(c.got[0]!.ack()).rejects.toMatchObject({ code: 'DELIVERY_TAKEN_BACK' });
    await expect(consume(d)).rejects.toThrow(/storage unavailable/);
    expect(existsSync(`${path}.parley/g.lock`)).toBe(false); // the group was left: another process may take it
    let connected = false;
    const again = session();
    const connecting = d.connect(again).then(() => (connected = true));
    await appendFile(path, `${line('a', 3)}\n`);
    await settle();
    expect(connected).toBe(false);
    expect(c.got).toHaveLength(2);
    await d.faults?.restore();
    await connecting;
    expect(d.isReady()).toBe(true);
    // What core does after a reconnect: a new consume() for the subscription.
    const resumed = await consume(d, { readAhead: 2 });
    await resumed.until(2);
    expect(resumed.bodies()).toEqual([line('a', 1), line('a', 2)]);
    expect(resumed.got.every((g) => g.redelivered)).toBe(true);
    await Promise.all(resumed.got.map((g) => g.ack()));
    await resumed.until(3);
    expect(resumed.bodies()[2]).toBe(line('a', 3));
    expect(resumed.got[2]?.redelivered).toBe(false);
    await d.faults?.cut();
    expect(again.losses).toHaveLength(1); // the new session is told; the old one is not told twice
    expect(d.losses).toHaveLength(1);
  });

  it('cut takes back only its own consumers: another driver on the group goes on', async () => {
    const [mine, theirs] = [await driver(), await driver()];
    const a = await consume(mine, { readAhead: 1 });
    const b = await consume(theirs, { readAhead: 1 });
    await mine.send([1, 2, 3].map((n) => message(line('s', n))));
    await vi.waitFor(() => expect(a.got.length + b.got.length).toBe(2));
    await mine.faults?.cut();
    expect(a.got.every((g) => g.revoked?.aborted)).toBe(true);
    expect(b.got.every((g) => !g.revoked?.aborted)).toBe(true);
    await b.got[0]?.ack();
    // The rest, the line taken back from `mine` included, goes to the consumer still there.
    await vi.waitFor(async () => {
      for (const g of b.got) await g.ack().catch(() => {});
      expect(new Set(b.bodies())).toEqual(new Set([1, 2, 3].map((n) => line('s', n))));
    });
  });

  it('a consumer joining while the storage goes away leaves its group at once', async () => {
    const d = await driver();
    const joining = consume(d);
    await d.faults?.cut();
    await expect(joining).rejects.toThrow(/storage unavailable/);
    expect(existsSync(`${path}.parley/g.lock`)).toBe(false);
  });

  it('close during a cut fails the pending connect', async () => {
    const d = await driver();
    await d.faults?.cut();
    const connecting = d.connect(session());
    await d.close();
    await expect(connecting).rejects.toThrow(/closed/);
  });

  it('through a broker: a cut aborts the running handler, and the subscription resumes after restore', async () => {
    const options = { path, pollIntervalMs: 20, onWarning: (m: string) => void warnings.push(m) };
    const driverOf = fileDriver(options);
    const broker = (await import('../src/broker/define.js')).defineBroker(driverOf, {
      ...options,
      reconnect: { initialMs: 10, maxMs: 50 },
    });
    cleanups.push(() => broker.close());
    const signals: AbortSignal[] = [];
    const handled: string[] = [];
    const sub = broker.subscribe(
      async (event, context) => {
        if (signals.length === 0) {
          signals.push(context.signal);
          await new Promise((resolve) => context.signal.addEventListener('abort', resolve));
          throw new Error('aborted');
        }
        handled.push(`${event.sender_id}:${context.redelivered}`);
      },
      { group: 'g', from: 'beginning' },
    );
    await sub.ready;
    await broker.publish({ sender_id: 'a', event: 'user', text: 'hi', timestamp: 1 } as never);
    await vi.waitFor(() => expect(signals).toHaveLength(1));
    await driverOf.faults?.cut();
    expect(signals[0]?.aborted).toBe(true);
    await driverOf.faults?.restore();
    await vi.waitFor(() => expect(handled).toEqual(['a:true']));
    expect(sub.stats).toMatchObject({ revoked: 1, resumed: 1, acked: 1 });
    expect((await broker.health()).reconnects).toBe(1);
  });
});

/** A dead letter of group `group` with this body. */
const deadLetterOf = (group: string, body: string, extra: Partial<DeadLetter> = {}): DeadLetter => ({
  messageId: '42',
  reason: 'handler-failed',
  body: bytes(body),
  headers: {},
  error: { name: 'Error', message: 'boom' },
  attempts: 5,
  group,
  destination: path,
  failedAt: 1_700_000_000_000,
  ...extra,
});

describe('dead letters and redrive', () => {
  it('writes dead letters as JSON lines and reads them back, UTF-8 or not', async () => {
    const d = await driver();
    const utf8 = bytes('{"sender_id": "s", "text": "café"}');
    const binary = new Uint8Array([0xff, 0xfe, 0x00, 0x7b]);
    const base = { headers: {}, attempts: 5, destination: path, failedAt: 1_700_000_000_000 } as const;
    await d.deadLetter?.({
      ...base,
      messageId: '120',
      reason: 'handler-failed',
      body: utf8,
      group: 'g1',
      senderId: 's',
      error: { name: 'TypeError', message: 'boom', code: 'E_BOOM' },
    });
    await d.deadLetter?.({
      ...base,
      messageId: '7',
      reason: 'undecodable',
      body: binary,
      group: 'g2',
      error: { name: 'EventDecodeError', message: 'not UTF-8' },
    });
    const raw = (await readFile(`${path}.dead-letter.jsonl`, 'utf8')).split('\n');
    const first = JSON.parse(raw[0] ?? '');
    expect(first).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      group: 'g1',
      messageId: '120',
      reason: 'handler-failed',
      error: { name: 'TypeError', message: 'boom', code: 'E_BOOM' },
      attempts: 5,
      failedAt: 1_700_000_000_000,
      senderId: 's',
      body: '{"sender_id": "s", "text": "café"}',
    });
    const second = JSON.parse(raw[1] ?? '');
    expect(second).toMatchObject({ bodyBase64: Buffer.from(binary).toString('base64') });
    const letters = await readDeadLetters(path);
    expect(letters.map((l) => l.body)).toEqual([utf8, binary]);
    expect(await readDeadLetters(`${path}.dead-letter.jsonl`, 'g2')).toEqual([
      {
        id: second.id,
        messageId: '7',
        group: 'g2',
        reason: 'undecodable',
        error: { name: 'EventDecodeError', message: 'not UTF-8' },
        attempts: 5,
        failedAt: 1_700_000_000_000,
        body: binary,
      },
    ]);
    expect(await readDeadLetters(join(dir, 'none.log'))).toEqual([]);
    expect(await d.deadLetters?.list('g1')).toEqual([
      { ...letters[0], headers: {}, destination: path, id: first.id },
    ]);
  });

  it("redrives to that group only, keeps the message's id, and removes the letters from the file", async () => {
    const d = await driver();
    const g = await consume(d, { group: 'g' });
    const h = await consume(d, { group: 'h' });
    await d.deadLetter?.(deadLetterOf('g', line('a', 1), { messageId: '100' }));
    await d.deadLetter?.(deadLetterOf('h', line('b', 1)));
    await d.deadLetter?.(deadLetterOf('g', line('a', 2), { messageId: '200' }));
    const listed = (await d.deadLetters?.list('g')) ?? [];
    expect(listed.map((l) => [text(l.body), l.messageId, l.destination])).toEqual([
      [line('a', 1), '100', path],
      [line('a', 2), '200', path],
    ]);
    await d.deadLetters?.redrive('g', [listed[0]!]);
    await g.until(1);
    expect(g.got[0]).toMatchObject({ id: '100', redelivered: true });
    expect(g.bodies()).toEqual([line('a', 1)]);
    // Listed again, the one left keeps its id although the file was rewritten around it.
    expect(await d.deadLetters?.list('g')).toEqual([listed[1]]);
    expect((await d.deadLetters?.list('h'))?.map((l) => text(l.body))).toEqual([line('b', 1)]);
    const batches = async () =>
      (await readdir(`${path}.parley/g.redrive`)).filter((name) => name.endsWith('.jsonl'));
    expect(await batches()).toHaveLength(1); // until every message of it is acknowledged
    await g.got[0]?.ack();
    expect(await batches()).toEqual([]);
    await settle();
    expect(h.got).toEqual([]);
    expect(g.got).toHaveLength(1);
  });

  it('keeps a redrive for a group nobody consumes, and hands an unacknowledged one out again', async () => {
    const d = await driver();
    await d.deadLetter?.(deadLetterOf('g', line('a', 1)));
    await d.deadLetters?.redrive('g', [...((await d.deadLetters?.list('g')) ?? [])]);
    expect(await d.deadLetters?.list('g')).toEqual([]);
    const first = await consume(d);
    await first.until(1);
    await first.consumer.close(); // never acknowledged: the batch stays
    const second = await consume(d);
    await second.until(1);
    expect(second.bodies()).toEqual([line('a', 1)]);
    expect(second.got[0]?.redelivered).toBe(true);
  });

  it('redriven messages go first and keep per-sender order with the log', async () => {
    const d = await driver();
    await d.deadLetter?.(deadLetterOf('g', line('a', 0)));
    const c = await consume(d, { ordering: 'per-sender' });
    await d.send([message(line('a', 1)), message(line('b', 1))]);
    await c.until(2);
    await Promise.all(c.got.map((g) => g.ack()));
    await d.deadLetters?.redrive('g', [...((await d.deadLetters?.list('g')) ?? [])]);
    await d.send([message(line('a', 2))]);
    await c.until(3);
    await settle();
    // Sender a's redriven message is in flight: its next log line waits for it.
    expect(c.bodies().slice(2)).toEqual([line('a', 0)]);
    await c.got[2]?.ack();
    await c.until(4);
    expect(c.bodies()[3]).toBe(line('a', 2));
  });

  it('keeps dead letters appended while a redrive rewrites the file', async () => {
    const d = await driver();
    for (let i = 0; i < 20; i++) await d.deadLetter?.(deadLetterOf('g', line('old', i)));
    const old = (await d.deadLetters?.list('g')) ?? [];
    await Promise.all([
      d.deadLetters?.redrive('g', old.slice(0, 10)),
      ...Array.from({ length: 10 }, (_, i) => d.deadLetter?.(deadLetterOf('g', line('new', i)))),
    ]);
    const left = ((await d.deadLetters?.list('g')) ?? []).map((l) => text(l.body));
    expect(left.sort()).toEqual(
      [
        ...old.slice(10).map((l) => text(l.body)),
        ...Array.from({ length: 10 }, (_, i) => line('new', i)),
      ].sort(),
    );
  });

  it('names records without an id by their offset, and writes that id in when a rewrite moves them', async () => {
    await mkdir(join(dir, 'logs'), { recursive: true });
    const legacy = (body: string) =>
      `${JSON.stringify({ group: 'g', reason: 'invalid', error: { name: 'E', message: 'm' }, attempts: 1, failedAt: 1, body })}\n`;
    const first = legacy(line('a', 1));
    await writeFile(`${path}.dead-letter.jsonl`, first + legacy(line('a', 2)));
    const d = await driver();
    const listed = (await d.deadLetters?.list('g')) ?? [];
    expect(listed.map((l) => [l.id, l.messageId])).toEqual([
      ['@0', ''],
      [`@${Buffer.byteLength(first)}`, ''],
    ]);
    await d.deadLetters?.redrive('g', [listed[0]!]);
    expect(await d.deadLetters?.list('g')).toEqual([listed[1]]);
  });

  it('through a broker: deadLetters() lists what failed, redrive({ ids }) hands it back to the group', async () => {
    const broker = fileBroker({ path, pollIntervalMs: 20, onWarning: (m) => void warnings.push(m) });
    cleanups.push(() => broker.close());
    let fixed = false;
    const handled: { text: string; id: string; redelivered: boolean }[] = [];
    const sub = broker.subscribe(
      (event, context) => {
        if (event.event !== 'user') return;
        if (event.text === 'bad' && !fixed) throw new Error('not yet');
        handled.push({ text: String(event.text), id: context.id, redelivered: context.redelivered });
      },
      { group: 'g', maxAttempts: 1 },
    );
    await sub.ready;
    await broker.publish({ sender_id: 's', event: 'user', text: 'bad', timestamp: 1 } as never);
    await broker.publish({ sender_id: 't', event: 'user', text: 'good', timestamp: 2 } as never);
    await vi.waitFor(async () => expect(await broker.deadLetters('g')).toHaveLength(1));
    const [letter] = await broker.deadLetters('g');
    expect(letter).toMatchObject({ group: 'g', reason: 'handler-failed', destination: path, attempts: 1 });
    await expect(broker.redrive({ group: 'g', ids: ['nope'] })).rejects.toThrow(/no dead letter/);
    fixed = true;
    expect(await broker.redrive({ group: 'g', ids: [letter!.id] })).toEqual({ redriven: 1 });
    await vi.waitFor(() => expect(handled.map((h) => h.text)).toEqual(['good', 'bad']));
    expect(handled[1]).toEqual({ text: 'bad', id: letter!.messageId, redelivered: true });
    expect(await broker.deadLetters('g')).toEqual([]);
    expect(await readDeadLetters(path)).toEqual([]);
  });

  it('picks up a redrive made by another process', async () => {
    const d = await driver();
    const c = await consume(d);
    await d.deadLetter?.(deadLetterOf('g', line('a', 1)));
    const script = `
      const { fileDriver } = await import(${JSON.stringify(new URL('../src/broker/file.ts', import.meta.url).href)});
      const d = fileDriver({ path: ${JSON.stringify(path)} });
      await d.deadLetters.redrive('g', await d.deadLetters.list('g'));
      await d.close();
    `;
    execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      timeout: 30_000,
    });
    await c.until(1);
    expect(c.bodies()).toEqual([line('a', 1)]);
    expect(await d.deadLetters?.list('g')).toEqual([]);
  });
});

describe('torn tail', () => {
  const fragment = '{"sender_id": "a", "event": "us';

  /** Leaves what a writer killed mid-append leaves: it writes part of a line, then dies by SIGKILL. */
  async function killedMidAppend(file: string, partial: string): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const fd = fs.openSync(process.argv[1], 'a');
         fs.writeSync(fd, process.argv[2]);
         process.stdout.write('written\\n');
         setInterval(() => {}, 1000);`,
        file,
        partial,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
  }

  it('a writer opening a log left torn by a killed writer ends the fragment first: the event stays whole', async () => {
    await mkdir(join(dir, 'logs'));
    const first = '{"sender_id": "a", "event": "user", "text": "a1", "timestamp": 1}';
    await writeFile(path, `${first}\n`);
    await killedMidAppend(path, fragment);
    expect(await readFile(path, 'utf8')).toBe(`${first}\n${fragment}`);
    const broker = fileBroker({ path, pollIntervalMs: 20, onWarning: (m) => void warnings.push(m) });
    cleanups.push(() => broker.close());
    const handled: string[] = [];
    const dead: DeadLetter[] = [];
    const sub = broker.subscribe((event) => void handled.push(`${event.sender_id}:${event.event}`), {
      group: 'g',
      from: 'beginning',
      onDeadLetter: (letter) => void dead.push(letter),
    });
    await sub.ready;
    await broker.publish({ sender_id: 'b', event: 'user', text: 'kept', timestamp: 2 } as never);
    await vi.waitFor(() => expect(handled).toEqual(['a:user', 'b:user']));
    await vi.waitFor(() => expect(dead).toHaveLength(1));
    expect(dead[0]?.reason).toBe('undecodable');
    expect(text(dead[0]!.body)).toBe(fragment);
    const lines = (await readFile(path, 'utf8')).split('\n');
    expect(lines.slice(0, 2)).toEqual([first, fragment]);
    expect(JSON.parse(lines[2] ?? '')).toMatchObject({ sender_id: 'b', text: 'kept' });
  });

  it('repairs the dead-letter file the same way', async () => {
    await mkdir(join(dir, 'logs'));
    await killedMidAppend(`${path}.dead-letter.jsonl`, '{"id": "torn", "group": "g", "rea');
    const d = await driver();
    await d.deadLetter?.(deadLetterOf('g', line('a', 1)));
    expect((await readDeadLetters(path)).map((l) => text(l.body))).toEqual([line('a', 1)]);
  });

  it('a clean tail gets no extra line', async () => {
    const d = await driver();
    await d.send([message(line('a', 1))]);
    await d.send([message(line('a', 2))]);
    expect(await readFile(path, 'utf8')).toBe(`${line('a', 1)}\n${line('a', 2)}\n`);
  });
});

describe('warnings', () => {
  it("go to the broker's logger when no onWarning is given", async () => {
    const logged: string[] = [];
    const d = fileDriver({ path, logger: { warn: (m) => void logged.push(m) } });
    cleanups.push(() => d.close());
    await d.connect(session());
    await mkdir(`${path}.parley`, { recursive: true });
    await writeFile(`${path}.parley/g.offset`, 'not json');
    const c = await d.consume(
      { group: 'g', readAhead: 1, from: 'beginning', ordering: 'none', ephemeral: false },
      { deliver: () => {}, lost: () => {} },
    );
    await c.close();
    expect(logged).toEqual([expect.stringContaining('unreadable offset')]);
  });
});

describe('capabilities', () => {
  it('declares its capabilities and reports its health', async () => {
    const d = await driver();
    expect(d.capabilities).toEqual({
      consumerGroups: true,
      competingConsumers: true,
      ordering: 'group',
      replay: true,
      deadLetter: 'emulated',
      batchPublish: true,
      persistent: true,
      headers: false,
      deliveryCount: false,
      retry: 'in-process',
      leases: false,
      redrive: true,
    });
    expect(d.isReady()).toBe(true);
    await consume(d);
    expect(await d.health?.()).toEqual({ path, consumers: 1, simulatedOutage: false });
    await d.close();
    expect(d.isReady()).toBe(false);
  });
});
