/**
 * @parley/core — Rasa-compatible conversation events for TypeScript.
 *
 * - events: every Rasa event type, typed (`RasaEvent`), validated (`parseEvent`), built with Rasa's defaults
 * - wire: the flat `{sender_id, ...event}` envelope as bytes (`encodeEvent`, `decodeEvent`), Python-exact on demand
 * - config: Rasa's `endpoints.yml` (`loadEndpoints`), and `createBroker` for the broker it names
 * - brokers: the contract every adapter implements (`Broker`, `defineBroker`), the embedded `memoryBroker` and
 *   `fileBroker`, and Rasa's `InMemoryTrackerStore`
 */
export * from './broker/ack-window.js';
export * from './broker/backoff.js';
export type * from './broker/contract.js';
export * from './broker/dead-letter.js';
export * from './broker/define.js';
export * from './broker/file.js';
export * from './broker/log.js';
export * from './broker/memory.js';
export * from './broker/registry.js';
export * from './broker/sender-lock.js';
export * from './config/endpoints.js';
export * from './errors.js';
export * from './events/constructors.js';
export * from './events/json-schema.js';
export * from './events/parse.js';
export * from './events/readers.js';
export * from './events/schemas.js';
export type * from './events/types.js';
export {
  type UnknownEventInit,
  type UnknownEventOf,
  unknownEvent,
  unknownEventMark,
} from './events/unknown.js';
export { didYouMean } from './suggest.js';
export * from './tracker/tracker-store.js';
export * from './wire/codec.js';
export {
  dumpsPython,
  type FloatHints,
  JsonSyntaxError,
  type NumberShape,
  parseJson,
  pythonFloatRepr,
  scanNumberShape,
} from './wire/python-json.js';
