/**
 * The Redis Streams driver: a translation of the contract to streams and consumer groups. Core owns the rest
 * (reconnecting, resuming consumers, retries, lease renewal, ordering, draining).
 *
 * - publish: one pipeline per batch of calls of a script adding a hundred entries each (one pipelined `XADD` per
 *   entry where a message has headers, or the server refuses scripts); fields `body` (the Rasa JSON, byte for
 *   byte), `event`, `sender_id`, `message_id`, `header:<name>` per header, so `XRANGE` users can filter without
 *   parsing.
 * - consume: `XREADGROUP` on a connection of its own (it blocks), at most read-ahead entries unacknowledged;
 *   `XACK` after the handler; `XAUTOCLAIM` of entries idle longer than the claim idle time (a dead consumer's,
 *   or released ones); the lease is a self-`XCLAIM … JUSTID` that resets the idle time while core holds an entry.
 * - release: the entry stays in this consumer's pending list with its idle time set to the claim idle time, so
 *   the next `XAUTOCLAIM` of any consumer of the group takes it at once.
 * - dead letters: a stream beside the main one, in its Cluster slot; redrive appends the entry to the main stream
 *   again, marked for its group only (other groups acknowledge it unseen).
 */
import {
  type Broker,
  type BrokerConfig,
  type BrokerDriver,
  type BrokerOptions,
  type Capabilities,
  ConnectionError,
  type ConsumerSink,
  checkReadAhead,
  type DeadLetter,
  type DriverConsumeOptions,
  type DriverConsumer,
  deadLetterFromHeaders,
  deadLetterHeaders,
  defineBroker,
  hasHeaders,
  makeLog,
  type OutgoingMessage,
  PublishError,
  SENT,
  type SendOutcome,
  type StoredDeadLetter,
  splitBrokerOptions,
} from '@parley/core';
import {
  type ChainableCommander,
  Cluster,
  type RedisOptions as IORedisOptions,
  Redis,
  ReplyError,
} from 'ioredis';
import {
  BODY,
  type Client,
  type ConsumerContext,
  type Entry,
  eventNameOf,
  GroupConsumer,
  HEADER,
  PARLEY,
  parseFields,
  REDRIVE_GROUP,
  SCOPE,
} from './consumer.js';
import { type RedisOptions, type RedisSettings, resolveRedisSettings } from './options.js';

/** What the adapter's `client` is: the ioredis client of the current connection (undefined while disconnected). */
export interface RedisClient {
  /** The connection publishes, acks and dead letters use; a new one after each reconnect. */
  readonly current: Redis | Cluster | undefined;
  readonly settings: RedisSettings;
}

const capabilities: Capabilities = {
  consumerGroups: true,
  competingConsumers: true,
  // XREADGROUP hands a group's entries out in order, but to whichever consumer reads next: two consumers of one
  // group may handle one sender's events at once. Within one consumer, core's per-sender lock keeps the order.
  ordering: 'consumer',
  replay: true,
  deadLetter: 'emulated',
  batchPublish: true,
  // With `appendonly yes` + `appendfsync always` (checked at connect: a warning otherwise). See the README.
  persistent: true,
  headers: true,
  deliveryCount: true,
  // A delayed release cannot be expressed (XCLAIM clamps a future idle time to now): retries run in-process, and the
  // pending-entries delivery count carries attempts across crashes.
  retry: 'in-process',
  leases: true,
  redrive: true,
};

/**
 * Sets an entry's idle time, only while `consumer` still owns it: renewing a lease (idle 0) or releasing it
 * (idle = claim idle time, so that any consumer's next XAUTOCLAIM takes it), and with a retry count, setting the
 * delivery count (a release of an entry no handler saw takes its delivery back). A plain XCLAIM would take the entry
 * back from a peer that claimed it meanwhile. Returns 1, or 0 when the entry is no longer this consumer's.
 */
const OWN_SCRIPT = `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p[1] == nil or p[1][2] ~= ARGV[2] then return 0 end
if ARGV[5] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'RETRYCOUNT', ARGV[5], 'JUSTID')
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
end
return 1`;

/** Entries per call of {@link ADD_SCRIPT}: a call holds the server for about 0.3 ms, as a pipeline of 100 XADDs would. */
const SCRIPT_ENTRIES = 100;

/**
 * Adds entries of four fields each (`body`, `event`, `sender_id`, `message_id`: ARGV from 3 on, four per entry), with
 * the trimming of ARGV[1] (`''`, `MAXLEN` or `MINID`) down to ARGV[2], in order. One reply per entry: its id, or its
 * error prefixed with `!`, so that one refused entry (an OOM, a WRONGTYPE) is reported as itself and the others as
 * theirs. Measured: 100 entries per call take the client a fifth of the work of 100 pipelined XADDs (one command,
 * one reply, instead of a hundred of each), and publishing runs 1.5 – 2× faster. Effects are replicated and written
 * to the AOF as the XADDs themselves (the default since Redis 5; asked for explicitly before).
 */
const ADD_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local key, trim, limit = KEYS[1], ARGV[1], ARGV[2]
local out = {}
local n = 0
for i = 3, #ARGV, 4 do
  local ok, id
  if trim == '' then
    ok, id = pcall(redis.call, 'XADD', key, '*', '${BODY}', ARGV[i], 'event', ARGV[i + 1], 'sender_id', ARGV[i + 2], 'message_id', ARGV[i + 3])
  else
    ok, id = pcall(redis.call, 'XADD', key, trim, '~', limit, '*', '${BODY}', ARGV[i], 'event', ARGV[i + 1], 'sender_id', ARGV[i + 2], 'message_id', ARGV[i + 3])
  end
  n = n + 1
  if ok then out[n] = id else out[n] = '!' .. (type(id) == 'table' and id.err or tostring(id)) end
end
return out`;

/** Redis refusals that pass: a resend may succeed. */
const RETRYABLE_REPLY = /^(OOM|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY)/;

/** The error of a message no reply came for. */
const NO_REPLY = new ConnectionError(SCOPE, 'no reply from Redis');

/** The name ioredis gives {@link ADD_SCRIPT} on every client (EVALSHA, EVAL the first time on a connection). */
const ADD = 'parleyAddEntries';

/** A refusal of the script itself, not of an entry: scripting is not allowed to this user, or not there at all. */
const SCRIPTING_REFUSED =
  /^(NOPERM|ERR unknown command|ERR unknown subcommand|ERR.*(scripting|script).*(disabled|not allowed))/i;

/** Options of {@link redisBroker}: the endpoints.yml keys, plus `defineBroker`'s options. */
export interface RedisBrokerOptions
  extends RedisOptions,
    Omit<BrokerOptions, 'format' | 'bufferSize' | 'concurrency' | 'readAhead' | 'maxAttempts'> {}

/** The Redis Streams driver, from resolved settings. */
export function redisDriver(
  settings: RedisSettings,
  warn: (message: string) => void = () => {},
): BrokerDriver<RedisClient> {
  const { stream, deadLetterStream, claimIdleMs, blockMs } = settings;
  let client: Client | undefined;
  let closed = false;
  let checkedPersistence = false;
  const readers = new Set<Client>();
  const consumers = new Set<{ close(): Promise<void> }>();
  /** Consumer names in use per group: two subscriptions of one group in one process must not share a name. */
  const names = new Map<string, Set<string>>();
  /** The newest entry id read per group: where a deleted group is created again (nothing replayed, nothing skipped). */
  const lastSeen = new Map<string, string>();
  const holder: { current: Client | undefined; settings: RedisSettings } = { current: undefined, settings };

  const live = (): Client => {
    const current = client;
    if (current?.status !== 'ready') throw new ConnectionError(SCOPE, 'not connected to Redis');
    return current;
  };
  const cmd = (c: Client) => c as Redis;

  const ensureGroup = async (c: Client, group: string, from: 'latest' | 'beginning'): Promise<void> => {
    const start = lastSeen.get(group) ?? (from === 'beginning' ? '0' : '$');
    try {
      await cmd(c).xgroup('CREATE', stream, group, start, 'MKSTREAM');
    } catch (error) {
      if (!String((error as Error).message).startsWith('BUSYGROUP')) throw error;
    }
  };

  const own = (
    c: Client,
    group: string,
    consumer: string,
    id: string,
    idleMs: number,
    retryCount?: number,
  ): Promise<number> =>
    cmd(c).eval(
      OWN_SCRIPT,
      1,
      stream,
      group,
      consumer,
      id,
      String(idleMs),
      ...(retryCount === undefined ? [] : [String(retryCount)]),
    ) as Promise<number>;

  /** Acks of one group, sent as one XACK per tick: core acks each delivery on its own. All share one promise. */
  const ackers = new Map<string, { ids: string[]; sent: Promise<void> }>();
  const ack = (group: string, id: string): Promise<void> => {
    let batch = ackers.get(group);
    if (batch === undefined) {
      const ids: string[] = [];
      const sent = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        ackers.delete(group);
        try {
          await cmd(live()).xack(stream, group, ...ids);
        } catch (error) {
          throw new ConnectionError(
            SCOPE,
            `XACK failed (the entries are delivered again): ${messageOf(error)}`,
            {
              cause: error,
            },
          );
        }
      });
      batch = { ids, sent };
      ackers.set(group, batch);
    }
    batch.ids.push(id);
    return batch.sent;
  };

  const connectOptions = (): IORedisOptions => {
    const c = settings.connection;
    return {
      lazyConnect: true,
      // Core owns reconnection: ioredis must not reconnect or queue commands behind a dead socket.
      retryStrategy: () => null,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 10_000,
      ...(c.username === undefined ? {} : { username: c.username }),
      ...(c.password === undefined ? {} : { password: c.password }),
      ...(c.tls ? { tls: {} } : {}),
      ...(c.mode === 'cluster' ? {} : { db: c.db }),
    };
  };

  const newClient = (): Client => {
    const c = settings.connection;
    if (c.mode === 'cluster') {
      const { db: _db, ...redisOptions } = connectOptions() as IORedisOptions & { db?: number };
      return new Cluster(
        c.nodes.map((n) => ({ host: n.host, port: n.port })),
        {
          lazyConnect: true,
          clusterRetryStrategy: () => null,
          enableOfflineQueue: false,
          maxRedirections: 16,
          redisOptions: { ...redisOptions, enableOfflineQueue: undefined, retryStrategy: undefined } as never,
        },
      );
    }
    if (c.mode === 'sentinel') {
      return new Redis({
        ...connectOptions(),
        sentinels: c.sentinels.map((s) => ({ host: s.host, port: s.port })),
        name: c.name,
        ...(c.sentinelPassword === undefined ? {} : { sentinelPassword: c.sentinelPassword }),
        sentinelRetryStrategy: () => null,
      });
    }
    return new Redis({ ...connectOptions(), host: c.host, port: c.port });
  };
  const makeClient = (): Client => {
    const c = newClient();
    c.defineCommand(ADD, { numberOfKeys: 1, lua: ADD_SCRIPT });
    return c;
  };

  const connectClient = async (c: Client): Promise<void> => {
    c.on('error', () => {}); // reported through the rejected commands and 'end'
    try {
      await c.connect();
    } catch (error) {
      c.disconnect();
      const text = messageOf(error);
      // No wait fixes credentials: give up at once.
      const permanent = /WRONGPASS|NOAUTH|NOPERM|invalid password|invalid username/i.test(text);
      throw new ConnectionError(SCOPE, `cannot connect to Redis: ${text}`, { cause: error, permanent });
    }
  };

  /** Warns once when a resolved publish can be lost on a restart (CONFIG may be refused on managed Redis). */
  const checkPersistence = async (c: Client): Promise<void> => {
    if (checkedPersistence || settings.connection.mode === 'cluster') return;
    checkedPersistence = true;
    try {
      const [, aof] = (await cmd(c).config('GET', 'appendonly')) as string[];
      const [, fsync] = (await cmd(c).config('GET', 'appendfsync')) as string[];
      if (aof !== 'yes') {
        warn(
          `[parley] [redis] the server runs without an append-only file (appendonly ${aof}): events whose publish resolved are lost if Redis restarts before its next snapshot`,
        );
      } else if (fsync !== 'always') {
        warn(
          `[parley] [redis] the server syncs its append-only file ${fsync === 'everysec' ? 'once a second' : `with appendfsync ${fsync}`}: up to about a second of resolved publishes can be lost in a crash (appendfsync always loses none)`,
        );
      }
    } catch {
      // CONFIG is often disabled on managed Redis: nothing to say then.
    }
  };

  const context: ConsumerContext = {
    stream,
    claimIdleMs,
    blockMs,
    current: () => client,
    live,
    lastSeen,
    own,
    ack,
  };

  /** Until the server refuses the script (an ACL without @scripting): then pipelines of XADD, after one warning. */
  let scripting = true;

  /** The body as text: ioredis writes a command of strings as one string, one holding a Buffer piece by piece. */
  const text = (body: Uint8Array): string =>
    // The encoders' bytes are always valid UTF-8 (the python format's are ASCII): the text is the very same bytes.
    Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');

  /** Trimming as XADD takes it, `['', '']` for none: MAXLEN when both bounds are set (MINID is then an XTRIM). */
  const trimming = (): [string, string] =>
    settings.maxLen !== undefined
      ? ['MAXLEN', String(settings.maxLen)]
      : settings.maxAgeMs !== undefined
        ? ['MINID', String(Date.now() - settings.maxAgeMs)]
        : ['', ''];

  const bothBounds = settings.maxLen !== undefined && settings.maxAgeMs !== undefined;

  /**
   * Sends a batch of entries without headers as calls of {@link ADD_SCRIPT}, a hundred entries each, in one
   * pipeline. Undefined when the server refused the script itself (nothing was added): pipelines of XADD from then on.
   */
  const sendScripted = async (
    c: Client,
    batch: readonly OutgoingMessage[],
  ): Promise<readonly SendOutcome[] | undefined> => {
    const [trim, limit] = trimming();
    const pipeline = c.pipeline();
    const add = (pipeline as unknown as Record<string, (...args: string[]) => unknown>)[ADD]!;
    for (let start = 0; start < batch.length; start += SCRIPT_ENTRIES) {
      const end = Math.min(batch.length, start + SCRIPT_ENTRIES);
      const args: string[] = [stream, trim, limit];
      for (let i = start; i < end; i++) {
        const message = batch[i]!;
        args.push(text(message.body), message.eventName, message.senderId, message.id);
      }
      add.apply(pipeline, args);
    }
    return runBatch(pipeline, batch, (results) => {
      const refused = results?.find(
        ([error]) => error?.name === 'ReplyError' && SCRIPTING_REFUSED.test(error.message),
      )?.[0];
      if (refused) {
        scripting = false;
        warn(
          `[parley] [redis] the server refused the publishing script (${refused.message}): entries are added by pipelined XADD from now on, which takes the client about twice the work. Allow EVALSHA and EVAL (ACL category @scripting) to this user for the faster path.`,
        );
        // A refusal is for every call alike: nothing was added.
        if (results!.every(([error]) => error !== null)) return undefined;
      }
      return outcomesOf(batch, (i) => {
        const [error, ids] = results?.[Math.floor(i / SCRIPT_ENTRIES)] ?? [NO_REPLY, undefined];
        // A call refused while scripting was being given up on is sent again, by XADD.
        if (error)
          return SCRIPTING_REFUSED.test(error.message) ? new ConnectionError(SCOPE, error.message) : error;
        const id = (ids as unknown[] | undefined)?.[i % SCRIPT_ENTRIES];
        if (typeof id !== 'string') return NO_REPLY;
        return id.startsWith('!') ? (new ReplyError(id.slice(1)) as Error) : undefined;
      });
    });
  };

  /** Sends a batch as one pipeline of XADDs: entries with headers, or when the server refuses the script. */
  const sendPipelined = async (
    c: Client,
    batch: readonly OutgoingMessage[],
  ): Promise<readonly SendOutcome[]> => {
    const [trim, limit] = trimming();
    const trimArgs = trim === '' ? [] : [trim, '~', limit];
    const pipeline = c.pipeline();
    for (const message of batch) {
      const args: string[] = [stream, ...trimArgs, '*', BODY, text(message.body)];
      args.push('event', message.eventName, 'sender_id', message.senderId, 'message_id', message.id);
      for (const [name, value] of Object.entries(message.headers)) args.push(HEADER + name, value);
      pipeline.xadd(...(args as [string, ...string[]]));
    }
    return runBatch(pipeline, batch, (results) =>
      outcomesOf(batch, (i) => results?.[i]?.[0] ?? (results?.[i] ? undefined : NO_REPLY)),
    );
  };

  /**
   * Ends a batch's pipeline with the XTRIM of the second bound (XADD takes one strategy) and runs it: `outcomes` of
   * its replies, or the outcome of every message when the pipeline failed as a whole (the connection: all retryable).
   */
  const runBatch = async <T>(
    pipeline: ChainableCommander,
    batch: readonly OutgoingMessage[],
    outcomes: (replies: [Error | null, unknown][] | null) => T,
  ): Promise<T | SendOutcome[]> => {
    if (bothBounds) pipeline.xtrim(stream, 'MINID', '~', Date.now() - settings.maxAgeMs!);
    let replies: [Error | null, unknown][] | null;
    try {
      replies = await pipeline.exec();
    } catch (error) {
      const failure = new ConnectionError(SCOPE, `XADD failed: ${messageOf(error)}`, { cause: error });
      return batch.map(() => ({ ok: false, error: failure, retryable: true }));
    }
    return outcomes(replies);
  };

  /**
   * Outcomes in batch order from each message's error (undefined: added). Batch order is publish order: once a
   * sender's entry failed retryably, its later ones in the batch must not be reported `ok` (they would overtake it
   * on the resend).
   */
  const outcomesOf = (
    batch: readonly OutgoingMessage[],
    errorAt: (i: number) => Error | undefined,
  ): SendOutcome[] => {
    const failedSenders = new Set<string>();
    return batch.map((message, i): SendOutcome => {
      const error = errorAt(i);
      if (error) {
        // OOM and LOADING pass; connection errors too. A refusal for the content (WRONGTYPE) does not.
        const retryable = !(error.name === 'ReplyError') || RETRYABLE_REPLY.test(error.message);
        if (retryable) failedSenders.add(message.senderId);
        return {
          ok: false,
          error: new PublishError(SCOPE, `XADD to ${stream} failed: ${error.message}`, { cause: error }),
          retryable,
        };
      }
      if (failedSenders.size > 0 && failedSenders.has(message.senderId)) {
        return {
          ok: false,
          error: new PublishError(SCOPE, 'an earlier event of its sender failed in the same batch'),
          retryable: true,
        };
      }
      return SENT;
    });
  };

  const driver: BrokerDriver<RedisClient> = {
    name: SCOPE,
    capabilities,
    destination: stream,
    defaultFormat: 'python',
    defaultGroup: settings.group,
    client: holder,
    limits: {
      maxBatchMessages: 500,
      // proto-max-bulk-len, Redis's default largest string.
      maxMessageBytes: 512 * 1024 * 1024,
      // One connection, no offline queue, no resends: pipelines reach Redis in the order they were sent. A Cluster
      // client follows MOVED redirections on its own, which could let a later pipeline land first.
      orderedSends: settings.connection.mode !== 'cluster',
    },

    async connect(session) {
      if (closed) throw new ConnectionError(SCOPE, 'closed', { permanent: true });
      const previous = client;
      client = undefined;
      holder.current = undefined;
      previous?.disconnect();
      const c = makeClient();
      await connectClient(c);
      if (session.signal.aborted || closed) {
        c.disconnect();
        session.signal.throwIfAborted();
      }
      c.once('end', () => {
        if (client !== c) return;
        client = undefined;
        holder.current = undefined;
        session.lost(new ConnectionError(SCOPE, 'the connection to Redis was lost'));
      });
      client = c;
      holder.current = c;
      void checkPersistence(c);
    },

    async send(batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]> {
      let c: Client;
      try {
        c = live();
      } catch (error) {
        return batch.map(() => ({ ok: false, error: error as Error, retryable: true }));
      }
      if (scripting && !batch.some((message) => hasHeaders(message.headers))) {
        const outcomes = await sendScripted(c, batch);
        if (outcomes !== undefined) return outcomes;
      }
      return sendPipelined(c, batch);
    },

    async consume(options: DriverConsumeOptions, sink: ConsumerSink): Promise<DriverConsumer> {
      const c = live();
      const { group, readAhead } = options;
      await ensureGroup(c, group, options.from);
      const used = names.get(group) ?? new Set<string>();
      names.set(group, used);
      let name = settings.consumer;
      for (let n = 2; used.has(name); n++) name = `${settings.consumer}-${n}`;
      used.add(name);
      const reader: Client = c instanceof Cluster ? c.duplicate() : c.duplicate();
      try {
        await connectClient(reader);
      } catch (error) {
        used.delete(name);
        throw error;
      }
      readers.add(reader);
      const consumer = new GroupConsumer(
        { client: c, reader, group, name, readAhead, sink, options },
        context,
      );
      consumers.add(consumer);
      consumer.start();
      const release = () => {
        used.delete(name);
        readers.delete(reader);
        consumers.delete(consumer);
      };
      return {
        stop: () => consumer.stop(),
        close: async () => {
          try {
            await consumer.close();
          } finally {
            release();
          }
        },
      };
    },

    async deadLetter(deadLetter: DeadLetter) {
      const c = live();
      const fields: (string | Buffer)[] = [BODY, Buffer.from(deadLetter.body)];
      const event = eventNameOf(deadLetter.body);
      if (event !== undefined) fields.push('event', event);
      if (deadLetter.senderId !== undefined) fields.push('sender_id', deadLetter.senderId);
      for (const [k, v] of Object.entries(deadLetterHeaders(deadLetter)))
        fields.push(k.startsWith(PARLEY) ? k : HEADER + k, v);
      await cmd(c).xadd(deadLetterStream, '*', ...fields);
    },

    deadLetters: {
      async list(group) {
        const c = live();
        const letters: StoredDeadLetter[] = [];
        for (let start = '-'; ; ) {
          const page = (await cmd(c).xrangeBuffer(
            deadLetterStream,
            start,
            '+',
            'COUNT',
            500,
          )) as unknown as Entry[];
          for (const [id, fields] of page) {
            if (!fields) continue;
            const parsed = parseFields(fields);
            const letter = deadLetterFromHeaders(
              parsed.body,
              { ...parsed.headers, ...parsed.parley },
              { group: settings.group, destination: stream },
            );
            if (letter.group === group) letters.push({ ...letter, id: id.toString() });
          }
          if (page.length < 500) return letters;
          start = `(${page.at(-1)![0].toString()}`;
        }
      },
      async redrive(group, letters) {
        const c = live();
        // One MULTI: the dead-letter stream shares the stream's hash slot, so this is never cross-slot.
        const multi = c.multi();
        for (const letter of letters) {
          const fields: (string | Buffer)[] = [BODY, Buffer.from(letter.body)];
          const event = eventNameOf(letter.body);
          if (event !== undefined) fields.push('event', event);
          if (letter.senderId !== undefined) fields.push('sender_id', letter.senderId);
          for (const [k, v] of Object.entries(letter.headers)) fields.push(HEADER + k, v);
          fields.push(REDRIVE_GROUP, group);
          multi.xadd(stream, '*', ...fields);
        }
        multi.xdel(deadLetterStream, ...letters.map((l) => l.id));
        const results = await multi.exec();
        const failed = results?.find(([error]) => error);
        if (!results || failed)
          throw new PublishError(SCOPE, `redrive failed: ${failed?.[0]?.message ?? 'transaction aborted'}`);
      },
    },

    isReady: () => client?.status === 'ready',

    async health() {
      const c = live();
      return {
        mode: settings.connection.mode,
        stream,
        deadLetterStream,
        length: await cmd(c).xlen(stream),
        consumers: consumers.size,
      };
    },

    async close() {
      closed = true;
      await Promise.allSettled([...consumers].map((consumer) => consumer.close()));
      for (const reader of readers) reader.disconnect();
      const c = client;
      client = undefined;
      holder.current = undefined;
      if (c) {
        await Promise.race([
          c.quit().catch(() => undefined),
          new Promise((r) => setTimeout(r, 1_000).unref()),
        ]);
        c.disconnect();
      }
    },
  };

  return driver;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A Redis Streams broker from endpoints.yml keys given in code: `redisBroker({ url: 'redis://localhost:6379' })`. */
export function redisBroker(options: RedisBrokerOptions = {}): Broker<RedisClient> {
  const { broker, keys } = splitBrokerOptions(options);
  return fromConfig({ source: '<inline>', type: 'redis', options: keys } as BrokerConfig, broker);
}

/** What `createBroker` calls for `type: redis`: Rasa's `from_endpoint_config`. */
export function fromEndpointConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning' | 'logger'> = {},
): Broker<RedisClient> {
  return fromConfig(config, options);
}

function fromConfig(config: BrokerConfig, options: BrokerOptions): Broker<RedisClient> {
  const warn = makeLog(options).warn;
  const settings = resolveRedisSettings(config, { warn });
  checkReadAhead(SCOPE, settings);
  return defineBroker(redisDriver(settings, warn), {
    ...options,
    ...(settings.bufferSize === undefined ? {} : { bufferSize: settings.bufferSize }),
    ...(settings.format === undefined ? {} : { format: settings.format }),
    ...(settings.concurrency === undefined ? {} : { concurrency: settings.concurrency }),
    ...(settings.readAhead === undefined ? {} : { readAhead: settings.readAhead }),
    ...(settings.maxAttempts === undefined ? {} : { maxAttempts: settings.maxAttempts }),
  });
}
