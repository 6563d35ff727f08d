/**
 * "Did you mean …?" for config keys, enum values and event names: the candidate a typo most likely meant.
 */

/**
 * The candidate `value` most likely meant, or undefined when none is close. Close means: the same once case and
 * `_`/`-` are ignored (`exchangeName` → `exchange_name`), at least half of a longer name (`exchange` →
 * `exchange_name`, `user` → `username`, `prefetch_count` → `prefetch`), or a few typos away (`destnation`, `pyhton`, `rabitmq`; about one edit
 * per three letters, a swap of two neighbours counting as one).
 */
export function didYouMean(value: string, candidates: Iterable<string>): string | undefined {
  const wanted = normalise(value);
  if (wanted === '') return undefined;
  let best: { candidate: string; score: number } | undefined;
  for (const candidate of candidates) {
    if (candidate === value) continue;
    const score = closeness(wanted, normalise(candidate));
    if (score === undefined) continue;
    // Lower scores first; among equals, the shorter candidate (the more likely completion), then the first.
    if (
      best === undefined ||
      score < best.score ||
      (score === best.score && candidate.length < best.candidate.length)
    ) {
      best = { candidate, score };
    }
  }
  return best?.candidate;
}

/** ` (did you mean "x"?)`, or '' when nothing is close: for appending to an error message. */
export function didYouMeanHint(value: string, candidates: Iterable<string>): string {
  const match = didYouMean(value, candidates);
  return match === undefined ? '' : ` (did you mean ${JSON.stringify(match)}?)`;
}

const normalise = (text: string): string => text.toLowerCase().replace(/[-_\s]/g, '');

/** 0 for the same name spelled differently, then edit distance; containment scores after one edit. */
function closeness(a: string, b: string): number | undefined {
  if (b === '') return undefined;
  if (a === b) return 0;
  const distance = editDistance(a, b);
  const limit = Math.min(3, Math.max(1, Math.floor(Math.max(a.length, b.length) / 3)));
  if (distance <= limit) return distance;
  // A part of a longer name is a likely short form (`exchange` of `exchange_name`) when it is most of it: a long
  // name that merely contains a short one (`agent_handoff`, `agent`) is more likely a name of its own.
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  if (short.length >= 3 && short.length * 2 >= long.length && long.includes(short)) return 1.5;
  return undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps cost 1. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1]!;
}
