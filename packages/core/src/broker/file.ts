/**
 * Rasa's file broker (`type: file`): JSON Lines appended to `path`, one `json.dumps(event)` per line, as Rasa's
 * `FileEventBroker` writes them, so Rasa's tools read Parley's file and Parley reads Rasa's.
 *
 * On top of the log, consumers get what a broker gives: per-group durable offsets (`<path>.parley/<group>.offset`),
 * tailing, replay, per-sender ordering and emulated dead letters (`<path>.dead-letter.jsonl`). Competing consumers
 * share a group inside one process; a second process consuming the same group is refused (a lock file), because
 * two readers of one offset file would each deliver every line.
 */
import { isUtf8 } from 'node:buffer';
import { type FSWatcher, watch } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { ParleyError } from '../errors.js';
import type {
  Broker,
  BrokerDriver,
  BrokerOptions,
  Capabilities,
  DeadLetter,
  Delivery,
  DriverConsumer,
  OutgoingMessage,
  SendOutcome,
} from './contract.js';
import { defineBroker } from './define.js';

/** Options of the file broker: Rasa's one `path` key, plus durability and tailing knobs. */
export interface FileBrokerOptions extends BrokerOptions {
  /** The event log, Rasa's `path` key. Default `rasa_event.log`, relative to the working directory. */
  readonly path?: string;
  /**
   * `fdatasync` each batch (and offset) before resolving, so it survives a power loss. Default false: like Rasa's
   * flush, a publish resolves once the data is in the operating system.
   */
  readonly fsync?: boolean;
  /** How often consumers look for new lines in case `fs.watch` misses a change (network file systems). 100 ms. */
  readonly pollIntervalMs?: number;
}

/** `broker.client` of the file broker: where its files are. */
export interface FileBrokerClient {
  /** The event log, absolute. */
  readonly path: string;
  readonly deadLetterPath: string;
  /** Holds `<group>.offset` and `<group>.lock` per consumer group. */
  readonly offsetsDir: string;
}

/** A dead letter as {@link readDeadLetters} reads it back: headers and destination are not stored (one file). */
export type FileDeadLetter = Omit<DeadLetter, 'headers' | 'destination'>;

const LF = 0x0a;
const CR = 0x0d;
const NEWLINE = Buffer.from('\n');
const EMPTY = new Uint8Array(0);
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
const DEAD_LETTER_SUFFIX = '.dead-letter.jsonl';
const CHUNK = 1 << 16;
/** Lines read ahead of the consumers: enough to keep them busy without loading a whole history into memory. */
const READ_AHEAD = 1000;
// Out of space, I/O hiccups and descriptor exhaustion pass; a permission or a directory in the way does not.
const RETRYABLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE']);

const fail = (message: string, code: string, cause?: unknown) =>
  new ParleyError(message, code, { scope: 'file', cause });
const codeOf = (error: unknown): unknown => (error as { code?: unknown } | null)?.code;
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
const noop = () => {};

/**
 * Whether a file-system error is worth retrying: a full disk (ENOSPC, EDQUOT), an I/O error, a busy or
 * temporarily unavailable file, too many open files. Other errors (EACCES, EISDIR, EROFS…) will not pass by waiting.
 */
export function isRetryableFileError(error: unknown): boolean {
  const code = codeOf(error);
  return typeof code === 'string' && RETRYABLE.has(code);
}

/** Appends in one write on an O_APPEND descriptor, so appends of several processes never interleave mid-line. */
async function appendBytes(file: string, data: Uint8Array, sync: boolean): Promise<void> {
  const handle = await open(file, 'a').catch(async (error: unknown) => {
    if (codeOf(error) !== 'ENOENT') throw error;
    await mkdir(dirname(file), { recursive: true });
    return open(file, 'a');
  });
  try {
    let done = 0;
    try {
      while (done < data.length) done += (await handle.write(data, done)).bytesWritten;
    } catch (error) {
      // A torn line would glue itself to the next event; ended here, it is one undecodable line (dead-lettered).
      if (done > 0) await handle.write(NEWLINE).catch(noop);
      throw error;
    }
    if (sync) await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Write to a temp file, then rename: a crash leaves the old offset or the new one, never half of one. */
async function writeAtomic(file: string, text: string, sync: boolean): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(text);
    if (sync) await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
}

/** Group names become file names: anything but `[A-Za-z0-9._-]` is %-escaped, so `../x` stays inside. */
function groupFileName(group: string): string {
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return codeOf(error) === 'EPERM';
  }
}

/** One consumer process per group: two would each deliver every line. A lock left by a dead process is taken over. */
async function acquireLock(lockFile: string, group: string, warn: (m: string) => void): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lockFile, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (error) {
      if (codeOf(error) !== 'EEXIST') throw error;
    }
    const text = await readFile(lockFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    // The owner writes its pid right after creating the file: an empty, fresh lock is being taken right now.
    const fresh = await stat(lockFile).then(
      (s) => Date.now() - s.mtimeMs < 10_000,
      () => false,
    );
    const held = Number.isInteger(pid) ? pid !== process.pid && isAlive(pid) : fresh;
    if (held || attempt >= 2) {
      const who = Number.isInteger(pid) ? `process ${pid}` : 'another process';
      throw fail(
        `group "${group}" is consumed by ${who} (lock file ${lockFile}); stop that consumer, or delete the lock ` +
          'file if it is not a Parley consumer',
        'FILE_GROUP_LOCKED',
      );
    }
    if (pid !== process.pid)
      warn(`[parley] [file] took over the stale lock ${lockFile} of process ${text.trim() || '?'}`);
    // Unlink only what we judged stale, so a process that took it over meanwhile keeps its lock.
    if ((await readFile(lockFile, 'utf8').catch(() => undefined)) === text)
      await unlink(lockFile).catch(noop);
  }
}

/** `sender_id` for per-sender ordering: Rasa writes it first, so a regex on the head usually spares a parse. */
function senderOf(body: Uint8Array): string | undefined {
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

interface Member {
  readonly readAhead: number;
  readonly perSender: boolean;
  readonly deliver: (delivery: Delivery) => void;
  readonly inflight: Set<Line>;
  stopped: boolean;
  /** The driver's simulated outage: asked each time, so a consumer joining mid-outage is paused too. */
  readonly paused: () => boolean;
}

/** Identifies one hand-out of a line: an ack or release of an older hand-out (taken back since) does nothing. */
interface Lease {
  readonly member: Member;
  /** Aborted when the line is taken back from its consumer (outage, truncation) rather than handed back. */
  readonly revoked: AbortController;
}

interface Line {
  /** Byte offset just past its newline: the group offset once this line and all before it are acked. */
  readonly end: number;
  body: Uint8Array;
  readonly senderId: string | undefined;
  state: 'waiting' | 'inflight' | 'acked';
  redelivered: boolean;
  lease: Lease | undefined;
}

interface TailerConfig {
  readonly key: string;
  readonly path: string;
  readonly group: string;
  readonly offsetFile: string;
  readonly lockFile: string;
  readonly fsync: boolean;
  readonly pollMs: number;
  readonly warn: (message: string) => void;
}

// Process-wide, so every consumer of one file and group in this process competes on one reader and one offset.
const tailers = new Map<string, Promise<Tailer>>();
const closings = new Map<string, Promise<void>>();

/** Reads one group's lines from its durable offset and hands them to the group's consumers in turn. */
class Tailer {
  readonly members: Member[] = [];
  closed = false;
  #lines: Line[] = [];
  #readPos = 0;
  #partial: Buffer = Buffer.alloc(0);
  #durable = 0;
  /**
   * End of the furthest line ever handed out. Saved beside the offset, so that lines a previous consumer of the
   * group received but never acknowledged come back marked `redelivered`, as a broker would mark them.
   */
  #delivered = 0;
  /** The mark as found on disk: lines ending at or before it were delivered before this tailer opened. */
  #deliveredBefore = 0;
  #inode: string | undefined;
  #skipFirst = false;
  #gone = false;
  #saved = '';
  #writer: Promise<void> | undefined;
  #pumping = false;
  #again = false;
  #rr = 0;
  #lastError = '';
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;

  private constructor(readonly cfg: TailerConfig) {}

  /** Adds `member` to the group's tailer in this process, opening it (lock, offset, watchers) if needed. */
  static async join(cfg: TailerConfig, from: 'latest' | 'beginning', member: Member): Promise<Tailer> {
    for (;;) {
      let pending = tailers.get(cfg.key);
      if (!pending) {
        const opening = (async () => {
          await closings.get(cfg.key);
          const tailer = new Tailer(cfg);
          await tailer.#open(from);
          return tailer;
        })();
        tailers.set(cfg.key, opening);
        opening.catch(() => {
          if (tailers.get(cfg.key) === opening) tailers.delete(cfg.key);
        });
        pending = opening;
      }
      const tailer = await pending;
      if (tailer.closed) continue; // its last member left while we waited: open a fresh one
      tailer.members.push(member);
      tailer.wake();
      return tailer;
    }
  }

  async #open(from: 'latest' | 'beginning'): Promise<void> {
    const { path, offsetFile, lockFile, group } = this.cfg;
    await mkdir(dirname(offsetFile), { recursive: true });
    await acquireLock(lockFile, group, this.cfg.warn);
    try {
      const file = await stat(path).catch(() => undefined);
      const text = await readFile(offsetFile, 'utf8').catch((error: unknown) => {
        if (codeOf(error) === 'ENOENT') return undefined;
        throw error;
      });
      let saved: { offset?: unknown; inode?: unknown; delivered?: unknown } | undefined;
      try {
        saved = text === undefined ? undefined : JSON.parse(text);
      } catch {
        this.cfg.warn(
          `[parley] [file] unreadable offset ${offsetFile}: group "${group}" starts again from 0`,
        );
        saved = { offset: 0 };
      }
      this.#inode = file ? String(file.ino) : typeof saved?.inode === 'string' ? saved.inode : undefined;
      if (saved === undefined) {
        // Written at once, so `latest` means "from when the group was created", across restarts too.
        this.#durable = from === 'beginning' || !file ? 0 : file.size;
        if (this.#durable > 0) this.#skipFirst = !(await this.#endsLine(this.#durable));
      } else if (file && typeof saved.inode === 'string' && saved.inode !== String(file.ino)) {
        this.cfg.warn(`[parley] [file] ${path} was replaced: group "${group}" starts again from 0`);
      } else if (file && Number(saved.offset) > file.size) {
        this.cfg.warn(`[parley] [file] ${path} was truncated: group "${group}" starts again from 0`);
      } else {
        this.#durable = Number(saved.offset) || 0;
        this.#delivered = this.#deliveredBefore = Math.max(this.#durable, Number(saved.delivered) || 0);
      }
      this.#readPos = this.#durable;
      this.#gone = !file && this.#durable > 0;
      await this.#persist();
    } catch (error) {
      await unlink(lockFile).catch(noop);
      throw error;
    }
    try {
      this.#watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
        if (name === null || name === basename(path)) this.wake();
      });
      this.#watcher.on('error', () => this.#watcher?.close()); // the poll below still sees every change
    } catch {
      // fs.watch is unsupported here: polling alone
    }
    this.#timer = setInterval(() => this.wake(), this.cfg.pollMs);
  }

  /** Whether `offset` sits just after a newline: `latest` must not start in the middle of a line being written. */
  async #endsLine(offset: number): Promise<boolean> {
    const handle = await open(this.cfg.path, 'r');
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, offset - 1);
      return bytesRead === 1 && buffer[0] === LF;
    } finally {
      await handle.close();
    }
  }

  /** Runs one pump at a time; a wake during a pump runs it once more. */
  wake(): void {
    if (this.closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump()
      .then(
        () => (this.#lastError = ''),
        (error: unknown) => {
          const message = messageOf(error);
          if (message !== this.#lastError)
            this.cfg.warn(`[parley] [file] cannot read ${this.cfg.path}: ${message}`);
          this.#lastError = message;
        },
      )
      .finally(() => {
        this.#pumping = false;
        if (this.#again) this.wake();
      });
  }

  async #pump(): Promise<void> {
    do {
      this.#again = false;
      this.#dispatch();
      if (this.closed || !this.members.some((m) => this.#free(m))) return;
      if (this.#lines.filter((l) => l.state === 'waiting').length >= READ_AHEAD) return;
      const file = await stat(this.cfg.path).catch(() => undefined);
      if (!file) {
        // Removed (log rotation): whatever comes back is a new file, even if it reuses the inode number.
        this.#gone = this.#readPos + this.#partial.length > 0;
        return;
      }
      const inode = String(file.ino);
      const position = this.#readPos + this.#partial.length;
      if (inode === this.#inode && file.size === position && !this.#gone) continue;
      if (this.#gone || (this.#inode !== undefined && inode !== this.#inode))
        this.#restart(inode, 'was replaced');
      else if (file.size < position) this.#restart(inode, 'was truncated');
      this.#inode = inode;
      if (file.size > this.#readPos + this.#partial.length) await this.#read(inode);
    } while (this.#again);
  }

  /** Reads up to 1 MiB of new bytes into lines; a partial last line waits in `#partial` for its newline. */
  async #read(inode: string): Promise<void> {
    const handle = await open(this.cfg.path, 'r');
    try {
      const info = await handle.stat();
      if (String(info.ino) !== inode) {
        this.#again = true; // swapped between stat and open: look again
        return;
      }
      const from = this.#readPos + this.#partial.length;
      // The byte before a line start must still be a newline; if not, the file was rewritten in place
      // (copytruncate) and outgrew our offset between two looks.
      const probe = from > 0 && this.#partial.length === 0 && !this.#skipFirst ? 1 : 0;
      const chunk = Buffer.alloc(Math.min(info.size - from, 16 * CHUNK) + probe);
      const read = (await handle.read(chunk, 0, chunk.length, from - probe)).bytesRead - probe;
      if (this.closed) return;
      if (probe && chunk[0] !== LF) {
        this.#restart(inode, 'was rewritten');
        this.#again = true;
        return;
      }
      const fresh = chunk.subarray(probe, probe + Math.max(read, 0));
      const data = this.#partial.length ? Buffer.concat([this.#partial, fresh]) : fresh;
      const end = data.length;
      let start = 0;
      for (let nl = data.indexOf(LF, start); nl !== -1 && nl < end; nl = data.indexOf(LF, start)) {
        this.#addLine(this.#readPos + start, this.#readPos + nl + 1, data.subarray(start, nl));
        start = nl + 1;
      }
      this.#readPos += start;
      this.#partial = Buffer.from(data.subarray(start, end));
      if (read > 0) this.#again = true;
    } finally {
      await handle.close();
    }
    if (this.#advance()) void this.#persist().catch(noop);
  }

  #addLine(start: number, end: number, raw: Uint8Array): void {
    let body = raw.at(-1) === CR ? raw.subarray(0, -1) : raw; // CRLF, from an editor or a Windows tool
    if (start === 0 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3); // BOM
    // Blank lines are nobody's event; the rest of a line `latest` started inside was published before the group.
    const skip = this.#skipFirst || body.length === 0;
    this.#skipFirst = false;
    this.#lines.push({
      end,
      body: skip ? EMPTY : body.slice(),
      senderId: skip ? undefined : senderOf(body),
      state: skip ? 'acked' : 'waiting',
      redelivered: end <= this.#deliveredBefore,
      lease: undefined,
    });
  }

  #free(member: Member): boolean {
    return !member.stopped && !member.paused() && member.inflight.size < member.readAhead;
  }

  /** Hands waiting lines, oldest (so released ones) first, to consumers with room, round-robin. */
  #dispatch(): void {
    const perSender = this.members.some((m) => m.perSender);
    const busy = new Set<string>();
    if (perSender) {
      for (const m of this.members)
        for (const l of m.inflight) if (l.senderId !== undefined) busy.add(l.senderId);
    }
    const handed: [Member, Delivery][] = [];
    for (const line of this.#lines) {
      if (line.state !== 'waiting' || (perSender && line.senderId !== undefined && busy.has(line.senderId)))
        continue;
      const member = this.#nextFree();
      if (!member) break;
      const lease: Lease = { member, revoked: new AbortController() };
      line.lease = lease;
      line.state = 'inflight';
      if (line.end > this.#delivered) this.#delivered = line.end;
      member.inflight.add(line);
      if (perSender && line.senderId !== undefined) busy.add(line.senderId);
      handed.push([
        member,
        {
          id: String(line.end),
          body: line.body,
          headers: NO_HEADERS,
          redelivered: line.redelivered,
          revoked: lease.revoked.signal,
          ack: () => this.#ack(line, lease),
          release: async () => this.#takeBack(line, lease, false),
        },
      ]);
    }
    // Delivered after the scan: a handler that acks synchronously must not reshape the window mid-loop.
    for (const [member, delivery] of handed) member.deliver(delivery);
  }

  #nextFree(): Member | undefined {
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const member = this.members[(this.#rr + i) % n];
      if (member && this.#free(member)) {
        this.#rr = (this.#rr + i + 1) % n;
        return member;
      }
    }
    return undefined;
  }

  #ack(line: Line, lease: Lease): Promise<void> {
    // Taken back since (outage, close, truncation): it is delivered again, as a broker redelivers after a drop.
    if (line.lease !== lease) return Promise.resolve();
    lease.member.inflight.delete(line);
    line.lease = undefined;
    line.state = 'acked';
    line.body = EMPTY;
    const advanced = this.#advance();
    this.wake();
    return advanced ? this.#persist() : Promise.resolve();
  }

  #takeBack(line: Line, lease: Lease | undefined, revoke = true): void {
    if (!lease || line.lease !== lease) return;
    if (revoke) lease.revoked.abort();
    lease.member.inflight.delete(line);
    line.lease = undefined;
    line.state = 'waiting';
    line.redelivered = true;
    this.wake();
  }

  /** Every unacked delivery of `member` goes back to the group, to be delivered again first. */
  takeBackAll(member: Member): void {
    for (const line of [...member.inflight]) this.#takeBack(line, line.lease);
  }

  /** The offset moves only over a contiguous acked prefix: concurrent handlers ack out of order. */
  #advance(): boolean {
    let k = 0;
    while (k < this.#lines.length && this.#lines[k]?.state === 'acked') k++;
    if (k === 0) return false;
    this.#durable = this.#lines[k - 1]?.end ?? this.#durable;
    this.#lines.splice(0, k);
    return true;
  }

  #restart(inode: string, what: string): void {
    this.cfg.warn(`[parley] [file] ${this.cfg.path} ${what}: group "${this.cfg.group}" starts again from 0`);
    for (const line of this.#lines) {
      line.lease?.member.inflight.delete(line);
      line.lease?.revoked.abort();
      line.lease = undefined;
    }
    this.#lines = [];
    this.#readPos = this.#durable = this.#delivered = this.#deliveredBefore = 0;
    this.#partial = Buffer.alloc(0);
    this.#skipFirst = this.#gone = false;
    this.#inode = inode;
    void this.#persist().catch(noop);
  }

  /** At most one offset write in flight; it loops until the latest offset is on disk (latest wins). */
  #persist(final = false): Promise<void> {
    // The delivered mark rides along with offset writes and the final one; after a crash it may lag (documented).
    const text = () =>
      JSON.stringify({
        offset: this.#durable,
        inode: this.#inode,
        delivered: Math.max(this.#delivered, this.#durable),
      }) + '\n';
    // Once closed, only leave() writes: the lock, and the file, may already belong to a new tailer.
    if (!this.#writer && text() !== this.#saved && (final || !this.closed)) {
      // Checked before starting, so the loop always awaits before its `finally` runs and never ends unseen.
      this.#writer = (async () => {
        try {
          for (let next = text(); next !== this.#saved; next = text()) {
            await writeAtomic(this.cfg.offsetFile, next, this.cfg.fsync);
            this.#saved = next;
          }
        } finally {
          this.#writer = undefined;
        }
      })();
    }
    return this.#writer ?? Promise.resolve();
  }

  /** Removes a member, its unacked deliveries going back; the last one out closes watchers, offset and lock. */
  async leave(member: Member): Promise<void> {
    const index = this.members.indexOf(member);
    if (index === -1) return;
    this.members.splice(index, 1);
    this.takeBackAll(member);
    if (this.members.length > 0) return;
    this.closed = true;
    tailers.delete(this.cfg.key);
    this.#watcher?.close();
    clearInterval(this.#timer);
    const closing = (async () => {
      await this.#persist(true).catch(noop);
      await unlink(this.cfg.lockFile).catch(noop);
    })();
    closings.set(this.cfg.key, closing);
    await closing;
    if (closings.get(this.cfg.key) === closing) closings.delete(this.cfg.key);
  }
}

const CAPABILITIES: Capabilities = {
  consumerGroups: true,
  // Within one process; a second process on the same group is refused by the group's lock file.
  competingConsumers: true,
  // One tailer hands out a group's lines to all its consumers (one process per group): the lock is group-wide.
  ordering: 'group',
  replay: true,
  deadLetter: 'emulated',
  batchPublish: true,
  persistent: true,
  headers: false,
  deliveryCount: false,
  retry: 'in-process',
  leases: false,
  redrive: false,
};

/**
 * The file broker's driver: appends to and tails Rasa's JSON Lines event log. Use {@link fileBroker} unless you
 * compose the `Broker` yourself.
 */
export function fileDriver(options: FileBrokerOptions = {}): BrokerDriver<FileBrokerClient> {
  const path = resolve(options.path ?? 'rasa_event.log');
  const client: FileBrokerClient = {
    path,
    deadLetterPath: path + DEAD_LETTER_SUFFIX,
    offsetsDir: `${path}.parley`,
  };
  const fsync = options.fsync ?? false;
  const pollMs = Math.max(5, options.pollIntervalMs ?? 100);
  const warn = options.onWarning ?? ((message: string) => process.emitWarning(message));
  const consumers = new Set<{ readonly tailer: Tailer; readonly member: Member }>();
  let opened = false;
  let cut = false;
  let closed = false;
  // One append at a time per driver, so batches land in call order; across processes, O_APPEND keeps lines whole.
  let writes: Promise<unknown> = Promise.resolve();
  const serial = (task: () => Promise<void>): Promise<void> => {
    const run = writes.then(task);
    writes = run.catch(noop);
    return run;
  };
  const outage = () => fail('storage unavailable (simulated outage)', 'FILE_UNAVAILABLE');

  return {
    name: 'file',
    capabilities: CAPABILITIES,
    destination: path,
    defaultFormat: 'python',
    defaultGroup: 'parley',
    client,

    async connect() {
      await mkdir(dirname(path), { recursive: true });
      opened = true;
    },

    async send(batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]> {
      if (closed || cut) {
        const error = closed ? fail('the broker is closed', 'BROKER_CLOSED') : outage();
        return batch.map(() => ({ ok: false, error, retryable: !closed }));
      }
      const outcomes: (SendOutcome | undefined)[] = [];
      const parts: Uint8Array[] = [];
      for (const message of batch) {
        if (message.body.includes(LF) || message.body.includes(CR)) {
          const error = fail(
            `the event of sender "${message.senderId}" contains a raw line break, which would split it in two lines`,
            'FILE_BODY_MULTILINE',
          );
          outcomes.push({ ok: false, error, retryable: false });
        } else {
          outcomes.push(undefined);
          parts.push(message.body, NEWLINE);
        }
      }
      let result: SendOutcome = { ok: true };
      if (parts.length > 0) {
        await serial(() => appendBytes(path, Buffer.concat(parts), fsync)).catch((cause: unknown) => {
          const error = fail(`cannot append to ${path}: ${messageOf(cause)}`, 'FILE_WRITE_FAILED', cause);
          result = { ok: false, error, retryable: isRetryableFileError(cause) };
        });
      }
      return outcomes.map((outcome) => outcome ?? result);
    },

    async consume(options, sink): Promise<DriverConsumer> {
      if (closed) throw fail('cannot consume: the broker is closed', 'BROKER_CLOSED');
      const name = groupFileName(options.group);
      const cfg: TailerConfig = {
        key: `${path}\u0000${options.group}`,
        path,
        group: options.group,
        offsetFile: `${client.offsetsDir}/${name}.offset`,
        lockFile: `${client.offsetsDir}/${name}.lock`,
        fsync,
        pollMs,
        warn,
      };
      const member: Member = {
        readAhead: Math.max(1, options.readAhead),
        perSender: options.ordering === 'per-sender',
        deliver: (delivery) => sink.deliver(delivery),
        inflight: new Set(),
        stopped: false,
        paused: () => cut,
      };
      const entry = { tailer: await Tailer.join(cfg, options.from, member), member };
      consumers.add(entry);
      return {
        async stop() {
          member.stopped = true;
        },
        async close() {
          if (consumers.delete(entry)) await entry.tailer.leave(member);
        },
      };
    },

    async deadLetter(deadLetter: DeadLetter): Promise<void> {
      if (cut) throw outage();
      const { group, reason, error, attempts, failedAt, senderId, body } = deadLetter;
      const record = {
        group,
        reason,
        error: {
          name: error.name,
          message: error.message,
          ...(error.code === undefined ? {} : { code: error.code }),
        },
        attempts,
        failedAt,
        ...(senderId === undefined ? {} : { senderId }),
        // Not UTF-8 has no JSON string that round-trips its bytes.
        ...(isUtf8(body)
          ? { body: Buffer.from(body).toString('utf8') }
          : { bodyBase64: Buffer.from(body).toString('base64') }),
      };
      await serial(() =>
        appendBytes(client.deadLetterPath, Buffer.from(JSON.stringify(record) + '\n'), fsync),
      ).catch((cause: unknown) => {
        throw fail(
          `cannot append to ${client.deadLetterPath}: ${messageOf(cause)}`,
          'FILE_WRITE_FAILED',
          cause,
        );
      });
    },

    isReady: () => opened && !cut && !closed,

    async health() {
      return { path, consumers: consumers.size, simulatedOutage: cut };
    },

    // A file has no connection to cut: the fault plays the storage being unavailable.
    faults: {
      async cut() {
        cut = true;
        for (const { tailer, member } of consumers) tailer.takeBackAll(member);
      },
      async restore() {
        cut = false;
        for (const { tailer } of consumers) tailer.wake();
      },
    },

    async close() {
      closed = true;
      await Promise.all(
        [...consumers].map(async (entry) => {
          consumers.delete(entry);
          await entry.tailer.leave(entry.member);
        }),
      );
      await writes;
    },
  };
}

/** Rasa's file broker (`type: file` in `endpoints.yml`): `defineBroker(fileDriver(options), options)`. */
export function fileBroker(options: FileBrokerOptions = {}): Broker<FileBrokerClient> {
  return defineBroker(fileDriver(options), options);
}

/**
 * Reads the dead letters of the file broker at `path` (the event log, or its `.dead-letter.jsonl` itself), of one
 * group or all. A missing file has none; a torn last line (a crash mid-write) is skipped.
 */
export async function readDeadLetters(path: string, group?: string): Promise<FileDeadLetter[]> {
  const file = resolve(path.endsWith(DEAD_LETTER_SUFFIX) ? path : path + DEAD_LETTER_SUFFIX);
  const text = await readFile(file, 'utf8').catch((error: unknown) => {
    if (codeOf(error) === 'ENOENT') return '';
    throw error;
  });
  const letters: FileDeadLetter[] = [];
  for (const line of text.split('\n')) {
    let record: Omit<FileDeadLetter, 'body'> & { body?: string; bodyBase64?: string };
    try {
      record = JSON.parse(line);
    } catch {
      continue;
    }
    if (group !== undefined && record.group !== group) continue;
    const { body, bodyBase64, ...rest } = record;
    const bytes = body === undefined ? Buffer.from(bodyBase64 ?? '', 'base64') : Buffer.from(body, 'utf8');
    letters.push({ ...rest, body: new Uint8Array(bytes) });
  }
  return letters;
}
