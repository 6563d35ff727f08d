/**
 * `parley dead-letters` end to end: dead letters made by a real consumer whose handler fails (file broker and
 * RabbitMQ), listed, shown and redriven by the command, then consumed again by the group. A broker that keeps no
 * dead letters gets a clear refusal.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Broker, createBroker } from '@parley/core';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  cleanUpAmqp,
  deadLetterAll,
  pikaSection,
  run,
  tempDir,
  unique,
  wireLines,
  writeEndpoints,
} from './support.js';

/** The dead letters these tests make on purpose are not warnings worth printing. */
const quiet = { onWarning: () => {} };
let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

/** Publishes the first `count` events of the moodbot conversation. */
async function publishMoodbot(broker: Broker, count: number): Promise<void> {
  const lines = wireLines('tracker_moodbot.jsonl').slice(0, count);
  const results = await broker.publishMany(lines.map((line) => JSON.parse(line)));
  expect(results.every((r) => r.ok)).toBe(true);
}

/** Consumes `count` events of a group, then closes. */
async function consume(broker: Broker, group: string, count: number): Promise<string[]> {
  const seen: string[] = [];
  let enough!: () => void;
  const done = new Promise<void>((resolve) => (enough = resolve));
  const subscription = broker.subscribe(
    (event) => {
      seen.push(event.event);
      if (seen.length === count) enough();
    },
    { group },
  );
  await done;
  await subscription.close();
  return seen;
}

describe('parley dead-letters, file broker', () => {
  it('lists, shows and redrives one dead letter, which the group then handles', async () => {
    const endpoints = await writeEndpoints(join(dir, 'endpoints.yml'), {
      type: 'file',
      path: join(dir, 'events.log'),
    });
    const broker = await createBroker(endpoints, quiet);
    await deadLetterAll(broker, 3, { group: 'analytics' }, () => publishMoodbot(broker, 3));
    await broker.close();

    const list = await run(['dead-letters', 'list', '--group', 'analytics'], dir);
    expect(list.code).toBe(0);
    const [header, ...rows] = list.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID +REASON +ATTEMPTS +AGE +SENDER +ERROR$/);
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toMatch(/^\S+ +handler-failed +2 +\d+s +mysender +.*the analytics database is down$/);
    }
    const ids = rows.map((row) => row.split(' ')[0] ?? '');

    const show = await run(['dead-letters', 'show', ids[1] ?? '', '--group', 'analytics'], dir);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('reason:      handler-failed');
    expect(show.stdout).toContain('attempts:    2');
    expect(show.stdout).toContain(`body:        ${wireLines('tracker_moodbot.jsonl')[1]}`);

    const unknownId = await run(['dead-letters', 'redrive', 'no-such-id', '--group', 'analytics'], dir);
    expect(unknownId.code).toBe(1);
    expect(unknownId.stderr).toContain('no dead letter "no-such-id" in group "analytics": nothing redriven');
    const neither = await run(['dead-letters', 'redrive', '--group', 'analytics'], dir);
    expect(neither.code).toBe(2);

    const redrive = await run(['dead-letters', 'redrive', ids[0] ?? '', '--group', 'analytics'], dir);
    expect(redrive.code).toBe(0);
    expect(redrive.stderr).toContain('redrove 1 of 1 dead letter to group "analytics"');
    const after = await run(['dead-letters', 'list', '--group', 'analytics', '--json'], dir);
    expect(
      after.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l).id),
    ).toEqual(ids.slice(1));

    const again = await createBroker(endpoints, quiet);
    expect(await consume(again, 'analytics', 1)).toEqual(['action']);
    await again.close();
  });

  it('a broker that keeps no dead letters is refused, saying so (exit 2)', async () => {
    // A real broker (memory) whose adapter declares no redrive, as a third-party adapter may.
    const core = pathToFileURL(join(import.meta.dirname, '../node_modules/@parley/core/dist/index.js')).href;
    await writeFile(
      join(dir, 'no-redrive.mjs'),
      `import { memoryBroker } from ${JSON.stringify(core)};
export function fromEndpointConfig() {
  const broker = memoryBroker({});
  return new Proxy(broker, {
    get(target, key) {
      if (key === 'capabilities') return { ...target.capabilities, redrive: false };
      const value = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
`,
    );
    await writeEndpoints(join(dir, 'endpoints.yml'), { type: './no-redrive.mjs' });
    const result = await run(['dead-letters', 'list'], dir);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'keeps no dead letters Parley can list or redrive (capabilities.redrive is false)',
    );
  });
});

describe('parley dead-letters, RabbitMQ', () => {
  const prefix = unique('parley-cli-dl');
  afterAll(() => cleanUpAmqp(prefix));

  it('redrive --all sends every dead letter back to its queue and reports how many went', async () => {
    const endpoints = await writeEndpoints(join(dir, 'endpoints.yml'), pikaSection(prefix));
    const group = `${prefix}-q`;
    const broker = await createBroker(endpoints, quiet);
    await deadLetterAll(broker, 4, { group }, () => publishMoodbot(broker, 4));
    await broker.close();

    const list = await run(['dead-letters', 'list', '--group', group], dir);
    expect(list.code).toBe(0);
    expect(list.stdout.trimEnd().split('\n')).toHaveLength(5);
    const redrive = await run(['dead-letters', 'redrive', '--all', '--group', group], dir);
    expect(redrive.code).toBe(0);
    expect(redrive.stderr).toContain(`redrove 4 of 4 dead letters to group "${group}"`);
    const empty = await run(['dead-letters', 'list', '--group', group], dir);
    expect(empty.stdout).toBe('');
    expect(empty.stderr).toContain('no dead letters');

    const again = await createBroker(endpoints, quiet);
    expect(await consume(again, group, 4)).toEqual(['action', 'user', 'action', 'action']);
    await again.close();
  });
});
