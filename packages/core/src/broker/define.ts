/**
 * defineBroker: the one place that turns an adapter's driver (translation to its broker) into a full `Broker`.
 * Adapters stay small because everything they would otherwise repeat lives here: encoding and validation, the
 * connection and every reconnect with backoff, resuming consumers, the bounded publish buffer, subscriptions with retries and dead-lettering,
 * graceful drain, idempotent close, and `[parley] [<adapter>]` error prefixes.
 */
import { BrokerClosedError, BrokerConfigError, ConnectionError, PublishError } from '../errors.js';
import { eventSchemas } from '../events/schemas.js';
import { encodeEvent } from '../wire/codec.js';
import { Connection, messageOf } from './connection.js';
import type {
  Broker,
  BrokerDriver,
  BrokerOptions,
  DeadLetterStore,
  EventHandler,
  EventHandlers,
  EventStream,
  HealthReport,
  PublishResult,
  SendOutcome,
  SubscribeOptions,
  Subscription,
} from './contract.js';
import { makeLog } from './log.js';
import { Publisher } from './publisher.js';
import { SubscriptionImpl } from './subscription.js';

const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;
const DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Shared by every message published without headers (most of them): one object, not one per event. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** The outcome of a message the broker accepted: one shared object for all of them, not one per message. */
export const SENT: SendOutcome = Object.freeze({ ok: true });

/**
 * Whether a message carries headers, for drivers that write them per message: most carry none, and an
 * `Object.keys` or `Object.entries` per message to find that out showed in profiles.
 */
export function hasHeaders(headers: Readonly<Record<string, unknown>>): boolean {
  if (headers === NO_HEADERS) return false;
  for (const _ in headers) return true;
  return false;
}

/** Builds a `Broker` around an adapter's driver. Connecting starts with the first publish, subscribe or ready(). */
export function defineBroker<Client>(
  driver: BrokerDriver<Client>,
  options: BrokerOptions = {},
): Broker<Client> {
  const scope = driver.name;
  const format = options.format ?? driver.defaultFormat;
  const log = makeLog(options);
  const warn = log.warn;
  const subscriptions = new Set<SubscriptionImpl>();

  const connection: Connection = new Connection(driver as BrokerDriver, {
    reconnect: options.reconnect ?? { initialMs: 200, maxMs: 5_000 },
    connectAttempts: options.connectAttempts ?? Number.POSITIVE_INFINITY,
    log,
    wanted: (): boolean => publisher.pending > 0 || subscriptions.size > 0,
  });
  const connected = (): Promise<void> => connection.connected();

  const publisher: Publisher = new Publisher(driver as BrokerDriver, {
    bufferSize: options.bufferSize ?? 10_000,
    bufferBytes: options.bufferBytes ?? DEFAULT_BUFFER_BYTES,
    maxBatch: options.maxBatch ?? 500,
    backoff: options.reconnect ?? { initialMs: 200, maxMs: 5_000 },
    connected:
      options.bufferWhileDisconnected === false ? (): Promise<void> => connection.attempt() : connected,
    isUp: (): boolean => connection.isUp,
    warn,
  });

  let warnedHeaders = false;
  // The encoder's options, made once (not an object per event).
  const encoding = { format, strict: options.strict === true, allowUnknown: false };
  const encodingUnknown = { ...encoding, allowUnknown: true };
  const warnHeaders = (): void => {
    warnedHeaders = true;
    warn(`[parley] [${scope}] this broker cannot carry message headers: they are not sent (the event is)`);
  };

  const store = (): DeadLetterStore => {
    if (!driver.capabilities.redrive || !driver.deadLetters) {
      throw new BrokerConfigError(
        scope,
        'this broker cannot list or redrive dead letters (capabilities.redrive is false)',
      );
    }
    return driver.deadLetters;
  };

  let closing: Promise<void> | undefined;

  const broker: Broker<Client> = {
    name: driver.name,
    capabilities: driver.capabilities,
    client: driver.client,

    publish(envelope, publishOptions) {
      let body: Uint8Array;
      try {
        // Bytes straight from the encoder: no string to convert (the python writer fills a pooled slab).
        body = encodeEvent(envelope, publishOptions?.allowUnknown === true ? encodingUnknown : encoding);
      } catch (error) {
        return Promise.reject(error);
      }
      const headers = publishOptions?.headers;
      if (headers !== undefined && !warnedHeaders && !driver.capabilities.headers) warnHeaders();
      return publisher.publish(body, envelope.sender_id, envelope.event, headers ?? NO_HEADERS);
    },

    publishMany(envelopes, publishOptions) {
      return Promise.all(
        envelopes.map((envelope) =>
          broker.publish(envelope, publishOptions).then(
            (): PublishResult => ({ ok: true }),
            (error): PublishResult => ({
              ok: false,
              error: error instanceof Error ? error : new Error(String(error)),
            }),
          ),
        ),
      );
    },

    subscribe(
      first?: EventHandler | EventHandlers | SubscribeOptions,
      second?: SubscribeOptions,
    ): Subscription & EventStream {
      if (closing) throw new BrokerClosedError(scope);
      let handler: EventHandler | EventHandlers | undefined;
      let subscribeOptions: SubscribeOptions;
      if (typeof first === 'function') [handler, subscribeOptions] = [first, second ?? {}];
      else if (second !== undefined || isHandlerMap(first))
        [handler, subscribeOptions] = [first as EventHandlers, second ?? {}];
      else subscribeOptions = (first as SubscribeOptions | undefined) ?? {};
      if (subscribeOptions.from === 'beginning' && !driver.capabilities.replay) {
        throw new BrokerConfigError(
          scope,
          "from: 'beginning' needs a broker that keeps history (capabilities.replay)",
        );
      }
      if (subscribeOptions.concurrency === undefined && options.concurrency !== undefined) {
        subscribeOptions = { ...subscribeOptions, concurrency: options.concurrency };
      }
      if (subscribeOptions.maxAttempts === undefined && options.maxAttempts !== undefined) {
        subscribeOptions = { ...subscribeOptions, maxAttempts: options.maxAttempts };
      }
      const subscription = new SubscriptionImpl(
        {
          driver: driver as BrokerDriver,
          connection,
          maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
          readAhead: options.readAhead,
          log,
          onClosed: (s) => subscriptions.delete(s),
        },
        handler,
        subscribeOptions,
      );
      subscriptions.add(subscription);
      return subscription;
    },

    async flush(flushOptions) {
      if (flushOptions?.timeoutMs === undefined) return publisher.idle();
      await raceTimeout(
        publisher.idle(),
        flushOptions.timeoutMs,
        () => new PublishError(scope, `flush timed out: ${publisher.pending} events still unsent`),
      );
    },

    isReady: () => !connection.signal.aborted && connection.isUp && driver.isReady(),

    async ready(readyOptions) {
      const timeoutMs = readyOptions?.timeoutMs;
      if (timeoutMs === undefined) return connected();
      await raceTimeout(connected(), timeoutMs, () => {
        const last = connection.lastError;
        const why = last === undefined ? '' : `: ${messageOf(last)}`;
        return new ConnectionError(scope, `not connected after ${timeoutMs} ms${why}`, { cause: last });
      });
    },

    async health(): Promise<HealthReport> {
      const detail = await driver.health?.().catch((error: unknown) => ({ error: messageOf(error) }));
      return {
        ready: broker.isReady(),
        broker: driver.name,
        buffered: publisher.pending,
        bufferedBytes: publisher.pendingBytes,
        subscriptions: subscriptions.size,
        reconnects: connection.reconnects,
        ...(detail ? { detail } : {}),
      };
    },

    async deadLetters(group) {
      const dead = store();
      await connected();
      return dead.list(group ?? driver.defaultGroup);
    },

    async redrive(redriveOptions) {
      const dead = store();
      await connected();
      const group = redriveOptions?.group ?? driver.defaultGroup;
      const all = await dead.list(group);
      const ids = redriveOptions?.ids;
      const chosen = ids === undefined ? all : all.filter((letter) => ids.includes(letter.id));
      if (ids !== undefined && chosen.length < new Set(ids).size) {
        const known = new Set(chosen.map((letter) => letter.id));
        const unknown = ids.filter((id) => !known.has(id));
        throw new BrokerConfigError(
          scope,
          `no dead letter of group "${group}" has the id ${unknown.map((id) => JSON.stringify(id)).join(', ')}`,
        );
      }
      if (chosen.length > 0) await dead.redrive(group, chosen);
      return { redriven: chosen.length };
    },

    close(closeOptions) {
      closing ??= (async () => {
        // One deadline for the whole close: a dead network must not stretch it.
        const timeoutMs = closeOptions?.timeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
        const deadline = Date.now() + timeoutMs;
        const left = () => Math.max(0, deadline - Date.now());
        // Subscriptions drain first: their handlers may still publish.
        const draining = [...subscriptions];
        await raceTimeout(Promise.all(draining.map((s) => s.close())), left(), () => undefined).catch(
          () => undefined,
        );
        // Handlers that outlived the deadline: their events go back to the group, and nothing waits for them.
        await Promise.all(draining.map((s) => s.forceClose()));
        await publisher.close(
          left(),
          connection.isUp
            ? 'the broker did not confirm it before close() timed out'
            : 'the broker was still unreachable when it closed',
        );
        connection.close();
        // The driver gets what is left, and at least a moment, to close its connections.
        await raceTimeout(driver.close(), Math.max(left(), 1_000), () => undefined).catch(() => undefined);
      })();
      return closing;
    },
  };
  return broker;
}

function isHandlerMap(value: unknown): value is EventHandlers {
  if (typeof value !== 'object' || value === null) return false;
  return Object.keys(value).some((key) => key === '*' || Object.hasOwn(eventSchemas, key));
}

/** `promise`, or the error `timeout()` makes once `ms` passed (resolves instead when it makes none). */
async function raceTimeout<T>(
  promise: Promise<T>,
  ms: number,
  timeout: () => Error | undefined,
): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<undefined>((resolve, reject) => {
    timer = setTimeout(() => {
      const error = timeout();
      if (error) reject(error);
      else resolve(undefined);
    }, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
