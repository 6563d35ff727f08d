/**
 * Redrive batches: dead letters on their way back to one group. The event log is shared by every group, so a
 * redrive cannot append to it; each redrive instead writes one batch file into the group's redrive folder
 * (`<path>.parley/<group>.redrive/`), which only that group's tailer reads, and deletes once every message of it
 * is acknowledged. A batch appears whole (written to a temp file, then renamed) and is never appended to, so a
 * redrive in one process and a tailer in another cannot lose a message between them.
 */
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoredDeadLetter } from '../contract.js';
import { bodyFields, bodyOf } from './dead-letters.js';
import { codeOf, LF, readIfExists, writeAtomic } from './io.js';

const BATCH_SUFFIX = '.jsonl';

/** One message of a batch, as the tailer hands it out again. */
export interface RedrivenMessage {
  /** The original message's id (its log line's end offset): a redelivery keeps the id. */
  readonly messageId: string;
  readonly body: Uint8Array;
}

let batches = 0;
const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** Writes the letters as one batch for the group whose redrive folder is `folder`. */
export async function writeRedriveBatch(
  folder: string,
  letters: readonly StoredDeadLetter[],
  sync: boolean,
): Promise<void> {
  const lines = letters.map(
    (letter) => `${JSON.stringify({ messageId: letter.messageId, ...bodyFields(letter.body) })}\n`,
  );
  // Names sort in the order batches were written (by time, then by writer), which is the order they are read.
  const name = `${pad(Date.now(), 15)}-${pad(process.pid, 10)}-${pad(batches++, 10)}${BATCH_SUFFIX}`;
  await mkdir(folder, { recursive: true });
  await writeAtomic(join(folder, name), lines.join(''), sync);
}

/** The batch files waiting in a redrive folder, oldest first (none when the folder does not exist). */
export async function listRedriveBatches(folder: string): Promise<string[]> {
  const names = await readdir(folder).catch((error: unknown) => {
    if (codeOf(error) === 'ENOENT') return [];
    throw error;
  });
  return names
    .filter((name) => name.endsWith(BATCH_SUFFIX))
    .sort()
    .map((name) => join(folder, name));
}

/** The messages of one batch, in order (a batch deleted meanwhile has none). */
export async function readRedriveBatch(file: string): Promise<RedrivenMessage[]> {
  const bytes = await readIfExists(file);
  if (bytes === undefined) return [];
  const messages: RedrivenMessage[] = [];
  let start = 0;
  for (let end = bytes.indexOf(LF); end !== -1; start = end + 1, end = bytes.indexOf(LF, start)) {
    try {
      const record = JSON.parse(bytes.toString('utf8', start, end)) as {
        messageId?: unknown;
        body?: unknown;
        bodyBase64?: unknown;
      };
      messages.push({
        messageId: typeof record.messageId === 'string' ? record.messageId : '',
        body: bodyOf(record),
      });
    } catch {
      // Batches are written whole: an unreadable line was edited by hand, and is nobody's message.
    }
  }
  return messages;
}

/** Deletes a batch whose messages were all acknowledged. */
export async function removeRedriveBatch(file: string): Promise<void> {
  await unlink(file).catch((error: unknown) => {
    if (codeOf(error) !== 'ENOENT') throw error;
  });
}
