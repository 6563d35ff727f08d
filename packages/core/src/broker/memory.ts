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
  DeadLetter,
  Delivery,
  DriverConsumeOptions,
  DriverConsumer,
  OutgoingMessage,
  SendOutcome,
} from './contract.js';
import { defineBroker } from './define.js';

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
}

const SCOPE = 'memory';
const DEFAULT_MAX_RETAINED = 100_000;
/** How far a group reads past messages held back by their sender's lock: bounds the scan per delivery. */
const MAX_HELD = 1_000;

const capabilities: Capabilities = {
  consumerGroups: true,
  competingConsumers: true,
  ordering: 'per-sender',
  replay: true,
  deadLetter: 'native',
  batchPublish: true,
  persistent: false,
  headers: true,
};

interface Topic {
  /** Retained messages are `log[head…]`; dropping moves `head` so a drop costs nothing until compaction. */
  log: MemoryMessage[];
  head: number;
  /** Offset of `log[head]`. */
  first: number;
  maxRetained: number;
  readonly groups: Map<string, Group>;
  readonly deadLetters: Map<string, DeadLetter[]>;
}

interface Waiting {
  readonly message: MemoryMessage;
  readonly redelivered: boolean;
}

/** One delivery in flight. Settling it twice, or after the connection was cut, finds it gone: a no-op. */
interface InFlight extends Waiting {
  readonly consumer: Consumer;
}

interface Group {
  readonly topic: Topic;
  cursor: number;
  /** Released or held-back messages, by offset; all older than `cursor`, so they go out first. */
  readonly waiting: Waiting[];
  readonly inFlight: Set<InFlight>;
  /** Deliveries in flight per sender, the per-sender lock. */
  readonly busy: Map<string, number>;
  readonly consumers: Consumer[];
  /** Round-robin position among consumers. */
  turn: number;
  scheduled: boolean;
}

interface Consumer {
  readonly connection: Connection;
  readonly group: Group;
  readonly prefetch: number;
  readonly ordering: DriverConsumeOptions['ordering'];
  readonly deliver: (delivery: Delivery) => void;
  readonly inFlight: Set<InFlight>;
  stopped: boolean;
}

/** A driver's link to its hub: what `cut()` and `MemoryHub.restart()` break. */
interface Connection {
  cut: boolean;
  closed: boolean;
  readonly consumers: Set<Consumer>;
  /** `connect()` calls waiting for a restore. */
  readonly waiters: Set<(error?: Error) => void>;
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
    const drop = Math.min(excess, lowWater(topic) - topic.first);
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
    if (index < 0) return;
    const next = take(group, perSender);
    if (next === undefined) return;
    group.turn = index + 1;
    deliver(group.consumers[index]!, next);
  }
}

function nextConsumer(group: Group): number {
  const count = group.consumers.length;
  for (let i = 0; i < count; i++) {
    const index = (group.turn + i) % count;
    const consumer = group.consumers[index]!;
    const { cut, closed } = consumer.connection;
    if (!consumer.stopped && !cut && !closed && consumer.inFlight.size < consumer.prefetch) return index;
  }
  return -1;
}

/** The next deliverable message: waiting ones first, in offset order; then the log, setting locked ones aside. */
function take(group: Group, perSender: boolean): Waiting | undefined {
  const locked = (message: MemoryMessage): boolean =>
    perSender && message.senderId !== undefined && group.busy.has(message.senderId);
  const index = group.waiting.findIndex((waiting) => !locked(waiting.message));
  if (index >= 0) return group.waiting.splice(index, 1)[0];
  const { topic } = group;
  while (group.cursor < end(topic) && group.waiting.length < MAX_HELD) {
    const message = topic.log[topic.head + group.cursor++ - topic.first]!;
    if (!locked(message)) return { message, redelivered: false };
    group.waiting.push({ message, redelivered: false });
  }
  return undefined;
}

function deliver(consumer: Consumer, waiting: Waiting): void {
  const { group } = consumer;
  const token: InFlight = { ...waiting, consumer };
  group.inFlight.add(token);
  consumer.inFlight.add(token);
  const { message, redelivered } = waiting;
  if (message.senderId !== undefined)
    group.busy.set(message.senderId, (group.busy.get(message.senderId) ?? 0) + 1);
  consumer.deliver({
    body: message.body.slice(),
    headers: { ...message.headers },
    senderId: message.senderId,
    redelivered,
    ack: async () => settle(token, false),
    release: async () => settle(token, true),
  });
}

/** Ends a delivery: acknowledged for good, or back to the group (before any newer message) to go out again. */
function settle(token: InFlight, requeue: boolean): void {
  const { group } = token.consumer;
  if (!group.inFlight.delete(token)) return;
  token.consumer.inFlight.delete(token);
  const sender = token.message.senderId;
  if (sender !== undefined) {
    const busy = (group.busy.get(sender) ?? 1) - 1;
    if (busy > 0) group.busy.set(sender, busy);
    else group.busy.delete(sender);
  }
  if (requeue) {
    const at = group.waiting.findIndex((waiting) => waiting.message.offset > token.message.offset);
    group.waiting.splice(at < 0 ? group.waiting.length : at, 0, {
      message: token.message,
      redelivered: true,
    });
  }
  schedule(group);
}

const releaseAll = (consumer: Consumer): void => {
  for (const token of [...consumer.inFlight]) settle(token, true);
};

function detach(consumer: Consumer): void {
  releaseAll(consumer);
  const { group } = consumer;
  const index = group.consumers.indexOf(consumer);
  if (index >= 0) group.consumers.splice(index, 1);
  consumer.connection.consumers.delete(consumer);
}

function cut(connection: Connection): void {
  if (connection.cut) return;
  connection.cut = true;
  for (const consumer of connection.consumers) releaseAll(consumer);
}

function restore(connection: Connection): void {
  if (!connection.cut) return;
  connection.cut = false;
  for (const resolve of connection.waiters) resolve();
  connection.waiters.clear();
  for (const consumer of connection.consumers) schedule(consumer.group);
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
  deadLetters(destination: string, group: string): readonly DeadLetter[] {
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
  const connection: Connection = { cut: false, closed: false, consumers: new Set(), waiters: new Set() };
  connectionsOf(hub).add(connection);
  const fail = (error: Error, retryable: boolean): SendOutcome => ({ ok: false, error, retryable });

  return {
    name: SCOPE,
    capabilities,
    destination,
    defaultFormat: 'compact',
    defaultGroup: 'parley',
    client: hub,
    async connect(signal) {
      if (connection.closed) throw new BrokerClosedError(SCOPE);
      if (!connection.cut) return;
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
    async consume(consumeOptions, deliver): Promise<DriverConsumer> {
      if (connection.closed) throw new BrokerClosedError(SCOPE);
      const { group: name, prefetch, from, ordering } = consumeOptions;
      if (!Number.isInteger(prefetch) || prefetch < 1) {
        throw new BrokerConfigError(SCOPE, `prefetch must be a positive integer, got ${prefetch}`);
      }
      // The group outlives its consumers: `from` only places a group that does not exist yet.
      const group: Group = topic.groups.get(name) ?? {
        topic,
        cursor: from === 'beginning' ? topic.first : end(topic),
        waiting: [],
        inFlight: new Set(),
        busy: new Map(),
        consumers: [],
        turn: 0,
        scheduled: false,
      };
      topic.groups.set(name, group);
      const consumer: Consumer = {
        connection,
        group,
        prefetch,
        ordering,
        deliver,
        inFlight: new Set(),
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
      const stored = { ...deadLetter, body: deadLetter.body.slice() };
      const byGroup = topicOf(hub, deadLetter.destination).deadLetters;
      const list = byGroup.get(deadLetter.group);
      if (list === undefined) byGroup.set(deadLetter.group, [stored]);
      else list.push(stored);
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
