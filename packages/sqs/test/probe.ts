/** The conformance oracle: raw @aws-sdk/client-sqs reads and writes of the queues, independent of the adapter. */
import { randomUUID } from 'node:crypto';
import {
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Probe, ProbeMessage } from '@parley/conformance';
import { DEAD_LETTER_ATTRIBUTE } from '../src/index.js';
import { deadLetterName, queueName } from './support.js';

/** A message as the adapter writes it: the body, its string attributes as headers (a dead letter's unpacked). */
export function probeMessage(message: Message): ProbeMessage {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    if (value.StringValue === undefined) continue;
    if (name === DEAD_LETTER_ATTRIBUTE) Object.assign(headers, JSON.parse(value.StringValue));
    else headers[name] = value.StringValue;
  }
  return { body: new Uint8Array(Buffer.from(message.Body ?? '', 'utf8')), headers };
}

const urlOf = async (sqs: SQSClient, name: string): Promise<string | undefined> => {
  try {
    return (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch {
    return undefined;
  }
};

/**
 * Drains a queue: every message received and deleted. A FIFO queue hands out nothing more of a group while one of
 * its messages is in flight, so reading without deleting would see the first of each group only.
 */
export async function drain(sqs: SQSClient, url: string): Promise<Message[]> {
  const all: Message[] = [];
  for (let quiet = 0; quiet < 2; ) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    quiet = Messages.length === 0 ? quiet + 1 : 0;
    for (const m of Messages) {
      all.push(m);
      await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }));
    }
  }
  return all;
}

export function sqsProbe(sqs: () => SQSClient, fifo: boolean): Probe {
  /** Dead letters read so far, per destination: reading them takes them out of their queue. */
  const letters = new Map<string, ProbeMessage[]>();
  return {
    async publishRaw(destination, body, options) {
      // What a foreign producer writes: the body, sender_id and headers as String attributes.
      const url = await urlOf(sqs(), queueName(destination, fifo));
      const attributes = Object.entries({
        ...(options?.senderId === undefined ? {} : { sender_id: options.senderId }),
        ...options?.headers,
      }).map(([k, v]) => [k, { DataType: 'String', StringValue: v }]);
      await sqs().send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: Buffer.from(body).toString('utf8'),
          MessageAttributes: Object.fromEntries(attributes),
          ...(fifo
            ? { MessageGroupId: options?.senderId ?? 'raw', MessageDeduplicationId: randomUUID() }
            : {}),
        }),
      );
    },
    async deadLetters(destination) {
      // One queue is one group: its dead-letter queue holds that group's dead letters only.
      const url = await urlOf(sqs(), deadLetterName(destination, fifo));
      const read = letters.get(destination) ?? [];
      letters.set(destination, read);
      if (url !== undefined) read.push(...(await drain(sqs(), url)).map(probeMessage));
      return [...read];
    },
    async cleanup(destination) {
      for (const name of [queueName(destination, fifo), deadLetterName(destination, fifo)]) {
        const url = await urlOf(sqs(), name);
        if (url)
          await sqs()
            .send(new DeleteQueueCommand({ QueueUrl: url }))
            .catch(() => {});
      }
    },
  };
}
