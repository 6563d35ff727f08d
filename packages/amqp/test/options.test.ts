import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { unescape as qsUnescape } from 'node:querystring';
import { fileURLToPath } from 'node:url';
import { brokerConfig, ConfigError, loadEndpoints } from '@parley/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type AmqpSettings, type ResolveContext, redactUrl, resolveAmqpSettings } from '../src/options.js';

// amqplib's own URL reading, so the tests check what it will actually send, not what we think it reads.
const require = createRequire(import.meta.url);
const connectJs = join(dirname(require.resolve('amqplib')), 'lib', 'connect.js');
const { credentialsFromUrl } = require(connectJs) as {
  credentialsFromUrl: (parts: URL) => { username: string; password: string };
};
const amqplibReads = (url: string) => {
  const parts = new URL(url);
  const path = parts.pathname.slice(1);
  return {
    ...credentialsFromUrl(parts),
    host: parts.hostname.replace(/^\[|\]$/g, ''),
    port: Number(parts.port),
    vhost: path ? qsUnescape(path) : '/',
  };
};

const fixtures = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'fixtures',
  'rasa',
  'endpoints',
);
// Appears in no expected output: every warning and error of this file is checked for it at the end.
const SECRET = 'Sup3r$ecret@pw';
const produced: string[] = [];
// Created at load: describe bodies build their env from these paths while the tests are collected.
const dir = mkdtempSync(join(tmpdir(), 'parley-amqp-options-'));
for (const name of ['cert', 'key', 'ca']) writeFileSync(join(dir, `${name}.pem`), `-----${name}-----\n`);
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  expect(produced.length).toBeGreaterThan(30);
  const forms = [SECRET, encodeURIComponent(SECRET), 'Sup3r', 'passphrase-Sup3r'];
  for (const message of produced) for (const form of forms) expect(message).not.toContain(form);
});

function resolve(options: Record<string, unknown>, context: ResolveContext = {}) {
  const warnings: string[] = [];
  const config = brokerConfig({ type: 'pika', ...options }, 'endpoints.yml', { env: {} });
  const settings = resolveAmqpSettings(config, {
    env: {},
    ...context,
    warn: (message) => {
      warnings.push(message);
      produced.push(message);
    },
  });
  return { settings, warnings };
}

function failure(options: Record<string, unknown>, context: ResolveContext = {}): ConfigError {
  try {
    resolve(options, context);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    produced.push((error as Error).message);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const creds = { username: 'user', password: SECRET };
const pem = (name: string) => join(dir, `${name}.pem`);

describe('Rasa fixtures', () => {
  it('pika_endpoint.yml resolves as Rasa would', async () => {
    const config = await loadEndpoints(join(fixtures, 'pika_endpoint.yml'), { env: {} });
    const warnings: string[] = [];
    const settings = resolveAmqpSettings(config!, { env: {}, warn: (m) => warnings.push(m) });
    expect(settings.urls).toEqual(['amqp://username:password@localhost:5672']);
    expect(settings.exchange).toBe('exchange');
    expect(settings.queues).toEqual(['queue-1']);
    expect(warnings).toEqual([]);
  });

  it("event_broker_endpoint.yml: the legacy `queue` is honoured, with Rasa 3's behaviour named", async () => {
    const config = await loadEndpoints(join(fixtures, 'event_broker_endpoint.yml'), { env: {} });
    const warnings: string[] = [];
    const settings = resolveAmqpSettings(config!, { env: {}, warn: (m) => warnings.push(m) });
    expect(settings.queues).toEqual(['queue']);
    expect(settings.exchange).toBe('rasa-exchange');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^\[parley\] \[amqp\] .*event_broker_endpoint\.yml: event_broker\.queue: /);
    expect(warnings[0]).toContain('ignored by Rasa 3; Parley publishes to it');
  });
});

describe('URLs', () => {
  it("Rasa Pro's examples: credentials and port injected, vhost and query kept", () => {
    const a = resolve({ url: 'amqp://localhost', username: 'test_user', password: 'test_pass', queues: 'q' });
    expect(a.settings.urls).toEqual(['amqp://test_user:test_pass@localhost:5672']);
    expect(amqplibReads(a.settings.urls[0]!).vhost).toBe('/');
    const b = resolve({
      url: 'amqp://u:p@localhost/myvhost?connection_timeout=10',
      username: 'u',
      password: 'p',
    });
    expect(b.settings.urls).toEqual(['amqp://u:p@localhost:5672/myvhost?connection_timeout=10']);
    expect(amqplibReads(b.settings.urls[0]!)).toMatchObject({ username: 'u', vhost: 'myvhost', port: 5672 });
    expect(b.warnings.filter((w) => /username|password/.test(w))).toEqual([]);
  });

  it("the URL's credentials win over different keys, with a warning", () => {
    const { settings, warnings } = resolve({ url: 'amqp://u:p@h', ...creds, queues: 'q' });
    expect(amqplibReads(settings.urls[0]!)).toMatchObject({ username: 'u', password: 'p' });
    expect(warnings.join('\n')).toContain("event_broker.password: ignored: the URL's is used");
  });

  it('a plain host gets the keys, encoded so amqplib reads back the exact password', () => {
    const password = `${SECRET}:/#?%+ é€😀`;
    const { settings } = resolve({ url: 'rabbit.internal', username: 'us er', password, port: '5673' });
    expect(amqplibReads(settings.urls[0]!)).toMatchObject({
      username: 'us er',
      password,
      host: 'rabbit.internal',
      port: 5673,
      vhost: '/',
    });
    expect(settings.safeUrls).toEqual(['amqp://us%20er:<redacted>@rabbit.internal:5673']);
  });

  it('a UTF-8 percent-encoded password in a URL is re-encoded for amqplib', () => {
    const { settings } = resolve({ url: 'amqp://u:p%C3%A9@h/caf%C3%A9', queues: 'q' });
    expect(amqplibReads(settings.urls[0]!)).toMatchObject({ password: 'pé', vhost: 'café' });
  });

  it('keeps an encoded vhost (%2F is /) and takes the port only when the URL has none', () => {
    const { settings } = resolve({ url: 'amqp://h:5600/%2F', ...creds, port: 5700, queues: 'q' });
    expect(settings.urls[0]).toMatch(/@h:5600\/%2F$/);
    expect(amqplibReads(settings.urls[0]!).vhost).toBe('/');
    // Rasa's substring test would skip the port here, because "5672" appears in the host name.
    expect(resolve({ url: 'amqp://rabbit5672', ...creds }).settings.urls[0]).toMatch(/@rabbit5672:5672$/);
  });

  it('IPv6 hosts are bracketed', () => {
    expect(resolve({ url: '::1', ...creds }).settings.safeUrls).toEqual([
      'amqp://user:<redacted>@[::1]:5672',
    ]);
    const { settings } = resolve({ url: 'amqp://[::1]:5673/v', ...creds });
    expect(amqplibReads(settings.urls[0]!)).toMatchObject({ host: '::1', port: 5673, vhost: 'v' });
  });

  it('hosts: failover nodes share url’s credentials, port, vhost, query, or bring theirs; deduped', () => {
    const { settings, warnings } = resolve({
      url: 'amqp://u:p@rabbit-1:5680/vh?frameMax=8192',
      hosts: ['rabbit-2', 'rabbit-3:5673', 'amqps://x:y@rabbit-4', 'amqp://rabbit-5', 'rabbit-1'],
    });
    expect(settings.urls).toEqual([
      'amqp://u:p@rabbit-1:5680/vh?frameMax=8192',
      'amqp://u:p@rabbit-2:5680/vh?frameMax=8192',
      'amqp://u:p@rabbit-3:5673/vh?frameMax=8192',
      'amqps://x:y@rabbit-4:5671',
      'amqp://u:p@rabbit-5:5672',
    ]);
    expect(settings.safeUrls[3]).toBe('amqps://x:<redacted>@rabbit-4:5671');
    expect(warnings.join('\n')).toContain('amqps without a port: 5671 (Rasa: 5672)');
  });

  it('`host:` (as in Rasa Pro docs) is read as url', () => {
    const { settings, warnings } = resolve({ host: 'rabbit', ...creds, queues: 'q' });
    expect(settings.urls[0]).toMatch(/@rabbit:5672$/);
    expect(warnings).toEqual([expect.stringContaining('event_broker.host: read as `url`')]);
  });

  it('errors: missing url, missing credentials, bad port, bad URLs (without printing them)', () => {
    expect(failure({ ...creds }).message).toBe(
      '[parley] endpoints.yml: event_broker.url: required: a host name, or an amqp:// or amqps:// URL',
    );
    expect(failure({ url: 'localhost', password: SECRET }).message).toContain(
      'event_broker.username: required when the URL carries no credentials',
    );
    expect(failure({ url: 'amqp://localhost', username: 'u' }).key).toBe('event_broker.password');
    expect(failure({ url: 'h', ...creds, port: 'abc' }).message).toBe(
      '[parley] endpoints.yml: event_broker.port: expected an integer, found "abc"',
    );
    expect(failure({ url: 'h', ...creds, port: 70000 }).message).toContain(
      'event_broker.port: expected an integer between 1 and 65535, found 70000',
    );
    expect(failure({ url: `amqp://u:pa#${SECRET}@h` }).message).toContain(
      'event_broker.url: expected a host name',
    );
    expect(failure({ url: 'http://h', ...creds }).message).toContain(
      'expected amqp:// or amqps://, found http://',
    );
    expect(failure({ url: 'h/vhost', ...creds }).key).toBe('event_broker.url');
    expect(failure({ url: 'h', ...creds, hosts: ['ok', 'u@bad'] }).key).toBe('event_broker.hosts[1]');
  });
});

describe('TLS', () => {
  const env = { RABBITMQ_SSL_CLIENT_CERTIFICATE: pem('cert'), RABBITMQ_SSL_CLIENT_KEY: pem('key') };

  it('amqps URL with the env certificates: applied, though Rasa ignores them there', () => {
    const { settings, warnings } = resolve({ url: 'amqps://u:p@mq:5671/v', queues: 'q' }, { env });
    expect(settings.urls).toEqual(['amqps://u:p@mq:5671/v']);
    expect(String(settings.socketOptions.cert)).toBe('-----cert-----\n');
    expect(String(settings.socketOptions.key)).toBe('-----key-----\n');
    expect(warnings).toEqual([expect.stringContaining('Rasa ignores both with a full URL')]);
  });

  it('a plain host with the env certificates switches to amqps on 5671, unless a port is given', () => {
    const a = resolve({ url: 'mq', ...creds, queues: 'q' }, { env });
    expect(a.settings.safeUrls).toEqual(['amqps://user:<redacted>@mq:5671']);
    expect(a.warnings).toEqual([
      expect.stringContaining('connecting with TLS (amqps, port 5671 unless given)'),
    ]);
    expect(resolve({ url: 'mq', ...creds, port: 5672, queues: 'q' }, { env }).settings.urls[0]).toMatch(
      /^amqps:.*@mq:5672$/,
    );
  });

  it('an amqp:// URL with the env certificates switches to amqps too, saying Rasa would not', () => {
    const { settings, warnings } = resolve({ url: 'amqp://u:p@mq', queues: 'q' }, { env });
    expect(settings.urls).toEqual(['amqps://u:p@mq:5671']);
    expect(warnings.join('\n')).toContain('Rasa would connect an amqp:// URL without TLS');
  });

  it('CA file and key passphrase from the env are honoured, with a warning; passphrase never shown', () => {
    const passphrase = `passphrase-${SECRET}`;
    const { settings, warnings } = resolve(
      { url: 'amqps://u:p@mq', queues: 'q' },
      { env: { ...env, RABBITMQ_SSL_CA_FILE: pem('ca'), RABBITMQ_SSL_KEY_PASSWORD: passphrase } },
    );
    expect(String(settings.socketOptions.ca)).toBe('-----ca-----\n');
    expect(settings.socketOptions.passphrase).toBe(passphrase);
    expect(warnings.filter((w) => w.includes('no longer supported'))).toHaveLength(2);
    expect(warnings.join('\n')).toContain('RABBITMQ_SSL_CA_FILE: applied (Rasa ignores it');
  });

  it('a CA file without amqps has no effect, and says so', () => {
    const { warnings } = resolve(
      { url: 'mq', ...creds, queues: 'q' },
      { env: { RABBITMQ_SSL_CA_FILE: pem('ca') } },
    );
    expect(warnings.join('\n')).toContain('no URL uses amqps://: it has no effect');
  });

  it('URL query cafile/certfile/keyfile are read and stripped; the rest of the query is kept', () => {
    const files = `cacertfile=${pem('ca')}&certfile=${pem('cert')}&keyfile=${pem('key')}`;
    const url = `amqps://u:p@mq/v?${files}&heartbeat=15&x=1`;
    const read: string[] = [];
    const readFile = (path: string) => {
      read.push(path);
      return Buffer.from(path);
    };
    const { settings, warnings } = resolve({ url, queues: 'q' }, { readFile });
    expect(settings.urls).toEqual(['amqps://u:p@mq:5671/v?x=1']);
    expect(read).toEqual([pem('ca'), pem('cert'), pem('key')]);
    expect(settings.socketOptions).toEqual({
      ca: Buffer.from(pem('ca')),
      cert: Buffer.from(pem('cert')),
      key: Buffer.from(pem('key')),
    });
    expect(settings.heartbeat).toBe(15);
    expect(warnings).toEqual([expect.stringContaining('amqps without a port')]);
  });

  it('no_verify_ssl / verify=verify_none turn verification off, with a warning; bad verify: error', () => {
    for (const query of ['no_verify_ssl=1', 'verify=verify_none']) {
      const { settings, warnings } = resolve({ url: `amqps://u:p@mq:5671?${query}`, queues: 'q' });
      expect(settings).toMatchObject({
        urls: ['amqps://u:p@mq:5671'],
        socketOptions: { rejectUnauthorized: false },
      });
      expect(warnings).toEqual([expect.stringContaining('TLS certificate verification is off')]);
    }
    expect(resolve({ url: 'amqps://u:p@mq:5671?no_verify_ssl=0' }).settings.socketOptions).toEqual({});
    expect(failure({ url: 'amqps://u:p@mq?verify=maybe' }).message).toContain('expected ?verify=verify_peer');
  });

  it('a missing certificate file is an error naming the variable and path; one variable alone too', () => {
    const missing = join(dir, 'nope.pem');
    const error = failure({ url: 'mq', ...creds }, { env: { ...env, RABBITMQ_SSL_CLIENT_KEY: missing } });
    expect(error.key).toBe('RABBITMQ_SSL_CLIENT_KEY');
    expect(error.message).toContain(`RABBITMQ_SSL_CLIENT_KEY: cannot read ${missing}`);
    const alone = failure({ url: 'mq', ...creds }, { env: { RABBITMQ_SSL_CLIENT_CERTIFICATE: pem('cert') } });
    expect(alone.message).toContain('RABBITMQ_SSL_CLIENT_CERTIFICATE: set without RABBITMQ_SSL_CLIENT_KEY');
    expect(failure({ url: `amqps://u:p@mq?cafile=${missing}` }).key).toBe('event_broker.url?cafile');
  });
});

describe('keys', () => {
  it("Rasa's defaults, and Parley's", () => {
    const { settings, warnings } = resolve({ url: 'localhost', ...creds });
    expect(settings).toMatchObject<Partial<AmqpSettings>>({
      heartbeat: 60,
      exchange: 'rasa-exchange',
      queues: ['rasa_core_events'],
      appId: undefined,
      connectionAttempts: 20,
      retryDelayMs: 5000,
      bufferUnpublished: true,
      confirmTimeoutMs: 30_000,
      prefetch: undefined,
      bufferSize: undefined,
      format: undefined,
      socketOptions: {},
    });
    expect(settings.deadLetterQueue('billing')).toBe('billing.dead-letter');
    expect(warnings).toEqual([
      expect.stringContaining('event_broker.queues: not given: publishing to the default'),
    ]);
  });

  it('reads strings as Rasa does (values substituted from env vars stay strings)', () => {
    const { settings } = resolve({
      url: 'h',
      ...creds,
      queues: ['a'],
      connection_attempts: '3',
      retry_delay_in_seconds: '0.5',
      heartbeat: '0',
      prefetch: 8,
      buffer_size: '1_000',
      confirm_timeout_in_seconds: 2.5,
      dead_letter_queue: 'dlq.{group}',
      format: 'compact',
    });
    expect(settings).toMatchObject({ connectionAttempts: 3, retryDelayMs: 500, heartbeat: 0, prefetch: 8 });
    expect(settings).toMatchObject({ bufferSize: 1000, confirmTimeoutMs: 2500, format: 'compact' });
    expect(settings.deadLetterQueue('g')).toBe('dlq.g');
  });

  it('should_keep_unpublished_messages: false or raise_on_failure: true means no buffering', () => {
    expect(
      resolve({ url: 'h', ...creds, should_keep_unpublished_messages: 'False' }).settings.bufferUnpublished,
    ).toBe(false);
    expect(resolve({ url: 'h', ...creds, raise_on_failure: true }).settings.bufferUnpublished).toBe(false);
  });

  it('queues: a string or a list; an empty list is an error; queue and queues together are merged', () => {
    expect(resolve({ url: 'h', ...creds, queues: 'one' }).settings.queues).toEqual(['one']);
    expect(resolve({ url: 'h', ...creds, queues: ['a', 'b', 'a'] }).settings.queues).toEqual(['a', 'b']);
    expect(failure({ url: 'h', ...creds, queues: [] }).message).toContain(
      'event_broker.queues: expected at least one queue, found an empty list',
    );
    const both = resolve({ url: 'h', ...creds, queues: ['a', 'b'], queue: 'c' });
    expect(both.settings.queues).toEqual(['a', 'b', 'c']);
    expect(both.warnings).toEqual([expect.stringContaining('Parley publishes to it too')]);
  });

  it('heartbeat: the key overrides the URL parameter, with a warning', () => {
    const { settings, warnings } = resolve({ url: 'amqp://u:p@h?heartbeat=5', heartbeat: 20, queues: 'q' });
    expect(settings).toMatchObject({ heartbeat: 20, urls: ['amqp://u:p@h:5672'] });
    expect(warnings).toEqual([expect.stringContaining("event_broker.heartbeat: overrides the URL's")]);
  });

  it('app_id from RASA_ENVIRONMENT when set and non-empty', () => {
    expect(resolve({ url: 'h', ...creds }, { env: { RASA_ENVIRONMENT: 'prod' } }).settings.appId).toBe(
      'prod',
    );
    expect(resolve({ url: 'h', ...creds }, { env: { RASA_ENVIRONMENT: '' } }).settings.appId).toBeUndefined();
  });

  it('unknown keys are an error listing the known ones; invalid values name their key', () => {
    const error = failure({ url: 'h', ...creds, exchange: 'x' });
    expect(error.message).toMatch(
      /event_broker: unknown key "exchange" \(did you mean "exchange_name"\?\) for the amqp broker; known keys: .*exchange_name/,
    );
    for (const key of ['anonymization_queues', 'hosts', 'prefetch', 'queue', 'stream_pii', 'url']) {
      expect(error.message).toContain(key);
    }
    expect(failure({ url: 'h', ...creds, format: 'json' }).key).toBe('event_broker.format');
    expect(failure({ url: 'h', ...creds, format: 'pyhton' }).message).toBe(
      '[parley] endpoints.yml: event_broker.format: expected "python" or "compact", found "pyhton" (did you mean "python"?)',
    );
    expect(failure({ url: 'h', ...creds, usrename: 'u' }).message).toContain(
      'unknown key "usrename" (did you mean "username"?)',
    );
    expect(failure({ url: 'amqps://h?verify=verify_peers', ...creds }).message).toContain(
      'found "verify_peers" (did you mean verify_peer?)',
    );
    expect(failure({ url: 'h', ...creds, connection_attempts: 0 }).key).toBe(
      'event_broker.connection_attempts',
    );
    expect(failure({ url: 'h', ...creds, exchange_name: '' }).key).toBe('event_broker.exchange_name');
    expect(failure({ url: 'h', ...creds, confirm_timeout_in_seconds: 0 }).key).toBe(
      'event_broker.confirm_timeout_in_seconds',
    );
  });

  it("Rasa Pro's stream_pii and anonymization_queues, and 1.x's log_level, warn and are ignored", () => {
    const { warnings } = resolve({
      url: 'h',
      ...creds,
      queues: 'q',
      stream_pii: false,
      anonymization_queues: ['anon'],
      log_level: 'DEBUG',
    });
    expect(warnings).toHaveLength(3);
    for (const w of warnings)
      expect(w).toMatch(/^\[parley\] \[amqp\] endpoints\.yml: event_broker\.\w+: ignored/);
    expect(warnings.join('\n')).toContain('personal data included');
    expect(warnings.join('\n')).toContain('anonymised copies are not produced');
  });

  it('warns each message once, through process.emitWarning by default', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const config = brokerConfig({ url: 'amqps://u:p@a', hosts: ['amqps://b', 'amqps://c'] }, 'e.yml', {
        env: {},
      });
      resolveAmqpSettings(config, { env: {} });
      const messages = spy.mock.calls.map(([message]) => String(message));
      produced.push(...messages);
      expect(messages.filter((m) => m.includes('amqps without a port'))).toHaveLength(1);
      expect(spy.mock.calls.every(([, type]) => String(type) === 'ParleyWarning')).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('redactUrl', () => {
  it('hides passwords, keeps the rest', () => {
    expect(redactUrl('amqp://user:pass@host:5672/vhost')).toBe('amqp://user:<redacted>@host:5672/vhost');
    expect(redactUrl(`amqps://u:${SECRET}@h`)).toBe('amqps://u:<redacted>@h');
    expect(redactUrl('amqp://host:5672/v?x=1')).toBe('amqp://host:5672/v?x=1');
    expect(redactUrl('amqp://user@host')).toBe('amqp://user@host');
    expect(redactUrl('connect amqp://a:b@h1 failed, then amqp://c:d@h2/x')).toBe(
      'connect amqp://a:<redacted>@h1 failed, then amqp://c:<redacted>@h2/x',
    );
    produced.push(redactUrl(`error: amqp://u:${SECRET}@h:5672`));
  });
});
