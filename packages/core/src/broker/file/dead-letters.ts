/** The dead-letter file (`<path>.dead-letter.jsonl`): one JSON record per line, shared by every group of the log. */
import { isUtf8 } from 'node:buffer';
import { resolve } from 'node:path';
import type { DeadLetter } from '../contract.js';
import { appendLines, LF, readIfExists } from './io.js';

export const DEAD_LETTER_SUFFIX = '.dead-letter.jsonl';

/**
 * A dead letter as {@link readDeadLetters} reads it back. Headers and destination are not stored: the file broker
 * carries no headers, and the file belongs to one log.
 */
export type FileDeadLetter = Omit<DeadLetter, 'headers' | 'destination'>;

/** One line of the dead-letter file. */
interface DeadLetterRecord {
  group: string;
  messageId?: string;
  reason: FileDeadLetter['reason'];
  error: FileDeadLetter['error'];
  attempts: number;
  failedAt: number;
  senderId?: string;
  /** The body as text, when it is UTF-8… */
  body?: string;
  /** …and base64 when it is not (no JSON string round-trips bytes that are not UTF-8). */
  bodyBase64?: string;
}

/** Text of a body: UTF-8 as a string, anything else as base64. */
const bodyFields = (body: Uint8Array): { body: string } | { bodyBase64: string } =>
  isUtf8(body)
    ? { body: Buffer.from(body).toString('utf8') }
    : { bodyBase64: Buffer.from(body).toString('base64') };

const bodyOf = (record: { body?: unknown; bodyBase64?: unknown }): Uint8Array =>
  new Uint8Array(
    typeof record.body === 'string'
      ? Buffer.from(record.body, 'utf8')
      : Buffer.from(typeof record.bodyBase64 === 'string' ? record.bodyBase64 : '', 'base64'),
  );

/** The line that stores `deadLetter`. */
export function encodeDeadLetter(deadLetter: DeadLetter): Buffer {
  const { group, messageId, reason, error, attempts, failedAt, senderId, body } = deadLetter;
  const record: DeadLetterRecord = {
    group,
    messageId,
    reason,
    error: {
      name: error.name,
      message: error.message,
      ...(error.code === undefined ? {} : { code: error.code }),
    },
    attempts,
    failedAt,
    ...(senderId === undefined ? {} : { senderId }),
    ...bodyFields(body),
  };
  return Buffer.from(`${JSON.stringify(record)}\n`);
}

/** Every complete, readable record, in file order. A torn last line (a crash mid-write) and garbage are skipped. */
function parse(bytes: Buffer): FileDeadLetter[] {
  const found: FileDeadLetter[] = [];
  let start = 0;
  for (let end = bytes.indexOf(LF); end !== -1; start = end + 1, end = bytes.indexOf(LF, start)) {
    let record: DeadLetterRecord;
    try {
      record = JSON.parse(bytes.toString('utf8', start, end));
    } catch {
      continue;
    }
    if (typeof record !== 'object' || record === null || typeof record.group !== 'string') continue;
    const { body: _text, bodyBase64: _base64, messageId, ...rest } = record;
    found.push({ ...rest, messageId: typeof messageId === 'string' ? messageId : '', body: bodyOf(record) });
  }
  return found;
}

/** Resolves the dead-letter file of a log (or the dead-letter file itself). */
export const deadLetterFileOf = (path: string): string =>
  resolve(path.endsWith(DEAD_LETTER_SUFFIX) ? path : path + DEAD_LETTER_SUFFIX);

/**
 * Reads the dead letters of the file broker at `path` (the event log, or its `.dead-letter.jsonl` itself), of one
 * group or all, oldest first. A missing file has none; a torn last line (a crash mid-write) is skipped.
 */
export async function readDeadLetters(path: string, group?: string): Promise<FileDeadLetter[]> {
  const bytes = await readIfExists(deadLetterFileOf(path));
  if (bytes === undefined) return [];
  return parse(bytes).filter((letter) => group === undefined || letter.group === group);
}

/** Appends one dead letter. */
export function appendDeadLetter(file: string, deadLetter: DeadLetter, sync: boolean): Promise<void> {
  return appendLines(file, encodeDeadLetter(deadLetter), sync);
}
