// Kafka: Parley's kafka adapter beside hand-written kafkajs code doing the same work: batched `producer.send` of
// 500 messages with acks -1 (the adapter's batch size and acks), and an `eachBatch` consumer with the same commit
// policy (no auto-commit, offsets resolved per message, committed after handling).
// Runs against KAFKA_URL when set; otherwise starts librdkafka's mock cluster (`kcat`, 3 brokers, as the tests do)
// and stops it after. Mock quirks handled here only, as packages/kafka/test/support.ts does: it reports controller
// id 0 while its brokers are 1–3, so the idempotent producer cannot start (`idempotent: false`, and the baseline's
// producer alike); it keeps ~5 MB per partition and drops older data silently (a fresh topic per measurement, 10,000
// events ≈ 4 MB over 4 partitions); a group's first join takes seconds (consume is timed from the first event, on
// both sides).
import { spawn, spawnSync } from 'node:child_process';
import { kafkaBroker } from '@parley/kafka';
import { Kafka, logLevel } from 'kafkajs';
import { benchBroker, stringifyAll, verdict } from './brokers.mjs';

const BATCH = 500;
const rasaEnvironment = process.env.RASA_ENVIRONMENT ?? 'RASA_ENVIRONMENT_NOT_SET';

/**
 * @param {{ events?: number, runs?: number, concurrency?: number, rate?: number, seconds?: number }} [options]
 */
export async function run(options = {}) {
  let cluster;
  try {
    cluster = await startCluster();
  } catch (error) {
    console.log(`\nkafka: NOT run: ${error.message}`);
    process.exitCode = 1;
    return undefined;
  }
  try {
    const mock = cluster.mock;
    // Short group timings on the mock (a member that left is otherwise waited for a full session timeout).
    const group = mock ? { sessionTimeout: 6_000, heartbeatInterval: 500 } : {};
    const create = (destination) =>
      kafkaBroker({
        url: cluster.url,
        topic: destination,
        security_protocol: 'PLAINTEXT',
        ...(mock
          ? { idempotent: false, session_timeout_ms: group.sessionTimeout, heartbeat_interval_ms: 500 }
          : {}),
        onWarning: () => {},
      });
    const kafka = new Kafka({
      brokers: cluster.url.split(','),
      logLevel: logLevel.NOTHING,
      clientId: 'parley-bench-raw',
    });
    const producerConfig = {
      // As the adapter's producer: idempotent where the broker can (then 5 requests in flight), else 1.
      idempotent: !mock,
      maxInFlightRequests: mock ? 1 : 5,
      allowAutoTopicCreation: true,
    };

    /** Sends every body in batches of 500, one `producer.send` awaited after the other, acks -1. */
    const sendAll = async (producer, topic, bodies) => {
      for (let i = 0; i < bodies.length; i += BATCH) {
        await producer.send({
          topic,
          acks: -1,
          messages: bodies.slice(i, i + BATCH).map((value) => ({
            key: null,
            value,
            headers: { RASA_ENVIRONMENT: rasaEnvironment },
          })),
        });
      }
    };

    /**
     * Connect, then timed: a JSON.stringify of each event (the raw equivalent of the adapter's encoding, as the
     * AMQP baseline does) and the batched sends of Parley's own bytes; then disconnect.
     */
    const rawPublish = async (destination, bodies, { envelopes }) => {
      const producer = kafka.producer(producerConfig);
      await producer.connect();
      try {
        const start = performance.now();
        stringifyAll(envelopes);
        await sendAll(producer, destination, bodies);
        return performance.now() - start;
      } finally {
        await producer.disconnect();
      }
    };

    /**
     * The bodies produced first; then a consumer of a new group from the beginning: `eachBatch`, JSON.parse and
     * resolveOffset per message, offsets committed after each batch was handled (no auto-commit). Timed from the
     * first message to the last, as the adapter's figure is (joining the group left out on both sides).
     */
    const rawConsume = async (destination, bodies) => {
      const producer = kafka.producer(producerConfig);
      await producer.connect();
      await sendAll(producer, destination, bodies);
      await producer.disconnect();
      const consumer = kafka.consumer({
        groupId: `${destination}-g`,
        ...group,
        rebalanceTimeout: Math.max(group.sessionTimeout ?? 30_000, 10_000),
        maxWaitTimeInMs: 500,
        allowAutoTopicCreation: true,
      });
      let received = 0;
      let first = 0;
      let last = 0;
      let done;
      const finished = new Promise((resolve) => (done = resolve));
      await consumer.connect();
      try {
        await consumer.subscribe({ topic: destination, fromBeginning: true });
        await consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: 4,
          eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
            if (batch.messages.length === 0) return;
            for (const message of batch.messages) {
              JSON.parse(message.value.toString('utf8'));
              resolveOffset(message.offset);
              if (++received === 1) first = performance.now();
            }
            await consumer.commitOffsets([
              {
                topic: destination,
                partition: batch.partition,
                offset: String(Number(batch.lastOffset()) + 1),
              },
            ]);
            await heartbeat();
            if (received >= bodies.length && last === 0) {
              last = performance.now();
              done();
            }
          },
        });
        await finished;
        return last - first;
      } finally {
        await consumer.disconnect();
      }
    };

    const result = await benchBroker({
      name: 'kafka',
      create,
      consumeClock: 'first-event',
      baseline: {
        label: `kafkajs by hand (JSON.stringify + producer.send of ${BATCH}, acks -1, awaited in turn; eachBatch, JSON.parse, resolveOffset, commitOffsets per batch)`,
        publish: rawPublish,
        consume: rawConsume,
      },
      // Each measurement uses a fresh topic: 10,000 events ≈ 4 MB over 4 partitions, under the mock's ~5 MB each.
      // 21 runs, not 7: the mock cluster's pace varies most of all the brokers' (per-run ratios 0.6 – 1.6 for the
      // same code, on both sides), and a median of more runs moves less from one bench to the next (with 11, three
      // benches of the same code gave publish ratios of 0.73 – 0.84 and consume ratios of 0.87 – 1.13).
      options: { events: 10_000, runs: 21, ...options },
    });
    console.log('');
    verdict('publish', result.publishRatio, result.publishRatios, 0.9);
    verdict('consume', result.consumeRatio, result.consumeRatios, 0.9);
    return result;
  } finally {
    await cluster.stop();
  }
}

/**
 * KAFKA_URL, or librdkafka's mock cluster as the tests start it: `kcat -P` stays alive while its stdin is open and
 * logs the mock's bootstrap servers (random ports); closing stdin ends it.
 */
export async function startCluster() {
  if (process.env.KAFKA_URL) return { url: process.env.KAFKA_URL, mock: false, stop: async () => {} };
  const kcat = spawnSync('sh', ['-c', 'command -v kcat'], { encoding: 'utf8' }).stdout.trim();
  if (kcat === '')
    throw new Error('needs KAFKA_URL or kcat for the mock cluster (`apt-get install -y kcat`)');
  const child = spawn(
    kcat,
    ['-b', 'localhost:0', '-X', 'test.mock.num.brokers=3', '-P', '-t', 'parley-mock-keepalive'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const url = await new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`kcat mock cluster did not start: ${log}`)), 10_000);
    child.stderr.on('data', (chunk) => {
      log += chunk.toString();
      const match = /replaced with (\S+)/.exec(log) ?? /bootstrap\.servers=(\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`kcat exited (${code}): ${log}`)));
  }).catch((error) => {
    child.kill('SIGKILL');
    throw error;
  });
  child.stderr.resume();
  console.log(`\nkafka: librdkafka's mock cluster (kcat, 3 brokers) at ${url}`);
  return {
    url,
    mock: true,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
