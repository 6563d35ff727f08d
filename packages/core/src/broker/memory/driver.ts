/** The memory broker's driver: one client connection to a `MemoryHub`, and `memoryBroker`. */
import { BrokerClosedError, BrokerConfigError, ConnectionError, PublishError } from '../../errors.js';
import type {
  Broker,
  BrokerDriver,
  BrokerOptions,
  Capabilities,
  DriverConsumer,
  OutgoingMessage,
  SendOutcome,
} from '../contract.js';
import { defineBroker, SENT } from '../define.js';
import { SenderLock } from '../sender-lock.js';
import { append, cut, detach, restore, schedule } from './dispatch.js';
import { connectionsOf, MemoryHub, topicOf } from './hub.js';
import {
  type Connection,
  type Consumer,
  DEFAULT_MAX_RETAINED,
  end,
  type Group,
  type MemoryMessage,
  SCOPE,
} from './model.js';

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
        i < fits ? SENT : fail(new PublishError(SCOPE, full, { code: 'BROKER_FULL' }), true),
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
