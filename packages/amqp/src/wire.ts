/** What RabbitMQ names and carries: the queue of a group, the id of a message, headers as strings. */
import { createHash } from 'node:crypto';
import type { Message } from 'amqplib';
import { type AmqpSettings, redactUrl } from './options.js';

/**
 * The queue a group reads. Rasa's `queues` keep their names, so Parley and Rasa's consumers share them; any other
 * group gets a queue of its own exchange, `<exchange_name>.<group>`, because RabbitMQ queue names are global to
 * a vhost and a group must not mix the events of two exchanges.
 */
export function queueOf(settings: Pick<AmqpSettings, 'queues' | 'exchange'>, group: string): string {
  return settings.queues.includes(group) ? group : `${settings.exchange}.${group}`;
}

/**
 * The message's id: its `message_id` property (Parley publishes every event with its publish id), else a hash of
 * its bytes, the same on every redelivery to any consumer (classic queues give messages no id of their own).
 */
export function idOf(message: Message): string {
  const id = message.properties.messageId;
  if (typeof id === 'string' && id !== '') return id;
  return `sha256:${createHash('sha256').update(message.content).digest('hex').slice(0, 32)}`;
}

/** Header values as strings (AMQP tables carry numbers, booleans, byte strings, nested tables). */
export function stringHeaders(headers: Record<string, unknown> | undefined): Record<string, string> {
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

/** An error's message for wrapping in a Parley error: no `[parley]` prefix twice, never a password. */
export function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return redactUrl(message.replace(/^\[parley\](?: \[[^\]]+\])? /, ''));
}
