/**
 * How the memory hub hands out a group's messages: deferred dispatch, round-robin over consumers with room,
 * released messages first, the per-sender lock across the group, delayed releases, leases, and what a cut or a
 * consumer leaving takes back.
 */
import { ConnectionError } from '../../errors.js';
import {
  type Connection,
  type Consumer,
  end,
  type Group,
  type InFlight,
  MAX_HELD,
  type MemoryMessage,
  SCOPE,
  type Topic,
  type Waiting,
} from './model.js';

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
export function append(
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
export function schedule(group: Group): void {
  if (group.scheduled) return;
  group.scheduled = true;
  setImmediate(() => pump(group));
}

export function pump(group: Group): void {
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

export function nextConsumer(group: Group): number {
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
export function take(group: Group, perSender: boolean): Waiting | undefined {
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

export function deliver(consumer: Consumer, waiting: Waiting, perSender: boolean): void {
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
export function settle(token: InFlight, how: 'ack' | 'release' | 'take-back', delayMs?: number): boolean {
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

export function detach(consumer: Consumer): void {
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
export function cut(connection: Connection): void {
  if (connection.cut) return;
  connection.cut = true;
  for (const consumer of [...connection.consumers]) detach(consumer);
  const session = connection.session;
  connection.session = undefined;
  session?.lost(new ConnectionError(SCOPE, 'connection lost'));
}

export function restore(connection: Connection): void {
  if (!connection.cut) return;
  connection.cut = false;
  for (const resolve of connection.waiters) resolve();
  connection.waiters.clear();
}
