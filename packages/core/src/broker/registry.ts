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
import { type BrokerConfig, ConfigError, loadEndpoints, readOptions } from '../config/endpoints.js';
import type { WireFormat } from '../wire/codec.js';
import type { Broker, BrokerOptions } from './contract.js';
import { fileBroker } from './file.js';
import { memoryBroker } from './memory.js';

/** What an adapter package exports: Rasa's `from_endpoint_config`, in TypeScript. */
export type FromEndpointConfig = (config: BrokerConfig, options?: AdapterOptions) => Broker | Promise<Broker>;

/** Options every adapter's `fromEndpointConfig` accepts besides the endpoints.yml section. */
/** What `createBroker` hands every adapter besides the endpoints.yml section: where to log. */
export interface AdapterOptions extends Pick<BrokerOptions, 'onWarning' | 'logger'> {}

export interface CreateBrokerOptions extends AdapterOptions {
  /** Where adapter packages are resolved from. Default: the current directory, then the endpoints.yml folder. */
  readonly resolveFrom?: string;
}

/** The adapter packages Parley publishes, by normalised `type`. */
export const adapterPackages: Readonly<Record<string, string>> = {
  amqp: '@parley/amqp',
  kafka: '@parley/kafka',
  sqs: '@parley/sqs',
  redis: '@parley/redis',
};

/**
 * Creates the broker an endpoints.yml describes: a path to the file, or a section loaded with `loadEndpoints`.
 * @throws ConfigError for a file with no `event_broker` section, an invalid key, or an adapter that is not
 *         installed (naming the exact install command).
 */
export async function createBroker(
  config: BrokerConfig | string,
  options: CreateBrokerOptions = {},
): Promise<Broker> {
  if (typeof config === 'string') {
    const loaded = await loadEndpoints(config);
    if (!loaded)
      throw new ConfigError(config, undefined, 'no event_broker section: there is no broker to create');
    config = loaded;
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

/**
 * Reads the keys every broker accepts on top of its own (`buffer_size`, `format`), with the same checks as the
 * built-in adapters: for third-party adapters' `fromEndpointConfig`.
 */
export function readCommonOptions(reader: ReturnType<typeof readOptions>, source: string): BrokerOptions {
  const bufferSize = reader.integer('buffer_size', { min: 1 });
  const format = reader.string('format');
  if (format !== undefined && format !== 'python' && format !== 'compact') {
    throw new ConfigError(source, 'event_broker.format', `expected "python" or "compact", found "${format}"`);
  }
  return {
    ...(bufferSize === undefined ? {} : { bufferSize }),
    ...(format === undefined ? {} : { format: format as WireFormat }),
  };
}

function embeddedMemory(config: BrokerConfig, options: CreateBrokerOptions): Broker {
  const reader = readOptions(config, 'memory');
  const destination = reader.string('destination', 'rasa_core_events');
  const hub = reader.string('hub', 'default');
  const common = readCommonOptions(reader, config.source);
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
  const common = readCommonOptions(reader, config.source);
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
  if (config.source !== '<inline>') bases.push(dirname(resolve(config.source)));
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
