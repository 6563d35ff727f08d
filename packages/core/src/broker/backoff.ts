/**
 * Exponential backoff with jitter, an abortable sleep and bounded waits: shared by reconnects, resends, handler
 * retries and closing.
 */
import type { BackoffOptions } from './contract.js';

/** The delay before try `attempt + 1` (attempt ≥ 1), jittered by ±20% so that many clients do not retry in step. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 100;
  const max = options.maxMs ?? 5_000;
  const factor = options.factor ?? 2;
  const base = Math.min(max, initial * factor ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Resolves after `ms`, or at once when `signal` aborts (it never rejects). `keepAlive: false` lets the process exit
 * during the wait (for idle reconnect loops); work the user awaits keeps it alive.
 */
export function sleep(ms: number, signal?: AbortSignal, keepAlive = true): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (!keepAlive) timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}

const MAX_CLOSE_STEP_MS = 5_000;

/** Resolves when the signal aborts (never rejects). */
export function abortedPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Waits for a driver step of close, at most a few seconds: a dead network must not hold close() forever. */
export async function bounded(
  step: Promise<unknown> | undefined,
  report: (error: unknown) => void,
  ms = MAX_CLOSE_STEP_MS,
): Promise<void> {
  if (!step) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    step.catch(report),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}
