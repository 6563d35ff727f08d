/**
 * Nothing Parley hands out prints a password, however it is printed: the broker (with `client.settings`), its
 * errors and their causes, and YAML errors. Checked for a broker that never connects (a distinctive password in its
 * URL) and one connected to RabbitMQ as a user with a distinctive password.
 */
import { execFileSync } from 'node:child_process';
import { inspect } from 'node:util';
import { type Broker, ConnectionError, parseEndpoints, slotSet } from '@parley/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AmqpClient, amqpBroker } from '../src/index.js';
import { AMQP_URL, deleteQueuesWithPrefix } from './support.js';

const PASSWORD = 'Xy9!s3cr3t-pw';
const prefix = `amqp-secrets-${process.pid}-`;
const quiet = { onWarning: () => {} };

/** Every way the password could be written: as given, and percent-encoded (as the settings' URLs hold it). */
function expectNoPassword(text: string, password = PASSWORD): void {
  for (const form of [password, encodeURIComponent(password), password.replace('!', '%21')]) {
    expect(text).not.toContain(form);
  }
  // The distinctive tail, in case of any other encoding.
  expect(text).not.toContain(password.slice(-8));
}

/** Everything a user might print of a broker. */
function printed(broker: Broker<AmqpClient>): string[] {
  let json: string;
  try {
    json = JSON.stringify(broker);
  } catch (error) {
    // A live amqplib connection is circular: what JSON.stringify says then must not hold a secret either.
    json = String(error);
  }
  return [
    inspect(broker, { depth: Infinity }),
    inspect(broker, { depth: Infinity, showHidden: true }),
    inspect(broker, { depth: Infinity, customInspect: false, showHidden: true }),
    inspect(broker.client.settings, { depth: Infinity, getters: true }),
    json,
    JSON.stringify(broker.client.settings),
    String(broker.client.settings),
  ];
}

/** Everything a user might print of an error, its cause chain included. */
function printedError(error: unknown): string[] {
  return [
    String(error),
    (error as Error).stack ?? '',
    inspect(error, { depth: Infinity }),
    inspect(error, { depth: Infinity, showHidden: true }),
    JSON.stringify(error),
  ];
}

describe('a broker that never connected', () => {
  it('prints no password: inspect at any depth, JSON.stringify, its settings, its errors', async () => {
    const broker = amqpBroker({
      url: `amqp://parley:${encodeURIComponent(PASSWORD)}@127.0.0.1:1/`,
      queues: [`${prefix}never`],
      connection_attempts: 1,
      retry_delay_in_seconds: 0,
      ...quiet,
    });
    // The driver has the password (it must connect with it), but only behind accessors.
    expect(broker.client.settings.urls[0]).toContain('Xy9%21s3cr3t-pw');
    for (const text of printed(broker)) expectNoPassword(text);
    // What is printed still says where it connects to.
    expect(inspect(broker, { depth: Infinity })).toContain('amqp://parley:<redacted>@127.0.0.1:1/');
    expect(JSON.parse(JSON.stringify(broker.client.settings))).toMatchObject({
      urls: ['amqp://parley:<redacted>@127.0.0.1:1/'],
      safeUrls: ['amqp://parley:<redacted>@127.0.0.1:1/'],
      exchange: 'rasa-exchange',
    });

    const error = await broker.publish({ sender_id: 's', ...slotSet('a', 1) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(String(error)).toContain('amqp://parley:<redacted>@127.0.0.1:1/');
    for (const text of printedError(error)) expectNoPassword(text);
    await broker.close({ timeoutMs: 1_000 }).catch(() => {});
  });

  it('the password given as a key, and TLS passphrases, are hidden the same way', () => {
    const broker = amqpBroker({
      url: 'amqps://127.0.0.1:1',
      username: 'parley',
      password: PASSWORD,
      ...quiet,
    });
    for (const text of printed(broker)) expectNoPassword(text);
    expect(JSON.parse(JSON.stringify(broker.client.settings)).socketOptions).toEqual({});
  });
});

describe('Parley errors', () => {
  it('never carry a URL with its password, whoever built the message', () => {
    const error = new ConnectionError(
      'amqp',
      `cannot reach amqp://u:${PASSWORD}@host:5672/v and redis://:${PASSWORD}@r`,
    );
    expect(error.message).toBe(
      '[parley] [amqp] cannot reach amqp://u:<redacted>@host:5672/v and redis://:<redacted>@r',
    );
    for (const text of printedError(error)) expectNoPassword(text);
  });
});

describe('YAML errors', () => {
  it('name the position and the key, never the text: an unquoted password starting with * ! @ or `', () => {
    const yaml = (password: string) =>
      `event_broker:\n  type: pika\n  url: localhost\n  username: u\n  password: ${password}\n`;
    const cases: [string, string][] = [
      ['*Xy9!s3cr3t-pw', 'a value starting with * is read as an alias'],
      ['!Xy9!s3cr3t-pw', 'a value starting with ! is read as a YAML tag'],
      ['@Xy9!s3cr3t-pw', 'a plain value cannot start with @ or `'],
      ['`Xy9!s3cr3t-pw', 'a plain value cannot start with @ or `'],
      ['"Xy9\\qs3cr3t-pw"', 'an invalid escape sequence'],
      ['"Xy9!s3cr3t-pw', 'a closing quote'],
    ];
    for (const [password, what] of cases) {
      let error: unknown;
      try {
        parseEndpoints(yaml(password), 'endpoints.yml');
      } catch (caught) {
        error = caught;
      }
      expect(String(error), password).toMatch(
        /^ConfigError: \[parley\] endpoints\.yml: .*invalid YAML at line \d+, column \d+: /,
      );
      expect(String(error), password).toContain(what);
      for (const text of printedError(error)) expectNoPassword(text, 'Xy9!s3cr3t-pw');
    }
    const alias = (() => {
      try {
        parseEndpoints(yaml('*Xy9!s3cr3t-pw'), 'endpoints.yml');
      } catch (error) {
        return (error as Error).message;
      }
    })();
    expect(alias).toBe(
      '[parley] endpoints.yml: event_broker.password: invalid YAML at line 5, column 13: a value starting with * ' +
        "is read as an alias, and no anchor has that name: quote the value ('*…')",
    );
  });
});

/** RabbitMQ's guest/guest cannot show a leak (the password is the user name): a user of its own can. */
const USER = `parley-secrets-${process.pid}`;
const rabbit = new URL(AMQP_URL);
const local = ['127.0.0.1', 'localhost'].includes(rabbit.hostname);
function rabbitmqctl(...args: string[]): boolean {
  try {
    execFileSync('rabbitmqctl', args, { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}
let userAdded = false;

beforeAll(() => {
  if (!local) return;
  userAdded =
    (rabbitmqctl('add_user', USER, PASSWORD) || rabbitmqctl('change_password', USER, PASSWORD)) &&
    rabbitmqctl(
      'set_permissions',
      '-p',
      decodeURIComponent(rabbit.pathname.slice(1)) || '/',
      USER,
      '.*',
      '.*',
      '.*',
    );
}, 60_000);
afterAll(async () => {
  if (userAdded) rabbitmqctl('delete_user', USER);
  await deleteQueuesWithPrefix(prefix);
}, 60_000);

describe('a connected broker', () => {
  it('prints no password: inspect at any depth, JSON.stringify, its settings (needs rabbitmqctl on this machine to add a user)', async (context) => {
    if (!userAdded) context.skip();
    const broker = amqpBroker({
      url: `amqp://${USER}:${encodeURIComponent(PASSWORD)}@${rabbit.host}${rabbit.pathname}`,
      queues: [`${prefix}connected`],
      ...quiet,
    });
    try {
      await broker.publish({ sender_id: 's', ...slotSet('a', 1) });
      expect(broker.isReady()).toBe(true);
      for (const text of printed(broker)) expectNoPassword(text);
      // Into the live amqplib objects too (they are behind a getter).
      expectNoPassword(inspect(broker, { depth: Infinity, getters: true, showHidden: true }));
      expectNoPassword(JSON.stringify(await broker.health()));
    } finally {
      await broker.close({ timeoutMs: 2_000 });
    }
  });
});
