import { describe, expect, it } from 'vitest';
import { AckWindow } from '../src/broker/ack-window.js';
import type { Delivery } from '../src/broker/contract.js';

describe('AckWindow', () => {
  it('commits only over a contiguous acknowledged prefix', () => {
    const window = new AckWindow<string>(10);
    window.add('a', 20);
    window.add('b', 30);
    window.add('c', 40);
    expect(window.ack('b')).toBe(false);
    expect(window.committed).toBe(10);
    expect(window.pending()).toEqual(['a', 'c']);
    expect(window.ack('a')).toBe(true);
    expect(window.committed).toBe(30);
    expect(window.size).toBe(1);
    expect(window.ack('c')).toBe(true);
    expect(window.committed).toBe(40);
    expect(window.size).toBe(0);
  });

  it('ignores items it does not hold: never added, acknowledged twice, forgotten by reset', () => {
    const window = new AckWindow<object>();
    const a = {};
    const b = {};
    window.add(a, 5);
    window.add(b, 9);
    expect(window.ack({})).toBe(false);
    expect(window.ack(a)).toBe(true);
    expect(window.ack(a)).toBe(false);
    expect(window.has(a)).toBe(false);
    expect(window.has(b)).toBe(true);
    window.reset(100);
    expect(window.ack(b)).toBe(false);
    expect(window.committed).toBe(100);
    expect(window.unacked).toBe(0);
  });

  it('skips stretches with nothing to hand out, once what comes before them is acknowledged', () => {
    const window = new AckWindow<string>();
    window.skip(3); // nothing pending: moves at once
    expect(window.committed).toBe(3);
    window.add('a', 10);
    window.skip(11);
    window.skip(12);
    expect(window.committed).toBe(3);
    expect(window.size).toBe(3);
    expect(window.unacked).toBe(1);
    window.ack('a');
    expect(window.committed).toBe(12);
    expect(window.end).toBe(12);
  });

  it('refuses positions that go back, and an item added twice', () => {
    const window = new AckWindow<string>(50);
    expect(() => window.add('a', 40)).toThrow(RangeError);
    window.add('a', 60);
    expect(() => window.skip(59)).toThrow(RangeError);
    expect(() => window.add('a', 70)).toThrow(/already in the window/);
    window.add('b', 60); // an empty message ends where the previous one did
    expect(window.pending()).toEqual(['a', 'b']);
  });

  it('acknowledges in constant time behind one message that stays pending', () => {
    const window = new AckWindow<number>();
    const count = 200_000;
    for (let i = 0; i < count; i++) window.add(i, i + 1);
    const started = performance.now();
    // Newest first: a linear search from the head would scan every entry for every ack (2·10^10 steps).
    for (let i = count - 1; i >= 1; i--) window.ack(i);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(window.committed).toBe(0);
    expect(window.unacked).toBe(1);
    expect(window.ack(0)).toBe(true);
    expect(window.committed).toBe(count);
    expect(window.size).toBe(0);
  });

  it('keeps committing correctly across compactions', () => {
    const window = new AckWindow<number>();
    let next = 0;
    for (let round = 0; round < 5; round++) {
      const first = next;
      for (let i = 0; i < 3_000; i++, next++) window.add(next, next + 1);
      for (let i = first; i < next; i++) window.ack(i);
      expect(window.committed).toBe(next);
    }
    window.add(next, next + 1);
    window.add(next + 1, next + 2);
    window.ack(next + 1);
    expect(window.pending()).toEqual([next]);
  });
});

describe('Holding', () => {
  /** A delivery that does nothing when settled, with its revocation signal or lease. */
  const deliveryOf = (id: string, more: Pick<Delivery, 'revoked' | 'lease'>): Delivery => ({
    id,
    body: new Uint8Array(0),
    headers: {},
    senderId: undefined,
    redelivered: false,
    ...more,
    ack: async () => {},
    release: async () => {},
  });

  it('watches a shared revocation signal with one listener for good, however often its held set empties', async () => {
    const { Holding, held } = await import('../src/broker/held.js');
    const lost: unknown[] = [];
    const holding = new Holding((h) => lost.push(h));
    const partition = new AbortController();
    let added = 0;
    let removed = 0;
    const add = partition.signal.addEventListener.bind(partition.signal);
    const remove = partition.signal.removeEventListener.bind(partition.signal);
    partition.signal.addEventListener = ((...args: Parameters<typeof add>) => {
      added++;
      add(...args);
    }) as typeof add;
    partition.signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
      removed++;
      remove(...args);
    }) as typeof remove;
    const delivery = (id: string) => deliveryOf(id, { revoked: partition.signal });
    // One at a time, as a fast handler acknowledges each before the next arrives.
    for (let i = 0; i < 100; i++) {
      const h = held(delivery(String(i)), 1);
      holding.start(h);
      expect(holding.stop(h)).toBe(true);
    }
    expect(added).toBe(1);
    expect(removed).toBe(0);
    // Nothing held once the current callbacks are done: the listener goes, and the signal is not kept.
    await new Promise((resolve) => setImmediate(resolve));
    expect(removed).toBe(1);
    // Revoked: only what is held then is lost, once.
    const still = held(delivery('still'), 1);
    holding.start(still);
    partition.abort();
    partition.abort();
    expect(lost).toEqual([still]);
  });

  it('keeps one renewal timer while deliveries come and go one at a time, and stops it once none is held', async () => {
    const { Holding, held } = await import('../src/broker/held.js');
    const holding = new Holding(() => {});
    let renewed = 0;
    const lease = {
      durationMs: 40,
      renew: async () => {
        renewed++;
      },
    };
    const delivery = (id: string) => deliveryOf(id, { lease });
    const timers = new Set<unknown>();
    const realSet = globalThis.setInterval;
    const realClear = globalThis.clearInterval;
    let started = 0;
    globalThis.setInterval = ((...args: Parameters<typeof realSet>) => {
      started++;
      const timer = realSet(...args);
      timers.add(timer);
      return timer;
    }) as typeof realSet;
    globalThis.clearInterval = ((timer: Parameters<typeof realClear>[0]) => {
      timers.delete(timer);
      realClear(timer);
    }) as typeof realClear;
    try {
      // A fast handler: each delivery settled before the next arrives.
      for (let i = 0; i < 100; i++) {
        const h = held(delivery(String(i)), 1);
        holding.start(h);
        expect(holding.stop(h)).toBe(true);
      }
      expect(started).toBe(1);
      // Nothing held once the current callbacks are done: the timer stops.
      await new Promise((resolve) => setImmediate(resolve));
      expect(timers.size).toBe(0);
      // Held for a while: renewed, in the list, and out of it once stopped.
      const kept = held(delivery('kept'), 1);
      holding.start(kept);
      expect(holding.held()).toEqual([kept]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(renewed).toBeGreaterThan(0);
      holding.stop(kept);
      expect(holding.held()).toEqual([]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(timers.size).toBe(0);
    } finally {
      globalThis.setInterval = realSet;
      globalThis.clearInterval = realClear;
    }
  });
});
