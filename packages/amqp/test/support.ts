import { execFileSync } from 'node:child_process';
import { type Channel, connect } from 'amqplib';
import { inject } from 'vitest';
import type { OwnNode } from './own-node.js';

/** The RabbitMQ the tests use; scripts/services.mjs brings it up. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Declares an exchange exactly as Rasa (aio-pika) does: fanout, not durable. */
export async function rasaExchange(ch: Channel, name: string): Promise<void> {
  await ch.assertExchange(name, 'fanout', { durable: false, autoDelete: false, internal: false });
}

/**
 * Removes the queues a test run declared (RabbitMQ keeps durable queues otherwise): listed once with
 * rabbitmqctl, deleted over AMQP (one rabbitmqctl call per queue takes about a second).
 */
export async function deleteQueuesWithPrefix(prefix: string): Promise<void> {
  let names: string[];
  try {
    names = execFileSync('rabbitmqctl', ['list_queues', 'name', '--quiet', '--no-table-headers'])
      .toString()
      .split('\n')
      .map((s) => s.trim())
      .filter((name) => name.startsWith(prefix));
  } catch {
    return; // rabbitmqctl may be missing (a remote AMQP_URL): leftovers are harmless there
  }
  if (names.length === 0) return;
  const connection = await connect(AMQP_URL);
  const channel = await connection.createChannel();
  for (const name of names) await channel.deleteQueue(name);
  await connection.close();
}

/** The tests' own RabbitMQ node (test/own-node.ts), for destructive tests; fails naming why it is missing. */
export function ownNode(): OwnNode {
  const node = inject('ownNode');
  if ('error' in node) throw new Error(`[amqp tests] no RabbitMQ node of our own: ${node.error}`);
  return node;
}
