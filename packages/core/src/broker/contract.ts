/**
 * The broker contract, in two layers:
 *
 * - `Broker` is what users hold: publish with confirms and a bounded outage buffer, subscribe with at-least-once
 *   delivery, retries, dead-lettering, per-sender ordering, graceful drain. Every adapter gives the same one.
 * - `BrokerDriver` is what an adapter implements: only the translation to its broker (send a batch, deliver
 *   messages, ack, release). `defineBroker(driver)` builds the `Broker` around it, so encoding, validation,
 *   retries, backoff, dead-letter policy, draining, idempotent close and error prefixes live in one place.
 */
import type { EventName } from '../events/schemas.js';
import type { AnyEvent, EventEnvelope, EventOf, RasaEvent, UnknownEvent } from '../events/types.js';
import type { WireFormat } from '../wire/codec.js';

// ─── What a broker guarantees ────────────────────────────────────────────────────────────────────────────────

/**
 * What a broker guarantees, declared by its adapter, so users and the conformance suite know what to expect.
 * A capability that is declared is tested; one that is not shows as a skipped test with its reason.
 */
export interface Capabilities {
  /** Several groups each receive every event (fan-out): AMQP queues on one exchange, Kafka consumer groups. */
  readonly consumerGroups: boolean;
  /** Several consumers in one group share its events, each event handled by one of them. */
  readonly competingConsumers: boolean;
  /** `per-sender`: events of one `sender_id` reach a group's handlers in publish order, one at a time. */
  readonly ordering: 'per-sender' | 'none';
  /** A new group can read what was published before it existed (`from: 'beginning'`): a log, not a queue. */
  readonly replay: boolean;
  /** Where events go after `maxAttempts`: the broker's own dead-letter mechanism, one Parley emulates, or none. */
  readonly deadLetter: 'native' | 'emulated' | 'none';
  /** `publishMany` sends a batch in one round trip, with a result per entry. */
  readonly batchPublish: boolean;
  /** Events survive a broker restart once `publish` resolved. */
  readonly persistent: boolean;
  /** Message headers travel natively (AMQP headers, Kafka headers) rather than not at all. */
  readonly headers: boolean;
}

// ─── The user-facing broker ──────────────────────────────────────────────────────────────────────────────────

export interface PublishOptions {
  /** Extra message headers (AMQP headers, Kafka headers, SQS message attributes). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Publish an unknown event name that is neither decoded nor built with `unknownEvent()` (default: refused). */
  readonly allowUnknown?: boolean;
}

export type PublishResult = { readonly ok: true } | { readonly ok: false; readonly error: Error };

/** Everything a handler may want besides the event. */
export interface DeliveryContext {
  /** 1 on the first try, then 2, 3, … up to `maxAttempts`. */
  readonly attempt: number;
  /** The broker delivered this message before (to this or another consumer): expect duplicates. */
  readonly redelivered: boolean;
  readonly headers: Readonly<Record<string, string>>;
  /** The message exactly as it arrived. */
  readonly body: Uint8Array;
  readonly group: string;
  /** Aborted when the subscription closes while the handler runs: long handlers should stop early. */
  readonly signal: AbortSignal;
}

export type EventHandler<E extends AnyEvent = AnyEvent> = (
  event: EventEnvelope<E>,
  context: DeliveryContext,
) => unknown | Promise<unknown>;

/**
 * Handlers per event type, fully typed: `{ user: (e) => e.text, slot: (e) => e.name }`. `'*'` takes every event
 * without a handler of its own, unknown ones included. Events with no handler and no `'*'` are acknowledged and
 * skipped: choosing which types to handle is a filter.
 */
export type EventHandlers = { readonly [N in EventName]?: EventHandler<EventOf<N>> } & {
  readonly '*'?: EventHandler<AnyEvent>;
};

/** Why an event was dead-lettered. */
export type DeadLetterReason = 'handler-failed' | 'undecodable' | 'invalid';

/** What reaches the dead-letter destination (and `onDeadLetter`): the original bytes, the error, the attempts. */
export interface DeadLetter {
  readonly reason: DeadLetterReason;
  /** The message exactly as it arrived. */
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly error: { readonly name: string; readonly message: string; readonly code?: string };
  readonly attempts: number;
  readonly group: string;
  /** The destination the message came from (exchange, topic, stream, queue, file). */
  readonly destination: string;
  /** Epoch milliseconds. */
  readonly failedAt: number;
  /** `sender_id`, when the message could be decoded that far. */
  readonly senderId?: string;
}

export interface BackoffOptions {
  /** First delay, in ms. Default 100. */
  readonly initialMs?: number;
  /** Largest delay, in ms. Default 5,000. */
  readonly maxMs?: number;
  /** Growth per attempt. Default 2. Delays are jittered (±20%). */
  readonly factor?: number;
}

export interface SubscribeOptions {
  /**
   * The consumer group. Each group receives every event; consumers in one group share them. The default is the
   * adapter's (AMQP: the first of `queues`; others: `parley`).
   */
  readonly group?: string;
  /** Handlers running at once (and the broker prefetch). Default 1. */
  readonly concurrency?: number;
  /**
   * `per-sender` (default): events of one `sender_id` are handled one at a time, in order, even with
   * `concurrency > 1`, where the broker allows it. `none`: any order, fastest.
   */
  readonly ordering?: 'per-sender' | 'none';
  /** Tries per event before it is dead-lettered, the first included. Default 5. */
  readonly maxAttempts?: number;
  /** Delay between tries. */
  readonly backoff?: BackoffOptions;
  /** Where a new group starts: `latest` (default) or `beginning` (brokers with `replay`). */
  readonly from?: 'latest' | 'beginning';
  /** Reject unknown event names (dead-lettered as `invalid`) instead of delivering them as `UnknownEvent`. */
  readonly strict?: boolean;
  /** Aborting it closes the subscription (gracefully, as `close()` does). */
  readonly signal?: AbortSignal;
  /**
   * Called with every dead-lettered event, after it reached the broker's dead-letter destination. Required for
   * brokers that have none (`capabilities.deadLetter === 'none'`): an event is never dropped silently.
   */
  readonly onDeadLetter?: (deadLetter: DeadLetter) => void | Promise<void>;
  /** Errors that concern no single event (a failed ack, a lost connection being recovered). */
  readonly onError?: (error: Error) => void;
}

export interface SubscriptionStats {
  /** Messages received from the broker. */
  readonly received: number;
  /** Handled successfully and acknowledged. */
  readonly acked: number;
  /** Handler retries (attempts after the first). */
  readonly retried: number;
  readonly deadLettered: number;
  /** Messages the broker marked as delivered before. */
  readonly redelivered: number;
}

/** A running subscription. It is also an async iterator when created without a handler. */
export interface Subscription {
  /** Resolves once the broker is consuming (queues declared, group joined). */
  readonly ready: Promise<void>;
  /** Resolves once the subscription has closed. */
  readonly closed: Promise<void>;
  readonly stats: SubscriptionStats;
  /**
   * Graceful drain: no new deliveries, in-flight handlers finish and are acknowledged, undelivered messages go back
   * to the group, then it resolves. Idempotent.
   */
  close(): Promise<void>;
}

/** A subscription read with `for await`: each event is acknowledged when the loop asks for the next one. */
export interface EventStream extends Subscription, AsyncIterable<EventEnvelope<AnyEvent>> {}

export interface HealthReport {
  readonly ready: boolean;
  readonly broker: string;
  /** Events waiting in the publish buffer. */
  readonly buffered: number;
  readonly subscriptions: number;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** A Rasa-compatible event broker. Every adapter returns one of these. */
export interface Broker<Client = unknown> {
  /** The adapter name (`amqp`, `kafka`, `memory`, …). */
  readonly name: string;
  readonly capabilities: Capabilities;
  /** The underlying client, for what Parley does not cover. */
  readonly client: Client;
  /**
   * Publishes one event. Resolves once the broker durably accepted it (publisher confirm, ack, offset). While the
   * broker is unreachable the event waits in a bounded buffer and goes out in order once it is back.
   * @throws EventValidationError at once for an invalid event; BufferFullError when the buffer is full;
   *         BrokerClosedError after close(); PublishError when the broker refused it.
   */
  publish(envelope: EventEnvelope<AnyEvent>, options?: PublishOptions): Promise<void>;
  /** Publishes several events, in order, with one result per entry (never throws for a single entry). */
  publishMany(
    envelopes: readonly EventEnvelope<AnyEvent>[],
    options?: PublishOptions,
  ): Promise<PublishResult[]>;
  /** Subscribes with one handler for every event. */
  subscribe(handler: EventHandler, options?: SubscribeOptions): Subscription;
  /** Subscribes with a handler per event type. */
  subscribe(handlers: EventHandlers, options?: SubscribeOptions): Subscription;
  /** Subscribes as an async iterator: `for await (const event of broker.subscribe({ group }))`. */
  subscribe(options?: SubscribeOptions): EventStream;
  /** Resolves once every publish made so far has been accepted (or has failed). */
  flush(options?: { readonly timeoutMs?: number }): Promise<void>;
  /** True while the broker is connected. */
  isReady(): boolean;
  /** Resolves once the first connection is up. */
  ready(options?: { readonly timeoutMs?: number }): Promise<void>;
  health(): Promise<HealthReport>;
  /**
   * Flushes (up to `timeoutMs`, default 30 s: what is still unsent then is rejected, never silently lost), drains
   * every subscription, closes the connection. Idempotent: every call returns the same promise.
   */
  close(options?: { readonly timeoutMs?: number }): Promise<void>;
}

// ─── What an adapter implements ──────────────────────────────────────────────────────────────────────────────

/** One message to send: the encoded event and what brokers route or group by. */
export interface OutgoingMessage {
  readonly body: Uint8Array;
  /** The conversation: Kafka key, SQS MessageGroupId, Redis field. */
  readonly senderId: string;
  readonly eventName: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** The outcome of one message of a batch. `retryable` failures are sent again after a backoff, in order. */
export type SendOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: Error; readonly retryable: boolean };

/** One message as the broker delivered it. */
export interface Delivery {
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  /** The conversation, when the broker carries it outside the body (Kafka key); otherwise read from the body. */
  readonly senderId?: string;
  /** The broker delivered this message before. */
  readonly redelivered: boolean;
  /** Acknowledges: the broker will not deliver it again. */
  ack(): Promise<void>;
  /** Hands it back to the group, to be delivered again (to this consumer or another). */
  release(): Promise<void>;
}

export interface DriverConsumeOptions {
  readonly group: string;
  /** Most unacknowledged deliveries at a time. */
  readonly prefetch: number;
  readonly from: 'latest' | 'beginning';
  readonly ordering: 'per-sender' | 'none';
}

export interface DriverConsumer {
  /** Stops new deliveries; those already made stay unacknowledged until acked or released. */
  stop(): Promise<void>;
  /** Detaches the consumer; any delivery still unacknowledged goes back to the group. */
  close(): Promise<void>;
}

/** Injectable faults, for drivers without a network connection to cut (the conformance chaos tier uses them). */
export interface DriverFaults {
  /** Acts as if the connection dropped: sends fail as retryable, unacknowledged deliveries go back. */
  cut(): Promise<void>;
  restore(): Promise<void>;
}

/**
 * The adapter's side of the contract: translation to one broker, nothing more. Everything else (encoding,
 * validation, buffering while disconnected, retries and backoff, dead-letter policy, ordering, concurrency,
 * draining, idempotent close) is `defineBroker`'s.
 */
export interface BrokerDriver<Client = unknown> {
  /** Short adapter name, used in error prefixes: `[parley] [amqp] …`. */
  readonly name: string;
  readonly capabilities: Capabilities;
  /** The destination (exchange, topic, stream, queue, file), for dead letters and messages. */
  readonly destination: string;
  /** The wire format this broker publishes by default (AMQP and file: `python`, as Rasa writes). */
  readonly defaultFormat: WireFormat;
  /** The group a subscription joins when it names none. */
  readonly defaultGroup: string;
  readonly client: Client;
  /**
   * Connects (and declares topology). `defineBroker` calls it once, retrying with backoff until it succeeds or the
   * broker closes; after that the driver keeps itself connected (and its consumers consuming) on its own.
   */
  connect(signal: AbortSignal): Promise<void>;
  /** Sends a batch; resolves with one outcome per message once the broker accepted (or refused) each. */
  send(batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]>;
  /** Starts delivering a group's messages to `deliver`, at most `prefetch` unacknowledged at a time. */
  consume(options: DriverConsumeOptions, deliver: (delivery: Delivery) => void): Promise<DriverConsumer>;
  /** Stores a dead letter at the broker's dead-letter destination. Absent when `capabilities.deadLetter` is `none`. */
  deadLetter?(deadLetter: DeadLetter): Promise<void>;
  isReady(): boolean;
  /** Extra health details (never credentials). */
  health?(): Promise<Readonly<Record<string, unknown>>>;
  /** Fault injection for brokers with no network connection to cut (memory, file). */
  readonly faults?: DriverFaults;
  /** Closes connections. Called once, after publishes flushed and subscriptions drained. */
  close(): Promise<void>;
}

/** Options `defineBroker` takes from the user, on top of what the driver decides. */
export interface BrokerOptions {
  /** Wire format for publishing; default: the driver's (`python` where Rasa reads the bytes). */
  readonly format?: WireFormat;
  /** Events held while the broker is unreachable; a publish beyond it rejects. Default 10,000. */
  readonly bufferSize?: number;
  /** Largest batch handed to the driver at once. Default 500. */
  readonly maxBatch?: number;
  /** Backoff between connection attempts and between resends of a retryable failure. */
  readonly reconnect?: BackoffOptions;
  /**
   * Attempts at the first connection before giving up (Rasa's `connection_attempts`). Giving up rejects what waits
   * for the connection (publishes, ready(), subscriptions); the next use starts over. Default: unlimited.
   */
  readonly connectAttempts?: number;
  /** Reject unknown event names on publish. Default false. */
  readonly strict?: boolean;
  /** Default `concurrency` (and broker prefetch) of subscriptions that set none. Default 1. */
  readonly concurrency?: number;
  /** Warnings (a reconnect, a config key Parley ignores). Default: process.emitWarning. Never gets credentials. */
  readonly onWarning?: (message: string) => void;
}

export type { AnyEvent, EventEnvelope, RasaEvent, UnknownEvent };
