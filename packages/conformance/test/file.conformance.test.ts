/**
 * The suite judged by Rasa's file broker: one JSON Lines file per destination in a temporary directory. The probe
 * uses plain `fs`, as Rasa (a foreign producer) and any log reader would.
 */
import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Broker, type DriverFaults, defineBroker, fileDriver, readDeadLetters } from '@parley/core';
import { afterAll } from 'vitest';
import { runConformance } from '../src/index.js';

const dir = await mkdtemp(join(tmpdir(), 'parley-conformance-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
const pathOf = (destination: string) => join(dir, `${destination}.log`);
/** Each broker's driver faults, for the chaos tier (a file has no connection to cut). */
const faults = new WeakMap<Broker, DriverFaults>();
const sizeOf = (path: string) =>
  stat(path).then(
    (s) => s.size,
    () => 0,
  );

runConformance({
  name: 'file',
  disable: {
    'chaos-stall': 'a file has no connection to stall; storage outages are covered by chaos-cut',
    'chaos-restart': 'a file has no server to restart; storage outages are covered by chaos-cut',
  },
  // fileBroker() is defineBroker(fileDriver()): built by hand here to reach the driver's faults.
  create: ({ destination }) => {
    const options = { path: pathOf(destination), onWarning: () => {} };
    const driver = fileDriver(options);
    const broker = defineBroker(driver, options);
    if (driver.faults) faults.set(broker, driver.faults);
    return broker;
  },
  probe: {
    publishRaw: (destination, body) =>
      appendFile(pathOf(destination), Buffer.concat([body, Buffer.from('\n')])),
    deadLetters: async (destination, group) =>
      (await readDeadLetters(pathOf(destination), group)).map(({ body }) => ({ body, headers: {} })),
    tap: async (destination) => {
      const path = pathOf(destination);
      const from = await sizeOf(path);
      return {
        messages: async () => {
          const bytes = await readFile(path).catch(() => Buffer.alloc(0));
          const lines: { body: Uint8Array; headers: Record<string, string> }[] = [];
          let start = from;
          for (let end = bytes.indexOf(0x0a, start); end >= 0; end = bytes.indexOf(0x0a, start)) {
            lines.push({ body: new Uint8Array(bytes.subarray(start, end)), headers: {} });
            start = end + 1;
          }
          return lines;
        },
        close: async () => {},
      };
    },
    cleanup: async (destination) => {
      const path = pathOf(destination);
      await Promise.all(
        [path, `${path}.dead-letter.jsonl`, `${path}.parley`].map((p) =>
          rm(p, { recursive: true, force: true }),
        ),
      );
    },
  },
  chaos: { faults: (broker) => faults.get(broker) },
  // A consumer in another process: the group's lock file is its, until it dies and the peer takes the stale lock.
  consumerProcess: {
    module: fileURLToPath(new URL('./file-consumer.mjs', import.meta.url)),
    env: { PARLEY_CONFORMANCE_DIR: dir },
  },
  report: 'conformance-report.file.json',
});
