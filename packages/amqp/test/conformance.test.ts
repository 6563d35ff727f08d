/**
 * The conformance suite, against the tests' own RabbitMQ node (own-node.ts): its chaos cases restart the broker,
 * which must never happen to the shared one, and its load stays off it too.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runConformance } from '@parley/conformance';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { afterAll } from 'vitest';
import { amqpBroker, queueOf } from '../src/index.js';
import { restartApp } from './own-node.js';
import { ownNode, rasaExchange } from './support.js';

const node = ownNode();
const AMQP_URL = node.url;

// The oracle: a raw amqplib client, independent of the adapter under test.
let raw: ChannelModel | undefined;
async function channel(): Promise<Channel> {
  if (!raw) {
    const model = await connect(AMQP_URL);
    model.on('error', () => {});
    // The chaos cases restart RabbitMQ: connect again next time.
    model.on('close', () => {
      if (raw === model) raw = undefined;
    });
    raw = model;
  }
  const ch = await raw.createChannel();
  ch.on('error', () => {});
  return ch;
}

const prefix = `conf-${process.pid}-`;

runConformance({
  name: 'amqp',
  create: ({ destination, proxy }) =>
    amqpBroker({
      url: proxy ? `amqp://guest:guest@${proxy.host}:${proxy.port}` : AMQP_URL,
      exchange_name: `${prefix}${destination}`,
      queues: [`${prefix}${destination}`],
      heartbeat: 5,
      onWarning: () => {},
    }),
  probe: {
    async publishRaw(destination, body, options) {
      const ch = await channel();
      await rasaExchange(ch, `${prefix}${destination}`);
      // What Rasa's PikaEventBroker sends: persistent, to the fanout exchange, routing key "".
      ch.publish(`${prefix}${destination}`, '', Buffer.from(body), {
        persistent: true,
        ...(options?.headers ? { headers: options.headers } : {}),
      });
      await ch.close();
    },
    async deadLetters(destination, group) {
      const ch = await channel();
      const exchange = `${prefix}${destination}`;
      const dlq = `${queueOf({ exchange, queues: [exchange] }, group)}.dead-letter`;
      await ch.assertQueue(dlq, { durable: true });
      const seen: { body: Uint8Array; headers: Record<string, string> }[] = [];
      const held = [];
      for (let m = await ch.get(dlq); m; m = await ch.get(dlq)) {
        held.push(m);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(m.properties.headers ?? {})) headers[k] = String(v);
        seen.push({ body: m.content, headers });
      }
      // Read without consuming: the suite may look again.
      ch.nackAll(true);
      await ch.close();
      return seen;
    },
    async tap(destination) {
      const ch = await channel();
      await rasaExchange(ch, `${prefix}${destination}`);
      const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await ch.bindQueue(queue, `${prefix}${destination}`, '');
      const messages: { body: Uint8Array; headers: Record<string, string> }[] = [];
      await ch.consume(
        queue,
        (m) => {
          if (!m) return;
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(m.properties.headers ?? {})) headers[k] = String(v);
          messages.push({ body: m.content, headers });
        },
        { noAck: true },
      );
      return { messages: async () => messages, close: () => ch.close() };
    },
    async cleanup(destination) {
      const ch = await channel();
      await ch.deleteExchange(`${prefix}${destination}`);
      await ch.close();
    },
  },
  chaos: {
    upstream: { host: node.host, port: node.port },
    restartBroker: async () => restartApp(node.node),
  },
  // consumer-crash: a consumer in a child process (test/conformance-consumer.ts, through tsx), killed with SIGKILL.
  consumerProcess: {
    module: fileURLToPath(new URL('./conformance-consumer.ts', import.meta.url)),
    execArgv: [
      '--import',
      pathToFileURL(fileURLToPath(new URL('../../../node_modules/tsx/dist/loader.mjs', import.meta.url)))
        .href,
    ],
    env: { PARLEY_AMQP_URL: AMQP_URL, PARLEY_AMQP_PREFIX: prefix },
  },
  timeoutMs: 30_000,
});

afterAll(async () => {
  // The node is stopped (and its queues gone) after the run.
  await raw?.close().catch(() => {});
});
