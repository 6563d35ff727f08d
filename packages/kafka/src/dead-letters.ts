/**
 * Dead letters read back and redriven through the contract (`capabilities.redrive`). A Kafka topic is an append-only
 * log, so nothing is removed from the dead-letter topic: a redriven dead letter is marked by a record of its own
 * there (header `x-parley-redriven: <its id>`, no value), and listing leaves marked ones out.
 *
 * - list: the dead-letter topic read from its start to its current end, with a throwaway group that commits
 *   nothing (kafkajs reads only through groups), the group's letters in the order they were dead-lettered.
 * - redrive: each letter is produced to the topic again with its original bytes, key and headers, plus
 *   `x-parley-redrive-group`, so that only that group handles it (other groups pass over it), then marked.
 */
import { randomUUID } from 'node:crypto';
import { type DeadLetterStore, deadLetterFromHeaders, type StoredDeadLetter } from '@parley/core';
import type { IHeaders, Kafka, KafkaMessage, Producer } from 'kafkajs';

/** On a message produced again by a redrive: the one group that handles it. */
export const REDRIVE_GROUP = 'x-parley-redrive-group';
/** On a marker record in the dead-letter topic: the id of the dead letter that was redriven. */
const REDRIVEN = 'x-parley-redriven';
/** How long reading the dead-letter topic to its end may take (a join, then the fetches). */
const READ_TIMEOUT_MS = 60_000;

export function headersOf(raw: IHeaders | undefined): Readonly<Record<string, string>> {
  let count = 0;
  let first = '';
  let firstValue = '';
  let out: Record<string, string> | undefined;
  for (const k in raw) {
    const v = raw[k];
    const value = Array.isArray(v) ? v.at(-1) : v;
    if (value === undefined) continue;
    const text = value.toString();
    if (count++ === 0) {
      first = k;
      firstValue = text;
      continue;
    }
    out ??= { [first]: firstValue };
    out[k] = text;
  }
  return out ?? (count === 0 ? NO_HEADERS : oneHeader(first, firstValue));
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Messages with a single header (`RASA_ENVIRONMENT`, on every message Rasa and Parley write) share one frozen
 * object while name and value stay the same, rather than an object each.
 */
let single: { name: string; value: string; headers: Readonly<Record<string, string>> } | undefined;
function oneHeader(name: string, value: string): Readonly<Record<string, string>> {
  if (single?.value !== value || single.name !== name)
    single = { name, value, headers: Object.freeze({ [name]: value }) };
  return single.headers;
}

/** The group a redriven message is meant for, when it is one. */
export function redriveGroupOf(message: KafkaMessage): string | undefined {
  return message.headers?.[REDRIVE_GROUP]?.toString();
}

interface Read {
  readonly id: string;
  readonly message: KafkaMessage;
}

/** Every message of `topic` up to its end as it is now, partition by partition in offset order. */
async function readToEnd(kafka: Kafka, topic: string): Promise<Read[]> {
  const admin = kafka.admin();
  let ends: Map<number, number>;
  try {
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    ends = new Map(
      offsets.filter((p) => Number(p.high) > Number(p.low)).map((p) => [p.partition, Number(p.high)]),
    );
  } catch (error) {
    // No dead letter yet: the topic does not exist.
    if ((error as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return [];
    throw error;
  } finally {
    await admin.disconnect().catch(() => {});
  }
  if (ends.size === 0) return [];
  const read: Read[] = [];
  const consumer = kafka.consumer({
    groupId: `parley-dead-letters-${randomUUID()}`,
    maxWaitTimeInMs: 200,
    retry: { retries: 3, restartOnFailure: async () => false },
  });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`reading ${topic} to its end took over ${READ_TIMEOUT_MS / 1000} s`)),
        READ_TIMEOUT_MS,
      );
      const done = (error?: unknown) => {
        clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      consumer.on(consumer.events.CRASH, (event) => done(event.payload.error));
      void consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const end = ends.get(batch.partition);
            if (end === undefined) return;
            for (const message of batch.messages) {
              if (Number(message.offset) < end)
                read.push({ id: `${batch.partition}:${message.offset}`, message });
            }
            if (Number(batch.lastOffset()) + 1 >= end) ends.delete(batch.partition);
            if (ends.size === 0) done();
          },
        })
        .catch(done);
    });
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return read;
}

/** The dead-letter store of one topic and its dead-letter topic. */
export function kafkaDeadLetters(options: {
  readonly topic: string;
  readonly deadLetterTopic: string;
  readonly defaultGroup: string;
  readonly partitionBySender: boolean;
  /** The current connection's client and producer; throws when not connected. */
  readonly live: () => { readonly kafka: Kafka; readonly producer: Producer };
}): DeadLetterStore {
  const { topic, deadLetterTopic, defaultGroup, partitionBySender, live } = options;
  return {
    async list(group) {
      const read = await readToEnd(live().kafka, deadLetterTopic);
      const redriven = new Set<string>();
      for (const { message } of read) {
        const id = message.headers?.[REDRIVEN]?.toString();
        if (id !== undefined) redriven.add(id);
      }
      const letters: StoredDeadLetter[] = [];
      for (const { id, message } of read) {
        if (message.headers?.[REDRIVEN] !== undefined || redriven.has(id)) continue;
        const body = message.value ? new Uint8Array(message.value) : new Uint8Array(0);
        const letter = deadLetterFromHeaders(body, headersOf(message.headers), {
          group: defaultGroup,
          destination: topic,
        });
        if (letter.group === group) letters.push({ ...letter, id });
      }
      // Partition by partition is not the order they failed in.
      return letters.sort((a, b) => a.failedAt - b.failedAt);
    },

    async redrive(group, letters) {
      const { producer } = live();
      await producer.send({
        topic,
        acks: -1,
        messages: letters.map((letter) => ({
          key:
            partitionBySender && letter.senderId !== undefined ? Buffer.from(letter.senderId, 'utf8') : null,
          value: Buffer.from(letter.body),
          headers: { ...letter.headers, [REDRIVE_GROUP]: group },
        })),
      });
      // Only once they are back: a failure between the two sends leaves them listed (redriven again, not lost).
      await producer.send({
        topic: deadLetterTopic,
        acks: -1,
        messages: letters.map((letter) => ({ key: null, value: null, headers: { [REDRIVEN]: letter.id } })),
      });
    },
  };
}
