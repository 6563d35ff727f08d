// The broker harness every adapter reuses: publish throughput, consume throughput and publish→handler latency at a
// fixed rate, each beside a baseline (the raw client doing the same work) in the same run. Runs alternate between
// candidate and baseline, and each figure is the median of the runs, so drift hits both alike.
import { readdirSync, readFileSync } from 'node:fs';
import { decodeEvent } from '@parley/core';
import { fmt, median, table } from './harness.mjs';

const wireDir = new URL('../fixtures/rasa/wire/', import.meta.url);
/** The fixture mix: every event of the Rasa fixture conversations, as decoded envelopes. */
export const fixtureEvents = readdirSync(wireDir)
  .filter((f) => f.endsWith('.jsonl'))
  .flatMap((f) => readFileSync(new URL(f, wireDir), 'utf8').split('\n').filter(Boolean))
  .map((line) => decodeEvent(line));

/** `count` envelopes from the fixture mix, spread over `senders` conversations. */
export function envelopes(count, senders = 64) {
  return Array.from({ length: count }, (_, i) => ({
    ...fixtureEvents[i % fixtureEvents.length],
    sender_id: `bench-${i % senders}`,
  }));
}

const uniq = () => `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Benchmarks one adapter beside its baseline and prints a table.
 * @param {object} spec
 * @param {string} spec.name  the adapter
 * @param {(destination: string) => import('@parley/core').Broker | Promise<import('@parley/core').Broker>} spec.create
 * @param {{ label: string, publish?: (destination: string, bodies: Buffer[]) => Promise<void>,
 *   consume?: (destination: string, bodies: Buffer[]) => Promise<number>,
 *   latency?: (destination: string, rate: number, seconds: number) => Promise<number[]> }} spec.baseline
 *   the raw client doing the same work: publish resolves when every body was confirmed; consume pre-publishes the
 *   bodies itself and returns the ms it took to receive (and ack) them all; latency returns per-event ms.
 * @param {{ events?: number, concurrency?: number, rate?: number, seconds?: number, runs?: number,
 *   format?: 'python' | 'compact' }} [spec.options]
 */
export async function benchBroker({ name, create, baseline, options = {} }) {
  const events = options.events ?? 20_000;
  const runs = options.runs ?? 3;
  const rate = options.rate ?? 1_000;
  const seconds = options.seconds ?? 3;
  const concurrency = options.concurrency ?? 32;
  const batch = envelopes(events);
  const results = {
    publish: [],
    publishBase: [],
    consume: [],
    consumeBase: [],
    latency: [],
    latencyBase: [],
  };

  for (let run = 0; run < runs; run++) {
    results.publish.push(await publishRate(create, batch));
    if (baseline.publish) results.publishBase.push(await baselinePublishRate(baseline, batch, create));
    results.consume.push(await consumeRate(create, batch, concurrency));
    if (baseline.consume) results.consumeBase.push(await baselineConsumeRate(baseline, batch, create));
  }
  results.latency = await latencies(create, rate, seconds);
  if (baseline.latency) results.latencyBase = await baseline.latency(uniq(), rate, seconds);

  const row = (label, ours, base) => [
    label,
    fmt(median(ours)),
    base.length ? fmt(median(base)) : 'n/a',
    base.length ? `${(median(ours) / median(base)).toFixed(2)}×` : 'n/a',
  ];
  const pct = (xs, p) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
  table(
    `${name}: ${events} fixture events per run, median of ${runs} runs; baseline: ${baseline.label}`,
    ['measure', 'parley', 'baseline', 'ratio'],
    [
      row('publish, events/s (confirmed)', results.publish, results.publishBase),
      row(`consume, events/s (concurrency ${concurrency})`, results.consume, results.consumeBase),
      [
        `latency p50 / p99, ms (${rate}/s for ${seconds} s)`,
        `${pct(results.latency, 0.5).toFixed(2)} / ${pct(results.latency, 0.99).toFixed(2)}`,
        results.latencyBase.length
          ? `${pct(results.latencyBase, 0.5).toFixed(2)} / ${pct(results.latencyBase, 0.99).toFixed(2)}`
          : 'n/a',
        '',
      ],
    ],
  );
  return {
    publishRatio: results.publishBase.length
      ? median(results.publish) / median(results.publishBase)
      : undefined,
    consumeRatio: results.consumeBase.length
      ? median(results.consume) / median(results.consumeBase)
      : undefined,
    publish: median(results.publish),
    consume: median(results.consume),
  };
}

async function publishRate(create, batch) {
  const broker = await create(uniq());
  await broker.ready();
  const start = performance.now();
  // Every publish is in flight at once, as a busy Rasa would have them; each resolves on the broker's confirm.
  await Promise.all(batch.map((e) => broker.publish(e)));
  const rate = (batch.length * 1000) / (performance.now() - start);
  await broker.close();
  return rate;
}

async function baselinePublishRate(baseline, batch, create) {
  const bodies = await bodiesFor(create, batch);
  const start = performance.now();
  await baseline.publish(uniq(), bodies);
  return (batch.length * 1000) / (performance.now() - start);
}

/** The exact bytes the adapter would publish, so the baseline sends the same payloads. */
async function bodiesFor(create, batch) {
  const { stringifyEvent } = await import('@parley/core');
  const probe = await create(uniq());
  const format = probe.name === 'amqp' || probe.name === 'file' ? 'python' : 'compact';
  await probe.close();
  return batch.map((e) => Buffer.from(stringifyEvent(e, { format })));
}

async function consumeRate(create, batch, concurrency) {
  const destination = uniq();
  const broker = await create(destination);
  const group = `${destination}-g`;
  // Create the group first, so it holds every event published next.
  const first = broker.subscribe(() => {}, { group });
  await first.ready;
  await first.close();
  await Promise.all(batch.map((e) => broker.publish(e)));
  let received = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const start = performance.now();
  const sub = broker.subscribe(
    () => {
      if (++received === batch.length) done();
    },
    { group, concurrency, ordering: 'none' },
  );
  await finished;
  const rate = (batch.length * 1000) / (performance.now() - start);
  await sub.close();
  await broker.close();
  return rate;
}

async function baselineConsumeRate(baseline, batch, create) {
  const bodies = await bodiesFor(create, batch);
  const ms = await baseline.consume(uniq(), bodies);
  return (batch.length * 1000) / ms;
}

async function latencies(create, rate, seconds) {
  const destination = uniq();
  const broker = await create(destination);
  const samples = [];
  const sent = new Map();
  const total = Math.round(rate * seconds);
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const sub = broker.subscribe(
    (e) => {
      const at = sent.get(e.timestamp);
      if (at !== undefined) samples.push(performance.now() - at);
      if (samples.length === total) done();
    },
    { group: `${destination}-lat`, concurrency: 8, ordering: 'none' },
  );
  await sub.ready;
  const interval = 1000 / rate;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const timestamp = 1_700_000_000 + i + 0.5; // unique per event: the key back to its send time
    sent.set(timestamp, performance.now());
    void broker.publish({ sender_id: `lat-${i % 16}`, event: 'slot', timestamp, name: 'n', value: i });
  }
  await Promise.race([finished, new Promise((r) => setTimeout(r, 10_000 + seconds * 1000))]);
  await sub.close();
  await broker.close();
  return samples;
}
