/**
 * The Amazon SQS driver: a translation of the contract to one queue. Core owns the rest (batching, retries and
 * their backoff, lease renewal, ordering, concurrency, draining).
 *
 * - publish: SendMessageBatch (up to `batch_size` entries and 256 KiB a call); message attributes `event`,
 *   `sender_id`, `RASA_ENVIRONMENT` and one per header, so SNS/SQS filters need not parse bodies. FIFO queues:
 *   MessageGroupId = sender_id, MessageDeduplicationId = the message id core keeps across resends.
 * - consume: long-polling ReceiveMessage, up to 10 at a time while fewer than read-ahead are held; deletes go out
 *   as DeleteMessageBatch, one per tick; the lease is the visibility timeout, renewed with ChangeMessageVisibility.
 * - retry through the broker: a failed event is released with its backoff as its visibility, and its next try is
 *   counted by ApproximateReceiveCount, so attempts survive a consumer crash.
 * - dead letters (with `dead_letter_queue`): Parley moves an event there after `maxAttempts`; a native redrive
 *   policy (`max_receive_count`) catches what consumers that crashed left behind. Either moves it, once. Both kinds
 *   are listed and redriven through the contract (`dead-letters.ts`).
 *
 * SQS is HTTP: there is no connection to lose. A failed request fails (retryably) and the next one tries again.
 */
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import {
  type Broker,
  type BrokerConfig,
  type BrokerDriver,
  type BrokerOptions,
  backoffDelay,
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
  hasHeaders,
  makeLog,
  type OutgoingMessage,
  PublishError,
  SENT,
  type SendOutcome,
  sleep,
  splitBrokerOptions,
} from '@parley/core';
import { DEAD_LETTER_ATTRIBUTE, sqsDeadLetters } from './dead-letters.js';
import { resolveSqsSettings, type SqsOptions, type SqsSettings } from './options.js';

const SCOPE = 'sqs';
/** SQS's largest message and largest batch: body and attributes together. */
export const MAX_MESSAGE_BYTES = 256 * 1024;
/** SQS's limit of message attributes per message. */
export const MAX_ATTRIBUTES = 10;
const RESERVED = ['event', 'sender_id', 'RASA_ENVIRONMENT'] as const;
const ATTRIBUTE_NAME = /^(?!\.)(?!.*\.\.)(?!(aws|amazon)\.)[A-Za-z0-9_.-]{1,256}(?<!\.)$/i;

/** What the adapter's `client` is: the SQS client and the queue it resolved. */
export interface SqsClient {
  readonly sqs: SQSClient;
  /** The queue's URL, once connected. */
  readonly queueUrl: string | undefined;
  /** The dead-letter queue's URL, once connected (with `dead_letter_queue`). */
  readonly deadLetterQueueUrl: string | undefined;
  readonly settings: SqsSettings;
}

/** Options of {@link sqsBroker}: the endpoints.yml keys, plus `defineBroker`'s options. */
export interface SqsBrokerOptions
  extends SqsOptions,
    Omit<BrokerOptions, 'format' | 'bufferSize' | 'concurrency' | 'readAhead' | 'maxAttempts'> {}

const errorName = (error: unknown): string =>
  String((error as { name?: string; Code?: string } | null)?.Code ?? (error as Error | null)?.name ?? '');
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** Throttling and server-side failures pass with time; refusals of the request itself do not. */
function retryable(error: unknown): boolean {
  const name = errorName(error);
  if (/Throttl|RequestThrottled|ServiceUnavailable|InternalError|InternalFailure|KmsThrottled/i.test(name)) {
    return true;
  }
  const status = (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || status === 429;
  return true; // no HTTP answer at all: a network failure
}

/** A receipt handle that no longer counts: the message went back to the queue (or to a peer) meanwhile. */
const gone = (error: unknown) =>
  /ReceiptHandleIsInvalid|MessageNotInflight|InvalidParameterValue/i.test(errorName(error));

const utf8 = new TextEncoder();
const text = new TextDecoder();
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

function rasaEnvironment(): string {
  return process.env.RASA_ENVIRONMENT ?? 'RASA_ENVIRONMENT_NOT_SET';
}

/** Most ReceiveMessage calls one consumer has under way at once. */
const RECEIVE_LOOPS = 4;

const attribute = (value: string): MessageAttributeValue => ({ DataType: 'String', StringValue: value });

/** A message's attributes: the three SQS filters use, then its headers (reserved names win). */
function attributesOf(
  message: OutgoingMessage,
  environment: string,
): Record<string, MessageAttributeValue> | Error {
  if (!hasHeaders(message.headers)) {
    // Most messages: the three, without the copies a merge with headers takes.
    return {
      event: attribute(message.eventName),
      sender_id: attribute(message.senderId),
      RASA_ENVIRONMENT: attribute(environment),
    };
  }
  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) {
    if (!ATTRIBUTE_NAME.test(name)) {
      return new PublishError(
        SCOPE,
        `header ${JSON.stringify(name)} is not a valid SQS message attribute name (letters, digits, "_", "-", "."; not starting with "AWS." or "Amazon.")`,
      );
    }
    if (value === '')
      return new PublishError(SCOPE, `header ${JSON.stringify(name)} is empty: SQS attributes cannot be`);
    values[name] = value;
  }
  values.event = message.eventName;
  values.sender_id = message.senderId;
  values.RASA_ENVIRONMENT = environment;
  const names = Object.keys(values);
  if (names.length > MAX_ATTRIBUTES) {
    return new PublishError(
      SCOPE,
      `an SQS message carries at most ${MAX_ATTRIBUTES} attributes: ${RESERVED.join(', ')} and ${MAX_ATTRIBUTES - RESERVED.length} headers, found ${names.length - RESERVED.length} headers`,
    );
  }
  return Object.fromEntries(names.map((n) => [n, attribute(values[n]!)]));
}

function attributeBytes(attributes: Record<string, MessageAttributeValue>): number {
  let sum = 0;
  for (const name in attributes) {
    const value = attributes[name]!;
    sum += bytes(name) + bytes(value.DataType ?? '') + bytes(value.StringValue ?? '');
  }
  return sum;
}

/** The Amazon SQS driver, from resolved settings. */
export function sqsDriver(
  settings: SqsSettings,
  warn: (message: string) => void = () => {},
): BrokerDriver<SqsClient> {
  const { fifo, visibilityTimeout, waitTimeSeconds } = settings;
  const sqs = new SQSClient({
    ...(settings.region !== undefined
      ? { region: settings.region }
      : settings.endpoint !== undefined
        ? { region: 'us-east-1' } // emulators accept any region; the SDK insists on one
        : {}),
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    ...(settings.credentials === undefined ? {} : { credentials: settings.credentials }),
    // A stalled network must fail a request rather than hang it: a long poll's wait, plus time to answer.
    requestHandler: { requestTimeout: (waitTimeSeconds + 10) * 1000, connectionTimeout: 5_000 },
  });
  const holder: {
    sqs: SQSClient;
    queueUrl: string | undefined;
    deadLetterQueueUrl: string | undefined;
    settings: SqsSettings;
  } = { sqs, queueUrl: undefined, deadLetterQueueUrl: undefined, settings };
  let queueUrl: string | undefined;
  let deadLetterUrl: string | undefined;
  let closed = false;
  const consumers = new Set<DriverConsumer>();

  const capabilities: Capabilities = {
    // One queue is one group: consumers of a queue share its messages, a second group would share them too.
    consumerGroups: false,
    competingConsumers: true,
    // FIFO queues hand out one message group (sender) at a time across every consumer; standard queues no order.
    ordering: fifo ? 'group' : 'none',
    replay: false,
    deadLetter: settings.deadLetterQueue === undefined ? 'none' : 'native',
    batchPublish: true,
    persistent: true,
    headers: true,
    deliveryCount: true,
    retry: 'broker',
    leases: true,
    // `deadLetters(group)` and `redrive()` read the dead-letter queue.
    redrive: settings.deadLetterQueue !== undefined,
  };

  const lookUp = async (name: string, attributes: Record<string, string> | undefined): Promise<string> => {
    if (attributes !== undefined) {
      const created = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
      return created.QueueUrl!;
    }
    return (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
  };

  const resolveQueues = async (): Promise<void> => {
    const fifoAttributes: Record<string, string> = fifo ? { FifoQueue: 'true' } : {};
    let redrivePolicy: string | undefined;
    const dlq = settings.deadLetterQueue;
    if (dlq !== undefined) {
      deadLetterUrl = /^https?:\/\//.test(dlq)
        ? dlq
        : await lookUp(dlq, settings.createQueue ? fifoAttributes : undefined);
      if (settings.maxReceiveCount !== undefined) {
        const arn = await sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: deadLetterUrl, AttributeNames: ['QueueArn'] }),
        );
        redrivePolicy = JSON.stringify({
          deadLetterTargetArn: arn.Attributes?.QueueArn,
          maxReceiveCount: settings.maxReceiveCount,
        });
      }
    }
    queueUrl =
      settings.queueUrl ??
      (await lookUp(
        settings.queueName,
        settings.createQueue
          ? {
              ...fifoAttributes,
              VisibilityTimeout: String(visibilityTimeout),
              ...settings.queueAttributes,
              ...(redrivePolicy === undefined ? {} : { RedrivePolicy: redrivePolicy }),
            }
          : undefined,
      ));
    if (redrivePolicy !== undefined && !settings.createQueue) {
      // Parley does not change a queue it did not create (no sqs:SetQueueAttributes needed): it says so.
      const current = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }),
      );
      const policy = current.Attributes?.RedrivePolicy;
      const parsed = policy === undefined ? undefined : (JSON.parse(policy) as { maxReceiveCount?: unknown });
      if (Number(parsed?.maxReceiveCount) !== settings.maxReceiveCount) {
        warn(
          `[parley] [sqs] max_receive_count is ${settings.maxReceiveCount} but the queue's redrive policy is ${policy ?? 'not set'}: set it on the queue (or use create_queue)`,
        );
      }
    }
    holder.queueUrl = queueUrl;
    holder.deadLetterQueueUrl = deadLetterUrl;
  };

  const setVisibility = (receipt: string, seconds: number) =>
    sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: queueUrl,
        ReceiptHandle: receipt,
        VisibilityTimeout: Math.min(43_200, Math.max(0, seconds)),
      }),
    );

  /** Deletes of one tick, sent as DeleteMessageBatch calls of 10: core acknowledges each delivery on its own. */
  type PendingDelete = { receipt: string; resolve(): void; reject(e: unknown): void };
  let pending: PendingDelete[] | undefined;
  const remove = (receipt: string): Promise<void> =>
    new Promise((resolve, reject) => {
      if (!pending) {
        const batch: PendingDelete[] = [];
        pending = batch;
        setImmediate(() => {
          pending = undefined;
          for (let i = 0; i < batch.length; i += 10) void deleteBatch(batch.slice(i, i + 10));
        });
      }
      pending.push({ receipt, resolve, reject });
    });
  const deleteBatch = async (entries: PendingDelete[]): Promise<void> => {
    try {
      const result = await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: entries.map((e, i) => ({ Id: String(i), ReceiptHandle: e.receipt })),
        }),
      );
      const failed = new Map((result.Failed ?? []).map((f) => [f.Id, f]));
      entries.forEach((entry, i) => {
        const failure = failed.get(String(i));
        if (failure === undefined) entry.resolve();
        else
          entry.reject(
            new ConnectionError(
              SCOPE,
              `DeleteMessage failed (${failure.Code}: ${failure.Message}); the message is delivered again`,
            ),
          );
      });
    } catch (error) {
      const failure = new ConnectionError(
        SCOPE,
        `DeleteMessageBatch failed (the messages are delivered again): ${messageOf(error)}`,
        { cause: error },
      );
      for (const entry of entries) entry.reject(failure);
    }
  };

  /** Parley's dead letter: a copy in the dead-letter queue (its reasons in one attribute), then the original deleted. */
  const moveToDeadLetters = async (message: Message, letter: DeadLetter): Promise<void> => {
    const attributes: Record<string, MessageAttributeValue> = {
      [DEAD_LETTER_ATTRIBUTE]: { DataType: 'String', StringValue: JSON.stringify(deadLetterHeaders(letter)) },
    };
    for (const name of RESERVED) {
      const value = message.MessageAttributes?.[name];
      if (value?.StringValue) attributes[name] = { DataType: 'String', StringValue: value.StringValue };
    }
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: deadLetterUrl,
        MessageBody: message.Body ?? '',
        MessageAttributes: attributes,
        ...(fifo
          ? {
              MessageGroupId: message.Attributes?.MessageGroupId ?? letter.senderId ?? 'parley',
              // The same dead letter sent twice (a delete that failed, then a retry) is stored once.
              MessageDeduplicationId: `${message.MessageId}-dead-letter`,
            }
          : {}),
      }),
    );
    await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }));
  };

  const consume = async (options: DriverConsumeOptions, sink: ConsumerSink): Promise<DriverConsumer> => {
    if (queueUrl === undefined) throw new ConnectionError(SCOPE, 'not connected');
    const controller = new AbortController();
    let stopped = false;
    /** Deliveries not yet acknowledged, released or dead-lettered, by receipt handle. */
    const held = new Map<string, () => Promise<void>>();
    /** Loops waiting for room: woken (all) when a delivery is settled. */
    let freed: (() => void)[] = [];
    const wakeAll = () => {
      const waiting = freed;
      freed = [];
      for (const wake of waiting) wake();
    };
    const free = (receipt: string) => {
      if (held.delete(receipt)) wakeAll();
    };
    /** Messages asked for by receives under way: with held ones, never more than read-ahead. */
    let asked = 0;

    const delivery = (message: Message): Delivery => {
      const receipt = message.ReceiptHandle!;
      const count = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
      const revoked = new AbortController();
      let extendedAt = Date.now();
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
        if (value.StringValue !== undefined) headers[name] = value.StringValue;
      }
      const settle = async (work: () => Promise<unknown>) => {
        try {
          await work();
        } finally {
          free(receipt);
        }
      };
      const release = () => settle(() => setVisibility(receipt, 0));
      held.set(receipt, release);
      return {
        id: message.MessageId!,
        body: utf8.encode(message.Body ?? ''),
        headers,
        ...(headers.sender_id === undefined ? {} : { senderId: headers.sender_id }),
        redelivered: count > 1,
        deliveryCount: count,
        revoked: revoked.signal,
        lease: {
          durationMs: visibilityTimeout * 1000,
          async renew() {
            try {
              await setVisibility(receipt, visibilityTimeout);
              extendedAt = Date.now();
            } catch (error) {
              // The message is back in the queue (or with a peer): core must stop counting on it.
              if (gone(error) || Date.now() - extendedAt >= visibilityTimeout * 1000) {
                revoked.abort();
                free(receipt);
              }
              throw new ConnectionError(SCOPE, `ChangeMessageVisibility failed: ${messageOf(error)}`, {
                cause: error,
              });
            }
          },
        },
        ack: () => settle(() => remove(receipt)),
        // SQS has no "undo a receive": a release of an untried delivery still counts in ApproximateReceiveCount.
        release: (opts) => settle(() => setVisibility(receipt, Math.ceil((opts?.delayMs ?? 0) / 1000))),
        ...(deadLetterUrl === undefined
          ? {}
          : { reject: (letter: DeadLetter) => settle(() => moveToDeadLetters(message, letter)) }),
      };
    };

    const loop = async () => {
      let failures = 0;
      while (!stopped) {
        const room = Math.min(10, options.readAhead - held.size - asked);
        // A call costs as much for 2 messages as for 10: fewer than half a batch is asked for only when nothing is
        // held or asked for (read-ahead 32 holds 30 most of the time: measured, a receive of the last 2 made a fifth
        // more calls than messages needed, and consuming that much slower).
        if (room <= 0 || (room < Math.min(5, Math.ceil(options.readAhead / 2)) && held.size + asked > 0)) {
          // stop() aborts the signal and wakes them too: no listener per wait on the long-lived signal.
          await new Promise<void>((resolve) => freed.push(resolve));
          continue;
        }
        let messages: Message[];
        asked += room;
        try {
          const result = await sqs.send(
            new ReceiveMessageCommand({
              QueueUrl: queueUrl,
              MaxNumberOfMessages: room,
              WaitTimeSeconds: waitTimeSeconds,
              // Explicit, whatever the queue's default: the lease core renews is this long.
              VisibilityTimeout: visibilityTimeout,
              MessageAttributeNames: ['All'],
              MessageSystemAttributeNames: ['ApproximateReceiveCount', 'MessageGroupId'],
            }),
            { abortSignal: controller.signal },
          );
          messages = result.Messages ?? [];
          failures = 0;
        } catch (error) {
          asked -= room;
          wakeAll();
          if (stopped) break;
          if (!retryable(error)) {
            // The queue is gone or access was withdrawn: core resumes the consumer after a backoff, or gives up.
            stopped = true;
            sink.lost(
              new ConnectionError(SCOPE, `ReceiveMessage failed: ${messageOf(error)}`, { cause: error }),
            );
            break;
          }
          await sleep(backoffDelay(++failures, { initialMs: 200, maxMs: 5_000 }), controller.signal);
          continue;
        }
        asked -= room;
        wakeAll(); // a loop waiting to ask for a few may ask now
        for (const message of messages) {
          // Received as the consumer stopped: straight back to the queue, never delivered after stop().
          if (stopped) void setVisibility(message.ReceiptHandle!, 0).catch(() => {});
          else sink.deliver(delivery(message));
        }
      }
    };
    // As many receives under way as read-ahead holds tens of messages (up to 4): one at a time left the queue's
    // round trips idle.
    const running = Promise.all(
      Array.from({ length: Math.min(RECEIVE_LOOPS, Math.ceil(options.readAhead / 10)) }, loop),
    );
    const stop = async () => {
      stopped = true;
      controller.abort();
      wakeAll();
      await running;
    };
    const consumer: DriverConsumer = {
      stop,
      async close() {
        await stop();
        consumers.delete(consumer);
        await Promise.allSettled([...held.values()].map((release) => release()));
      },
    };
    consumers.add(consumer);
    return consumer;
  };

  const send = async (batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]> => {
    const outcomes: SendOutcome[] = new Array(batch.length);
    if (queueUrl === undefined) {
      const error = new ConnectionError(SCOPE, 'not connected');
      return batch.map(() => ({ ok: false, error, retryable: true }));
    }
    // Calls of at most batch_size entries and 256 KiB, in batch order.
    const calls: { index: number; entry: SendMessageBatchRequestEntry }[][] = [];
    let call: (typeof calls)[number] = [];
    let callBytes = 0;
    const environment = rasaEnvironment();
    batch.forEach((message, index) => {
      const attributes = attributesOf(message, environment);
      if (attributes instanceof Error) {
        outcomes[index] = { ok: false, error: attributes, retryable: false };
        return;
      }
      const body = text.decode(message.body);
      const size = bytes(body) + attributeBytes(attributes);
      if (size > MAX_MESSAGE_BYTES) {
        outcomes[index] = {
          ok: false,
          error: new PublishError(
            SCOPE,
            `the event is ${size} bytes with its attributes: SQS takes at most ${MAX_MESSAGE_BYTES} bytes (256 KiB) per message`,
            { code: 'MESSAGE_TOO_LARGE' },
          ),
          retryable: false,
        };
        return;
      }
      if (call.length >= settings.batchSize || callBytes + size > MAX_MESSAGE_BYTES) {
        calls.push(call);
        call = [];
        callBytes = 0;
      }
      call.push({
        index,
        entry: {
          Id: String(call.length),
          MessageBody: body,
          MessageAttributes: attributes,
          ...(fifo ? { MessageGroupId: message.senderId, MessageDeduplicationId: message.id } : {}),
        },
      });
      callBytes += size;
    });
    if (call.length > 0) calls.push(call);

    /** Senders with an entry that failed retryably: nothing later of theirs goes out in this send. */
    const held = new Set<string>();
    const holdBack = (index: number) => {
      outcomes[index] = {
        ok: false,
        error: new PublishError(SCOPE, 'an earlier event of its sender failed: sent again after it'),
        retryable: true,
      };
    };
    for (const all of calls) {
      // A FIFO queue would store a later event of a sender before the earlier one that is resent: keep it back.
      const entries = all.filter(({ index }) => {
        if (!held.has(batch[index]!.senderId)) return true;
        holdBack(index);
        return false;
      });
      if (entries.length === 0) continue;
      try {
        const result = await sqs.send(
          new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries.map((e) => e.entry) }),
        );
        const failed = new Map((result.Failed ?? []).map((f) => [f.Id, f]));
        for (const { index, entry } of entries) {
          const failure = failed.get(entry.Id);
          outcomes[index] =
            failure === undefined
              ? SENT
              : {
                  ok: false,
                  error: new PublishError(
                    SCOPE,
                    `SendMessageBatch refused the event: ${failure.Code}: ${failure.Message}`,
                    {
                      ...(failure.Code === undefined ? {} : { code: failure.Code }),
                    },
                  ),
                  retryable: !failure.SenderFault || /Throttl/i.test(failure.Code ?? ''),
                };
        }
      } catch (error) {
        const failure = new PublishError(SCOPE, `SendMessageBatch failed: ${messageOf(error)}`, {
          cause: error,
        });
        const again = retryable(error);
        for (const { index } of entries) outcomes[index] = { ok: false, error: failure, retryable: again };
      }
      for (const { index } of entries) {
        const outcome = outcomes[index]!;
        if (!outcome.ok && outcome.retryable) held.add(batch[index]!.senderId);
      }
    }
    // The contract's order rule within one call too: after a retryable failure, nothing later of that sender counts
    // as sent. It did reach the queue; on a FIFO queue its resend is deduplicated by its id (so SQS keeps it ahead
    // of the earlier one: a rare reorder no client can undo), on a standard queue it is a duplicate (no order there).
    const failedSenders = new Set<string>();
    batch.forEach((message, index) => {
      const outcome = outcomes[index]!;
      if (!outcome.ok && outcome.retryable) failedSenders.add(message.senderId);
      else if (outcome.ok && failedSenders.has(message.senderId)) holdBack(index);
    });
    return outcomes;
  };

  return {
    name: SCOPE,
    capabilities,
    destination: settings.queueName,
    defaultFormat: 'python',
    defaultGroup: settings.group,
    client: holder,
    limits: {
      maxBatchMessages: settings.batchSize,
      maxBatchBytes: MAX_MESSAGE_BYTES,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      // An HTTP call per batch of 10: more of them at once than core's default, as a hand-written sender would.
      maxInFlightBatches: 16,
    },
    async connect(session) {
      if (closed) throw new ConnectionError(SCOPE, 'closed', { permanent: true });
      try {
        await resolveQueues();
      } catch (error) {
        session.signal.throwIfAborted();
        throw new ConnectionError(
          SCOPE,
          `cannot reach the queue ${settings.queueName}: ${messageOf(error)}`,
          {
            cause: error,
            permanent: !retryable(error),
          },
        );
      }
    },
    send,
    consume,
    ...(settings.deadLetterQueue === undefined
      ? {}
      : {
          deadLetters: sqsDeadLetters({
            sqs,
            settings,
            queueUrl: () => queueUrl,
            deadLetterUrl: () => deadLetterUrl,
          }),
        }),
    isReady: () => queueUrl !== undefined && !closed,
    async health() {
      if (queueUrl === undefined) return { queue: settings.queueName, fifo, connected: false };
      const result = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: queueUrl,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      return {
        queue: settings.queueName,
        fifo,
        visible: Number(result.Attributes?.ApproximateNumberOfMessages ?? 0),
        inFlight: Number(result.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
        consumers: consumers.size,
      };
    },
    async close() {
      closed = true;
      await Promise.allSettled([...consumers].map((consumer) => consumer.close()));
      sqs.destroy();
    },
  };
}

/** An SQS broker from endpoints.yml keys given in code: `sqsBroker({ queue_name: 'rasa-events' })`. */
export function sqsBroker(options: SqsBrokerOptions): Broker<SqsClient> {
  const { broker, keys } = splitBrokerOptions(options);
  return fromConfig({ source: '<inline>', type: 'sqs', options: keys } as BrokerConfig, broker);
}

/** What `createBroker` calls for `type: sqs`: Rasa's `from_endpoint_config`. */
export function fromEndpointConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning' | 'logger'> = {},
): Broker<SqsClient> {
  return fromConfig(config, options);
}

function fromConfig(config: BrokerConfig, options: BrokerOptions): Broker<SqsClient> {
  const warn = makeLog(options).warn;
  const settings = resolveSqsSettings(config, { warn });
  checkReadAhead(SCOPE, settings);
  return defineBroker(sqsDriver(settings, warn), {
    ...options,
    ...(settings.bufferSize === undefined ? {} : { bufferSize: settings.bufferSize }),
    ...(settings.format === undefined ? {} : { format: settings.format }),
    ...(settings.concurrency === undefined ? {} : { concurrency: settings.concurrency }),
    ...(settings.readAhead === undefined ? {} : { readAhead: settings.readAhead }),
    ...(settings.maxAttempts === undefined ? {} : { maxAttempts: settings.maxAttempts }),
  });
}
