/**
 * createBroker: the broker named by `type:` in endpoints.yml. The embedded brokers (memory, file) are built in;
 * adapters are separate packages loaded on demand, so a user installs only `@parley/kafka` and switches brokers
 * by editing `type:`. A `type` that is a module specifier loads a custom adapter, as Rasa loads a custom broker
 * class by module path.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type BrokerConfig,
  type BrokerSection,
  brokerConfig,
  ConfigError,
  type LoadEndpointsOptions,
  loadEndpoints,
  type OptionReader,
  readOptions,
} from '../config/endpoints.js';
import { BrokerConfigError } from '../errors.js';
import type { WireFormat } from '../wire/codec.js';
import type { Broker, BrokerOptions } from './contract.js';
import { fileBroker } from './file.js';
import { memoryBroker } from './memory.js';

/** What an adapter package exports: Rasa's `from_endpoint_config`, in TypeScript. */
export type FromEndpointConfig = (config: BrokerConfig, options?: AdapterOptions) => Broker | Promise<Broker>;

/** Options every adapter's `fromEndpointConfig` accepts besides the endpoints.yml section. */
/** What `createBroker` hands every adapter besides the endpoints.yml section: where to log. */
export interface AdapterOptions extends Pick<BrokerOptions, 'onWarning' | 'logger'> {}

export interface CreateBrokerOptions extends AdapterOptions, Pick<LoadEndpointsOptions, 'env'> {
  /** Where adapter packages are resolved from. Default: the current directory, then the endpoints.yml folder. */
  readonly resolveFrom?: string;
}

const WIRE_FORMATS: readonly WireFormat[] = ['python', 'compact'];

/** The adapter packages Parley publishes, by normalised `type`. */
export const adapterPackages: Readonly<Record<string, string>> = {
  amqp: '@parley/amqp',
  kafka: '@parley/kafka',
  sqs: '@parley/sqs',
  redis: '@parley/redis',
};

/**
 * Creates the broker an endpoints.yml describes, given as any of:
 * - the path of the file: `createBroker('endpoints.yml')`;
 * - its `event_broker` section as a plain object, with the same keys as the YAML:
 *   `createBroker({ type: 'pika', url: 'localhost', username: 'guest', password: 'guest' })`. It is normalised
 *   exactly as the file is (`type` aliases and case, a missing `type` meaning pika, `${VAR}` substituted in
 *   strings from `options.env` or `process.env`);
 * - a {@link BrokerConfig} already normalised by `loadEndpoints`, `parseEndpoints` or `brokerConfig`.
 * @throws ConfigError for a file with no `event_broker` section, an invalid key, an adapter that is not
 *         installed (naming the exact install command), or a `config` of any other shape.
 */
export async function createBroker(
  config: BrokerConfig | BrokerSection | string,
  options: CreateBrokerOptions = {},
): Promise<Broker> {
  const env = options.env === undefined ? {} : { env: options.env };
  if (typeof config === 'string') {
    const loaded = await loadEndpoints(config, env);
    if (!loaded)
      throw new ConfigError(config, undefined, 'no event_broker section: there is no broker to create');
    config = loaded;
  } else if (!isBrokerConfig(config)) {
    config = brokerConfig(sectionOf(config), SECTION_SOURCE, env);
  }
  switch (config.type) {
    case 'memory':
      return embeddedMemory(config, options);
    case 'file':
      return embeddedFile(config, options);
    case 'sql':
      throw new ConfigError(
        config.source,
        'event_broker.type',
        "Rasa's SQL event broker is not supported by Parley; use amqp, kafka, sqs, redis, file or memory",
      );
  }
  const specifier = adapterPackages[config.type] ?? config.type;
  const module = await importAdapter(specifier, config, options);
  const factory = pickFactory(module);
  if (!factory) {
    throw new ConfigError(
      config.source,
      'event_broker.type',
      `module "${specifier}" exports no fromEndpointConfig(config) function (nor a default export with one)`,
    );
  }
  return factory(config, { ...(options.onWarning ? { onWarning: options.onWarning } : {}) });
}

/** Every option `defineBroker` takes: what `splitBrokerOptions` takes out of an adapter's options. */
const BROKER_OPTION_NAMES = [
  'format',
  'bufferSize',
  'bufferWhileDisconnected',
  'bufferBytes',
  'maxBatch',
  'reconnect',
  'connectAttempts',
  'strict',
  'maxBodyBytes',
  'concurrency',
  'readAhead',
  'maxAttempts',
  'logger',
  'onWarning',
] as const satisfies readonly (keyof BrokerOptions)[];

/**
 * Splits an adapter's options given in code (`redisBroker({ url, onWarning, … })`) into `defineBroker`'s options
 * and the endpoints.yml keys, so that the keys are read exactly as endpoints.yml's are. Undefined values are left
 * out.
 */
export function splitBrokerOptions<T extends object>(
  options: T,
): { broker: BrokerOptions; keys: Record<string, unknown> } {
  const broker: Record<string, unknown> = {};
  const keys: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(options)) {
    if ((BROKER_OPTION_NAMES as readonly string[]).includes(name)) {
      if (value !== undefined) broker[name] = value;
    } else keys[name] = value;
  }
  return { broker: broker as BrokerOptions, keys };
}

/** `read_ahead` below `concurrency` cannot work: handlers would wait for deliveries never read. */
export function checkReadAhead(
  scope: string,
  settings: { readonly readAhead?: number; readonly concurrency?: number },
): void {
  const { readAhead, concurrency } = settings;
  if (readAhead !== undefined && concurrency !== undefined && readAhead < concurrency) {
    throw new BrokerConfigError(
      scope,
      `read_ahead (${readAhead}) must be at least concurrency (${concurrency})`,
    );
  }
}

/**
 * Reads the keys every broker accepts on top of its own (`buffer_size`, `format`), with the same checks as the
 * built-in adapters: for third-party adapters' `fromEndpointConfig`.
 */
export function readCommonOptions(reader: OptionReader): BrokerOptions {
  const bufferSize = reader.integer('buffer_size', { min: 1 });
  const format = reader.oneOf<WireFormat>('format', WIRE_FORMATS);
  return {
    ...(bufferSize === undefined ? {} : { bufferSize }),
    ...(format === undefined ? {} : { format }),
  };
}

function embeddedMemory(config: BrokerConfig, options: CreateBrokerOptions): Broker {
  const reader = readOptions(config, 'memory');
  const destination = reader.string('destination', 'rasa_core_events');
  const hub = reader.string('hub', 'default');
  const common = readCommonOptions(reader);
  reader.done({ ...(options.onWarning ? { warn: options.onWarning } : {}) });
  return memoryBroker({
    destination,
    hub,
    ...common,
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

function embeddedFile(config: BrokerConfig, options: CreateBrokerOptions): Broker {
  const reader = readOptions(config, 'file');
  // Rasa resolves `path` against the working directory; so does Parley.
  const path = reader.string('path', 'rasa_event.log');
  const fsync = reader.boolean('fsync');
  const common = readCommonOptions(reader);
  reader.done({ ...(options.onWarning ? { warn: options.onWarning } : {}) });
  return fileBroker({
    path,
    ...(fsync === undefined ? {} : { fsync }),
    ...common,
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

async function importAdapter(
  specifier: string,
  config: BrokerConfig,
  options: CreateBrokerOptions,
): Promise<unknown> {
  const bases = [options.resolveFrom ?? process.cwd()];
  // `<inline>`, `<createBroker options>`: a config built in code has no folder of its own.
  if (!config.source.startsWith('<')) bases.push(dirname(resolve(config.source)));
  const local = specifier.startsWith('.') || isAbsolute(specifier);
  for (const base of bases) {
    let resolved: string | undefined;
    try {
      // Resolve from the user's project, not from @parley/core: with pnpm, core cannot see the app's packages.
      resolved = local
        ? resolve(base, specifier)
        : createRequire(resolve(base, 'noop.js')).resolve(specifier);
    } catch {
      continue;
    }
    if (!existsSync(resolved)) continue;
    try {
      return await import(pathToFileURL(resolved).href);
    } catch (error) {
      throw new ConfigError(
        config.source,
        'event_broker.type',
        `cannot load the adapter module "${specifier}": ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  try {
    return await import(specifier);
  } catch (error) {
    const known = Object.values(adapterPackages).includes(specifier);
    const hint = known
      ? `the adapter is not installed: run \`npm install ${specifier}\` (or \`pnpm add ${specifier}\`)`
      : `cannot load the custom adapter module "${specifier}": ${(error as Error).message}`;
    throw new ConfigError(config.source, 'event_broker.type', hint, { cause: error });
  }
}

/** What errors name as the source of a section passed to createBroker as an object. */
const SECTION_SOURCE = '<createBroker options>';
const CONFIG_KEYS = new Set(['type', 'typeAsWritten', 'options', 'source', 'section']);

/**
 * A normalised BrokerConfig rather than an endpoints section: only its keys, with `options` a mapping and `type`
 * and `source` strings. No adapter has keys named `options` and `source`, so the two cannot be confused.
 */
function isBrokerConfig(value: unknown): value is BrokerConfig {
  if (!isMapping(value)) return false;
  const candidate = value as Partial<Record<keyof BrokerConfig, unknown>>;
  return (
    typeof candidate.type === 'string' &&
    typeof candidate.source === 'string' &&
    isMapping(candidate.options) &&
    Object.keys(value).every((key) => CONFIG_KEYS.has(key))
  );
}

/** The section object createBroker was given, or a ConfigError saying what it expects instead. */
function sectionOf(value: unknown): Record<string, unknown> {
  const expected =
    'expected the path of an endpoints.yml, its event_broker section as an object with the same keys ' +
    "(e.g. { type: 'pika', url: 'localhost' }), or a BrokerConfig from loadEndpoints() or brokerConfig()";
  if (!isMapping(value)) {
    throw new ConfigError('createBroker', undefined, `${expected}; found ${shapeOf(value)}`);
  }
  if (isMapping(value.event_broker) && value.type === undefined && value.store_type === undefined) {
    throw new ConfigError(
      'createBroker',
      undefined,
      `${expected}; found a whole endpoints document: pass its event_broker section (config.event_broker)`,
    );
  }
  return value;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function shapeOf(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value).slice(0, 40)}`;
}

function pickFactory(module: unknown): FromEndpointConfig | undefined {
  const candidate = module as { fromEndpointConfig?: unknown; default?: unknown } | undefined;
  if (typeof candidate?.fromEndpointConfig === 'function')
    return candidate.fromEndpointConfig as FromEndpointConfig;
  const fallback = candidate?.default as
    | { fromEndpointConfig?: unknown }
    | ((...args: unknown[]) => unknown)
    | undefined;
  if (typeof fallback === 'function') return fallback as FromEndpointConfig;
  if (typeof fallback?.fromEndpointConfig === 'function')
    return fallback.fromEndpointConfig as FromEndpointConfig;
  return undefined;
}
