#!/usr/bin/env node
// Brings up what the tests need, idempotently: `node scripts/services.mjs up`. Each check first looks for a
// running service (address from env vars, localhost defaults) and starts one only when it is missing; when it
// cannot, it fails with the exact thing to install. Nothing here runs twice what is already there.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

const isRoot = process.getuid?.() === 0;
let aptUpdated = false;

/** True when something accepts TCP connections at host:port within `ms`. */
function reachable(host, port, ms = 1_000) {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(ms, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function waitFor(check, seconds, what) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what} did not come up within ${seconds} s`);
}

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

/** Installs Debian packages when we may (root, apt-get there); otherwise says exactly what to install. */
function aptInstall(packages, why) {
  if (!isRoot || !has('apt-get')) {
    throw new Error(
      `${why}: install it with \`sudo apt-get install -y ${packages.join(' ')}\` (Debian/Ubuntu)`,
    );
  }
  if (!aptUpdated) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    aptUpdated = true;
  }
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    stdio: 'ignore',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

function amqpAddress() {
  const url = new URL(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  return { host: url.hostname || '127.0.0.1', port: Number(url.port || 5672) };
}

const services = [
  {
    name: 'RabbitMQ',
    async up() {
      const { host, port } = amqpAddress();
      if (await reachable(host, port)) return `reachable at ${host}:${port}`;
      if (process.env.AMQP_URL) throw new Error(`AMQP_URL points at ${host}:${port}, which does not answer`);
      if (!has('rabbitmq-server')) aptInstall(['rabbitmq-server'], 'RabbitMQ is not installed');
      spawnSync('rabbitmq-server', ['-detached'], { stdio: 'ignore' });
      await waitFor(() => reachable(host, port), 90, 'RabbitMQ');
      // The port opens before the app is fully up: wait until it really serves.
      if (has('rabbitmqctl'))
        spawnSync('rabbitmqctl', ['await_startup', '--timeout', '60'], { stdio: 'ignore' });
      return `started (rabbitmq-server -detached), listening at ${host}:${port}`;
    },
  },
  {
    name: 'Redis',
    async up() {
      const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
      const host = url.hostname || '127.0.0.1';
      const port = Number(url.port || 6379);
      // The Redis tests start their own servers (append-only, Cluster, Sentinel): they need the binaries too.
      if (!has('redis-server') || !has('redis-cli'))
        aptInstall(['redis-server', 'redis-tools'], 'the Redis tests need redis-server and redis-cli');
      if (await reachable(host, port)) return `reachable at ${host}:${port}`;
      if (process.env.REDIS_URL)
        throw new Error(`REDIS_URL points at ${host}:${port}, which does not answer`);
      // Nothing on disk: a test Redis keeps no state between runs.
      spawnSync(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--daemonize',
          'yes',
        ],
        { stdio: 'ignore' },
      );
      await waitFor(() => reachable(host, port), 30, 'Redis');
      return `started (redis-server --daemonize yes), listening at ${host}:${port}`;
    },
  },
  {
    name: 'PostgreSQL',
    async up() {
      // The CLI's `export` tests and examples/postgres-analytics read and write a real PostgreSQL (trust auth).
      const url = new URL(
        process.env.PG_URL ?? process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test',
      );
      const host = url.hostname || '127.0.0.1';
      const port = Number(url.port || 5432);
      if (await reachable(host, port)) return `reachable at ${host}:${port}`;
      throw new Error(
        `nothing answers at ${host}:${port}: start PostgreSQL (user postgres with trust auth, a database named test), or point PG_URL at one`,
      );
    },
  },
  {
    name: 'Python peers (pika)',
    async up() {
      const python = '/usr/bin/python3';
      const ok = () =>
        existsSync(python) && spawnSync(python, ['-c', 'import pika'], { stdio: 'ignore' }).status === 0;
      if (!ok()) aptInstall(['python3', 'python3-pika'], 'the interop tests need Python 3 with pika');
      if (!ok()) throw new Error('python3-pika is still missing after installing it');
      return `${execFileSync(python, ['-c', 'import pika, sys; print(f"pika {pika.__version__}, Python {sys.version.split()[0]}")']).toString().trim()}`;
    },
  },
  {
    name: 'Kafka test tools (kcat, python3-confluent-kafka)',
    async up() {
      // kcat runs librdkafka's mock cluster when KAFKA_URL is unset; confluent-kafka is Rasa's own client (interop).
      const python = '/usr/bin/python3';
      const confluent = () =>
        existsSync(python) &&
        spawnSync(python, ['-c', 'import confluent_kafka'], { stdio: 'ignore' }).status === 0;
      const missing = [
        ...(has('kcat') || process.env.KAFKA_URL ? [] : ['kcat']),
        ...(confluent() ? [] : ['python3-confluent-kafka']),
      ];
      if (missing.length > 0)
        aptInstall(missing, "the Kafka tests need the mock cluster and Rasa's Kafka client");
      if (!confluent()) throw new Error('python3-confluent-kafka is still missing after installing it');
      return execFileSync(python, [
        '-c',
        'import confluent_kafka; print(f"confluent-kafka {confluent_kafka.version()[0]}")',
      ])
        .toString()
        .trim();
    },
  },
  {
    name: 'OpenSSL',
    async up() {
      if (!has('openssl')) aptInstall(['openssl'], 'the TLS tests make a throwaway CA with openssl');
      return execFileSync('openssl', ['version']).toString().trim();
    },
  },
];

async function main() {
  const failures = [];
  for (const service of services) {
    try {
      console.log(`  ${service.name}: ${await service.up()}`);
    } catch (error) {
      failures.push(`${service.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (failures.length > 0) {
    console.error(`[parley] cannot run the tests:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
    process.exit(1);
  }
}

await main();
