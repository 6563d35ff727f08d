/**
 * One consumer of one consumer group: `XREADGROUP` on a connection of its own (the read blocks), its own pending
 * entries first (a resumed consumer), `XAUTOCLAIM` scans for idle entries, and the deliveries it hands to core with
 * their lease, ack and release.
 */
import {
  ConnectionError,
  type ConsumerSink,
  type Delivery,
  type DeliveryLease,
  type DriverConsumeOptions,
  type ReleaseOptions,
} from '@parley/core';
import type { Cluster, Redis } from 'ioredis';

export const SCOPE = 'redis';
/** Entry fields the driver writes; every other field is a header (`header:<name>`) or ignored. */
export const BODY = 'body';
export const HEADER = 'header:';
export const REDRIVE_GROUP = 'x-parley-redrive-group';
export const PARLEY = 'x-parley-';

export type Client = Redis | Cluster;
type Fields = Buffer[];
export type Entry = [id: Buffer, fields: Fields | null];
const cmd = (c: Client) => c as Redis;

/** Deletes a consumer only when it has no pending entries (XGROUP DELCONSUMER drops them for good otherwise). */
const FORGET_SCRIPT = `
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1`;

/** What a consumer needs of its driver. */
export interface ConsumerContext {
  readonly stream: string;
  readonly claimIdleMs: number;
  readonly blockMs: number;
  /** The driver's main connection now (a new one after each reconnect), undefined while disconnected. */
  current(): Client | undefined;
  /** The main connection, or a ConnectionError when it is down. */
  live(): Client;
  /** The newest entry id read per group: where a deleted group is created again. */
  readonly lastSeen: Map<string, string>;
  /** Sets an entry's idle time while `consumer` owns it: 1, or 0 when a peer has it. */
  own(
    c: Client,
    group: string,
    consumer: string,
    id: string,
    idleMs: number,
    retryCount?: number,
  ): Promise<number>;
  /** Acknowledges (batched with the group's other acks of this tick). */
  ack(group: string, id: string): Promise<void>;
}

/** One consumer of one group: its own blocking connection, at most `readAhead` entries unacknowledged. */
export class GroupConsumer {
  readonly #ctx: ConsumerContext;
  readonly #client: Client;
  readonly #reader: Client;
  readonly group: string;
  readonly name: string;
  readonly #readAhead: number;
  readonly #sink: ConsumerSink;
  readonly #ephemeral: boolean;
  /**
   * Delivered and neither acknowledged nor released: a count, since nothing looks them up (a Map that filled and
   * emptied with every read reallocated its table each time).
   */
  #held = 0;
  #stopped = false;
  #closing: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> = Promise.resolve();

  constructor(
    o: {
      client: Client;
      reader: Client;
      group: string;
      name: string;
      readAhead: number;
      sink: ConsumerSink;
      options: DriverConsumeOptions;
    },
    ctx: ConsumerContext,
  ) {
    this.#ctx = ctx;
    this.#client = o.client;
    this.#reader = o.reader;
    this.group = o.group;
    this.name = o.name;
    this.#readAhead = o.readAhead;
    this.#sink = o.sink;
    this.#ephemeral = o.options.ephemeral === true;
  }

  start(): void {
    this.#reader.once('end', () =>
      this.#lostUnlessConnectionIs(new ConnectionError(SCOPE, 'the consumer connection to Redis was lost')),
    );
    this.#loop = this.#run().catch((error: unknown) => {
      if (this.#stopped) return;
      const text = messageOf(error);
      if (text.startsWith('NOGROUP')) {
        // Someone deleted the group (or the stream): core resumes, and consume() creates the group again where
        // this consumer stood, so nothing is replayed or skipped.
        this.#sink.lost(
          new ConnectionError(
            SCOPE,
            `group "${this.group}" of stream ${this.#ctx.stream} is gone (${text}): creating it again`,
            { cause: error },
          ),
        );
        return;
      }
      this.#lostUnlessConnectionIs(
        new ConnectionError(SCOPE, `consumer of group "${this.group}" failed: ${text}`, { cause: error }),
      );
    });
  }

  /**
   * Reports this consumer lost, unless the whole connection is going: that is reported once, by connect's
   * session, and core resumes every consumer then. The reader's socket often closes a moment before the main
   * one notices, so the main connection is asked (PING) rather than trusted by its status.
   */
  #lostUnlessConnectionIs(error: Error): void {
    if (this.#stopped) return;
    cmd(this.#client)
      .ping()
      .then(
        () => {
          if (!this.#stopped && this.#ctx.current() === this.#client) this.#sink.lost(error);
        },
        () => undefined,
      );
  }

  async #run(): Promise<void> {
    const reader = cmd(this.#reader);
    // Entries this consumer name was given before (a resumed consumer, a restarted process with a fixed name).
    let history: string | undefined = '0';
    let nextClaim = 0;
    let claimCursor = '0-0';
    const claimEvery = Math.min(Math.max(100, Math.floor(this.#ctx.claimIdleMs / 4)), 5_000);
    while (!this.#stopped) {
      const room = this.#readAhead - this.#held;
      if (room <= 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      if (history !== undefined) {
        const reply = (await reader.xreadgroupBuffer(
          'GROUP',
          this.group,
          this.name,
          'COUNT',
          room,
          'STREAMS',
          this.#ctx.stream,
          history,
        )) as unknown as [Buffer, Entry[]][] | null;
        const entries = reply?.[0]?.[1] ?? [];
        history = entries.length === 0 ? undefined : entries.at(-1)![0].toString();
        await this.#deliverAll(entries, true);
        continue;
      }
      if (Date.now() >= nextClaim) {
        // A dead consumer's entries, idle past the claim idle time (never a live one's: core renews them), and
        // released ones (their idle time is set past it).
        const [cursor, entries] = (await reader.callBuffer(
          'XAUTOCLAIM',
          this.#ctx.stream,
          this.group,
          this.name,
          this.#ctx.claimIdleMs,
          claimCursor,
          'COUNT',
          room,
        )) as unknown as [Buffer, Entry[]];
        claimCursor = cursor.toString();
        // Scanned the whole pending list: wait a while before the next scan.
        if (claimCursor === '0-0') nextClaim = Date.now() + claimEvery;
        await this.#deliverAll(entries, true);
        continue;
      }
      if (this.#stopped) return;
      const block = Math.max(1, Math.min(this.#ctx.blockMs, nextClaim - Date.now()));
      const reply = (await reader.xreadgroupBuffer(
        'GROUP',
        this.group,
        this.name,
        'COUNT',
        room,
        'BLOCK',
        block,
        'STREAMS',
        this.#ctx.stream,
        '>',
      )) as unknown as [Buffer, Entry[]][] | null;
      await this.#deliverAll(reply?.[0]?.[1] ?? [], false);
    }
  }

  /** Hands entries to core; `counted` ones were delivered before (their count is in the pending list). */
  async #deliverAll(entries: Entry[], counted: boolean): Promise<void> {
    if (entries.length === 0) return;
    const last = entries.at(-1)![0].toString();
    if (!counted || compareIds(last, this.#ctx.lastSeen.get(this.group) ?? '0-0') > 0)
      this.#ctx.lastSeen.set(this.group, last);
    const counts = new Map<string, number>();
    if (counted) {
      // XPENDING of this consumer over the claimed range: the delivery counts, this delivery included.
      const first = entries[0]![0].toString();
      const pending = (await cmd(this.#reader).xpending(
        this.#ctx.stream,
        this.group,
        first,
        last,
        entries.length * 2 + 10,
        this.name,
      )) as [string, string, number, number][];
      for (const [id, , , count] of pending) counts.set(id, count);
    }
    const gone: string[] = [];
    for (const [rawId, fields] of entries) {
      const id = rawId.toString();
      // Trimmed away while pending: nothing to deliver; acknowledged so that it leaves the pending list.
      if (!fields) {
        gone.push(id);
        continue;
      }
      const parsed = parseFields(fields);
      if (parsed.redriveGroup !== undefined && parsed.redriveGroup !== this.group) {
        gone.push(id); // redriven to another group: not this group's
        continue;
      }
      if (this.#stopped) {
        // Read after stop(): back to the group at once.
        void this.#ctx
          .own(
            this.#client,
            this.group,
            this.name,
            id,
            this.#ctx.claimIdleMs,
            counted ? (counts.get(id) ?? 1) - 1 : 0,
          )
          .catch(() => undefined);
        continue;
      }
      this.#deliver(id, parsed, counted ? (counts.get(id) ?? 2) : 1);
    }
    if (gone.length > 0) await cmd(this.#client).xack(this.#ctx.stream, this.group, ...gone);
  }

  #deliver(id: string, parsed: ReturnType<typeof parseFields>, count: number): void {
    this.#held++;
    this.#sink.deliver(new EntryDelivery(this, this.#ctx, id, parsed, count));
  }

  /** An entry is no longer held (acknowledged, released, its lease lost): room to read another. @internal */
  settled(): void {
    if (this.#held > 0) this.#held--; // none after close(), which handed every one back
    this.#wake?.();
    this.#wake = undefined;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    // The blocked XREADGROUP ends with its connection; acks go through the main one.
    this.#reader.disconnect();
    await this.#loop;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.stop();
      if (this.#ctx.current() !== this.#client || this.#client.status !== 'ready') return;
      const c = cmd(this.#client);
      try {
        // Everything still pending for this name goes back: held ones and any a last read got after stop().
        const pending = (await c.xpending(this.#ctx.stream, this.group, '-', '+', 10_000, this.name)) as [
          string,
        ][];
        if (pending.length > 0) {
          const pipeline = this.#client.pipeline();
          for (const [id] of pending)
            pipeline.xclaim(
              this.#ctx.stream,
              this.group,
              this.name,
              0,
              id,
              'IDLE',
              this.#ctx.claimIdleMs,
              'JUSTID',
            );
          await pipeline.exec();
        }
        this.#held = 0;
        if (this.#ephemeral) {
          const others = (await c.xinfo('CONSUMERS', this.#ctx.stream, this.group)) as unknown[][];
          if (others.length <= 1) await c.xgroup('DESTROY', this.#ctx.stream, this.group);
          return;
        }
        await c.eval(FORGET_SCRIPT, 1, this.#ctx.stream, this.group, this.name);
      } catch {
        // The group may be gone (deleted, ephemeral): nothing left to hand back.
      }
    })();
    return this.#closing;
  }
}

/**
 * One entry handed to core, with its ack, release and lease: a class, since closures per delivery showed in
 * profiles. It is its own lease (`durationMs`, `renew`).
 */
class EntryDelivery implements Delivery, DeliveryLease {
  readonly id: string;
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly senderId: string | undefined;
  readonly redelivered: boolean;
  readonly deliveryCount: number;
  readonly lease: DeliveryLease = this;
  readonly durationMs: number;
  readonly #consumer: GroupConsumer;
  readonly #ctx: ConsumerContext;
  #settled = false;

  constructor(
    consumer: GroupConsumer,
    ctx: ConsumerContext,
    id: string,
    parsed: ReturnType<typeof parseFields>,
    count: number,
  ) {
    this.#consumer = consumer;
    this.#ctx = ctx;
    this.id = id;
    this.body = parsed.body;
    this.headers = parsed.headers;
    this.senderId = parsed.senderId;
    this.redelivered = count > 1;
    this.deliveryCount = count;
    this.durationMs = ctx.claimIdleMs;
  }

  /** True the first time: then it is no longer held. */
  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#consumer.settled();
    return true;
  }

  async renew(): Promise<void> {
    const { group, name } = this.#consumer;
    const owned = await this.#ctx.own(this.#ctx.live(), group, name, this.id, 0);
    if (owned !== 1) {
      this.#settle();
      throw new ConnectionError(
        SCOPE,
        `lease lost: entry ${this.id} was claimed by another consumer of group "${group}"`,
      );
    }
  }

  ack(): Promise<void> {
    if (!this.#settle()) return RESOLVED;
    return this.#ctx.ack(this.#consumer.group, this.id);
  }

  async release(options?: ReleaseOptions): Promise<void> {
    if (!this.#settle()) return;
    // Read ahead and handed back before any handler saw it: this delivery does not use up an attempt.
    const retryCount = options?.untried === true ? this.deliveryCount - 1 : undefined;
    const { group, name } = this.#consumer;
    await this.#ctx.own(this.#ctx.live(), group, name, this.id, this.#ctx.claimIdleMs, retryCount);
  }
}

const RESOLVED = Promise.resolve();
const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/** Fields of an entry: the body as the bytes stored, headers from `header:<name>`, Parley's own `x-parley-*`. */
export function parseFields(fields: Fields) {
  let body: Uint8Array = new Uint8Array(0);
  let senderId: string | undefined;
  let redriveGroup: string | undefined;
  let headers: Record<string, string> = NO_FIELDS;
  let parley: Record<string, string> = NO_FIELDS;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    // The fields every entry has are told by their bytes: a string per key showed in profiles.
    if (isField(name, BODY_BYTES)) body = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    else if (isField(name, SENDER_ID_BYTES)) senderId = value.toString();
    else if (isField(name, EVENT_BYTES) || isField(name, MESSAGE_ID_BYTES)) continue;
    else {
      const key = name.toString();
      if (key === REDRIVE_GROUP) redriveGroup = value.toString();
      else if (key.startsWith(HEADER)) {
        if (headers === NO_FIELDS) headers = {};
        headers[key.slice(HEADER.length)] = value.toString();
      } else if (key.startsWith(PARLEY)) {
        if (parley === NO_FIELDS) parley = {};
        parley[key] = value.toString();
      }
    }
  }
  return { body, senderId, redriveGroup, headers, parley };
}

const BODY_BYTES = Buffer.from(BODY);
const SENDER_ID_BYTES = Buffer.from('sender_id');
const EVENT_BYTES = Buffer.from('event');
const MESSAGE_ID_BYTES = Buffer.from('message_id');

function isField(name: Buffer, field: Buffer): boolean {
  if (name.length !== field.length) return false;
  for (let i = 0; i < field.length; i++) if (name[i] !== field[i]) return false;
  return true;
}

/** The `event` of a Rasa body, for the entry field, or undefined when it cannot be read. */
export function eventNameOf(body: Uint8Array): string | undefined {
  try {
    const event = (JSON.parse(Buffer.from(body).toString('utf8')) as { event?: unknown }).event;
    return typeof event === 'string' ? event : undefined;
  } catch {
    return undefined;
  }
}

function compareIds(a: string, b: string): number {
  const [am, as = '0'] = a.split('-');
  const [bm, bs = '0'] = b.split('-');
  const ms = BigInt(am!) - BigInt(bm!);
  if (ms !== 0n) return ms > 0n ? 1 : -1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq > 0n ? 1 : -1;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
