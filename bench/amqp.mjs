// RabbitMQ: Parley's amqp adapter beside hand-written amqplib code doing the same work (confirm-channel publishing
// with backpressure; a consumer with the same prefetch, JSON.parse and an ack per message), and its publishing
// beside a Python pika publisher written as Rasa-era code wrote it (BlockingConnection, a confirm per event).
// Needs RabbitMQ at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672; `node scripts/services.mjs up`).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { amqpBroker } from '@parley/amqp';
import { stringifyEvent } from '@parley/core';
import { connect } from 'amqplib';
import { benchBroker, bodiesFor, envelopes, publishRate, stringifyAll } from './brokers.mjs';
import { fmt, median, table } from './harness.mjs';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3';
const pikaScript = fileURLToPath(new URL('./peers/pika_publisher.py', import.meta.url));
const run$ = promisify(execFile);

const create = (destination) =>
  amqpBroker({ url: AMQP_URL, exchange_name: destination, queues: [destination], onWarning: () => {} });

const uniq = () => `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * @param {{ events?: number, runs?: number, concurrency?: number, rate?: number, seconds?: number,
 *   pikaEvents?: number, pikaRuns?: number }} [options]
 */
export async function run(options = {}) {
  const { pikaEvents = 5_000, pikaRuns = 3, ...brokerOptions } = options;
  const admin = await Admin.open().catch((error) => error);
  if (admin instanceof Error) {
    console.log(`\namqp: NOT run: cannot connect to ${redact(AMQP_URL)}: ${admin.message}`);
    console.log('  start RabbitMQ (`node scripts/services.mjs up`) or point AMQP_URL at one');
    process.exitCode = 1;
    return undefined;
  }
  const cleanup = (destination) => admin.remove(destination);
  try {
    const concurrency = brokerOptions.concurrency ?? 32;
    const amqp = await benchBroker({
      name: 'amqp',
      create,
      cleanup,
      baseline: {
        label: `amqplib by hand (JSON.stringify + confirm channel, persistent with a message id as the adapter's, drain-aware; prefetch ${concurrency}, JSON.parse, ack each)`,
        publish: rawPublish,
        consume: rawConsume,
        latency: rawLatency,
      },
      // 11 runs, not 7: per-run publish ratios span 0.8 – 1.2 for the same code. RabbitMQ sets the pace of both
      // sides (measured: either side has written all 10,000 messages ~200 ms into a ~750 ms run, the rest is waiting
      // for its confirms), and its pace varies from run to run; a median of more runs moves less between benches.
      options: { events: 10_000, runs: 11, ...brokerOptions },
    });
    const each = (xs) => xs.map(fmt).join(' / ');
    console.log(
      `runs, events/s: publish ${each(amqp.runs.publish)} vs ${each(amqp.runs.publishBase)}; ` +
        `consume ${each(amqp.runs.consume)} vs ${each(amqp.runs.consumeBase)}`,
    );
    const pika = await versusPika({ events: pikaEvents, runs: pikaRuns, cleanup });

    const line = (what, value, target, of) =>
      console.log(
        `${what}: ${value === undefined ? 'n/a' : `${value.toFixed(2)}×`} ${of} (target ≥ ${target}×): ${
          value === undefined ? 'not measured' : value >= target ? 'met' : 'NOT met'
        }`,
      );
    console.log('');
    line('publish with confirms', amqp.publishRatio, 0.95, 'raw amqplib');
    line(`consume (prefetch ${concurrency}, ack each)`, amqp.consumeRatio, 0.95, 'raw amqplib');
    line('publish with confirms', pika.ratio, 5, 'Python pika (BlockingConnection, confirms)');
    return { ...amqp, pikaRatio: pika.ratio };
  } finally {
    await admin.close();
  }
}

// ─── the baseline: amqplib by hand ─────────────────────────────────────────────────────────────────────────────

/** Rasa's topology, as a hand-written client declares it. */
async function declare(channel, exchange, queues) {
  await channel.assertExchange(exchange, 'fanout', { durable: false });
  for (const queue of queues) {
    await channel.assertQueue(queue, { durable: true });
    await channel.bindQueue(queue, exchange, '');
  }
}

/**
 * Every body published persistent on a confirm channel, pausing on backpressure; resolves on the last confirm. Each
 * message carries a message id, as the adapter's do (a UUID per publish, its idempotency key): RabbitMQ stores the
 * property with the message, which measured 5% of raw throughput, so that the broker does the same work on both
 * sides.
 */
function publishAll(channel, exchange, bodies) {
  return new Promise((resolve, reject) => {
    let confirmed = 0;
    let failure;
    let i = 0;
    const onConfirm = (error) => {
      if (error) failure ??= error;
      if (++confirmed < bodies.length) return;
      if (failure) reject(failure);
      else resolve();
    };
    const pump = () => {
      while (i < bodies.length) {
        const properties = { persistent: true, messageId: randomUUID() };
        if (!channel.publish(exchange, '', bodies[i++], properties, onConfirm)) {
          channel.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

/**
 * Connect, declare, publish with confirms, close; returns the ms of the publishing, as Parley's figure is. Timed
 * with it, a JSON.stringify of each event: the raw equivalent of the encoding Parley does while timed (as the
 * consume baseline's JSON.parse is of its decoding); the bytes sent are Parley's own, so RabbitMQ's work is the same.
 */
async function rawPublish(destination, bodies, { envelopes: events }) {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createConfirmChannel();
    await declare(channel, destination, [destination]);
    const start = performance.now();
    stringifyAll(events);
    await publishAll(channel, destination, bodies);
    const ms = performance.now() - start;
    await channel.close();
    return ms;
  } finally {
    await connection.close();
  }
}

/**
 * The same topology as the harness's Parley run (the broker's own queue and the group's, both bound), the bodies
 * published first; then timed, as Parley's subscribe is: a channel, prefetch, consume, JSON.parse and ack each.
 */
async function rawConsume(destination, bodies, { concurrency }) {
  const group = `${destination}-g`;
  const connection = await connect(AMQP_URL);
  try {
    const publisher = await connection.createConfirmChannel();
    await declare(publisher, destination, [destination, group]);
    await publishAll(publisher, destination, bodies);
    let received = 0;
    let done;
    const finished = new Promise((resolve) => (done = resolve));
    const start = performance.now();
    const channel = await connection.createChannel();
    await channel.prefetch(concurrency);
    await channel.consume(group, (message) => {
      JSON.parse(message.content.toString('utf8'));
      channel.ack(message);
      if (++received === bodies.length) done();
    });
    await finished;
    const ms = performance.now() - start;
    await channel.close();
    await publisher.close();
    return ms;
  } finally {
    await connection.close();
  }
}

/** Publish→consume ms at a fixed rate, shaped like the harness's Parley run (prefetch 8, one connection). */
async function rawLatency(destination, rate, seconds) {
  const group = `${destination}-lat`;
  const total = Math.round(rate * seconds);
  const bodies = Array.from({ length: total }, (_, i) =>
    Buffer.from(
      stringifyEvent(
        {
          sender_id: `lat-${i % 16}`,
          event: 'slot',
          timestamp: 1_700_000_000 + i + 0.5,
          name: 'n',
          value: i,
        },
        { format: 'python' },
      ),
    ),
  );
  const connection = await connect(AMQP_URL);
  try {
    const publisher = await connection.createConfirmChannel();
    await declare(publisher, destination, [destination, group]);
    const channel = await connection.createChannel();
    await channel.prefetch(8);
    const sent = new Map();
    const samples = [];
    let done;
    const finished = new Promise((resolve) => (done = resolve));
    await channel.consume(group, (message) => {
      const at = sent.get(JSON.parse(message.content.toString('utf8')).timestamp);
      if (at !== undefined) samples.push(performance.now() - at);
      channel.ack(message);
      if (samples.length === total) done();
    });
    const interval = 1000 / rate;
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const wait = start + i * interval - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      sent.set(1_700_000_000 + i + 0.5, performance.now());
      publisher.publish(destination, '', bodies[i], { persistent: true, messageId: randomUUID() }, () => {});
    }
    let timer;
    await Promise.race([finished, new Promise((r) => (timer = setTimeout(r, 10_000 + seconds * 1000)))]);
    clearTimeout(timer);
    await channel.close();
    await publisher.close();
    return samples;
  } finally {
    await connection.close();
  }
}

// ─── Parley beside Python pika ─────────────────────────────────────────────────────────────────────────────────

/** Parley's publish of N events and pika's of the same N bodies, alternating, median of `runs` each. */
async function versusPika({ events, runs, cleanup }) {
  const batch = envelopes(events);
  const bodies = await bodiesFor(create, batch);
  if (bodies.some((b) => b.includes(0x0a)))
    throw new Error('a body holds a newline: cannot write one per line');
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-pika-'));
  const file = join(dir, 'bodies.jsonl');
  writeFileSync(file, Buffer.concat(bodies.flatMap((b) => [b, Buffer.from('\n')])));
  const parley = [];
  const pika = [];
  let missing;
  try {
    for (let r = 0; r < runs; r++) {
      parley.push(await publishRate(create, batch, cleanup));
      if (missing) continue;
      const destination = uniq();
      try {
        const { stdout } = await run$(
          PYTHON,
          [
            pikaScript,
            '--url',
            AMQP_URL,
            '--exchange',
            destination,
            '--queue',
            destination,
            '--bodies',
            file,
          ],
          { timeout: 120_000 },
        );
        pika.push(events / Number(stdout.trim().split('\n').at(-1)));
      } catch (error) {
        missing = (error.stderr || error.message).trim().split('\n').at(-1);
      } finally {
        await cleanup(destination);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ours = median(parley);
  const theirs = pika.length ? median(pika) : undefined;
  table(
    `publish vs Python pika (confirms): ${events} fixture events per run, median of ${runs} runs (alternating)`,
    ['measure', 'parley', 'pika', 'ratio', 'target'],
    [
      [
        'publish, events/s (confirmed)',
        fmt(ours),
        theirs === undefined ? `n/a (${missing})` : fmt(theirs),
        theirs === undefined ? 'n/a' : `${(ours / theirs).toFixed(2)}×`,
        '≥ 5×',
      ],
    ],
  );
  return { parley: ours, pika: theirs, ratio: theirs === undefined ? undefined : ours / theirs };
}

// ─── housekeeping ──────────────────────────────────────────────────────────────────────────────────────────────

/** Deletes what a measurement left at the broker (queues holding every event), between measurements. */
class Admin {
  static async open() {
    const admin = new Admin();
    admin.connection = await connect(AMQP_URL);
    admin.connection.on('error', () => {});
    return admin;
  }

  async remove(destination) {
    // The harness's groups, named as Parley names a group's queue (`<exchange>.<group>`) and as the baseline does.
    const groups = [`${destination}-g`, `${destination}-lat`];
    const queues = [destination, ...groups, ...groups.map((g) => `${destination}.${g}`)];
    for (const queue of [...queues, ...queues.map((q) => `${q}.dead-letter`)]) {
      await this.#channel((c) => c.deleteQueue(queue));
    }
    await this.#channel((c) => c.deleteExchange(destination));
  }

  async #channel(action) {
    // A failed operation closes the channel: use a fresh one next time.
    if (!this.channel) {
      this.channel = await this.connection.createChannel();
      this.channel.on('error', () => {});
    }
    try {
      await action(this.channel);
    } catch {
      this.channel = undefined;
    }
  }

  async close() {
    await this.connection.close().catch(() => {});
  }
}

function redact(url) {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}
