/**
 * The endpoints.yml keys of `type: redis`, in the style of Rasa's other brokers (snake_case, `_in_seconds`), mapped
 * to what the driver needs. Errors name the key, what was expected and the file; credentials never appear.
 */
import { hostname } from 'node:os';
import { type BrokerConfig, ConfigError, readOptions, type WireFormat } from '@parley/core';

/** How the driver reaches Redis: one server (or a URL), a Sentinel-managed master, or a Cluster. */
export type RedisConnection =
  | {
      readonly mode: 'standalone';
      readonly host: string;
      readonly port: number;
      readonly username?: string;
      readonly password?: string;
      readonly db: number;
      readonly tls: boolean;
    }
  | {
      readonly mode: 'sentinel';
      readonly sentinels: readonly { readonly host: string; readonly port: number }[];
      /** The master's name, as the sentinels know it (`name`). */
      readonly name: string;
      readonly username?: string;
      readonly password?: string;
      readonly sentinelPassword?: string;
      readonly db: number;
      readonly tls: boolean;
    }
  | {
      readonly mode: 'cluster';
      readonly nodes: readonly { readonly host: string; readonly port: number }[];
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    };

/** The settings the driver runs on, resolved from endpoints.yml keys (or the same keys passed in code). */
export interface RedisSettings {
  readonly connection: RedisConnection;
  /** The stream key events are appended to (`stream`, default `rasa_core_events`), verbatim. */
  readonly stream: string;
  /** The dead-letter stream: always in the same Cluster hash slot as `stream` (see {@link deadLetterKey}). */
  readonly deadLetterStream: string;
  /** Approximate trimming by length (`max_len`): `XADD … MAXLEN ~ n`. */
  readonly maxLen: number | undefined;
  /** Approximate trimming by age, ms (`max_age_in_seconds`): `XADD … MINID ~ <now - age>`. */
  readonly maxAgeMs: number | undefined;
  /** The consumer group subscriptions join when they name none (`group`, default `parley`). */
  readonly group: string;
  /** This process's consumer name in its groups (`consumer`, default `<hostname>-<pid>-<random>`). */
  readonly consumer: string;
  /** How long one `XREADGROUP` blocks waiting for entries, ms (`block_in_seconds`, 2 s). */
  readonly blockMs: number;
  /**
   * How long an entry stays with its consumer without a renewal before a peer claims it, ms
   * (`claim_idle_in_seconds`, 30 s). Core renews it while it holds the entry, so only a dead consumer loses one.
   */
  readonly claimIdleMs: number;
  /** Tries per event before it is dead-lettered (`max_attempts`, 5), the default of every subscription. */
  readonly maxAttempts: number | undefined;
  /** Publish buffer (`buffer_size`). */
  readonly bufferSize: number | undefined;
  /** Wire format (`format`, default `python`: the bytes Rasa writes). */
  readonly format: WireFormat | undefined;
  /** Default handler concurrency of subscriptions (`concurrency`). */
  readonly concurrency: number | undefined;
  /** Default read-ahead of subscriptions (`read_ahead`): entries taken per `XREADGROUP`. */
  readonly readAhead: number | undefined;
}

/** The endpoints.yml keys, as they are written there, for use in code. */
export interface RedisOptions {
  /** `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. */
  readonly url?: string;
  readonly host?: string;
  readonly port?: number | string;
  readonly username?: string;
  readonly password?: string;
  readonly db?: number | string;
  readonly stream?: string;
  readonly max_len?: number | string;
  readonly max_age_in_seconds?: number | string;
  readonly group?: string;
  readonly consumer?: string;
  readonly block_in_seconds?: number | string;
  readonly claim_idle_in_seconds?: number | string;
  readonly max_attempts?: number | string;
  /** Sentinels, `host:port` each; `name` is then the master's name. */
  readonly sentinels?: readonly string[] | string;
  readonly name?: string;
  readonly sentinel_password?: string;
  /** Cluster nodes to start from, `host:port` each (or `redis://` URLs). */
  readonly cluster?: readonly string[] | string;
  readonly buffer_size?: number | string;
  readonly format?: WireFormat;
  readonly concurrency?: number | string;
  readonly read_ahead?: number | string;
}

const DEFAULT_STREAM = 'rasa_core_events';

/**
 * The dead-letter stream of a stream key, in the same Cluster hash slot, so that moving a dead letter back
 * (`redrive`: `XADD` to the stream and `XDEL` from its dead letters in one `MULTI`) is never a cross-slot command.
 * A key with a hash tag (`{bots}.events`) keeps it: `{bots}.events:dead-letters`. A key without one is hashed
 * whole, so its dead-letter stream tags the whole name: `rasa_core_events` → `{rasa_core_events}:dead-letters`,
 * whose tag `rasa_core_events` hashes as the stream itself does.
 */
export function deadLetterKey(stream: string): string {
  return hashTag(stream) === undefined ? `{${stream}}:dead-letters` : `${stream}:dead-letters`;
}

/** The part of a key Redis Cluster hashes: the first non-empty `{…}`, else undefined (the whole key). */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/** endpoints.yml section (or the same keys in code) → driver settings. */
export function resolveRedisSettings(
  config: BrokerConfig,
  context: { readonly warn?: (message: string) => void } = {},
): RedisSettings {
  const section = config.section ?? 'event_broker';
  const fail = (key: string, text: string): never => {
    throw new ConfigError(config.source, `${section}.${key}`, text);
  };
  const o = readOptions(config, 'redis');
  const url = o.string('url');
  const host = o.string('host');
  const port = o.integer('port', { min: 1, max: 65535 });
  const username = o.string('username');
  const password = o.string('password');
  const db = o.integer('db', { min: 0 });
  const stream = o.string('stream', DEFAULT_STREAM);
  const maxLen = o.integer('max_len', { min: 1 });
  const maxAge = o.number('max_age_in_seconds', { min: 0 });
  const group = o.string('group', 'parley');
  const consumer = o.string('consumer');
  const block = o.number('block_in_seconds', 2, { min: 0.01 });
  const claimIdle = o.number('claim_idle_in_seconds', 30, { min: 0.1 });
  const maxAttempts = o.integer('max_attempts', { min: 1 });
  const sentinels = o.stringList('sentinels');
  const name = o.string('name');
  const sentinelPassword = o.string('sentinel_password');
  const cluster = o.stringList('cluster');
  const bufferSize = o.integer('buffer_size', { min: 1 });
  const format = o.string('format');
  const concurrency = o.integer('concurrency', { min: 1 });
  const readAhead = o.integer('read_ahead', { min: 1 });
  o.done({
    ...(context.warn
      ? { warn: (m: string) => context.warn!(m.replace(/^\[parley\] /, '[parley] [redis] ')) }
      : {}),
  });

  if (format !== undefined && format !== 'python' && format !== 'compact') {
    fail('format', `expected "python" or "compact", found ${JSON.stringify(format)}`);
  }
  if (stream.trim() === '') fail('stream', 'expected a non-empty stream key');
  // A `}` outside a hash tag would cut the dead-letter stream's tag short: another slot under Cluster.
  if (hashTag(stream) === undefined && /[{}]/.test(stream)) {
    fail('stream', 'expected a key without "{" or "}", or with a non-empty hash tag such as "{bots}.events"');
  }
  if (group.trim() === '') fail('group', 'expected a non-empty group name');
  if (consumer !== undefined && consumer.trim() === '')
    fail('consumer', 'expected a non-empty consumer name');
  if (maxAge === 0) fail('max_age_in_seconds', 'expected a number > 0, found 0');

  const modes = [url !== undefined || host !== undefined, sentinels !== undefined, cluster !== undefined];
  if (modes.filter(Boolean).length > 1) {
    fail(
      cluster !== undefined ? 'cluster' : 'sentinels',
      'expected one of url/host (one server), sentinels (with name) or cluster (nodes), found several',
    );
  }
  if (name !== undefined && sentinels === undefined)
    fail('name', 'is the Sentinel master name: set sentinels too');
  if (sentinelPassword !== undefined && sentinels === undefined) fail('sentinel_password', 'needs sentinels');

  let parsed: Partial<{
    host: string;
    port: number;
    username: string;
    password: string;
    db: number;
    tls: boolean;
  }> = {};
  if (url !== undefined) {
    if (host !== undefined) fail('host', 'expected either url or host, found both');
    parsed = parseUrl(url, 'url', fail);
  }
  const user = username ?? parsed.username;
  const pass = password ?? parsed.password;
  const creds = {
    ...(user === undefined ? {} : { username: user }),
    ...(pass === undefined ? {} : { password: pass }),
  };
  const tls = parsed.tls ?? false;

  let connection: RedisConnection;
  if (cluster !== undefined) {
    if (cluster.length === 0) fail('cluster', 'expected at least one node (host:port)');
    if (db !== undefined && db !== 0) fail('db', 'Redis Cluster has database 0 only');
    const nodes = cluster.map((node, i) => {
      const p = parseUrl(node, `cluster[${i}]`, fail);
      return { host: p.host!, port: p.port ?? 6379 };
    });
    connection = { mode: 'cluster', nodes, ...creds, tls: cluster.some((n) => n.startsWith('rediss://')) };
  } else if (sentinels !== undefined) {
    if (sentinels.length === 0) fail('sentinels', 'expected at least one sentinel (host:port)');
    if (name === undefined) fail('name', 'required with sentinels: the master name the sentinels monitor');
    const list = sentinels.map((node, i) => {
      const p = parseUrl(node, `sentinels[${i}]`, fail);
      return { host: p.host!, port: p.port ?? 26379 };
    });
    connection = {
      mode: 'sentinel',
      sentinels: list,
      name: name as string,
      ...creds,
      ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
      db: db ?? 0,
      tls,
    };
  } else {
    connection = {
      mode: 'standalone',
      host: host ?? parsed.host ?? '127.0.0.1',
      port: port ?? parsed.port ?? 6379,
      ...creds,
      db: db ?? parsed.db ?? 0,
      tls,
    };
  }
  if (port !== undefined && connection.mode !== 'standalone') fail('port', 'applies to url/host only');

  return {
    connection,
    stream,
    deadLetterStream: deadLetterKey(stream),
    maxLen,
    maxAgeMs: maxAge === undefined ? undefined : Math.round(maxAge * 1000),
    group,
    consumer: consumer ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    blockMs: Math.round(block * 1000),
    claimIdleMs: Math.round(claimIdle * 1000),
    maxAttempts,
    bufferSize,
    format: format as WireFormat | undefined,
    concurrency,
    readAhead,
  };
}

/** `redis://user:pass@host:port/db`, `rediss://…`, or a bare `host[:port]`; never prints the text (a password). */
function parseUrl(
  text: string,
  key: string,
  fail: (key: string, text: string) => never,
): { host?: string; port?: number; username?: string; password?: string; db?: number; tls?: boolean } {
  const full = /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
  let parsed: URL | undefined;
  try {
    parsed = new URL(full ? text : `redis://${text.trim()}`);
  } catch {
    // reported below
  }
  if (!parsed || parsed.hostname === '') {
    return fail(
      key,
      'expected host:port, or a redis:// or rediss:// URL (percent-encode special characters)',
    );
  }
  const scheme = parsed.protocol.slice(0, -1).toLowerCase();
  if (scheme !== 'redis' && scheme !== 'rediss')
    fail(key, `expected redis:// or rediss://, found ${scheme}://`);
  const path = parsed.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d+$/.test(path)) fail(key, 'expected the URL path to be a database number (/0)');
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    ...(parsed.port === '' ? {} : { port: Number(parsed.port) }),
    ...(parsed.username === '' ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === '' ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(path === '' ? {} : { db: Number(path) }),
    tls: scheme === 'rediss',
  };
}
