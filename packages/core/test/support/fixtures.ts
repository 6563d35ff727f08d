import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository's shared Rasa fixtures (see fixtures/rasa/NOTICE). */
export const fixturesDir = fileURLToPath(new URL('../../../../fixtures/rasa/', import.meta.url));

/** Every fixture event as the exact line Rasa's broker publishes (Python json.dumps), by conversation. */
export function wireLines(): { conversation: string; line: string }[] {
  const dir = `${fixturesDir}wire/`;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((file) =>
      readFileSync(dir + file, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => ({ conversation: file.replace('.jsonl', ''), line })),
    );
}
