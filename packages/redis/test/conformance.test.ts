/**
 * The shared suite, three times: every case against the shared Redis (127.0.0.1:6379, or REDIS_URL), the fault
 * proxy in front of it for the chaos cases; the two cases that restart Redis (chaos-restart, persistent) against a
 * dedicated redis-server of the test's own with `appendonly yes` + `appendfsync always`, killed with SIGKILL; and
 * every case but the chaos tier against a 3-master Redis Cluster of the test's own.
 */

import { fileURLToPath, pathToFileURL } from 'node:url';
import { type CaseName, caseNames, runConformance } from '@parley/conformance';
import { Cluster, type Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { deadLetterKey, redisBroker } from '../src/index.js';
import { redisProbe } from './probe.js';
import { REDIS_URL, rawClient, requireSharedRedis, startCluster, startOwnServer } from './support.js';

await requireSharedRedis();
const prefix = `parley-conf-${process.pid}-`;
const key = (destination: string) => `${prefix}${destination}`;
const shared = rawClient();
const own = await startOwnServer();
const ownClient = rawClient(own.url);
const cluster = await startCluster();
const clusterClient = new Cluster(
  cluster.nodes.map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) })),
);
clusterClient.on('error', () => {});
const streams = new Set<string>();
const track = (destination: string) => {
  streams.add(key(destination));
  return key(destination);
};

// Short claim idle time: released entries go to a peer at its next claim scan, and the scans follow it.
const CLAIM_IDLE_S = 2;
const tuning = { claim_idle_in_seconds: CLAIM_IDLE_S, block_in_seconds: 0.5 } as const;
const tolerances = {
  // The lease is the claim idle time; a handover waits for it (a dead consumer's entry) plus a claim scan.
  leaseMs: CLAIM_IDLE_S * 1000,
  redeliveryDelayMs: CLAIM_IDLE_S * 1000 + 1_000,
};
/** `consumer-crash`'s child: node with tsx's loader (test/conformance-consumer.ts is TypeScript). */
const consumerProcess = (env: Record<string, string>) => ({
  module: fileURLToPath(new URL('./conformance-consumer.ts', import.meta.url)),
  execArgv: [
    '--import',
    pathToFileURL(fileURLToPath(new URL('../../../node_modules/tsx/dist/loader.mjs', import.meta.url))).href,
  ],
  env: { PARLEY_REDIS_PREFIX: prefix, PARLEY_REDIS_CLAIM_IDLE: String(CLAIM_IDLE_S), ...env },
});

const sharedUrl = new URL(REDIS_URL);
runConformance({
  name: 'redis',
  create: ({ destination, proxy }) =>
    redisBroker({
      url: proxy ? `redis://${proxy.host}:${proxy.port}` : REDIS_URL,
      stream: track(destination),
      ...tuning,
      onWarning: () => {},
    }),
  probe: redisProbe(() => shared, track),
  disable: {
    'chaos-restart':
      'runs in "redis (dedicated, appendfsync always)" below: the shared Redis is never restarted',
    persistent: 'runs in "redis (dedicated, appendfsync always)" below: the shared Redis is never restarted',
  },
  chaos: { upstream: { host: sharedUrl.hostname, port: Number(sharedUrl.port || 6379) } },
  tolerances,
  consumerProcess: consumerProcess({ PARLEY_REDIS_URL: REDIS_URL }),
  timeoutMs: 30_000,
  report: 'conformance-report.redis.json',
});

const restartCases: readonly CaseName[] = ['chaos-restart', 'persistent'];
runConformance({
  name: 'redis (dedicated, appendfsync always)',
  create: ({ destination }) =>
    redisBroker({ url: own.url, stream: track(destination), ...tuning, onWarning: () => {} }),
  probe: redisProbe(() => ownClient, track),
  disable: Object.fromEntries(
    caseNames
      .filter((name) => !restartCases.includes(name))
      .map((name) => [name, 'runs against the shared Redis above']),
  ),
  chaos: { restartBroker: () => own.restart(500) },
  tolerances,
  timeoutMs: 30_000,
  report: 'conformance-report.redis-restart.json',
});

const proxyless =
  "a Cluster client follows MOVED redirects to each node's own address, past any single proxy: the chaos tier runs against the single node above";
const noRestart =
  'restarts run against the dedicated single node above (a master of a cluster without replicas takes its slots down with it)';
runConformance({
  name: 'redis (cluster, 3 masters)',
  create: ({ destination }) =>
    redisBroker({ cluster: [...cluster.nodes], stream: track(destination), ...tuning, onWarning: () => {} }),
  probe: redisProbe(() => clusterClient as unknown as Redis, track),
  disable: {
    'chaos-cut': proxyless,
    'cut-redelivers': proxyless,
    'chaos-stall': proxyless,
    'close-unreachable': proxyless,
    'chaos-restart': noRestart,
    persistent: noRestart,
  },
  tolerances,
  consumerProcess: consumerProcess({ PARLEY_REDIS_CLUSTER: cluster.nodes.join(',') }),
  timeoutMs: 30_000,
  report: 'conformance-report.redis-cluster.json',
});

afterAll(async () => {
  if (streams.size > 0) {
    const keys = [...streams].flatMap((stream) => [stream, deadLetterKey(stream)]);
    await shared.del(...keys).catch(() => {});
  }
  shared.disconnect();
  ownClient.disconnect();
  clusterClient.disconnect();
  await Promise.all([own.stop(), cluster.stop()]);
});
