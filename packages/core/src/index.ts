/**
 * @parley/core — Rasa-compatible conversation events for TypeScript.
 *
 * - events: every Rasa event type, typed (`RasaEvent`), validated (`parseEvent`), built with Rasa's defaults
 * - wire: the flat `{sender_id, ...event}` envelope as bytes (`encodeEvent`, `decodeEvent`), Python-exact on demand
 * - config: Rasa's `endpoints.yml` (`loadEndpoints`)
 */
export * from './config/endpoints.js';
export * from './errors.js';
export * from './events/constructors.js';
export * from './events/json-schema.js';
export * from './events/parse.js';
export * from './events/readers.js';
export * from './events/schemas.js';
export type * from './events/types.js';
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
