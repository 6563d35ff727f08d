/**
 * One member of a consumer group: `eachBatch` without auto-resolve or auto-commit; each partition has an
 * {@link AckWindow}, and offsets are committed only up to its last contiguous handled message, so a crash or a
 * rebalance loses nothing. Waiting for room (read-ahead) inside `eachBatch` heartbeats, so long handlers keep the
 * member in its group; partitions missing from a new assignment abort their deliveries' `revoked` signals; a
 * dead letter redriven to another group is passed over. An `ephemeral` group (parley tail's) commits nothing: the
 * cluster keeps no offsets of it once it leaves.
 */
import {
  AckWindow,
  ConnectionError,
  type ConsumerSink,
  type Delivery,
  type DriverConsumeOptions,
  type DriverConsumer,
} from '@parley/core';
import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { messageOf, roundRobinBySubscription, SCOPE } from './client.js';
import { headersOf, redriveGroupOf } from './dead-letters.js';
import type { KafkaSettings } from './options.js';

/** What a member shares with its driver. */
export interface GroupMember {
  readonly topic: string;
  readonly settings: KafkaSettings;
  /** Whether the driver closed (a crash then is no loss to report). */
  readonly closed: () => boolean;
  /** The driver's live members, closed with it. */
  readonly consumers: Set<{ close(): Promise<void> }>;
}

export async function joinGroup(
  k: Kafka,
  member: GroupMember,
  options: DriverConsumeOptions,
  sink: ConsumerSink,
): Promise<DriverConsumer> {
  const { topic, settings, consumers } = member;
  const { group, readAhead } = options;
  const ephemeral = options.ephemeral === true;
  let start = await latestStart(k, topic, group, options.from);
  /** The commit of a new group's start: `ready` waits for it (a group closed at once must exist after). */
  let startOffsets: { topic: string; partition: number; offset: string }[] = [];
  const consumer: Consumer = k.consumer({
    groupId: group,
    sessionTimeout: settings.sessionTimeoutMs,
    heartbeatInterval: settings.heartbeatIntervalMs,
    rebalanceTimeout: Math.max(settings.sessionTimeoutMs, 10_000),
    allowAutoTopicCreation: true,
    maxWaitTimeInMs: 500,
    partitionAssigners: [roundRobinBySubscription],
    // Core resumes a crashed consumer with a new consume(): kafkajs must not restart it behind core's back.
    retry: { retries: 3, restartOnFailure: async () => false },
  });

  /**
   * Per partition: the window of held offsets, how many deliveries it holds, and the signal that tells them all the
   * partition was revoked (one for the partition, not one per delivery).
   */
  const partitions = new Map<number, PartitionState>();
  let unacked = 0;
  /**
   * Partition batches waiting for read-ahead room: every one is woken when room may have come (up to 4 wait). Once
   * read-ahead is full, they are woken when a quarter of it is free again, not at every ack: a wake per message (a
   * timer, a promise and a heartbeat check each) cost more than the message.
   */
  const waiting = new Set<() => void>();
  /** Seeks this member made (releases): a batch being delivered may have become stale. */
  let seeks = 0;
  const resumeAt = readAhead - Math.max(1, Math.floor(readAhead / 4));
  const notify = () => {
    if (waiting.size === 0) return;
    const woken = [...waiting];
    waiting.clear();
    for (const wake of woken) wake();
  };
  const holder: Member = {
    settle(state) {
      // A revoked partition's deliveries were forgotten at once (see revoke).
      if (state.forgotten) return false;
      state.held--;
      unacked--;
      if (unacked <= resumeAt || stopped) notify();
      return true;
    },
    current: (state) => partitions.get(state.partition) === state,
    commit: (partition) => commit(partition),
    seek(partition, offset) {
      if (stopped) return;
      seeks++;
      consumer.seek({ topic, partition, offset });
    },
  };
  let stopped = false;

  /** Commits of one tick go out as one request (core acks deliveries one by one). */
  let pendingCommit: { promise: Promise<void>; partitions: Set<number> } | undefined;
  const commit = (partition: number): Promise<void> => {
    if (ephemeral) return Promise.resolve();
    if (!pendingCommit) {
      const batch = { partitions: new Set<number>(), promise: Promise.resolve() };
      batch.promise = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        pendingCommit = undefined;
        const offsets = [...batch.partitions].flatMap((p) => {
          const state = partitions.get(p);
          return state ? [{ topic, partition: p, offset: String(state.window.committed) }] : [];
        });
        if (offsets.length > 0) await consumer.commitOffsets(offsets);
      });
      pendingCommit = batch;
    }
    pendingCommit.partitions.add(partition);
    return pendingCommit.promise;
  };

  const revoke = (partition: number) => {
    const state = partitions.get(partition);
    if (!state) return;
    partitions.delete(partition);
    // Forgotten before they are told: an ack or release of a revoked delivery then settles nothing, and read-ahead
    // room is counted once (it was counted again when core released a revoked delivery later).
    unacked -= state.held;
    state.held = 0;
    state.forgotten = true;
    state.revoked.abort();
    notify();
  };

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    const assigned = new Set(event.payload.memberAssignment[topic] ?? []);
    for (const partition of [...partitions.keys()]) if (!assigned.has(partition)) revoke(partition);
    const from = start;
    start = undefined;
    if (from) {
      // A new group: start at the ends read before joining, and commit them (unless ephemeral), so that the group
      // exists from now. Every partition's, not only this member's: one held meanwhile by a member that never reads
      // it (a join that failed halfway stays a member until its session times out) would otherwise start, once it
      // moves here, wherever kafkajs puts a partition without a commit (its end), past what was published meanwhile.
      for (const partition of assigned) {
        const offset = from.get(partition);
        if (offset !== undefined) consumer.seek({ topic, partition, offset });
      }
      startOffsets = [...from].map(([partition, offset]) => ({ topic, partition, offset }));
    }
  });
  let running = false;
  consumer.on(consumer.events.CRASH, (event) => {
    // A crash while joining is the join's failure (consume tries again); after it, the consumer is lost.
    if (stopped || member.closed() || !running) return;
    sink.lost(
      new ConnectionError(SCOPE, `consumer of group ${group} crashed: ${messageOf(event.payload.error)}`),
    );
  });

  const eachBatch = async ({ batch, heartbeat, resolveOffset, isRunning, isStale }: EachBatchPayload) => {
    const partition = batch.partition;
    // kafkajs's isStale() builds a key string per call (it showed in profiles): asked again only after an await or
    // a seek of ours (a release), the only things that can make the batch stale meanwhile.
    let asked = -1;
    const stale = (): boolean => {
      if (asked === seeks) return false;
      if (isStale()) return true;
      asked = seeks;
      return false;
    };
    // Offsets are resolved once per run of messages handed over (before each await and return), not per message:
    // kafkajs parses each one into a Long (it showed in profiles). What is resolved is the same.
    let resolved: string | undefined;
    const resolveRun = (): void => {
      if (resolved === undefined) return;
      resolveOffset(resolved);
      resolved = undefined;
    };
    for (const message of batch.messages) {
      if (!isRunning() || stale() || stopped) return resolveRun();
      const offset = Number(message.offset);
      let state = partitions.get(partition);
      if (!state) {
        state = {
          partition,
          window: new AckWindow<number>(offset),
          held: 0,
          forgotten: false,
          released: new Set(),
          revoked: new AbortController(),
        };
        partitions.set(partition, state);
      }
      // A partition kept through a rebalance is fetched again from its committed offset, and a release seeks
      // back to the released offset: what is still held was delivered once already; only released ones go again.
      const again = offset < state.window.end;
      if (again && !state.released.has(offset)) {
        resolved = message.offset;
        continue;
      }
      const redriveGroup = redriveGroupOf(message);
      if (!again && redriveGroup !== undefined && redriveGroup !== group) {
        // A dead letter redriven to another group: not this group's to handle.
        state.window.skip(offset + 1);
        resolved = message.offset;
        continue;
      }
      while (unacked >= readAhead && isRunning() && !stale() && !stopped) {
        resolveRun();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(1_000, settings.heartbeatIntervalMs));
          timer.unref();
          function done() {
            clearTimeout(timer);
            waiting.delete(done);
            resolve();
          }
          waiting.add(done);
        });
        // Long handlers: the member stays in its group while core holds what it read.
        await heartbeat();
        asked = -1;
      }
      if (!isRunning() || stale() || stopped || partitions.get(partition) !== state) return resolveRun();
      if (again) state.released.delete(offset);
      else state.window.add(offset, offset + 1);
      state.held++;
      unacked++;
      const delivery = new KafkaDelivery(holder, state, message, offset, again);
      resolved = message.offset;
      // deliver is never synchronous with consume: eachBatch runs on kafkajs's fetch loop.
      sink.deliver(delivery);
    }
    resolveRun();
    await heartbeat();
  };

  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: options.from === 'beginning' });
    const joined = new Promise<void>((resolve, reject) => {
      consumer.on(consumer.events.GROUP_JOIN, () => resolve());
      consumer.on(consumer.events.CRASH, (event) => reject(event.payload.error));
    });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 4,
      eachBatch,
    });
    await joined;
    running = true;
    // Only once the runner runs: kafkajs drops a commit made before (as in the join's own event).
    if (startOffsets.length > 0 && !ephemeral) await commitStart(consumer, startOffsets, () => stopped);
  } catch (error) {
    await consumer.disconnect().catch(() => {});
    throw new ConnectionError(SCOPE, `cannot join group ${group}: ${messageOf(error)}`, { cause: error });
  }

  const handle = {
    async close() {
      stopped = true;
      notify();
      await pendingCommit?.promise.catch(() => {});
      await consumer.disconnect().catch(() => {});
      for (const partition of [...partitions.keys()]) revoke(partition);
      consumers.delete(handle);
    },
  };
  consumers.add(handle);
  return {
    stop: async () => {
      stopped = true;
      notify();
      consumer.pause([{ topic }]);
    },
    close: () => handle.close(),
  };
}

/** One partition as this member holds it. */
interface PartitionState {
  readonly partition: number;
  /** The held offsets: committed only up to the last contiguous acknowledged one. */
  readonly window: AckWindow<number>;
  /**
   * How many deliveries of it are held: a count, each delivery knowing whether it still is (a Set of offsets, filled
   * and emptied by every fetch, showed in profiles).
   */
  held: number;
  /**
   * Revoked: its held deliveries no longer count (a plain field, read per ack, where the signal's `aborted` is a
   * checked getter).
   */
  forgotten: boolean;
  /** Released offsets, delivered again when the seek back fetches them. */
  readonly released: Set<number>;
  /** Aborted when the partition is revoked: one signal for all its deliveries. */
  readonly revoked: AbortController;
}

/** What a delivery needs of its member. */
interface Member {
  /** A held delivery of the partition is settled: false if the partition was revoked (its room already counted). */
  settle(state: PartitionState): boolean;
  /** The partition is still this member's, as it was when the message was delivered. */
  current(state: PartitionState): boolean;
  commit(partition: number): Promise<void>;
  seek(partition: number, offset: string): void;
}

/** One message handed to core: a class, since closures and copies per delivery showed in profiles. */
class KafkaDelivery implements Delivery {
  readonly id: string;
  /**
   * The fetched bytes as they are: a view into the fetch response, which it keeps alive while core holds it (at
   * most read-ahead messages), rather than a copy per message.
   */
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly senderId: string | undefined;
  readonly redelivered: boolean;
  readonly revoked: AbortSignal;
  readonly #member: Member;
  readonly #state: PartitionState;
  readonly #offset: number;
  /** Still held: settled once (read-ahead room counted once). */
  #held = true;

  constructor(member: Member, state: PartitionState, message: KafkaMessage, offset: number, again: boolean) {
    this.#member = member;
    this.#state = state;
    this.#offset = offset;
    this.id = `${state.partition}:${message.offset}`;
    this.body = message.value ?? EMPTY;
    this.headers = headersOf(message.headers);
    const key = message.key;
    this.senderId = key == null || key.length === 0 ? undefined : key.toString('utf8');
    this.redelivered = again;
    this.revoked = state.revoked.signal;
  }

  /** Not an async function: the tick's commit promise is shared by every ack it carries, not wrapped per ack. */
  ack(): Promise<void> {
    const state = this.#state;
    const offset = this.#offset;
    if (!this.#settle()) return RESOLVED;
    if (state.window.ack(offset) && this.#member.current(state)) return this.#member.commit(state.partition);
    return RESOLVED;
  }

  async release(): Promise<void> {
    // A partition is a log: a released message stays unacknowledged in its window (holding the commit) and the
    // consumer seeks back to it, so it is fetched and delivered again; newer held ones are skipped.
    const state = this.#state;
    if (!this.#settle() || !this.#member.current(state)) return;
    state.released.add(this.#offset);
    this.#member.seek(state.partition, String(this.#offset));
  }

  #settle(): boolean {
    if (!this.#held) return false;
    this.#held = false;
    return this.#member.settle(this.#state);
  }
}

const EMPTY = new Uint8Array(0);
const RESOLVED = Promise.resolve();

/**
 * `from: 'latest'` for a new group means "from when it subscribed", not "from its first fetch" (kafkajs resolves
 * `latest` lazily): the topic's ends, read before joining, are where such a group starts (see consume). A group
 * that has committed offsets keeps them. Undefined: nothing to do (or the broker cannot say).
 */
/**
 * Commits a new group's start. A rebalance right after the join (members of a new group join one after another)
 * refuses a commit of the old generation: tried again, a few times, since without it the partitions of a member that
 * never read them would start at their end.
 */
async function commitStart(
  consumer: Consumer,
  offsets: { topic: string; partition: number; offset: string }[],
  stopped: () => boolean,
): Promise<void> {
  for (let attempt = 1; attempt <= 5 && !stopped(); attempt++) {
    try {
      await consumer.commitOffsets(offsets);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

async function latestStart(
  k: Kafka,
  topic: string,
  group: string,
  from: 'latest' | 'beginning',
): Promise<Map<number, string> | undefined> {
  if (from !== 'latest') return undefined;
  const admin: Admin = k.admin();
  try {
    await admin.connect();
    // Creates the topic when the broker auto-creates topics, so that its ends exist to start at.
    await admin.fetchTopicMetadata({ topics: [topic] });
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    if (committed?.partitions.some((p) => p.offset !== '-1')) return undefined;
    const ends = await admin.fetchTopicOffsets(topic);
    return new Map(ends.map((p) => [p.partition, p.high]));
  } catch {
    // Admin calls the broker lacks: the group starts where kafkajs's `fromBeginning: false` puts it.
    return undefined;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
