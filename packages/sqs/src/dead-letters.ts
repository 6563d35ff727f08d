/**
 * Dead letters through the contract (`capabilities.redrive`, with `dead_letter_queue`). SQS cannot peek at a queue,
 * so both calls receive the whole dead-letter queue, hidden for `LIST_VISIBILITY_S`, until a receive returns nothing:
 *
 * - list: then every message is made visible again at once (ChangeMessageVisibilityBatch, visibility 0). A letter's
 *   id is its MessageId in the dead-letter queue, stable across receives. Letters Parley moved carry core's
 *   dead-letter headers in `DEAD_LETTER_ATTRIBUTE`; those SQS's redrive policy moved carry nothing of Parley's:
 *   reason `handler-failed`, the default group, attempts from `max_receive_count` (else ApproximateReceiveCount).
 * - redrive: the chosen letters are received again and held while each is sent back to the queue (its body and
 *   attributes as they were published; FIFO: group `sender_id`, deduplication id `<dead letter id>-redrive`), and
 *   only once the send is confirmed deleted with the receipt handle of that receive. A handle from an earlier
 *   listing would not do: once its message is visible again, AWS may not delete with it (and says nothing), fauxqs
 *   never does. What is not redriven is made visible again: a failure halfway leaves letters listed, never lost.
 *
 * A FIFO queue hands out nothing more of a message group while one of its messages is in flight, so on a FIFO
 * dead-letter queue a listing holds the oldest letter of each sender; the next one shows once that one is redriven.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import {
  ConnectionError,
  type DeadLetter,
  type DeadLetterStore,
  deadLetterFromHeaders,
  PublishError,
  type StoredDeadLetter,
} from '@parley/core';
import type { SqsSettings } from './options.js';

const SCOPE = 'sqs';
/** Where a dead letter's reason, error, attempts and original headers travel (as JSON): one attribute of 10. */
export const DEAD_LETTER_ATTRIBUTE = 'x-parley-dead-letter';
/** How long a listing hides the dead-letter queue's messages: time to receive them all, 10 at a time. */
export const LIST_VISIBILITY_S = 60;

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The body's `sender_id` and `event`, for a letter a foreign producer sent without attributes. */
function peek(body: string): { senderId?: string; event?: string } {
  try {
    const parsed = JSON.parse(body) as { sender_id?: unknown; event?: unknown };
    return {
      ...(typeof parsed.sender_id === 'string' ? { senderId: parsed.sender_id } : {}),
      ...(typeof parsed.event === 'string' ? { event: parsed.event } : {}),
    };
  } catch {
    return {};
  }
}

export interface SqsDeadLetterQueues {
  readonly sqs: SQSClient;
  readonly settings: SqsSettings;
  /** The queue's URL, once connected. */
  queueUrl(): string | undefined;
  /** The dead-letter queue's URL, once connected. */
  deadLetterUrl(): string | undefined;
}

export function sqsDeadLetters({
  sqs,
  settings,
  queueUrl,
  deadLetterUrl,
}: SqsDeadLetterQueues): DeadLetterStore {
  const urls = () => {
    const queue = queueUrl();
    const deadLetters = deadLetterUrl();
    if (queue === undefined || deadLetters === undefined) throw new ConnectionError(SCOPE, 'not connected');
    return { queue, deadLetters };
  };

  // One listing or redrive at a time in this process: each hides the dead-letter queue from the other.
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const result = turn.then(work, work);
    turn = result.catch(() => {});
    return result;
  };

  /** Every message of the dead-letter queue, received and hidden, by MessageId (the latest receive of each). */
  const receiveAll = async (url: string, held: Map<string, Message>): Promise<void> => {
    for (;;) {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: url,
          MaxNumberOfMessages: 10,
          VisibilityTimeout: LIST_VISIBILITY_S,
          WaitTimeSeconds: 0,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['All'],
        }),
      );
      if (Messages.length === 0) return;
      for (const message of Messages) held.set(message.MessageId!, message);
    }
  };

  /** Visible again at once; one that cannot be comes back by itself after `LIST_VISIBILITY_S`. */
  const show = async (url: string, messages: readonly Message[]): Promise<void> => {
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < messages.length; i += 10) {
      const entries = messages
        .slice(i, i + 10)
        .map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 }));
      calls.push(sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url, Entries: entries })));
    }
    await Promise.allSettled(calls);
  };

  /** Receives the whole dead-letter queue, runs `use`, then shows again what `use` did not take. */
  const holding = <T>(url: string, use: (held: Map<string, Message>) => Promise<T>): Promise<T> =>
    exclusive(async () => {
      const held = new Map<string, Message>();
      try {
        await receiveAll(url, held);
        return await use(held);
      } finally {
        await show(url, [...held.values()]);
      }
    });

  const toStored = (message: Message): StoredDeadLetter => {
    const body = message.Body ?? '';
    const headers: Record<string, string> = {};
    let parley: Record<string, string> | undefined;
    for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
      if (value.StringValue === undefined) continue;
      if (name !== DEAD_LETTER_ATTRIBUTE) headers[name] = value.StringValue;
      else {
        try {
          parley = JSON.parse(value.StringValue) as Record<string, string>;
        } catch {
          // not Parley's after all: read as one the redrive policy moved
        }
      }
    }
    const sentAt = Number(message.Attributes?.SentTimestamp ?? 0);
    const fallback = { group: settings.group, destination: settings.queueName };
    const bytes = new Uint8Array(Buffer.from(body, 'utf8'));
    let letter: DeadLetter;
    if (parley !== undefined) {
      letter = deadLetterFromHeaders(bytes, { ...headers, ...parley }, fallback);
      if (letter.failedAt === 0) letter = { ...letter, failedAt: sentAt };
    } else {
      // Moved by the queue's redrive policy: SQS has no consumer groups, so it is the default group's.
      const receives = Number(message.Attributes?.ApproximateReceiveCount ?? 0);
      const senderId = headers.sender_id ?? peek(body).senderId;
      letter = {
        messageId: message.MessageId!,
        reason: 'handler-failed',
        body: bytes,
        headers,
        error: {
          name: 'Error',
          message: `moved to the dead-letter queue by the queue's redrive policy (received more than ${settings.maxReceiveCount ?? 'maxReceiveCount'} times)`,
        },
        // The policy moves a message once it was received maxReceiveCount times; without it, the receive count
        // (which counts this listing's receive, and those of earlier listings, too).
        attempts: settings.maxReceiveCount ?? Math.max(1, receives - 1),
        group: settings.group,
        destination: settings.queueName,
        failedAt: sentAt,
        ...(senderId === undefined ? {} : { senderId }),
      };
    }
    return { ...letter, id: message.MessageId! };
  };

  const oldestFirst = (a: StoredDeadLetter, b: StoredDeadLetter) =>
    a.failedAt - b.failedAt || a.id.localeCompare(b.id);

  /** What the publisher would have sent: the original attributes (event, sender_id, RASA_ENVIRONMENT, headers). */
  const attributesOf = (letter: StoredDeadLetter): Record<string, MessageAttributeValue> => {
    const values: Record<string, string> = {};
    for (const [name, value] of Object.entries(letter.headers)) if (value !== '') values[name] = value;
    const body = peek(Buffer.from(letter.body).toString('utf8'));
    // A foreign producer's message may lack them: added as the publisher would, where SQS's 10 attributes allow.
    const senderId = letter.senderId ?? body.senderId;
    if (values.sender_id === undefined && senderId !== undefined && Object.keys(values).length < 10) {
      values.sender_id = senderId;
    }
    if (values.event === undefined && body.event !== undefined && Object.keys(values).length < 10) {
      values.event = body.event;
    }
    return Object.fromEntries(
      Object.entries(values).map(([name, value]) => [name, { DataType: 'String', StringValue: value }]),
    );
  };

  return {
    async list(group) {
      const { deadLetters } = urls();
      const letters = await holding(deadLetters, async (held) => [...held.values()].map(toStored));
      return letters.filter((letter) => letter.group === group).sort(oldestFirst);
    },

    async redrive(group, letters) {
      const { queue, deadLetters } = urls();
      const missing = await holding(deadLetters, async (held) => {
        const notFound: string[] = [];
        for (const letter of letters) {
          const message = held.get(letter.id);
          if (message === undefined || toStored(message).group !== group) {
            notFound.push(letter.id);
            continue;
          }
          const attributes = attributesOf(letter);
          try {
            await sqs.send(
              new SendMessageCommand({
                QueueUrl: queue,
                MessageBody: message.Body ?? '',
                MessageAttributes: attributes,
                ...(settings.fifo
                  ? {
                      MessageGroupId:
                        attributes.sender_id?.StringValue ?? message.Attributes?.MessageGroupId ?? 'parley',
                      // A redrive tried again after a delete that failed is stored once (within 5 minutes).
                      MessageDeduplicationId: `${letter.id}-redrive`,
                    }
                  : {}),
              }),
            );
          } catch (error) {
            throw new PublishError(
              SCOPE,
              `redrive: SendMessage of dead letter ${letter.id} failed (it and those after it stay in the dead-letter queue): ${messageOf(error)}`,
              { cause: error },
            );
          }
          try {
            await sqs.send(
              new DeleteMessageCommand({ QueueUrl: deadLetters, ReceiptHandle: message.ReceiptHandle }),
            );
          } catch (error) {
            throw new ConnectionError(
              SCOPE,
              `redrive: dead letter ${letter.id} was sent back but DeleteMessage failed: it is still listed (and would be redriven again): ${messageOf(error)}`,
              { cause: error },
            );
          }
          held.delete(letter.id);
        }
        return notFound;
      });
      if (missing.length > 0) {
        throw new ConnectionError(
          SCOPE,
          `redrive: ${missing.length} dead letter(s) were no longer in the dead-letter queue, or held by another reader: ${missing.join(', ')}`,
        );
      }
    },
  };
}
