/**
 * What the Redis tests share: the shared server's URL, a raw ioredis oracle, and Redis servers of their own
 * (a dedicated one with an append-only file, a 3-master Cluster) started on free ports and always stopped.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** The shared Redis every machine runs (CI too). Never flushed: tests use unique stream names and delete them. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Fails at once, saying what to do, when nothing answers at REDIS_URL (rather than every test timing out). */
export async function requireSharedRedis(): Promise<void> {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    throw new Error(
      `[parley] [redis] no Redis answers at ${new URL(REDIS_URL).host} (REDIS_URL): start one (\`redis-server --daemonize yes\`, from \`apt-get install -y redis-server\`) or point REDIS_URL at one: ${(error as Error).message}`,
    );
  } finally {
    client.disconnect();
  }
}

/** A raw client, independent of the adapter under test. */
export function rawClient(url = REDIS_URL): Redis {
  const client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 3 });
  client.on('error', () => {});
  return client;
}

/** Fails with the exact install line when the Redis binaries are missing (a fresh machine). */
export function requireBinaries(): void {
  for (const binary of ['redis-server', 'redis-cli']) {
    try {
      execFileSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `[parley] [redis] the tests need ${binary}: run \`apt-get update && apt-get install -y redis-server redis-tools\``,
      );
    }
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Polls PING until the server answers (a readiness check, never a fixed sleep). */
async function untilUp(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      // not yet
    } finally {
      client.disconnect();
    }
    if (Date.now() > deadline)
      throw new Error(`[parley] [redis] redis-server on port ${port} did not start in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A redis-server process of the tests' own, in a temporary directory. */
export interface OwnServer {
  readonly port: number;
  readonly url: string;
  /** SIGKILL (a crash: only what reached the append-only file survives), then the same server again. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function spawnServer(port: number, dir: string, extra: readonly string[]): ChildProcess {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...extra],
    {
      stdio: 'ignore',
    },
  );
  child.on('error', () => {});
  return child;
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** A dedicated server with `appendonly yes` and `appendfsync always`: what `persistent` promises needs. */
export async function startOwnServer(
  extra: readonly string[] = ['--appendonly', 'yes', '--appendfsync', 'always'],
): Promise<OwnServer> {
  requireBinaries();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'parley-redis-'));
  let child = spawnServer(port, dir, extra);
  await untilUp(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async restart(downMs = 500) {
      await kill(child, 'SIGKILL');
      await new Promise((r) => setTimeout(r, downMs));
      child = spawnServer(port, dir, extra);
      await untilUp(port);
    },
    async stop() {
      await kill(child, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A 3-master Redis Cluster (no replicas) on free ports; `cluster_state:ok` before it resolves. */
export async function startCluster(): Promise<{ readonly nodes: readonly string[]; stop(): Promise<void> }> {
  requireBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'parley-redis-cluster-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const children = ports.map((port) => {
    const own = join(dir, String(port));
    execFileSync('mkdir', ['-p', own]);
    return spawnServer(port, own, [
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      'nodes.conf',
      '--appendonly',
      'no',
    ]);
  });
  const stop = async () => {
    await Promise.all(children.map((child) => kill(child, 'SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(ports.map((port) => untilUp(port)));
    execFileSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      {
        stdio: 'ignore',
        timeout: 30_000,
      },
    );
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = ports.map((port) =>
        execFileSync('redis-cli', ['-p', String(port), 'cluster', 'info']).toString(),
      );
      if (states.every((info) => info.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline)
        throw new Error('[parley] [redis] the test cluster never reached cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes: ports.map((p) => `127.0.0.1:${p}`), stop };
}

/** A master and one Sentinel watching it (`mymaster`, quorum 1), on free ports. */
export async function startSentinel(): Promise<{
  readonly sentinel: string;
  readonly master: OwnServer;
  stop(): Promise<void>;
}> {
  const master = await startOwnServer(['--appendonly', 'no']);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'parley-redis-sentinel-'));
  // Sentinel rewrites its config file: it must be a file of its own, writable.
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  child.on('error', () => {});
  const stop = async () => {
    await kill(child, 'SIGKILL');
    await master.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await untilUp(port);
    // Ready once it names the master.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const reply = execFileSync('redis-cli', [
        '-p',
        String(port),
        'sentinel',
        'get-master-addr-by-name',
        'mymaster',
      ]).toString();
      if (reply.includes(String(master.port))) break;
      if (Date.now() > deadline) throw new Error('[parley] [redis] the test sentinel never named its master');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { sentinel: `127.0.0.1:${port}`, master, stop };
}

/**
 * A master, a replica and 3 sentinels (quorum 2, master down after 1 s), on free ports, for failover: what Redis's
 * asynchronous replication means for a resolved publish.
 */
export interface SentinelSet {
  readonly sentinels: readonly string[];
  readonly master: OwnServer;
  readonly replica: OwnServer;
  /** The address the sentinels give for the master now. */
  masterAddress(): string;
  stop(): Promise<void>;
}

/**
 * {@link startSentinelSetOnce}, once more on fresh ports if the first set never settles: on a loaded machine (CI runs
 * every package's tests at once) a port found free can be taken before a sentinel binds it, and a sentinel that
 * could not bind never joins the others.
 */
export async function startSentinelSet(): Promise<SentinelSet> {
  try {
    return await startSentinelSetOnce();
  } catch (error) {
    console.log(`[redis] ${(error as Error).message}; starting the set again on fresh ports`);
    return startSentinelSetOnce();
  }
}

async function startSentinelSetOnce(): Promise<SentinelSet> {
  // Redis 7 waits 5 s before a replica's first (diskless) sync: no wait here, and the replica in sync before it resolves.
  const master = await startOwnServer(['--appendonly', 'no', '--repl-diskless-sync-delay', '0']);
  const replica = await startOwnServer([
    '--appendonly',
    'no',
    '--replicaof',
    '127.0.0.1',
    String(master.port),
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'parley-redis-sentinels-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const children = ports.map((port) => {
    const conf = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `sentinel monitor mymaster 127.0.0.1 ${master.port} 2`,
        'sentinel down-after-milliseconds mymaster 1000',
        'sentinel failover-timeout mymaster 5000',
        '',
      ].join('\n'),
    );
    const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    child.on('error', () => {});
    return child;
  });
  const ask = () =>
    execFileSync('redis-cli', ['-p', String(ports[0]), 'sentinel', 'get-master-addr-by-name', 'mymaster'])
      .toString()
      .trim()
      .split('\n')
      .join(':');
  const stop = async () => {
    await Promise.all(children.map((child) => kill(child, 'SIGKILL')));
    await Promise.all([master.stop(), replica.stop()]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(ports.map((port) => untilUp(port)));
    const deadline = Date.now() + 20_000;
    // Ready once every sentinel knows the replica and the other sentinels, and the replica is in sync.
    for (;;) {
      const infos = ports.map((port) =>
        execFileSync('redis-cli', ['-p', String(port), 'info', 'sentinel']).toString(),
      );
      const link = execFileSync('redis-cli', ['-p', String(replica.port), 'info', 'replication']).toString();
      if (infos.every((info) => /slaves=1,sentinels=3/.test(info)) && link.includes('master_link_status:up'))
        break;
      if (Date.now() > deadline) {
        const seen = infos.map(
          (info, i) => `${ports[i]}: ${/master0:[^\r\n]*/.exec(info)?.[0] ?? 'no master'}`,
        );
        const exited = children.filter((child) => child.exitCode !== null).length;
        throw new Error(
          `[parley] [redis] the test sentinels never saw each other (${seen.join('; ')}; ${exited} sentinel(s) exited; replica link ${/master_link_status:\w+/.exec(link)?.[0] ?? '?'})`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { sentinels: ports.map((p) => `127.0.0.1:${p}`), master, replica, masterAddress: ask, stop };
}
