/**
 * The factory `consumer-crash` loads in a child process (the suite's consumerProcess): the same topics and keys as
 * the test's own create(), found through the environment the test passes.
 */
import type { ConformanceContext } from '@parley/conformance';
import { kafkaBroker } from '../src/index.js';

export const create = ({ destination }: ConformanceContext) =>
  kafkaBroker({
    ...(JSON.parse(process.env.PARLEY_KAFKA_KEYS!) as Record<string, unknown>),
    topic: `${process.env.PARLEY_KAFKA_PREFIX ?? ''}${destination}`,
    onWarning: () => {},
  });
