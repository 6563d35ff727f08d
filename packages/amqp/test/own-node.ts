/**
 * A RabbitMQ node of the tests' own, for everything that must not touch the shared one (127.0.0.1:5672 serves other
 * engineers' runs and CI at the same time): restarting the broker, lowering its limits (`max_message_size`,
 * `consumer_timeout`), heavy load. vitest's globalSetup starts it once per run, on free ports, and stops it at the
 * end. Idempotent: one node per worktree; a second run while the first is alive uses the first's node (and leaves
 * it to the first to stop); a node left behind by a killed run is stopped and started afresh.
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface OwnNode {
  /** amqp://guest:guest@127.0.0.1:<port> */
  readonly url: string;
  /** The Erlang node name, for rabbitmqctl -n. */
  readonly node: string;
  readonly host: string;
  readonly port: number;
  /** The process that started it, and stops it. */
  readonly owner: number;
}

/**
 * rabbitmq-server and rabbitmqctl: the Debian wrappers (which switch to the rabbitmq user) for root, the scripts
 * themselves for anyone else (the wrappers refuse other users; the node then runs as that user, with its cookie).
 */
function bin(name: string): string {
  const direct = `/usr/lib/rabbitmq/bin/${name}`;
  return process.getuid?.() === 0 || !existsSync(direct) ? name : direct;
}

/** Runs rabbitmqctl against `node`; throws with its output when it fails. */
export function rabbitmqctl(node: string, ...args: string[]): string {
  const result = spawnSync(bin('rabbitmqctl'), ['-n', node, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0) {
    throw new Error(
      `rabbitmqctl -n ${node} ${args.join(' ')} failed: ${(result.stderr || result.stdout).trim()}`,
    );
  }
  return result.stdout;
}

/** Sets a `rabbit` application variable at run time; channels opened afterwards read it. */
export function setRabbitEnv(node: string, key: string, value: number | string): void {
  rabbitmqctl(node, 'eval', `application:set_env(rabbit, ${key}, ${value}).`);
}

/** rabbitmqctl without blocking the event loop: clients in this process must live through what it does. */
export async function rabbitmqctlAsync(node: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(bin('rabbitmqctl'), ['-n', node, ...args], { timeout: 120_000 });
  return stdout;
}

/**
 * Restarts the RabbitMQ application (the Erlang node stays up): every connection drops, transient state (Rasa's
 * exchange, its bindings) goes. Asynchronous: the brokers under test see the outage as real clients would.
 */
export async function restartApp(node: string): Promise<void> {
  await rabbitmqctlAsync(node, 'stop_app');
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  await rabbitmqctlAsync(node, 'start_app');
  await rabbitmqctlAsync(node, 'await_startup', '--timeout', '60');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function running(node: string): boolean {
  return (
    spawnSync(bin('rabbitmqctl'), ['-n', node, 'ping'], { stdio: 'ignore', timeout: 30_000 }).status === 0
  );
}

/** One node per worktree: a second run in the same worktree replaces it; other worktrees have their own. */
const key = createHash('sha256').update(process.cwd()).digest('hex').slice(0, 8);
const NODE = `parley-amqp-${key}@localhost`;
const DIR = join(tmpdir(), `parley-amqp-${key}`);
const STATE = `${DIR}.json`;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export async function startOwnNode(): Promise<OwnNode> {
  const known = existsSync(STATE) ? (JSON.parse(readFileSync(STATE, 'utf8')) as OwnNode) : undefined;
  if (known && alive(known.owner) && running(NODE)) return known; // another run of this worktree: share it
  if (running(NODE)) rabbitmqctl(NODE, 'stop'); // left by a run that was killed: its ports may be taken now
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  chmodSync(DIR, 0o777); // the Debian wrapper runs the node as the rabbitmq user
  const port = await freePort();
  let dist = await freePort();
  while (dist === port) dist = await freePort();
  const at = (name: string) => join(DIR, name);
  writeFileSync(at('enabled_plugins'), '[].\n');
  // Its own config file: the system one (/etc/rabbitmq/rabbitmq.conf) names the shared node's port.
  writeFileSync(at('rabbitmq.conf'), `listeners.tcp.default = 127.0.0.1:${port}\n`);
  for (const name of ['enabled_plugins', 'rabbitmq.conf']) chmodSync(at(name), 0o666);
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: NODE,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: at('mnesia'),
    RABBITMQ_LOG_BASE: at('log'),
    RABBITMQ_PID_FILE: at('pid'),
    RABBITMQ_ENABLED_PLUGINS_FILE: at('enabled_plugins'),
    RABBITMQ_CONFIG_FILE: at('rabbitmq.conf'),
  };
  const started = spawnSync(bin('rabbitmq-server'), ['-detached'], { env, cwd: DIR, encoding: 'utf8' });
  if (started.error || started.status !== 0) {
    throw new Error(
      `cannot start a RabbitMQ node for the destructive tests (${bin('rabbitmq-server')} -detached): ` +
        `${started.error?.message ?? started.stderr}; install rabbitmq-server (apt-get install rabbitmq-server)`,
    );
  }
  // await_startup fails at once while the node has not registered yet: ask again until it answers.
  const deadline = Date.now() + 90_000;
  for (;;) {
    const waited = spawnSync(bin('rabbitmqctl'), ['-n', NODE, 'await_startup', '--timeout', '60'], {
      encoding: 'utf8',
    });
    if (waited.status === 0) break;
    if (Date.now() > deadline) {
      throw new Error(
        `the RabbitMQ node ${NODE} did not start within 90 s (logs in ${at('log')}): ${waited.stderr}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const node = {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    node: NODE,
    host: '127.0.0.1',
    port,
    owner: process.pid,
  };
  writeFileSync(STATE, JSON.stringify(node));
  return node;
}

/** Stops the node, when this process started it. */
export function stopOwnNode(node: OwnNode): void {
  if (node.owner !== process.pid) return;
  rabbitmqctl(node.node, 'stop');
  rmSync(DIR, { recursive: true, force: true });
  rmSync(STATE, { force: true });
}
