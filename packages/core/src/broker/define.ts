/**
 * defineBroker: the one place that turns an adapter's driver (translation to its broker) into a full `Broker`.
 * Adapters stay small because everything they would otherwise repeat lives here: encoding and validation, the
 * first connection with backoff, the bounded publish buffer, subscriptions with retries and dead-lettering,
 * graceful drain, idempotent close, and `[parley] [<adapter>]` error prefixes.
 */
import { BrokerClosedError, BrokerConfigError, ConnectionError, PublishError } from '../errors.js';
import { eventSchemas } from '../events/schemas.js';
import { stringifyEvent } from '../wire/codec.js';
import { backoffDelay, sleep } from './backoff.js';
import type {
  AnyEvent,
  Broker,
  BrokerDriver,
  BrokerOptions,
  EventEnvelope,
  EventHandler,
  EventHandlers,
  EventStream,
  HealthReport,
  OutgoingMessage,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  Subscription,
} from './contract.js';
import { Publisher } from './publisher.js';
import { SubscriptionImpl } from './subscription.js';

const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

/** Builds a `Broker` around an adapter's driver. Connecting starts with the first publish, subscribe or ready(). */
export function defineBroker<Client>(
  driver: BrokerDriver<Client>,
  options: BrokerOptions = {},
): Broker<Client> {
  const scope = driver.name;
  const format = options.format ?? driver.defaultFormat;
  const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, 'ParleyWarning'));
  const reconnect = options.reconnect ?? { initialMs: 200, maxMs: 5_000 };
  const lifetime = new AbortController();
  const subscriptions = new Set<SubscriptionImpl>();

  // ── the first connection: retried with backoff until it succeeds or the broker closes ──
  let connecting: Promise<void> | undefined;
  let lastConnectError: unknown;
  const connectAttempts = options.connectAttempts ?? Number.POSITIVE_INFINITY;
  const connected = (): Promise<void> => {
    connecting ??= (async () => {
      for (let attempt = 1; ; attempt++) {
        if (lifetime.signal.aborted) throw new ConnectionError(scope, 'closed before it could connect');
        try {
          await driver.connect(lifetime.signal);
          if (attempt > 1) warn(`[parley] [${scope}] connected after ${attempt} attempts`);
          return;
        } catch (error) {
          lastConnectError = error;
          if (attempt >= connectAttempts) {
            // Let the next publish or subscribe start over, as Rasa does on its next connect.
            connecting = undefined;
            const tries = attempt === 1 ? '1 connection attempt' : `${attempt} connection attempts`;
            throw new ConnectionError(scope, `gave up after ${tries}: ${messageOf(error)}`, {
              cause: error,
            });
          }
          const delay = backoffDelay(attempt, reconnect);
          if (attempt === 1 || attempt % 10 === 0) {
            warn(
              `[parley] [${scope}] cannot connect (attempt ${attempt}): ${messageOf(error)}; retrying in ${delay} ms`,
            );
          }
          // Keep the process alive only while someone waits for this broker.
          await sleep(delay, lifetime.signal, publisher.pending > 0 || subscriptions.size > 0);
        }
      }
    })();
    return connecting;
  };

  const publisher = new Publisher(driver, {
    bufferSize: options.bufferSize ?? 10_000,
    maxBatch: options.maxBatch ?? 500,
    maxInFlightBatches: 8,
    backoff: reconnect,
    connected,
    warn,
  });

  let warnedHeaders = false;
  const encode = (envelope: EventEnvelope<AnyEvent>, publishOptions?: PublishOptions): OutgoingMessage => {
    const text = stringifyEvent(envelope, {
      format,
      strict: options.strict === true,
      allowUnknown: publishOptions?.allowUnknown === true,
    });
    if (!driver.capabilities.headers && publishOptions?.headers && !warnedHeaders) {
      warnedHeaders = true;
      warn(`[parley] [${scope}] this broker cannot carry message headers: they are not sent (the event is)`);
    }
    return {
      body: Buffer.from(text, 'utf8'),
      senderId: envelope.sender_id,
      eventName: envelope.event,
      headers: publishOptions?.headers ?? {},
    };
  };

  let closing: Promise<void> | undefined;

  const broker: Broker<Client> = {
    name: driver.name,
    capabilities: driver.capabilities,
    client: driver.client,

    publish(envelope, publishOptions) {
      let message: OutgoingMessage;
      try {
        message = encode(envelope, publishOptions);
      } catch (error) {
        return Promise.reject(error);
      }
      return publisher.publish(message);
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
      const subscription = new SubscriptionImpl(
        driver as BrokerDriver,
        handler,
        subscribeOptions,
        connected,
        (s) => subscriptions.delete(s),
      );
      subscriptions.add(subscription);
      return subscription;
    },

    async flush(flushOptions) {
      if (flushOptions?.timeoutMs === undefined) return publisher.idle();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new PublishError(scope, `flush timed out: ${publisher.pending} events still unsent`)),
          flushOptions.timeoutMs,
        );
      });
      try {
        await Promise.race([publisher.idle(), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },

    isReady: () => !lifetime.signal.aborted && driver.isReady(),

    async ready(readyOptions) {
      const timeoutMs = readyOptions?.timeoutMs;
      if (timeoutMs === undefined) return connected();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const why = lastConnectError === undefined ? '' : `: ${messageOf(lastConnectError)}`;
          reject(
            new ConnectionError(scope, `not connected after ${timeoutMs} ms${why}`, {
              cause: lastConnectError,
            }),
          );
        }, timeoutMs);
      });
      try {
        await Promise.race([connected(), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },

    async health(): Promise<HealthReport> {
      const detail = await driver.health?.().catch((error: unknown) => ({ error: messageOf(error) }));
      return {
        ready: broker.isReady(),
        broker: driver.name,
        buffered: publisher.pending,
        subscriptions: subscriptions.size,
        ...(detail ? { detail } : {}),
      };
    },

    close(closeOptions) {
      closing ??= (async () => {
        // Subscriptions drain first: their handlers may still publish.
        await Promise.all([...subscriptions].map((s) => s.close()));
        await publisher.close(closeOptions?.timeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
        lifetime.abort();
        await driver.close();
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

/** An error's message without the `[parley] [adapter]` prefix, for wrapping it in another Parley error. */
function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^\[parley\](?: \[[^\]]+\])? /, '');
}
