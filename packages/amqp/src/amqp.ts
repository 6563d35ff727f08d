/**
 * The RabbitMQ driver: Rasa's pika event broker, on amqplib. Topology and messages are exactly Rasa's (a
 * non-durable fanout exchange, durable argument-less queues bound with "", persistent messages, `app_id` from
 * RASA_ENVIRONMENT), so Parley and Rasa can share an exchange and its queues in either direction.
 *
 * What this file owns, because only it knows RabbitMQ: one connection (failover across hosts) and its topology,
 * publisher confirms on a channel that is opened again when RabbitMQ closes it, one channel per consumer, and the
 * dead-letter queue Parley declares per group (Rasa's queues carry no arguments, so no broker-side DLX can be
 * added to them). Reconnecting and resuming consumers are core's: the driver reports a lost connection to
 * `session.lost` and a consumer channel RabbitMQ closed to `sink.lost`.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import {
  type Broker,
  BrokerClosedError,
  type BrokerConfig,
  BrokerConfigError,
  type BrokerDriver,
  type BrokerOptions,
  brokerConfig,
  type Capabilities,
  ConnectionError,
  type ConnectSession,
  type ConsumerSink,
  type DeadLetter,
  type Delivery,
  type DriverConsumeOptions,
  type DriverConsumer,
  deadLetterHeaders,
  defineBroker,
  makeLog,
  ParleyError,
  type SendOutcome,
} from '@parley/core';
import { type Channel, type ChannelModel, connect, type Message, type Options } from 'amqplib';
import { amqpDeadLetters } from './dead-letters.js';
import { type AmqpOptions, type AmqpSettings, resolveAmqpSettings } from './options.js';
import { ConfirmPublisher } from './publish.js';
import { describe, idOf, queueOf, stringHeaders } from './wire.js';

const capabilities: Capabilities = {
  consumerGroups: true, // a group is a queue bound to the fanout exchange
  competingConsumers: true, // consumers of one queue share it
  // A classic queue hands messages out in order, but to whichever consumer has room: one sender's events are
  // handled in order, one at a time, within each consumer only; two consumers of a group may overlap.
  ordering: 'consumer',
  replay: false,
  deadLetter: 'emulated',
  batchPublish: true,
  persistent: true,
  headers: true,
  // Classic queues (Rasa's) count no deliveries; a quorum queue's x-delivery-count is passed on when present.
  deliveryCount: false,
  retry: 'in-process', // RabbitMQ cannot hand a message back with a delay
  leases: false, // a delivery stays with its channel until it is settled or the channel closes
  redrive: true,
};

/** The escape hatch: the live amqplib connection (a new one after each reconnect) and the resolved settings. */
export interface AmqpClient {
  readonly connection: ChannelModel | undefined;
  readonly settings: AmqpSettings;
}

/** Exactly Rasa's flags (aio-pika defaults): anything else makes RabbitMQ answer 406 PRECONDITION_FAILED. */
const EXCHANGE = { durable: false, autoDelete: false, internal: false } as const;
const QUEUE = { durable: true, exclusive: false, autoDelete: false } as const;
/** An ephemeral group's queues: RabbitMQ deletes them with the connection (or the last consumer) that had them. */
const EPHEMERAL = { durable: false, exclusive: true, autoDelete: true } as const;
/** A connection attempt (TCP, TLS and the AMQP handshake) that takes longer is given up: a black hole answers never. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long close waits for RabbitMQ's close-ok before it destroys the socket. */
const CLOSE_WAIT_MS = 1_000;
const QUEUE_HINT =
  '. Parley declares queues durable with no arguments, as Rasa does: delete the queue or use another group';

/**
 * Live consumers per queue, per exchange of one broker, shared by every driver of the process. Rasa's exchange is
 * not durable: a RabbitMQ restart deletes it with every binding, and a queue is bound again only by whoever
 * declares it. Each driver declares and binds these on every connection before it publishes, so that a publisher
 * that reconnects first does not send into an exchange its own process's groups are missing from. (Groups consumed
 * by other processes, outside `queues`, stay unbound until those reconnect: see the README.)
 */
const liveByBroker = new Map<string, Map<string, number>>();
function liveQueues(settings: AmqpSettings): Map<string, number> {
  const key = `${settings.safeUrls.join(',')} ${settings.exchange}`;
  const queues = liveByBroker.get(key) ?? new Map<string, number>();
  liveByBroker.set(key, queues);
  return queues;
}

/** The driver alone, for `defineBroker` or for testing; most users want `amqpBroker`. */
export function amqpDriver(
  settings: AmqpSettings,
  warn: (message: string) => void = () => {},
): BrokerDriver<AmqpClient> {
  let connection: ChannelModel | undefined;
  /** The confirm channel, or its opening; undefined once RabbitMQ closed it: the next send opens another. */
  let publishing: Promise<ConfirmPublisher> | undefined;
  let closing = false;
  let nextUrl = 0;
  /** What RabbitMQ's refusals taught, shared by every publish channel. */
  const learnt = { maxBodyBytes: Number.POSITIVE_INFINITY };
  const bound = liveQueues(settings);
  const consumers = new Set<Channel>();
  /** Dead-letter queues declared on this connection, and those of ephemeral groups. */
  const deadQueues = new Set<string>();
  const throwaway = new Set<string>();
  const fail = (message: string, cause?: unknown) => new ConnectionError('amqp', message, { cause });
  const notSent = (error: Error): SendOutcome => ({
    ok: false,
    retryable: settings.bufferUnpublished,
    error,
  });

  /** The exchange, then every queue bound to it that this driver knows: a queue that fails is that queue's problem. */
  async function declareTopology(model: ChannelModel): Promise<void> {
    let channel = await openChannel(model);
    await channel.assertExchange(settings.exchange, 'fanout', EXCHANGE).catch((error: unknown) => {
      throw fail(
        `cannot declare the exchange "${settings.exchange}" (fanout, not durable, as Rasa does): ${describe(error)}`,
        error,
      );
    });
    for (const queue of new Set([...settings.queues, ...bound.keys()])) {
      try {
        await declareQueue(channel, queue);
      } catch (error) {
        warn(
          `[parley] [amqp] queue "${queue}" not declared: ${describe(error)}; its subscriptions fail until it is fixed`,
        );
        channel = await openChannel(model); // RabbitMQ closed that one
      }
    }
    await channel.close().catch(() => {});
  }

  async function declareQueue(channel: Channel, queue: string, flags: Options.AssertQueue = QUEUE) {
    await channel.assertQueue(queue, flags);
    await channel.bindQueue(queue, settings.exchange, '');
  }

  /** A confirm channel on the topology (declared again: a deleted exchange or binding comes back with it). */
  function openPublisher(model: ChannelModel): Promise<ConfirmPublisher> {
    const opening = (async () => {
      await declareTopology(model);
      return new ConfirmPublisher(await model.createConfirmChannel(), settings, learnt, (error) => {
        if (publishing === opening) publishing = undefined;
        if (error && connection === model && !closing) {
          warn(`[parley] [amqp] RabbitMQ closed the publish channel (${describe(error)}); opening another`);
        }
      });
    })();
    publishing = opening;
    opening.catch(() => {
      if (publishing === opening) publishing = undefined;
    });
    return opening;
  }

  /** A channel of its own per consumer: RabbitMQ closing it (a 406, consumer_timeout) touches nothing else. */
  async function startConsumer(model: ChannelModel, options: DriverConsumeOptions, sink: ConsumerSink) {
    const { group, readAhead, ephemeral = false } = options;
    if (ephemeral && settings.queues.includes(group)) {
      throw new BrokerConfigError(
        'amqp',
        `group "${group}" is one of queues (durable, Rasa's): it cannot be ephemeral`,
      );
    }
    const queue = queueOf(settings, group);
    const deadQueue = settings.deadLetterQueue(queue);
    if (ephemeral) throwaway.add(deadQueue);
    const channel = await openChannel(model);
    // One signal for every delivery of the channel, each with its listener in core: no listener limit.
    const state: ChannelState = {
      channel,
      open: true,
      error: undefined,
      revoked: new AbortController(),
      unsettled: new Set(),
      acking: [],
      flush: undefined,
    };
    setMaxListeners(0, state.revoked.signal);
    let consuming = false; // and not stopped by core: only then is a closed channel news for core
    channel.on('error', (e: Error) => (state.error = e));
    channel.on('close', () => {
      state.open = false;
      consumers.delete(channel);
      state.revoked.abort(state.error ?? new Error('channel closed'));
      // RabbitMQ closed this channel alone (consumer_timeout, a refused ack): core resumes the consumer (and names
      // the group). A lost connection closes it without an error, and is reported once, by the connection.
      const { error } = state;
      if (error && consuming && !closing) sink.lost(fail(describe(error), error));
    });
    let consumerTag: string;
    try {
      await channel.prefetch(readAhead);
      await declareQueue(channel, queue, ephemeral ? EPHEMERAL : QUEUE);
      await channel.assertQueue(deadQueue, ephemeral ? EPHEMERAL : QUEUE);
      deadQueues.add(deadQueue);
      ({ consumerTag } = await channel.consume(queue, (message) => {
        if (message) {
          state.unsettled.add(message.fields.deliveryTag);
          return sink.deliver(toDelivery(state, message));
        }
        // RabbitMQ cancelled the consumer (its queue was deleted): a new consume declares it again.
        if (!consuming) return;
        consuming = false;
        sink.lost(fail(`RabbitMQ cancelled the consumer (queue "${queue}" deleted?)`));
        void channel.close().catch(() => {});
      }));
    } catch (failure) {
      if (state.open) await channel.close().catch(() => {});
      if (connection !== model)
        throw fail(`connection lost while subscribing: ${describe(failure)}`, failure);
      // The connection is fine: this group's own problem (its queue declared elsewhere with other arguments, say).
      const hint = (failure as { code?: unknown }).code === 406 ? QUEUE_HINT : '';
      throw new ParleyError(
        `cannot consume group "${group}" from queue "${queue}": ${describe(failure)}${hint}`,
        'SUBSCRIPTION_FAILED',
        {
          scope: 'amqp',
          cause: failure,
        },
      );
    }
    consuming = true;
    consumers.add(channel);
    // An ephemeral group's queue goes with its connection: nothing to bind again on the next one.
    let detached = ephemeral;
    if (!ephemeral) bound.set(queue, (bound.get(queue) ?? 0) + 1);
    return {
      // Both wait for RabbitMQ at most CLOSE_WAIT_MS: what it holds goes back to the queue whether or not it
      // answers, and a dead network must not hold a close for long.
      async stop() {
        consuming = false;
        if (state.open) await answered(channel.cancel(consumerTag));
      },
      async close() {
        consuming = false;
        if (!detached) {
          detached = true;
          const left = (bound.get(queue) ?? 1) - 1;
          if (left > 0) bound.set(queue, left);
          else bound.delete(queue);
        }
        // Closing the channel hands every unacknowledged delivery back to the queue.
        if (state.open) await answered(channel.close());
      },
    } satisfies DriverConsumer;
  }

  return {
    name: 'amqp',
    capabilities,
    destination: settings.exchange,
    defaultFormat: 'python',
    defaultGroup: settings.queues[0] ?? 'rasa_core_events',
    // One confirm channel writes the batches in the order they were sent (a new channel only after the old one
    // failed everything unconfirmed on it), so many may await their confirms at once: 32 measured ~10% faster than
    // core's default of 8 (a hand-written publisher keeps everything in flight).
    limits: { maxMessageBytes: settings.maxMessageBytes, orderedSends: true, maxInFlightBatches: 32 },
    client: {
      get connection() {
        return connection;
      },
      settings,
    },

    async connect(session: ConnectSession) {
      let lastError: unknown;
      for (let i = 0; i < settings.urls.length; i++) {
        if (closing || session.signal.aborted) throw new BrokerClosedError('amqp');
        const index = (nextUrl + i) % settings.urls.length;
        let model: ChannelModel | undefined;
        const abandon = () => model && destroy(model);
        session.signal.addEventListener('abort', abandon, { once: true });
        try {
          model = await connect(withHeartbeat(settings.urls[index]!, settings.heartbeat), {
            // Nagle's algorithm holds small frames back for ~40 ms: confirms and acks are small frames.
            noDelay: true,
            timeout: CONNECT_TIMEOUT_MS,
            ...settings.socketOptions,
            clientProperties: { connection_name: `parley-amqp-${process.pid}` },
          });
          const opened = model;
          let dead = false;
          opened.on('error', () => {}); // 'close' follows, with the reason
          opened.on('close', (error?: Error) => {
            dead = true;
            if (connection !== opened) return;
            connection = undefined;
            publishing = undefined;
            deadQueues.clear();
            const why = describe(error ?? 'closed by the server');
            if (!closing) session.lost(fail(`connection to ${settings.safeUrls[index]} lost: ${why}`, error));
          });
          if (closing || session.signal.aborted) throw new BrokerClosedError('amqp');
          await openPublisher(opened);
          if (closing || session.signal.aborted || dead) throw fail('connection closed while connecting');
          connection = opened;
          nextUrl = index;
          return;
        } catch (error) {
          lastError = error;
          publishing = undefined;
          if (model) await destroy(model);
        } finally {
          session.signal.removeEventListener('abort', abandon);
        }
      }
      if (lastError instanceof ParleyError) throw lastError;
      const refused = refusal(lastError);
      if (refused) {
        // Wrong credentials or no access to the vhost: no retry can fix it, so core gives up at once.
        throw new ConnectionError(
          'amqp',
          `${refused} at ${settings.safeUrls.join(', ')}: ${describe(lastError)}`,
          {
            cause: lastError,
            permanent: true,
            code: 'AUTH_FAILED',
          },
        );
      }
      throw fail(`cannot connect to ${settings.safeUrls.join(', ')}: ${describe(lastError)}`, lastError);
    },

    async send(batch) {
      const model = connection;
      if (!model) return batch.map(() => notSent(fail('not connected')));
      let publisher: ConfirmPublisher;
      try {
        publisher = await (publishing ?? openPublisher(model));
      } catch (error) {
        return batch.map(() => notSent(fail(`cannot open a publish channel: ${describe(error)}`, error)));
      }
      return publisher.publish(settings.exchange, '', batch);
    },

    async consume(options, sink) {
      const model = connection;
      if (!model) throw fail('not connected');
      return startConsumer(model, options, sink);
    },

    async deadLetter(deadLetter: DeadLetter) {
      const model = connection;
      if (!model)
        throw fail('not connected: the dead letter was not stored (the message stays in its queue)');
      const queue = settings.deadLetterQueue(queueOf(settings, deadLetter.group));
      if (!deadQueues.has(queue)) {
        const channel = await openChannel(model);
        await channel
          .assertQueue(queue, throwaway.has(queue) ? EPHEMERAL : QUEUE)
          .catch((error: unknown) => {
            throw fail(`cannot declare the dead-letter queue "${queue}": ${describe(error)}`, error);
          })
          .finally(() => channel.close().catch(() => {}));
        deadQueues.add(queue);
      }
      const id = `dl-${randomUUID()}`;
      // Mandatory: a dead-letter queue deleted meanwhile must fail the dead letter, not swallow it.
      const store = async (headers: Record<string, string>) => {
        const publisher = await (publishing ?? openPublisher(model));
        return (await publisher.publish('', queue, [{ ...deadLetter, id, headers }], true))[0]!;
      };
      let outcome = await store(deadLetterHeaders(deadLetter));
      // Original headers too large to encode with it must not keep the dead letter out: its bytes and error go.
      if (!outcome.ok && !outcome.retryable)
        outcome = await store(deadLetterHeaders({ ...deadLetter, headers: {} }));
      if (outcome.ok) return;
      deadQueues.delete(queue); // declared again next time
      throw outcome.error;
    },

    deadLetters: amqpDeadLetters(settings, () => {
      if (!connection) throw fail('not connected');
      return connection;
    }),

    isReady: () => !closing && connection !== undefined,

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
      connection = undefined;
      publishing = undefined;
      if (model) await destroy(model);
    },
  };
}

/** A consumer's channel as its deliveries see it. */
interface ChannelState {
  readonly channel: Channel;
  open: boolean;
  /** Why RabbitMQ closed it ('error' comes before 'close'); none when the connection went. */
  error: Error | undefined;
  /** Aborted when the channel closes: RabbitMQ takes back what it delivered on it. */
  readonly revoked: AbortController;
  /** Delivery tags delivered and neither acked nor released yet, in delivery order (so the first is the lowest). */
  readonly unsettled: Set<number>;
  /** Acked since the last flush. */
  acking: Message[];
  /** The next flush of `acking`, once one is scheduled: every ack of this tick resolves or rejects with it. */
  flush: Promise<void> | undefined;
}

/** An ack that did not happen: its channel closed, and RabbitMQ delivers the message again. */
function notAcknowledged(state: ChannelState): ConnectionError {
  const why = describe(state.error ?? 'its connection was lost');
  return new ConnectionError(
    'amqp',
    `not acknowledged: its channel closed (${why}); RabbitMQ delivers it again`,
  );
}

/**
 * Acks of one tick go out together: one `basic.ack` with `multiple` for those below every unsettled delivery, one
 * each for the others. An ack per message was a socket write each, a fifth of consuming.
 */
function queueAck(state: ChannelState, message: Message): Promise<void> {
  state.acking.push(message);
  state.flush ??= new Promise<void>((resolve, reject) =>
    setImmediate(() => {
      const messages = state.acking;
      state.acking = [];
      state.flush = undefined;
      const { channel, unsettled } = state;
      for (const m of messages) unsettled.delete(m.fields.deliveryTag);
      const lowest: number = unsettled.values().next().value ?? Number.POSITIVE_INFINITY;
      let top: Message | undefined;
      try {
        if (!state.open) throw new Error('closed');
        for (const m of messages) {
          const tag = m.fields.deliveryTag;
          if (tag >= lowest) channel.ack(m);
          else if (top === undefined || tag > top.fields.deliveryTag) top = m;
        }
        if (top !== undefined) channel.ack(top, true);
        resolve();
      } catch {
        // An ack written to a dead channel is void (closing under us too): RabbitMQ delivers them again.
        reject(notAcknowledged(state));
      }
    }),
  );
  return state.flush;
}

function toDelivery(state: ChannelState, message: Message): Delivery {
  const { channel } = state;
  let settled = false;
  const count = message.properties.headers?.['x-delivery-count'];
  return {
    id: idOf(message),
    body: message.content,
    headers: stringHeaders(message.properties.headers),
    redelivered: message.fields.redelivered,
    ...(typeof count === 'number' ? { deliveryCount: count + 1 } : {}),
    revoked: state.revoked.signal,
    async ack() {
      if (settled) return;
      settled = true;
      // An ack written to a dead channel is void: RabbitMQ delivers the message again, so it does not count.
      if (state.open) return queueAck(state, message);
      throw notAcknowledged(state);
    },
    async release() {
      if (settled) return;
      settled = true;
      state.unsettled.delete(message.fields.deliveryTag);
      try {
        if (state.open) channel.nack(message, false, true);
      } catch {
        // closing under us: RabbitMQ hands back what a closed channel held
      }
    },
  };
}

async function openChannel(model: ChannelModel): Promise<Channel> {
  const channel = await model.createChannel();
  channel.on('error', () => {}); // 'close' follows; whoever needs the reason listens too
  return channel;
}

/** Resolves true once `request` settled, false when RabbitMQ has not answered within CLOSE_WAIT_MS. */
async function answered(request: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = request.then(
    () => true,
    () => true,
  );
  const late = new Promise<boolean>(
    (resolve) => (timer = setTimeout(() => resolve(false), CLOSE_WAIT_MS).unref()),
  );
  const done = await Promise.race([settled, late]);
  clearTimeout(timer);
  return done;
}

/**
 * Closes a connection, waiting at most CLOSE_WAIT_MS for RabbitMQ's close-ok (which a dead network never sends),
 * then destroys the socket with an error: amqplib clears its heartbeat timers only on 'error' or 'end', and those
 * timers would keep the process alive.
 */
async function destroy(model: ChannelModel): Promise<void> {
  if (await answered(model.close())) return;
  const socket = (model as unknown as { connection?: { stream?: { destroy(error?: Error): void } } })
    .connection?.stream;
  socket?.destroy(new Error('RabbitMQ did not answer the close'));
}

/** Options of `amqpBroker`: Rasa's pika keys as in endpoints.yml, plus Parley's broker options. */
export interface AmqpBrokerOptions
  extends AmqpOptions,
    Pick<BrokerOptions, 'onWarning' | 'logger' | 'reconnect' | 'maxBatch'> {}

/**
 * Rasa's pika event broker, for Node: `amqpBroker({ url: 'localhost', username: 'guest', password: 'guest' })`.
 * The keys are endpoints.yml's, with the same defaults.
 */
export function amqpBroker(options: AmqpBrokerOptions): Broker<AmqpClient> {
  const { onWarning, logger, reconnect, maxBatch, ...keys } = options;
  return fromConfig(brokerConfig({ type: 'amqp', ...keys }, '<amqpBroker options>'), {
    onWarning,
    logger,
    reconnect,
    maxBatch,
  });
}

/** What `createBroker` calls for `type: pika` / `rabbitmq` / `amqp` in endpoints.yml. */
export function fromEndpointConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning' | 'logger'> = {},
): Broker<AmqpClient> {
  return fromConfig(config, options);
}

function fromConfig(
  config: BrokerConfig,
  options: Pick<BrokerOptions, 'onWarning' | 'logger' | 'reconnect' | 'maxBatch'>,
): Broker<AmqpClient> {
  const warn = makeLog(options).warn;
  const settings = resolveAmqpSettings(config, { warn });
  return defineBroker(amqpDriver(settings, warn), {
    onWarning: warn,
    ...(options.logger ? { logger: options.logger } : {}),
    // Rasa's connection policy: connection_attempts tries, retry_delay_in_seconds apart.
    reconnect: options.reconnect ?? {
      initialMs: settings.retryDelayMs,
      maxMs: settings.retryDelayMs,
      factor: 1,
    },
    connectAttempts: settings.connectionAttempts,
    // should_keep_unpublished_messages: false / raise_on_failure: true: a publish fails with the connection.
    bufferWhileDisconnected: settings.bufferUnpublished,
    maxBodyBytes: settings.maxMessageBytes,
    ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
    ...(settings.bufferSize === undefined ? {} : { bufferSize: settings.bufferSize }),
    ...(settings.prefetch === undefined ? {} : { concurrency: settings.prefetch }),
    ...(settings.format === undefined ? {} : { format: settings.format }),
  });
}

/**
 * What RabbitMQ's refusal of a connection means, when it refused one for good: 403 ACCESS_REFUSED (the username or
 * password is wrong) or 530 NOT_ALLOWED (the user may not use the virtual host, or it does not exist).
 */
function refusal(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (/\b403\b|ACCESS[-_]REFUSED/.test(message)) return 'authentication failed (check username and password)';
  // amqplib reports a refused connection.open (530) only as the frame it got instead of ConnectionOpenOk.
  if (/\b530\b|NOT[-_]ALLOWED|Expected ConnectionOpenOk; got <ConnectionClose/.test(message))
    return 'authorisation failed (check that the user may use the virtual host, and that it exists)';
  return undefined;
}

function withHeartbeat(url: string, heartbeat: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(heartbeat));
  return parsed.toString();
}
