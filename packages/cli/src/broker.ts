/**
 * The broker an endpoints.yml names, opened exactly as `createBroker` opens it. The adapter is looked up from
 * the working directory and the file's folder first (the user's project), then beside this CLI, so that
 * `npm install -g @parley/cli @parley/amqp` works from anywhere.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adapterPackages, type Broker, type BrokerConfig, createBroker, loadEndpoints } from '@parley/core';
import { Option } from 'commander';
import { CliError, EXIT_FAILURE, UsageError } from './exit.js';
import { timeoutMs } from './options.js';
import { note } from './output.js';

export const DEFAULT_ENDPOINTS = './endpoints.yml';

export interface OpenedBroker {
  readonly broker: Broker;
  readonly config: BrokerConfig;
  /** The endpoints.yml it came from, as given. */
  readonly path: string;
}

/** Reads the `event_broker` section of an endpoints.yml, or a UsageError saying what is wrong with it. */
export async function loadBrokerConfig(path: string): Promise<BrokerConfig> {
  if (!existsSync(path)) {
    const hint = path === DEFAULT_ENDPOINTS ? ' (pass the file with --endpoints PATH)' : '';
    throw new UsageError(`${path}: no such file: expected Rasa's endpoints.yml${hint}`);
  }
  const config = await loadEndpoints(path);
  if (!config) throw new UsageError(`${path}: no event_broker section: there is no broker to use`);
  return config;
}

/** Creates the broker of an endpoints.yml; warnings go to stderr. */
export async function openBroker(path: string): Promise<OpenedBroker> {
  const config = await loadBrokerConfig(path);
  const resolveFrom = adapterBase(config, path);
  const broker = await createBroker(config, {
    onWarning: (message) => note(`warning: ${message.replace(/^\[parley\] /, '')}`),
    ...(resolveFrom === undefined ? {} : { resolveFrom }),
  });
  return { broker, config, path };
}

/**
 * Where to resolve the adapter from: undefined (the working directory, core's default) when the user's project
 * has it, or this CLI's own folder when only the CLI can see it (installed beside it).
 */
function adapterBase(config: BrokerConfig, path: string): string | undefined {
  const specifier = adapterPackages[config.type];
  if (specifier === undefined) return undefined;
  for (const base of [process.cwd(), dirname(resolve(path))]) {
    if (resolvable(specifier, resolve(base, 'noop.js'))) return undefined;
  }
  const here = fileURLToPath(import.meta.url);
  return resolvable(specifier, here) ? dirname(here) : undefined;
}

function resolvable(specifier: string, from: string): boolean {
  try {
    createRequire(from).resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

/** Runs `body` with the broker once it is connected (within `timeoutMs`), then closes it whatever happened. */
export async function withBroker<T>(
  path: string,
  timeoutMs: number,
  body: (opened: OpenedBroker) => Promise<T>,
): Promise<T> {
  const opened = await openBroker(path);
  try {
    await connected(opened.broker, timeoutMs);
    return await body(opened);
  } finally {
    await opened.broker.close({ timeoutMs: 10_000 }).catch(() => {});
  }
}

/** `--timeout <seconds>`: how long a command waits for the first connection (default 30 s). */
export function timeoutOption(defaultSeconds = 30): Option {
  return new Option('--timeout <seconds>', 'how long to wait for the first connection to the broker')
    .argParser(timeoutMs)
    .default(defaultSeconds * 1000, String(defaultSeconds));
}

/**
 * Waits for the first connection, bounded: a broker that is not there (or refuses the credentials) fails the
 * command with its reason (exit 1) instead of leaving it waiting.
 */
export async function connected(broker: Broker, timeoutMs: number): Promise<void> {
  try {
    await broker.ready({ timeoutMs });
  } catch (error) {
    throw new CliError((error as Error).message, EXIT_FAILURE, { cause: error });
  }
}
