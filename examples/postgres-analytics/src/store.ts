/**
 * The analytics table: one row per Rasa event. The primary key is a hash of the message exactly as Rasa sent it
 * (sender_id, timestamp and the whole event are in those bytes), so a redelivered event, after a crash or a
 * redrive, lands on its own row again and `ON CONFLICT DO NOTHING` makes the second write harmless.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';

/** What one row holds besides the event's JSON. */
export interface EventRow {
  readonly sender_id: string;
  readonly event: string;
  readonly timestamp: number;
  readonly intent?: string | null | undefined;
  readonly action?: string | null | undefined;
  readonly text?: string | null | undefined;
  readonly slot?: string | null | undefined;
}

/** `analytics.rasa_events` or `rasa_events`: a plain SQL name, never quoted user input. */
export function checkTableName(table: string): string {
  if (!/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/i.test(table)) {
    throw new Error(
      `ANALYTICS_TABLE: expected a table name (letters, digits, _; schema.table too), found "${table}"`,
    );
  }
  return table;
}

export async function createTable(db: pg.Pool, table: string): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS ${table} (
    event_id    text PRIMARY KEY,
    sender_id   text NOT NULL,
    event       text NOT NULL,
    timestamp   double precision NOT NULL,
    intent      text,
    action      text,
    text        text,
    slot        text,
    body        jsonb NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
  )`);
}

/** The row's key: the SHA-256 of the message's bytes. */
export function eventId(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex');
}

/** Inserts the row once; a redelivery finds it there and changes nothing. Resolves true when it was new. */
export async function insertEvent(
  db: pg.Pool,
  table: string,
  row: EventRow,
  body: Uint8Array,
): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO ${table} (event_id, sender_id, event, timestamp, intent, action, text, slot, body)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (event_id) DO NOTHING`,
    [
      eventId(body),
      row.sender_id,
      row.event,
      row.timestamp,
      row.intent ?? null,
      row.action ?? null,
      row.text ?? null,
      row.slot ?? null,
      Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'),
    ],
  );
  return result.rowCount === 1;
}
