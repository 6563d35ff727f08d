/**
 * The factory `consumer-crash` loads in a child process (the suite's consumerProcess): the same queue as the
 * test's own create(), on the SQS the test passes through the environment.
 */
import type { ConformanceContext } from '@parley/conformance';
import { sqsBroker } from '../src/index.js';
import { deadLetterName, queueName } from './support.js';

export const create = ({ destination }: ConformanceContext) => {
  const fifo = process.env.PARLEY_SQS_FIFO === '1';
  return sqsBroker({
    ...(JSON.parse(process.env.PARLEY_SQS_KEYS!) as { endpoint: string; region: string }),
    queue_name: queueName(destination, fifo),
    create_queue: true,
    dead_letter_queue: deadLetterName(destination, fifo),
    visibility_timeout: Number(process.env.PARLEY_SQS_VISIBILITY),
    wait_time_seconds: 1,
    onWarning: () => {},
  });
};
