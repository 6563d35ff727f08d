/**
 * The RabbitMQ driver: Rasa's pika event broker, on amqplib. Topology and messages are exactly Rasa's (a
 * non-durable fanout exchange, durable argument-less queues bound with "", persistent messages, `app_id` from
 * RASA_ENVIRONMENT), so Parley and Rasa can share an exchange and its queues in either direction.
 *
 * What this file owns, because only it knows RabbitMQ: publisher confirms, reconnecting (with failover across
 * hosts) and re-declaring the topology, resuming every consumer on a fresh channel, and the dead-letter queue
 * Parley declares per group (Rasa's queues carry no arguments, so no broker-side DLX can be added to them).
 */
import {
  type Broker,
  type BrokerConfig,
  type BrokerDriver,
  type BrokerOptions,
  backoffDelay,
  brokerConfig,
  type Capabilities,
  ConnectionError,
  type DeadLetter,
  type Delivery,
  type DriverConsumeOptions,
  type DriverConsumer,
  defineBroker,
  type OutgoingMessage,
  ParleyError,
  type SendOutcome,
  sleep,
} from '@parley/core';
import { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, connect } from 'amqplib';
import { type AmqpOptions, type AmqpSettings, redactUrl, resolveAmqpSettings } from './options.js';

const capabilities: Capabilities = {
  consumerGroups: true, // a group is a queue bound to the fanout exchange
  competingConsumers: true, // consumers of one queue share it
  ordering: 'per-sender', // RabbitMQ delivers a queue in order; Parley serialises each sender per consumer
  replay: false,
  deadLetter: 'emulated',
  batchPublish: true,
  persistent: true,
  headers: true,
};

/** The escape hatch: the live amqplib connection (it changes on reconnect) and the resolved settings. */
export interface AmqpClient {
  readonly connection: ChannelModel | undefined;
  readonly settings: AmqpSettings;
}

interface ActiveConsumer {
  readonly options: DriverConsumeOptions;
  readonly deliver: (delivery: Delivery) => void;
  channel: Channel | undefined;
  tag: string | undefined;
  stopped: boolean;
}

/** The driver alone, for `defineBroker` or for testing; most users want `amqpBroker`. */
export function amqpDriver(
  settings: AmqpSettings,
  warn: (message: string) => void = () => {},
): BrokerDriver<AmqpClient> {
  let connection: ChannelModel | undefined;
  let publishChannel: ConfirmChannel | undefined;
  let closing = false;
  let reconnecting: Promise<void> | undefined;
  let nextUrl = 0;
  const consumers = new Set<ActiveConsumer>();
  const declared = new Set<string>();

  const fail = (message: string, cause?: unknown) => new ConnectionError('amqp', message, { cause });

  /** One pass over the hosts (failover); the first that accepts wins. */
  async function open(): Promise<void> {
    let lastError: unknown;
    for (let i = 0; i < settings.urls.length; i++) {
      const index = (nextUrl + i) % settings.urls.length;
      try {
        const model = await connect(withHeartbeat(settings.urls[index]!, settings.heartbeat), {
          // Nagle's algorithm holds small frames back for ~40 ms: confirms and acks are small frames.
          noDelay: true,
          ...settings.socketOptions,
          clientProperties: { connection_name: `parley-amqp-${process.pid}` },
        });
        await setUp(model);
        nextUrl = index;
        return;
      } catch (error) {
        lastError = error;
      }
    }
    const where = settings.safeUrls.join(', ');
    throw fail(`cannot connect to ${where}: ${describe(lastError)}`, lastError);
  }

  /** Declares the topology on a fresh connection, opens the confirm channel, resumes every consumer. */
  async function setUp(model: ChannelModel): Promise<void> {
    model.on('error', () => {}); // 'close' follows and carries the recovery
    try {
      declared.clear();
      const channel = await model.createChannel();
      channel.on('error', () => {});
      // Exactly Rasa's flags (aio-pika defaults): anything else makes RabbitMQ answer 406 PRECONDITION_FAILED.
      await channel.assertExchange(settings.exchange, 'fanout', {
        durable: false,
        autoDelete: false,
        internal: false,
      });
      for (const queue of settings.queues) await declareQueue(channel, queue);
      await channel.close();
      const confirm = await model.createConfirmChannel();
      confirm.on('error', () => {});
      for (const consumer of consumers) if (!consumer.stopped) await startConsumer(model, consumer);
      connection = model;
      publishChannel = confirm;
      confirm.on('close', () => {
        if (publishChannel === confirm) publishChannel = undefined;
      });
      model.on('close', () => {
        if (connection !== model) return;
        connection = undefined;
        publishChannel = undefined;
        if (!closing) {
          warn(`[parley] [amqp] connection to ${settings.safeUrls[nextUrl]} lost; reconnecting`);
          void reconnect();
        }
      });
    } catch (error) {
      await model.close().catch(() => {});
      throw error;
    }
  }

  async function declareQueue(channel: Channel, queue: string): Promise<void> {
    if (declared.has(queue)) return;
    await channel.assertQueue(queue, { durable: true, exclusive: false, autoDelete: false });
    await channel.bindQueue(queue, settings.exchange, '');
    declared.add(queue);
  }

  /** After the first connection, the driver keeps itself connected: forever, with backoff, across hosts. */
  function reconnect(): Promise<void> {
    reconnecting ??= (async () => {
      for (let attempt = 1; !closing; attempt++) {
        await sleep(backoffDelay(attempt, { initialMs: 200, maxMs: Math.max(1_000, settings.retryDelayMs) }));
        if (closing) break;
        try {
          await open();
          warn(`[parley] [amqp] reconnected to ${settings.safeUrls[nextUrl]} after ${attempt} attempt(s)`);
          break;
        } catch (error) {
          nextUrl = (nextUrl + 1) % settings.urls.length;
          if (attempt % 10 === 0)
            warn(`[parley] [amqp] still reconnecting (attempt ${attempt}): ${describe(error)}`);
        }
      }
    })().finally(() => {
      reconnecting = undefined;
    });
    return reconnecting;
  }

  async function startConsumer(model: ChannelModel, consumer: ActiveConsumer): Promise<void> {
    const channel = await model.createChannel();
    channel.on('error', () => {});
    await channel.prefetch(consumer.options.prefetch);
    const queue = queueOf(settings, consumer.options.group);
    await declareQueue(channel, queue);
    await channel.assertQueue(settings.deadLetterQueue(queue), {
      durable: true,
      exclusive: false,
      autoDelete: false,
    });
    consumer.channel = channel;
    const reply = await channel.consume(queue, (message) => {
      if (message === null) {
        // The server cancelled us (queue deleted): come back on a new channel, which re-declares it.
        if (!consumer.stopped && connection) void startConsumer(connection, consumer).catch(() => {});
        return;
      }
      consumer.deliver(toDelivery(channel, message));
    });
    consumer.tag = reply.consumerTag;
  }

  function toDelivery(channel: Channel, message: ConsumeMessage): Delivery {
    let settled = false;
    // An ack on a channel that died is void: RabbitMQ redelivers the message anyway, so do nothing.
    const settle = (action: () => void) => async () => {
      if (settled) return;
      settled = true;
      try {
        action();
      } catch {
        // channel closed in between: the broker requeued the message
      }
    };
    return {
      body: message.content,
      headers: stringHeaders(message.properties.headers),
      redelivered: message.fields.redelivered,
      ack: settle(() => channel.ack(message)),
      release: settle(() => channel.nack(message, false, true)),
    };
  }

  const baseProperties = {
    persistent: true,
    ...(settings.appId === undefined ? {} : { appId: settings.appId }),
  };

  /**
   * Publishes a batch with confirms; resolves with one outcome per message. One timer and one promise per batch,
   * not per message: per-message allocations cost several percent of throughput.
   */
  async function publishBatch(
    channel: ConfirmChannel,
    exchange: string,
    routingKey: string,
    batch: readonly { readonly body: Uint8Array; readonly headers: Readonly<Record<string, unknown>> }[],
  ): Promise<SendOutcome[]> {
    const outcomes = new Array<SendOutcome | undefined>(batch.length);
    let remaining = batch.length;
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const settle = (i: number, outcome: SendOutcome) => {
      if (outcomes[i] !== undefined) return;
      outcomes[i] = outcome;
      if (--remaining === 0) done();
    };
    const timer = setTimeout(() => {
      const late = fail(`no publisher confirm within ${settings.confirmTimeoutMs} ms`);
      for (let i = 0; i < batch.length; i++) settle(i, { ok: false, retryable: true, error: late });
    }, settings.confirmTimeoutMs);
    for (let i = 0; i < batch.length && remaining > 0; i++) {
      const { body, headers } = batch[i]!;
      const content = Buffer.isBuffer(body)
        ? body
        : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      const properties = Object.keys(headers).length > 0 ? { ...baseProperties, headers } : baseProperties;
      let writable = true;
      try {
        writable = channel.publish(exchange, routingKey, content, properties, (error) => {
          settle(
            i,
            error
              ? {
                  ok: false,
                  retryable: settings.bufferUnpublished,
                  error: fail(`broker refused the message: ${describe(error)}`, error),
                }
              : ACCEPTED,
          );
        });
      } catch (error) {
        settle(i, { ok: false, retryable: settings.bufferUnpublished, error: fail(describe(error), error) });
      }
      // amqplib buffers without limit when the socket is slow: wait for it to drain, as a careful client does.
      if (!writable) await drained(channel);
    }
    await all;
    clearTimeout(timer);
    return outcomes as SendOutcome[];
  }

  const unavailable = (): SendOutcome => ({
    ok: false,
    retryable: settings.bufferUnpublished,
    error: fail(
      settings.bufferUnpublished
        ? 'not connected'
        : 'not connected (should_keep_unpublished_messages is false / raise_on_failure is true: not buffered)',
    ),
  });

  return {
    name: 'amqp',
    capabilities,
    destination: settings.exchange,
    defaultFormat: 'python',
    defaultGroup: settings.queues[0] ?? 'rasa_core_events',
    client: {
      get connection() {
        return connection;
      },
      settings,
    },

    async connect() {
      if (closing) throw fail('closed');
      if (connection) return;
      await open();
    },

    async send(batch: readonly OutgoingMessage[]) {
      const channel = publishChannel;
      if (!channel) return batch.map(unavailable);
      return publishBatch(channel, settings.exchange, '', batch);
    },

    async consume(options, deliver): Promise<DriverConsumer> {
      const consumer: ActiveConsumer = {
        options,
        deliver,
        channel: undefined,
        tag: undefined,
        stopped: false,
      };
      consumers.add(consumer);
      if (connection) await startConsumer(connection, consumer);
      return {
        async stop() {
          consumer.stopped = true;
          if (consumer.channel && consumer.tag) await consumer.channel.cancel(consumer.tag).catch(() => {});
        },
        async close() {
          consumer.stopped = true;
          consumers.delete(consumer);
          // Closing the channel hands every unacknowledged delivery back to the queue.
          await bounded(consumer.channel?.close());
        },
      };
    },

    async deadLetter(deadLetter: DeadLetter) {
      const channel = publishChannel;
      if (!channel) throw fail('not connected: cannot store the dead letter');
      const queue = settings.deadLetterQueue(queueOf(settings, deadLetter.group));
      const headers: Record<string, unknown> = {
        ...deadLetter.headers,
        'x-parley-reason': deadLetter.reason,
        'x-parley-error': deadLetter.error.message.slice(0, 4_000),
        'x-parley-error-name': deadLetter.error.name,
        'x-parley-attempts': deadLetter.attempts,
        'x-parley-group': deadLetter.group,
        'x-parley-failed-at': deadLetter.failedAt,
        ...(deadLetter.senderId === undefined ? {} : { 'x-parley-sender-id': deadLetter.senderId }),
      };
      // To the default exchange, routed by queue name: the dead-letter queue is not bound to Rasa's exchange.
      const [outcome] = await publishBatch(channel, '', queue, [{ body: deadLetter.body, headers }]);
      if (outcome && !outcome.ok) throw outcome.error;
    },

    isReady: () => !closing && connection !== undefined && publishChannel !== undefined,

    async health() {
      return {
        connected: connection !== undefined,
        host: settings.safeUrls[nextUrl],
        exchange: settings.exchange,
        queues: settings.queues,
        consumers: consumers.size,
      };
    },

    async close() {
      if (closing) return;
      closing = true;
      const model = connection;
      for (const consumer of consumers) await bounded(consumer.channel?.close());
      consumers.clear();
      await bounded(publishChannel?.close());
      // A connection whose socket already died never gets the server's close-ok: end the socket ourselves.
      if (model && !(await bounded(model.close()))) socketOf(model)?.destroy();
      connection = undefined;
      publishChannel = undefined;
    },
  };
}

/**
 * The queue a group reads. Rasa's `queues` keep their names, so Parley and Rasa's consumers share them; any other
 * group gets a queue of its own exchange, `<exchange_name>.<group>`, because RabbitMQ queue names are global to
 * a vhost and a group must not mix the events of two exchanges.
 */
export function queueOf(settings: Pick<AmqpSettings, 'queues' | 'exchange'>, group: string): string {
  return settings.queues.includes(group) ? group : `${settings.exchange}.${group}`;
}

/** Options of `amqpBroker`: Rasa's pika keys as in endpoints.yml, plus Parley's broker options. */
export interface AmqpBrokerOptions
  extends AmqpOptions,
    Pick<BrokerOptions, 'onWarning' | 'reconnect' | 'maxBatch'> {}

/**
 * Rasa's pika event broker, for Node: `amqpBroker({ url: 'localhost', username: 'guest', password: 'guest' })`.
 * The keys are endpoints.yml's, with the same defaults.
 */
export function amqpBroker(options: AmqpBrokerOptions): Broker<AmqpClient> {
  const { onWarning, reconnect, maxBatch, ...keys } = options;
  return fromConfig(brokerConfig({ type: 'amqp', ...keys }, '<amqpBroker options>'), {
    onWarning,
    reconnect,
    maxBatch,
  });
}

/** What `createBroker` calls for `type: pika` / `rabbitmq` / `amqp` in endpoints.yml. */
export function fromEndpointConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning'> = {},
): Broker<AmqpClient> {
  return fromConfig(config, options);
}

function fromConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning' | 'reconnect' | 'maxBatch'>,
): Broker<AmqpClient> {
  const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, 'ParleyWarning'));
  const settings = resolveAmqpSettings(config, { warn });
  return defineBroker(amqpDriver(settings, warn), {
    onWarning: warn,
    // Rasa's first-connection policy: connection_attempts tries, retry_delay_in_seconds apart.
    reconnect: options.reconnect ?? {
      initialMs: settings.retryDelayMs,
      maxMs: settings.retryDelayMs,
      factor: 1,
    },
    connectAttempts: settings.connectionAttempts,
    ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
    ...(settings.bufferSize === undefined ? {} : { bufferSize: settings.bufferSize }),
    ...(settings.prefetch === undefined ? {} : { concurrency: settings.prefetch }),
    ...(settings.format === undefined ? {} : { format: settings.format }),
  });
}

function withHeartbeat(url: string, heartbeat: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(heartbeat));
  return parsed.toString();
}

/**
 * Waits for a close, at most `ms`: amqplib waits for the server's close-ok, which never comes on a dead socket.
 * Resolves true when it completed in time.
 */
async function bounded(closing: Promise<unknown> | undefined, ms = 2_000): Promise<boolean> {
  if (!closing) return true;
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([
    closing.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return done;
}

function socketOf(model: ChannelModel): { destroy(): void } | undefined {
  return (model as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
}

const ACCEPTED: SendOutcome = { ok: true };
const drains = new WeakMap<Channel, Promise<void>>();

/** Resolves when the channel can take more writes, or is gone (then the confirms report the failure). */
function drained(channel: Channel): Promise<void> {
  let waiting = drains.get(channel);
  if (!waiting) {
    waiting = new Promise<void>((resolve) => {
      const done = () => {
        channel.off('drain', done);
        channel.off('close', done);
        drains.delete(channel);
        resolve();
      };
      channel.once('drain', done);
      channel.once('close', done);
    });
    drains.set(channel, waiting);
  }
  return waiting;
}

function stringHeaders(headers: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    out[key] = Buffer.isBuffer(value)
      ? value.toString('utf8')
      : typeof value === 'string'
        ? value
        : JSON.stringify(value);
  }
  return out;
}

function describe(error: unknown): string {
  if (error instanceof ParleyError) return error.message;
  const message = error instanceof Error ? error.message : String(error);
  return redactUrl(message);
}
