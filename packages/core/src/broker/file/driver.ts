/**
 * Rasa's file broker (`type: file`): JSON Lines appended to `path`, one `json.dumps(event)` per line, as Rasa's
 * `FileEventBroker` writes them, so Rasa's tools read Parley's file and Parley reads Rasa's.
 *
 * On top of the log, consumers get what a broker gives: per-group durable offsets (`<path>.parley/<group>.offset`),
 * tailing, replay, per-sender ordering, emulated dead letters (`<path>.dead-letter.jsonl`) and their redrive.
 * Competing consumers share a group inside one process; a second process consuming the same group is refused (a
 * lock file), because two readers of one offset file would each deliver every line.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type {
  Broker,
  BrokerDriver,
  BrokerOptions,
  Capabilities,
  ConnectSession,
  DeadLetter,
  DriverConsumer,
  OutgoingMessage,
  SendOutcome,
  StoredDeadLetter,
} from '../contract.js';
import { defineBroker } from '../define.js';
import { makeLog } from '../log.js';
import { appendDeadLetter, DEAD_LETTER_SUFFIX, readDeadLetters, removeDeadLetters } from './dead-letters.js';
import {
  appendLines,
  CR,
  fail,
  groupFileName,
  inOrder,
  isRetryableFileError,
  LF,
  messageOf,
  NEWLINE,
  noop,
} from './io.js';
import { writeRedriveBatch } from './redrive.js';
import { type Member, Tailer, type TailerConfig } from './tailer.js';

/** Options of the file broker: Rasa's one `path` key, plus durability and tailing knobs. */
export interface FileBrokerOptions extends BrokerOptions {
  /** The event log, Rasa's `path` key. Default `rasa_event.log`, relative to the working directory. */
  readonly path?: string;
  /**
   * `fdatasync` each batch (and offset) before resolving, so it survives a power loss. Default false: like Rasa's
   * flush, a publish resolves once the data is in the operating system.
   */
  readonly fsync?: boolean;
  /**
   * How often consumers look for new lines in case `fs.watch` misses a change (network file systems), and for
   * dead letters redriven by another process. 100 ms.
   */
  readonly pollIntervalMs?: number;
}

/** `broker.client` of the file broker: where its files are. */
export interface FileBrokerClient {
  /** The event log, absolute. */
  readonly path: string;
  readonly deadLetterPath: string;
  /** Holds `<group>.offset`, `<group>.lock` and the `<group>.redrive/` folder per consumer group. */
  readonly offsetsDir: string;
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
  redrive: true,
};

/**
 * The file broker's driver: appends to and tails Rasa's JSON Lines event log. Use {@link fileBroker} unless you
 * compose the `Broker` yourself.
 *
 * A file has no connection, so `faults.cut()` plays the storage becoming unavailable as a lost connection: sends
 * fail as retryable, every consumer leaves its group (what it held goes back, its deliveries' `revoked` signals
 * abort), the session is told it is `lost`, and `connect` waits for `restore()`; core then resumes the consumers.
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
  // Where the broker's own warnings go (onWarning, the logger, or process.emitWarning), so that a replaced log or
  // a stale lock is reported beside the reconnects and dead letters.
  const warn = makeLog(options).warn;
  const consumers = new Set<{ readonly tailer: Tailer; readonly member: Member }>();
  let opened = false;
  let cut = false;
  let closed = false;
  /** Bumped by every cut: a consumer that was joining during one leaves at once. */
  let outages = 0;
  let session: ConnectSession | undefined;
  /** `connect()` calls waiting for a restore: called with an error when the driver closes instead. */
  const waiters = new Set<(error?: Error) => void>();
  // Writes go through the file's chain in this process (batches land in call order, whichever driver sent them);
  // close() waits for this driver's. Across processes, O_APPEND keeps lines whole.
  const writing = new Set<Promise<unknown>>();
  const write = <T>(file: string, task: () => Promise<T>): Promise<T> => {
    const run = inOrder(file, task);
    const done = run.then(noop, noop);
    writing.add(done);
    void done.then(() => writing.delete(done));
    return run;
  };
  const outage = () => fail('storage unavailable (simulated outage)', 'FILE_UNAVAILABLE');
  const closedError = () => fail('the broker is closed', 'BROKER_CLOSED');
  const tailerConfig = (group: string): TailerConfig => {
    const name = groupFileName(group);
    return {
      key: `${path}\u0000${group}`,
      path,
      group,
      offsetFile: `${client.offsetsDir}/${name}.offset`,
      lockFile: `${client.offsetsDir}/${name}.lock`,
      redriveFolder: `${client.offsetsDir}/${name}.redrive`,
      fsync,
      pollMs,
      warn,
    };
  };
  const leaveAll = () =>
    Promise.all(
      [...consumers].map(async (entry) => {
        consumers.delete(entry);
        await entry.tailer.leave(entry.member);
      }),
    );

  return {
    name: 'file',
    capabilities: CAPABILITIES,
    destination: path,
    defaultFormat: 'python',
    defaultGroup: 'parley',
    client,

    async connect(next) {
      if (closed) throw closedError();
      if (cut) {
        next.signal.throwIfAborted();
        await new Promise<void>((resolve, reject) => {
          const onAbort = (): void => {
            waiters.delete(done);
            reject(next.signal.reason);
          };
          const done = (error?: Error): void => {
            next.signal.removeEventListener('abort', onAbort);
            if (error === undefined) resolve();
            else reject(error);
          };
          waiters.add(done);
          next.signal.addEventListener('abort', onAbort, { once: true });
        });
      }
      await mkdir(dirname(path), { recursive: true });
      session = next;
      opened = true;
    },

    async send(batch: readonly OutgoingMessage[]): Promise<readonly SendOutcome[]> {
      if (closed || cut) {
        const error = closed ? closedError() : outage();
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
        await write(path, () => appendLines(path, Buffer.concat(parts), fsync)).catch((cause: unknown) => {
          const error = fail(`cannot append to ${path}: ${messageOf(cause)}`, 'FILE_WRITE_FAILED', cause);
          result = { ok: false, error, retryable: isRetryableFileError(cause) };
        });
      }
      return outcomes.map((outcome) => outcome ?? result);
    },

    async consume(consumeOptions, sink): Promise<DriverConsumer> {
      if (closed) throw fail('cannot consume: the broker is closed', 'BROKER_CLOSED');
      if (cut) throw outage();
      const cfg = tailerConfig(consumeOptions.group);
      const member: Member = {
        readAhead: Math.max(1, consumeOptions.readAhead),
        perSender: consumeOptions.ordering === 'per-sender',
        sink,
        inflight: new Set(),
        stopped: false,
      };
      const before = outages;
      const tailer = await Tailer.join(cfg, consumeOptions, member);
      if (closed || outages !== before) {
        // The storage went away (or the driver closed) while the group was being joined.
        await tailer.leave(member);
        throw closed ? fail('cannot consume: the broker is closed', 'BROKER_CLOSED') : outage();
      }
      const entry = { tailer, member };
      consumers.add(entry);
      return {
        async stop() {
          member.stopped = true;
        },
        async close() {
          if (consumers.delete(entry)) await tailer.leave(member);
        },
      };
    },

    async deadLetter(deadLetter: DeadLetter): Promise<void> {
      if (cut) throw outage();
      const file = client.deadLetterPath;
      await write(file, () => appendDeadLetter(file, deadLetter, fsync)).catch((cause: unknown) => {
        throw fail(`cannot append to ${file}: ${messageOf(cause)}`, 'FILE_WRITE_FAILED', cause);
      });
    },

    deadLetters: {
      async list(group: string): Promise<readonly StoredDeadLetter[]> {
        if (cut) throw outage();
        const letters = await readDeadLetters(client.deadLetterPath, group);
        return letters.map((letter) => ({ ...letter, headers: {}, destination: path }));
      },
      /**
       * The letters go into a redrive batch that only `group`'s tailer reads, then leave the dead-letter file. A
       * crash between the two leaves them in both: they are redriven, and listed until redriven again.
       */
      async redrive(group: string, letters: readonly StoredDeadLetter[]): Promise<void> {
        if (cut) throw outage();
        const cfg = tailerConfig(group);
        await writeRedriveBatch(cfg.redriveFolder, letters, fsync);
        Tailer.redriven(cfg.key);
        const file = client.deadLetterPath;
        const ids = new Set(letters.map((letter) => letter.id));
        await write(file, () => removeDeadLetters(file, ids, fsync));
      },
    },

    isReady: () => opened && !cut && !closed,

    async health() {
      return { path, consumers: consumers.size, simulatedOutage: cut };
    },

    faults: {
      async cut() {
        if (cut) return;
        cut = true;
        outages++;
        await leaveAll();
        const lost = session;
        session = undefined;
        lost?.lost(outage());
      },
      async restore() {
        cut = false;
        for (const done of waiters) done();
        waiters.clear();
      },
    },

    async close() {
      closed = true;
      for (const done of waiters) done(closedError());
      waiters.clear();
      await leaveAll();
      await Promise.all(writing);
    },
  };
}

/** Rasa's file broker (`type: file` in `endpoints.yml`): `defineBroker(fileDriver(options), options)`. */
export function fileBroker(options: FileBrokerOptions = {}): Broker<FileBrokerClient> {
  return defineBroker(fileDriver(options), options);
}
