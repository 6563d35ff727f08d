/**
 * Reads the event log from a byte offset on, line by line, as it grows: a partial last line waits for its
 * newline, and a log that was rotated, truncated or rewritten in place is noticed and read again from 0.
 */
import { open, stat } from 'node:fs/promises';
import { CR, LF } from './io.js';

const CHUNK = 1 << 20;

/** What the reader finds. */
export interface LogEvents {
  /**
   * The next line, ending at byte `end` (just past its newline). `body` is undefined for a line with nothing to
   * deliver: a blank line, or the rest of the line a `latest` group started inside (published before it).
   */
  line(end: number, body: Uint8Array | undefined): void;
  /** The log was replaced, truncated or rewritten: the reader starts again from 0. */
  restart(what: string): void;
}

/** Where a reader starts. */
export interface LogStart {
  readonly position: number;
  /** The inode the position belongs to, when known. */
  readonly inode: string | undefined;
  /** The position is in a file that no longer exists: whatever is found next is a new file. */
  readonly gone: boolean;
  /** The position may be inside a line (a `latest` group starting while a line is being written): skip to the next. */
  readonly skipFirst: boolean;
}

/** Whether byte `offset` of `path` sits just after a newline (so a line starts there). */
export async function startsLine(path: string, offset: number): Promise<boolean> {
  if (offset === 0) return true;
  const handle = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, offset - 1);
    return bytesRead === 1 && buffer[0] === LF;
  } finally {
    await handle.close();
  }
}

/** `sender_id` for per-sender ordering: Rasa writes it first, so a regex on the head usually spares a parse. */
export function senderOf(body: Uint8Array): string | undefined {
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const head = /^\{\s*"sender_id"\s*:\s*("(?:[^"\\]|\\.)*")/.exec(bytes.toString('utf8', 0, 1024));
  try {
    const value = head?.[1]
      ? JSON.parse(head[1])
      : (JSON.parse(bytes.toString('utf8')) as { sender_id?: unknown }).sender_id;
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined; // undecodable: delivered anyway, for the core to dead-letter
  }
}

export class LogReader {
  readonly #path: string;
  /** Bytes consumed into complete lines. */
  #position: number;
  /** Bytes read after the last newline, waiting for it. */
  #partial: Buffer = Buffer.alloc(0);
  #inode: string | undefined;
  #gone: boolean;
  #skipFirst: boolean;

  constructor(path: string, start: LogStart) {
    this.#path = path;
    this.#position = start.position;
    this.#inode = start.inode;
    this.#gone = start.gone;
    this.#skipFirst = start.skipFirst;
  }

  /** The log's inode as last seen. */
  get inode(): string | undefined {
    return this.#inode;
  }

  /**
   * Looks for new bytes and reads up to 1 MiB of them into lines. Resolves true when it read something (there
   * may be more at once), false when there was nothing new.
   */
  async poll(events: LogEvents): Promise<boolean> {
    const file = await stat(this.#path).catch(() => undefined);
    if (!file) {
      // Removed (log rotation): whatever comes back is a new file, even if it reuses the inode number.
      this.#gone ||= this.#position + this.#partial.length > 0;
      return false;
    }
    const inode = String(file.ino);
    const position = this.#position + this.#partial.length;
    if (inode === this.#inode && file.size === position && !this.#gone) return false;
    if (this.#gone || (this.#inode !== undefined && inode !== this.#inode))
      this.#restart(inode, 'was replaced', events);
    else if (file.size < position) this.#restart(inode, 'was truncated', events);
    this.#inode = inode;
    if (file.size <= this.#position + this.#partial.length) return false;
    return this.#read(inode, events);
  }

  async #read(inode: string, events: LogEvents): Promise<boolean> {
    const handle = await open(this.#path, 'r');
    try {
      const info = await handle.stat();
      if (String(info.ino) !== inode) return true; // swapped between stat and open: look again
      const from = this.#position + this.#partial.length;
      // The byte before a line start must still be a newline; if not, the file was rewritten in place
      // (copytruncate) and outgrew our offset between two looks.
      const probe = from > 0 && this.#partial.length === 0 && !this.#skipFirst ? 1 : 0;
      const chunk = Buffer.alloc(Math.min(info.size - from, CHUNK) + probe);
      const read = (await handle.read(chunk, 0, chunk.length, from - probe)).bytesRead - probe;
      if (probe && chunk[0] !== LF) {
        this.#restart(inode, 'was rewritten', events);
        return true;
      }
      const fresh = chunk.subarray(probe, probe + Math.max(read, 0));
      const data = this.#partial.length ? Buffer.concat([this.#partial, fresh]) : fresh;
      let start = 0;
      for (let nl = data.indexOf(LF); nl !== -1; nl = data.indexOf(LF, start)) {
        this.#line(this.#position + start, this.#position + nl + 1, data.subarray(start, nl), events);
        start = nl + 1;
      }
      this.#position += start;
      this.#partial = Buffer.from(data.subarray(start));
      return read > 0;
    } finally {
      await handle.close();
    }
  }

  #line(start: number, end: number, raw: Uint8Array, events: LogEvents): void {
    let body = raw.at(-1) === CR ? raw.subarray(0, -1) : raw; // CRLF, from an editor or a Windows tool
    if (start === 0 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3); // BOM
    const skip = this.#skipFirst || body.length === 0;
    this.#skipFirst = false;
    events.line(end, skip ? undefined : body.slice());
  }

  #restart(inode: string, what: string, events: LogEvents): void {
    this.#position = 0;
    this.#partial = Buffer.alloc(0);
    this.#skipFirst = false;
    this.#gone = false;
    this.#inode = inode;
    events.restart(what);
  }
}
