/**
 * The suite judged by the embedded memory broker (as keyv tests its suite against its memory adapter). The probe
 * reads the `MemoryHub` directly: the hub is the broker server, independent of the driver under test.
 */
import { type Broker, type DriverFaults, defineBroker, MemoryHub, memoryDriver } from '@parley/core';
import { runConformance } from '../src/index.js';

const hub = new MemoryHub('conformance');
/** Each broker's driver faults, for the chaos tier (a memory broker has no connection to cut). */
const faults = new WeakMap<Broker, DriverFaults>();

runConformance({
  name: 'memory',
  disable: {
    'chaos-stall': 'an in-process broker has no connection to stall; connection loss is covered by chaos-cut',
  },
  // memoryBroker() is defineBroker(memoryDriver()): built by hand here to reach the driver's faults.
  create: ({ destination }) => {
    const driver = memoryDriver({ destination, hub });
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
  report: 'conformance-report.memory.json',
});
