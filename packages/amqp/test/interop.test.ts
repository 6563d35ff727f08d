/**
 * Interoperability with Rasa itself, through real Python peers on Debian's python3-pika:
 *
 * 1. peers/rasa_publisher.py does what Rasa's PikaEventBroker does (topology, properties, json.dumps body) with
 *    the Rasa fixture conversations: Parley receives every event, equal field by field, in order per sender.
 * 2. Parley publishes the same events; the consumer from Rasa's docs (peers/rasa_consumer.py) receives bodies
 *    byte-identical to Rasa's, with Rasa's properties.
 * 3. The topology declared by either side first, then by the other: no channel error (and a deliberately
 *    mismatched declaration does fail with 406, so the test would catch one).
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AnyEvent, type Broker, decodeEvent, type EventEnvelope } from '@parley/core';
import { connect } from 'amqplib';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AmqpBrokerOptions, type AmqpClient, amqpBroker } from '../src/index.js';
import { AMQP_URL, deleteQueuesWithPrefix } from './support.js';

const PYTHON = '/usr/bin/python3';
const hasPika =
  existsSync(PYTHON) &&
  spawnSync(PYTHON, ['-c', 'import pika'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
const NEEDS = '(needs /usr/bin/python3 with pika)';

const here = dirname(fileURLToPath(import.meta.url));
const peers = join(here, 'peers');
const rasa = join(here, '../../../fixtures/rasa');

// The three Rasa fixture conversations, as fixtures/gen-wire.py reads them: the CALM recording is a bare event
// list with no tracker, hence no sender_id of its own.
const LIST_SENDER = 'calm-add-contact';
const conversations = [
  { tracker: 'tracker_moodbot.json', wire: 'tracker_moodbot.jsonl' },
  { tracker: 'tracker_moodbot_with_new_utterances.json', wire: 'tracker_moodbot_with_new_utterances.jsonl' },
  { tracker: 'calm_add_contact_inspector.events.json', wire: 'calm_add_contact_inspector.jsonl' },
].map(({ tracker, wire }) => ({
  tracker: join(rasa, 'trackers', tracker),
  // Each line is exactly the bytes Rasa publishes for one event.
  lines: readFileSync(join(rasa, 'wire', wire), 'utf8')
    .split('\n')
    .filter(Boolean),
}));
const allLines = conversations.flatMap((c) => c.lines);
const allTrackers = conversations.map((c) => c.tracker);

// ─── Python peers ────────────────────────────────────────────────────────────────────────────────────────────

interface PythonRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a peer with /usr/bin/python3; resolves with its exit code whatever it is (60 s at most). */
function runPython(
  script: string,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Promise<PythonRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.RASA_ENVIRONMENT; // the test decides, not the environment the tests run in
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[key];
    else childEnv[key] = value;
  }
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [join(peers, script), ...args],
      { env: childEnv, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** rasa_publisher.py: Rasa's PikaEventBroker publishing the given tracker files. */
function rasaPublish(
  exchange: string,
  queues: readonly string[],
  trackers: readonly string[],
  extra: readonly string[] = [],
): Promise<PythonRun> {
  const args = ['--url', AMQP_URL, '--exchange', exchange, '--list-sender', LIST_SENDER, ...extra];
  for (const queue of queues) args.push('--queue', queue);
  return runPython('rasa_publisher.py', [...args, ...trackers]);
}

interface ConsumedMessage {
  readonly body: string; // base64
  readonly sender_id: string;
  readonly event: string;
  readonly delivery_mode: number | null;
  readonly app_id: string | null;
  readonly content_type: string | null;
  readonly headers: Record<string, unknown> | null;
  readonly exchange: string;
  readonly routing_key: string;
}

/** rasa_consumer.py: the consumer from Rasa's docs, reading `count` messages of `queue`. */
async function rasaConsume(queue: string, count: number): Promise<ConsumedMessage[]> {
  const run = await runPython('rasa_consumer.py', [
    '--url',
    AMQP_URL,
    '--queue',
    queue,
    '--count',
    String(count),
    '--timeout',
    '30',
  ]);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  return run.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as ConsumedMessage);
}

// ─── Parley side ─────────────────────────────────────────────────────────────────────────────────────────────

const prefix = `interop-${process.pid}-`;
const exchanges = new Set<string>();
const queuesMade = new Set<string>();
let brokers: Broker<AmqpClient>[] = [];
let warnings: string[] = [];

/** Unique names per test; remembered for the cleanup. */
function names(tag: string): { exchange: string; queue: string } {
  const exchange = `${prefix}${tag}`;
  const queue = `${prefix}${tag}-events`;
  exchanges.add(exchange);
  queuesMade.add(queue);
  queuesMade.add(`${queue}.dead-letter`);
  return { exchange, queue };
}

function parley(exchange: string, queue: string, extra: Partial<AmqpBrokerOptions> = {}): Broker<AmqpClient> {
  const broker = amqpBroker({
    url: AMQP_URL,
    exchange_name: exchange,
    queues: [queue],
    connection_attempts: 1,
    retry_delay_in_seconds: 0.1,
    onWarning: (message) => warnings.push(message),
    ...extra,
  });
  brokers.push(broker);
  return broker;
}

interface Received {
  readonly envelope: EventEnvelope<AnyEvent>;
  readonly body: Buffer;
}

/** Subscribes with group = the queue, collecting what arrives; resolves once it is consuming. */
async function collect(broker: Broker<AmqpClient>, queue: string): Promise<Received[]> {
  const received: Received[] = [];
  const subscription = broker.subscribe(
    (envelope, context) => {
      received.push({ envelope, body: Buffer.from(context.body) });
    },
    { group: queue, maxAttempts: 1, onError: (error) => warnings.push(`onError: ${error.message}`) },
  );
  await subscription.ready;
  return received;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Waits for exactly `count`: then a little longer, to see that nothing more (no duplicate) arrives. */
async function receiveExactly(received: readonly Received[], count: number): Promise<void> {
  await waitFor(`${count} events (got ${received.length})`, () => received.length >= count);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(received.length).toBe(count);
}

/** The events of each sender, in order: what per-sender ordering promises. */
function bySender<T>(items: readonly T[], senderOf: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const sender = senderOf(item);
    out.set(sender, [...(out.get(sender) ?? []), item]);
  }
  return out;
}

const senderOfLine = (line: string) => (JSON.parse(line) as { sender_id: string }).sender_id;

/** Asserts Parley received exactly `lines`: bytes, field-by-field values, and order per sender. */
function expectReceived(received: readonly Received[], lines: readonly string[]): void {
  expect(received.length).toBe(lines.length);
  const got = bySender(received, (r) => r.envelope.sender_id);
  const want = bySender(lines, senderOfLine);
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [sender, expected] of want) {
    const actual = got.get(sender) ?? [];
    // Field by field: the decoded event is the JSON Rasa wrote, nothing added, dropped or changed.
    expect(
      actual.map((r) => r.envelope),
      `events of ${sender}`,
    ).toStrictEqual(expected.map((line) => JSON.parse(line)));
    // And the body arrived exactly as Rasa wrote it.
    expect(
      actual.map((r) => r.body.toString('utf8')),
      `bodies of ${sender}`,
    ).toEqual(expected);
  }
}

afterEach(async () => {
  const open = brokers;
  brokers = [];
  await Promise.all(open.map((broker) => broker.close({ timeoutMs: 5_000 }).catch(() => {})));
  warnings = [];
});

afterAll(async () => {
  if (exchanges.size > 0 || queuesMade.size > 0) {
    const model = await connect(AMQP_URL);
    try {
      const ch = await model.createChannel();
      for (const queue of queuesMade) await ch.deleteQueue(queue);
      for (const exchange of exchanges) await ch.deleteExchange(exchange);
      await ch.close();
    } finally {
      await model.close();
    }
  }
  await deleteQueuesWithPrefix(prefix); // anything left over (a test that failed half-way)
});

// ─── The tests ───────────────────────────────────────────────────────────────────────────────────────────────

describe("interop with Rasa's PikaEventBroker and the consumer from Rasa's docs", () => {
  it('reads the fixture conversations as 94 wire lines', () => {
    expect(allLines.length).toBe(94);
  });

  it.skipIf(!hasPika)(
    `Rasa publishes, Parley consumes: every event, field by field, in order per sender ${NEEDS}`,
    async () => {
      const { exchange, queue } = names('rasa-to-parley');
      const broker = parley(exchange, queue);
      const received = await collect(broker, queue);

      const run = await rasaPublish(exchange, [queue], allTrackers);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout.trim()).toBe(`published ${allLines.length}`);

      await receiveExactly(received, allLines.length);
      expectReceived(received, allLines);
      expect(warnings).toEqual([]);
    },
  );

  it.skipIf(!hasPika)(
    `Parley publishes, the consumer from Rasa's docs reads bodies byte-identical to Rasa's ${NEEDS}`,
    async () => {
      const { exchange, queue } = names('parley-to-rasa');
      const envelopes = allLines.map((line) => decodeEvent(line));

      const publishAndConsume = async (rasaEnvironment: string | undefined): Promise<ConsumedMessage[]> => {
        // The adapter reads RASA_ENVIRONMENT when the broker is created: set it for that moment only.
        const saved = process.env.RASA_ENVIRONMENT;
        if (rasaEnvironment === undefined) delete process.env.RASA_ENVIRONMENT;
        else process.env.RASA_ENVIRONMENT = rasaEnvironment;
        let broker: Broker<AmqpClient>;
        try {
          broker = parley(exchange, queue); // the default format: python, Rasa's bytes
        } finally {
          if (saved === undefined) delete process.env.RASA_ENVIRONMENT;
          else process.env.RASA_ENVIRONMENT = saved;
        }
        await broker.ready({ timeoutMs: 10_000 }); // declares the exchange and the queue
        const results = await broker.publishMany(envelopes);
        expect(results.filter((r) => !r.ok)).toEqual([]);
        await broker.close({ timeoutMs: 10_000 });
        return rasaConsume(queue, envelopes.length);
      };

      for (const rasaEnvironment of [undefined, 'staging']) {
        const messages = await publishAndConsume(rasaEnvironment);
        expect(messages.length).toBe(allLines.length);
        // Byte-identical to what Rasa publishes (one publisher, one queue: in publish order too).
        const bodies = messages.map((m) => Buffer.from(m.body, 'base64'));
        expect(bodies.map((b) => b.toString('utf8'))).toEqual(allLines);
        for (const [i, body] of bodies.entries())
          expect(body.equals(Buffer.from(allLines[i]!, 'utf8'))).toBe(true);
        // json.loads in the docs' callback read every one of them.
        expect(messages.map((m) => m.sender_id)).toEqual(allLines.map(senderOfLine));
        for (const m of messages) {
          expect({
            delivery_mode: m.delivery_mode,
            content_type: m.content_type,
            app_id: m.app_id,
            headers: m.headers === null || Object.keys(m.headers).length === 0 ? null : m.headers,
            // To the fanout exchange with routing key "": not Rasa 1.x's default exchange keyed by queue name.
            exchange: m.exchange,
            routing_key: m.routing_key,
          }).toEqual({
            delivery_mode: 2,
            content_type: null,
            app_id: rasaEnvironment ?? null,
            headers: null,
            exchange,
            routing_key: '',
          });
        }
      }
      expect(warnings).toEqual([]);
    },
  );

  it.skipIf(!hasPika)(
    `topology declared by Rasa first, then by Parley: no channel error, both directions flow ${NEEDS}`,
    async () => {
      const { exchange, queue } = names('rasa-first');
      const [fromRasa, fromParley] = conversations as [(typeof conversations)[0], (typeof conversations)[0]];

      // Rasa starts first: declares the exchange and its queue, publishes a conversation nobody reads yet.
      const run = await rasaPublish(exchange, [queue], [fromRasa.tracker]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout.trim()).toBe(`published ${fromRasa.lines.length}`);

      // Parley declares the same names on top: it connects, consumes what waited, publishes and consumes.
      const broker = parley(exchange, queue);
      await broker.ready({ timeoutMs: 10_000 });
      const received = await collect(broker, queue);
      await receiveExactly(received, fromRasa.lines.length);
      const results = await broker.publishMany(fromParley.lines.map((line) => decodeEvent(line)));
      expect(results.filter((r) => !r.ok)).toEqual([]);
      await receiveExactly(received, fromRasa.lines.length + fromParley.lines.length);
      expectReceived(received, [...fromRasa.lines, ...fromParley.lines]);
      expect(broker.isReady()).toBe(true);
      expect(warnings).toEqual([]);
    },
  );

  it.skipIf(!hasPika)(
    `topology declared by Parley first, then by Rasa: no channel error; a mismatched one fails with 406 ${NEEDS}`,
    async () => {
      const { exchange, queue } = names('parley-first');
      const calm = conversations[2]!;

      const broker = parley(exchange, queue);
      await broker.ready({ timeoutMs: 10_000 });
      const received = await collect(broker, queue);

      // Rasa starts second and declares the same topology: pika would raise ChannelClosedByBroker on a mismatch.
      const run = await rasaPublish(exchange, [queue], [calm.tracker]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout.trim()).toBe(`published ${calm.lines.length}`);
      await receiveExactly(received, calm.lines.length);
      expectReceived(received, calm.lines);

      // The control: a durable exchange of the same name is a mismatch, and RabbitMQ refuses it with 406, so the
      // checks above would have caught one.
      const wrong = await rasaPublish(exchange, [queue], [calm.tracker], ['--exchange-durable']);
      expect(wrong.code).toBe(3);
      expect(wrong.stderr).toMatch(/channel error 406 PRECONDITION_FAILED .*inequivalent arg 'durable'/);
      expect(wrong.stdout).toBe('');

      // Parley's own channels are untouched by the other client's channel error.
      const one = decodeEvent(calm.lines[0]!);
      await broker.publish(one);
      await receiveExactly(received, calm.lines.length + 1);
      expect(received.at(-1)?.envelope).toStrictEqual(JSON.parse(calm.lines[0]!));
      expect(broker.isReady()).toBe(true);
      expect(warnings).toEqual([]);
    },
  );
});
