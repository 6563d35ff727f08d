import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  actionExecuted,
  type Broker,
  brokerConfig,
  ConfigError,
  createBroker,
  createTracker,
  type DeadLetter,
  defineBroker,
  type EventEnvelope,
  fileBroker,
  InMemoryTrackerStore,
  MemoryHub,
  memoryBroker,
  memoryDriver,
  slotSet,
  unknownEvent,
  userUttered,
} from '../src/index.js';

const execFileAsync = promisify(execFile);
const quiet = { onWarning: () => {} };

/**
 * The error a user's app gets from `call` (a createBroker expression), run by Node in an empty folder outside the
 * workspace, where no adapter is installed: inside the workspace every adapter package is at hand.
 */
async function outsideTheWorkspace(call: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-app-'));
  const core = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'index.js')).href;
  const script = `import { brokerConfig, createBroker } from ${JSON.stringify(core)};
try { await ${call}; console.log('created'); } catch (error) { console.log(error.message); }`;
  // pnpm's NODE_PATH would find the workspace's packages: a user's app has none of it.
  const { NODE_PATH: _, ...env } = process.env;
  const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: dir,
    env,
  });
  rmSync(dir, { recursive: true, force: true });
  return stdout.trim();
}
const uniq = () => `t-${Math.random().toString(36).slice(2, 10)}`;

async function collect(broker: Broker, group: string, count: number): Promise<EventEnvelope[]> {
  const seen: EventEnvelope[] = [];
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const sub = broker.subscribe(
    (e) => {
      seen.push(e as EventEnvelope);
      if (seen.length === count) done();
    },
    { group, from: 'beginning' },
  );
  await sub.ready;
  await finished;
  await sub.close();
  return seen;
}

describe('createBroker', () => {
  it('builds the embedded brokers from endpoints.yml keys', async () => {
    const memory = await createBroker(
      brokerConfig({ type: 'memory', destination: uniq(), buffer_size: 5 }),
      quiet,
    );
    expect(memory.name).toBe('memory');
    await memory.close();
    const dir = mkdtempSync(join(tmpdir(), 'parley-'));
    const file = await createBroker(brokerConfig({ type: 'FILE', path: join(dir, 'events.log') }), quiet);
    expect(file.name).toBe('file');
    await file.close();
  });

  it('reads an endpoints.yml path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-'));
    writeFileSync(join(dir, 'endpoints.yml'), `event_broker:\n  type: memory\n  destination: ${uniq()}\n`);
    const broker = await createBroker(join(dir, 'endpoints.yml'), quiet);
    expect(broker.capabilities.replay).toBe(true);
    await broker.close();
    writeFileSync(join(dir, 'empty.yml'), 'tracker_store:\n  type: redis\n');
    await expect(createBroker(join(dir, 'empty.yml'))).rejects.toThrow('no event_broker section');
  });

  it('takes the event_broker section as a plain object, normalised exactly as the YAML is', async () => {
    const destination = uniq();
    // Type case and aliases, `${VAR}` in strings, and strings read as numbers, as in endpoints.yml.
    const broker = await createBroker(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: endpoints.yml's `${VAR}` syntax
      { type: 'MEMORY', destination: '${PARLEY_DEST}', buffer_size: '5' },
      { ...quiet, env: { PARLEY_DEST: destination } },
    );
    const reader = await createBroker(brokerConfig({ type: 'memory', destination }), quiet);
    const seen = collect(reader, 'g', 1);
    await broker.publish({ sender_id: 's', ...slotSet('city', 'Oslo') });
    expect((await seen).map((e) => e.event)).toEqual(['slot']);
    await Promise.all([broker.close(), reader.close()]);

    // Adapters load from the object form too (pika: see @parley/amqp's tests), named as the user installs them.
    expect(await outsideTheWorkspace("createBroker({ type: 'Kafka', url: 'localhost:9092' })")).toBe(
      '[parley] <createBroker options>: event_broker.type: the adapter is not installed: run `npm install @parley/kafka` (or `pnpm add @parley/kafka`)',
    );
    // Its keys are checked by the adapter, and errors name the section.
    await expect(createBroker({ type: 'memory', destnation: 'x' }, quiet)).rejects.toThrow(
      '[parley] <createBroker options>: event_broker: unknown key "destnation" (did you mean "destination"?) for the memory broker',
    );
    await expect(createBroker({ type: 'memory', format: 42 }, quiet)).rejects.toThrow(
      'event_broker.format: expected "python" or "compact", found 42',
    );
  });

  it('any other shape of config is an error saying what is expected', async () => {
    const expected =
      '[parley] createBroker: expected the path of an endpoints.yml, its event_broker section as an object ' +
      "with the same keys (e.g. { type: 'pika', url: 'localhost' }), or a BrokerConfig from loadEndpoints() or " +
      'brokerConfig()';
    const wrong: [unknown, string][] = [
      [42, 'found number 42'],
      [null, 'found null'],
      [undefined, 'found undefined'],
      [['memory'], 'found a list'],
      [
        { event_broker: { type: 'memory' } },
        'found a whole endpoints document: pass its event_broker section',
      ],
    ];
    for (const [config, found] of wrong) {
      const error = await createBroker(config as string).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toBe(
        `${expected}; ${found}${found.endsWith('section') ? ' (config.event_broker)' : ''}`,
      );
    }
  });

  it('names the exact install command when an adapter package is missing', async () => {
    expect(
      await outsideTheWorkspace(
        "createBroker(brokerConfig({ type: 'kafka', url: 'localhost:9092' }, 'endpoints.yml'))",
      ),
    ).toBe(
      '[parley] endpoints.yml: event_broker.type: the adapter is not installed: run `npm install @parley/kafka` (or `pnpm add @parley/kafka`)',
    );
  });

  it('rejects unknown keys and unsupported types clearly', async () => {
    await expect(
      createBroker(brokerConfig({ type: 'memory', destnation: 'x' }, 'endpoints.yml')),
    ).rejects.toThrow('unknown key');
    await expect(createBroker(brokerConfig({ type: 'sql', db: 'events.db' }))).rejects.toThrow(
      'SQL event broker is not supported',
    );
    await expect(createBroker(brokerConfig({ type: 'memory', format: 'xml' }))).rejects.toThrow(
      'expected "python" or "compact"',
    );
  });

  it('loads a custom adapter from a module path, as Rasa loads a broker class', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parley-'));
    const core = new URL('../dist/index.js', import.meta.url).href;
    writeFileSync(
      join(dir, 'my-broker.mjs'),
      `import { memoryBroker } from '${core}';\n` +
        'export function fromEndpointConfig(config) { return memoryBroker({ destination: config.options.topic }); }\n',
    );
    const broker = await createBroker(brokerConfig({ type: './my-broker.mjs', topic: uniq() }), {
      resolveFrom: dir,
    });
    expect(broker.name).toBe('memory');
    await broker.close();
    await expect(createBroker(brokerConfig({ type: './missing.mjs' }), { resolveFrom: dir })).rejects.toThrow(
      'cannot load the custom adapter module',
    );
  });
});

describe('InMemoryTrackerStore (Rasa semantics)', () => {
  it('streams only the events added since the last save, in order, as {sender_id, ...event}', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const broker = memoryBroker({ hub, destination, ...quiet });
    const store = new InMemoryTrackerStore({ eventBroker: broker });
    const tracker = createTracker('alice');
    tracker.events.push(
      actionExecuted('action_listen', { timestamp: 1 }),
      userUttered('hi', { timestamp: 2 }),
    );
    await store.save(tracker);
    tracker.events.push(slotSet('name', 'Alice', { timestamp: 3 }));
    await store.save(tracker);
    await store.save(tracker); // nothing new: nothing streamed
    const published = hub.messages(destination).map((m) => JSON.parse(Buffer.from(m.body).toString()));
    expect(published.map((e) => [e.sender_id, e.event, e.timestamp])).toEqual([
      ['alice', 'action', 1],
      ['alice', 'user', 2],
      ['alice', 'slot', 3],
    ]);
    expect(Object.keys(published[0])[0]).toBe('sender_id');
    expect((await store.retrieve('alice'))?.events).toHaveLength(3);
    expect(await store.keys()).toEqual(['alice']);
    await broker.close();
  });

  it('does not store a tracker whose events were refused, so the next save sends them again', async () => {
    const broker = memoryBroker({ destination: uniq(), ...quiet });
    await broker.close();
    const store = new InMemoryTrackerStore({ eventBroker: broker });
    const tracker = createTracker('bob', [actionExecuted('action_listen')]);
    await expect(store.save(tracker)).rejects.toThrow('1 of 1 events not accepted');
    expect(await store.retrieve('bob')).toBeUndefined();
  });
});

describe('defineBroker: publishing while the broker is away', () => {
  it('buffers in order while disconnected, then delivers everything', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const driver = memoryDriver({ hub, destination });
    const broker = defineBroker(driver, { ...quiet, reconnect: { initialMs: 10, maxMs: 50 } });
    await broker.ready();
    await driver.faults?.cut();
    const publishes = Array.from({ length: 50 }, (_, i) =>
      broker.publish({ sender_id: 's', ...slotSet('n', i, { timestamp: i }) }),
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(hub.messages(destination)).toHaveLength(0);
    expect((await broker.health()).buffered).toBe(50);
    await driver.faults?.restore();
    await Promise.all(publishes);
    expect(hub.messages(destination).map((m) => JSON.parse(Buffer.from(m.body).toString()).value)).toEqual(
      Array.from({ length: 50 }, (_, i) => i),
    );
    await broker.close();
  });

  it('rejects a publish when the bounded buffer is full, and rejects what is unsent at close', async () => {
    const driver = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    const broker = defineBroker(driver, { ...quiet, bufferSize: 3, reconnect: { initialMs: 10, maxMs: 20 } });
    await broker.ready();
    await driver.faults?.cut();
    const held = [1, 2, 3].map((i) => broker.publish({ sender_id: 's', ...slotSet('n', i) }));
    await expect(broker.publish({ sender_id: 's', ...slotSet('n', 4) })).rejects.toMatchObject({
      code: 'BUFFER_FULL',
      message: expect.stringContaining('[parley] [memory] publish buffer full (3 events waiting'),
    });
    await broker.close({ timeoutMs: 100 });
    for (const p of held) await expect(p).rejects.toMatchObject({ code: 'UNSENT_AT_CLOSE' });
  });

  it("waits for a busy sender's batch to settle instead of spinning (outcomes that come with I/O, as from a network)", async () => {
    const inner = memoryDriver({ hub: new MemoryHub(), destination: uniq() });
    let sends = 0;
    // A memory driver's outcomes come back within microtasks; a network broker's come with I/O, which a pump
    // spinning on microtasks starves: the publishes then never resolve (and the process burns a core).
    const driver: typeof inner = {
      ...inner,
      async send(batch) {
        sends++;
        await new Promise((resolve) => setTimeout(resolve, 5));
        return inner.send(batch);
      },
    };
    const broker = defineBroker(driver, quiet);
    await broker.ready();
    // 20 senders: after the first batch every waiting event's sender has a batch in flight.
    await Promise.all(
      Array.from({ length: 2_000 }, (_, i) =>
        broker.publish({ sender_id: `s${i % 20}`, ...slotSet('n', i) }),
      ),
    );
    expect(sends).toBeGreaterThanOrEqual(4);
    await broker.close();
  });

  it('rejects invalid events at once, before buffering', async () => {
    const broker = memoryBroker({ destination: uniq(), ...quiet });
    await expect(broker.publish({ sender_id: 's', event: 'slot', timestamp: 1 } as never)).rejects.toThrow(
      'invalid "slot" event at name',
    );
    const results = await broker.publishMany([
      { sender_id: 's', ...slotSet('a', 1) },
      { sender_id: 's', event: 'user', timestamp: 'x' } as never,
    ]);
    expect(results.map((r) => r.ok)).toEqual([true, false]);
    await broker.close();
  });
});

describe('subscriptions', () => {
  it('routes by event type with typed handlers', async () => {
    const broker = memoryBroker({ hub: new MemoryHub(), destination: uniq(), ...quiet });
    const texts: string[] = [];
    const names: string[] = [];
    const others: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const sub = broker.subscribe({
      user: (e) => void texts.push(e.text ?? ''),
      slot: (e) => void names.push(e.name),
      '*': (e) => {
        others.push(e.event);
        if (e.event === 'restart') done();
      },
    });
    await sub.ready;
    await broker.publish({ sender_id: 's', ...userUttered('hello') });
    await broker.publish({ sender_id: 's', ...slotSet('city', 'Oslo') });
    await broker.publish({ sender_id: 's', ...unknownEvent({ event: 'agent_handoff', timestamp: 1 }) });
    await broker.publish({ sender_id: 's', event: 'restart', timestamp: 2 });
    await finished;
    expect([texts, names, others]).toEqual([['hello'], ['city'], ['agent_handoff', 'restart']]);
    await broker.close();
  });

  it('dead-letters valid JSON that is no valid envelope (no sender_id) as invalid, and bytes that are not JSON as undecodable', async () => {
    // A foreign producer's lines in Rasa's file broker log: the bytes reach the subscription as they are.
    const path = join(mkdtempSync(join(tmpdir(), 'parley-')), 'events.log');
    const bodies = ['{"event": "user", "timestamp": 1, "text": "hi"}', '["x"]', 'not json {'];
    writeFileSync(path, `${bodies.join('\n')}\n`);
    const broker = fileBroker({ path, ...quiet });
    const letters: DeadLetter[] = [];
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const sub = broker.subscribe(() => {}, {
      from: 'beginning',
      onDeadLetter: (letter) => {
        letters.push(letter);
        if (letters.length === 3) done();
      },
    });
    await sub.ready;
    await all;
    expect(letters.map((l) => [Buffer.from(l.body).toString(), l.reason, l.error.code])).toEqual([
      [bodies[0], 'invalid', 'EVENT_INVALID'],
      [bodies[1], 'invalid', 'EVENT_INVALID'],
      [bodies[2], 'undecodable', 'EVENT_UNDECODABLE'],
    ]);
    expect(letters[0]!.error.message).toContain('at sender_id: expected a string (the conversation id)');
    await broker.close();
  });

  it('reads a subscription as an async iterator', async () => {
    const hub = new MemoryHub();
    const destination = uniq();
    const broker = memoryBroker({ hub, destination, ...quiet });
    for (let i = 0; i < 5; i++) await broker.publish({ sender_id: 's', ...slotSet('n', i) });
    const seen: unknown[] = [];
    for await (const event of broker.subscribe({ group: 'g', from: 'beginning' })) {
      if (event.event === 'slot') seen.push(event.value);
      if (seen.length === 3) break;
    }
    expect(seen).toEqual([0, 1, 2]);
    // The event the loop exited on (break or throw: indistinguishable) and what it never took stay with the group.
    expect((await collect(broker, 'g', 3)).map((e) => (e.event === 'slot' ? e.value : undefined))).toEqual([
      2, 3, 4,
    ]);
    await broker.close();
  });

  it('maxAttempts of the broker is the default of subscriptions that set none', async () => {
    const broker = memoryBroker({ hub: new MemoryHub(), destination: uniq(), maxAttempts: 2, ...quiet });
    const tries = (maxAttempts?: number) =>
      new Promise<number[]>((resolve, reject) => {
        const attempts: number[] = [];
        const sub = broker.subscribe(
          (_, context) => {
            attempts.push(context.attempt);
            throw new Error('always');
          },
          {
            group: uniq(),
            from: 'beginning',
            backoff: { initialMs: 1, maxMs: 1 },
            ...(maxAttempts === undefined ? {} : { maxAttempts }),
            onDeadLetter: () => void sub.close().then(() => resolve(attempts), reject),
          },
        );
      });
    await broker.publish({ sender_id: 's', ...userUttered('hello') });
    expect(await tries()).toEqual([1, 2]);
    expect(await tries(3)).toEqual([1, 2, 3]);
    await broker.close();
  });

  it("refuses from: 'beginning' on a broker without history, and subscribing after close", async () => {
    const broker = memoryBroker({ destination: uniq(), ...quiet });
    await broker.close();
    expect(() => broker.subscribe(() => {})).toThrow(expect.objectContaining({ code: 'BROKER_CLOSED' }));
  });
});

describe('adapter helpers', () => {
  it("splitBrokerOptions takes defineBroker's options out of an adapter's, leaving the endpoints.yml keys", async () => {
    const { splitBrokerOptions } = await import('../src/index.js');
    const onWarning = () => {};
    expect(
      splitBrokerOptions({ url: 'redis://x', stream: 's', onWarning, bufferBytes: 10, strict: undefined }),
    ).toEqual({
      broker: { onWarning, bufferBytes: 10 },
      keys: { url: 'redis://x', stream: 's' },
    });
  });

  it('checkReadAhead refuses a read-ahead below the concurrency, naming both keys', async () => {
    const { checkReadAhead } = await import('../src/index.js');
    expect(() => checkReadAhead('redis', { readAhead: 2, concurrency: 4 })).toThrow(
      '[parley] [redis] read_ahead (2) must be at least concurrency (4)',
    );
    expect(() => checkReadAhead('redis', { readAhead: 4, concurrency: 4 })).not.toThrow();
    expect(() => checkReadAhead('redis', { concurrency: 4 })).not.toThrow();
  });
});
