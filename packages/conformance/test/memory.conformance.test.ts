/**
 * The suite judged by the embedded memory broker (as keyv tests its suite against its memory adapter). The probe
 * reads the `MemoryHub` directly: the hub is the broker server, independent of the driver under test.
 */
import {
  type Broker,
  type DriverFaults,
  defineBroker,
  type MemoryBrokerOptions,
  MemoryHub,
  memoryDriver,
} from '@parley/core';
import { describe, expect, it } from 'vitest';
import { type CaseName, type ConformanceOptions, runCase, runConformance } from '../src/index.js';

/** The suite's options for memory brokers on `hub`, made with `driverOptions` (leases, say). */
function memoryOptions(hub: MemoryHub, driverOptions: MemoryBrokerOptions = {}): ConformanceOptions {
  /** Each broker's driver faults, for the chaos tier (a memory broker has no connection to cut). */
  const faults = new WeakMap<Broker, DriverFaults>();
  return {
    name: 'memory',
    disable: {
      'chaos-stall':
        'an in-process broker has no connection to stall; connection loss is covered by chaos-cut',
      'consumer-crash':
        "the hub lives in the test's process: no consumer in another process can reach it (file and TCP brokers run it)",
    },
    // memoryBroker() is defineBroker(memoryDriver()): built by hand here to reach the driver's faults.
    create: ({ destination }) => {
      const driver = memoryDriver({ ...driverOptions, destination, hub });
      const broker = defineBroker(driver, { onWarning: () => {} });
      if (driver.faults) faults.set(broker, driver.faults);
      return broker;
    },
    probe: {
      publishRaw: async (destination, body, options) => void hub.publishRaw(destination, body, options),
      deadLetters: async (destination, group) =>
        hub.deadLetters(destination, group).map(({ body, headers }) => ({ body, headers: { ...headers } })),
      tap: async (destination) => {
        const from = (hub.messages(destination).at(-1)?.offset ?? -1) + 1;
        return {
          messages: async () =>
            hub
              .messages(destination)
              .filter((message) => message.offset >= from)
              .map(({ body, headers }) => ({ body, headers: { ...headers } })),
          close: async () => {},
        };
      },
    },
    chaos: {
      faults: (broker) => faults.get(broker),
      restartBroker: () => hub.restart({ downMs: 500 }),
    },
    ...(driverOptions.leaseMs === undefined ? {} : { tolerances: { leaseMs: driverOptions.leaseMs } }),
    report: 'conformance-report.memory.json',
  };
}

runConformance(memoryOptions(new MemoryHub('conformance')));

/**
 * Leases (`leaseMs`, as SQS and Redis Streams lend deliveries) change how long core may hold a delivery: the cases
 * where handlers hold deliveries, retry or move between consumers run again with a lease shorter than they take.
 * A subset, to keep the run short: the rest does not hold deliveries long enough for a lease to matter.
 */
describe('conformance: memory with leases (leaseMs 150)', () => {
  const leased: readonly CaseName[] = [
    'lease-extension',
    'competing-consumers',
    'ordering',
    'retry-then-succeed',
    'release-redelivers',
    'drain',
    'dead-letter',
    'delayed-retry',
    'rebalance-while-retrying',
    'delivery-count-dead-letter',
    'dead-letter-redrive',
  ];
  const options = memoryOptions(new MemoryHub('conformance-leases'), { leaseMs: 150 });
  for (const id of leased) {
    it(id, async () => {
      const result = await runCase(id, { ...options, name: 'memory (leases)', report: false });
      if (result.status === 'failed') throw result.error;
      expect(result.status, result.reason).toBe('passed');
    });
  }
});
