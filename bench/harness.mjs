import { openSync, readSync } from 'node:fs';

// A small benchmark harness. CPU-bound candidates (`compare`) run in alternating runs: within a run every case gets
// many short slices, interleaved, so that drift (GC, CPU frequency, another process on the other core) hits them
// alike; a ratio is taken within each run, and every figure is reported as the median run with the min and max
// beside it, so that a reader sees the noise. They are timed by the process's CPU time by default: on a machine
// shared with other work, wall-clock time also counts the time the scheduler gave to someone else.

/**
 * Measures the ops/s of each case in `runs` alternating runs. `cases` maps a name to a function doing `batch`
 * operations per call. A run gives each case `slices` turns of about `sliceMs`, the order rotating from turn to
 * turn; a case's figure for the run is its operations over its time in that run. `clock: 'cpu'` (the default)
 * times by process.cpuUsage() (user + system, all of the process's threads, so GC helpers count too);
 * `'thread'` by the main thread's CPU time (Linux); `'wall'` by the wall clock.
 * @returns {Record<string, { opsPerSec: number, runs: number[] }>} `opsPerSec` is the median of `runs`
 */
export function compare(
  cases,
  { batch, runs = 11, slices = 10, sliceMs = 20, warmupMs = 500, clock = 'cpu' },
) {
  const names = Object.keys(cases);
  const time = clocks[clock];
  if (time === undefined) throw new Error(`unknown clock ${clock}: one of ${Object.keys(clocks).join(', ')}`);
  /** Calls `fn` for about `ms` of wall-clock time; returns [operations, nanoseconds on `clock`]. */
  const slice = (fn, ms) => {
    let ops = 0;
    const begin = time();
    const start = process.hrtime.bigint();
    const until = start + BigInt(Math.round(ms * 1e6));
    let now = start;
    while (now < until) {
      fn();
      ops += batch;
      now = process.hrtime.bigint();
    }
    return [ops, time() - begin];
  };
  for (const name of names) slice(cases[name], warmupMs);
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < runs; r++) {
    globalThis.gc?.(); // the previous run's garbage is not this one's to collect
    const ops = new Array(names.length).fill(0);
    const ns = new Array(names.length).fill(0);
    for (let s = 0; s < slices; s++) {
      // rotate the order each turn so that no case always follows the same one
      for (let i = 0; i < names.length; i++) {
        const k = (i + s + r) % names.length;
        const [o, t] = slice(cases[names[k]], sliceMs);
        ops[k] += o;
        ns[k] += t;
      }
    }
    for (let k = 0; k < names.length; k++) samples[names[k]].push((ops[k] * 1e9) / ns[k]);
  }
  return Object.fromEntries(names.map((n) => [n, { opsPerSec: median(samples[n]), runs: samples[n] }]));
}

/** Nanosecond clocks for `compare`. */
const clocks = {
  wall: () => Number(process.hrtime.bigint()),
  cpu: () => {
    const { user, system } = process.cpuUsage();
    return (user + system) * 1000;
  },
  thread: threadClock(),
};

/** The main thread's CPU time, from Linux's schedstat (ns); undefined elsewhere. */
function threadClock() {
  let fd;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(128);
  return () => {
    const text = buf.latin1Slice(0, readSync(fd, buf, 0, buf.length, 0));
    return Number(text.slice(0, text.indexOf(' ')));
  };
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** `{ min, median, max }` of some values. */
export function spread(values) {
  return { min: Math.min(...values), median: median(values), max: Math.max(...values) };
}

/** Per-run ratios `a[i] / b[i]` of two cases measured in the same runs. */
export function ratios(a, b) {
  return a.map((x, i) => x / b[i]);
}

/** Prints rows as an aligned markdown table under `title`; returns the table (without the title). */
export function table(title, header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  const text = [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join(
    '\n',
  );
  console.log(`\n${title}\n${text}`);
  return text;
}

export const fmt = (n) => Math.round(n).toLocaleString('en-US');
export const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
