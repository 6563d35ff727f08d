/**
 * Helpers the cases share: unique names, waiting on a condition with a deadline (never a fixed sleep), collectors
 * that count what a subscriber received, and event factories.
 */
import { randomUUID } from 'node:crypto';
import {
  type AnyEvent,
  actionExecuted,
  botUttered,
  createEvent,
  type DeadLetter,
  type DeliveryContext,
  decodeEvent,
  dialogueStackUpdated,
  type EventEnvelope,
  now,
  slotSet,
  unknownEvent,
  userUttered,
} from '@parley/core';
import { rasaSampleLines } from './rasa-sample.js';

export type Envelope = EventEnvelope<AnyEvent>;

// ─── names ───────────────────────────────────────────────────────────────────────────────────────────────────

/** A run id: 12 hex characters of a UUID. Every sender, group and destination of a test starts with it. */
export function newRunId(): string {
  return randomUUID().replaceAll('-', '').slice(0, 12);
}

const sanitize = (text: string): string => text.toLowerCase().replace(/[^a-z0-9._-]/g, '-');

/** `pc-<run>-<case>[-<label>]`, at most 60 characters of [a-z0-9-_.]; the label always survives the cut. */
export function destinationName(run: string, caseId: string, label?: string): string {
  const suffix = label === undefined ? '' : `-${sanitize(label)}`;
  const head = `pc-${run}-`;
  return head + sanitize(caseId).slice(0, 60 - head.length - suffix.length) + suffix;
}

// ─── time ────────────────────────────────────────────────────────────────────────────────────────────────────

export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The longest quiet period a case may ask for, unless the adapter's `tolerances.quietPeriodMs` asks for more. */
export const MAX_QUIET_PERIOD_MS = 500;

/**
 * Waits `ms` to check that something does NOT happen (a stray delivery, a redelivery). Only for negative checks:
 * anything the suite expects to happen is awaited with `waitFor`. Capped (at `max`) so that the suite stays fast.
 */
export function quietPeriod(ms = 300, max = MAX_QUIET_PERIOD_MS): Promise<void> {
  if (ms > max) throw new Error(`[conformance] quiet periods are at most ${max} ms, not ${ms}`);
  return delay(ms);
}

export interface WaitOptions {
  readonly timeoutMs: number;
  /** What is awaited, for the timeout message; a function is called at timeout, so it can show progress. */
  readonly what: string | (() => string);
  readonly intervalMs?: number;
}

/** Polls `condition` until it holds; throws a message naming what was awaited once `timeoutMs` passed. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: WaitOptions,
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() >= deadline) {
      const what = typeof options.what === 'function' ? options.what() : options.what;
      throw new Error(`[conformance] timed out after ${options.timeoutMs} ms waiting for ${what}`);
    }
    await delay(options.intervalMs ?? 10);
  }
}

/** Resolves with `promise`, or rejects naming `what` when it takes longer than `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`[conformance] ${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `signal` aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

// ─── events ──────────────────────────────────────────────────────────────────────────────────────────────────

/** Every event the suite publishes carries these in its metadata: the run and a sequence number. */
export type SuiteMetadata = {
  readonly conformance_run: string;
  readonly conformance_seq: number;
};

const kinds = [
  'user',
  'bot',
  'slot',
  'action',
  'session_started',
  'stack',
  'flow_started',
  'custom',
] as const;
export type EventKind = (typeof kinds)[number];

/** One event of the run: its kind rotates with `seq` unless given, and its metadata names the run and `seq`. */
export function makeEvent(run: string, seq: number, sender: string, kind?: EventKind): Envelope {
  const metadata: SuiteMetadata = { conformance_run: run, conformance_seq: seq };
  let event: AnyEvent;
  switch (kind ?? kinds[seq % kinds.length]) {
    case 'user':
      event = userUttered(`hello ${seq}: ünïcödé 👋 "quotes" \\ back`, {
        metadata,
        intent: { name: 'greet', confidence: 0.9871 },
        entities: [{ entity: 'number', value: seq, start: 6, end: 7, confidence: 1 }],
        input_channel: 'rest',
        message_id: `${run}-m${seq}`,
      });
      break;
    case 'bot':
      event = botUttered(`reply ${seq}`, { metadata, data: { buttons: [{ title: 'ok' }] } });
      break;
    case 'slot':
      event = slotSet('conformance', { seq, list: [1, 2.5, null, true], text: 'tab\there' }, { metadata });
      break;
    case 'action':
      event = actionExecuted('action_listen', { metadata, policy: 'RulePolicy', confidence: 1 });
      break;
    case 'session_started':
      event = createEvent('session_started', { metadata });
      break;
    case 'stack':
      event = dialogueStackUpdated(
        [{ op: 'add', path: '/0', value: { frame_id: `f${seq}`, flow_id: 'greet', step_id: 'START' } }],
        { metadata },
      );
      break;
    case 'flow_started':
      event = createEvent('flow_started', { flow_id: `flow_${seq}`, metadata });
      break;
    default:
      // A name Parley does not know: it must travel intact all the same (Rasa keeps adding event types).
      event = unknownEvent({
        event: 'conformance_custom',
        timestamp: now(),
        metadata,
        payload: { seq, nested: { a: [1] } },
      });
  }
  // `sender_id` first, as Rasa writes it.
  return { sender_id: sender, ...event };
}

export interface EventsOptions {
  /** First sequence number (default 0). */
  readonly start?: number;
  /** Senders the events are spread over, round-robin (default 1). */
  readonly senders?: number;
  /** Sender name part after the run id (default `s`): senders are `<run>-<tag><n>`. */
  readonly tag?: string;
  readonly kind?: EventKind;
}

/** `count` events of the run, sequence numbers from `start`, spread round-robin over `senders`. */
export function makeEvents(run: string, count: number, options: EventsOptions = {}): Envelope[] {
  const { start = 0, senders = 1, tag = 's', kind } = options;
  return Array.from({ length: count }, (_, i) =>
    makeEvent(run, start + i, `${run}-${tag}${i % senders}`, kind),
  );
}

/** The embedded real Rasa events, each with its own sender of the run (`<run>-rasa<n>`), fields untouched. */
export function sampleEvents(run: string): Envelope[] {
  return rasaSampleLines.map((line, i) => {
    const { sender_id: _, ...event } = decodeEvent(line);
    return { sender_id: `${run}-rasa${i}`, ...event } as Envelope;
  });
}

/** Identifies an event of the run: its sender and sequence number (sample events: their sender alone). */
export function keyOf(envelope: Envelope): string {
  const seq = (envelope.metadata as Partial<SuiteMetadata> | null | undefined)?.conformance_seq;
  return `${envelope.sender_id}#${seq ?? ''}`;
}

export const seqOf = (envelope: Envelope): number =>
  (envelope.metadata as Partial<SuiteMetadata> | null | undefined)?.conformance_seq ?? -1;

/** Events that fail validation (a `slot` without `name`), for the negative cases. */
export function invalidSlot(sender: string): Envelope {
  return { sender_id: sender, event: 'slot', timestamp: now(), value: 1 } as unknown as Envelope;
}

/** A `user` event whose intent confidence is a string: fails at `parse_data.intent.confidence`. */
export function invalidConfidence(sender: string): Envelope {
  return {
    sender_id: sender,
    event: 'user',
    timestamp: now(),
    text: 'hi',
    parse_data: { intent: { name: 'greet', confidence: 'high' } },
  } as unknown as Envelope;
}

export const bytesOf = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

// ─── collecting what a subscriber received ───────────────────────────────────────────────────────────────────

export interface Received {
  readonly key: string;
  readonly envelope: Envelope;
  readonly context: DeliveryContext;
}

export interface CollectorOptions {
  /** Which events count (default: sender_id starts with the run id); the others are counted as strays. */
  readonly accept?: (envelope: Envelope) => boolean;
  /** The identity of an event (default `keyOf`). */
  readonly key?: (envelope: Envelope, context: DeliveryContext) => string;
  /**
   * Runs before an accepted event is recorded: throw to fail the delivery (it is then not recorded), or await
   * to make the handler slow.
   */
  readonly before?: (envelope: Envelope, context: DeliveryContext) => unknown;
}

/**
 * What one or more subscriptions received: every successful handling in order, counts per event (duplicates),
 * and the dead letters of the run. Its `handler` and `onDeadLetter` go to `subscribe()`.
 */
export class Collector {
  readonly received: Received[] = [];
  readonly counts = new Map<string, number>();
  readonly deadLetters: DeadLetter[] = [];
  strays = 0;
  readonly #run: string;
  readonly #options: CollectorOptions;

  constructor(run: string, options: CollectorOptions = {}) {
    this.#run = run;
    this.#options = options;
  }

  readonly handler = async (envelope: Envelope, context: DeliveryContext): Promise<void> => {
    const accept = this.#options.accept ?? ((e: Envelope) => e.sender_id.startsWith(this.#run));
    if (!accept(envelope)) {
      this.strays++;
      return;
    }
    await this.#options.before?.(envelope, context);
    const key = (this.#options.key ?? keyOf)(envelope, context);
    this.received.push({ key, envelope, context });
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  };

  /** Records dead letters whose bytes mention the run (every payload the suite sends does). */
  readonly onDeadLetter = (deadLetter: DeadLetter): void => {
    if (Buffer.from(deadLetter.body).includes(this.#run)) this.deadLetters.push(deadLetter);
  };

  /** Distinct events received. */
  get unique(): number {
    return this.counts.size;
  }

  /** Handlings beyond the first of an event (at-least-once redeliveries). */
  get duplicates(): number {
    return this.received.length - this.counts.size;
  }

  has(key: string): boolean {
    return this.counts.has(key);
  }

  /** The first delivery of `key`. */
  first(key: string): Received | undefined {
    return this.received.find((r) => r.key === key);
  }

  /** The keys not received yet. */
  missing(keys: readonly string[]): string[] {
    return keys.filter((key) => !this.counts.has(key));
  }
}

/** Keys of `keys` that none of `collectors` received. */
export function missingFromAll(collectors: readonly Collector[], keys: readonly string[]): string[] {
  return keys.filter((key) => !collectors.some((c) => c.has(key)));
}

/**
 * Senders whose events appear out of publish order in `seen` (each entry a handling of event `seq` of `sender`, in
 * the order they happened), each with the first inversion: empty when every sender's sequence numbers increase.
 */
export function unordered(seen: readonly { readonly sender: string; readonly seq: number }[]): string[] {
  const last = new Map<string, number>();
  const bad = new Map<string, string>();
  for (const { sender, seq } of seen) {
    const before = last.get(sender);
    if (before !== undefined && seq < before && !bad.has(sender))
      bad.set(sender, `${sender}: ${seq} after ${before}`);
    last.set(sender, Math.max(seq, before ?? seq));
  }
  return [...bad.values()];
}

/** A short list for failure messages: the first few items and how many more. */
export function preview(items: readonly unknown[], max = 5): string {
  const shown = items.slice(0, max).map((item) => String(item));
  return items.length > max ? `${shown.join(', ')} … (${items.length} in all)` : shown.join(', ');
}
