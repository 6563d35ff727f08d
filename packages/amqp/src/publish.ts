/**
 * Publishing with confirms on one channel: batches written in the order they were sent, each waiting for the
 * socket to drain in turn, one outcome per message once RabbitMQ confirmed (or refused) it. What only RabbitMQ can
 * tell, it reads from the channel's close: a message over `max_message_size` fails alone, the others are sent again.
 */
import { ConnectionError, hasHeaders, PublishError, SENT, type SendOutcome } from '@parley/core';
import type { Channel, ConfirmChannel, Message } from 'amqplib';
import type { AmqpSettings } from './options.js';
import { describe } from './wire.js';

export interface Outgoing {
  readonly id: string;
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly senderId?: string;
}

/** What RabbitMQ's refusals taught, shared by every publish channel of a driver. */
export interface Learnt {
  /** RabbitMQ's max_message_size once a refusal named it: bigger bodies then fail without costing a channel. */
  maxBodyBytes: number;
}

type Settings = Pick<AmqpSettings, 'confirmTimeoutMs' | 'bufferUnpublished' | 'appId'>;

export class ConfirmPublisher {
  readonly #channel: ConfirmChannel;
  readonly #settings: Settings;
  readonly #learnt: Learnt;
  /** `RASA_ENVIRONMENT`, sent as `app_id` when set. */
  readonly #appId: string | undefined;
  /** The previous batch's writes: the next one starts after them, so that no batch overtakes another. */
  #tail: Promise<void> = Promise.resolve();
  /** Why RabbitMQ closed the channel: 'error' comes before the confirms fail with a bare "channel closed". */
  #error: Error | undefined;
  /** Ids of mandatory messages RabbitMQ returned as unroutable (basic.return comes before their confirm). */
  readonly #returned = new Set<string>();

  constructor(channel: ConfirmChannel, settings: Settings, learnt: Learnt, onClose: (error?: Error) => void) {
    this.#channel = channel;
    this.#settings = settings;
    this.#learnt = learnt;
    this.#appId = settings.appId;
    channel.on('error', (error: Error) => (this.#error = error));
    channel.on('return', (message: Message) => this.#returned.add(String(message.properties.messageId)));
    channel.on('close', () => onClose(this.#error));
  }

  /**
   * One outcome per message. One timer and one promise per batch, not per message: per-message allocations cost
   * several percent of throughput. `mandatory`: a message no queue takes fails instead of vanishing.
   */
  async publish(
    exchange: string,
    routingKey: string,
    batch: readonly Outgoing[],
    mandatory = false,
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
      const late = fail(`no publisher confirm within ${this.#settings.confirmTimeoutMs} ms`);
      for (let i = 0; i < batch.length; i++) settle(i, { ok: false, retryable: true, error: late });
    }, this.#settings.confirmTimeoutMs);
    const confirmed = (i: number, message: Outgoing) => (error: unknown) => {
      if (!error && !(mandatory && this.#returned.delete(message.id))) return settle(i, SENT);
      if (!error) return settle(i, this.#notSent(fail(`unroutable: no queue "${routingKey}" takes it`)));
      const why = this.#error ?? (error as Error);
      const max = /larger than configured max size (\d+)/.exec(why.message)?.[1];
      if (max !== undefined) this.#learnt.maxBodyBytes = Math.min(this.#learnt.maxBodyBytes, Number(max));
      // The message RabbitMQ refused for its size fails alone; the others on the channel are sent again.
      if (message.body.byteLength > this.#learnt.maxBodyBytes) {
        return settle(i, refused(`RabbitMQ refused it: ${describe(why)}`, why));
      }
      settle(i, this.#notSent(fail(`not confirmed: ${describe(why)}`, why)));
    };
    const written = this.#tail.then(async () => {
      for (let i = 0; i < batch.length; i++) {
        const message = batch[i]!;
        const { body, headers, id } = message;
        const max = this.#learnt.maxBodyBytes;
        if (body.byteLength > max) {
          settle(i, refused(`${body.byteLength} bytes, over RabbitMQ's max_message_size (${max} bytes)`));
          continue;
        }
        const content = Buffer.isBuffer(body)
          ? body
          : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
        // One literal of one shape (amqplib skips undefined fields): built by spreading, the properties cost more
        // than half of the adapter's CPU time per publish (measured: 240 ms against 115 ms per 10,000 events).
        const properties = {
          persistent: true,
          appId: this.#appId,
          messageId: id,
          mandatory,
          headers: hasHeaders(headers) ? headers : undefined,
        };
        let writable: boolean;
        try {
          writable = this.#channel.publish(exchange, routingKey, content, properties, confirmed(i, message));
        } catch (error) {
          // amqplib encodes before it writes: a RangeError or TypeError (headers over its 64 KiB table) is this
          // message's own and no retry fixes it; anything else is the channel closing under it.
          const encoding = error instanceof RangeError || error instanceof TypeError;
          settle(
            i,
            encoding
              ? refused(`cannot be encoded: ${describe(error)}`, error)
              : this.#notSent(fail(describe(error))),
          );
          continue;
        }
        // amqplib buffers without limit when the socket is slow: wait for it to drain, as a careful client does.
        if (!writable) await drained(this.#channel);
      }
    });
    this.#tail = written.catch(() => {});
    await written;
    await all;
    clearTimeout(timer);
    return inSenderOrder(batch, outcomes as SendOutcome[]);
  }

  #notSent(error: Error): SendOutcome {
    return { ok: false, retryable: this.#settings.bufferUnpublished, error };
  }
}

const fail = (message: string, cause?: unknown) => new ConnectionError('amqp', message, { cause });

const refused = (message: string, cause?: unknown): SendOutcome => ({
  ok: false,
  retryable: false,
  error: new PublishError('amqp', `publish refused: ${message}`, { cause, code: 'MESSAGE_REFUSED' }),
});

/**
 * The contract's rule for a batch: no message is reported sent when an earlier one of its sender will be sent
 * again (a confirm timeout or a nack can hit one message and not the next), or it would overtake it.
 */
function inSenderOrder(batch: readonly Outgoing[], outcomes: SendOutcome[]): SendOutcome[] {
  const retrying = new Map<string, Error>();
  return outcomes.map((outcome, i) => {
    const sender = batch[i]!.senderId ?? '';
    const earlier = retrying.get(sender);
    if (!outcome.ok && outcome.retryable && !earlier) retrying.set(sender, outcome.error);
    return outcome.ok && earlier ? { ok: false, retryable: true, error: earlier } : outcome;
  });
}

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
