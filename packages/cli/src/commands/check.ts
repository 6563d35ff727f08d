/**
 * `parley check`: validates endpoints.yml, connects, prints the adapter, its capabilities and its health. Exits
 * 2 when the file is wrong and 1 when the broker cannot be reached, with the error to act on.
 */
import type { Capabilities } from '@parley/core';
import { Command } from 'commander';
import { DEFAULT_ENDPOINTS, openBroker, timeoutOption } from '../broker.js';
import { CliError } from '../exit.js';
import { styler } from '../output.js';

interface CheckOptions {
  readonly endpoints: string;
  readonly timeout: number;
}

export function checkCommand(): Command {
  return new Command('check')
    .description('validate endpoints.yml, connect, and print the adapter, its capabilities and its health')
    .option('--endpoints <path>', "Rasa's endpoints.yml", DEFAULT_ENDPOINTS)
    .addOption(timeoutOption(10))
    .action(async (options: CheckOptions) => {
      await check(options);
    });
}

async function check(options: CheckOptions): Promise<void> {
  const { broker, config } = await openBroker(options.endpoints);
  const style = styler(process.stdout);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    out(`endpoints     ${options.endpoints}: valid`);
    out(`adapter       ${broker.name} (type: ${config.typeAsWritten ?? 'pika, the default'})`);
    out(`capabilities  ${describeCapabilities(broker.capabilities)}`);
    try {
      await broker.ready({ timeoutMs: options.timeout });
    } catch (error) {
      out(`connection    ${style('red', 'failed')}`);
      throw new CliError((error as Error).message, 1, { cause: error });
    }
    const health = await broker.health();
    out(`connection    ${style('green', 'ok')}`);
    out(
      `health        ready=${health.ready} buffered=${health.buffered} subscriptions=${health.subscriptions} reconnects=${health.reconnects}`,
    );
    for (const [key, value] of Object.entries(health.detail ?? {})) {
      out(`${`  ${key}:`.padEnd(13)} ${typeof value === 'string' ? value : JSON.stringify(value)}`);
    }
  } finally {
    await broker.close({ timeoutMs: 5_000 }).catch(() => {});
  }
}

/** `consumer groups, replay, ordering per group, dead letters (emulated), redrive, …`: what is true. */
export function describeCapabilities(c: Capabilities): string {
  const parts = [
    c.consumerGroups && 'consumer groups',
    c.competingConsumers && 'competing consumers',
    c.ordering !== 'none' && `ordering per ${c.ordering}`,
    c.replay && 'replay',
    c.deadLetter !== 'none' && `dead letters (${c.deadLetter})`,
    c.redrive && 'redrive',
    c.batchPublish && 'batch publish',
    c.persistent && 'persistent',
    c.headers && 'headers',
    c.deliveryCount && 'delivery count',
    `retry ${c.retry}`,
    c.leases && 'leases',
  ];
  return parts.filter((p): p is string => typeof p === 'string').join(', ');
}
