/**
 * The dead-letter file (`<path>.dead-letter.jsonl`): one JSON record per line, shared by every group of the log.
 * Appended to like the log; rewritten (atomically) only to remove the records a redrive sent back.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { DeadLetter, StoredDeadLetter } from '../contract.js';
import { appendLines, LF, noop, readIfExists, tempName } from './io.js';

export const DEAD_LETTER_SUFFIX = '.dead-letter.jsonl';

/**
 * A dead letter as {@link readDeadLetters} reads it back. Headers and destination are not stored: the file broker
 * carries no headers, and the file belongs to one log.
 */
export type FileDeadLetter = Omit<StoredDeadLetter, 'headers' | 'destination'>;

/** One line of the dead-letter file. */
interface DeadLetterRecord {
  /** Absent in records written before ids were stored: those are named by their byte offset (`@<offset>`). */
  id?: string;
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

/** One record with where it sits in the file. */
interface Located {
  readonly letter: FileDeadLetter;
  readonly record: DeadLetterRecord;
  readonly start: number;
  readonly end: number;
}

/** Text of a body: UTF-8 as a string, anything else as base64. */
export const bodyFields = (body: Uint8Array): { body: string } | { bodyBase64: string } =>
  isUtf8(body)
    ? { body: Buffer.from(body).toString('utf8') }
    : { bodyBase64: Buffer.from(body).toString('base64') };

export const bodyOf = (record: { body?: unknown; bodyBase64?: unknown }): Uint8Array =>
  new Uint8Array(
    typeof record.body === 'string'
      ? Buffer.from(record.body, 'utf8')
      : Buffer.from(typeof record.bodyBase64 === 'string' ? record.bodyBase64 : '', 'base64'),
  );

/** The line that stores `deadLetter`, under a new id. */
export function encodeDeadLetter(deadLetter: DeadLetter): Buffer {
  const { group, messageId, reason, error, attempts, failedAt, senderId, body } = deadLetter;
  const record: DeadLetterRecord = {
    id: randomUUID(),
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
function parse(bytes: Buffer): Located[] {
  const found: Located[] = [];
  let start = 0;
  for (let end = bytes.indexOf(LF); end !== -1; start = end + 1, end = bytes.indexOf(LF, start)) {
    let record: DeadLetterRecord;
    try {
      record = JSON.parse(bytes.toString('utf8', start, end));
    } catch {
      continue;
    }
    if (typeof record !== 'object' || record === null || typeof record.group !== 'string') continue;
    const { id, body: _text, bodyBase64: _base64, messageId, ...rest } = record;
    const letter: FileDeadLetter = {
      ...rest,
      id: typeof id === 'string' ? id : `@${start}`,
      messageId: typeof messageId === 'string' ? messageId : '',
      body: bodyOf(record),
    };
    found.push({ letter, record, start, end: end + 1 });
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
  return parse(bytes)
    .map(({ letter }) => letter)
    .filter((letter) => group === undefined || letter.group === group);
}

/** Appends one dead letter. */
export function appendDeadLetter(file: string, deadLetter: DeadLetter, sync: boolean): Promise<void> {
  return appendLines(file, encodeDeadLetter(deadLetter), sync);
}

/**
 * Rewrites the dead-letter file without the records `ids` names; returns how many it removed. Records without a
 * stored id that stay get their offset id written in, since their offsets change with the rewrite.
 *
 * Appends by this process wait (the caller holds the file's `inOrder` chain). Appends by another process while
 * the rewrite runs are copied over before the rename, as often as the file grew; one landing in the instant
 * between the last look and the rename, or written through a descriptor opened before it, goes to the replaced
 * file and is lost. Redrive where no other process is dead-lettering into the same file at that moment (the
 * consumers of a log usually live in one process, since a group is consumed by one process).
 */
export async function removeDeadLetters(
  file: string,
  ids: ReadonlySet<string>,
  sync: boolean,
): Promise<number> {
  const bytes = await readIfExists(file);
  if (bytes === undefined) return 0;
  const kept: Uint8Array[] = [];
  let removed = 0;
  let copied = 0;
  // Lines that are neither removed nor given an id are copied verbatim, unreadable ones included.
  for (const { letter, record, start, end } of parse(bytes)) {
    const remove = ids.has(letter.id);
    const freeze = !remove && typeof record.id !== 'string';
    if (!remove && !freeze) continue;
    kept.push(bytes.subarray(copied, start));
    if (freeze) kept.push(Buffer.from(`${JSON.stringify({ ...record, id: letter.id })}\n`));
    copied = end;
    if (remove) removed++;
  }
  if (removed === 0) return 0;
  kept.push(bytes.subarray(copied));
  const temp = tempName(file);
  try {
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(Buffer.concat(kept));
      // Whatever another process appended since the read comes along.
      for (let size = bytes.length; ; ) {
        const now = (await stat(file).catch(() => undefined))?.size ?? size;
        if (now <= size) break;
        const source = await open(file, 'r');
        try {
          const { buffer, bytesRead } = await source.read(Buffer.alloc(now - size), 0, now - size, size);
          await handle.write(buffer.subarray(0, bytesRead));
          size += bytesRead;
          if (bytesRead === 0) break;
        } finally {
          await source.close();
        }
      }
      if (sync) await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(noop);
    throw error;
  }
  return removed;
}
