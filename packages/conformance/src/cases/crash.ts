/**
 * A consumer that dies without a word: a child process, killed with SIGKILL while its handlers hold events it never
 * acknowledged. A peer of the group must get every one of them, once the broker noticed (a closed channel, a
 * session timeout, an expired lease, a stale lock).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { CaseContext, CaseDefinition } from '../harness.js';
import { keyOf, makeEvents, preview, withTimeout } from '../support.js';
import type { ConsumerProcess } from '../types.js';

const MARK = '@@parley-conformance ';
/** The runner the child executes: plain JavaScript, beside this package's modules in the sources and in dist. */
const RUNNER = fileURLToPath(new URL('../consumer-process.mjs', import.meta.url));

type ChildMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'handling'; readonly key: string; readonly id: string; readonly attempt: number }
  | { readonly type: 'dead-letter' | 'error' | 'failed'; readonly message?: string };

interface ConsumerChild {
  readonly process: ChildProcess;
  /** Keys the child's handlers hold (they never return). */
  readonly holding: Set<string>;
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  /** What the child wrote that was not a report (stderr included), for failure messages. */
  output(): string;
}

/** Spawns `node` on the runner with the adapter's factory module: one consumer of `group` in another process. */
function spawnConsumer(
  t: CaseContext,
  hook: ConsumerProcess,
  config: { readonly destination: string; readonly group: string; readonly concurrency: number },
): ConsumerChild {
  const child = spawn(
    process.execPath,
    [
      ...(hook.execArgv ?? []),
      RUNNER,
      JSON.stringify({ module: hook.module, export: hook.export ?? 'create', ...config }),
    ],
    { env: { ...process.env, ...hook.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Whatever happens to the case, the child does not outlive it.
  t.defer(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const holding = new Set<string>();
  let other = '';
  let resolveReady!: () => void;
  let rejectReady!: (error: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => undefined);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() =>
    rejectReady(new Error(`the consumer process exited before it was ready:\n${other}`)),
  );
  let pending = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (!line.startsWith(MARK)) {
        other += `${line}\n`;
        continue;
      }
      const message = JSON.parse(line.slice(MARK.length)) as ChildMessage;
      if (message.type === 'ready') resolveReady();
      else if (message.type === 'handling') holding.add(message.key);
      else other += `${message.type}: ${message.message ?? ''}\n`;
      if (message.type === 'failed')
        rejectReady(new Error(`the consumer process failed: ${message.message}`));
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    other += chunk;
  });
  return { process: child, holding, ready, exited, output: () => other.slice(-4_000) };
}

const consumerCrash: CaseDefinition = {
  id: 'consumer-crash',
  skip: ({ options }) =>
    options.consumerProcess
      ? undefined
      : 'needs consumerProcess: a module exporting create(), loaded in a child process that the case kills',
  async run(t) {
    const hook = t.options.consumerProcess!;
    const destination = t.destination();
    const group = t.group();
    const publisher = await t.broker(destination);
    const child = spawnConsumer(t, hook, { destination, group, concurrency: 2 });
    // A child imports the adapter and connects: give it the handover allowance on top of the delivery timeout.
    await withTimeout(child.ready, t.handoverTimeoutMs, 'the consumer process to be ready');

    const events = makeEvents(t.run, 10, { senders: 10 });
    const keys = events.map(keyOf);
    await t.publishAll(publisher, events);
    await t.waitFor(
      () => child.holding.size >= 2,
      () => `the consumer process to hold 2 events (${child.holding.size}); it wrote:\n${child.output()}`,
    );
    const held = [...child.holding];
    child.process.kill('SIGKILL');
    await withTimeout(child.exited, t.timeoutMs, 'the consumer process to die of SIGKILL');

    // The peer joins once the consumer is dead: brokers that allow one consumer process per group (a file's lock)
    // hand the group over then, and the others have kept the events for the group all along.
    const peer = t.consume(await t.broker(destination), { group, concurrency: 4 });
    await withTimeout(peer.sub.ready, t.handoverTimeoutMs, 'the peer subscription after the crash');
    await t.waitForAll(peer.got, keys, t.handoverTimeoutMs);
    const redelivered = held.filter((key) => peer.got.first(key)?.context.redelivered).length;
    t.log(
      `the killed consumer held ${preview(held)}; the peer got all ${keys.length} (${redelivered} marked redelivered)`,
    );
    expect(peer.got.missing(held), 'events the killed consumer held that never reached the peer').toEqual([]);
    expect(peer.got.deadLetters, 'dead letters').toEqual([]);
  },
};

export const crashCases = [consumerCrash];
