/**
 * `parley export` end to end, as `rasa export`: Rasa's SQL tracker store (the `events` table exactly as
 * SQLTrackerStore creates it) filled with the fixture conversations, in PostgreSQL and in an SQLite file, published
 * to the file broker and to RabbitMQ. The expected order is computed the way Rasa's exporter computes it, apart
 * from the implementation under test.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'amqplib';
import pg from 'pg';
import initSqlJs from 'sql.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AMQP_URL,
  cleanUpAmqp,
  PG_URL,
  pikaSection,
  run,
  tempDir,
  unique,
  wireLines,
  writeEndpoints,
} from './support.js';

/** A row of Rasa's `events` table. */
interface Row {
  id: number;
  sender_id: string;
  type_name: string;
  timestamp: number;
  intent_name: string | null;
  action_name: string | null;
  data: string;
}

/**
 * The fixture conversations as SQLTrackerStore stores them: `data` is the event's json.dumps (the wire line
 * without its leading `"sender_id"`), in tracker order. The CALM conversation is stored first: the export must
 * still publish the 2018 moodbot conversation before it, and moodbot's own events by timestamp, not as stored.
 */
function trackerRows(): Row[] {
  const rows: Row[] = [];
  for (const [file, sender] of [
    ['calm_add_contact_inspector.jsonl', 'calm-add-contact'],
    ['tracker_moodbot.jsonl', 'mysender'],
  ] as const) {
    for (const line of wireLines(file)) {
      const prefix = `{"sender_id": "${sender}", `;
      expect(line.startsWith(prefix)).toBe(true);
      const data = `{${line.slice(prefix.length)}`;
      const event = JSON.parse(data);
      rows.push({
        id: rows.length + 1,
        sender_id: sender,
        type_name: event.event,
        timestamp: event.timestamp,
        intent_name: event.parse_data?.intent?.name ?? null,
        action_name: event.name ?? null,
        data,
      });
    }
  }
  return rows;
}

/**
 * What `rasa export` publishes, computed as Rasa's exporter does: each conversation's events from the store by
 * timestamp (ties by id), all conversations together sorted by timestamp (Python's sort is stable), events before
 * the minimum dropped, from the maximum on cut; each event's dict with `sender_id` added last, json.dumps'd.
 */
function rasaExport(rows: Row[], filter: { min?: number; max?: number; ids?: string[] } = {}): string[] {
  const conversations = [...new Set(rows.map((r) => r.sender_id))].filter(
    (id) => !filter.ids || filter.ids.includes(id),
  );
  const events = conversations.flatMap((id) =>
    rows.filter((r) => r.sender_id === id).sort((a, b) => a.timestamp - b.timestamp || a.id - b.id),
  );
  events.sort((a, b) => a.timestamp - b.timestamp);
  return events
    .filter(
      (r) =>
        (filter.min === undefined || r.timestamp >= filter.min) &&
        (filter.max === undefined || r.timestamp < filter.max),
    )
    .map((r) => `${r.data.slice(0, -1)}, "sender_id": "${r.sender_id}"}`);
}

const CREATE = `CREATE TABLE events (
  id SERIAL PRIMARY KEY,
  sender_id VARCHAR(255) NOT NULL,
  type_name VARCHAR(255) NOT NULL,
  timestamp FLOAT,
  intent_name VARCHAR(255),
  action_name VARCHAR(255),
  data TEXT
)`;
const INSERT =
  'INSERT INTO events (id, sender_id, type_name, timestamp, intent_name, action_name, data) VALUES ($1, $2, $3, $4, $5, $6, $7)';
const values = (r: Row) => [
  r.id,
  r.sender_id,
  r.type_name,
  r.timestamp,
  r.intent_name,
  r.action_name,
  r.data,
];

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

const rows = trackerRows();
const logLines = () =>
  readFileSync(join(dir, 'events.log'), 'utf8')
    .split('\n')
    .filter((l) => l !== '');

describe('parley export, PostgreSQL tracker store', () => {
  const schema = unique('parley_cli_export').replaceAll('-', '_');
  const storeUrl = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const prefix = unique('parley-cli-export');

  beforeAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}`);
    await client.query(`SET search_path TO ${schema}`);
    await client.query(CREATE);
    for (const row of rows) await client.query(INSERT, values(row));
    await client.end();
  });
  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
    await cleanUpAmqp(prefix);
  });

  it('publishes every event in the order rasa export does, each as Rasa writes it with sender_id last', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'file', path: join(dir, 'events.log') });
    const result = await run(['export', '--tracker-store', storeUrl], dir);
    expect(result.stderr).toContain(`published ${rows.length} events`);
    expect(result.code).toBe(0);
    const expected = rasaExport(rows);
    expect(expected[0]).toContain('"sender_id": "mysender"}');
    expect(logLines()).toEqual(expected);
  });

  it('filters by --minimum-timestamp (inclusive), --maximum-timestamp (exclusive) and --conversation-ids, with one rasa-export-process-id on every message', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), pikaSection(prefix));
    const calm = rows
      .filter((r) => r.sender_id === 'calm-add-contact')
      .sort((a, b) => a.timestamp - b.timestamp);
    const min = calm[10]?.timestamp ?? 0;
    const max = calm[40]?.timestamp ?? 0;
    // Rasa's queue exists before the export (Rasa declares it when it connects).
    expect((await run(['check'], dir)).code).toBe(0);
    const result = await run(
      [
        'export',
        '--tracker-store',
        storeUrl,
        '--minimum-timestamp',
        String(min),
        '--maximum-timestamp',
        String(max),
        '--conversation-ids',
        'calm-add-contact,nobody',
      ],
      dir,
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('warning: not in the tracker store, skipped: nobody');
    const expected = rasaExport(rows, { min, max, ids: ['calm-add-contact'] });
    expect(expected).toHaveLength(30);

    const connection = await connect(AMQP_URL);
    const channel = await connection.createChannel();
    const bodies: string[] = [];
    const processIds = new Set<unknown>();
    for (;;) {
      const message = await channel.get(`${prefix}-q`, { noAck: true });
      if (message === false) break;
      bodies.push(message.content.toString('utf8'));
      processIds.add(message.properties.headers?.['rasa-export-process-id']);
    }
    await connection.close();
    expect(bodies).toEqual(expected);
    expect(processIds.size).toBe(1);
    expect([...processIds][0]).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it("reads endpoints.yml's tracker_store section (dialect: postgresql) when --tracker-store is not given", async () => {
    const url = new URL(PG_URL);
    await writeFile(
      join(dir, 'endpoints.yml'),
      [
        'tracker_store:',
        '  type: SQL',
        '  dialect: postgresql',
        `  url: ${url.hostname}`,
        `  port: ${url.port || 5432}`,
        `  username: ${decodeURIComponent(url.username || 'postgres')}`,
        ...(url.password ? [`  password: ${decodeURIComponent(url.password)}`] : []),
        `  db: ${url.pathname.slice(1)}`,
        '  query:',
        `    options: -c search_path=${schema}`,
        'event_broker:',
        '  type: file',
        `  path: ${join(dir, 'events.log')}`,
        '',
      ].join('\n'),
    );
    const result = await run(['export', '--conversation-ids', 'calm-add-contact'], dir);
    expect(result.code).toBe(0);
    expect(logLines()).toEqual(rasaExport(rows, { ids: ['calm-add-contact'] }));
  });

  it('exits 1 when nothing matches, and names the store without its password', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'file', path: join(dir, 'events.log') });
    const none = await run(['export', '--tracker-store', storeUrl, '--minimum-timestamp', '4000000000'], dir);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no events to export from PostgreSQL');
    const ids = await run(['export', '--tracker-store', storeUrl, '--conversation-ids', 'nobody'], dir);
    expect(ids.code).toBe(1);
    expect(ids.stderr).toContain('none of the requested conversation ids is in the tracker store: nobody');

    const url = new URL(PG_URL);
    url.password = 'hunter2-secret';
    url.port = '1';
    const refused = await run(['export', '--tracker-store', url.href], dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('cannot connect to the tracker store');
    expect(refused.stderr).not.toContain('hunter2-secret');
  });
});

describe('parley export, SQLite tracker store', () => {
  it('reads an SQLite file (sqlite:///path, as SQLAlchemy writes it) in the same order', async () => {
    const SQL = await initSqlJs();
    const db = new SQL.Database();
    db.run(CREATE.replace('SERIAL', 'INTEGER'));
    for (const row of rows) db.run(INSERT.replace(/\$\d/g, '?'), values(row));
    const file = join(dir, 'rasa.db');
    await writeFile(file, db.export());
    db.close();
    await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'file', path: join(dir, 'events.log') });

    const result = await run(
      ['export', '--tracker-store', `sqlite:///${file}`, '--conversation-ids', 'mysender'],
      dir,
    );
    expect(result.code).toBe(0);
    expect(logLines()).toEqual(rasaExport(rows, { ids: ['mysender'] }));
    // Without --tracker-store: endpoints.yml's tracker_store section, as `rasa export` reads it.
    await writeFile(
      join(dir, 'endpoints.yml'),
      `tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: rasa.db\nevent_broker:\n  type: file\n  path: ${join(dir, 'again.log')}\n`,
    );
    const fromEndpoints = await run(['export'], dir);
    expect(fromEndpoints.code).toBe(0);
    expect(
      readFileSync(join(dir, 'again.log'), 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
    ).toEqual(rasaExport(rows));

    // A broker that refuses (the file broker's path is a directory): stops, and says where to continue from.
    await mkdir(join(dir, 'a-directory'));
    await writeEndpoints(join(dir, 'refusing.yml'), { type: 'file', path: join(dir, 'a-directory') });
    const refused = await run(['export', '--tracker-store', file, '--endpoints', 'refusing.yml'], dir);
    expect(refused.code).toBe(1);
    const first = rows.reduce((a, b) => (b.timestamp < a.timestamp ? b : a));
    expect(refused.stderr).toContain(`published 0 of ${rows.length} events, then: [file] publish refused`);
    expect(refused.stderr).toContain(`run the same export with --minimum-timestamp ${first.timestamp}`);

    const bad = await run(['export', '--tracker-store', 'mysql://x@y/z'], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--tracker-store: expected postgresql://');
  });
});
