/** Leases: a broker that lends deliveries for a while must not hand one to a peer while core still holds it. */
import { expect } from 'vitest';
import type { CaseDefinition } from '../harness.js';
import { delay, keyOf, makeEvents, missingFromAll, preview } from '../support.js';

/** How many leases a handler of `lease-extension` runs for. */
const LEASES_HELD = 2.5;

/**
 * `leases`: handlers that run for 2.5 leases (and ignore their signal) are never handed to a peer mid-handler;
 * core renews the lease while it holds the delivery. Each event is handled once, acknowledged, and never taken
 * back. Needs `tolerances.leaseMs`, the broker's lease.
 */
const leaseExtension: CaseDefinition = {
  id: 'lease-extension',
  skip: ({ capabilities }) => (capabilities.leases ? undefined : 'capabilities.leases is false'),
  testTimeoutMs: (setup) =>
    setup.timeoutMs * 3 + 10_000 + LEASES_HELD * (setup.options.tolerances?.leaseMs ?? 0),
  async run(t) {
    const leaseMs = t.tolerances.leaseMs;
    if (leaseMs === undefined) {
      throw new Error(
        "[conformance] capabilities.leases is declared: set tolerances.leaseMs to the broker's lease, so that lease-extension can hold deliveries past it",
      );
    }
    const holdMs = Math.round(leaseMs * LEASES_HELD);
    const destination = t.destination();
    const group = t.group();
    const count = t.capabilities.competingConsumers ? 2 : 1;
    const brokers = await Promise.all(Array.from({ length: count }, () => t.broker(destination)));
    const running = new Map<string, number>();
    const overlaps: string[] = [];
    const revoked: string[] = [];
    const collectors = brokers.map((_, consumer) =>
      t.collector({
        before: async (envelope, context) => {
          const key = keyOf(envelope);
          if ((running.get(key) ?? 0) > 0) overlaps.push(`${key} on consumer ${consumer}`);
          running.set(key, (running.get(key) ?? 0) + 1);
          try {
            // Longer than the lease, and deaf to the signal: only renewals keep the delivery with this consumer.
            await delay(holdMs);
            if (context.signal.aborted) revoked.push(`${key} on consumer ${consumer}`);
          } finally {
            running.set(key, (running.get(key) ?? 1) - 1);
          }
        },
      }),
    );
    // Each consumer has a free handler: a delivery whose lease ran out would start on one at once.
    const subs = brokers.map((broker, i) => t.consume(broker, { group, concurrency: 2 }, collectors[i]).sub);
    await Promise.all(subs.map((sub) => sub.ready));
    const events = makeEvents(t.run, 2, { senders: 2 });
    const keys = events.map(keyOf);
    await t.publishAll(brokers[0]!, events);
    await t.waitFor(
      () => missingFromAll(collectors, keys).length === 0,
      () => `2 events held for ${holdMs} ms each (missing ${preview(missingFromAll(collectors, keys))})`,
      t.handoverTimeoutMs + holdMs,
    );
    await t.quietPeriod(Math.min(300, leaseMs));
    t.log(`held 2 deliveries for ${holdMs} ms (lease ${leaseMs} ms)`);
    expect(
      overlaps,
      'deliveries handed to a consumer while another still handled them (lease not renewed)',
    ).toEqual([]);
    expect(revoked, 'handlers whose delivery was taken back while they ran').toEqual([]);
    const handled = keys.map((key) => collectors.reduce((n, c) => n + (c.counts.get(key) ?? 0), 0));
    expect(handled, 'handlings of each event').toEqual([1, 1]);
    expect(
      subs.reduce((n, sub) => n + sub.stats.revoked, 0),
      'stats.revoked: deliveries the broker took back',
    ).toBe(0);
  },
};

export const leaseCases = [leaseExtension];
