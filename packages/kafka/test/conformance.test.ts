/**
 * The shared suite against librdkafka's mock cluster (or the cluster at KAFKA_URL). The oracle reads with kcat
 * (librdkafka) and writes with a raw kafkajs producer, never through the adapter.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type CaseName, caseNames, type Probe, runConformance } from '@parley/conformance';
import type { Producer } from 'kafkajs';
import { afterAll } from 'vitest';
import { kafkaBroker } from '../src/index.js';
import {
  everyConnectionThrough,
  KAFKA_URL,
  rawKafka,
  readTopic,
  startCluster,
  type TestCluster,
  testKeys,
} from './support.js';

const cluster = await startCluster();
const prefix = `parley-conf-${process.pid}-`;
const topicOf = (destination: string) => `${prefix}${destination}`;
const keys = { ...testKeys(cluster), partition_by_sender: true };

const producers = new Map<TestCluster, Producer>();
const rawProducer = async (c: TestCluster): Promise<Producer> => {
  let p = producers.get(c);
  if (!p) {
    p = rawKafka(c).producer({ allowAutoTopicCreation: true });
    await p.connect();
    producers.set(c, p);
  }
  return p;
};
const toProbe = (m: ReturnType<typeof readTopic>[number]) => ({
  body: m.body ?? new Uint8Array(Buffer.from(m.payload ?? '', 'utf8')),
  headers: m.headers,
});

/** The oracle on cluster `c`: raw kafkajs writes what Rasa's KafkaEventBroker writes; kcat reads. */
const probeOf = (c: TestCluster): Probe => ({
  async publishRaw(destination, body, options) {
    // What Rasa's KafkaEventBroker writes: value, sender_id key, headers.
    await (await rawProducer(c)).send({
      topic: topicOf(destination),
      messages: [
        {
          key: options?.senderId === undefined ? null : Buffer.from(options.senderId),
          value: Buffer.from(body),
          headers: options?.headers ?? {},
        },
      ],
    });
  },
  async deadLetters(destination, group) {
    return readTopic(c, `${topicOf(destination)}.dead-letter`)
      .filter((m) => m.headers['x-parley-group'] === group)
      .map(toProbe);
  },
  async tap(destination) {
    const before = new Set(readTopic(c, topicOf(destination)).map((m) => `${m.partition}:${m.offset}`));
    return {
      messages: async () =>
        readTopic(c, topicOf(destination))
          .filter((m) => !before.has(`${m.partition}:${m.offset}`))
          .map(toProbe),
      close: async () => {},
    };
  },
});

const noRestart =
  "restarting librdkafka's mock cluster loses every topic (it keeps nothing on disk): no restart case can pass on it";
const chaosCases: readonly CaseName[] = ['chaos-cut', 'cut-redelivers', 'chaos-stall', 'close-unreachable'];
const chaosBelow =
  'runs in "kafka (one broker, every connection through the fault proxy)" below: a proxy in front of one bootstrap address of a 3-broker cluster would not carry the traffic to the other brokers';

runConformance({
  name: 'kafka',
  create: ({ destination }) => kafkaBroker({ ...keys, topic: topicOf(destination), onWarning: () => {} }),
  probe: probeOf(cluster),
  disable: {
    'chaos-restart': noRestart,
    persistent: noRestart,
    ...Object.fromEntries(chaosCases.map((name) => [name, chaosBelow])),
    redelivered:
      'Kafka keeps no delivery flag: a message fetched again after its consumer closed (or a rebalance) cannot be told from a first delivery; only a release within one consumer is marked',
  },
  tolerances: {
    // A handover to a peer is a rebalance: the session timeout (6 s in the tests) plus a join (~3 s on the mock).
    redeliveryDelayMs: 10_000,
    quietPeriodMs: 500,
  },
  consumerProcess: {
    module: fileURLToPath(new URL('./conformance-consumer.ts', import.meta.url)),
    execArgv: [
      '--import',
      pathToFileURL(fileURLToPath(new URL('../../../node_modules/tsx/dist/loader.mjs', import.meta.url)))
        .href,
    ],
    env: { PARLEY_KAFKA_PREFIX: prefix, PARLEY_KAFKA_KEYS: JSON.stringify(keys) },
  },
  // The mock rebalances slowly (a rejoining member waits the session timeout, a join ~3 s): a case that adds three
  // consumers may see three rebalances before its events flow. Waits this long only when something is missing.
  timeoutMs: 60_000,
  report: 'conformance-report.kafka.json',
});

/**
 * The chaos tier, once: a one-broker mock cluster behind the suite's fault proxy, and a socketFactory that sends
 * every broker connection (bootstrap, and each address the metadata names) through the proxy. A cut of the proxy
 * cuts all of the client's traffic, and the suite checks that the traffic went through it. With KAFKA_URL, set
 * KAFKA_CHAOS_URL to a one-broker cluster for this tier.
 */
const chaosUrl = KAFKA_URL ? process.env.KAFKA_CHAOS_URL : undefined;
const chaosCluster: TestCluster | undefined =
  KAFKA_URL === undefined
    ? await startCluster(1)
    : chaosUrl
      ? { url: chaosUrl, mock: false, stop: async () => {} }
      : undefined;
const [chaosHost, chaosPort] = (chaosCluster?.url ?? 'localhost:0').split(',')[0]!.split(':');
const notChaos = 'runs in the suite above (this variant runs the chaos tier only)';
const keptThroughCut =
  'a Kafka member keeps its partitions through a cut shorter than its session timeout: kafkajs reconnects, the held events are acknowledged as usual and nothing is redelivered (partitions lost to a dead member or a rebalance are what consumer-crash and rebalance-while-retrying test)';
runConformance({
  name: 'kafka (one broker, every connection through the fault proxy)',
  create: ({ destination, proxy }) =>
    kafkaBroker({
      ...keys,
      ...(proxy ? { url: `${proxy.host}:${proxy.port}` } : { url: chaosCluster?.url ?? 'localhost:0' }),
      topic: topicOf(destination),
      onWarning: () => {},
      ...(proxy ? { kafkaConfig: { socketFactory: everyConnectionThrough(proxy) } } : {}),
    }),
  probe: probeOf(chaosCluster ?? cluster),
  disable: Object.fromEntries(
    caseNames
      // batch-publish here too: through the proxy it counts the round trips a burst of publishes takes.
      .filter(
        (name) => !([...chaosCases, 'batch-publish'] as string[]).includes(name) || name === 'cut-redelivers',
      )
      .map((name) => [name, name === 'cut-redelivers' ? keptThroughCut : notChaos])
      .concat([
        [
          'reconnects',
          "kafkajs reconnects each broker connection by itself within a request's retries, and its producer reports no lost connection: a cut it bridges never reaches core, so health().reconnects stays 0 (what the case counts, every event arrived and every publish resolved, is checked)",
        ],
      ])
      .concat(
        chaosCluster
          ? []
          : chaosCases.map((name) => [
              name,
              'KAFKA_URL is set but KAFKA_CHAOS_URL (a one-broker cluster) is not',
            ]),
      ),
  ),
  chaos: { upstream: { host: chaosHost!, port: Number(chaosPort) } },
  tolerances: {
    redeliveryDelayMs: 10_000,
    quietPeriodMs: 500,
  },
  timeoutMs: 30_000,
  report: 'conformance-report.kafka-chaos.json',
});

afterAll(async () => {
  await Promise.all([...producers.values()].map((p) => p.disconnect().catch(() => {})));
  await Promise.all([cluster.stop(), chaosCluster?.stop()]);
});
