/**
 * The test broker. With `KAFKA_URL` the tests run against that cluster. Without it they start librdkafka's mock
 * cluster (Debian's `kcat`, 3 brokers) and stop it after: it speaks the real protocol, but see the quirks below.
 *
 * Mock-cluster quirks the tests work around, here only (the shipped code path is the one a real cluster gets):
 * - it reports controller id 0 while its brokers are 1–3, so kafkajs's idempotent producer (InitProducerId) fails
 *   with `KafkaJSBrokerNotFound: Broker 0 not found`: tests on the mock set `idempotent: false` ({@link testKeys});
 * - a rejoining member waits the full session timeout: short session timeouts, fresh group ids per case.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { Kafka, type KafkaConfig, logLevel } from 'kafkajs';

export const KAFKA_URL = process.env.KAFKA_URL;

/** The one place `kcat` is looked for: installed when missing, or a clear failure saying how. */
export function requireKcat(): string {
  const found = spawnSync('sh', ['-c', 'command -v kcat'], { encoding: 'utf8' }).stdout.trim();
  if (found !== '') return found;
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const install = spawnSync(
    sudo[0] ?? 'apt-get',
    [...sudo.slice(1), ...(sudo.length ? ['apt-get'] : []), 'install', '-y', 'kcat'],
    {
      stdio: 'ignore',
      timeout: 300_000,
    },
  );
  const again = spawnSync('sh', ['-c', 'command -v kcat'], { encoding: 'utf8' }).stdout.trim();
  if (install.status !== 0 || again === '') {
    throw new Error(
      '[parley] [kafka] tests need kcat (librdkafka mock cluster) when KAFKA_URL is unset: run `apt-get install -y kcat`, or set KAFKA_URL to a Kafka cluster',
    );
  }
  return again;
}

export interface TestCluster {
  /** Bootstrap servers, comma-separated. */
  readonly url: string;
  /** True on librdkafka's mock cluster. */
  readonly mock: boolean;
  stop(): Promise<void>;
}

/**
 * Starts the mock cluster of `brokers` brokers: `kcat -P` (a producer reading stdin) stays alive as long as its stdin is open and idle,
 * and logs the mock's `bootstrap.servers` (random ports each start). Closing stdin ends it.
 */
export async function startCluster(brokers = 3): Promise<TestCluster> {
  if (KAFKA_URL) return { url: KAFKA_URL, mock: false, stop: async () => {} };
  const kcat = requireKcat();
  const child: ChildProcess = spawn(
    kcat,
    ['-b', 'localhost:0', '-X', `test.mock.num.brokers=${brokers}`, '-P', '-t', 'parley-mock-keepalive'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`kcat mock cluster did not start: ${log}`)), 10_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const match = /replaced with (\S+)/.exec(log) ?? /bootstrap\.servers=(\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`kcat exited (${code}): ${log}`)));
  });
  child.stderr!.resume();
  return {
    url,
    mock: true,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Keys every test broker gets: short group timings, and on the mock the non-idempotent producer (see above). */
export function testKeys(cluster: TestCluster) {
  return {
    url: cluster.url,
    security_protocol: 'PLAINTEXT',
    session_timeout_ms: 6_000,
    heartbeat_interval_ms: 500,
    ...(cluster.mock ? { idempotent: false } : {}),
  } as const;
}

/** A raw kafkajs client for the oracle: what a foreign producer writes. */
export function rawKafka(cluster: TestCluster): Kafka {
  return new Kafka({
    brokers: cluster.url.split(','),
    logLevel: logLevel.NOTHING,
    clientId: 'parley-test-oracle',
  });
}

export interface RawMessage {
  readonly partition: number;
  readonly offset: number;
  readonly key: string | null;
  readonly payload: string | null;
  readonly headers: Record<string, string>;
  /** The value's bytes exactly (kcat's JSON output re-encodes non-UTF-8 payloads). */
  readonly body: Uint8Array | undefined;
}

/** Values byte for byte: kcat's `%S` (length) header line, then the raw value. */
function readBodies(cluster: TestCluster, topic: string): Map<string, Uint8Array> {
  let out: Buffer;
  try {
    out = execFileSync(
      requireKcat(),
      ['-b', cluster.url, '-C', '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%p %o %S\n%s'],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 20_000,
        maxBuffer: 256 * 1024 * 1024,
      },
    );
  } catch (error) {
    out = (error as { stdout?: Buffer }).stdout ?? Buffer.alloc(0);
  }
  const bodies = new Map<string, Uint8Array>();
  for (let at = 0; at < out.length; ) {
    const eol = out.indexOf(10, at);
    if (eol < 0) break;
    const [partition, offset, size] = out.subarray(at, eol).toString().split(' ');
    const length = Math.max(0, Number(size));
    bodies.set(`${partition}:${offset}`, new Uint8Array(out.subarray(eol + 1, eol + 1 + length)));
    at = eol + 1 + length;
  }
  return bodies;
}

/**
 * Every message of a topic, read with kcat (librdkafka, not kafkajs: an independent reader, and no group join).
 * A topic that does not exist yet reads as empty.
 */
export function readTopic(cluster: TestCluster, topic: string): RawMessage[] {
  let out: string;
  try {
    out = execFileSync(requireKcat(), ['-b', cluster.url, '-C', '-t', topic, '-o', 'beginning', '-e', '-J'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 20_000,
      maxBuffer: 256 * 1024 * 1024,
    });
  } catch (error) {
    const stdout = (error as { stdout?: string }).stdout;
    if (!stdout) return [];
    out = stdout;
  }
  const bodies = readBodies(cluster, topic);
  return out
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => {
      const m = JSON.parse(line) as {
        partition: number;
        offset: number;
        key: string | null;
        payload: string | null;
        headers?: string[];
      };
      const headers: Record<string, string> = {};
      for (let i = 0; i + 1 < (m.headers ?? []).length; i += 2) headers[m.headers![i]!] = m.headers![i + 1]!;
      const body = bodies.get(`${m.partition}:${m.offset}`);
      return { partition: m.partition, offset: m.offset, key: m.key, payload: m.payload, body, headers };
    });
}

/**
 * kafkajs's `socketFactory` sending every broker connection, whatever address the metadata names, to `via`: with a
 * one-broker cluster behind a fault proxy at `via`, a cut of the proxy cuts all of the client's traffic.
 */
export function everyConnectionThrough(via: { host: string; port: number }): KafkaConfig['socketFactory'] {
  return ({ onConnect }) => {
    const socket = connect({ host: via.host, port: via.port }, onConnect);
    socket.setKeepAlive(true, 30_000);
    return socket;
  };
}
