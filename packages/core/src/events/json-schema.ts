/** The event schemas as one JSON Schema document (draft-07), for consumers written in other languages. */
import { eventSchemas, legacyEventSchemas } from './schemas.js';

/**
 * Builds the JSON Schema document that `@parley/core/events.schema.json` ships: `definitions` holds one schema
 * per event (named after its Rasa class), and the root accepts an envelope `{sender_id, ...event}` of any of them.
 */
export function eventsJsonSchema(): Record<string, unknown> {
  const definitions: Record<string, unknown> = {};
  const refs: { $ref: string }[] = [];
  for (const schema of [...Object.values(eventSchemas), ...Object.values(legacyEventSchemas)]) {
    const { $id, ...rest } = plain(schema) as { $id: string };
    definitions[$id] = rest;
    refs.push({ $ref: `#/definitions/${$id}` });
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://parley.dev/schemas/rasa-event-envelope.json',
    title: 'Rasa event envelope, as published to an event broker',
    description:
      'A flat object: sender_id plus the fields of one Rasa event (Event.as_dict()). Unknown event names are ' +
      'valid too (Rasa keeps adding them); only known names are checked against their definition.',
    type: 'object',
    required: ['sender_id', 'event', 'timestamp'],
    properties: { sender_id: { type: 'string' }, event: { type: 'string' }, timestamp: { type: 'number' } },
    if: {
      properties: { event: { enum: refs.map((r) => r.$ref.slice('#/definitions/'.length)).map(wireName) } },
    },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keywords, not a thenable
    then: { oneOf: refs },
    definitions,
  };
}

const byClass = new Map(
  [...Object.entries(eventSchemas), ...Object.entries(legacyEventSchemas)].map(([name, s]) => [
    s.$id as string,
    name,
  ]),
);
function wireName(className: string): string {
  return byClass.get(className) ?? className;
}

/** A JSON copy without TypeBox's symbols, and without `$id` on nested schemas (each would start a new scope). */
function plain(schema: unknown, depth = 0): unknown {
  if (Array.isArray(schema)) return schema.map((item) => plain(item, depth + 1));
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$id' && depth > 0) continue;
    out[key] = plain(value, depth + 1);
  }
  return out;
}
