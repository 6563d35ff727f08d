/**
 * File-system primitives of the file broker: appends that keep lines whole, atomic replacement, per-file write
 * order within the process, and the error vocabulary shared by its modules.
 */
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ParleyError } from '../../errors.js';

export const LF = 0x0a;
export const CR = 0x0d;
export const NEWLINE = Buffer.from('\n');

// Out of space, I/O hiccups and descriptor exhaustion pass; a permission or a directory in the way does not.
const RETRYABLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE']);

export const fail = (message: string, code: string, cause?: unknown): ParleyError =>
  new ParleyError(message, code, { scope: 'file', cause });
export const codeOf = (error: unknown): unknown => (error as { code?: unknown } | null)?.code;
export const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
export const noop = (): void => {};

/**
 * Whether a file-system error is worth retrying: a full disk (ENOSPC, EDQUOT), an I/O error, a busy or
 * temporarily unavailable file, too many open files. Other errors (EACCES, EISDIR, EROFS…) will not pass by waiting.
 */
export function isRetryableFileError(error: unknown): boolean {
  const code = codeOf(error);
  return typeof code === 'string' && RETRYABLE.has(code);
}

/** Reads a whole file; a missing one reads as `undefined`. */
export async function readIfExists(file: string): Promise<Buffer | undefined> {
  const handle = await open(file, 'r').catch((error: unknown) => {
    if (codeOf(error) === 'ENOENT') return undefined;
    throw error;
  });
  if (handle === undefined) return undefined;
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Whether the file behind `handle` ends in the middle of a line (its last byte is not a newline). */
async function endsMidLine(handle: FileHandle): Promise<boolean> {
  const { size } = await handle.stat();
  if (size === 0) return false;
  const { buffer, bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, size - 1);
  return bytesRead === 1 && buffer[0] !== LF;
}

/**
 * Appends `data` (whole lines) in one write on an O_APPEND descriptor, so appends of several processes never
 * interleave mid-line. A file that ends mid-line first gets a newline: a writer killed mid-append leaves a torn
 * last line, and appending to it would glue the first new line onto the fragment, losing an event whose publish
 * resolves. Ended, the fragment stays a line of its own (undecodable, so dead-lettered) and the new lines stay
 * whole. The check costs a stat and a one-byte read, so it runs before every append: a writer in another process
 * may die at any time, not only before this one opened the file. A healthy writer of another process caught
 * mid-write (a large write is visible page by page) costs at most a blank line, which readers skip.
 */
export async function appendLines(file: string, data: Uint8Array, sync: boolean): Promise<void> {
  const handle = await open(file, 'a+').catch(async (error: unknown) => {
    if (codeOf(error) !== 'ENOENT') throw error;
    await mkdir(dirname(file), { recursive: true });
    return open(file, 'a+');
  });
  try {
    const bytes = (await endsMidLine(handle)) ? Buffer.concat([NEWLINE, data]) : data;
    let done = 0;
    try {
      while (done < bytes.length) done += (await handle.write(bytes, done)).bytesWritten;
    } catch (error) {
      // Torn by our own failure: ended here, it is one undecodable line rather than half of the next event.
      if (done > 0) await handle.write(NEWLINE).catch(noop);
      throw error;
    }
    if (sync) await handle.datasync();
  } finally {
    await handle.close();
  }
}

let temps = 0;

/** A temporary name beside `file`, unique within this process too. Never ends in `.jsonl`. */
export const tempName = (file: string): string => `${file}.${process.pid}.${temps++}.tmp`;

/** Writes a temp file, then renames it over `file`: a crash leaves the old content or the new, never half. */
export async function writeAtomic(file: string, data: string | Uint8Array, sync: boolean): Promise<void> {
  const temp = tempName(file);
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(data);
    if (sync) await handle.datasync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(noop);
    throw error;
  }
}

const chains = new Map<string, Promise<unknown>>();

/**
 * Runs `task` after every task queued before it for the same file in this process, whichever driver queued it:
 * batches land in call order, and a rewrite of the dead-letter file never races an append of this process.
 */
export function inOrder<T>(file: string, task: () => Promise<T>): Promise<T> {
  const run = (chains.get(file) ?? Promise.resolve()).then(task);
  const tail = run.catch(noop);
  chains.set(file, tail);
  void tail.then(() => {
    if (chains.get(file) === tail) chains.delete(file);
  });
  return run;
}

/** Group names become file names: anything but `[A-Za-z0-9._-]` is %-escaped, so `../x` stays inside. */
export function groupFileName(group: string): string {
  let escaped: string | undefined;
  try {
    escaped = encodeURIComponent(group).replace(
      /[!'()*~]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    );
  } catch {
    // a lone surrogate: not a name any file system would round-trip
  }
  if (escaped === undefined || group.length === 0 || escaped.length > 200) {
    throw fail(
      `invalid group ${JSON.stringify(group)}: use 1 to 200 characters of valid text`,
      'FILE_GROUP_INVALID',
    );
  }
  return escaped;
}
