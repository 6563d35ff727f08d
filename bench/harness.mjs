// A small benchmark harness: candidates run interleaved, in rounds, so that drift (GC, CPU frequency, the other
// core busy) hits them alike; each figure is the median over rounds, and ratios compare within one run.

/**
 * Measures ops/s of each case. `cases` maps a name to a function doing `batch` operations per call.
 * @returns {Record<string, { opsPerSec: number, rounds: number[] }>}
 */
export function compare(cases, { batch, rounds = 15, minMs = 200, warmupMs = 500 }) {
  const names = Object.keys(cases);
  const runFor = (fn, ms) => {
    let ops = 0;
    const start = process.hrtime.bigint();
    const until = start + BigInt(ms * 1e6);
    let now = start;
    while (now < until) {
      fn();
      ops += batch;
      now = process.hrtime.bigint();
    }
    return (ops * 1e9) / Number(now - start);
  };
  for (const name of names) runFor(cases[name], warmupMs);
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    // rotate the order each round so no case always runs first
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length];
      globalThis.gc?.();
      samples[name].push(runFor(cases[name], minMs));
    }
  }
  return Object.fromEntries(names.map((n) => [n, { opsPerSec: median(samples[n]), rounds: samples[n] }]));
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Prints rows as an aligned table. */
export function table(title, header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  console.log(`\n${title}\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

export const fmt = (n) => Math.round(n).toLocaleString('en-US');
export const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
