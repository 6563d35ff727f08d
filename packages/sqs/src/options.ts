/**
 * The endpoints.yml keys of `type: sqs`, in the style of Rasa's other brokers (snake_case), mapped to what the
 * driver needs. Errors name the key and what was expected; credentials never appear.
 */
import { type BrokerConfig, ConfigError, readOptions, type WireFormat } from '@parley/core';

/** The settings the driver runs on, resolved from endpoints.yml keys (or the same keys passed in code). */
export interface SqsSettings {
  /** The queue's URL (`queue_url`), or undefined: then it is looked up (or created) by `queueName`. */
  readonly queueUrl: string | undefined;
  /** The queue's name: `queue_name`, or the last path segment of `queue_url`. */
  readonly queueName: string;
  /** A FIFO queue: its name ends in `.fifo` (SQS's own rule). */
  readonly fifo: boolean;
  /** Create the queue (and the dead-letter queue) at connect when missing (`create_queue`, default false). */
  readonly createQueue: boolean;
  /** Attributes of a queue Parley creates (`queue_attributes`), as SQS spells them: `{ MessageRetentionPeriod: '86400' }`. */
  readonly queueAttributes: Readonly<Record<string, string>>;
  readonly region: string | undefined;
  /** A custom endpoint (LocalStack, ElasticMQ, fauxqs): `http://127.0.0.1:4566`. */
  readonly endpoint: string | undefined;
  /** Explicit credentials; otherwise the AWS default chain (environment, profile, instance role). */
  readonly credentials:
    | { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string }
    | undefined;
  /**
   * Where dead letters go (`dead_letter_queue`: a name, or a queue URL). Parley moves an event there after
   * `maxAttempts`; with `maxReceiveCount` the queue also gets a native redrive policy for consumers that crash.
   */
  readonly deadLetterQueue: string | undefined;
  /** The native redrive policy's `maxReceiveCount` (`max_receive_count`); also the default `maxAttempts`. */
  readonly maxReceiveCount: number | undefined;
  /** Long polling: seconds one ReceiveMessage waits for messages (`wait_time_seconds`, 0–20, default 20). */
  readonly waitTimeSeconds: number;
  /** Seconds a received message stays invisible to peers (`visibility_timeout`, default 30): the lease. */
  readonly visibilityTimeout: number;
  /** Entries per SendMessageBatch (`batch_size`, 1–10, default 10). */
  readonly batchSize: number;
  /** The group subscriptions report when they name none (`group`, default `parley`): one queue is one group. */
  readonly group: string;
  readonly maxAttempts: number | undefined;
  readonly bufferSize: number | undefined;
  /** Wire format (`format`, default `python`: the bytes Rasa writes). */
  readonly format: WireFormat | undefined;
  readonly concurrency: number | undefined;
  /** Default read-ahead (`read_ahead`): messages held at once, received up to 10 per ReceiveMessage. */
  readonly readAhead: number | undefined;
}

/** The endpoints.yml keys, as they are written there, for use in code. */
export interface SqsOptions {
  readonly queue_url?: string;
  readonly queue_name?: string;
  readonly create_queue?: boolean | string;
  readonly queue_attributes?: Readonly<Record<string, string | number>>;
  readonly region?: string;
  readonly endpoint?: string;
  readonly access_key_id?: string;
  readonly secret_access_key?: string;
  readonly session_token?: string;
  readonly dead_letter_queue?: string;
  readonly max_receive_count?: number | string;
  readonly wait_time_seconds?: number | string;
  readonly visibility_timeout?: number | string;
  readonly batch_size?: number | string;
  readonly group?: string;
  readonly max_attempts?: number | string;
  readonly buffer_size?: number | string;
  readonly format?: WireFormat;
  readonly concurrency?: number | string;
  readonly read_ahead?: number | string;
}

/** SQS queue names: 1–80 characters of letters, digits, `-` and `_`, `.fifo` at the end for FIFO queues. */
const QUEUE_NAME = /^[A-Za-z0-9_-]{1,75}(\.fifo)?$|^[A-Za-z0-9_-]{1,80}$/;

/** endpoints.yml section (or the same keys in code) → driver settings. */
export function resolveSqsSettings(
  config: BrokerConfig,
  context: { readonly warn?: (message: string) => void } = {},
): SqsSettings {
  const section = config.section ?? 'event_broker';
  const fail = (key: string, text: string): never => {
    throw new ConfigError(config.source, `${section}.${key}`, text);
  };
  // A mapping, which core's reader does not read: taken out here and checked below.
  const { queue_attributes: rawAttributes, ...rest } = config.options;
  const o = readOptions({ ...config, options: rest }, 'sqs');
  const queueUrl = o.string('queue_url');
  const queueNameKey = o.string('queue_name');
  const createQueue = o.boolean('create_queue', false);
  const region = o.string('region');
  const endpoint = o.string('endpoint');
  const accessKeyId = o.string('access_key_id');
  const secretAccessKey = o.string('secret_access_key');
  const sessionToken = o.string('session_token');
  const deadLetterQueue = o.string('dead_letter_queue');
  const maxReceiveCount = o.integer('max_receive_count', { min: 1, max: 1000 });
  const waitTimeSeconds = o.integer('wait_time_seconds', 20, { min: 0, max: 20 });
  const visibilityTimeout = o.integer('visibility_timeout', 30, { min: 1, max: 43_200 });
  const batchSize = o.integer('batch_size', 10, { min: 1, max: 10 });
  const group = o.string('group', 'parley');
  const maxAttempts = o.integer('max_attempts', { min: 1 });
  const bufferSize = o.integer('buffer_size', { min: 1 });
  const format = o.oneOf('format', ['python', 'compact'] as const);
  const concurrency = o.integer('concurrency', { min: 1 });
  const readAhead = o.integer('read_ahead', { min: 1 });
  o.done({
    ...(context.warn
      ? { warn: (m: string) => context.warn!(m.replace(/^\[parley\] /, '[parley] [sqs] ')) }
      : {}),
  });

  if (queueUrl !== undefined && queueNameKey !== undefined) {
    fail('queue_name', 'expected either queue_url or queue_name, found both');
  }
  let queueName: string;
  if (queueUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(queueUrl);
    } catch {
      // reported below
    }
    const last = url?.pathname.split('/').filter(Boolean).pop();
    if (!url || !/^https?:$/.test(url.protocol) || last === undefined) {
      return fail(
        'queue_url',
        'expected a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/events',
      );
    }
    queueName = decodeURIComponent(last);
  } else if (queueNameKey !== undefined) {
    queueName = queueNameKey;
  } else {
    return fail('queue_url', 'expected queue_url or queue_name: the queue events go to');
  }
  if (!QUEUE_NAME.test(queueName)) {
    fail(
      queueUrl === undefined ? 'queue_name' : 'queue_url',
      `expected a queue name of 1–80 letters, digits, "-" or "_" (".fifo" at the end for a FIFO queue), found ${JSON.stringify(queueName)}`,
    );
  }
  if (createQueue && queueUrl !== undefined) {
    fail('create_queue', 'creates a queue by queue_name: set queue_name instead of queue_url');
  }
  const fifo = queueName.endsWith('.fifo');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    fail(
      accessKeyId === undefined ? 'access_key_id' : 'secret_access_key',
      'expected access_key_id and secret_access_key together (or neither, for the AWS default credential chain)',
    );
  }
  if (sessionToken !== undefined && accessKeyId === undefined) {
    fail('session_token', 'needs access_key_id and secret_access_key');
  }
  if (maxReceiveCount !== undefined && deadLetterQueue === undefined) {
    fail('max_receive_count', 'is the redrive policy of dead_letter_queue: set dead_letter_queue too');
  }
  if (deadLetterQueue !== undefined && !/^https?:\/\//.test(deadLetterQueue)) {
    if (!QUEUE_NAME.test(deadLetterQueue)) {
      fail('dead_letter_queue', 'expected a queue name or a queue URL');
    }
    // SQS refuses a redrive policy whose dead-letter queue is of the other kind.
    if (deadLetterQueue.endsWith('.fifo') !== fifo) {
      fail(
        'dead_letter_queue',
        `expected a ${fifo ? 'FIFO queue (a name ending in .fifo)' : 'standard queue (no .fifo)'}, as the queue is`,
      );
    }
  }
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) {
    fail('endpoint', 'expected an http:// or https:// URL');
  }
  if (group.trim() === '') fail('group', 'expected a non-empty group name');

  const queueAttributes: Record<string, string> = {};
  if (rawAttributes !== undefined && rawAttributes !== null) {
    if (typeof rawAttributes !== 'object' || Array.isArray(rawAttributes)) {
      fail(
        'queue_attributes',
        'expected a mapping of SQS queue attributes, e.g. { MessageRetentionPeriod: 86400 }',
      );
    }
    if (!createQueue) fail('queue_attributes', 'applies to a queue Parley creates: set create_queue: true');
    for (const [name, value] of Object.entries(rawAttributes as Record<string, unknown>)) {
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
        fail(`queue_attributes.${name}`, 'expected a string, number or boolean');
      }
      if (name === 'RedrivePolicy' && deadLetterQueue !== undefined) {
        fail(
          'queue_attributes.RedrivePolicy',
          'is set from dead_letter_queue and max_receive_count: set those instead',
        );
      }
      queueAttributes[name] = String(value);
    }
  }

  return {
    queueUrl,
    queueName,
    fifo,
    createQueue,
    queueAttributes,
    region,
    endpoint,
    credentials:
      accessKeyId === undefined
        ? undefined
        : {
            accessKeyId,
            secretAccessKey: secretAccessKey as string,
            ...(sessionToken === undefined ? {} : { sessionToken }),
          },
    deadLetterQueue,
    maxReceiveCount,
    waitTimeSeconds,
    visibilityTimeout,
    batchSize,
    group,
    maxAttempts: maxAttempts ?? maxReceiveCount,
    bufferSize,
    format,
    concurrency,
    readAhead,
  };
}
