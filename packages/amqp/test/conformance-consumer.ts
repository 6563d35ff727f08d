/**
 * The factory `consumer-crash` loads in a child process (the suite's consumerProcess): the same broker as
 * conformance.test.ts's create(), found through the environment it passes.
 */
import type { ConformanceContext } from '@parley/conformance';
import { amqpBroker } from '../src/index.js';

export const create = ({ destination }: ConformanceContext) => {
  const name = `${process.env.PARLEY_AMQP_PREFIX ?? ''}${destination}`;
  return amqpBroker({
    url: process.env.PARLEY_AMQP_URL!,
    exchange_name: name,
    queues: [name],
    heartbeat: 5,
    onWarning: () => {},
  });
};
