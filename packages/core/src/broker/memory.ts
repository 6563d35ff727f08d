/**
 * The embedded in-memory broker. The conformance suite judges itself by it, so it keeps the promises of a durable
 * broker, in-process: a `MemoryHub` is the broker server (per destination an append-only log and its consumer
 * groups), and each driver is one client connection to it, which `faults` can cut as a network would.
 */
import { BrokerClosedError, BrokerConfigError, ConnectionError, PublishError } from '../errors.js';
import type {
  Broker,
  BrokerDriver,
  BrokerOptions,
  Capabilities,
  ConnectSession,
  ConsumerSink,
  DriverConsumeOptions,
  DriverConsumer,
  OutgoingMessage,
  SendOutcome,
  StoredDeadLetter,
} from './contract.js';
import { defineBroker } from './define.js';
import { SenderLock } from './sender-lock.js';

/** One message of a destination's log, as the broker stores it. */
export interface MemoryMessage {
  /** Position in the destination's log, from 0; never reused, even after the message was dropped. */
  readonly offset: number;
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  /** The conversation, when the producer gave one (Parley always does): it keys per-sender ordering. */
  readonly senderId?: string;
  readonly eventName?: string;
}

/** A consumer group, as `MemoryHub.groups()` reports it. */
export interface MemoryGroupInfo {
  readonly name: string;
  /** Offset of the next message the group reads from the log. */
  readonly cursor: number;
  /** Messages waiting to be delivered: released, held back by per-sender ordering, or not read yet. */
  readonly pending: number;
  /** Delivered and not acknowledged yet. */
  readonly inFlight: number;
  /** Consumers attached, stopped ones included. */
  readonly consumers: number;
}

/** Options of the memory broker, on top of `defineBroker`'s. */
export interface MemoryBrokerOptions extends BrokerOptions {
  /** Default `rasa_core_events`, Rasa's default topic. */
  readonly destination?: string;
  /**
   * The broker server: a hub, or the name of a process-wide one (`MemoryHub.shared(name)`). Default: the shared
   * `default` hub, so brokers created with the same destination talk to each other, as clients of one server do.
   */
  readonly hub?: MemoryHub | string;
  /**
   * Messages a destination's log retains, default 100,000. Beyond it the oldest messages every group has consumed
   * are dropped; messages some group still needs never are: sends fail retryably (`broker full`) until it catches up.
   */
  readonly maxRetained?: number;
  /**
   * Lend deliveries for this long (ms) only, as SQS and Redis Streams do: a delivery not renewed in time goes to
   * another consumer. Default: none (held until acknowledged, as RabbitMQ does). For testing lease handling.
   */
  readonly leaseMs?: number;
}

const SCOPE = 'memory';
const DEFAULT_MAX_RETAINED = 100_000;
/** How far a group reads past messages held back by their sender's lock: bounds the scan per delivery. */
const MAX_HELD = 1_000;

const capabilities: Capabilities = {
  consumerGroups: true,
  competingConsumers: true,
  ordering: 'group', // the hub locks a sender across every consumer of the group
  replay: true,
  deadLetter: 'native',
  batchPublish: true,
  persistent: false,
  headers: true,
  deliveryCount: true,
  retry: 'broker', // released with a delay, redelivered by the hub: the path SQS and Redis take
  leases: false,
  redrive: true,
};

interface Topic {
  /** Retained messages are `log[head…]`; dropping moves `head` so a drop costs nothing until compaction. */
  log: MemoryMessage[];
  head: number;
  /** Offset of `log[head]`. */
  first: number;
  maxRetained: number;
  readonly groups: Map<string, Group>;
  readonly deadLetters: Map<string, StoredDeadLetter[]>;
  nextDeadLetter: number;
}

interface Waiting {
  readonly message: MemoryMessage;
  readonly redelivered: boolean;
  /** Released with a delay: not delivered before this time (epoch ms). */
  readonly notBefore?: number;
}

/** One delivery in flight. Settling it twice, or after the connection was cut, finds it gone: a no-op. */
interface InFlight extends Waiting {
  readonly consumer: Consumer;
  /** Aborted when the hub takes it back (cut, detach, lease expired). */
  readonly revoked: AbortController;
  /** Whether it holds its sender's lock. */
  readonly locked: boolean;
  leaseTimer?: NodeJS.Timeout;
  /** How it ended, once it did. */
  ended?: 'ack' | 'release' | 'take-back';
}

interface Group {
  readonly topic: Topic;
  cursor: number;
  /** Released or held-back messages, by offset; all older than `cursor`, so they go out first. */
  readonly waiting: Waiting[];
  readonly inFlight: Set<InFlight>;
  /** The per-sender lock, across every consumer of the group. */
  readonly senders: SenderLock;
  /** Deliveries so far per offset, kept until the message is acknowledged. */
  readonly deliveries: Map<number, number>;
  readonly consumers: Consumer[];
  /** Round-robin position among consumers. */
  turn: number;
  scheduled: boolean;
  /** A timer for the earliest delayed release. */
  timer?: NodeJS.Timeout;
  /** Forgotten once its last consumer leaves. */
  ephemeral: boolean;
}

interface Consumer {
  readonly connection: Connection;
  readonly group: Group;
  readonly readAhead: number;
  readonly ordering: DriverConsumeOptions['ordering'];
  readonly sink: ConsumerSink;
  readonly inFlight: Set<InFlight>;
  readonly leaseMs: number | undefined;
  stopped: boolean;
}

/** A driver's link to its hub: what `cut()` and `MemoryHub.restart()` break. */
interface Connection {
  cut: boolean;
  closed: boolean;
  readonly consumers: Set<Consumer>;
  /** `connect()` calls waiting for a restore. */
  readonly waiters: Set<(error?: Error) => void>;
  /** The session of the live connection: told when it is cut. */
  session?: ConnectSession;
}

const end = (topic: Topic): number => topic.first + topic.log.length - topic.head;

/** The oldest offset some group still needs: its cursor, or a message it holds, had released, or has in flight. */
function lowWater(topic: Topic): number {
  let low = end(topic);
  for (const group of topic.groups.values()) {
    low = Math.min(low, group.cursor, group.waiting[0]?.message.offset ?? low);
    for (const delivery of group.inFlight) low = Math.min(low, delivery.message.offset);
  }
  return low;
}

/** Appends what fits under the retention bound, dropping consumed messages to make room; returns how many fit. */
function append(
  topic: Topic,
  messages: readonly Omit<MemoryMessage, 'offset'>[],
  maxRetained: number,
): number {
  const excess = end(topic) - topic.first + messages.length - maxRetained;
  if (excess > 0) {
    const drop = Math.max(0, Math.min(excess, lowWater(topic) - topic.first));
    topic.head += drop;
    topic.first += drop;
    if (topic.head > 1024 && topic.head * 2 > topic.log.length) {
      topic.log = topic.log.slice(topic.head);
      topic.head = 0;
    }
  }
  const fits = Math.max(0, Math.min(messages.length, maxRetained - (end(topic) - topic.first)));
  for (const message of messages.slice(0, fits)) {
    // Copies: a producer reusing its buffer must not rewrite what the broker already accepted.
    const { body, headers, senderId, eventName } = message;
    topic.log.push({ offset: end(topic), body: body.slice(), headers: { ...headers }, senderId, eventName });
  }
  if (fits > 0) for (const group of topic.groups.values()) schedule(group);
  return fits;
}

/** Dispatch is always deferred, so `deliver` never runs inside a send, an ack or a release. */
function schedule(group: Group): void {
  if (group.scheduled) return;
  group.scheduled = true;
  setImmediate(() => pump(group));
}

function pump(group: Group): void {
  group.scheduled = false;
  // One consumer asking for per-sender ordering locks the whole group: the lock spans every consumer.
  const perSender = group.consumers.some((consumer) => consumer.ordering === 'per-sender');
  for (;;) {
    const index = nextConsumer(group);
    if (index < 0) break;
    const next = take(group, perSender);
    if (next === undefined) break;
    group.turn = index + 1;
    deliver(group.consumers[index]!, next, perSender);
  }
  // Wake up for the earliest delayed release.
  clearTimeout(group.timer);
  const due = Math.min(...group.waiting.map((w) => w.notBefore ?? Number.POSITIVE_INFINITY));
  if (Number.isFinite(due)) {
    group.timer = setTimeout(() => schedule(group), Math.max(0, due - Date.now()));
    group.timer.unref();
  }
}

function nextConsumer(group: Group): number {
  const count = group.consumers.length;
  for (let i = 0; i < count; i++) {
    const index = (group.turn + i) % count;
    const consumer = group.consumers[index]!;
    const { cut, closed } = consumer.connection;
    if (!consumer.stopped && !cut && !closed && consumer.inFlight.size < consumer.readAhead) return index;
  }
  return -1;
}

/**
 * The next deliverable message: waiting ones first, in offset order; then the log, setting locked ones aside. A
 * message released with a delay that is not due yet keeps its sender waiting too.
 */
function take(group: Group, perSender: boolean): Waiting | undefined {
  const now = Date.now();
  const delayed = new Set<string>();
  const locked = (message: MemoryMessage): boolean =>
    perSender &&
    message.senderId !== undefined &&
    (group.senders.isLocked(message.senderId) || delayed.has(message.senderId));
  let index = -1;
  for (let i = 0; i < group.waiting.length; i++) {
    const waiting = group.waiting[i]!;
    if (locked(waiting.message)) continue;
    if (waiting.notBefore !== undefined && waiting.notBefore > now) {
      if (waiting.message.senderId !== undefined) delayed.add(waiting.message.senderId);
      continue;
    }
    index = i;
    break;
  }
  if (index >= 0) return group.waiting.splice(index, 1)[0];
  const { topic } = group;
  while (group.cursor < end(topic) && group.waiting.length < MAX_HELD) {
    const message = topic.log[topic.head + group.cursor++ - topic.first]!;
    if (!locked(message)) return { message, redelivered: false };
    group.waiting.push({ message, redelivered: false });
  }
  return undefined;
}

function deliver(consumer: Consumer, waiting: Waiting, perSender: boolean): void {
  const { group } = consumer;
  const { message, redelivered } = waiting;
  const locked = perSender && message.senderId !== undefined && group.senders.acquire(message.senderId);
  const token: InFlight = { message, redelivered, consumer, revoked: new AbortController(), locked };
  group.inFlight.add(token);
  consumer.inFlight.add(token);
  const count = (group.deliveries.get(message.offset) ?? 0) + 1;
  group.deliveries.set(message.offset, count);
  const lease = consumer.leaseMs;
  const expire = () => {
    token.leaseTimer = setTimeout(() => settle(token, 'take-back'), lease);
    token.leaseTimer.unref();
  };
  if (lease !== undefined) expire();
  consumer.sink.deliver({
    id: String(message.offset),
    body: message.body.slice(),
    headers: { ...message.headers },
    senderId: message.senderId,
    redelivered,
    deliveryCount: count,
    revoked: token.revoked.signal,
    ...(lease === undefined
      ? {}
      : {
          lease: {
            durationMs: lease,
            renew: async () => {
              if (!group.inFlight.has(token))
                throw new ConnectionError(SCOPE, 'lease lost: delivered to another consumer');
              clearTimeout(token.leaseTimer);
              expire();
            },
          },
        }),
    ack: async () => {
      // A second ack is a no-op; an ack of a delivery the hub took back (cut, close, lease) did not happen.
      if (!settle(token, 'ack') && token.ended !== 'ack')
        throw new ConnectionError(
          SCOPE,
          'not acknowledged: the delivery was taken back; it is delivered again',
        );
    },
    release: async (options) => {
      // Never tried (read ahead, handed back on close): this delivery does not count as an attempt.
      if (settle(token, 'release', options?.delayMs) && options?.untried) {
        const count = group.deliveries.get(message.offset);
        if (count !== undefined && count > 1) group.deliveries.set(message.offset, count - 1);
        else group.deliveries.delete(message.offset);
      }
    },
  });
}

/**
 * Ends a delivery: acknowledged for good, or back to the group (before any newer message) to go out again, no
 * sooner than `delayMs`. Returns false when it had ended already (taken back, say).
 */
function settle(token: InFlight, how: 'ack' | 'release' | 'take-back', delayMs?: number): boolean {
  const { group } = token.consumer;
  if (!group.inFlight.delete(token)) return false;
  token.ended = how;
  token.consumer.inFlight.delete(token);
  clearTimeout(token.leaseTimer);
  const sender = token.message.senderId;
  if (token.locked && sender !== undefined) group.senders.release(sender);
  if (how !== 'ack') {
    // Taken back by the hub rather than handed back by its consumer: tell the consumer.
    if (how === 'take-back') token.revoked.abort();
    const at = group.waiting.findIndex((waiting) => waiting.message.offset > token.message.offset);
    group.waiting.splice(at < 0 ? group.waiting.length : at, 0, {
      message: token.message,
      redelivered: true,
      ...(delayMs !== undefined && delayMs > 0 ? { notBefore: Date.now() + delayMs } : {}),
    });
  } else {
    group.deliveries.delete(token.message.offset);
  }
  schedule(group);
  return true;
}

const releaseAll = (consumer: Consumer): void => {
  for (const token of [...consumer.inFlight]) settle(token, 'take-back');
};

function detach(consumer: Consumer): void {
  releaseAll(consumer);
  const { group } = consumer;
  const index = group.consumers.indexOf(consumer);
  if (index >= 0) group.consumers.splice(index, 1);
  consumer.connection.consumers.delete(consumer);
  if (group.ephemeral && group.consumers.length === 0) {
    clearTimeout(group.timer);
    for (const [name, candidate] of group.topic.groups)
      if (candidate === group) group.topic.groups.delete(name);
  }
}

/** The connection drops: its consumers are gone (what they held goes back), and its client is told. */
function cut(connection: Connection): void {
  if (connection.cut) return;
  connection.cut = true;
  for (const consumer of [...connection.consumers]) detach(consumer);
  const session = connection.session;
  connection.session = undefined;
  session?.lost(new ConnectionError(SCOPE, 'connection lost'));
}

function restore(connection: Connection): void {
  if (!connection.cut) return;
  connection.cut = false;
  for (const resolve of connection.waiters) resolve();
  connection.waiters.clear();
}

let topicOf: (hub: MemoryHub, destination: string) => Topic;
let connectionsOf: (hub: MemoryHub) => Set<Connection>;

/**
 * The in-memory broker server: per destination a log, its consumer groups and dead letters. Groups, cursors and
 * dead letters outlive consumers and connections (durable within the process). The raw methods act as the broker's
 * native client does, so tests check what was published independently of the driver under test.
 */
export class MemoryHub {
  static readonly #shared = new Map<string, MemoryHub>();
  /** Shown in health details. */
  readonly name: string;
  readonly #topics = new Map<string, Topic>();
  readonly #connections = new Set<Connection>();

  /** The process-wide hub of this name: drivers given the same name are clients of one broker. */
  static shared(name = 'default'): MemoryHub {
    const hub = MemoryHub.#shared.get(name) ?? new MemoryHub(name);
    MemoryHub.#shared.set(name, hub);
    return hub;
  }

  /** A hub of its own, shared with no one: isolation for a test. */
  constructor(name = 'isolated') {
    this.name = name;
  }

  /** Appends a message as a foreign producer would (bytes written by Rasa, say); returns its offset. */
  publishRaw(
    destination: string,
    body: Uint8Array,
    options: { readonly headers?: Readonly<Record<string, string>>; readonly senderId?: string } = {},
  ): number {
    const topic = this.#topic(destination);
    const message = { body, headers: options.headers ?? {}, senderId: options.senderId };
    if (append(topic, [message], topic.maxRetained) === 0) {
      throw new PublishError(SCOPE, `broker full: ${destination} holds ${topic.maxRetained} messages`, {
        code: 'BROKER_FULL',
      });
    }
    return end(topic) - 1;
  }

  /** The retained log of a destination, oldest first (copies). */
  messages(destination: string): readonly MemoryMessage[] {
    const topic = this.#topic(destination);
    return topic.log.slice(topic.head).map((message) => ({ ...message, body: message.body.slice() }));
  }

  /** Dead letters a group stored at this destination, in the order they came. */
  deadLetters(destination: string, group: string): readonly StoredDeadLetter[] {
    return [...(this.#topic(destination).deadLetters.get(group) ?? [])];
  }

  /** The consumer groups of a destination and where each one stands. */
  groups(destination: string): readonly MemoryGroupInfo[] {
    const topic = this.#topic(destination);
    return [...topic.groups].map(([name, group]) => ({
      name,
      cursor: group.cursor,
      pending: group.waiting.length + end(topic) - group.cursor,
      inFlight: group.inFlight.size,
      consumers: group.consumers.length,
    }));
  }

  /**
   * Restarts the broker: every attached driver loses its connection at once (unacknowledged deliveries go back to
   * their groups), then after `downMs` all reconnect. Logs, cursors and dead letters survive.
   */
  async restart(options: { readonly downMs?: number } = {}): Promise<void> {
    const connections = [...this.#connections].filter((connection) => !connection.cut);
    for (const connection of connections) cut(connection);
    const downMs = options.downMs ?? 0;
    await new Promise((resolve) => (downMs > 0 ? setTimeout(resolve, downMs) : setImmediate(resolve)));
    for (const connection of connections) if (!connection.closed) restore(connection);
  }

  #topic(destination: string): Topic {
    const topic = this.#topics.get(destination) ?? {
      log: [],
      head: 0,
      first: 0,
      maxRetained: DEFAULT_MAX_RETAINED,
      groups: new Map(),
      deadLetters: new Map(),
      nextDeadLetter: 0,
    };
    this.#topics.set(destination, topic);
    return topic;
  }

  static {
    topicOf = (hub, destination) => hub.#topic(destination);
    connectionsOf = (hub) => hub.#connections;
  }
}

/** The memory broker's driver: one client connection to a `MemoryHub`. */
export function memoryDriver(options: MemoryBrokerOptions = {}): BrokerDriver<MemoryHub> {
  const hub = options.hub instanceof MemoryHub ? options.hub : MemoryHub.shared(options.hub);
  const destination = options.destination ?? 'rasa_core_events';
  const maxRetained = options.maxRetained ?? DEFAULT_MAX_RETAINED;
  if (!Number.isInteger(maxRetained) || maxRetained < 1) {
    throw new BrokerConfigError(SCOPE, `maxRetained must be a positive integer, got ${maxRetained}`);
  }
  const topic = topicOf(hub, destination);
  // The retention bound is the destination's, as a topic's config is: the latest driver to set it decides.
  if (options.maxRetained !== undefined) topic.maxRetained = maxRetained;
  const leaseMs = options.leaseMs;
  if (leaseMs !== undefined && !(Number.isInteger(leaseMs) && leaseMs > 0)) {
    throw new BrokerConfigError(SCOPE, `leaseMs must be a positive integer (ms), got ${leaseMs}`);
  }
  const connection: Connection = { cut: false, closed: false, consumers: new Set(), waiters: new Set() };
  connectionsOf(hub).add(connection);
  const fail = (error: Error, retryable: boolean): SendOutcome => ({ ok: false, error, retryable });

  return {
    name: SCOPE,
    capabilities: leaseMs === undefined ? capabilities : { ...capabilities, leases: true },
    destination,
    defaultFormat: 'compact',
    defaultGroup: 'parley',
    client: hub,
    async connect(session) {
      const { signal } = session;
      if (connection.closed) throw new BrokerClosedError(SCOPE);
      if (!connection.cut) {
        connection.session = session;
        return;
      }
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          connection.waiters.delete(done);
          reject(signal.reason);
        };
        const done = (error?: Error): void => {
          signal.removeEventListener('abort', onAbort);
          if (error === undefined) resolve();
          else reject(error);
        };
        connection.waiters.add(done);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      connection.session = session;
    },
    async send(batch: readonly OutgoingMessage[]) {
      if (connection.closed) return batch.map(() => fail(new BrokerClosedError(SCOPE), false));
      if (connection.cut) return batch.map(() => fail(new ConnectionError(SCOPE, 'connection lost'), true));
      const fits = append(topic, batch, maxRetained);
      const full = `broker full: ${destination} retains ${maxRetained} messages and a group has not consumed them`;
      return batch.map((_, i) =>
        i < fits ? { ok: true } : fail(new PublishError(SCOPE, full, { code: 'BROKER_FULL' }), true),
      );
    },
    async consume(consumeOptions, sink): Promise<DriverConsumer> {
      if (connection.closed) throw new BrokerClosedError(SCOPE);
      if (connection.cut) throw new ConnectionError(SCOPE, 'connection lost');
      const { group: name, readAhead, from, ordering } = consumeOptions;
      const ephemeral = consumeOptions.ephemeral === true;
      if (!Number.isInteger(readAhead) || readAhead < 1) {
        throw new BrokerConfigError(SCOPE, `readAhead must be a positive integer, got ${readAhead}`);
      }
      // The group outlives its consumers: `from` only places a group that does not exist yet.
      const group: Group = topic.groups.get(name) ?? {
        topic,
        cursor: from === 'beginning' ? topic.first : end(topic),
        waiting: [],
        inFlight: new Set(),
        senders: new SenderLock(),
        deliveries: new Map(),
        consumers: [],
        turn: 0,
        scheduled: false,
        ephemeral,
      };
      topic.groups.set(name, group);
      const consumer: Consumer = {
        connection,
        group,
        readAhead,
        ordering,
        sink,
        inFlight: new Set(),
        leaseMs,
        stopped: false,
      };
      group.consumers.push(consumer);
      connection.consumers.add(consumer);
      schedule(group);
      return {
        stop: async () => {
          consumer.stopped = true;
        },
        close: async () => detach(consumer),
      };
    },
    async deadLetter(deadLetter) {
      if (connection.closed) throw new BrokerClosedError(SCOPE);
      if (connection.cut) throw new ConnectionError(SCOPE, 'connection lost');
      const dead = topicOf(hub, deadLetter.destination);
      const stored = { ...deadLetter, id: `dl-${dead.nextDeadLetter++}`, body: deadLetter.body.slice() };
      const list = dead.deadLetters.get(deadLetter.group);
      if (list === undefined) dead.deadLetters.set(deadLetter.group, [stored]);
      else list.push(stored);
    },
    deadLetters: {
      async list(group) {
        if (connection.cut) throw new ConnectionError(SCOPE, 'connection lost');
        return [...(topic.deadLetters.get(group) ?? [])];
      },
      async redrive(name, letters) {
        if (connection.cut) throw new ConnectionError(SCOPE, 'connection lost');
        const group = topic.groups.get(name);
        if (group === undefined) throw new BrokerConfigError(SCOPE, `no group "${name}" at ${destination}`);
        const ids = new Set(letters.map((letter) => letter.id));
        for (const letter of letters) {
          // Back where it came from, before anything newer, as the message it was.
          const offset = Number(letter.messageId);
          const message: MemoryMessage = {
            offset: Number.isInteger(offset) ? offset : end(topic),
            body: letter.body.slice(),
            headers: { ...letter.headers },
            ...(letter.senderId === undefined ? {} : { senderId: letter.senderId }),
          };
          const at = group.waiting.findIndex((waiting) => waiting.message.offset > message.offset);
          group.waiting.splice(at < 0 ? group.waiting.length : at, 0, { message, redelivered: true });
        }
        const kept = (topic.deadLetters.get(name) ?? []).filter((letter) => !ids.has(letter.id));
        topic.deadLetters.set(name, kept);
        schedule(group);
      },
    },
    isReady: () => !connection.cut && !connection.closed,
    async health() {
      return { hub: hub.name, destination, retained: end(topic) - topic.first, groups: topic.groups.size };
    },
    faults: {
      cut: async () => cut(connection),
      restore: async () => restore(connection),
    },
    async close() {
      if (connection.closed) return;
      connection.closed = true;
      for (const consumer of [...connection.consumers]) detach(consumer);
      for (const done of connection.waiters) done(new BrokerClosedError(SCOPE));
      connection.waiters.clear();
      connectionsOf(hub).delete(connection);
    },
  };
}

/** The embedded in-memory broker: `defineBroker(memoryDriver(options), options)`. */
export function memoryBroker(options: MemoryBrokerOptions = {}): Broker<MemoryHub> {
  return defineBroker(memoryDriver(options), options);
}
