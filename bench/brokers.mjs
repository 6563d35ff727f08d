// The broker harness every adapter reuses: publish throughput, consume throughput and publish→handler latency at a
// fixed rate, each beside a baseline (the raw client doing the same work) in the same run. After an untimed
// warm-up of both, runs alternate between candidate and baseline (who goes first alternating too), and each figure
// is the median of the runs, so drift hits both alike.
import { readdirSync, readFileSync } from 'node:fs';
import { decodeEvent } from '@parley/core';
import { fmt, median, ratios, spread, table } from './harness.mjs';

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

/**
 * What a hand-written publisher does in place of the adapter's encoding, timed in its baseline as the adapter's is:
 * `JSON.stringify` of each event, to UTF-8 bytes.
 */
export function stringifyAll(events) {
  let encoded = 0;
  for (const event of events) encoded += Buffer.from(JSON.stringify(event)).length;
  if (encoded === 0) throw new Error('nothing encoded');
}

const uniq = () => `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Benchmarks one adapter beside its baseline and prints a table.
 * @param {object} spec
 * @param {string} spec.name  the adapter
 * @param {(destination: string) => import('@parley/core').Broker | Promise<import('@parley/core').Broker>} spec.create
 * @param {{ label: string,
 *   publish?: (destination: string, bodies: Buffer[], context: { envelopes: object[] }) => Promise<number | void>,
 *   consume?: (destination: string, bodies: Buffer[], context: { concurrency: number }) => Promise<number>,
 *   latency?: (destination: string, rate: number, seconds: number) => Promise<number[]> }} spec.baseline
 *   the raw client doing the same work: publish resolves when every body was confirmed, and may return the ms of
 *   the publishing itself (first publish to last confirm) when it also connects, declares or closes, which the
 *   adapter's figure leaves out too; `envelopes` are the events the bodies encode, for the raw equivalent of the
 *   encoding the adapter does while timed (as consume's baseline does JSON.parse for its decoding); consume
 *   pre-publishes the bodies itself and returns the ms it took to receive (and ack) them all with `concurrency`
 *   in flight; latency returns per-event ms.
 * @param {(destination: string) => Promise<void>} [spec.cleanup]
 *   called after each measurement with the destination it used (outside the timing), so that what one run left
 *   at the broker (queues full of messages) does not slow the next.
 * @param {{ events?: number, concurrency?: number, rate?: number, seconds?: number, runs?: number,
 *   format?: 'python' | 'compact' }} [spec.options]
 *   `events` at most the adapter's publish buffer (10,000 by default): they are all published at once.
 * @param {'subscribe' | 'first-event'} [spec.consumeClock]
 *   when the consume clock starts: at subscribe (the default: joining is part of the figure), or at the first event
 *   handled (Kafka, where a group's join takes seconds: then the baseline's consume must time from its first event
 *   too, and the figure is the events after the first over the time from the first to the last).
 */
export async function benchBroker({
  name,
  create,
  baseline,
  cleanup = async () => {},
  options = {},
  consumeClock = 'subscribe',
}) {
  const events = options.events ?? 10_000;
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

  const measures = (events) => ({
    publish: () => publishRate(create, events, cleanup),
    publishBase: baseline.publish && (() => baselinePublishRate(baseline, events, create, cleanup)),
    consume: () => consumeRate(create, events, concurrency, cleanup, consumeClock),
    consumeBase:
      baseline.consume &&
      (() => baselineConsumeRate(baseline, events, create, concurrency, cleanup, consumeClock)),
  });
  // An untimed warm-up of both sides first, a full-size run of each measurement, so that neither pays in the
  // figures for compiling its hot path (1,000 events were too few: measured on Redis, the adapter's first timed
  // consume runs then came out 20–30% below its later ones; the raw client's, with less code to compile, did not).
  const timed = measures(batch);
  for (const measure of Object.values(timed)) await measure?.();
  for (let run = 0; run < runs; run++) {
    // Each pair back to back, who goes first alternating per run, and the pairs in an order that gives every
    // measurement the same predecessors on both sides, so that what one left behind (the broker still busy with it,
    // old garbage that the next one collects) weighs on both alike. Two runs make a cycle: publish, publishBase,
    // consumeBase, consume; then consume, consumeBase, publishBase, publish. Each measurement then follows one of
    // the adapter's and one of the baseline's, and what each left behind falls once on either side. (With the
    // publish pair always first, the adapter's consume always came after a baseline measurement and the baseline's
    // consume always after one of the adapter's, which leave more garbage.)
    const order =
      run % 2 === 0
        ? ['publish', 'publishBase', 'consumeBase', 'consume']
        : ['consume', 'consumeBase', 'publishBase', 'publish'];
    for (const name of order) {
      if (!timed[name]) continue;
      // The previous measurement's young garbage is not this one's to collect. A minor collection, not a full one:
      // a forced full collection, right after a run's clients and subscriptions died, made V8 throw away optimized
      // code (`--trace-deopt`: "marking dependent code … reason: weak objects"; measured on Redis, about 50
      // functions of the adapter's and 20 of the raw client's per collection), so every run compiled its hot path
      // again, which an application keeping its broker never does. Older garbage goes as in any process, by V8's
      // own collections, in whichever measurement they fall (see the order above).
      globalThis.gc?.({ type: 'minor' });
      results[name].push(await timed[name]());
    }
  }
  results.latency = await latencies(create, rate, seconds, cleanup);
  if (baseline.latency) {
    const destination = uniq();
    results.latencyBase = await baseline.latency(destination, rate, seconds);
    await cleanup(destination);
  }

  const range = (xs, f = fmt) => {
    if (xs.length === 0) return 'n/a';
    const { min, max } = spread(xs);
    return `${f(min)} – ${f(max)}`;
  };
  const times = (x) => `${x.toFixed(2)}×`;
  // The ratio of the medians, and beside it the spread of the per-run ratios (each run's pair was measured back to
  // back), so that a reader sees whether a target held in every run or only in the median.
  const row = (label, ours, base) => [
    label,
    fmt(median(ours)),
    range(ours),
    base.length ? fmt(median(base)) : 'n/a',
    range(base),
    base.length ? times(median(ours) / median(base)) : 'n/a',
    base.length ? range(ratios(ours, base), (x) => x.toFixed(2)) : 'n/a',
  ];
  const pct = (xs, p) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
  table(
    `${name}: ${events} fixture events per run, median of ${runs} alternating runs (min – max beside it; the ratio's spread is of the per-run ratios); baseline: ${baseline.label}`,
    ['measure', 'parley', 'min – max', 'baseline', 'min – max', 'ratio', 'per run'],
    [
      row('publish, events/s (confirmed)', results.publish, results.publishBase),
      row(`consume, events/s (concurrency ${concurrency})`, results.consume, results.consumeBase),
      [
        `latency p50 / p99, ms (${rate}/s for ${seconds} s)`,
        `${pct(results.latency, 0.5).toFixed(2)} / ${pct(results.latency, 0.99).toFixed(2)}`,
        '',
        results.latencyBase.length
          ? `${pct(results.latencyBase, 0.5).toFixed(2)} / ${pct(results.latencyBase, 0.99).toFixed(2)}`
          : 'n/a',
        '',
        '',
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
    /** Per-run ratios (each run's pair measured back to back). */
    publishRatios: results.publishBase.length ? ratios(results.publish, results.publishBase) : [],
    consumeRatios: results.consumeBase.length ? ratios(results.consume, results.consumeBase) : [],
    publish: median(results.publish),
    consume: median(results.consume),
    /** Every run's figure, events/s, for judging the spread. */
    runs: {
      publish: results.publish,
      publishBase: results.publishBase,
      consume: results.consume,
      consumeBase: results.consumeBase,
    },
  };
}

/** Publish events/s of the adapter: `batch` published at once, each resolving on the broker's confirm. */
export async function publishRate(create, batch, cleanup = async () => {}) {
  const destination = uniq();
  const broker = await create(destination);
  await broker.ready();
  const start = performance.now();
  // Every publish is in flight at once, as a busy Rasa would have them; each resolves on the broker's confirm.
  await Promise.all(batch.map((e) => broker.publish(e)));
  const rate = (batch.length * 1000) / (performance.now() - start);
  await broker.close();
  await cleanup(destination);
  return rate;
}

async function baselinePublishRate(baseline, batch, create, cleanup) {
  const bodies = await bodiesFor(create, batch);
  const destination = uniq();
  const start = performance.now();
  const ms = await baseline.publish(destination, bodies, { envelopes: batch });
  const elapsed = typeof ms === 'number' ? ms : performance.now() - start;
  await cleanup(destination);
  return (batch.length * 1000) / elapsed;
}

/** The exact bytes the adapter would publish, so the baseline sends the same payloads. */
export async function bodiesFor(create, batch) {
  const { stringifyEvent } = await import('@parley/core');
  const probe = await create(uniq());
  // Every adapter publishes Rasa's python format by default; only the in-process memory broker is compact.
  const format = probe.name === 'memory' ? 'compact' : 'python';
  await probe.close();
  return batch.map((e) => Buffer.from(stringifyEvent(e, { format })));
}

async function consumeRate(create, batch, concurrency, cleanup, clock = 'subscribe') {
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
  let start = performance.now();
  const sub = broker.subscribe(
    () => {
      if (++received === 1 && clock === 'first-event') start = performance.now();
      if (received === batch.length) done();
    },
    { group, concurrency, ordering: 'none' },
  );
  await finished;
  const counted = clock === 'first-event' ? batch.length - 1 : batch.length;
  const rate = (counted * 1000) / (performance.now() - start);
  await sub.close();
  await broker.close();
  await cleanup(destination);
  return rate;
}

async function baselineConsumeRate(baseline, batch, create, concurrency, cleanup, clock) {
  const bodies = await bodiesFor(create, batch);
  const destination = uniq();
  const ms = await baseline.consume(destination, bodies, { concurrency });
  await cleanup(destination);
  return ((clock === 'first-event' ? batch.length - 1 : batch.length) * 1000) / ms;
}

async function latencies(create, rate, seconds, cleanup) {
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
  await cleanup(destination);
  return samples;
}

/**
 * Prints whether a ratio of medians met its target, with the per-run ratios' spread beside it (a target met by the
 * median but missed by some runs shows as such).
 */
export function verdict(what, ratio, perRun, target) {
  const spread =
    perRun.length > 1 ? ` (runs ${Math.min(...perRun).toFixed(2)} – ${Math.max(...perRun).toFixed(2)}×)` : '';
  console.log(
    `${what}: ${ratio === undefined ? 'n/a' : `${ratio.toFixed(2)}×`}${spread} (target ≥ ${target}×): ${
      ratio === undefined ? 'not measured' : ratio >= target ? 'met' : 'NOT met'
    }`,
  );
}
