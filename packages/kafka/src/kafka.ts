/**
 * The Kafka driver: a translation of the contract to one topic and consumer groups, on kafkajs. Core owns the rest
 * (reconnecting, resuming consumers, retries, ordering among one consumer's deliveries, draining).
 *
 * - publish (here): one `producer.send` per batch, in batch order (acks all, idempotent by default); value = the
 *   Rasa JSON byte for byte, key = `sender_id` with `partition_by_sender`, header `RASA_ENVIRONMENT` always.
 * - consume: a group member per subscription (./consumer.ts), joined again when a join loses a rebalance race.
 * - dead letters: produced to the dead-letter topic with core's dead-letter headers; listed and redriven by
 *   ./dead-letters.ts.
 * - the kafkajs client itself (SASL, TLS, the assigner, which errors are retryable): ./client.ts.
 *
 * kafkajs stays behind these four files (see the README on replacing it).
 */
import {
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
  type DriverConsumeOptions,
  type DriverConsumer,
  deadLetterHeaders,
  defineBroker,
  dumpsPython,
  hasHeaders,
  makeLog,
  type OutgoingMessage,
  PublishError,
  SENT,
  type SendOutcome,
  splitBrokerOptions,
} from '@parley/core';
import { Kafka, type Producer } from 'kafkajs';
import {
  isRefusal,
  isRetryable,
  type KafkaDriverHooks,
  kafkaConfigOf,
  loadMskSigner,
  messageOf,
  SCOPE,
} from './client.js';
import { joinGroup } from './consumer.js';
import { kafkaDeadLetters } from './dead-letters.js';
import {
  DEFAULT_READ_AHEAD,
  type KafkaOptions,
  type KafkaSettings,
  resolveKafkaSettings,
} from './options.js';

/** Joins tried before a subscription fails (see consume), and the backoff between them (times the attempt). */
const JOIN_ATTEMPTS = 5;
const JOIN_BACKOFF_MS = 500;

/** What the adapter's `client` is: the kafkajs client and producer of the current connection. */
export interface KafkaClient {
  readonly kafka: Kafka | undefined;
  readonly producer: Producer | undefined;
  readonly settings: KafkaSettings;
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

/** The Kafka driver, from resolved settings. */
export function kafkaDriver(
  settings: KafkaSettings,
  hooks: KafkaDriverHooks = {},
  warn: (message: string) => void = (m) => process.emitWarning(m, 'ParleyWarning'),
): BrokerDriver<KafkaClient> {
  const { topic } = settings;
  /** Requests kafkajs keeps in flight per broker: the idempotent producer keeps order with up to 5, without it 1. */
  const inFlightRequests = settings.idempotent ? 5 : 1;
  /**
   * The `RASA_ENVIRONMENT` header's value as bytes, made once: kafkajs copies a Buffer, where it would measure and
   * write a string through `Buffer#write` for every message (~1.5% less main-thread CPU publishing on the mock,
   * 60 in-process runs each). The bytes on the wire are the same.
   */
  const rasaEnvironment = Buffer.from(process.env.RASA_ENVIRONMENT ?? 'RASA_ENVIRONMENT_NOT_SET', 'utf8');
  /** The headers of a message published without any of its own (most): one object for all (kafkajs only reads it). */
  const environmentOnly = Object.freeze({ RASA_ENVIRONMENT: rasaEnvironment });
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
      // Core's encoder hands over Buffers already: a view is made only of another Uint8Array.
      value: Buffer.isBuffer(m.body)
        ? m.body
        : Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength),
      // Rasa sends exactly this header; Parley's own (publish options) travel beside it.
      headers: hasHeaders(m.headers) ? { ...m.headers, RASA_ENVIRONMENT: rasaEnvironment } : environmentOnly,
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
      return batch.map(() => SENT);
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
        const k = kafka;
        if (!k || !connected) throw new ConnectionError(SCOPE, 'not connected to Kafka');
        return await joinGroup(k, { topic, settings, closed: () => closed, consumers }, options, sink);
      } catch (error) {
        const cause = (error as Error).cause;
        if (closed || !connected || attempt >= JOIN_ATTEMPTS || cause === undefined || isRefusal(cause))
          throw error;
        await new Promise((resolve) => setTimeout(resolve, JOIN_BACKOFF_MS * attempt));
      }
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
      // A Kafka record has no id (its offset is the broker's): core need not make one per publish.
      messageIds: false,
      // No more batches than kafkajs sends at once to a broker (`inFlightRequests`), but at least 2, so that the next
      // one is encoded and queued when a response comes. More only wait in kafkajs's queue, encoded all together
      // before the first is written, holding their memory through young-generation collections: on the mock (1
      // request at a time), 10,000 events published at once, 2 in flight used ~5% less CPU than 8 and published
      // 5 – 9% faster in three of four in-process comparisons (50 – 60 runs each; 2% slower in the fourth).
      maxInFlightBatches: Math.max(2, inFlightRequests),
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
        maxInFlightRequests: inFlightRequests,
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
