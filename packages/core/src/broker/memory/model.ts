/**
 * The memory broker's data model: a destination's log (append-only, bounded, dropping only what every group
 * consumed), its consumer groups, deliveries in flight, and the client connections to the hub.
 */

import type { ConnectSession, ConsumerSink, DriverConsumeOptions, StoredDeadLetter } from '../contract.js';
import type { SenderLock } from '../sender-lock.js';

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

export const SCOPE = 'memory';
export const DEFAULT_MAX_RETAINED = 100_000;
/** How far a group reads past messages held back by their sender's lock: bounds the scan per delivery. */
export const MAX_HELD = 1_000;

export interface Topic {
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

export interface Waiting {
  readonly message: MemoryMessage;
  readonly redelivered: boolean;
  /** Released with a delay: not delivered before this time (epoch ms). */
  readonly notBefore?: number;
}

/** One delivery in flight. Settling it twice, or after the connection was cut, finds it gone: a no-op. */
export interface InFlight extends Waiting {
  readonly consumer: Consumer;
  /** Aborted when the hub takes it back (cut, detach, lease expired). */
  readonly revoked: AbortController;
  /** Whether it holds its sender's lock. */
  readonly locked: boolean;
  leaseTimer?: NodeJS.Timeout;
  /** How it ended, once it did. */
  ended?: 'ack' | 'release' | 'take-back';
}

export interface Group {
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

export interface Consumer {
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
export interface Connection {
  cut: boolean;
  closed: boolean;
  readonly consumers: Set<Consumer>;
  /** `connect()` calls waiting for a restore. */
  readonly waiters: Set<(error?: Error) => void>;
  /** The session of the live connection: told when it is cut. */
  session?: ConnectSession;
}

export const end = (topic: Topic): number => topic.first + topic.log.length - topic.head;
