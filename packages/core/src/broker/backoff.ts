/** Exponential backoff with jitter, and an abortable sleep: shared by reconnects, resends and handler retries. */
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
