/**
 * The endpoints.yml keys of `type: kafka`: Rasa's own (`rasa/core/brokers/kafka.py`, same names and defaults), then
 * Parley's. Errors name the key and the allowed values; credentials never appear in them.
 */
import { readFileSync } from 'node:fs';
import { type BrokerConfig, ConfigError, readOptions } from '@parley/core';

/** How the client authenticates, from `security_protocol` and the `sasl_*` keys. */
export type KafkaSasl =
  | { readonly mechanism: 'plain'; readonly username: string; readonly password: string }
  | { readonly mechanism: 'scram-sha-256'; readonly username: string; readonly password: string }
  | { readonly mechanism: 'scram-sha-512'; readonly username: string; readonly password: string }
  /**
   * OAUTHBEARER: tokens from AWS MSK IAM (Rasa Pro's `KAFKA_MSK_AWS_IAM_ENABLED=true`, signed for `region`), or
   * from the `oauthBearerProvider` given to `kafkaBroker()` in code (`source: 'code'`).
   */
  | { readonly mechanism: 'oauthbearer'; readonly source: 'aws-msk-iam'; readonly region: string }
  | { readonly mechanism: 'oauthbearer'; readonly source: 'code' };

/** TLS material, read from the `ssl_*` files when the settings are resolved (a missing file fails at startup). */
export interface KafkaTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** Whether the broker's certificate must name its host. */
  readonly checkHostname: boolean;
}

/** The settings the driver runs on, resolved from endpoints.yml keys (or the same keys passed in code). */
export interface KafkaSettings {
  /** Bootstrap servers (`url`: `"h1:9092,h2:9092"` or a list). */
  readonly brokers: readonly string[];
  /** The one topic events are produced to and consumed from (`topic`, `rasa_core_events`). */
  readonly topic: string;
  /** `client_id` (Rasa: unset, librdkafka's `rdkafka`; here kafkajs's `kafkajs` when unset). */
  readonly clientId: string | undefined;
  /** Message key = `sender_id` bytes (`partition_by_sender`, false). */
  readonly partitionBySender: boolean;
  readonly securityProtocol: 'PLAINTEXT' | 'SSL' | 'SASL_PLAINTEXT' | 'SASL_SSL';
  readonly sasl: KafkaSasl | undefined;
  readonly tls: KafkaTls | undefined;
  /** Publish buffer, in events (`queue_size`: Rasa's `queue.buffering.max.messages`). */
  readonly queueSize: number | undefined;
  /** The group subscriptions join when they name none (`group`, `parley`). */
  readonly group: string;
  /** Where dead letters go (`dead_letter_topic`, `<topic>.dead-letter`). */
  readonly deadLetterTopic: string;
  /** Messages per produce request (`batch_size`, 500). */
  readonly batchSize: number;
  /** How long a batch waits for more before it is sent, ms (`linger_ms`, 0: concurrent batches still merge). */
  readonly lingerMs: number;
  /** Idempotent producer (`idempotent`, true). Only for brokers that cannot serve InitProducerId. */
  readonly idempotent: boolean;
  /** The largest message the broker takes, bytes (`max_message_bytes`, Kafka's default 1 MiB). */
  readonly maxMessageBytes: number;
  /**
   * An event over `maxMessageBytes` (`on_message_too_large`): `reject` its publish (default), or `error_event`:
   * send Rasa Pro's `error` event in its place, as Rasa Pro's KafkaEventBroker does.
   */
  readonly onMessageTooLarge: 'reject' | 'error_event';
  /** Consumer group session timeout, ms (`session_timeout_ms`, 30 s). */
  readonly sessionTimeoutMs: number;
  /** Consumer heartbeat interval, ms (`heartbeat_interval_ms`, 3 s). */
  readonly heartbeatIntervalMs: number;
  /** Default handler concurrency of subscriptions (`concurrency`, core's 1). */
  readonly concurrency: number | undefined;
  /**
   * Default read-ahead of subscriptions (`read_ahead`; unset: {@link DEFAULT_READ_AHEAD}, or `concurrency` when larger): messages fetched ahead of the handlers. Kafka fetches
   * a partition's messages in batches, one sender's events side by side: a read-ahead of only `concurrency` would
   * fill with one sender's events and leave the other handlers idle.
   */
  readonly readAhead: number | undefined;
}

/** The endpoints.yml keys, as they are written there, for use in code. */
export interface KafkaOptions {
  readonly url?: string | readonly string[];
  readonly topic?: string;
  readonly client_id?: string;
  readonly partition_by_sender?: boolean | string;
  readonly security_protocol?: string;
  readonly sasl_username?: string;
  readonly sasl_password?: string;
  readonly sasl_mechanism?: string;
  readonly ssl_cafile?: string;
  readonly ssl_certfile?: string;
  readonly ssl_keyfile?: string;
  readonly ssl_check_hostname?: boolean | string;
  readonly queue_size?: number | string;
  readonly group?: string;
  readonly dead_letter_topic?: string;
  readonly batch_size?: number | string;
  readonly linger_ms?: number | string;
  readonly idempotent?: boolean | string;
  readonly max_message_bytes?: number | string;
  readonly on_message_too_large?: 'reject' | 'error_event';
  readonly session_timeout_ms?: number | string;
  readonly heartbeat_interval_ms?: number | string;
  readonly concurrency?: number | string;
  readonly read_ahead?: number | string;
}

const PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
/** Messages fetched ahead of the handlers by default: a fetch brings a partition's messages in batches. */
export const DEFAULT_READ_AHEAD = 100;

const MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'OAUTHBEARER', 'GSSAPI'] as const;

/** Rasa Pro keys Parley accepts and ignores, with why. */
const PRO_KEYS: Record<string, string> = {
  stream_pii:
    'a Rasa Pro setting read by its tracker store, not by the broker; Parley publishes what it is given',
  anonymization_topics: 'Rasa Pro anonymisation is not implemented by Parley',
  socket_keepalive_enable: 'a Rasa Pro librdkafka setting; kafkajs keeps its sockets alive itself',
  reconnect_backoff_ms: 'a Rasa Pro librdkafka setting; core owns reconnection',
  reconnect_backoff_max_ms: 'a Rasa Pro librdkafka setting; core owns reconnection',
  topic_metadata_refresh_interval_ms: 'a Rasa Pro librdkafka setting not mapped by Parley',
};

/** endpoints.yml section (or the same keys in code) → driver settings. */
export function resolveKafkaSettings(
  config: BrokerConfig,
  context: {
    readonly warn?: (message: string) => void;
    /** Where Rasa Pro's AWS MSK IAM switches are read (`KAFKA_MSK_AWS_IAM_ENABLED`, `AWS_DEFAULT_REGION`). */
    readonly env?: Readonly<Record<string, string | undefined>>;
  } = {},
): KafkaSettings {
  const section = config.section ?? 'event_broker';
  const warn = context.warn ?? ((m: string) => process.emitWarning(m, 'ParleyConfigWarning'));
  const fail = (key: string, text: string): never => {
    throw new ConfigError(config.source, `${section}.${key}`, text);
  };
  const o = readOptions(config, 'kafka');
  const url = o.stringList('url');
  const topic = o.string('topic', 'rasa_core_events');
  const clientId = o.string('client_id');
  const partitionBySender = o.boolean('partition_by_sender', false);
  const protocolText = o.string('security_protocol', 'SASL_PLAINTEXT');
  let username = o.string('sasl_username');
  let password = o.string('sasl_password');
  // Rasa 1.x names (kafka-python): still found in old endpoints.yml files.
  const oldUsername = o.string('sasl_plain_username');
  const oldPassword = o.string('sasl_plain_password');
  const mechanismText = o.string('sasl_mechanism', 'PLAIN');
  const cafile = o.string('ssl_cafile');
  const certfile = o.string('ssl_certfile');
  const keyfile = o.string('ssl_keyfile');
  const checkHostname = o.boolean('ssl_check_hostname', false);
  const queueSize = o.integer('queue_size', { min: 1 });
  const group = o.string('group', 'parley');
  const deadLetterTopic = o.string('dead_letter_topic', `${topic}.dead-letter`);
  const batchSize = o.integer('batch_size', 500, { min: 1 });
  const lingerMs = o.integer('linger_ms', 0, { min: 0 });
  const idempotent = o.boolean('idempotent', true);
  const maxMessageBytes = o.integer('max_message_bytes', 1_048_576, { min: 1 });
  const onMessageTooLarge = o.oneOf('on_message_too_large', ['reject', 'error_event'] as const, 'reject');
  const sessionTimeoutMs = o.integer('session_timeout_ms', 30_000, { min: 1 });
  const heartbeatIntervalMs = o.integer('heartbeat_interval_ms', 3_000, { min: 1 });
  const concurrency = o.integer('concurrency', { min: 1 });
  const readAhead = o.integer('read_ahead', { min: 1 });
  o.done({
    warnOnly: PRO_KEYS,
    warn: (m: string) => warn(m.replace(/^\[parley\] /, '[parley] [kafka] ')),
  });

  for (const [old, now, value] of [
    ['sasl_plain_username', 'sasl_username', oldUsername],
    ['sasl_plain_password', 'sasl_password', oldPassword],
  ] as const) {
    if (value === undefined) continue;
    const current = now === 'sasl_username' ? username : password;
    if (current !== undefined) fail(old, `is the Rasa 1.x name of ${now}: set only ${now}`);
    warn(`[parley] [kafka] ${config.source}: ${section}.${old} is the Rasa 1.x name: use ${now}`);
    if (now === 'sasl_username') username = value;
    else password = value;
  }

  const brokers = (url ?? []).flatMap((entry) =>
    entry
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
  if (brokers.length === 0) {
    fail('url', 'expected the bootstrap servers: "host:9092", "h1:9092,h2:9092" or a list (required)');
  }
  for (const broker of brokers) {
    if (!/^[^\s:/]+:\d{1,5}$/.test(broker.replace(/^\[.*\]/, 'ipv6'))) {
      fail('url', `expected host:port entries, found ${JSON.stringify(broker)}`);
    }
  }
  if (topic.trim() === '') fail('topic', 'expected a non-empty topic name');
  if (group.trim() === '') fail('group', 'expected a non-empty group name');
  if (deadLetterTopic === topic) fail('dead_letter_topic', 'expected a topic other than `topic`');
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    fail('heartbeat_interval_ms', `expected less than session_timeout_ms (${sessionTimeoutMs})`);
  }

  const protocol = protocolText.toUpperCase();
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) {
    fail(
      'security_protocol',
      `expected one of ${PROTOCOLS.join(', ')}, found ${JSON.stringify(protocolText)}`,
    );
  }
  const mechanism = mechanismText.toUpperCase();
  if (!(MECHANISMS as readonly string[]).includes(mechanism)) {
    fail(
      'sasl_mechanism',
      `expected one of ${MECHANISMS.join(', ')}, found ${JSON.stringify(mechanismText)}`,
    );
  }

  let sasl: KafkaSasl | undefined;
  if (protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL') {
    if (mechanism === 'GSSAPI') {
      fail(
        'sasl_mechanism',
        'GSSAPI (Kerberos) is not supported by Parley: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512',
      );
    }
  }
  if ((protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL') && mechanism === 'OAUTHBEARER') {
    // As Rasa Pro: AWS MSK IAM is switched on by the environment, and then no username or password is used.
    if (/^true$/i.test(context.env?.KAFKA_MSK_AWS_IAM_ENABLED ?? '')) {
      const region = context.env?.AWS_DEFAULT_REGION ?? context.env?.AWS_REGION;
      if (region === undefined || region === '') {
        fail(
          'sasl_mechanism',
          'OAUTHBEARER with KAFKA_MSK_AWS_IAM_ENABLED=true signs tokens for a region: set AWS_DEFAULT_REGION (as Rasa Pro does)',
        );
      }
      sasl = { mechanism: 'oauthbearer', source: 'aws-msk-iam', region: region as string };
    } else {
      sasl = { mechanism: 'oauthbearer', source: 'code' };
    }
  } else if (protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL') {
    if (username === undefined || password === undefined) {
      fail(
        username === undefined ? 'sasl_username' : 'sasl_password',
        `required with security_protocol ${protocol}${protocolText === 'SASL_PLAINTEXT' && !hasKey(config, 'security_protocol') ? " (Rasa's default)" : ''}; for a broker without authentication set security_protocol: PLAINTEXT`,
      );
    }
    sasl = {
      mechanism: mechanism.toLowerCase() as 'plain' | 'scram-sha-256' | 'scram-sha-512',
      username: username as string,
      password: password as string,
    };
  } else if (username !== undefined || password !== undefined) {
    warn(
      `[parley] [kafka] ${config.source}: ${section}.sasl_username/sasl_password: ignored with security_protocol ${protocol} (SASL_PLAINTEXT or SASL_SSL use them)`,
    );
  }

  let tls: KafkaTls | undefined;
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    const read = (key: string, path: string | undefined): string | undefined => {
      if (path === undefined) return undefined;
      try {
        return readFileSync(path, 'utf8');
      } catch (error) {
        return fail(
          key,
          `cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? error}`,
        );
      }
    };
    const ca = read('ssl_cafile', cafile);
    const cert = read('ssl_certfile', certfile);
    const key = read('ssl_keyfile', keyfile);
    // As Rasa: ssl_check_hostname only applies to SASL_SSL; with SSL the hostname is checked (librdkafka's default).
    tls = {
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
      checkHostname: protocol === 'SSL' ? true : checkHostname,
    };
  }

  return {
    brokers,
    topic,
    clientId,
    partitionBySender,
    securityProtocol: protocol as KafkaSettings['securityProtocol'],
    sasl,
    tls,
    queueSize,
    group,
    deadLetterTopic,
    batchSize,
    lingerMs,
    idempotent,
    maxMessageBytes,
    onMessageTooLarge,
    sessionTimeoutMs,
    heartbeatIntervalMs,
    concurrency,
    readAhead,
  };
}

function hasKey(config: BrokerConfig, key: string): boolean {
  return Object.hasOwn(config.options, key) && config.options[key] != null;
}
