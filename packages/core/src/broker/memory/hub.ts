/**
 * The in-memory broker server. The conformance suite judges itself by the memory broker, so it keeps the promises
 * of a durable broker, in-process: a hub holds per destination an append-only log and its consumer groups, and each
 * driver is one client connection to it, which `faults` can cut as a network would.
 */
import { PublishError } from '../../errors.js';
import type { StoredDeadLetter } from '../contract.js';
import { append, cut, restore } from './dispatch.js';
import {
  type Connection,
  DEFAULT_MAX_RETAINED,
  end,
  type MemoryGroupInfo,
  type MemoryMessage,
  SCOPE,
  type Topic,
} from './model.js';

export let topicOf: (hub: MemoryHub, destination: string) => Topic;
export let connectionsOf: (hub: MemoryHub) => Set<Connection>;

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
