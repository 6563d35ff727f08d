/**
 * The shared suite, twice: a standard queue (no order, the chaos tier through the fault proxy between the client and
 * the endpoint) and a FIFO queue (ordering 'group', one message group per sender). Each destination is a queue of its
 * own with a dead-letter queue beside it, created by the adapter (`create_queue`).
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runConformance } from '@parley/conformance';
import { afterAll } from 'vitest';
import { sqsBroker } from '../src/index.js';
import { sqsProbe } from './probe.js';
import { deadLetterName, queueName, startSqs } from './support.js';

const sqs = await startSqs();

// A short visibility timeout: it is the lease, and how long a crashed consumer's messages stay hidden.
const VISIBILITY_S = 2;
const WAIT_S = 1;
const tolerances = {
  leaseMs: VISIBILITY_S * 1000,
  // A message a consumer let go of without a release (a crash) comes back after the visibility timeout, then
  // at a peer's next receive.
  redeliveryDelayMs: VISIBILITY_S * 1000 + WAIT_S * 1000 + 500,
};

const emulated = process.env.SQS_ENDPOINT === undefined;
/** What SQS itself cannot carry, or what fauxqs refuses where AWS does not. */
const payloadLimits = {
  'undecodable-payload':
    'an SQS message body is Unicode text: the case\'s "not UTF-8" bytes cannot be sent to SQS at all (SendMessage refuses them as InvalidMessageContents)',
  ...(emulated
    ? {
        'invalid-payload':
          'fauxqs 1.9.2 refuses characters outside the BMP (its body check lacks the regex u flag, so the 👋 of the valid events between the bad ones fails; AWS accepts #x10000–#x10FFFF). Runs with SQS_ENDPOINT',
      }
    : {}),
};

const consumerProcess = (fifo: boolean) => ({
  module: fileURLToPath(new URL('./conformance-consumer.ts', import.meta.url)),
  execArgv: [
    '--import',
    pathToFileURL(fileURLToPath(new URL('../../../node_modules/tsx/dist/loader.mjs', import.meta.url))).href,
  ],
  env: {
    PARLEY_SQS_KEYS: JSON.stringify(sqs.keys),
    PARLEY_SQS_FIFO: fifo ? '1' : '0',
    PARLEY_SQS_VISIBILITY: String(VISIBILITY_S),
  },
});

const create =
  (fifo: boolean) =>
  ({ destination, proxy }: { destination: string; proxy?: { host: string; port: number } }) =>
    sqsBroker({
      ...sqs.keys,
      ...(proxy ? { endpoint: `http://${proxy.host}:${proxy.port}` } : {}),
      queue_name: queueName(destination, fifo),
      create_queue: true,
      dead_letter_queue: deadLetterName(destination, fifo),
      visibility_timeout: VISIBILITY_S,
      wait_time_seconds: WAIT_S,
      onWarning: () => {},
    });

runConformance({
  name: 'sqs',
  create: create(false),
  probe: sqsProbe(() => sqs.raw, false),
  disable: {
    ...payloadLimits,
    'cut-redelivers':
      'an SQS lease is a visibility timeout, not a connection: a cut restored within it takes nothing back, so nothing is redelivered (lease loss is what lease-extension and consumer-crash test)',
    'chaos-restart': 'fauxqs runs in the test process and keeps its queues in memory: it cannot be restarted',
    persistent: 'fauxqs keeps its queues in memory: nothing survives a restart (AWS SQS is durable)',
    reconnects:
      'SQS is HTTP: there is no connection to lose and make again, so health().reconnects stays 0 (a failed request fails, the next one tries again)',
  },
  chaos: { upstream: { host: sqs.host, port: sqs.port } },
  tolerances,
  consumerProcess: consumerProcess(false),
  timeoutMs: 30_000,
  report: 'conformance-report.sqs.json',
});

const chaosOnce = 'the chaos tier runs once per adapter, against the standard queue above (2 shared cores)';
runConformance({
  name: 'sqs (fifo)',
  create: create(true),
  probe: sqsProbe(() => sqs.raw, true),
  disable: {
    ...payloadLimits,
    'chaos-cut': chaosOnce,
    'chaos-stall': chaosOnce,
    'cut-redelivers': chaosOnce,
    'close-unreachable': chaosOnce,
    'chaos-restart': 'fauxqs runs in the test process and keeps its queues in memory: it cannot be restarted',
    persistent: 'fauxqs keeps its queues in memory: nothing survives a restart (AWS SQS is durable)',
  },
  tolerances,
  consumerProcess: consumerProcess(true),
  timeoutMs: 30_000,
  report: 'conformance-report.sqs-fifo.json',
});

afterAll(async () => {
  await sqs.stop();
});
