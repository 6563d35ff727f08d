/**
 * The conformance suite, run against the spool adapter. The probe is the oracle: it reads and writes the
 * spool with plain `fs`, as any other program would, never through the adapter under test.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformance } from '@parley/conformance';
import { type Broker, type DriverFaults, defineBroker } from '@parley/core';
import { afterAll } from 'vitest';
import { spoolDriver } from '../src/index.js';

const tmp = await mkdtemp(join(tmpdir(), 'parley-spool-'));
afterAll(() => rm(tmp, { recursive: true, force: true }));
const spool = (destination: string) => join(tmp, destination);
/** Each broker's driver faults, for the chaos tier (a directory has no connection to cut). */
const faults = new WeakMap<Broker, DriverFaults>();

/** The `.msg` files of a directory, in name order, with their bytes (none when it does not exist). */
async function messagesIn(dir: string): Promise<{ body: Uint8Array; headers: Record<string, string> }[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.msg')).sort();
  return Promise.all(
    names.map(async (n) => ({ body: new Uint8Array(await readFile(join(dir, n))), headers: {} })),
  );
}

let foreign = 0;

runConformance({
  name: 'spool',
  // spoolBroker() is defineBroker(spoolDriver()): composed by hand here to reach the driver's faults.
  create: ({ destination }) => {
    // The chaos tier provokes warnings (failed publishes, retries) on purpose.
    const options = { path: spool(destination), onWarning: () => {} };
    const driver = spoolDriver(options);
    const broker = defineBroker(driver, options);
    if (driver.faults) faults.set(broker, driver.faults);
    return broker;
  },
  probe: {
    // A foreign producer: write the file elsewhere, then rename it into each group's queue (the default
    // group's when there is none yet), as the adapter's documentation tells any program to do.
    async publishRaw(destination, body) {
      const queue = join(spool(destination), 'queue');
      await mkdir(queue, { recursive: true });
      let groups = await readdir(queue);
      if (groups.length === 0) {
        groups = ['parley'];
        await mkdir(join(queue, 'parley'), { recursive: true });
      }
      for (const group of groups) {
        const temp = join(tmp, `.incoming-${randomUUID()}`);
        await writeFile(temp, body);
        const name = `${String(Date.now()).padStart(15, '0')}-${String(foreign++).padStart(9, '0')}-x.msg`;
        await rename(temp, join(queue, group, name));
      }
    },
    deadLetters: (destination, group) => messagesIn(join(spool(destination), 'dead', group)),
    // A tap is a group of its own that nobody consumes: it gets a copy of everything published after it.
    async tap(destination) {
      const dir = join(spool(destination), 'queue', `tap-${randomUUID()}`);
      await mkdir(dir, { recursive: true });
      return { messages: () => messagesIn(dir), close: () => rm(dir, { recursive: true, force: true }) };
    },
    cleanup: (destination) => rm(spool(destination), { recursive: true, force: true }),
  },
  disable: {
    'chaos-stall': 'a directory has no connection to stall; storage outages are covered by chaos-cut',
    'chaos-restart': 'a directory has no server to restart; storage outages are covered by chaos-cut',
  },
  chaos: { faults: (broker) => faults.get(broker) },
});
