/**
 * @parley/conformance: the suite every Parley broker adapter must pass. One call registers every case with vitest:
 *
 * ```ts
 * runConformance({ name: 'kafka', create: ({ destination }) => kafkaBroker({ topic: destination }), probe });
 * ```
 *
 * Cases a broker cannot run (a capability it does not declare, a hook it lacks, or one it disables with a reason)
 * show as skipped tests saying why. After the run, `conformance-report.json` lists every case and its outcome.
 */
export {
  BROKEN_TIMEOUT_MS,
  type BrokenDriver,
  brokenDrivers,
  type DriverSetup,
  type Relay,
  type RelayDriverOptions,
  referenceDrivers,
  relayDriver,
  startRelay,
} from './broken/index.js';
export { type FaultMode, type FaultProxy, type FaultProxyOptions, startFaultProxy } from './fault-proxy.js';
export { rasaSampleBodies, rasaSampleLines } from './rasa-sample.js';
export { type CaseResult, runCase } from './run-case.js';
export { type ConformanceReport, runConformance } from './suite.js';
export {
  type CaseName,
  type ChaosOptions,
  type CheckName,
  type ConformanceContext,
  type ConformanceOptions,
  type ConsumerProcess,
  caseNames,
  checkNames,
  type Probe,
  type ProbeMessage,
  type Tolerances,
} from './types.js';
