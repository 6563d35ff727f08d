/**
 * The Kafka driver: a translation of the contract to one topic and consumer groups, on kafkajs. Core owns the rest
 * (reconnecting, resuming consumers, retries, ordering among one consumer's deliveries, draining).
 *
 * - publish: one `producer.send` per batch, in batch order (acks all, idempotent by default); value = the Rasa
 *   JSON byte for byte, key = `sender_id` with `partition_by_sender`, header `RASA_ENVIRONMENT` always.
 * - consume: `eachBatch` without auto-resolve or auto-commit; each partition has an {@link AckWindow}, and offsets
 *   are committed only up to its last contiguous handled message, so a crash or a rebalance loses nothing.
 *   Waiting for room (read-ahead) inside `eachBatch` heartbeats, so long handlers keep the member in its group.
 * - rebalance: partitions missing from the new assignment abort their deliveries' `revoked` signals.
 * - dead letters: produced to the dead-letter topic with core's dead-letter headers; listed and redriven by
 *   ./dead-letters.ts.
 *
 * kafkajs stays behind this file and ./dead-letters.ts: nothing else in the package imports it (see the README on
 * replacing it).
 */
import {
  AckWindow,
  type Broker,
  type BrokerConfig,
  BrokerConfigError,
  type BrokerDriver,
  type BrokerOptions,
  type Capabilities,
  ConnectionError,
  type ConsumerSink,
  checkReadAhead,
  type DeadLetter,
  type Delivery,
  type DriverConsumeOptions,
  type DriverConsumer,
  deadLetterHeaders,
  defineBroker,
  dumpsPython,
  makeLog,
  type OutgoingMessage,
  PublishError,
  type SendOutcome,
  splitBrokerOptions,
} from '@parley/core';
import {
  type Admin,
  AssignerProtocol,
  type Consumer,
  type EachBatchPayload,
  Kafka,
  type KafkaConfig,
  logLevel,
  type PartitionAssigner,
  type Producer,
  type SASLOptions,
} from 'kafkajs';
import { headersOf, kafkaDeadLetters, redriveGroupOf } from './dead-letters.js';
import {
  DEFAULT_READ_AHEAD,
  type KafkaOptions,
  type KafkaSettings,
  resolveKafkaSettings,
} from './options.js';

const SCOPE = 'kafka';
/** Joins tried before a subscription fails (see consume), and the backoff between them (times the attempt). */
const JOIN_ATTEMPTS = 5;
const JOIN_BACKOFF_MS = 500;

/** What the adapter's `client` is: the kafkajs client and producer of the current connection. */
export interface KafkaClient {
  readonly kafka: Kafka | undefined;
  readonly producer: Producer | undefined;
  readonly settings: KafkaSettings;
}

/** Test and escape-hatch hooks that are not endpoints.yml keys. */
export interface KafkaDriverHooks {
  /** Extra kafkajs client config (a `socketFactory` for fault injection, say), merged over Parley's. */
  readonly kafkaConfig?: Partial<KafkaConfig>;
  /**
   * With `sasl_mechanism: OAUTHBEARER` (and no AWS MSK IAM switched on): the token for each authentication, from
   * your identity provider. kafkajs asks again whenever a connection authenticates.
   */
  readonly oauthBearerProvider?: () => Promise<{ readonly value: string }>;
}

/** Options of {@link kafkaBroker}: the endpoints.yml keys, plus `defineBroker`'s options and driver hooks. */
export interface KafkaBrokerOptions
  extends KafkaOptions,
    KafkaDriverHooks,
    Omit<BrokerOptions, 'bufferSize' | 'maxBatch' | 'concurrency'> {}

const capabilitiesOf = (settings: KafkaSettings): Capabilities => ({
  consumerGroups: true,
  competingConsumers: true,
  // With sender keys one sender's events share a partition, and a partition has one consumer in a group. Without
  // them a sender's events are spread over partitions that different consumers read at once.
  ordering: settings.partitionBySender ? 'group' : 'none',
  replay: true,
  deadLetter: 'emulated',
  batchPublish: true,
  persistent: true,
  headers: true,
  // Kafka keeps no delivery count: attempts are core's, in process.
  deliveryCount: false,
  retry: 'in-process',
  // The member heartbeats while core holds its deliveries; nothing is lent per message.
  leases: false,
  // Listed from the dead-letter topic; a redrive produces them again for their group and marks them there.
  redrive: true,
});

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An authentication or authorisation refusal: no retry or rejoin mends it. */
function isRefusal(error: unknown): boolean {
  const e = error as { type?: string; name?: string };
  return /AUTHORIZATION|SASL/.test(String(e.type)) || e.name === 'KafkaJSSASLAuthenticationError';
}

/**
 * Whether sending again can succeed. kafkajs marks its errors `retriable`, but a connection error that outlived
 * its own retries comes wrapped as non-retriable: only what the broker refuses for the message itself or for who
 * sends it (size, an invalid record, authorisation, authentication, an unsupported request) is permanent, wherever
 * it sits in the cause chain. Anything else (a lost connection, a leader moving) is retried by core.
 */
function isRetryable(error: unknown): boolean {
  for (let e = error as { type?: string; name?: string; cause?: unknown } | undefined; e; ) {
    if (
      /MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE|INVALID_RECORD|AUTHORIZATION|SASL|UNSUPPORTED|INVALID_TOPIC|INVALID_REQUIRED_ACKS/.test(
        String(e.type),
      )
    )
      return false;
    if (e.name === 'KafkaJSSASLAuthenticationError') return false;
    e = e.cause as typeof e;
  }
  return true;
}

/** aws-msk-iam-sasl-signer-js, an optional peer: needed only for AWS MSK IAM. */
async function loadMskSigner(): Promise<typeof import('aws-msk-iam-sasl-signer-js')> {
  try {
    return await import('aws-msk-iam-sasl-signer-js');
  } catch (error) {
    throw new ConnectionError(
      SCOPE,
      'AWS MSK IAM (KAFKA_MSK_AWS_IAM_ENABLED=true) signs its tokens with the package aws-msk-iam-sasl-signer-js: install it (npm install aws-msk-iam-sasl-signer-js)',
      { cause: error, permanent: true },
    );
  }
}

/**
 * AWS MSK IAM tokens for `region`: SigV4-signed with the AWS default credential chain, as Rasa Pro's
 * `get_aws_iam_token`. What `KAFKA_MSK_AWS_IAM_ENABLED=true` uses; also an `oauthBearerProvider` for code.
 */
export function mskIamTokenProvider(region: string): () => Promise<{ value: string }> {
  return async () => ({ value: (await (await loadMskSigner()).generateAuthToken({ region })).token });
}

function saslOf(settings: KafkaSettings, hooks: KafkaDriverHooks): SASLOptions | undefined {
  const sasl = settings.sasl;
  if (sasl === undefined) return undefined;
  if (sasl.mechanism !== 'oauthbearer') return sasl as SASLOptions;
  if (sasl.source === 'aws-msk-iam') {
    return { mechanism: 'oauthbearer', oauthBearerProvider: mskIamTokenProvider(sasl.region) };
  }
  const provider = hooks.oauthBearerProvider;
  if (provider === undefined) return undefined; // refused in fromConfig before any driver exists
  return { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: (await provider()).value }) };
}

function kafkaConfigOf(settings: KafkaSettings, hooks: KafkaDriverHooks): KafkaConfig {
  const sasl = saslOf(settings, hooks);
  const tls = settings.tls
    ? {
        ...(settings.tls.ca === undefined ? {} : { ca: [settings.tls.ca] }),
        ...(settings.tls.cert === undefined ? {} : { cert: settings.tls.cert }),
        ...(settings.tls.key === undefined ? {} : { key: settings.tls.key }),
        ...(settings.tls.checkHostname ? {} : { checkServerIdentity: () => undefined }),
      }
    : undefined;
  return {
    brokers: [...settings.brokers],
    ...(settings.clientId === undefined ? {} : { clientId: settings.clientId }),
    ...(sasl ? { sasl } : {}),
    ...(tls ? { ssl: tls } : {}),
    connectionTimeout: 5_000,
    requestTimeout: 15_000,
    // Core retries failed sends with backoff and owns reconnection: kafkajs tries a few times, then reports.
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 2_000 },
    // kafkajs logs to stdout by default; its errors reach us as rejected calls anyway.
    logLevel: logLevel.NOTHING,
    ...hooks.kafkaConfig,
  };
}

/**
 * kafkajs's round robin, but each topic's partitions go only to the members that subscribe to it. kafkajs's own
 * gives the leader's topics to every member, so two subscriptions of one group to different topics (a group is
 * named per topic in Parley, as on every broker) took each other's partitions and left their own unread. Same
 * name and metadata as kafkajs's, so plain kafkajs members can share a group with Parley's.
 */
const roundRobinBySubscription: PartitionAssigner = ({ cluster }) => ({
  name: 'RoundRobinAssigner',
  version: 0,
  async assign({ members }) {
    const subscribers = new Map<string, string[]>();
    for (const { memberId, memberMetadata } of members) {
      for (const t of AssignerProtocol.MemberMetadata.decode(memberMetadata)?.topics ?? []) {
        subscribers.set(t, [...(subscribers.get(t) ?? []), memberId]);
      }
    }
    await cluster.addMultipleTargetTopics([...subscribers.keys()]);
    const assignment = new Map<string, Record<string, number[]>>(members.map((m) => [m.memberId, {}]));
    for (const [t, ids] of subscribers) {
      ids.sort();
      const partitions = cluster.findTopicPartitionMetadata(t).map((p) => p.partitionId);
      partitions.sort((a, b) => a - b);
      partitions.forEach((partition, i) => {
        const own = assignment.get(ids[i % ids.length]!)!;
        own[t] = [...(own[t] ?? []), partition];
      });
    }
    return [...assignment].map(([memberId, own]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: own,
        userData: Buffer.alloc(0),
      }),
    }));
  },
  protocol({ topics }) {
    return {
      name: 'RoundRobinAssigner',
      metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});

/** The Kafka driver, from resolved settings. */
export function kafkaDriver(
  settings: KafkaSettings,
  hooks: KafkaDriverHooks = {},
  warn: (message: string) => void = (m) => process.emitWarning(m, 'ParleyWarning'),
): BrokerDriver<KafkaClient> {
  const { topic } = settings;
  const rasaEnvironment = process.env.RASA_ENVIRONMENT ?? 'RASA_ENVIRONMENT_NOT_SET';
  let kafka: Kafka | undefined;
  let producer: Producer | undefined;
  let connected = false;
  let closed = false;
  const consumers = new Set<{ close(): Promise<void> }>();
  const holder: { kafka: Kafka | undefined; producer: Producer | undefined; settings: KafkaSettings } = {
    kafka: undefined,
    producer: undefined,
    settings,
  };

  /**
   * `on_message_too_large: error_event`: what Rasa Pro's KafkaEventBroker sends in place of an event over the size
   * limit, its `error` event (`ErrorHandled(error_code=10)`, then `sender_id`), with a warning naming the event.
   */
  const inPlaceOfTooLarge = (m: OutgoingMessage): OutgoingMessage => {
    if (settings.onMessageTooLarge !== 'error_event' || m.body.byteLength <= settings.maxMessageBytes)
      return m;
    const reason = `the event is ${m.body.byteLength} bytes, over max_message_bytes (${settings.maxMessageBytes})`;
    warn(
      `[parley] [kafka] event ${m.eventName} of sender "${m.senderId}" sent as an error event in its place: ${reason} (on_message_too_large: error_event)`,
    );
    const replacement = {
      event: 'error',
      timestamp: Date.now() / 1000,
      metadata: {
        error_msg: `Skipping message for event type '${m.eventName}' because of Kafka message size limit: ${reason}`,
        error_source: 'KafkaEventBroker',
      },
      error_code: 10,
      sender_id: m.senderId,
    };
    const body = Buffer.from(dumpsPython(replacement, { floats: { timestamp: true } }), 'utf8');
    return { ...m, body, eventName: 'error' };
  };

  const toMessage = (original: OutgoingMessage) => {
    const m = inPlaceOfTooLarge(original);
    return {
      key: settings.partitionBySender ? Buffer.from(m.senderId, 'utf8') : null,
      value: Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength),
      // Rasa sends exactly this header; Parley's own (publish options) travel beside it.
      headers: { ...m.headers, RASA_ENVIRONMENT: rasaEnvironment },
    };
  };

  const produce = async (batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]> => {
    const p = producer;
    if (!p || !connected) {
      const error = new ConnectionError(SCOPE, 'not connected to Kafka');
      return batch.map(() => ({ ok: false, error, retryable: true }));
    }
    try {
      // One request for the batch: kafkajs keeps its order within each partition.
      await p.send({ topic, acks: -1, messages: batch.map(toMessage) });
      return batch.map(() => ({ ok: true }));
    } catch (error) {
      const retryable = isRetryable(error);
      const failure = new PublishError(SCOPE, `produce to ${topic} failed: ${messageOf(error)}`, {
        cause: error,
      });
      return batch.map(() => ({ ok: false, error: failure, retryable }));
    }
  };

  /** With `linger_ms`, batches handed over within the linger merge into one request, in the order they came. */
  interface Lingering {
    readonly batch: OutgoingMessage[];
    readonly parts: { size: number; resolve(o: readonly SendOutcome[]): void }[];
  }
  let lingering: Lingering | undefined;
  const send = (batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]> => {
    if (settings.lingerMs === 0) return produce(batch);
    return new Promise((resolve) => {
      if (!lingering) {
        const current: Lingering = { batch: [], parts: [] };
        lingering = current;
        setTimeout(() => {
          lingering = undefined;
          void produce(current.batch).then((outcomes) => {
            let at = 0;
            for (const part of current.parts) {
              part.resolve(outcomes.slice(at, at + part.size));
              at += part.size;
            }
          });
        }, settings.lingerMs);
      }
      lingering.batch.push(...batch);
      lingering.parts.push({ size: batch.length, resolve });
    });
  };

  /**
   * Joins the group, again when the join loses a race with a rebalance. A member that joins while its group
   * rebalances (a peer joining or leaving at the same moment) can be told to rejoin, find its generation retired,
   * or (librdkafka's mock cluster) have a late SyncGroup refused: that is the group's moment, not a fault of the
   * subscription, so a fresh member tries again, a few times. What no rejoin mends (authorisation) fails at once.
   */
  const consume = async (options: DriverConsumeOptions, sink: ConsumerSink): Promise<DriverConsumer> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await joinGroup(options, sink);
      } catch (error) {
        const cause = (error as Error).cause;
        if (closed || !connected || attempt >= JOIN_ATTEMPTS || cause === undefined || isRefusal(cause))
          throw error;
        await new Promise((resolve) => setTimeout(resolve, JOIN_BACKOFF_MS * attempt));
      }
    }
  };

  const joinGroup = async (options: DriverConsumeOptions, sink: ConsumerSink): Promise<DriverConsumer> => {
    const k = kafka;
    if (!k || !connected) throw new ConnectionError(SCOPE, 'not connected to Kafka');
    const { group, readAhead } = options;
    let start = await latestStart(k, group, options.from);
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

    /** Per partition: the window of held offsets, and the abort controller of each held delivery. */
    const partitions = new Map<
      number,
      { window: AckWindow<number>; held: Map<number, AbortController>; released: Set<number> }
    >();
    let unacked = 0;
    let wake: (() => void) | undefined;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let stopped = false;

    /** Commits of one tick go out as one request (core acks deliveries one by one). */
    let pendingCommit: { promise: Promise<void>; partitions: Set<number> } | undefined;
    const commit = (partition: number): Promise<void> => {
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
      for (const controller of state.held.values()) controller.abort();
      unacked -= state.held.size;
      notify();
    };

    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      const assigned = new Set(event.payload.memberAssignment[topic] ?? []);
      for (const partition of [...partitions.keys()]) if (!assigned.has(partition)) revoke(partition);
      const from = start;
      start = undefined;
      if (from) {
        // A new group: start at the ends read before joining, and commit them, so that the group exists from now.
        const offsets = [...assigned].flatMap((partition) => {
          const offset = from.get(partition);
          return offset === undefined ? [] : [{ topic, partition, offset }];
        });
        for (const o of offsets) consumer.seek(o);
        startOffsets = offsets;
      }
    });
    let running = false;
    consumer.on(consumer.events.CRASH, (event) => {
      // A crash while joining is the join's failure (consume tries again); after it, the consumer is lost.
      if (stopped || closed || !running) return;
      sink.lost(
        new ConnectionError(SCOPE, `consumer of group ${group} crashed: ${messageOf(event.payload.error)}`),
      );
    });

    const eachBatch = async ({ batch, heartbeat, resolveOffset, isRunning, isStale }: EachBatchPayload) => {
      const partition = batch.partition;
      for (const message of batch.messages) {
        if (!isRunning() || isStale() || stopped) return;
        const offset = Number(message.offset);
        let state = partitions.get(partition);
        if (!state) {
          state = { window: new AckWindow<number>(offset), held: new Map(), released: new Set() };
          partitions.set(partition, state);
        }
        // A partition kept through a rebalance is fetched again from its committed offset, and a release seeks
        // back to the released offset: what is still held was delivered once already; only released ones go again.
        const again = offset < state.window.end;
        if (again && !state.released.has(offset)) {
          resolveOffset(message.offset);
          continue;
        }
        const redriveGroup = redriveGroupOf(message);
        if (!again && redriveGroup !== undefined && redriveGroup !== group) {
          // A dead letter redriven to another group: not this group's to handle.
          state.window.skip(offset + 1);
          resolveOffset(message.offset);
          continue;
        }
        while (unacked >= readAhead && isRunning() && !isStale() && !stopped) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, Math.min(1_000, settings.heartbeatIntervalMs)).unref();
          });
          // Long handlers: the member stays in its group while core holds what it read.
          await heartbeat();
        }
        if (!isRunning() || isStale() || stopped || partitions.get(partition) !== state) return;
        if (again) state.released.delete(offset);
        else state.window.add(offset, offset + 1);
        const controller = new AbortController();
        state.held.set(offset, controller);
        unacked++;
        const own = state;
        const settle = (): boolean => {
          if (!own.held.delete(offset)) return false;
          unacked--;
          notify();
          return true;
        };
        const key = message.key?.toString('utf8');
        const delivery: Delivery = {
          id: `${partition}:${message.offset}`,
          body: message.value ? new Uint8Array(message.value) : new Uint8Array(0),
          headers: headersOf(message.headers),
          ...(key === undefined || key === '' ? {} : { senderId: key }),
          redelivered: again,
          revoked: controller.signal,
          ack: async () => {
            if (!settle()) return;
            if (own.window.ack(offset) && partitions.get(partition) === own) await commit(partition);
          },
          release: async () => {
            // A partition is a log: a released message stays unacknowledged in its window (holding the commit) and
            // the consumer seeks back to it, so it is fetched and delivered again; newer held ones are skipped.
            if (!settle() || partitions.get(partition) !== own) return;
            own.released.add(offset);
            if (!stopped) consumer.seek({ topic, partition, offset: message.offset });
          },
        };
        resolveOffset(message.offset);
        // deliver is never synchronous with consume: eachBatch runs on kafkajs's fetch loop.
        sink.deliver(delivery);
      }
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
      if (startOffsets.length > 0) await consumer.commitOffsets(startOffsets).catch(() => {});
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
  };

  /**
   * `from: 'latest'` for a new group means "from when it subscribed", not "from its first fetch" (kafkajs resolves
   * `latest` lazily): the topic's ends, read before joining, are where such a group starts (see consume). A group
   * that has committed offsets keeps them. Undefined: nothing to do (or the broker cannot say).
   */
  const latestStart = async (
    k: Kafka,
    group: string,
    from: 'latest' | 'beginning',
  ): Promise<Map<number, string> | undefined> => {
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
  };

  return {
    name: SCOPE,
    capabilities: capabilitiesOf(settings),
    destination: topic,
    defaultFormat: 'python',
    defaultGroup: settings.group,
    client: holder,
    limits: {
      maxBatchMessages: settings.batchSize,
      // With error_event, an event over the limit is replaced in send() rather than refused by core.
      ...(settings.onMessageTooLarge === 'reject' ? { maxMessageBytes: settings.maxMessageBytes } : {}),
    },

    async connect(session) {
      if (closed) throw new ConnectionError(SCOPE, 'closed', { permanent: true });
      if (settings.sasl?.mechanism === 'oauthbearer' && settings.sasl.source === 'aws-msk-iam')
        await loadMskSigner();
      const previous = producer;
      connected = false;
      await previous?.disconnect().catch(() => {});
      const k = new Kafka(kafkaConfigOf(settings, hooks));
      const p = k.producer({
        idempotent: settings.idempotent,
        // The idempotent producer keeps order with up to 5 requests in flight; without it only 1 does.
        maxInFlightRequests: settings.idempotent ? 5 : 1,
        allowAutoTopicCreation: true,
        retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 2_000 },
      });
      try {
        await p.connect();
      } catch (error) {
        await p.disconnect().catch(() => {});
        const permanent = (error as Error).name === 'KafkaJSSASLAuthenticationError';
        throw new ConnectionError(SCOPE, `cannot connect to Kafka: ${messageOf(error)}`, {
          cause: error,
          permanent,
        });
      }
      if (session.signal.aborted || closed) {
        await p.disconnect().catch(() => {});
        session.signal.throwIfAborted();
      }
      p.on(p.events.DISCONNECT, () => {
        if (producer !== p || closed) return;
        connected = false;
        session.lost(new ConnectionError(SCOPE, 'the producer lost its connection to Kafka'));
      });
      kafka = k;
      producer = p;
      holder.kafka = k;
      holder.producer = p;
      connected = true;
    },

    send,
    consume,

    deadLetters: kafkaDeadLetters({
      topic,
      deadLetterTopic: settings.deadLetterTopic,
      defaultGroup: settings.group,
      partitionBySender: settings.partitionBySender,
      live: () => {
        if (!kafka || !producer || !connected) throw new ConnectionError(SCOPE, 'not connected to Kafka');
        return { kafka, producer };
      },
    }),

    async deadLetter(deadLetter: DeadLetter) {
      const p = producer;
      if (!p || !connected) throw new ConnectionError(SCOPE, 'not connected to Kafka');
      await p.send({
        topic: settings.deadLetterTopic,
        acks: -1,
        messages: [
          {
            key: deadLetter.senderId === undefined ? null : Buffer.from(deadLetter.senderId, 'utf8'),
            value: Buffer.from(deadLetter.body),
            headers: deadLetterHeaders(deadLetter),
          },
        ],
      });
    },

    isReady: () => connected,

    async health() {
      return { topic, deadLetterTopic: settings.deadLetterTopic, consumers: consumers.size };
    },

    async close() {
      closed = true;
      await Promise.allSettled([...consumers].map((c) => c.close()));
      connected = false;
      const p = producer;
      producer = undefined;
      holder.producer = undefined;
      await p?.disconnect().catch(() => {});
    },
  };
}

/** A Kafka broker from endpoints.yml keys given in code: `kafkaBroker({ url: 'localhost:9092', … })`. */
export function kafkaBroker(options: KafkaBrokerOptions = {}): Broker<KafkaClient> {
  const { kafkaConfig, oauthBearerProvider, ...rest } = options;
  const { broker, keys } = splitBrokerOptions(rest);
  return fromConfig({ source: '<inline>', type: 'kafka', options: keys } as BrokerConfig, broker, {
    ...(kafkaConfig ? { kafkaConfig } : {}),
    ...(oauthBearerProvider ? { oauthBearerProvider } : {}),
  });
}

/** What `createBroker` calls for `type: kafka`: Rasa's `from_endpoint_config`. */
export function fromEndpointConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning' | 'logger'> = {},
): Broker<KafkaClient> {
  return fromConfig(config, options, {});
}

function fromConfig(
  config: BrokerConfig,
  options: BrokerOptions,
  hooks: KafkaDriverHooks,
): Broker<KafkaClient> {
  const { warn } = makeLog(options);
  const settings = resolveKafkaSettings(config, { warn, env: process.env });
  checkReadAhead(SCOPE, settings);
  if (
    settings.sasl?.mechanism === 'oauthbearer' &&
    settings.sasl.source === 'code' &&
    !hooks.oauthBearerProvider
  ) {
    throw new BrokerConfigError(
      SCOPE,
      `${config.source}: ${config.section ?? 'event_broker'}.sasl_mechanism OAUTHBEARER needs tokens: pass oauthBearerProvider to kafkaBroker() in code, or, for AWS MSK IAM, set KAFKA_MSK_AWS_IAM_ENABLED=true and AWS_DEFAULT_REGION (as Rasa Pro does)`,
    );
  }
  const concurrency = options.concurrency ?? settings.concurrency;
  return defineBroker(kafkaDriver(settings, hooks, warn), {
    ...options,
    maxBatch: settings.batchSize,
    ...(settings.queueSize === undefined ? {} : { bufferSize: settings.queueSize }),
    ...(concurrency === undefined ? {} : { concurrency }),
    readAhead: options.readAhead ?? settings.readAhead ?? Math.max(DEFAULT_READ_AHEAD, concurrency ?? 1),
  });
}
