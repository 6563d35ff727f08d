/**
 * The factory `consumer-crash` loads in a child process (the suite's consumerProcess): the same streams as the
 * test's own create(), found through the environment the test passes.
 */
import type { ConformanceContext } from '@parley/conformance';
import { redisBroker } from '../src/index.js';

export const create = ({ destination }: ConformanceContext) => {
  const prefix = process.env.PARLEY_REDIS_PREFIX ?? '';
  const cluster = process.env.PARLEY_REDIS_CLUSTER;
  return redisBroker({
    ...(cluster ? { cluster: cluster.split(',') } : { url: process.env.PARLEY_REDIS_URL! }),
    stream: `${prefix}${destination}`,
    claim_idle_in_seconds: Number(process.env.PARLEY_REDIS_CLAIM_IDLE),
    block_in_seconds: 0.5,
    onWarning: () => {},
  });
};
