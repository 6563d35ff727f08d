/**
 * Dead letters through the contract: a group's dead-letter queue read without consuming it, and redriven. A classic
 * queue has no way to peek, so `list` takes every message with basic.get and hands them all back unacknowledged
 * (RabbitMQ puts requeued messages back in their places); `redrive` republishes the chosen ones to the group's own
 * queue with confirms, then acknowledges exactly those in the dead-letter queue.
 */
import { type DeadLetterStore, deadLetterFromHeaders, type StoredDeadLetter } from '@parley/core';
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import type { AmqpSettings } from './options.js';
import { idOf, queueOf, stringHeaders } from './wire.js';

export function amqpDeadLetters(settings: AmqpSettings, connection: () => ChannelModel): DeadLetterStore {
  const deadLetterQueue = (group: string) => settings.deadLetterQueue(queueOf(settings, group));
  const toStored = (group: string, message: GetMessage): StoredDeadLetter => ({
    id: idOf(message),
    ...deadLetterFromHeaders(message.content, stringHeaders(message.properties.headers), {
      group,
      destination: settings.exchange,
    }),
  });
  return {
    async list(group) {
      return held(connection(), deadLetterQueue(group), (messages) =>
        messages.map((m) => toStored(group, m)),
      );
    },

    async redrive(group, letters) {
      const model = connection();
      const queue = queueOf(settings, group);
      const channel = await model.createConfirmChannel();
      channel.on('error', () => {});
      try {
        await channel.assertQueue(queue, { durable: true, exclusive: false, autoDelete: false });
        await channel.bindQueue(queue, settings.exchange, '');
        for (const letter of letters) {
          // To that group's queue only (default exchange, routed by its name), as the message it was.
          channel.publish('', queue, Buffer.from(letter.body), {
            persistent: true,
            ...(letter.messageId === '' ? {} : { messageId: letter.messageId }),
            ...(settings.appId === undefined ? {} : { appId: settings.appId }),
            headers: letter.headers,
          });
        }
        await channel.waitForConfirms();
      } finally {
        await channel.close().catch(() => {});
      }
      // Removed only once RabbitMQ confirmed the copies: a failure in between redrives twice, never loses one.
      const ids = new Set(letters.map((letter) => letter.id));
      await held(model, deadLetterQueue(group), (messages, ch) => {
        for (const message of messages) if (ids.has(idOf(message))) ch.ack(message);
      });
    },
  };
}

/**
 * Takes every message of a queue (unacknowledged) on a channel of its own, runs `use`, then closes the channel:
 * what `use` did not acknowledge goes back to the queue. A queue that does not exist holds nothing.
 */
async function held<T>(
  model: ChannelModel,
  queue: string,
  use: (messages: GetMessage[], channel: Channel) => T,
): Promise<T> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    const messages: GetMessage[] = [];
    let count: number;
    try {
      ({ messageCount: count } = await channel.checkQueue(queue));
    } catch (error) {
      if ((error as { code?: unknown }).code === 404) return use([], channel);
      throw error;
    }
    // At most what it held when asked: dead letters arriving meanwhile wait for the next look.
    for (let i = 0; i < count; i++) {
      const message = await channel.get(queue, { noAck: false });
      if (!message) break;
      messages.push(message);
    }
    return use(messages, channel);
  } finally {
    await channel.close().catch(() => {});
  }
}
