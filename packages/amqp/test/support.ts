import { execFileSync } from 'node:child_process';
import type { Channel } from 'amqplib';

/** The RabbitMQ the tests use; scripts/services.mjs brings it up. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Declares an exchange exactly as Rasa (aio-pika) does: fanout, not durable. */
export async function rasaExchange(ch: Channel, name: string): Promise<void> {
  await ch.assertExchange(name, 'fanout', { durable: false, autoDelete: false, internal: false });
}

/** Removes the queues a test run declared (RabbitMQ keeps durable queues otherwise). */
export function deleteQueuesWithPrefix(prefix: string): void {
  try {
    const names = execFileSync('rabbitmqctl', ['list_queues', 'name', '--quiet', '--no-table-headers'])
      .toString()
      .split('\n')
      .map((s) => s.trim())
      .filter((name) => name.startsWith(prefix));
    for (const name of names) execFileSync('rabbitmqctl', ['delete_queue', name], { stdio: 'ignore' });
  } catch {
    // rabbitmqctl may be missing (a remote AMQP_URL): leftovers are harmless there
  }
}
