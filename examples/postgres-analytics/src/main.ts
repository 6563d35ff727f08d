/**
 * Rasa's events into PostgreSQL, one row per event, for analytics: typed handlers per event type, idempotent on
 * redelivery, a `/health` endpoint from `broker.health()`, dead letters at `/dead-letters`, and a graceful
 * shutdown on SIGTERM. Run: `pnpm --filter @parley/example-postgres-analytics start`.
 *
 * Environment: `ENDPOINTS` (endpoints.yml, default ./endpoints.yml), `PG_URL` or `DATABASE_URL` (default
 * postgresql://postgres@127.0.0.1:5432/test), `ANALYTICS_TABLE` (rasa_events), `ANALYTICS_GROUP` (analytics),
 * `PORT` (8080; 0 picks a free one), `CONCURRENCY` (8).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AnyEvent, createBroker, type EventEnvelope, userIntent } from '@parley/core';
import pg from 'pg';
import { checkTableName, createTable, insertEvent } from './store.js';

const env = process.env;
const table = checkTableName(env.ANALYTICS_TABLE ?? 'rasa_events');
const group = env.ANALYTICS_GROUP ?? 'analytics';
const db = new pg.Pool({
  connectionString: env.PG_URL ?? env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test',
});
await createTable(db, table);

const broker = await createBroker(env.ENDPOINTS ?? 'endpoints.yml', { logger: console });
await broker.ready({ timeoutMs: 30_000 });

/** The columns every event fills. */
const base = (event: EventEnvelope<AnyEvent>) => ({
  sender_id: event.sender_id,
  event: event.event,
  timestamp: event.timestamp,
});

let inserted = 0;
let duplicates = 0;
const count = (isNew: boolean) => (isNew ? inserted++ : duplicates++);

const subscription = broker.subscribe(
  {
    user: async (event, { body }) => {
      count(
        await insertEvent(
          db,
          table,
          { ...base(event), intent: userIntent(event)?.name, text: event.text },
          body,
        ),
      );
    },
    bot: async (event, { body }) => {
      count(await insertEvent(db, table, { ...base(event), text: event.text }, body));
    },
    action: async (event, { body }) => {
      count(await insertEvent(db, table, { ...base(event), action: event.name }, body));
    },
    slot: async (event, { body }) => {
      count(await insertEvent(db, table, { ...base(event), slot: event.name }, body));
    },
    // Every other type (flows, stack, session starts, ones a newer Rasa adds): stored with its JSON.
    '*': async (event, { body }) => {
      count(await insertEvent(db, table, base(event), body));
    },
  },
  {
    group,
    // A new group reads what Rasa logged before it existed, where the broker keeps a log (file, Redis, Kafka).
    ...(broker.capabilities.replay ? { from: 'beginning' as const } : {}),
    concurrency: Number(env.CONCURRENCY ?? 8),
    maxAttempts: 3,
    onError: (error) => console.error(error.message),
  },
);
await subscription.ready;

// Health: 200 while connected; what is consumed, retried and dead-lettered, and the table's own counts.
const server = createServer(async (request, response) => {
  try {
    if (request.url === '/health') {
      const report = await broker.health();
      response.writeHead(report.ready ? 200 : 503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ ...report, stats: subscription.stats, inserted, duplicates }));
    } else if (request.url === '/dead-letters' && broker.capabilities.redrive) {
      // The events that failed maxAttempts times: fix the cause, then `parley dead-letters redrive --all --group …`.
      const letters = await broker.deadLetters(group);
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify(
          letters.map(({ id, reason, error, attempts, failedAt, senderId }) => ({
            id,
            reason,
            error,
            attempts,
            failedAt,
            senderId,
          })),
        ),
      );
    } else {
      response.writeHead(404).end();
    }
  } catch (error) {
    response.writeHead(500, { 'content-type': 'text/plain' }).end((error as Error).message);
  }
});
server.listen(Number(env.PORT ?? 8080), '127.0.0.1', () => {
  console.log(
    `analytics: consuming group "${group}" into ${table}; health on port ${(server.address() as AddressInfo).port}`,
  );
});

// Graceful shutdown: stop taking events, let handlers finish and acknowledge, disconnect, then exit.
process.once('SIGTERM', async () => {
  server.close();
  await broker.close({ timeoutMs: 20_000 });
  await db.end();
  console.log(`analytics: stopped (${inserted} rows inserted, ${duplicates} redeliveries ignored)`);
  process.exit(0);
});
