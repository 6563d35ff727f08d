/**
 * The embedded in-memory broker. The conformance suite judges itself by it, so it keeps the promises of a durable
 * broker, in-process: a `MemoryHub` is the broker server (per destination an append-only log and its consumer
 * groups), and each driver is one client connection to it, which `faults` can cut as a network would.
 */
export { type MemoryBrokerOptions, memoryBroker, memoryDriver } from './memory/driver.js';
export { MemoryHub } from './memory/hub.js';
export type { MemoryGroupInfo, MemoryMessage } from './memory/model.js';
