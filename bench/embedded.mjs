// The embedded brokers beside the raw work they stand for: an in-process queue (memory) and plain file appends
// and reads (file).
import { mkdtempSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileBroker, MemoryHub, memoryBroker } from '@parley/core';
import { benchBroker } from './brokers.mjs';

const quiet = { onWarning: () => {} };

export async function run(options) {
  const hub = new MemoryHub();
  const memory = await benchBroker({
    name: 'memory',
    create: (destination) => memoryBroker({ hub, destination, ...quiet }),
    baseline: {
      label:
        'an in-process queue (JSON.stringify per message, setImmediate dispatch, JSON.parse per message)',
      publish: async (_destination, _bodies, { envelopes }) => {
        const log = [];
        // The raw equivalent of Parley's work: encode each event (JSON.stringify), then hand it over.
        await Promise.all(
          envelopes.map(
            (e) =>
              new Promise((resolve) =>
                queueMicrotask(() => resolve(log.push(Buffer.from(JSON.stringify(e))))),
              ),
          ),
        );
      },
      consume: async (_destination, bodies) => {
        const start = performance.now();
        await new Promise((resolve) => {
          let i = 0;
          const pump = () => {
            for (let n = 0; n < 64 && i < bodies.length; n++, i++) JSON.parse(bodies[i].toString('utf8'));
            if (i < bodies.length) setImmediate(pump);
            else resolve();
          };
          setImmediate(pump);
        });
        return performance.now() - start;
      },
      latency: async (_destination, rate, seconds) => {
        const samples = [];
        const total = Math.round(rate * seconds);
        const start = performance.now();
        for (let i = 0; i < total; i++) {
          const wait = start + (i * 1000) / rate - performance.now();
          if (wait > 1) await new Promise((r) => setTimeout(r, wait));
          const at = performance.now();
          const body = Buffer.from(
            JSON.stringify({ sender_id: 's', event: 'slot', timestamp: i, name: 'n', value: i }),
          );
          setImmediate(() => {
            JSON.parse(body.toString('utf8'));
            samples.push(performance.now() - at);
          });
        }
        await new Promise((r) => setTimeout(r, 50));
        return samples;
      },
    },
    options,
  });

  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-'));
  const file = await benchBroker({
    name: 'file',
    create: (destination) => fileBroker({ path: join(dir, `${destination}.log`), ...quiet }),
    baseline: {
      label: 'fs appends (JSON.stringify, 500 lines per write) and a read + split + JSON.parse',
      publish: async (destination, _bodies, { envelopes }) => {
        const handle = await open(join(dir, `${destination}.raw`), 'a');
        for (let i = 0; i < envelopes.length; i += 500) {
          const lines = envelopes.slice(i, i + 500).map((e) => `${JSON.stringify(e)}\n`);
          await handle.write(lines.join(''));
        }
        await handle.close();
      },
      consume: async (destination, bodies) => {
        const path = join(dir, `${destination}.raw`);
        const handle = await open(path, 'a');
        await handle.write(Buffer.concat(bodies.flatMap((b) => [b, Buffer.from('\n')])));
        await handle.close();
        const start = performance.now();
        for (const line of (await readFile(path, 'utf8')).split('\n')) if (line) JSON.parse(line);
        return performance.now() - start;
      },
    },
    options,
  });
  return { memory, file };
}
