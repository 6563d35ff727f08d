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
import type { Logger } from './log.js';

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
  /**
   * Where one sender's events are handled in publish order, one at a time (with `ordering: 'per-sender'`):
   * - `group`: across every consumer of a group (Kafka keyed partitions, SQS FIFO message groups, memory, file);
   * - `consumer`: within each consumer only, so two consumers of one group may handle one sender's events at once
   *   (RabbitMQ classic queues: the queue hands out messages in order, but to whichever consumer has room);
   * - `none`: no order at all.
   */
  readonly ordering: 'group' | 'consumer' | 'none';
  /** A new group can read what was published before it existed (`from: 'beginning'`): a log, not a queue. */
  readonly replay: boolean;
  /** Where events go after `maxAttempts`: the broker's own dead-letter mechanism, one Parley emulates, or none. */
  readonly deadLetter: 'native' | 'emulated' | 'none';
  /**
   * The driver's `send` takes many messages at once (one round trip for a batch). When false, the publisher hands
   * it one message per call.
   */
  readonly batchPublish: boolean;
  /** Events survive a broker restart once `publish` resolved. */
  readonly persistent: boolean;
  /** Message headers travel natively (AMQP headers, Kafka headers) rather than not at all. */
  readonly headers: boolean;
  /**
   * Deliveries carry the broker's own count of deliveries (`Delivery.deliveryCount`: SQS ApproximateReceiveCount,
   * the Redis pending-entry count, RabbitMQ quorum `x-delivery-count`), which survives a consumer crash: an event
   * that kills its consumer every time still reaches its dead-letter destination after `maxAttempts`.
   */
  readonly deliveryCount: boolean;
  /**
   * Where a failed event is tried again:
   * - `in-process`: the subscription holds the message, sleeps the backoff, calls the handler again;
   * - `broker`: the subscription releases it with the backoff as a delay (`release({ delayMs })`) and the broker
   *   redelivers it, to any consumer of the group; attempts are the broker's delivery count (needs `deliveryCount`).
   */
  readonly retry: 'in-process' | 'broker';
  /**
   * The broker lends a delivery for a limited time and hands it to a peer unless it is renewed (SQS visibility
   * timeout, Redis claims): `Delivery.lease` says how long and how to renew, and core renews while it holds it.
   */
  readonly leases: boolean;
  /** `broker.deadLetters()` lists a group's dead letters and `broker.redrive()` sends them back to it. */
  readonly redrive: boolean;
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
  /** The broker's id of the message (offset, message id, stream entry id): stable across redeliveries. */
  readonly id: string;
  /**
   * 1 on the first try, then 2, 3, … up to `maxAttempts`. Where the broker counts deliveries
   * (`capabilities.deliveryCount`), tries made by consumers that crashed count too.
   */
  readonly attempt: number;
  /** The broker delivered this message before (to this or another consumer): expect duplicates. */
  readonly redelivered: boolean;
  readonly headers: Readonly<Record<string, string>>;
  /** The message exactly as it arrived. */
  readonly body: Uint8Array;
  readonly group: string;
  /**
   * Aborted when the subscription closes while the handler runs, or when the broker took the message back (a
   * partition revoked, a lease lost): long handlers should stop early. Its result is then not acknowledged.
   */
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
  /** The broker's id of the original message (`DeliveryContext.id`). */
  readonly messageId: string;
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

/** A dead letter as its store keeps it: `id` names it in `broker.redrive({ ids })`. */
export interface StoredDeadLetter extends DeadLetter {
  /** The dead letter's id in its store (not the original message's: that is `messageId`). */
  readonly id: string;
}

/** What `broker.redrive()` did. */
export interface RedriveResult {
  /** Dead letters sent back to the group and removed from the store. */
  readonly redriven: number;
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
  /** Handlers running at once. Default 1 (or the broker's `concurrency` option). */
  readonly concurrency?: number;
  /**
   * Deliveries taken from the broker ahead of the handlers (AMQP prefetch, Kafka fetch, SQS receive): at least
   * `concurrency`. Default `concurrency`. Messages read ahead are not available to peers of the group.
   */
  readonly readAhead?: number;
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
  /**
   * A throwaway group for a demo, a `tail` or a test: the broker keeps nothing of it once its last consumer left
   * (AMQP: an exclusive, auto-delete queue; memory and file: no group state or offsets kept). Default false.
   */
  readonly ephemeral?: boolean;
  /** Reject unknown event names (dead-lettered as `invalid`) instead of delivering them as `UnknownEvent`. */
  readonly strict?: boolean;
  /** Aborting it closes the subscription (gracefully, as `close()` does). */
  readonly signal?: AbortSignal;
  /**
   * Called with every dead-lettered event, after it reached the broker's dead-letter destination. Required for
   * brokers that have none (`capabilities.deadLetter === 'none'`): an event is never dropped silently.
   */
  readonly onDeadLetter?: (deadLetter: DeadLetter) => void | Promise<void>;
  /**
   * Errors that concern no single event: a failed ack, a consumer lost and being resumed, and the error that ended
   * the subscription when it cannot go on (its queue cannot be declared, say); `closed` resolves after that one.
   */
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
  /** Deliveries the broker took back while they were held (a partition revoked, a lease lost, a channel closed). */
  readonly revoked: number;
  /** Times the consumer was resumed after its connection or channel was lost. */
  readonly resumed: number;
}

/** A running subscription. It is also an async iterator when created without a handler. */
export interface Subscription {
  /** Resolves once the broker is consuming (queues declared, group joined). */
  readonly ready: Promise<void>;
  /**
   * Resolves once the subscription has closed: by `close()`, its signal, the broker's close, or an error it cannot
   * recover from (reported to `onError` first; `failure` holds it).
   */
  readonly closed: Promise<void>;
  /** The error that ended the subscription, if one did. */
  readonly failure: Error | undefined;
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
  /** Bytes of the events waiting in the publish buffer. */
  readonly bufferedBytes: number;
  readonly subscriptions: number;
  /** Times the connection was lost and made again. */
  readonly reconnects: number;
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
   * The dead letters of a group (default: the broker's default group), oldest first, read from the broker's
   * dead-letter destination. Needs `capabilities.redrive`.
   */
  deadLetters(group?: string): Promise<readonly StoredDeadLetter[]>;
  /**
   * Sends dead letters back to their group (that group only), unchanged, and removes them from the dead-letter
   * destination: all of the group's, or those `ids` names. Needs `capabilities.redrive`.
   */
  redrive(options?: { readonly group?: string; readonly ids?: readonly string[] }): Promise<RedriveResult>;
  /**
   * Flushes (up to `timeoutMs`, default 30 s: what is still unsent then is rejected, never silently lost), drains
   * every subscription, closes the connection. Idempotent: every call returns the same promise.
   */
  close(options?: { readonly timeoutMs?: number }): Promise<void>;
}

// ─── What an adapter implements ──────────────────────────────────────────────────────────────────────────────

/** One message to send: the encoded event and what brokers route or group by. */
export interface OutgoingMessage {
  /**
   * A unique id, the same on every resend of this message: SQS FIFO deduplication id, an idempotency key. Drivers
   * whose broker keeps message ids should send it as the message's id.
   */
  readonly id: string;
  readonly body: Uint8Array;
  /** The conversation: Kafka key, SQS MessageGroupId, Redis field. */
  readonly senderId: string;
  readonly eventName: string;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * The outcome of one message of a batch. `retryable` failures are sent again after a backoff, before anything
 * newer of their sender; others reject that publish with the error.
 */
export type SendOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: Error; readonly retryable: boolean };

/** What the publisher must respect when it hands batches to `send`. Every field is optional. */
export interface PublishLimits {
  /** Messages per batch (SQS: 10). Default: the broker option `maxBatch` (500). */
  readonly maxBatchMessages?: number;
  /** Body bytes per batch (SQS: 256 KiB). Default: unlimited. */
  readonly maxBatchBytes?: number;
  /**
   * Batches awaiting their outcome at once. Default 8. A sender has one batch in flight at a time, unless the
   * driver declares `orderedSends` or keeps no order at all (`capabilities.ordering: 'none'`).
   */
  readonly maxInFlightBatches?: number;
  /**
   * The broker receives the messages of successive `send()` calls in call order, even while earlier calls still
   * await their outcome (one ordered channel or connection: AMQP confirms, a Redis pipeline). A sender's batches are
   * then sent back to back, without waiting for the previous one's outcome. Core reads the outcomes in send order,
   * and once a message failed retryably, reports its sender's later messages in later batches failed too (they are
   * sent again after it: duplicates, never reordering), as a driver does within a batch. Default false.
   *
   * With ordered sends (or `capabilities.ordering: 'none'`), `send()` may also be called from inside a caller's
   * `publish()`, once a full batch waits and the driver is connected: the broker works on it while the caller is
   * still publishing. Whatever `send()` does before its first await then runs in the caller's call.
   */
  readonly orderedSends?: boolean;
  /** The largest body the broker takes: a bigger event's publish rejects at once, naming the limit. */
  readonly maxMessageBytes?: number;
  /**
   * Whether `send()` reads each message's `id`. A driver whose broker has no place for it (Kafka's records carry no
   * id) declares `false`, and core makes none: `id` is then `''`. Default true.
   */
  readonly messageIds?: boolean;
}

/** How a delivery stays with its consumer: the broker hands it to a peer when it is not renewed in time. */
export interface DeliveryLease {
  /** How long the broker keeps it for this consumer, from delivery or from the last renewal. */
  readonly durationMs: number;
  /** Extends the lease by `durationMs` from now. Core calls it well before the lease ends while it holds the delivery. */
  renew(): Promise<void>;
}

/** One message as the broker delivered it. */
export interface Delivery {
  /** The broker's id of the message: offset, message id, stream entry id. Stable across redeliveries. */
  readonly id: string;
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  /** The conversation, when the broker carries it outside the body (Kafka key); otherwise read from the body. */
  readonly senderId?: string;
  /** The broker delivered this message before. */
  readonly redelivered: boolean;
  /** This delivery's number as the broker counts them (1 on the first), where it does (`capabilities.deliveryCount`). */
  readonly deliveryCount?: number;
  /**
   * Aborted when the broker took the message back while it is held (partition revoked, claimed by a peer, lease or
   * channel lost): core stops waiting on it and neither acknowledges nor retries it.
   */
  readonly revoked?: AbortSignal;
  /** Where the broker lends deliveries for a limited time (`capabilities.leases`). */
  readonly lease?: DeliveryLease;
  /**
   * Acknowledges: the broker will not deliver it again. Rejects when the acknowledgement could not be sent (its
   * channel or lease is gone: the broker will deliver it again).
   */
  ack(): Promise<void>;
  /**
   * Hands it back to the group, to be delivered again (to this consumer or another), no sooner than `delayMs`
   * where the broker can delay (`capabilities.retry === 'broker'`).
   */
  release(options?: ReleaseOptions): Promise<void>;
  /**
   * Hands it to the broker's own dead-letter mechanism, when the driver uses one (a native redrive policy):
   * then core calls this instead of `driver.deadLetter` + `ack`.
   */
  reject?(deadLetter: DeadLetter): Promise<void>;
}

/** How a delivery goes back to its group. */
export interface ReleaseOptions {
  /** Redeliver no sooner than this (brokers with `retry: 'broker'`). */
  readonly delayMs?: number;
  /**
   * It never reached a handler (read ahead, then handed back on close): a broker that can should not count this
   * delivery in `deliveryCount`, so that it does not use up an attempt.
   */
  readonly untried?: boolean;
}

export interface DriverConsumeOptions {
  readonly group: string;
  /** Most unacknowledged deliveries at a time (AMQP prefetch, Kafka fetch, SQS receive): core's read-ahead. */
  readonly readAhead: number;
  readonly from: 'latest' | 'beginning';
  readonly ordering: 'per-sender' | 'none';
  /** Keep nothing of the group once its last consumer left (`SubscribeOptions.ephemeral`). */
  readonly ephemeral?: boolean;
}

/** Where a driver's consumer sends what happens to it. */
export interface ConsumerSink {
  /** A delivery for core. Never called inside `send`, `ack` or `release`. */
  deliver(delivery: Delivery): void;
  /**
   * The consumer stopped on its own (its channel closed, its group deleted) while the connection stays up. Core
   * resumes it with a new `consume()` after a backoff, or ends the subscription if that fails for good. A lost
   * connection is reported once, to `connect`'s `lost`, not here.
   */
  lost(error: Error): void;
}

export interface DriverConsumer {
  /** Stops new deliveries; those already made stay unacknowledged until acked or released. */
  stop(): Promise<void>;
  /** Detaches the consumer; any delivery still unacknowledged goes back to the group. */
  close(): Promise<void>;
}

/** What `connect` gets: the broker's lifetime, and whom to tell when the connection is lost. */
export interface ConnectSession {
  /** Aborted when the broker closes: stop trying. */
  readonly signal: AbortSignal;
  /**
   * The connection is gone (socket closed, broker restarted). Core then reconnects with backoff (`connect` again)
   * and resumes every live consumer with a new `consume()`: drivers never reconnect on their own.
   */
  lost(error: Error): void;
}

/** Injectable faults, for drivers without a network connection to cut (the conformance chaos tier uses them). */
export interface DriverFaults {
  /**
   * Acts as if the connection dropped: the driver reports `lost` to its session, sends fail as retryable,
   * unacknowledged deliveries go back (their `revoked` aborts), `connect` waits for `restore`.
   */
  cut(): Promise<void>;
  restore(): Promise<void>;
}

/** Where a driver keeps dead letters, read back and redriven through the contract (`capabilities.redrive`). */
export interface DeadLetterStore {
  /** A group's dead letters, oldest first. */
  list(group: string): Promise<readonly StoredDeadLetter[]>;
  /** Puts these dead letters back into their group (that group only) with their original bytes, then removes them. */
  redrive(group: string, letters: readonly StoredDeadLetter[]): Promise<void>;
}

/**
 * The adapter's side of the contract: translation to one broker, nothing more. Everything else (encoding,
 * validation, connecting and reconnecting, resuming consumers, buffering while disconnected, retries and backoff,
 * leases, dead-letter policy, ordering, concurrency, draining, idempotent close) is `defineBroker`'s.
 *
 * Rules every driver keeps (the conformance suite checks them):
 * - `send` fixes the order of its batch: messages reach the broker in batch order, and a message is not reported
 *   `ok` when an earlier message of the same sender in the batch failed retryably.
 * - `send` resolves with exactly one outcome per message (core fails the batch as a contract error otherwise).
 * - a failure that no retry can fix (too large, refused for its content, not authorised) is `retryable: false`.
 * - `deliver` is never called synchronously from `consume`, `send`, `ack` or `release`.
 * - after `lost` (or before `connect` resolved), `send` fails retryably and `consume` may throw: core waits for the
 *   next `connect` and calls `consume` again for every live consumer.
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
  /** What the publisher respects when it forms batches. */
  readonly limits?: PublishLimits;
  /**
   * Connects (and declares topology). Core calls it for the first connection and again after every `lost`, with
   * backoff, until it resolves or the broker closes.
   */
  connect(session: ConnectSession): Promise<void>;
  /** Sends a batch; resolves with one outcome per message once the broker accepted (or refused) each. */
  send(batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]>;
  /** Starts delivering a group's messages to `sink`, at most `readAhead` unacknowledged at a time. */
  consume(options: DriverConsumeOptions, sink: ConsumerSink): Promise<DriverConsumer>;
  /** Stores a dead letter at the broker's dead-letter destination. Absent when `capabilities.deadLetter` is `none`. */
  deadLetter?(deadLetter: DeadLetter): Promise<void>;
  /** Reads and redrives dead letters. Present when `capabilities.redrive` is true. */
  readonly deadLetters?: DeadLetterStore;
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
  /**
   * Hold publishes while the broker is unreachable (default true). False: a publish rejects as soon as a connection
   * attempt fails, before the first connection too (Rasa's `should_keep_unpublished_messages: false`).
   */
  readonly bufferWhileDisconnected?: boolean;
  /** Bytes (of encoded events) held while the broker is unreachable; a publish beyond it rejects. Default 64 MiB. */
  readonly bufferBytes?: number;
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
  /** Larger message bodies are dead-lettered unparsed (parsing 50 MB blocks the event loop). Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** Default `concurrency` of subscriptions that set none. Default 1. */
  readonly concurrency?: number;
  /** Default `readAhead` of subscriptions that set none (AMQP: `prefetch`). Default: their `concurrency`. */
  readonly readAhead?: number;
  /** Default `maxAttempts` of subscriptions that set none (Redis: `max_attempts`). Default 5. */
  readonly maxAttempts?: number;
  /**
   * Where the broker logs connects, reconnects, retries, dead letters and drains (pino, winston, `console`, …):
   * warnings and errors by default to `process.emitWarning`; debug and info only here, or to stderr with
   * `PARLEY_DEBUG=1`. Never gets credentials.
   */
  readonly logger?: Logger;
  /** Warnings (a reconnect, a dead letter, a config key Parley ignores); overrides `logger.warn`. */
  readonly onWarning?: (message: string) => void;
}

export type { AnyEvent, EventEnvelope, Logger, RasaEvent, UnknownEvent };
