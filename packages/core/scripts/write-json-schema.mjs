// Writes dist/events.schema.json from the compiled schemas (run by `build`, after tsc).
import { writeFileSync } from 'node:fs';
import { eventsJsonSchema } from '../dist/events/json-schema.js';

writeFileSync(
  new URL('../dist/events.schema.json', import.meta.url),
  `${JSON.stringify(eventsJsonSchema(), null, 2)}\n`,
);
