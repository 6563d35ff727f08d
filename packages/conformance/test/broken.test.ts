/**
 * The suite proves it can fail: each broken driver (src/broken) breaks one promise, and every case it names must
 * FAIL against it. The controls show that the same cases pass against the drivers the broken ones are made from,
 * so a failure comes from the defect, not from the setup.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokenDrivers, type CaseName, type DriverSetup, referenceDrivers, runCase } from '../src/index.js';

/** Runs `cases` against what `start()` makes, each as a test expecting `status`. */
function judge(
  title: string,
  start: () => Promise<DriverSetup>,
  cases: readonly CaseName[],
  status: 'passed' | 'failed',
): void {
  describe(title, () => {
    let setup: DriverSetup;
    beforeAll(async () => {
      setup = await start();
    });
    afterAll(() => setup?.close());
    for (const id of cases) {
      it(`${id} ${status === 'failed' ? 'fails' : 'passes'}`, async () => {
        const result = await runCase(id, setup.options);
        if (status === 'failed') console.info(`[broken] ${title}: ${id} failed: ${result.reason}`);
        if (status === 'passed' && result.status === 'failed') throw result.error;
        expect(result.status, `${id}: ${result.reason ?? ''}`).toBe(status);
        if (status === 'failed') {
          // Failed by one of its checks (an assertion, or a wait that timed out), not by a bug of the suite.
          const error = result.error as Error;
          const judged =
            error.name === 'AssertionError' || error.message.startsWith('[conformance] timed out');
          expect(judged, `${id} failed by ${error.name}: ${error.message}`).toBe(true);
        }
      });
    }
  });
}

// Concurrently: most defects show as events that never come, so these runs mostly wait for their timeouts.
describe.concurrent('the suite rejects each broken driver', () => {
  for (const broken of brokenDrivers)
    judge(`${broken.name} (${broken.breaks})`, broken.start, broken.caughtBy, 'failed');
});

describe('controls: the drivers they are made from pass the same cases', () => {
  judge(
    'relayed (a memory hub behind TCP)',
    referenceDrivers.relayed.start,
    ['batch-publish', 'chaos-cut', 'chaos-stall', 'cut-redelivers', 'close-unreachable'],
    'passed',
  );
  judge(
    "per-consumer lock declared as ordering: 'consumer'",
    referenceDrivers.consumerOrdering.start,
    ['ordering'],
    'passed',
  );
  // Issue 7, defect 1: a retryable failure must not let a sender's later batch overtake the one sent again.
  judge(
    'every third send fails retryably',
    referenceDrivers.flakySend.start,
    ['ordering', 'batch-publish', 'handlers-and-iterator'],
    'passed',
  );
});
