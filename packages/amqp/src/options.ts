/**
 * Rasa's pika keys, same names and defaults, mapped to what the driver needs. Where Rasa misbehaves (the
 * legacy `queue` key, TLS variables dropped with a full URL) Parley does what the user meant, and says so
 * once.
 * Errors name the key, what was expected and the file; credentials never appear in a message.
 */
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import {
  type BrokerConfig,
  ConfigError,
  didYouMean,
  readOptions,
  redactUrl,
  type WireFormat,
} from '@parley/core';

export { redactUrl };

/**
 * The settings the driver runs on, resolved from endpoints.yml keys (or the same keys passed in code). The object
 * never prints a secret: `urls` and `socketOptions` are accessors over private fields, so neither
 * `util.inspect` (at any depth, with any options) nor `JSON.stringify` sees them; both show `safeUrls` instead.
 */
export interface AmqpSettings {
  /**
   * Connection URLs, credentials included, tried in turn (failover across a cluster's nodes). Always with an
   * explicit port; credentials are percent-encoded the way amqplib decodes them; TLS and `heartbeat` query
   * parameters are taken out (they are in `socketOptions` and `heartbeat`). Secret: never log it.
   */
  readonly urls: readonly string[];
  /** The same URLs with the password redacted, for logs and errors. */
  readonly safeUrls: readonly string[];
  /**
   * TLS options for amqplib's connect (`cert`, `key`, `ca` as file contents, `passphrase`, ...). Secret (the key
   * and its passphrase): never log it.
   */
  readonly socketOptions: Readonly<Record<string, unknown>>;
  /** Heartbeat in seconds (0 disables): the `heartbeat` key, else the URL's `?heartbeat`, else 60. */
  readonly heartbeat: number;
  /** The fanout exchange Rasa publishes to (`exchange_name`, default `rasa-exchange`). */
  readonly exchange: string;
  /** The queues bound to it (`queues`, plus Rasa 1.x's `queue`; default `['rasa_core_events']`). */
  readonly queues: readonly string[];
  /** `RASA_ENVIRONMENT`, sent as `app_id` when set. */
  readonly appId: string | undefined;
  /** Connection attempts before giving up on the first connection (`connection_attempts`, 20). */
  readonly connectionAttempts: number;
  /** Pause between them, ms (`retry_delay_in_seconds`, 5 s). */
  readonly retryDelayMs: number;
  /** False with `should_keep_unpublished_messages: false` or `raise_on_failure: true`: fail fast. */
  readonly bufferUnpublished: boolean;
  /** How long a publish waits for the broker's confirm before it is sent again, ms (30 s). */
  readonly confirmTimeoutMs: number;
  /** The dead-letter queue of a group (`dead_letter_queue`, default `<group>.dead-letter`). */
  readonly deadLetterQueue: (group: string) => string;
  /** Default subscriber prefetch/concurrency (`prefetch`). */
  readonly prefetch: number | undefined;
  /** Publish buffer (`buffer_size`). */
  readonly bufferSize: number | undefined;
  /**
   * The largest message body, in bytes (`max_message_size`, 16 MiB: RabbitMQ's default since 4.0). A bigger
   * publish rejects at once; a bigger delivery is dead-lettered unparsed.
   */
  readonly maxMessageBytes: number;
  /** Wire format (`format`, default python: the bytes Rasa writes). */
  readonly format: WireFormat | undefined;
}

/** The endpoints.yml keys, as they would be written there (snake_case, Rasa's names), for use in code. */
export interface AmqpOptions {
  /** A host name (`host:port` too), or a full `amqp://` / `amqps://` URL with credentials, vhost, query. */
  readonly url?: string;
  /** What Rasa Pro's docs write instead of `url` (Rasa itself fails on it); read as `url`. */
  readonly host?: string;
  readonly username?: string;
  readonly password?: string;
  readonly port?: number | string;
  readonly queues?: readonly string[] | string;
  /** Rasa 1.x's key; honoured (Rasa 3 ignores it silently). */
  readonly queue?: string;
  readonly exchange_name?: string;
  readonly connection_attempts?: number | string;
  readonly retry_delay_in_seconds?: number | string;
  readonly should_keep_unpublished_messages?: boolean | string;
  readonly raise_on_failure?: boolean | string;
  /** Parley: other nodes of the cluster to fail over to (host names sharing `url`'s settings, or URLs). */
  readonly hosts?: readonly string[] | string;
  readonly heartbeat?: number | string;
  readonly prefetch?: number | string;
  readonly buffer_size?: number | string;
  readonly confirm_timeout_in_seconds?: number | string;
  /** Parley: the largest message body in bytes (default 16 MiB, RabbitMQ's `max_message_size` default). */
  readonly max_message_size?: number | string;
  /** The dead-letter queue name; `{group}` stands for the consumer group (default `{group}.dead-letter`). */
  readonly dead_letter_queue?: string;
  readonly format?: WireFormat;
  readonly [key: string]: unknown;
}

/** Where {@link resolveAmqpSettings} finds the environment, files, and where it sends its warnings. */
export interface ResolveContext {
  /** `RASA_ENVIRONMENT` and `RABBITMQ_SSL_*`; defaults to `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Receives each warning once; defaults to `process.emitWarning(message, 'ParleyWarning')`. */
  readonly warn?: (message: string) => void;
  /** Reads certificate and key files; defaults to `fs.readFileSync`. */
  readonly readFile?: (path: string) => Buffer;
}

export type { BrokerConfig };

interface Endpoint {
  scheme?: 'amqp' | 'amqps';
  user?: string;
  pass?: string;
  host: string;
  port?: number;
  path: string;
  query: string[];
}

// Taken out of the URL: aiormq's and RabbitMQ's URI-spec TLS names (amqplib knows none of them), and
// heartbeat, which settings.heartbeat carries instead.
const PULLED = 'cafile cacertfile certfile keyfile capath no_verify_ssl verify heartbeat'.split(' ');

const ENV_CERT = 'RABBITMQ_SSL_CLIENT_CERTIFICATE';
const ENV_KEY = 'RABBITMQ_SSL_CLIENT_KEY';
const WARN_ONLY = {
  stream_pii:
    "Rasa Pro's PII switch is not implemented: Parley streams every event as is, personal data included",
  anonymization_queues:
    "Rasa Pro's anonymised copies are not produced: nothing is published to these queues (not implemented)",
  log_level: "Rasa 1.x's pika log level; Parley reports through warnings and errors instead",
};

/** endpoints.yml section (or the same keys in code) → driver settings, with Rasa's names, defaults, rules. */
export function resolveAmqpSettings(config: BrokerConfig, context: ResolveContext = {}): AmqpSettings {
  const env = context.env ?? process.env;
  const readFile = context.readFile ?? ((path: string) => readFileSync(path));
  const sink = context.warn ?? ((message: string) => process.emitWarning(message, 'ParleyWarning'));
  const seen = new Set<string>();
  const emit = (message: string) => {
    if (!seen.has(message)) sink(message);
    seen.add(message);
  };
  const section = config.section ?? 'event_broker';
  // Environment variables are named as they are; keys get their section.
  const at = (key: string) => (key.startsWith('RABBITMQ') ? key : `${section}.${key}`);
  const warn = (key: string, text: string) => emit(`[parley] [amqp] ${config.source}: ${at(key)}: ${text}`);
  const fail = (key: string, text: string): never => {
    throw new ConfigError(config.source, at(key), text);
  };

  const o = readOptions(config, 'amqp');
  const url = o.string('url');
  const hostAlias = o.string('host');
  const username = o.string('username');
  const password = o.string('password');
  const portKey = o.integer('port', { min: 1, max: 65535 });
  const queues = o.stringList('queues');
  const legacyQueue = o.string('queue');
  const exchange = o.string('exchange_name', 'rasa-exchange');
  const connectionAttempts = o.integer('connection_attempts', 20, { min: 1 });
  const retryDelay = o.number('retry_delay_in_seconds', 5, { min: 0 });
  const keep = o.boolean('should_keep_unpublished_messages', true);
  const raise = o.boolean('raise_on_failure', false);
  const hosts = o.stringList('hosts') ?? [];
  const heartbeatKey = o.integer('heartbeat', { min: 0, max: 65535 });
  const prefetch = o.integer('prefetch', { min: 1 });
  const bufferSize = o.integer('buffer_size', { min: 1 });
  const confirmTimeout = o.number('confirm_timeout_in_seconds', 30, { min: 0 });
  const maxMessageBytes = o.integer('max_message_size', 16 * 1024 * 1024, { min: 1 });
  const deadLetter = o.string('dead_letter_queue', '{group}.dead-letter');
  const format = o.oneOf<WireFormat>('format', ['python', 'compact']);
  o.done({
    warnOnly: WARN_ONLY,
    warn: (message) => emit(message.replace(/^\[parley\] /, '[parley] [amqp] ')),
  });

  if (confirmTimeout === 0) fail('confirm_timeout_in_seconds', 'expected a number > 0, found 0');
  if (exchange.trim() === '') fail('exchange_name', 'expected a non-empty name');
  if (deadLetter.trim() === '') fail('dead_letter_queue', 'expected a non-empty name');

  // Rasa Pro's docs say `host:`; Rasa passes it on top of the positional host and fails: the user meant url.
  if (hostAlias !== undefined) {
    warn('host', url === undefined ? 'read as `url` (Rasa expects `url:`)' : 'ignored: `url` is given');
  }
  const main = url ?? hostAlias;
  if (main === undefined) fail('url', 'required: a host name, or an amqp:// or amqps:// URL');
  const mainKey = url === undefined ? 'host' : 'url';
  const first = parseEndpoint(main as string, mainKey, fail);
  const others = hosts.map((host, i) => parseEndpoint(host, `hosts[${i}]`, fail));
  const endpoints = [first, ...others];

  // Credentials: the URL's own win (Rasa would prepend the keys to them); the keys serve a URL without any,
  // and are then required, as Rasa requires them positionally. Hosts without credentials share url's.
  const own = (e: Endpoint) => e.user !== undefined;
  if (own(first)) {
    if (username !== undefined && username !== first.user) warn('username', "ignored: the URL's is used");
    if (password !== undefined && password !== first.pass) warn('password', "ignored: the URL's is used");
  } else {
    if (username === undefined) fail('username', 'required when the URL carries no credentials');
    if (password === undefined) fail('password', 'required when the URL carries no credentials');
  }
  const [user, pass] = own(first) ? [first.user, first.pass] : [username, password];

  // Query parameters Parley handles itself, the same on every host (one socketOptions serves them all).
  const params = new Map<string, string>();
  for (const [i, e] of endpoints.entries()) {
    e.query = e.query.filter((entry) => {
      const cut = entry.includes('=') ? entry.indexOf('=') : entry.length;
      const name = decode(entry.slice(0, cut).replace(/\+/g, ' '));
      const value = decode(entry.slice(cut + 1).replace(/\+/g, ' '));
      if (!PULLED.includes(name)) return true;
      const other = params.get(name);
      if (other !== undefined && other !== value) fail(i === 0 ? mainKey : 'hosts', `conflicting ?${name}`);
      params.set(name, value);
      return false;
    });
  }
  if (params.has('heartbeat') && heartbeatKey !== undefined) warn('heartbeat', "overrides the URL's");
  const urlBeat = params.get('heartbeat');
  if (urlBeat !== undefined && !/^\d+$/.test(urlBeat)) fail(mainKey, 'expected ?heartbeat to be an integer');
  const heartbeat = heartbeatKey ?? (urlBeat === undefined ? 60 : Number(urlBeat));

  // TLS: Rasa reads client certificates from the environment only (and drops them with a full URL), and
  // only warns about the CA and passphrase variables. Parley applies all of them, and the URL's too.
  const socketOptions: Record<string, unknown> = {};
  const load = (path: string, origin: string) => {
    try {
      return readFile(path);
    } catch (cause) {
      throw new ConfigError(config.source, origin, `cannot read ${path}: ${(cause as Error).message}`, {
        cause,
      });
    }
  };
  const envCert = env[ENV_CERT] || undefined;
  const envKey = env[ENV_KEY] || undefined;
  if ((envCert === undefined) !== (envKey === undefined)) {
    fail(
      envCert === undefined ? ENV_KEY : ENV_CERT,
      `set without ${envCert === undefined ? ENV_CERT : ENV_KEY}`,
    );
  }
  if (envCert && envKey) {
    socketOptions.cert = load(envCert, ENV_CERT);
    socketOptions.key = load(envKey, ENV_KEY);
  }
  for (const [name, option] of [
    ['RABBITMQ_SSL_CA_FILE', 'ca'],
    ['RABBITMQ_SSL_KEY_PASSWORD', 'passphrase'],
  ] as const) {
    const value = env[name];
    if (!value) continue;
    socketOptions[option] = option === 'ca' ? load(value, name) : value;
    warn(name, 'applied (Rasa ignores it and only warns that it is no longer supported)');
  }
  const fromUrl = (param: string, option: string) => {
    const path = params.get(param);
    if (path !== undefined) socketOptions[option] = load(path, `${at(mainKey)}?${param}`);
  };
  fromUrl('cafile', 'ca');
  fromUrl('cacertfile', 'ca');
  fromUrl('certfile', 'cert');
  fromUrl('keyfile', 'key');
  if (params.has('capath')) warn(mainKey, '?capath (a CA directory) is not supported by Node: use ?cafile');
  const verify = params.get('verify');
  if (verify !== undefined && verify !== 'verify_peer' && verify !== 'verify_none') {
    const near = didYouMean(verify, ['verify_peer', 'verify_none']);
    const hint = near === undefined ? '' : ` (did you mean ${near}?)`;
    fail(mainKey, `expected ?verify=verify_peer or verify_none, found ${JSON.stringify(verify)}${hint}`);
  }
  // aiormq verifies unless no_verify_ssl is "0"-valued; RabbitMQ's URI spec says verify=verify_none.
  if ((params.has('no_verify_ssl') && params.get('no_verify_ssl') !== '0') || verify === 'verify_none') {
    socketOptions.rejectUnauthorized = false;
    warn(mainKey, 'TLS certificate verification is off: anyone on the path can pose as the broker');
  }

  // A client certificate means TLS: Rasa switches a plain host to TLS for the variables; Parley does it for
  // every URL (aio-pika would silently connect a full amqp:// URL without it).
  const clientCert = socketOptions.cert !== undefined;
  const fullUrl = first.scheme !== undefined;
  if (envCert && fullUrl) warn(ENV_CERT, `applied with ${ENV_KEY} (Rasa ignores both with a full URL)`);
  const scheme = first.scheme ?? 'amqp';
  const plain = endpoints.filter((e) => (e.scheme ?? scheme) === 'amqp').length;
  if (clientCert && plain > 0) {
    const rasa = fullUrl ? 'Rasa would connect an amqp:// URL without TLS' : 'as Rasa does';
    warn(mainKey, `client certificate set: connecting with TLS (amqps, port 5671 unless given), ${rasa}`);
  }
  if (!clientCert && socketOptions.ca !== undefined && plain === endpoints.length) {
    warn(mainKey, 'a CA file is set but no URL uses amqps://: it has no effect');
  }

  const built = endpoints.map((e) => {
    const tls = (e.scheme ?? scheme) === 'amqps' || clientCert;
    // Rasa appends :5672 whatever the scheme; amqps without a port means RabbitMQ's TLS port, 5671.
    const port = e.port ?? (e === first || e.scheme !== undefined ? portKey : (first.port ?? portKey));
    const userinfo = own(e) ? [e.user, e.pass] : [user, pass];
    const path = e.scheme !== undefined || e === first ? e.path : first.path;
    const query = e.scheme !== undefined || e === first ? e.query : first.query;
    const search = query.length > 0 ? `?${query.join('&')}` : '';
    if (port === undefined && e.scheme === 'amqps') warn(mainKey, 'amqps without a port: 5671 (Rasa: 5672)');
    const where = `${e.host}:${port ?? (tls ? 5671 : 5672)}`;
    const [u, p] = userinfo.map((text) => encode(text ?? ''));
    return `${tls ? 'amqps' : 'amqp'}://${u}:${p}@${where}${path}${search}`;
  });
  const urls = [...new Set(built)];

  // Rasa's defaults and its two queue keys: `queue` (1.x) is silently ignored by Rasa 3.
  if (queues?.length === 0) fail('queues', 'expected at least one queue, found an empty list');
  if (legacyQueue !== undefined) {
    warn(
      'queue',
      `Rasa 1.x's key, ignored by Rasa 3; Parley publishes to it${queues ? ' too' : ''}: use queues`,
    );
  } else if (queues === undefined) {
    warn('queues', 'not given: publishing to the default queue rasa_core_events, as Rasa does');
  }
  const names = [...new Set([...(queues ?? []), ...(legacyQueue === undefined ? [] : [legacyQueue])])];
  if (names.some((name) => name.trim() === '')) fail('queues', 'expected non-empty queue names');

  return new ResolvedSettings(urls, socketOptions, {
    safeUrls: urls.map(redactUrl),
    heartbeat,
    exchange,
    queues: names.length > 0 ? names : ['rasa_core_events'],
    appId: env.RASA_ENVIRONMENT || undefined,
    connectionAttempts,
    retryDelayMs: Math.round(retryDelay * 1000),
    bufferUnpublished: keep && !raise,
    confirmTimeoutMs: Math.round(confirmTimeout * 1000),
    deadLetterQueue: (group) => deadLetter.replaceAll('{group}', group),
    prefetch,
    bufferSize,
    maxMessageBytes,
    format,
  });
}

type PublicSettings = Omit<AmqpSettings, 'urls' | 'socketOptions'>;

/**
 * AmqpSettings whose secrets live in private fields behind prototype accessors: `broker.client.settings` is
 * reachable from every broker, and `util.inspect(broker, { depth: Infinity })` or `JSON.stringify(broker)` must not
 * print a password. Private fields are invisible to both (and to `showHidden`, `getters` and spread copies).
 */
class ResolvedSettings implements AmqpSettings {
  readonly #urls: readonly string[];
  readonly #socketOptions: Readonly<Record<string, unknown>>;
  readonly safeUrls!: readonly string[];
  readonly heartbeat!: number;
  readonly exchange!: string;
  readonly queues!: readonly string[];
  readonly appId!: string | undefined;
  readonly connectionAttempts!: number;
  readonly retryDelayMs!: number;
  readonly bufferUnpublished!: boolean;
  readonly confirmTimeoutMs!: number;
  readonly deadLetterQueue!: (group: string) => string;
  readonly prefetch!: number | undefined;
  readonly bufferSize!: number | undefined;
  readonly maxMessageBytes!: number;
  readonly format!: WireFormat | undefined;

  constructor(
    urls: readonly string[],
    socketOptions: Readonly<Record<string, unknown>>,
    rest: PublicSettings,
  ) {
    this.#urls = urls;
    this.#socketOptions = socketOptions;
    Object.assign(this, rest);
  }

  get urls(): readonly string[] {
    return this.#urls;
  }

  get socketOptions(): Readonly<Record<string, unknown>> {
    return this.#socketOptions;
  }

  /** What `JSON.stringify` writes: every setting, the URLs redacted, the TLS options by name only. */
  toJSON(): Record<string, unknown> {
    const { deadLetterQueue: _, ...rest } = this;
    const tls = Object.fromEntries(
      Object.entries(this.#socketOptions).map(([key, value]) => [
        key,
        typeof value === 'boolean' ? value : '<redacted>',
      ]),
    );
    return { ...rest, urls: this.safeUrls, socketOptions: tls };
  }

  [inspect.custom](_depth: number, options: object, show: typeof inspect): string {
    return `AmqpSettings ${show(this.toJSON(), options)}`;
  }
}

/** A host name (`host`, `host:port`, `::1`) or a full URL; never prints the text, it may hold a password. */
function parseEndpoint(text: string, key: string, fail: (key: string, text: string) => never): Endpoint {
  const full = /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
  // A bare IPv6 literal has several colons; `host:port` has one.
  const bare = !full && text.split(':').length > 2 && !text.startsWith('[') ? `[${text}]` : text;
  let parsed: URL | undefined;
  try {
    parsed = new URL(full ? text : `amqp://${bare.trim()}`);
  } catch {
    // undefined: reported below
  }
  if (!full && parsed && (/[@/?#]/.test(bare) || parsed.pathname !== '')) parsed = undefined;
  if (!parsed || parsed.hostname === '') {
    return fail(
      key,
      `expected a host name, or an amqp:// or amqps:// URL (percent-encode special characters)`,
    );
  }
  const scheme = parsed.protocol.slice(0, -1).toLowerCase();
  if (scheme !== 'amqp' && scheme !== 'amqps') fail(key, `expected amqp:// or amqps://, found ${scheme}://`);
  const creds = parsed.username !== '' || parsed.password !== '';
  return {
    ...(full ? { scheme: scheme as 'amqp' | 'amqps' } : {}),
    ...(creds ? { user: decode(parsed.username), pass: decode(parsed.password) } : {}),
    host: parsed.host.replace(/:\d+$/, ''),
    ...(parsed.port === '' ? {} : { port: Number(parsed.port) }),
    path: parsed.pathname,
    query: parsed.search.slice(1).split('&').filter(Boolean),
  };
}

/** Standard UTF-8 percent-decoding; text that is not valid UTF-8 is read byte by byte, as amqplib would. */
function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text.replace(/%([0-9a-f]{2})/gi, (_, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    );
  }
}

/**
 * amqplib decodes credentials with the legacy `unescape` (Latin-1 `%XX`, `%uXXXX`) and sends them as UTF-8,
 * so `é` must be written `%E9`, not `%C3%A9`: encode to exactly what it reads back.
 */
function encode(text: string): string {
  return text.replace(/[^A-Za-z0-9._~-]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 256
      ? `%${code.toString(16).toUpperCase().padStart(2, '0')}`
      : `%u${code.toString(16).padStart(4, '0')}`;
  });
}
