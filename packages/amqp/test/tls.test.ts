/**
 * TLS against a real TLS endpoint: a terminator started here (Node's tls server, a throwaway CA made with the
 * openssl CLI) in front of the test RabbitMQ. amqps with the CA from RABBITMQ_SSL_CA_FILE or `?cafile=`, client
 * certificates from RABBITMQ_SSL_CLIENT_CERTIFICATE/KEY or `?certfile=&keyfile=`, and the failures: no client
 * certificate where one is required, a wrong CA (a clear error naming the host), never a password in a message.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { inspect } from 'node:util';
import { type AnyEvent, type Broker, type EventEnvelope, userUttered } from '@parley/core';
import { connect } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AmqpBrokerOptions, type AmqpClient, amqpBroker } from '../src/index.js';
import { AMQP_URL, deleteQueuesWithPrefix } from './support.js';

const upstream = new URL(AMQP_URL);
const UPSTREAM_HOST = upstream.hostname;
const UPSTREAM_PORT = Number(upstream.port || 5672);
// RabbitMQ's guest account only logs in over loopback: the terminator connects from here, so it does.
const USER = decodeURIComponent(upstream.username || 'guest');
const PASS = decodeURIComponent(upstream.password || 'guest');
/** For the failing cases, which never get as far as logging in: a password that is easy to spot anywhere. */
const SECRET = 'Tls-S3cret:p@ss/word';

const ENV_KEYS = [
  'RABBITMQ_SSL_CA_FILE',
  'RABBITMQ_SSL_CLIENT_CERTIFICATE',
  'RABBITMQ_SSL_CLIENT_KEY',
  'RABBITMQ_SSL_KEY_PASSWORD',
  'RASA_ENVIRONMENT',
] as const;

// ─── A throwaway PKI, made with the openssl CLI ──────────────────────────────────────────────────────────────

interface Pki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverKey: string;
  readonly serverCert: string;
  readonly clientKey: string;
  readonly clientCert: string;
  /** A CA that signed none of the above. */
  readonly wrongCaCert: string;
}

function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'parley-tls-'));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  // Our own minimal config: the test must not depend on the system's openssl.cnf.
  writeFileSync(
    at('openssl.cnf'),
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = unused',
      '[ca]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '[server]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = DNS:localhost,IP:127.0.0.1',
      '[client]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = clientAuth',
      '',
    ].join('\n'),
  );
  const ca = (name: string, cn: string) =>
    openssl(
      'req',
      '-x509',
      '-config',
      at('openssl.cnf'),
      '-extensions',
      'ca',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      at(`${name}.key`),
      '-out',
      at(`${name}.crt`),
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
    );
  const leaf = (name: string, cn: string, extensions: 'server' | 'client') => {
    openssl(
      'req',
      '-new',
      '-config',
      at('openssl.cnf'),
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      at(`${name}.key`),
      '-out',
      at(`${name}.csr`),
      '-subj',
      `/CN=${cn}`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      at(`${name}.csr`),
      '-CA',
      at('ca.crt'),
      '-CAkey',
      at('ca.key'),
      '-CAcreateserial',
      '-out',
      at(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      at('openssl.cnf'),
      '-extensions',
      extensions,
    );
  };
  ca('ca', 'Parley Test CA');
  leaf('server', 'localhost', 'server');
  leaf('client', 'parley-test-client', 'client');
  ca('wrong-ca', 'Unrelated Test CA');
  return {
    dir,
    caCert: at('ca.crt'),
    serverKey: at('server.key'),
    serverCert: at('server.crt'),
    clientKey: at('client.key'),
    clientCert: at('client.crt'),
    wrongCaCert: at('wrong-ca.crt'),
  };
}

// ─── The TLS terminator in front of RabbitMQ ─────────────────────────────────────────────────────────────────

interface Terminator {
  readonly port: number;
  /** Common names of the client certificates presented on accepted connections. */
  readonly clientNames: string[];
  /** TLS handshakes that failed on the server side (a missing client certificate, a client that gave up). */
  readonly handshakeErrors: Error[];
  close(): Promise<void>;
}

function startTerminator(pki: Pki, rejectUnauthorized: boolean): Promise<Terminator> {
  const sockets = new Set<net.Socket>();
  const clientNames: string[] = [];
  const handshakeErrors: Error[] = [];
  const server = tls.createServer(
    {
      key: readFileSync(pki.serverKey),
      cert: readFileSync(pki.serverCert),
      ca: [readFileSync(pki.caCert)],
      requestCert: true,
      rejectUnauthorized,
    },
    (secure) => {
      const peer = secure.getPeerCertificate();
      if (peer && typeof peer.subject?.CN === 'string') clientNames.push(peer.subject.CN);
      const plain = net.connect(UPSTREAM_PORT, UPSTREAM_HOST);
      sockets.add(secure).add(plain);
      const end = () => {
        secure.destroy();
        plain.destroy();
        sockets.delete(secure);
        sockets.delete(plain);
      };
      secure.on('error', end).on('close', end);
      plain.on('error', end).on('close', end);
      secure.pipe(plain).pipe(secure);
    },
  );
  server.on('tlsClientError', (error) => handshakeErrors.push(error));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        port,
        clientNames,
        handshakeErrors,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

// ─── Test plumbing ───────────────────────────────────────────────────────────────────────────────────────────

const prefix = `tls-${process.pid}-`;
let pki: Pki;
let open: Terminator; // client certificate requested, not required
let strict: Terminator; // client certificate required
let brokers: Broker<AmqpClient>[] = [];
let warnings: string[] = [];
const exchanges = new Set<string>();
const queuesMade = new Set<string>();
const savedEnv = new Map<string, string | undefined>(ENV_KEYS.map((key) => [key, process.env[key]]));

beforeAll(async () => {
  pki = makePki();
  open = await startTerminator(pki, false);
  strict = await startTerminator(pki, true);
});

afterEach(async () => {
  const closing = brokers;
  brokers = [];
  await Promise.all(closing.map((broker) => broker.close({ timeoutMs: 5_000 }).catch(() => {})));
  restoreEnv();
  warnings = [];
});

afterAll(async () => {
  await open?.close();
  await strict?.close();
  if (pki) rmSync(pki.dir, { recursive: true, force: true });
  if (queuesMade.size > 0) {
    const model = await connect(AMQP_URL);
    try {
      const ch = await model.createChannel();
      for (const queue of queuesMade) await ch.deleteQueue(queue);
      for (const exchange of exchanges) await ch.deleteExchange(exchange);
      await ch.close();
    } finally {
      await model.close();
    }
  }
  await deleteQueuesWithPrefix(prefix);
});

function restoreEnv(): void {
  for (const [key, value] of savedEnv) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
}

/** Sets exactly these TLS variables (the others unset) for the broker about to be created. */
function tlsEnv(vars: Partial<Record<(typeof ENV_KEYS)[number], string>>): void {
  for (const key of ENV_KEYS) delete process.env[key];
  Object.assign(process.env, vars);
}

let counter = 0;
/** A broker with unique names, failing fast: one connection attempt, short delays. */
function tlsBroker(
  url: string,
  extra: Partial<AmqpBrokerOptions> = {},
): { broker: Broker<AmqpClient>; queue: string } {
  const tag = `${prefix}${++counter}`;
  exchanges.add(tag);
  queuesMade.add(`${tag}-events`);
  queuesMade.add(`${tag}-events.dead-letter`);
  const broker = amqpBroker({
    url,
    exchange_name: tag,
    queues: [`${tag}-events`],
    connection_attempts: 1,
    retry_delay_in_seconds: 0.1,
    onWarning: (message) => warnings.push(message),
    ...extra,
  });
  // The adapter read the environment just now: the process gets its own back at once.
  restoreEnv();
  brokers.push(broker);
  return { broker, queue: `${tag}-events` };
}

const amqps = (port: number, query = '') =>
  `amqps://${encodeURIComponent(USER)}:${encodeURIComponent(PASS)}@localhost:${port}${query}`;

/** Publishes one event and receives it back through the same broker: the connection really carries AMQP. */
async function roundTrip(broker: Broker<AmqpClient>, queue: string): Promise<void> {
  const received: EventEnvelope<AnyEvent>[] = [];
  const subscription = broker.subscribe(
    (envelope) => {
      received.push(envelope);
    },
    { group: queue },
  );
  await subscription.ready;
  const sent = {
    sender_id: `tls-${counter}`,
    ...userUttered('hello over TLS', { timestamp: 1_700_000_000.5 }),
  };
  await broker.publish(sent);
  const deadline = Date.now() + 10_000;
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(received).toHaveLength(1);
  expect(received[0]).toMatchObject({ sender_id: sent.sender_id, event: 'user', text: 'hello over TLS' });
  expect(broker.isReady()).toBe(true);
}

/** ready() must reject; returns the error. */
async function connectError(broker: Broker<AmqpClient>): Promise<Error> {
  const error = await broker.ready({ timeoutMs: 15_000 }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error, 'ready() should have rejected').toBeInstanceOf(Error);
  return error as Error;
}

/** Every text a user could log: the message, the whole cause chain, inspect() output, the warnings. */
function everythingSaid(error: Error | undefined): string {
  const texts = [...warnings];
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    texts.push(e.message, String(e.stack));
  }
  if (error) texts.push(inspect(error, { depth: 10 }));
  return texts.join('\n');
}

function expectNoSecret(text: string, secret: string): void {
  expect(text).not.toContain(secret);
  expect(text).not.toContain(encodeURIComponent(secret));
}

// ─── The tests ───────────────────────────────────────────────────────────────────────────────────────────────

describe('amqps through a TLS terminator in front of RabbitMQ, with a throwaway CA', () => {
  it('makes the PKI: the server certificate verifies against the CA, not against the wrong one', () => {
    const verify = (ca: string) =>
      execFileSync('openssl', ['verify', '-CAfile', ca, pki.serverCert], { stdio: 'pipe' }).toString();
    expect(verify(pki.caCert)).toContain('OK');
    expect(() => verify(pki.wrongCaCert)).toThrow();
  });

  it('connects with the CA from RABBITMQ_SSL_CA_FILE: publish and consume round trip', async () => {
    tlsEnv({ RABBITMQ_SSL_CA_FILE: pki.caCert });
    const { broker, queue } = tlsBroker(amqps(open.port));
    await broker.ready({ timeoutMs: 15_000 });
    await roundTrip(broker, queue);
    expect(broker.client.settings.safeUrls[0]).toMatch(/^amqps:\/\//);
    expectNoSecret(everythingSaid(undefined), `:${PASS}@`);
  });

  it('connects with the CA from the URL (?cafile=): publish and consume round trip', async () => {
    tlsEnv({});
    const { broker, queue } = tlsBroker(amqps(open.port, `?cafile=${encodeURIComponent(pki.caCert)}`));
    await broker.ready({ timeoutMs: 15_000 });
    await roundTrip(broker, queue);
    expect(warnings).toEqual([]);
  });

  it('a client certificate required by the endpoint: works with RABBITMQ_SSL_CLIENT_CERTIFICATE/KEY', async () => {
    tlsEnv({
      RABBITMQ_SSL_CA_FILE: pki.caCert,
      RABBITMQ_SSL_CLIENT_CERTIFICATE: pki.clientCert,
      RABBITMQ_SSL_CLIENT_KEY: pki.clientKey,
    });
    const before = strict.clientNames.length;
    const { broker, queue } = tlsBroker(amqps(strict.port));
    await broker.ready({ timeoutMs: 15_000 });
    await roundTrip(broker, queue);
    // The terminator saw (and verified) our client certificate.
    expect(strict.clientNames.slice(before)).toContain('parley-test-client');
  });

  it('a client certificate required by the endpoint: works with ?certfile=&keyfile= in the URL', async () => {
    tlsEnv({});
    const query = `?cafile=${encodeURIComponent(pki.caCert)}&certfile=${encodeURIComponent(pki.clientCert)}&keyfile=${encodeURIComponent(pki.clientKey)}`;
    const before = strict.clientNames.length;
    const { broker, queue } = tlsBroker(amqps(strict.port, query));
    await broker.ready({ timeoutMs: 15_000 });
    await roundTrip(broker, queue);
    expect(strict.clientNames.slice(before)).toContain('parley-test-client');
  });

  it('a client certificate required by the endpoint: fails without one, naming the host, no password', async () => {
    tlsEnv({ RABBITMQ_SSL_CA_FILE: pki.caCert });
    const { broker } = tlsBroker(`amqps://localhost:${strict.port}`, { username: USER, password: SECRET });
    const error = await connectError(broker);
    // OpenSSL's words (TLS 1.3: "alert certificate required"; TLS 1.2: a handshake failure), with the host.
    expect(error.message).toMatch(/certificate required|handshake failure|socket hang up|ECONNRESET/i);
    expect(error.message).toContain(`amqps://${USER}:<redacted>@localhost:${strict.port}`);
    expect(broker.isReady()).toBe(false);
    expectNoSecret(everythingSaid(error), SECRET);
  });

  it('a wrong CA fails with a clear error: the certificate problem and the host, never the password', async () => {
    tlsEnv({ RABBITMQ_SSL_CA_FILE: pki.wrongCaCert });
    const { broker } = tlsBroker(`amqps://localhost:${open.port}`, { username: USER, password: SECRET });
    const handshakesBefore = open.handshakeErrors.length;
    const started = Date.now();
    const error = await connectError(broker);
    expect(Date.now() - started).toBeLessThan(10_000); // one attempt, not a timeout
    expect(error.message).toMatch(/certificate|self[- ]signed|unable to verify/i);
    expect(error.message).toContain(`amqps://${USER}:<redacted>@localhost:${open.port}`);
    expectNoSecret(everythingSaid(error), SECRET);
    // The terminator saw the handshake end unfinished (the client hung up): the failure was TLS, not AMQP.
    const deadline = Date.now() + 5_000;
    while (open.handshakeErrors.length === handshakesBefore && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(open.handshakeErrors.length).toBeGreaterThan(handshakesBefore);
  });

  it('no CA at all (the system trust store) fails the same clear way', async () => {
    tlsEnv({});
    const { broker } = tlsBroker(`amqps://localhost:${open.port}`, { username: USER, password: SECRET });
    const error = await connectError(broker);
    expect(error.message).toMatch(/certificate|self[- ]signed|unable to verify/i);
    expect(error.message).toContain(`localhost:${open.port}`);
    expectNoSecret(everythingSaid(error), SECRET);
  });

  it('no credential leaks: retries warn with the TLS error, never the password (URL or keys)', async () => {
    for (const url of [
      `amqps://${USER}:${encodeURIComponent(SECRET)}@localhost:${open.port}`,
      `amqps://localhost:${open.port}`,
    ]) {
      tlsEnv({ RABBITMQ_SSL_CA_FILE: pki.wrongCaCert });
      warnings = [];
      const keys = url.includes('@') ? {} : { username: USER, password: SECRET };
      // Two attempts: the first failure is reported as a warning before the second.
      const { broker } = tlsBroker(url, { connection_attempts: 2, ...keys });
      const error = await connectError(broker);
      expect(warnings.some((w) => /cannot connect \(attempt 1\)/.test(w))).toBe(true);
      expect(error.message).toMatch(/certificate|self[- ]signed|unable to verify/i);
      const said = everythingSaid(error);
      expectNoSecret(said, SECRET);
      const health = await broker.health();
      expectNoSecret(JSON.stringify(health), SECRET);
      expectNoSecret(inspect(broker.client.settings.safeUrls), SECRET);
    }
  });
});
