// Codec throughput over a realistic mix: every event of the Rasa fixture conversations (moodbot and a CALM
// conversation: user, bot, action, slot, stack, flow events), as the bytes Rasa's broker publishes.
import { readdirSync, readFileSync } from 'node:fs';
import { decodeEvent, encodeEvent } from '@parley/core';
import { compare, fmt, ratio, table } from './harness.mjs';

const wireDir = new URL('../fixtures/rasa/wire/', import.meta.url);
const lines = readdirSync(wireDir)
  .filter((f) => f.endsWith('.jsonl'))
  .flatMap((f) => readFileSync(new URL(f, wireDir), 'utf8').split('\n').filter(Boolean));
const bytes = lines.map((l) => Buffer.from(l, 'utf8'));
const events = bytes.map((b) => decodeEvent(b));
const plain = lines.map((l) => JSON.parse(l));
const avgBytes = Math.round(bytes.reduce((n, b) => n + b.length, 0) / bytes.length);

export function run(options) {
  let sink = 0;
  const batch = bytes.length;
  const results = compare(
    {
      'JSON.parse (bytes → object)': () => {
        for (const b of bytes) sink ^= JSON.parse(b.toString('utf8')) === null ? 1 : 0;
      },
      'decodeEvent (bytes → validated event)': () => {
        for (const b of bytes) sink ^= decodeEvent(b) === null ? 1 : 0;
      },
      'JSON.stringify (object → bytes)': () => {
        for (const e of plain) sink ^= Buffer.from(JSON.stringify(e), 'utf8').length;
      },
      'encodeEvent compact (validated)': () => {
        for (const e of events) sink ^= encodeEvent(e).length;
      },
      'encodeEvent python (byte-exact)': () => {
        for (const e of events) sink ^= encodeEvent(e, { format: 'python' }).length;
      },
    },
    { batch, ...options },
  );
  const r = (name) => results[name].opsPerSec;
  const parse = r('JSON.parse (bytes → object)');
  const stringify = r('JSON.stringify (object → bytes)');
  table(
    `Codec: ${lines.length} Rasa fixture events (avg ${avgBytes} bytes), events/s, median of rounds`,
    ['operation', 'events/s', 'vs baseline'],
    [
      ['JSON.parse (baseline)', fmt(parse), '1.00×'],
      [
        'decodeEvent: decode + validate',
        fmt(r('decodeEvent (bytes → validated event)')),
        ratio(r('decodeEvent (bytes → validated event)'), parse),
      ],
      ['JSON.stringify (baseline)', fmt(stringify), '1.00×'],
      [
        'encodeEvent compact (validates)',
        fmt(r('encodeEvent compact (validated)')),
        ratio(r('encodeEvent compact (validated)'), stringify),
      ],
      [
        'encodeEvent python (byte-exact)',
        fmt(r('encodeEvent python (byte-exact)')),
        ratio(r('encodeEvent python (byte-exact)'), stringify),
      ],
    ],
  );
  if (sink === 0.5) console.log(sink);
  return { decodeRatio: r('decodeEvent (bytes → validated event)') / parse };
}
