/**
 * Dead letters as message headers, one mapping for every broker that stores a dead letter as a message (AMQP
 * queues, Kafka topics, Redis streams): the original headers, then `x-parley-*` for why it failed.
 */
import type { DeadLetter, DeadLetterReason } from './contract.js';

/** Longest error message kept in a header: brokers limit header sizes (amqplib's whole table: 64 KiB). */
const MAX_ERROR_CHARS = 2_000;
/** Original headers longer than this are left out of a dead letter, so that it can always be stored. */
const MAX_ORIGINAL_HEADERS_BYTES = 16 * 1024;

const PREFIX = 'x-parley-';
const REASONS: readonly DeadLetterReason[] = ['handler-failed', 'undecodable', 'invalid'];

/**
 * The headers that carry a dead letter: the original ones (left out, and said so, when they are too large to be
 * stored with it) and `x-parley-reason`, `-error`, `-error-name`, `-error-code`, `-attempts`, `-group`,
 * `-destination`, `-failed-at`, `-message-id`, `-sender-id`.
 */
export function deadLetterHeaders(deadLetter: DeadLetter): Record<string, string> {
  let original: Record<string, string> = {};
  let size = 0;
  for (const [key, value] of Object.entries(deadLetter.headers)) {
    if (key.startsWith(PREFIX)) continue; // a redriven dead letter failing again: the new failure's headers win
    size += key.length + value.length;
    original[key] = value;
  }
  const dropped = size > MAX_ORIGINAL_HEADERS_BYTES;
  if (dropped) original = {};
  const { error } = deadLetter;
  return {
    ...original,
    [`${PREFIX}reason`]: deadLetter.reason,
    [`${PREFIX}error`]: error.message.slice(0, MAX_ERROR_CHARS),
    [`${PREFIX}error-name`]: error.name,
    ...(error.code === undefined ? {} : { [`${PREFIX}error-code`]: error.code }),
    [`${PREFIX}attempts`]: String(deadLetter.attempts),
    [`${PREFIX}group`]: deadLetter.group,
    [`${PREFIX}destination`]: deadLetter.destination,
    [`${PREFIX}failed-at`]: String(deadLetter.failedAt),
    [`${PREFIX}message-id`]: deadLetter.messageId,
    ...(deadLetter.senderId === undefined ? {} : { [`${PREFIX}sender-id`]: deadLetter.senderId }),
    ...(dropped ? { [`${PREFIX}headers-dropped`]: String(size) } : {}),
  };
}

/** Reads a dead letter back from its body and headers (the inverse of `deadLetterHeaders`). */
export function deadLetterFromHeaders(
  body: Uint8Array,
  headers: Readonly<Record<string, string>>,
  fallback: { readonly group: string; readonly destination: string },
): DeadLetter {
  const original: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) if (!key.startsWith(PREFIX)) original[key] = value;
  const get = (name: string): string | undefined => headers[PREFIX + name];
  const reason = get('reason') as DeadLetterReason | undefined;
  const code = get('error-code');
  const senderId = get('sender-id');
  return {
    messageId: get('message-id') ?? '',
    reason: reason !== undefined && REASONS.includes(reason) ? reason : 'handler-failed',
    body,
    headers: original,
    error: {
      name: get('error-name') ?? 'Error',
      message: get('error') ?? '',
      ...(code === undefined ? {} : { code }),
    },
    attempts: Number(get('attempts') ?? 0),
    group: get('group') ?? fallback.group,
    destination: get('destination') ?? fallback.destination,
    failedAt: Number(get('failed-at') ?? 0),
    ...(senderId === undefined ? {} : { senderId }),
  };
}
