/**
 * A spool directory as a Parley broker (maildir-style), with nothing but `node:fs`: the complete example of
 * docs/writing-an-adapter.md. A destination is a directory:
 *
 *   queue/<group>/<time>-<seq>-<random>.msg   waiting, claimed in name order (`.r.msg`: a redelivery)
 *   claimed/<group>/<name>~<claimed at, ms>    delivered and not acknowledged yet
 *   dead/<group>/<stem>.msg + <stem>.json      dead letters: the original bytes, and why
 *   tmp/                                       files being written, renamed into place once complete
 *
 * Every state change is a `rename` within one file system, which is atomic: a consumer never reads half a
 * message, and of several consumers (in any process) claiming one file exactly one wins.
 */
import { randomBytes } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  type AdapterOptions,
  type Broker,
  type BrokerConfig,
  BrokerConfigError,
  type BrokerDriver,
  type BrokerOptions,
  type Capabilities,
  ConfigError,
  ConnectionError,
  type DriverConsumer,
  defineBroker,
  type OutgoingMessage,
  readOptions,
  type SendOutcome,
} from '@parley/core';

/** Options of `spoolBroker`, on top of `defineBroker`'s (`onWarning`, `bufferSize`, `format`, …). */
export interface SpoolBrokerOptions extends BrokerOptions {
  /** The spool directory of the destination; created when missing. */
  readonly path: string;
  /** How often consumers look for new files (`fs.watch` is only a hint: network drives miss it). 25 ms. */
  readonly pollIntervalMs?: number;
  /** A claim older than this goes back to the queue when its group's next consumer starts. 30 s. */
  readonly leaseMs?: number;
}

/** `broker.client`: where the files are. */
export interface SpoolClient {
  readonly path: string;
}

const capabilities: Capabilities = {
  consumerGroups: true, // a group is a directory: publish writes a copy into each
  competingConsumers: true, // a claim is a rename: exactly one consumer wins it, across processes too
  ordering: 'none', // files are claimed in name order, but nothing holds a sender's next event back
  replay: false, // acknowledged files are deleted
  deadLetter: 'emulated', // Parley decides when; the driver stores them in dead/<group>/
  batchPublish: true,
  persistent: true, // a publish resolves once its files are renamed into place
  headers: false, // a file is the body alone, so any program can publish by writing one
  deliveryCount: false, // a file carries no count of its deliveries
  retry: 'in-process', // Parley holds the claim and tries again; a file cannot be hidden for a while
  leases: false, // a claim is only taken back when a consumer of the group starts and finds it stale
  redrive: false,
};

const SCOPE = 'spool';
const DEFAULT_GROUP = 'parley';
// A full disk or an I/O hiccup may pass; a permission or a missing directory will not.
const RETRYABLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE']);
const codeOf = (error: unknown) => String((error as { code?: unknown } | null)?.code);
let seq = 0;
/** Sorts in publish order within a process; the random part keeps names of two processes apart. */
const newName = () => {
  const [time, count] = [String(Date.now()).padStart(15, '0'), String(seq++).padStart(9, '0')];
  return `${time}-${count}-${randomBytes(4).toString('hex')}.msg`;
};
const redeliveredName = (name: string) => (name.endsWith('.r.msg') ? name : `${name.slice(0, -4)}.r.msg`);

/** Group names become directory names: keep them to a safe alphabet rather than escape them. */
function groupDir(group: string): string {
  if (/^[\w.-]{1,200}$/.test(group) && !/^\.+$/.test(group)) return group;
  throw new BrokerConfigError(SCOPE, `invalid group ${JSON.stringify(group)}: use 1-200 of [A-Za-z0-9._-]`);
}

interface Held {
  readonly file: string;
  readonly name: string;
  /** Acked, released, or taken back by a cut: a second ack or release does nothing. */
  settled: boolean;
  /** Aborted when a cut takes it back: core then neither acknowledges nor retries it. */
  readonly revoked: AbortController;
}

/** The driver alone, for `defineBroker` (and for tests that need its `faults`); users want `spoolBroker`. */
export function spoolDriver(options: SpoolBrokerOptions): BrokerDriver<SpoolClient> {
  const root = resolve(options.path);
  const pollMs = options.pollIntervalMs ?? 25;
  const leaseMs = options.leaseMs ?? 30_000;
  const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, 'ParleyWarning'));
  const consumers = new Set<{
    pump(): Promise<void>;
    releaseAll(revoke?: boolean): Promise<unknown>;
    handle: DriverConsumer;
  }>();
  let connected = false;
  let cut = false;
  let warnedHeaders = false;
  // One batch at a time, each file after the previous one: files appear in the order they were published.
  let writes: Promise<unknown> = Promise.resolve();
  const outage = () => new ConnectionError(SCOPE, `${root} is unreachable (simulated outage)`);
  const failed = (error: unknown): SendOutcome => ({
    ok: false,
    error: error instanceof Error ? error : new Error(String(error)),
    retryable: cut || RETRYABLE.has(codeOf(error)),
  });

  /** Writes elsewhere, then renames into place: a reader of the directory sees all of it or nothing. */
  async function writeAtomic(target: string, data: Uint8Array | string): Promise<void> {
    const temp = join(root, 'tmp', randomBytes(8).toString('hex'));
    await writeFile(temp, data);
    await rename(temp, target).catch(async (error: unknown) => {
      await unlink(temp).catch(() => {});
      throw error;
    });
  }

  async function sendBatch(batch: readonly OutgoingMessage[]): Promise<SendOutcome[]> {
    if (cut) return batch.map(() => failed(outage()));
    let groups: string[];
    try {
      groups = await readdir(join(root, 'queue'));
      if (groups.length === 0) {
        // Nobody subscribed yet: keep the messages for the default group rather than drop them.
        groups = [DEFAULT_GROUP];
        await mkdir(join(root, 'queue', DEFAULT_GROUP), { recursive: true });
      }
    } catch (error) {
      return batch.map(() => failed(error));
    }
    const outcomes: SendOutcome[] = [];
    for (const message of batch) {
      if (!warnedHeaders && Object.keys(message.headers).length > 0) {
        warnedHeaders = true;
        warn(`[parley] [${SCOPE}] headers are not stored (capabilities.headers is false): they are dropped`);
      }
      try {
        if (cut) throw outage();
        const name = newName();
        // A retry after a partial fan-out writes the groups that had it again: at-least-once, never lost.
        for (const group of groups) await writeAtomic(join(root, 'queue', group, name), message.body);
        outcomes.push({ ok: true });
      } catch (error) {
        outcomes.push(failed(error));
      }
    }
    return outcomes;
  }

  /** Claims a crashed consumer left behind go back to the queue, marked as redelivered. */
  async function recover(queue: string, claimed: string): Promise<void> {
    for (const file of await readdir(claimed)) {
      const at = file.lastIndexOf('~');
      if (at < 0 || Date.now() - Number(file.slice(at + 1)) < leaseMs) continue;
      await rename(join(claimed, file), join(queue, redeliveredName(file.slice(0, at)))).catch(() => {});
    }
  }

  return {
    name: SCOPE,
    capabilities,
    destination: root,
    defaultFormat: 'compact', // Rasa never reads a spool, so no need for its byte-exact `python` format
    defaultGroup: DEFAULT_GROUP,
    client: { path: root },

    async connect() {
      if (cut) throw outage();
      for (const dir of ['queue', 'claimed', 'dead', 'tmp'])
        await mkdir(join(root, dir), { recursive: true });
      connected = true;
    },

    send(batch) {
      const sending = writes.then(() => sendBatch(batch));
      writes = sending.catch(() => {});
      return sending;
    },

    async consume({ group, readAhead }, sink) {
      const queue = join(root, 'queue', groupDir(group));
      const claimed = join(root, 'claimed', groupDir(group));
      await mkdir(queue, { recursive: true });
      await mkdir(claimed, { recursive: true });
      await recover(queue, claimed);
      const held = new Set<Held>();
      let names: string[] = []; // the last scan, in name order, taken one by one before the next scan
      let stopped = false;
      let pumping = false;
      let again = false;
      let lastError = '';

      const settle = async (item: Held, ack: boolean, revoke = false): Promise<void> => {
        if (item.settled) return;
        item.settled = true;
        if (revoke) item.revoked.abort();
        held.delete(item);
        try {
          if (ack) await unlink(item.file);
          else await rename(item.file, join(queue, redeliveredName(item.name)));
        } catch (error) {
          // Gone: another process took it back after the lease. It will be handled again (at-least-once).
          if (codeOf(error) !== 'ENOENT') throw error;
        } finally {
          void pump();
        }
      };

      /** Claims files in name order while there is room; one at a time (a wake meanwhile runs it again). */
      async function pump(): Promise<void> {
        if (pumping) {
          again = true;
          return;
        }
        pumping = true;
        try {
          do {
            again = false;
            while (!stopped && !cut && held.size < readAhead) {
              if (names.length === 0) names = (await readdir(queue)).filter((n) => n.endsWith('.msg')).sort();
              const name = names.shift();
              if (name === undefined) break;
              const file = join(claimed, `${name}~${Date.now()}`);
              try {
                await rename(join(queue, name), file);
              } catch (error) {
                if (codeOf(error) === 'ENOENT') continue; // a competing consumer claimed it first
                throw error;
              }
              const body = await readFile(file).catch((error: unknown) => error as Error);
              if (body instanceof Error || stopped || cut) {
                // Unreadable, or stopped meanwhile: back as it was (never delivered, so not a redelivery).
                await rename(file, join(queue, name));
                if (body instanceof Error) throw body;
                break;
              }
              const item: Held = { file, name, settled: false, revoked: new AbortController() };
              held.add(item);
              const redelivered = name.endsWith('.r.msg');
              sink.deliver({
                // The name without its redelivery mark: the same id every time the file comes back.
                id: redelivered ? `${name.slice(0, -'.r.msg'.length)}.msg` : name,
                body,
                headers: {},
                redelivered,
                revoked: item.revoked.signal,
                ack: () => settle(item, true),
                release: () => settle(item, false),
              });
            }
          } while (again);
        } catch (error) {
          // A consumer has no error channel: warn (once per distinct error); the next poll tries again.
          const message = error instanceof Error ? error.message : String(error);
          if (message !== lastError) warn(`[parley] [${SCOPE}] cannot consume ${queue}: ${message}`);
          lastError = message;
        } finally {
          pumping = false;
        }
      }

      let watcher: FSWatcher | undefined;
      try {
        watcher = watch(queue, { persistent: false }, () => void pump());
        watcher.on('error', () => watcher?.close()); // the poll below still sees every file
      } catch {
        // fs.watch is not supported here: polling alone
      }
      const timer = setInterval(pump, pollMs);
      const releaseAll = (revoke = false) =>
        Promise.all([...held].map((item) => settle(item, false, revoke)));
      const handle: DriverConsumer = {
        async stop() {
          stopped = true;
        },
        async close() {
          stopped = true;
          clearInterval(timer);
          watcher?.close();
          consumers.delete(entry);
          await releaseAll();
        },
      };
      const entry = { pump, releaseAll, handle };
      consumers.add(entry);
      void pump();
      return handle;
    },

    async deadLetter(letter) {
      if (cut) throw outage(); // the core keeps the message (releases it) when storing fails
      const dir = join(root, 'dead', groupDir(letter.group));
      await mkdir(dir, { recursive: true });
      const stem = newName().slice(0, -'.msg'.length);
      const { reason, error, attempts, failedAt, senderId, destination } = letter;
      // The sidecar first: whoever finds the .msg finds why it is there.
      const why = { reason, error, attempts, failedAt, senderId, group: letter.group, destination };
      await writeAtomic(join(dir, `${stem}.json`), `${JSON.stringify(why)}\n`);
      await writeAtomic(join(dir, `${stem}.msg`), letter.body);
    },

    isReady: () => connected && !cut, // defineBroker adds `&& not closed`

    async health() {
      return { path: root, consumers: consumers.size, outage: cut };
    },

    // A directory has no connection to cut: the fault plays the storage being unreachable.
    faults: {
      async cut() {
        cut = true;
        await Promise.all([...consumers].map((consumer) => consumer.releaseAll(true)));
      },
      async restore() {
        cut = false;
        for (const consumer of consumers) void consumer.pump();
      },
    },

    async close() {
      await Promise.all([...consumers].map((consumer) => consumer.handle.close()));
      await writes;
    },
  };
}

/** A spool directory as a Parley broker: `spoolBroker({ path: '/var/spool/rasa' })`. */
export function spoolBroker(options: SpoolBrokerOptions): Broker<SpoolClient> {
  return defineBroker(spoolDriver(options), options);
}

/** What `createBroker` calls when endpoints.yml's `type:` names this module (a package name or a path). */
export function fromEndpointConfig(config: BrokerConfig, options: AdapterOptions = {}): Broker<SpoolClient> {
  const keys = readOptions(config, SCOPE);
  const path = keys.string('path');
  const pollIntervalMs = keys.integer('poll_interval_ms', 25, { min: 1 });
  keys.done(options.onWarning ? { warn: options.onWarning } : {});
  if (path === undefined) {
    throw new ConfigError(
      config.source,
      `${config.section ?? 'event_broker'}.path`,
      'required: the spool directory',
    );
  }
  return spoolBroker({ ...options, path, pollIntervalMs });
}
