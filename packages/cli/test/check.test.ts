/**
 * `parley check` end to end: a valid file and a reachable broker exit 0 with the adapter, its capabilities and
 * health; a wrong password or port exits 1 with the error to act on (and never the password); a wrong file exits 2.
 */

import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cleanUpAmqp, FIXTURES, pikaSection, run, tempDir, unique, writeEndpoints } from './support.js';

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

const prefix = unique('parley-cli-check');
afterAll(() => cleanUpAmqp(prefix));

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('parley check', () => {
  it('the file broker: valid, connected, its capabilities and health', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'file', path: join(dir, 'events.log') });
    const result = await run(['check'], dir);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('endpoints     ./endpoints.yml: valid');
    expect(result.stdout).toContain('adapter       file (type: file)');
    expect(result.stdout).toMatch(
      /capabilities {2}consumer groups, .*replay, dead letters \(emulated\), redrive/,
    );
    expect(result.stdout).toContain('connection    ok');
    expect(result.stdout).toContain('health        ready=true');
  });

  it('RabbitMQ: the amqp adapter, loaded for type: pika', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), pikaSection(prefix));
    const result = await run(['check'], dir);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('adapter       amqp (type: pika)');
    expect(result.stdout).toContain('headers');
    expect(result.stdout).toContain('connection    ok');
  });

  it('a wrong password exits 1 saying the credentials were refused, without printing the password', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), {
      ...pikaSection(prefix),
      password: 'not-the-Secret-42',
    });
    const result = await run(['check', '--timeout', '10'], dir);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('connection    failed');
    expect(result.stderr).toMatch(/^\[parley\] \[amqp\] .*(refused|credentials|ACCESS_REFUSED)/im);
    expect(result.stdout + result.stderr).not.toContain('not-the-Secret-42');
  });

  it('a wrong port exits 1 naming the address it could not reach', async () => {
    const port = await closedPort();
    await writeEndpoints(join(dir, 'endpoints.yml'), { ...pikaSection(prefix), port });
    const result = await run(['check', '--timeout', '2'], dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^\[parley\] \[amqp\] /m);
    expect(result.stderr).toContain(`127.0.0.1:${port}`);
  });

  it('publish, tail and dead-letters give up after --timeout when the broker does not answer (exit 1)', async () => {
    const port = await closedPort();
    await writeEndpoints(join(dir, 'endpoints.yml'), {
      ...pikaSection(prefix),
      port,
      connection_attempts: 1000,
    });
    const file = join(FIXTURES, 'wire', 'tracker_moodbot.jsonl');
    for (const args of [['publish', file], ['tail'], ['dead-letters', 'list']]) {
      const result = await run([...args, '--timeout', '1'], dir);
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.stderr).toMatch(/^\[parley\] \[amqp\] not connected after 1000 ms/m);
    }
  });

  it('an invalid endpoints.yml exits 2 naming the key; a missing one names --endpoints', async () => {
    await writeFile(join(dir, 'endpoints.yml'), 'event_broker:\n  type: pika\n  port: abc\n');
    const invalid = await run(['check'], dir);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('event_broker.port');

    const missing = await run(['check', '--endpoints', join(dir, 'nope.yml')], dir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("nope.yml: no such file: expected Rasa's endpoints.yml");
    await mkdir(join(dir, 'empty'));
    const none = await run(['check'], join(dir, 'empty'));
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('(pass the file with --endpoints PATH)');
  });

  it('has --help, and the program lists exit codes', async () => {
    const result = await run(['--help'], dir);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Exit codes:');
    for (const command of ['tail', 'publish', 'dead-letters', 'bridge', 'export', 'check']) {
      const help = await run([command, '--help'], dir);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: parley ${command}`);
    }
    const nested = await run(['dead-letters', 'redrive', '--help'], dir);
    expect(nested.code).toBe(0);
    expect(nested.stdout).toContain('Usage: parley dead-letters redrive [options] [ids...]');
    // Usage errors exit 2 at every level, nested commands included.
    const bad = await run(['dead-letters', 'list', '--bogus'], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("error: unknown option '--bogus'");
  });
});
