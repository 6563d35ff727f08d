// Amazon SQS: Parley's sqs adapter beside hand-written @aws-sdk/client-sqs code doing the same work: concurrent
// loops of `SendMessageBatch` (10 entries, the adapter's attributes), and loops of `ReceiveMessage` (10) +
// `DeleteMessageBatch`. Runs against SQS_ENDPOINT when set; otherwise starts fauxqs 1.9.2 in this process, on
// 127.0.0.1 and a free port, as the adapter's tests do: the emulator then shares this process's CPU with both
// clients, which the figures include.
//
// The raw client and fauxqs are the adapter's own (its dependency and its tests' devDependency), loaded from
// packages/sqs: the same versions the adapter runs on and is tested against.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sqsBroker } from '@parley/sqs';
import { benchBroker, stringifyAll, verdict } from './brokers.mjs';

const sqsPackage = createRequire(import.meta.url).resolve('@parley/sqs/package.json');
const fromSqs = createRequire(sqsPackage);
const {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} = fromSqs('@aws-sdk/client-sqs');

/** An ESM-only package (fauxqs) from packages/sqs's node_modules: its `import` entry point. */
async function importFromSqs(name) {
  const dir = join(dirname(sqsPackage), 'node_modules', name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const entry = pkg.exports?.['.']?.import?.default ?? pkg.exports?.['.']?.default ?? pkg.main;
  return import(pathToFileURL(join(dir, entry)).href);
}

/** Concurrent SendMessageBatch loops of the baseline (measured before: 16 ≈ 3.1–3.2k msgs/s). */
const LOOPS = 16;
const rasaEnvironment = process.env.RASA_ENVIRONMENT ?? 'RASA_ENVIRONMENT_NOT_SET';

/**
 * @param {{ events?: number, runs?: number, concurrency?: number, rate?: number, seconds?: number }} [options]
 */
export async function run(options = {}) {
  const region = process.env.AWS_REGION ?? 'us-east-1';
  let endpoint = process.env.SQS_ENDPOINT;
  let stop = async () => {};
  let credentials = {};
  if (!endpoint) {
    const { buildApp } = await importFromSqs('fauxqs');
    const app = buildApp({ logger: false });
    endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
    stop = () => app.close();
    credentials = { access_key_id: 'test', secret_access_key: 'test' };
    console.log(
      `\nsqs: fauxqs 1.9.2 in this process at ${endpoint} (it shares this process's CPU with both clients)`,
    );
  }
  const newClient = () =>
    new SQSClient({
      endpoint,
      region,
      ...(credentials.access_key_id ? { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } } : {}),
    });
  // For setting up and cleaning up only. Each measurement of the baseline makes a client of its own, as each of the
  // adapter's brokers does: one client kept from run to run sent over connections already open (16 of them) and
  // with its endpoint and signing caches warm, which the adapter's new broker has to open and fill while timed
  // (measured: the baseline's median publish 11,200 – 12,200 events/s with one client, 9,400 – 10,100 with one
  // per run).
  const sqs = newClient();
  const keys = { endpoint, region, ...credentials };
  const concurrency = options.concurrency ?? 32;
  const create = (destination) =>
    sqsBroker({
      ...keys,
      queue_name: destination,
      create_queue: true,
      // subscribe() needs a dead-letter destination; nothing fails here, so it stays empty.
      dead_letter_queue: `${destination}-dl`,
      onWarning: () => {},
    });
  const queueUrl = async (client, name) =>
    (await client.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '30' } })))
      .QueueUrl;

  /** `LOOPS` loops, each taking the next 10 bodies and sending them in one SendMessageBatch, until none is left. */
  const sendAll = async (client, url, bodies, events) => {
    let next = 0;
    const loop = async () => {
      while (next < bodies.length) {
        const from = next;
        next = Math.min(bodies.length, next + 10);
        const entries = [];
        for (let i = from; i < next; i++) {
          entries.push({
            Id: String(i - from),
            MessageBody: bodies[i].toString('utf8'),
            MessageAttributes: {
              event: { DataType: 'String', StringValue: events[i].event },
              sender_id: { DataType: 'String', StringValue: events[i].sender_id },
              RASA_ENVIRONMENT: { DataType: 'String', StringValue: rasaEnvironment },
            },
          });
        }
        const result = await client.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
        if (result.Failed?.length) throw new Error(`SendMessageBatch failed: ${result.Failed[0].Message}`);
      }
    };
    await Promise.all(Array.from({ length: LOOPS }, loop));
  };

  /** The queue created first; then timed: a JSON.stringify of each event and the concurrent batch sends. */
  const rawPublish = async (destination, bodies, { envelopes }) => {
    const client = newClient();
    try {
      const url = await queueUrl(client, destination);
      const start = performance.now();
      stringifyAll(envelopes);
      await sendAll(client, url, bodies, envelopes);
      return performance.now() - start;
    } finally {
      client.destroy();
    }
  };

  /**
   * The bodies sent first; then timed: `ceil(concurrency / 10)` loops (as many messages held as the adapter's
   * read-ahead), each receiving 10, JSON.parse of each, one DeleteMessageBatch, again until all are deleted.
   */
  const rawConsume = async (destination, bodies, { concurrency }) => {
    const client = newClient();
    try {
      const url = await queueUrl(client, destination);
      await sendAll(
        client,
        url,
        bodies,
        bodies.map((b) => JSON.parse(b.toString('utf8'))),
      );
      const start = performance.now();
      // Counted as received, so that no loop waits on an empty queue for messages the others hold.
      let received = 0;
      const loop = async () => {
        while (received < bodies.length) {
          const result = await client.send(
            new ReceiveMessageCommand({
              QueueUrl: url,
              MaxNumberOfMessages: 10,
              WaitTimeSeconds: 1,
              VisibilityTimeout: 30,
              MessageAttributeNames: ['All'],
              MessageSystemAttributeNames: ['ApproximateReceiveCount'],
            }),
          );
          const messages = result.Messages ?? [];
          if (messages.length === 0) continue;
          received += messages.length;
          for (const m of messages) JSON.parse(m.Body);
          await client.send(
            new DeleteMessageBatchCommand({
              QueueUrl: url,
              Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
            }),
          );
        }
      };
      await Promise.all(Array.from({ length: Math.ceil(concurrency / 10) }, loop));
      return performance.now() - start;
    } finally {
      client.destroy();
    }
  };

  try {
    const result = await benchBroker({
      name: 'sqs',
      create,
      cleanup: async (destination) => {
        for (const name of [destination, `${destination}-dl`]) {
          try {
            const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: name }));
            await sqs.send(new DeleteQueueCommand({ QueueUrl }));
          } catch {
            // never created
          }
        }
      },
      baseline: {
        label: `@aws-sdk/client-sqs by hand (a client per run, as each of the adapter's brokers has; JSON.stringify + ${LOOPS} concurrent SendMessageBatch loops of 10 with the adapter's attributes; ${Math.ceil(concurrency / 10)} ReceiveMessage (10) + JSON.parse + DeleteMessageBatch loops)`,
        publish: rawPublish,
        consume: rawConsume,
      },
      options: { events: 10_000, runs: 7, ...options },
    });
    console.log('');
    verdict('publish', result.publishRatio, result.publishRatios, 0.9);
    verdict('consume', result.consumeRatio, result.consumeRatios, 0.9);
    return result;
  } finally {
    sqs.destroy();
    await stop();
  }
}
