/**
 * Reads Rasa's SQL tracker store: the `events` table as Rasa's SQLTrackerStore writes it (`id`, `sender_id`,
 * `type_name`, `timestamp` (float), `intent_name`, `action_name`, `data`: the event's JSON). PostgreSQL through
 * `pg`; SQLite through `sql.js` (WebAssembly: nothing to compile), reading a copy of the file.
 *
 * Rows come in pages ordered by (timestamp, id), which is the order `rasa export` publishes in: it sorts every
 * conversation's events by timestamp, and the tracker store returns a conversation's events by timestamp (ties
 * by insertion, the id).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadEndpoints, redactUrl } from '@parley/core';
import { UsageError } from './exit.js';

export interface EventRow {
  readonly id: number;
  readonly sender_id: string;
  readonly timestamp: number;
  readonly data: string;
}

/** Rasa's export filters: timestamps in seconds, minimum inclusive, maximum exclusive. */
export interface EventFilter {
  readonly conversationIds?: readonly string[];
  readonly minimumTimestamp?: number;
  readonly maximumTimestamp?: number;
}

export interface TrackerStoreReader {
  /** Where it reads from, without credentials. */
  readonly description: string;
  /** Every conversation id in the store. */
  conversationIds(): Promise<string[]>;
  count(filter: EventFilter): Promise<number>;
  /** The next `limit` rows after `after` in (timestamp, id) order. */
  page(filter: EventFilter, after: EventRow | undefined, limit: number): Promise<EventRow[]>;
  close(): Promise<void>;
}

type Dialect = 'postgresql' | 'sqlite';

/**
 * Opens the store a URL names: `postgresql://user:pass@host:5432/db` (SQLAlchemy's `postgresql+psycopg2://` too),
 * `sqlite:///relative.db`, `sqlite:////absolute.db`, or the path of an SQLite file.
 */
export async function openTrackerStore(url: string, table = 'events'): Promise<TrackerStoreReader> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(table)) {
    throw new UsageError(
      `--table: expected a table name (letters, digits, _; schema.table too), found "${table}"`,
    );
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase().split('+')[0];
  if (scheme === 'postgresql' || scheme === 'postgres')
    return openPostgres(url.replace(/^[^:]+:/, 'postgresql:'), table);
  if (scheme === 'sqlite') return openSqlite(sqlitePath(url), table);
  if (scheme === undefined && existsSync(url)) return openSqlite(url, table);
  throw new UsageError(
    `--tracker-store: expected postgresql://user:password@host:5432/database, sqlite:///path/to/rasa.db or an SQLite file, found "${redactUrl(url)}"`,
  );
}

/** SQLAlchemy's `sqlite:///relative.db` and `sqlite:////absolute.db`. */
function sqlitePath(url: string): string {
  const rest = url.replace(/^sqlite:\/\//i, '');
  if (rest === '' || rest === '/')
    throw new UsageError('--tracker-store: an in-memory SQLite database holds no events');
  return rest.startsWith('/') ? rest.slice(1) || '/' : rest;
}

/** WHERE clause and parameters for a filter, after a row, with the dialect's placeholders. */
function where(dialect: Dialect, filter: EventFilter, after?: EventRow): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const p = (value: unknown) => {
    params.push(value);
    return dialect === 'postgresql' ? `$${params.length}` : '?';
  };
  const clauses: string[] = [];
  if (filter.conversationIds !== undefined) {
    clauses.push(`sender_id IN (${filter.conversationIds.map((id) => p(id)).join(', ')})`);
  }
  if (filter.minimumTimestamp !== undefined) clauses.push(`timestamp >= ${p(filter.minimumTimestamp)}`);
  if (filter.maximumTimestamp !== undefined) clauses.push(`timestamp < ${p(filter.maximumTimestamp)}`);
  if (after !== undefined) {
    clauses.push(
      `(timestamp > ${p(after.timestamp)} OR (timestamp = ${p(after.timestamp)} AND id > ${p(after.id)}))`,
    );
  }
  return { sql: clauses.length === 0 ? '' : ` WHERE ${clauses.join(' AND ')}`, params };
}

function row(value: Record<string, unknown>): EventRow {
  return {
    id: Number(value.id),
    sender_id: String(value.sender_id),
    timestamp: Number(value.timestamp),
    data: String(value.data),
  };
}

async function openPostgres(url: string, table: string): Promise<TrackerStoreReader> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  const description = `PostgreSQL ${redactUrl(url)}, table ${table}`;
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw new Error(`cannot connect to the tracker store (${description}): ${(error as Error).message}`, {
      cause: error,
    });
  }
  const query = async (sql: string, params: unknown[]) => {
    try {
      return (await client.query(sql, params)).rows as Record<string, unknown>[];
    } catch (error) {
      throw new Error(`tracker store (${description}): ${(error as Error).message}`, { cause: error });
    }
  };
  return {
    description,
    async conversationIds() {
      return (await query(`SELECT DISTINCT sender_id FROM ${table}`, [])).map((r) => String(r.sender_id));
    },
    async count(filter) {
      const w = where('postgresql', filter);
      return Number((await query(`SELECT count(*) AS n FROM ${table}${w.sql}`, w.params))[0]?.n ?? 0);
    },
    async page(filter, after, limit) {
      const w = where('postgresql', filter, after);
      const sql = `SELECT id, sender_id, timestamp, data FROM ${table}${w.sql} ORDER BY timestamp, id LIMIT ${limit}`;
      return (await query(sql, w.params)).map(row);
    },
    async close() {
      await client.end();
    },
  };
}

async function openSqlite(path: string, table: string): Promise<TrackerStoreReader> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new UsageError(
      `--tracker-store: cannot read the SQLite file ${resolve(path)}: ${(error as Error).message}`,
    );
  }
  const { default: initSqlJs } = await import('sql.js');
  const SQL = await initSqlJs();
  const db = new SQL.Database(bytes);
  const description = `SQLite ${path}, table ${table}`;
  const query = (sql: string, params: unknown[]) => {
    try {
      const statement = db.prepare(sql, params as never);
      const rows: Record<string, unknown>[] = [];
      while (statement.step()) rows.push(statement.getAsObject());
      statement.free();
      return rows;
    } catch (error) {
      throw new Error(`tracker store (${description}): ${(error as Error).message}`, { cause: error });
    }
  };
  return {
    description,
    async conversationIds() {
      return query(`SELECT DISTINCT sender_id FROM ${table}`, []).map((r) => String(r.sender_id));
    },
    async count(filter) {
      const w = where('sqlite', filter);
      return Number(query(`SELECT count(*) AS n FROM ${table}${w.sql}`, w.params)[0]?.n ?? 0);
    },
    async page(filter, after, limit) {
      const w = where('sqlite', filter, after);
      const sql = `SELECT id, sender_id, timestamp, data FROM ${table}${w.sql} ORDER BY timestamp, id LIMIT ${limit}`;
      return query(sql, w.params).map(row);
    },
    async close() {
      db.close();
    },
  };
}

/**
 * The tracker store of an endpoints.yml's `tracker_store` section, as Rasa's SQLTrackerStore builds its URL
 * (`dialect` default sqlite, `url` the host, `port`, `db` default rasa.db, `username`, `password`, `query`), or
 * undefined when the file has no such section. `rasa export` reads the same section.
 */
export async function trackerStoreFromEndpoints(path: string): Promise<string | undefined> {
  const config = await loadEndpoints(path, { section: 'tracker_store' }).catch((error: unknown) => {
    throw new UsageError(
      `${(error as Error).message.replace(/^\[parley\] /, '')}; parley export reads Rasa's SQL tracker store (type: SQL), or pass --tracker-store URL`,
      { cause: error },
    );
  });
  if (config === undefined) return undefined;
  if (config.type !== 'sql') {
    throw new UsageError(
      `${path}: tracker_store.type: parley export reads Rasa's SQL tracker store (type: SQL), found ${JSON.stringify(config.typeAsWritten ?? '')}; pass --tracker-store URL`,
    );
  }
  const o = config.options;
  const text = (key: string) => (o[key] === undefined || o[key] === null ? undefined : String(o[key]));
  const dialect = (text('dialect') ?? 'sqlite').toLowerCase();
  const db = text('db') ?? 'rasa.db';
  if (dialect === 'sqlite') return `sqlite:///${db}`;
  if (!dialect.startsWith('postgres')) {
    throw new UsageError(
      `${path}: tracker_store.dialect: parley export reads postgresql and sqlite, found "${dialect}"`,
    );
  }
  const user = text('username');
  const password = text('password');
  const auth =
    user === undefined
      ? ''
      : `${encodeURIComponent(user)}${password === undefined ? '' : `:${encodeURIComponent(password)}`}@`;
  const host = text('url') ?? 'localhost';
  const port = text('port') ?? '5432';
  const query =
    o.query && typeof o.query === 'object'
      ? `?${new URLSearchParams(o.query as Record<string, string>)}`
      : '';
  return `postgresql://${auth}${host}:${port}/${encodeURIComponent(db)}${query}`;
}
