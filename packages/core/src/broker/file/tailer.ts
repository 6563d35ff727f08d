/**
 * One group's reader in this process: it follows the log from the group's durable offset, hands lines to the
 * group's consumers in turn (the per-sender lock spanning all of them), and moves the offset over the
 * acknowledged prefix. It also hands out the group's redriven dead letters, before the log's lines.
 */
import { type FSWatcher, watch } from 'node:fs';
import { mkdir, rmdir } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { AckWindow } from '../ack-window.js';
import type { ConsumerSink, Delivery } from '../contract.js';
import { SenderLock } from '../sender-lock.js';
import { fail, messageOf, noop } from './io.js';
import { acquireLock, releaseLock } from './lock.js';
import { LogReader, senderOf } from './log-reader.js';
import { PositionWriter, startingPoint } from './offsets.js';
import { listRedriveBatches, readRedriveBatch, removeRedriveBatch } from './redrive.js';

const EMPTY = new Uint8Array(0);
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** Lines read ahead of the consumers: enough to keep them busy without loading a whole history into memory. */
const READ_AHEAD = 1000;

/** Where a group's files are, and how to treat them. */
export interface TailerConfig {
  /** Identifies the group's tailer in this process: the log's path and the group. */
  readonly key: string;
  readonly path: string;
  readonly group: string;
  readonly offsetFile: string;
  readonly lockFile: string;
  readonly redriveFolder: string;
  readonly fsync: boolean;
  readonly pollMs: number;
  readonly warn: (message: string) => void;
}

/** One consumer of the group. */
export interface Member {
  readonly readAhead: number;
  readonly perSender: boolean;
  readonly sink: ConsumerSink;
  /** Lines handed to it and not settled. */
  readonly inflight: Set<Line>;
  stopped: boolean;
}

/** One hand-out of a line: settling an older hand-out (taken back since) does nothing. */
interface Handout {
  readonly member: Member;
  /** Aborted when the line is taken back from its consumer (it left, the log was replaced), not handed back. */
  readonly revoked: AbortController;
  /** How it ended, once it has. */
  ended?: 'acked' | 'released' | 'revoked';
}

/** A redrive batch being handed out: deleted once every message of it is acknowledged. */
interface Batch {
  readonly file: string;
  unacked: number;
}

interface Line {
  /** The delivery id: the end offset of its log line (a redriven message keeps its original one). */
  readonly id: string;
  /** Order of arrival: lines handed back go back to their place in the queue. */
  readonly seq: number;
  body: Uint8Array;
  readonly senderId: string | undefined;
  redelivered: boolean;
  handout: Handout | undefined;
  /** Whether its hand-out holds its sender's lock. */
  locked: boolean;
  /** Set for a redriven message: the batch it came in. Log lines are in the ack window instead. */
  readonly batch?: Batch;
}

/** Puts `line` into `queue` (ordered by `seq`) where it belongs. */
function insertInOrder(queue: Line[], line: Line): void {
  let low = 0;
  let high = queue.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (queue[middle]!.seq < line.seq) low = middle + 1;
    else high = middle;
  }
  queue.splice(low, 0, line);
}

// Process-wide, so every consumer of one file and group in this process competes on one reader and one offset.
const tailers = new Map<string, Promise<Tailer>>();
const closings = new Map<string, Promise<void>>();

export class Tailer {
  readonly members: Member[] = [];
  closed = false;
  readonly #cfg: TailerConfig;
  /** Log lines from the durable offset on, until the offset passes them. */
  readonly #window = new AckWindow<Line>();
  /** Log lines to hand out, in log order. */
  #waiting: Line[] = [];
  /** Redriven messages to hand out, in batch order: they go before the log's lines. */
  readonly #redriven: Line[] = [];
  /** Redrive batches read and not yet fully acknowledged, by file. */
  readonly #batches = new Map<string, Batch>();
  readonly #senders = new SenderLock();
  #seq = 0;
  #reader!: LogReader;
  /** Absent for an ephemeral group: it keeps no position. */
  #offsets: PositionWriter | undefined;
  /** Keeps nothing once its last consumer left (the first consumer decides, when the group is new). */
  #ephemeral = false;
  /** End of the furthest log line ever handed out (see `GroupPosition.delivered`). */
  #delivered = 0;
  /** The mark as found on disk: lines ending at or before it were delivered before this tailer opened. */
  #deliveredBefore = 0;
  #redriveDue = true;
  #scheduled = false;
  #pumping = false;
  #again = false;
  #turn = 0;
  #lastError = '';
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;

  private constructor(cfg: TailerConfig) {
    this.#cfg = cfg;
  }

  /** Adds `member` to the group's tailer in this process, opening it (lock, offset, watchers) if needed. */
  static async join(
    cfg: TailerConfig,
    options: { readonly from: 'latest' | 'beginning'; readonly ephemeral?: boolean },
    member: Member,
  ): Promise<Tailer> {
    for (;;) {
      let pending = tailers.get(cfg.key);
      if (!pending) {
        const opening = (async () => {
          await closings.get(cfg.key);
          const tailer = new Tailer(cfg);
          await tailer.#open(options.from, options.ephemeral === true);
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

  /** A redrive batch was written for the group `key` names: its tailer in this process reads it at once. */
  static redriven(key: string): void {
    void tailers.get(key)?.then((tailer) => {
      tailer.#redriveDue = true;
      tailer.wake();
    }, noop);
  }

  async #open(from: 'latest' | 'beginning', ephemeral: boolean): Promise<void> {
    const { path, offsetFile, lockFile, group, warn } = this.#cfg;
    await mkdir(dirname(offsetFile), { recursive: true });
    await acquireLock(lockFile, group, warn);
    try {
      const { start, delivered, existed } = await startingPoint(path, offsetFile, group, from, warn);
      this.#delivered = this.#deliveredBefore = delivered;
      this.#window.reset(start.position);
      this.#reader = new LogReader(path, start);
      // A group that exists stays durable, whoever joins it.
      this.#ephemeral = ephemeral && !existed;
      if (!this.#ephemeral) {
        this.#offsets = new PositionWriter(offsetFile, this.#cfg.fsync, () => ({
          offset: this.#window.committed,
          inode: this.#reader.inode,
          delivered: this.#delivered,
        }));
        await this.#offsets.save();
      }
    } catch (error) {
      await releaseLock(lockFile);
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
    this.#timer = setInterval(() => {
      // Redrives from other processes are only seen by looking: fs.watch does not cover the group's folder.
      this.#redriveDue = true;
      this.wake();
    }, this.#cfg.pollMs);
  }

  /**
   * Schedules a pump; one runs at a time, and a wake during a pump runs it once more. Never synchronous, so that
   * no delivery is made inside `consume`, `ack` or `release`, and a burst of acks costs one pump.
   */
  wake(): void {
    if (this.closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.closed) return;
      this.#pumping = true;
      void this.#pump()
        .then(
          () => (this.#lastError = ''),
          (error: unknown) => {
            const message = messageOf(error);
            if (message !== this.#lastError)
              this.#cfg.warn(`[parley] [file] cannot read ${this.#cfg.path}: ${message}`);
            this.#lastError = message;
          },
        )
        .finally(() => {
          this.#pumping = false;
          if (this.#again) this.wake();
        });
    });
  }

  async #pump(): Promise<void> {
    do {
      this.#again = false;
      if (this.#redriveDue) {
        this.#redriveDue = false;
        await this.#readRedrives();
        if (this.closed) return;
      }
      this.#dispatch();
      if (this.closed || !this.members.some((m) => this.#free(m))) return;
      if (this.#waiting.length >= READ_AHEAD) return;
      const read = await this.#reader.poll(this.#events);
      if (this.closed) return;
      if (read) {
        this.#again = true;
        // Blank and skipped lines may have moved the offset.
        void this.#offsets?.save().catch(noop);
      }
    } while (this.#again);
  }

  readonly #events = {
    line: (end: number, body: Uint8Array | undefined): void => {
      if (body === undefined) {
        this.#window.skip(end);
        return;
      }
      const line = this.#line(String(end), body, end <= this.#deliveredBefore);
      this.#window.add(line, end);
      this.#waiting.push(line);
    },
    restart: (what: string): void => {
      this.#cfg.warn(
        `[parley] [file] ${this.#cfg.path} ${what}: group "${this.#cfg.group}" starts again from 0`,
      );
      // What was read from the old file is gone with it; redriven messages are not the log's and stay.
      for (const line of this.#window.pending()) this.#settle(line, 'revoked');
      this.#waiting = [];
      this.#window.reset(0);
      this.#delivered = this.#deliveredBefore = 0;
      void this.#offsets?.save().catch(noop);
    },
  };

  #line(id: string, body: Uint8Array, redelivered: boolean, batch?: Batch): Line {
    const senderId = senderOf(body);
    return { id, seq: this.#seq++, body, senderId, redelivered, handout: undefined, locked: false, batch };
  }

  /** Reads redrive batches not read yet; batches being handed out are not read twice. */
  async #readRedrives(): Promise<void> {
    for (const file of await listRedriveBatches(this.#cfg.redriveFolder)) {
      if (this.#batches.has(file)) continue;
      const messages = await readRedriveBatch(file);
      if (this.closed) return;
      if (this.#batches.has(file)) continue;
      if (messages.length === 0) {
        await removeRedriveBatch(file).catch(noop);
        continue;
      }
      const batch: Batch = { file, unacked: messages.length };
      this.#batches.set(file, batch);
      for (const { messageId, body } of messages)
        this.#redriven.push(this.#line(messageId, body, true, batch));
    }
  }

  #free(member: Member): boolean {
    return !member.stopped && member.inflight.size < member.readAhead;
  }

  /** Hands waiting lines, redriven ones first, then the log's (oldest first), to consumers with room, in turn. */
  #dispatch(): void {
    const perSender = this.members.some((m) => m.perSender);
    const handed: [Member, Delivery][] = [];
    for (const queue of [this.#redriven, this.#waiting]) {
      let kept = 0;
      let i = 0;
      for (; i < queue.length; i++) {
        const line = queue[i]!;
        const sender = perSender ? line.senderId : undefined;
        if (sender !== undefined && this.#senders.isLocked(sender)) {
          queue[kept++] = line; // its sender's previous line is still in flight
          continue;
        }
        const member = this.#nextFree();
        if (!member) break;
        handed.push([member, this.#handOut(line, member, sender)]);
      }
      for (; i < queue.length; i++) queue[kept++] = queue[i]!;
      queue.length = kept;
    }
    // Delivered after the scan: a handler that acks synchronously must not reshape the queues mid-loop.
    for (const [member, delivery] of handed) member.sink.deliver(delivery);
  }

  #handOut(line: Line, member: Member, sender: string | undefined): Delivery {
    const handout: Handout = { member, revoked: new AbortController() };
    line.handout = handout;
    line.locked = sender !== undefined && this.#senders.acquire(sender);
    member.inflight.add(line);
    const end = line.batch ? 0 : Number(line.id);
    if (end > this.#delivered) this.#delivered = end;
    return {
      id: line.id,
      body: line.body,
      headers: NO_HEADERS,
      redelivered: line.redelivered,
      revoked: handout.revoked.signal,
      ack: () => this.#ack(line, handout),
      release: async () => this.#takeBack(line, handout),
    };
  }

  #nextFree(): Member | undefined {
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const member = this.members[(this.#turn + i) % n];
      if (member && this.#free(member)) {
        this.#turn = (this.#turn + i + 1) % n;
        return member;
      }
    }
    return undefined;
  }

  /** Ends a hand-out: the line leaves its consumer and frees its sender; `revoke` tells the consumer. */
  #settle(line: Line, how: NonNullable<Handout['ended']>): void {
    const handout = line.handout;
    if (!handout) return;
    handout.ended = how;
    handout.member.inflight.delete(line);
    line.handout = undefined;
    if (line.locked && line.senderId !== undefined) this.#senders.release(line.senderId);
    line.locked = false;
    if (how === 'revoked') handout.revoked.abort();
  }

  async #ack(line: Line, handout: Handout): Promise<void> {
    if (handout.ended === 'acked') return;
    if (line.handout !== handout) {
      // Handed or taken back since (its consumer left, the log was replaced): it is delivered again.
      throw fail(
        'not acknowledged: the delivery was taken back and will be delivered again',
        'DELIVERY_TAKEN_BACK',
      );
    }
    this.#settle(line, 'acked');
    line.body = EMPTY;
    const { batch } = line;
    this.wake();
    if (batch) {
      if (--batch.unacked === 0) {
        await removeRedriveBatch(batch.file);
        this.#batches.delete(batch.file);
      }
      return;
    }
    if (this.#window.ack(line)) await this.#offsets?.save();
  }

  /** Back to the group, to be delivered again before anything newer, marked redelivered. */
  #takeBack(line: Line, handout: Handout, revoke = false): void {
    if (line.handout !== handout) return;
    this.#settle(line, revoke ? 'revoked' : 'released');
    line.redelivered = true;
    insertInOrder(line.batch ? this.#redriven : this.#waiting, line);
    this.wake();
  }

  /** Removes a member, its unacked deliveries going back; the last one out closes watchers, offset and lock. */
  async leave(member: Member): Promise<void> {
    const index = this.members.indexOf(member);
    if (index === -1) return;
    this.members.splice(index, 1);
    for (const line of [...member.inflight]) this.#takeBack(line, line.handout!, true);
    if (this.members.length > 0) return;
    this.closed = true;
    tailers.delete(this.#cfg.key);
    this.#watcher?.close();
    clearInterval(this.#timer);
    const closing = (async () => {
      await this.#offsets?.close().catch(noop);
      await releaseLock(this.#cfg.lockFile);
      // Redriven messages still waiting are kept: they left the dead-letter file already.
      if (this.#ephemeral) await rmdir(this.#cfg.redriveFolder).catch(noop);
    })();
    closings.set(this.#cfg.key, closing);
    await closing;
    if (closings.get(this.#cfg.key) === closing) closings.delete(this.#cfg.key);
  }
}
