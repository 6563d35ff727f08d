// Codec throughput over a realistic mix: every event of the Rasa fixture conversations (moodbot and a CALM
// conversation: user, bot, action, slot, stack, flow events), as the bytes Rasa's broker publishes.
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { decodeEvent, encodeEvent } from '@parley/core';
import { compare, fmt, ratios, spread, table } from './harness.mjs';

// What a real process has loaded: ioredis (and others) define `class … extends String`, after which V8 stops inlining
// String.prototype methods such as charCodeAt (measured: the python encoder ran 2.3× slower until it stopped
// looking them up). The codec is measured in that state, the one users get.
class LoadedStringSubclass extends String {}
globalThis.__parleyBenchStringSubclass = LoadedStringSubclass;

const wireDir = new URL('../fixtures/rasa/wire/', import.meta.url);
const lines = readdirSync(wireDir)
  .filter((f) => f.endsWith('.jsonl'))
  .flatMap((f) => readFileSync(new URL(f, wireDir), 'utf8').split('\n').filter(Boolean));
const bytes = lines.map((l) => Buffer.from(l, 'utf8'));
const events = bytes.map((b) => decodeEvent(b));
const plain = lines.map((l) => JSON.parse(l));
const avgBytes = Math.round(bytes.reduce((n, b) => n + b.length, 0) / bytes.length);
const python = { format: 'python' };

/**
 * Runs the codec cases and prints their table (markdown). Returns the table with a heading line, for the README,
 * and the median per-run ratio of each operation to its baseline.
 */
export function run(options) {
  let sink = 0;
  const batch = bytes.length;
  const cases = {
    parse: () => {
      for (const b of bytes) sink ^= JSON.parse(b.toString('utf8')) === null ? 1 : 0;
    },
    decode: () => {
      for (const b of bytes) sink ^= decodeEvent(b) === null ? 1 : 0;
    },
    stringify: () => {
      for (const e of plain) sink ^= Buffer.from(JSON.stringify(e), 'utf8').length;
    },
    compact: () => {
      for (const e of events) sink ^= encodeEvent(e).length;
    },
    python: () => {
      for (const e of events) sink ^= encodeEvent(e, python).length;
    },
    // The same events as plain objects, as a program builds them: no source text, the float hints decide.
    pythonBuilt: () => {
      for (const e of plain) sink ^= encodeEvent(e, python).length;
    },
  };
  const results = compare(cases, { batch, ...options });
  const runs = results.parse.runs.length;
  const clock = {
    wall: 'wall-clock time',
    cpu: 'CPU time (of the whole process)',
    thread: 'CPU time of the main thread',
  }[options?.clock ?? 'cpu'];
  const vs = (name, base, baseName) => {
    const r = spread(ratios(results[name].runs, results[base].runs));
    return {
      median: r.median,
      cells: [`${r.median.toFixed(2)}× ${baseName}`, range(r, (x) => x.toFixed(2), '×')],
    };
  };
  const row = (label, name, base, baseName) => {
    const s = spread(results[name].runs);
    const cells = base === undefined ? ['1.00× (baseline)', ''] : vs(name, base, baseName).cells;
    return [label, fmt(s.median), range(s, fmt), ...cells];
  };
  const parse = '`JSON.parse`';
  const stringify = '`JSON.stringify`';
  const title =
    `Codec: ${lines.length} Rasa fixture events (avg ${avgBytes} bytes), events per second of ${clock}. Median of ` +
    `${runs} alternating runs (the cases interleaved in short slices within each run), min – max beside it; ` +
    'ratios are per run.';
  const text = table(
    title,
    ['operation', 'events/s', 'min – max', 'vs baseline', 'min – max'],
    [
      row('`JSON.parse`: UTF-8 bytes → object', 'parse'),
      row('`decodeEvent`: UTF-8 bytes → validated, typed event', 'decode', 'parse', parse),
      row('`JSON.stringify`: object → UTF-8 bytes', 'stringify'),
      row('`encodeEvent`, compact (validates first)', 'compact', 'stringify', stringify),
      row('`encodeEvent`, python (byte-identical to Rasa), decoded events', 'python', 'stringify', stringify),
      row('`encodeEvent`, python, events built in JS (float hints)', 'pythonBuilt', 'stringify', stringify),
    ],
  );
  if (sink === 0.5) console.log(sink);
  const cpu = cpus();
  return {
    markdown: `Node ${process.version}, ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}. ${title}\n\n${text}`,
    decodeRatio: vs('decode', 'parse', parse).median,
    compactRatio: vs('compact', 'stringify', stringify).median,
    pythonRatio: vs('python', 'stringify', stringify).median,
  };
}

function range({ min, max }, format, unit = '') {
  return `${format(min)} – ${format(max)}${unit}`;
}
