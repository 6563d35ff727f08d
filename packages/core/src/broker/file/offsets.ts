/**
 * A group's durable position (`<path>.parley/<group>.offset`): the byte offset up to which every line is
 * acknowledged, the log's inode (to notice a replaced file), and the delivered mark. Written atomically, so a
 * crash leaves the previous position or the next one, never half of one.
 */
import { readFile, stat } from 'node:fs/promises';
import { codeOf, writeAtomic } from './io.js';
import { type LogStart, startsLine } from './log-reader.js';

export interface GroupPosition {
  /** Every line ending at or before this byte is acknowledged. */
  readonly offset: number;
  /** The log's inode when the position was taken. */
  readonly inode: string | undefined;
  /**
   * The end of the furthest line ever handed out, so that lines a previous consumer of the group received but
   * never acknowledged come back marked `redelivered`, as a broker marks them. It rides along with offset writes
   * and the final one, so after a crash it may lag: a redelivery may then come unmarked.
   */
  readonly delivered: number;
}

/** What an offset file held: `undefined` for none, `null` for one that cannot be read (start again from 0). */
export type SavedPosition = { offset?: unknown; inode?: unknown; delivered?: unknown } | undefined | null;

export async function readPosition(file: string): Promise<SavedPosition> {
  const text = await readFile(file, 'utf8').catch((error: unknown) => {
    if (codeOf(error) === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  try {
    const saved: unknown = JSON.parse(text);
    return typeof saved === 'object' && saved !== null ? saved : null;
  } catch {
    return null;
  }
}

/**
 * Where a group's reader starts: its saved position, unless the log was replaced or truncated since (then 0,
 * with a warning); a new group at the end of the log (`latest`) or at 0 (`beginning`). Also the delivered mark,
 * and whether the group existed (had a position on disk).
 */
export async function startingPoint(
  path: string,
  offsetFile: string,
  group: string,
  from: 'latest' | 'beginning',
  warn: (message: string) => void,
): Promise<{ readonly start: LogStart; readonly delivered: number; readonly existed: boolean }> {
  const file = await stat(path).catch(() => undefined);
  let saved = await readPosition(offsetFile);
  const existed = saved !== undefined;
  if (saved === null) {
    warn(`[parley] [file] unreadable offset ${offsetFile}: group "${group}" starts again from 0`);
    saved = { offset: 0 };
  }
  const savedInode = typeof saved?.inode === 'string' ? saved.inode : undefined;
  let position = 0;
  let delivered = 0;
  let skipFirst = false;
  if (saved === undefined) {
    // The caller writes it at once, so `latest` means "from when the group was created", across restarts too.
    position = from === 'beginning' || !file ? 0 : file.size;
    skipFirst = position > 0 && !(await startsLine(path, position));
  } else if (file && savedInode !== undefined && savedInode !== String(file.ino)) {
    warn(`[parley] [file] ${path} was replaced: group "${group}" starts again from 0`);
  } else if (file && Number(saved.offset) > file.size) {
    warn(`[parley] [file] ${path} was truncated: group "${group}" starts again from 0`);
  } else {
    position = Number(saved.offset) || 0;
    delivered = Math.max(position, Number(saved.delivered) || 0);
  }
  const inode = file ? String(file.ino) : savedInode;
  return { start: { position, inode, gone: !file && position > 0, skipFirst }, delivered, existed };
}

/**
 * Writes a group's position as it moves: at most one write in flight, which loops until the latest position is on
 * disk (the latest wins; positions in between may never be written).
 */
export class PositionWriter {
  readonly #file: string;
  readonly #fsync: boolean;
  readonly #current: () => GroupPosition;
  #saved = '';
  #writer: Promise<void> | undefined;
  #closed = false;

  constructor(file: string, fsync: boolean, current: () => GroupPosition) {
    this.#file = file;
    this.#fsync = fsync;
    this.#current = current;
  }

  /** Resolves once the current position (or a later one) is on disk. */
  save(): Promise<void> {
    // Once closed, nothing writes: the lock, and the file, may already belong to a new reader of the group.
    if (this.#closed) return this.#writer ?? Promise.resolve();
    return this.#save();
  }

  /** The final write; later saves do nothing. */
  close(): Promise<void> {
    const last = this.#save();
    this.#closed = true;
    return last;
  }

  #text(): string {
    const { offset, inode, delivered } = this.#current();
    return `${JSON.stringify({ offset, inode, delivered: Math.max(delivered, offset) })}\n`;
  }

  #save(): Promise<void> {
    // Checked before starting, so the loop always awaits before its `finally` runs and never ends unseen.
    if (!this.#writer && this.#text() !== this.#saved) {
      this.#writer = (async () => {
        try {
          for (let next = this.#text(); next !== this.#saved; next = this.#text()) {
            await writeAtomic(this.#file, next, this.#fsync);
            this.#saved = next;
          }
        } finally {
          this.#writer = undefined;
        }
      })();
    }
    return this.#writer ?? Promise.resolve();
  }
}
