// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${VAR}` is endpoints.yml syntax here
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  type BrokerConfig,
  brokerConfig,
  ConfigError,
  loadEndpoints,
  type OptionReader,
  parseEndpoints,
  readOptions,
} from '../src/config/endpoints.js';

const fixture = (name: string): string =>
  fileURLToPath(
    new URL(
      name.startsWith('parley_')
        ? `./fixtures/endpoints/${name}`
        : `../../../fixtures/rasa/endpoints/${name}`,
      import.meta.url,
    ),
  );
const noEnv = { env: {} };

/** Runs `fn`, expecting a ConfigError, and returns it for closer inspection. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('Rasa fixtures', () => {
  it('event_broker_endpoint.yml: no type means pika, so amqp', async () => {
    const config = await loadEndpoints(fixture('event_broker_endpoint.yml'), noEnv);
    expect(config).toMatchObject({ type: 'amqp', source: fixture('event_broker_endpoint.yml') });
    expect(config?.typeAsWritten).toBeUndefined();
    expect(config?.options).toEqual({
      url: 'localhost',
      username: 'username',
      password: 'password',
      queue: 'queue',
    });
  });

  it('pika_endpoint.yml', async () => {
    const config = await loadEndpoints(fixture('pika_endpoint.yml'), noEnv);
    expect(config?.type).toBe('amqp');
    expect(config?.typeAsWritten).toBe('pika');
    expect(config?.options).toEqual({
      url: 'localhost',
      username: 'username',
      password: 'password',
      queues: ['queue-1'],
      exchange_name: 'exchange',
    });
  });

  it('kafka_plaintext_endpoint.yml keeps YAML types (True is a boolean)', async () => {
    const config = await loadEndpoints(fixture('kafka_plaintext_endpoint.yml'), noEnv);
    expect(config?.type).toBe('kafka');
    expect(config?.options).toEqual({
      url: 'localhost',
      partition_by_sender: true,
      sasl_username: 'username',
      sasl_password: 'password',
      topic: 'topic',
      security_protocol: 'SASL_PLAINTEXT',
    });
  });

  it.each([
    ['kafka_sasl_ssl_endpoint.yml', { sasl_username: 'username', security_protocol: 'SASL_SSL' }],
    ['kafka_ssl_endpoint.yml', { url: 'localhost', topic: 'topic', security_protocol: 'SSL' }],
  ])('%s', async (name, expected) => {
    const config = await loadEndpoints(fixture(name), noEnv);
    expect(config?.type).toBe('kafka');
    expect(config?.options).toMatchObject(expected);
    expect(config?.options).not.toHaveProperty('type');
  });

  it('sql_endpoint.yml', async () => {
    const config = await loadEndpoints(fixture('sql_endpoint.yml'), noEnv);
    expect(config).toMatchObject({
      type: 'sql',
      typeAsWritten: 'sql',
      options: { db: ':memory:', dialect: 'sqlite' },
    });
  });

  it('file_endpoint.yml', async () => {
    const config = await loadEndpoints(fixture('file_endpoint.yml'), noEnv);
    expect(config).toMatchObject({ type: 'file', options: { path: 'rasa_event.log' } });
  });
});

describe('environment variables', () => {
  const env = {
    BROKER_TYPE: 'RabbitMQ',
    RABBIT_HOST: 'mq.internal',
    RABBIT_PORT: '5672',
    RABBIT_USER: 'bot',
    QUEUE_PREFIX: 'rasa',
    CERT_DIR: '/etc/certs',
  };

  it('substitutes in nested lists and maps, quoted or plain, and values stay strings', async () => {
    const config = await loadEndpoints(fixture('parley_env_endpoint.yml'), { env });
    expect(config?.type).toBe('amqp');
    expect(config?.typeAsWritten).toBe('RabbitMQ');
    expect(config?.options).toEqual({
      url: 'amqp://mq.internal:5672/vhost',
      port: '5672',
      username: 'bot',
      password: 'pa$$word',
      queues: ['rasa-one', 'literal-two'],
      // `$CERT_DIR` alone has no `${`, so Rasa's resolver never sees it.
      ssl: { ca_file: '/etc/certs/ca.pem', options: ['$CERT_DIR', '/etc/certs'] },
      '${NOT_A_KEY_VAR}': 'kept',
      retries: 3,
      enabled: true,
    });
  });

  it('expands bare $X inside a scalar that also holds ${...}', () => {
    const config = parseEndpoints('event_broker:\n  url: ${SCHEME}://$HOST:${PORT}\n', 'e.yml', {
      env: { SCHEME: 'amqp', HOST: 'h', PORT: '1' },
    });
    expect(config?.options.url).toBe('amqp://h:1');
  });

  it('does not re-expand a substituted value that contains $', () => {
    const config = parseEndpoints('event_broker:\n  password: ${PW}\n', 'e.yml', {
      env: { PW: '$ecret${X}' },
    });
    expect(config?.options.password).toBe('$ecret${X}');
  });

  it('an unset variable names the variable, the file and the key, never the value', async () => {
    const path = fixture('parley_missing_var_endpoint.yml');
    await expect(loadEndpoints(path, noEnv)).rejects.toThrow(
      `[parley] ${path}: event_broker.password: environment variable PARLEY_TEST_UNSET_PASSWORD not set`,
    );
    const error = configError(() =>
      parseEndpoints('event_broker:\n  q:\n    - a\n    - b: x-${A}-$B\n', 'e.yml', noEnv),
    );
    expect(error.message).toBe('[parley] e.yml: event_broker.q[1].b: environment variables A, B not set');
    expect(error).toMatchObject({ source: 'e.yml', key: 'event_broker.q[1].b' });
  });

  it('reports every unset variable at once, each with the keys that use it', () => {
    const yaml =
      'event_broker:\n  type: pika\n  url: ${RABBIT_HOST}\n  username: ${RABBIT_USER}\n' +
      '  password: ${RABBIT_PASS}\n  queues:\n    - ${QUEUE}-${RABBIT_USER}\n  port: ${RABBIT_PORT}\n';
    const error = configError(() => parseEndpoints(yaml, 'endpoints.yml', { env: { RABBIT_PORT: '5672' } }));
    expect(error.message).toBe(
      '[parley] endpoints.yml: environment variables not set: RABBIT_HOST (event_broker.url), ' +
        'RABBIT_USER (event_broker.username, event_broker.queues[0]), RABBIT_PASS (event_broker.password), ' +
        'QUEUE (event_broker.queues[0])',
    );
    expect(error.key).toBeUndefined();
    // In code too, and the type is read only once every variable is there.
    expect(() => brokerConfig({ type: '${T}', url: '${U}' }, '<inline>', noEnv)).toThrow(
      '[parley] <inline>: environment variables not set: T (event_broker.type), U (event_broker.url)',
    );
  });

  it('an unexpanded bare $X next to ${...} is an error too', () => {
    expect(() =>
      parseEndpoints('event_broker:\n  password: pa$$word${X}\n', 'e.yml', { env: { X: '1' } }),
    ).toThrow('event_broker.password: environment variable word not set');
    expect(() => parseEndpoints('event_broker:\n  a: ${}\n', 'e.yml', noEnv)).toThrow(
      'environment variable ${} not set',
    );
  });

  it('keeps a lone $ and an empty value, as expandvars does', () => {
    const config = parseEndpoints('event_broker:\n  a: $ ${X}\n  b: x${E}y\n', 'e.yml', {
      env: { X: '1', E: '' },
    });
    expect(config?.options).toEqual({ a: '$ 1', b: 'xy' });
  });

  it('brokerConfig substitutes too, and defaults to process.env', () => {
    process.env.PARLEY_TEST_HOST = 'from-process';
    try {
      expect(brokerConfig({ type: 'kafka', url: '${PARLEY_TEST_HOST}' }).options.url).toBe('from-process');
    } finally {
      delete process.env.PARLEY_TEST_HOST;
    }
  });
});

describe('types', () => {
  const typeOf = (type: string): string => brokerConfig({ type }, '<inline>', noEnv).type;

  it.each([
    ['pika', 'amqp'],
    ['RabbitMQ', 'amqp'],
    ['AMQP', 'amqp'],
    ['Kafka', 'kafka'],
    ['SQL', 'sql'],
    ['File', 'file'],
    ['memory', 'memory'],
    ['SQS', 'sqs'],
    ['redis', 'redis'],
  ])('%s → %s', (type, expected) => expect(typeOf(type)).toBe(expected));

  it.each(['my_pkg.brokers.MyBroker', '@acme/parley-nats', './local/adapter.js'])(
    'keeps %s verbatim',
    (type) => expect(typeOf(type)).toBe(type),
  );

  it('reads the custom type from a file', async () => {
    const config = await loadEndpoints(fixture('parley_custom_endpoint.yml'), noEnv);
    expect(config).toMatchObject({ type: 'my_pkg.brokers.MyBroker', options: { subject: 'rasa.events' } });
  });

  it('null type means pika', () => {
    expect(parseEndpoints('event_broker:\n  type:\n  url: x\n', 'e.yml', noEnv)).toMatchObject({
      type: 'amqp',
      options: { url: 'x' },
    });
  });

  it('accepts the legacy store_type, which wins over type like in Rasa', () => {
    expect(brokerConfig({ store_type: 'Kafka', url: 'x' }, 'e.yml', noEnv)).toMatchObject({
      type: 'kafka',
      typeAsWritten: 'Kafka',
      options: { url: 'x' },
    });
    const both = brokerConfig({ store_type: 'sql', type: 'kafka' }, 'e.yml', noEnv);
    expect(both).toMatchObject({ type: 'sql', options: {} });
  });

  it('an unknown type names the file, the value and the accepted types', () => {
    const error = configError(() => parseEndpoints('event_broker:\n  type: nats\n', 'endpoints.yml', noEnv));
    expect(error.message).toMatch(
      /^\[parley\] endpoints\.yml: event_broker\.type: unknown broker type "nats"/,
    );
    expect(error.message).toContain('pika, rabbitmq, amqp, kafka, file, sql, memory, sqs, redis');
    expect(() => brokerConfig({ type: 42 }, 'e.yml', noEnv)).toThrow(
      'event_broker.type: expected a string, found 42',
    );
    expect(() => brokerConfig({ type: 'rabitmq' }, 'e.yml', noEnv)).toThrow(
      'event_broker.type: unknown broker type "rabitmq" (did you mean "rabbitmq"?); expected one of pika,',
    );
    expect(() => brokerConfig({ type: 'kafak' }, 'e.yml', noEnv)).toThrow('(did you mean "kafka"?)');
  });
});

describe('files and sections', () => {
  it('a missing section, an empty section or an empty file is undefined', async () => {
    expect(await loadEndpoints(fixture('parley_no_broker_endpoint.yml'), noEnv)).toBeUndefined();
    expect(parseEndpoints('event_broker:\n', 'e.yml')).toBeUndefined();
    expect(parseEndpoints('# nothing\n', 'e.yml')).toBeUndefined();
  });

  it('reads another section when asked', async () => {
    const config = await loadEndpoints(fixture('parley_no_broker_endpoint.yml'), {
      section: 'tracker_store',
    });
    expect(config).toMatchObject({ type: 'redis', section: 'tracker_store', options: { url: 'localhost' } });
  });

  it('an unreadable file is a ConfigError naming it', async () => {
    await expect(loadEndpoints(fixture('nope.yml'))).rejects.toThrow(
      /^\[parley\] .*nope\.yml: cannot read file/,
    );
  });

  it('invalid YAML reports line and column but not the offending text', async () => {
    const path = fixture('parley_invalid_endpoint.yml');
    await expect(loadEndpoints(path)).rejects.toThrow(
      /^\[parley\] .*: invalid YAML at line \d+, column \d+: /,
    );
    const error = configError(() =>
      parseEndpoints('event_broker:\n  password: hunter2\n  password: x\n', 'e.yml'),
    );
    expect(error.message).toMatch(/line 3, column 3/);
    expect(error.message).not.toContain('hunter2');
  });

  it('YAML errors say what is wrong in their own words, with the key, never quoting the text', () => {
    const message = (yaml: string) => configError(() => parseEndpoints(yaml, 'e.yml', noEnv)).message;
    // The YAML library would say `Unresolved alias (the anchor must be set before the alias): Xy9!secret`.
    expect(message('event_broker:\n  url: x\n  password: *Xy9!secret\n')).toBe(
      '[parley] e.yml: event_broker.password: invalid YAML at line 3, column 13: a value starting with * is read ' +
        "as an alias, and no anchor has that name: quote the value ('*…')",
    );
    // An unknown tag is an error, as in Rasa (ruamel), not a warning and a silently dropped value.
    expect(message('event_broker:\n  password: !Xy9secret\n')).toBe(
      '[parley] e.yml: event_broker.password: invalid YAML at line 2, column 13: a value starting with ! is read ' +
        "as a YAML tag: quote the value ('!…')",
    );
    expect(message('event_broker:\n  queues:\n    - a\n    - *Xy9secret\n')).toMatch(
      /^\[parley\] e\.yml: event_broker\.queues\[1\]: invalid YAML at line 4, column 7: /,
    );
    expect(message('event_broker:\n  password: "Xy9\\qsecret"\n')).toContain('an invalid escape sequence');
    for (const yaml of ['a: *Xy9secret\n', 'event_broker:\n  password: @Xy9secret\n']) {
      expect(message(yaml)).not.toContain('Xy9');
    }
    // Anchors and aliases that resolve still work.
    expect(parseEndpoints('p: &pw s3\nevent_broker:\n  password: *pw\n', 'e.yml')?.options).toEqual({
      password: 's3',
    });
  });

  it('a section or a file that is not a mapping is an error', () => {
    expect(() => parseEndpoints('event_broker: [a, b]\n', 'e.yml')).toThrow(
      '[parley] e.yml: event_broker: expected a mapping of broker options, found a list',
    );
    expect(() => parseEndpoints('event_broker: kafka\n', 'e.yml')).toThrow('found "kafka"');
    expect(() => parseEndpoints('- a\n', 'e.yml')).toThrow('[parley] e.yml: expected a mapping');
  });

  it('honours merge keys, like ruamel', () => {
    const text = 'base: &b {url: x, topic: t}\nevent_broker:\n  <<: *b\n  type: kafka\n';
    expect(parseEndpoints(text, 'e.yml')?.options).toEqual({ url: 'x', topic: 't' });
  });
});

describe('readOptions', () => {
  const config = (options: Record<string, unknown>): BrokerConfig => ({
    type: 'amqp',
    options,
    source: 'endpoints.yml',
  });

  it('converts strings the way Rasa brokers do', () => {
    const reader = readOptions(
      config({
        port: '5672',
        big: '1_000',
        ratio: '0.5',
        ssl: 'True',
        off: 'no',
        one: 1,
        queues: 'one',
        n: null,
      }),
      'amqp',
    );
    expect(reader.integer('port')).toBe(5672);
    expect(reader.integer('big', { min: 1 })).toBe(1000);
    expect(reader.number('ratio')).toBe(0.5);
    expect(reader.boolean('ssl')).toBe(true);
    expect(reader.boolean('off')).toBe(false);
    expect(reader.boolean('one')).toBe(true);
    expect(reader.stringList('queues')).toEqual(['one']);
    expect(reader.string('n', 'fallback')).toBe('fallback');
    expect(reader.integer('absent', 10, { min: 1 })).toBe(10);
    expect(reader.number('absent2')).toBeUndefined();
    expect(() => reader.done()).not.toThrow();
  });

  type Read = (reader: OptionReader) => unknown;
  it.each<[Record<string, unknown>, Read, string]>([
    [{ port: 'abc' }, (r) => r.integer('port'), 'port: expected an integer, found "abc"'],
    [{ port: 5.5 }, (r) => r.integer('port'), 'port: expected an integer, found 5.5'],
    [
      { port: '0' },
      (r) => r.integer('port', { min: 1, max: 65535 }),
      'port: expected an integer between 1 and 65535, found "0"',
    ],
    [
      { port: 70000 },
      (r) => r.integer('port', 1, { max: 65535 }),
      'port: expected an integer <= 65535, found 70000',
    ],
    [{ ratio: 'x' }, (r) => r.number('ratio', 1), 'ratio: expected a number, found "x"'],
    [{ ssl: 'maybe' }, (r) => r.boolean('ssl'), 'ssl: expected a boolean, found "maybe"'],
    [{ topic: 123 }, (r) => r.string('topic'), 'topic: expected a string, found 123'],
    [{ queues: ['a', 2] }, (r) => r.stringList('queues'), 'queues[1]: expected a string, found 2'],
    [
      { queues: { a: 1 } },
      (r) => r.stringList('queues'),
      'queues: expected a list of strings, found a mapping',
    ],
  ])('rejects %j', (options, read, message) => {
    const error = configError(() => read(readOptions(config(options), 'amqp')));
    expect(error.message).toBe(`[parley] endpoints.yml: event_broker.${message}`);
  });

  it('never prints secrets, nor URL credentials', () => {
    const reader = readOptions(
      config({ sasl_password: 12, api_key: 'k', url: 'amqp://u:p@ss@host/v', other: [] }),
      'x',
    );
    expect(() => reader.string('sasl_password')).toThrow(
      'event_broker.sasl_password: expected a string, found <redacted>',
    );
    expect(() => reader.integer('api_key')).toThrow('found <redacted>');
    expect(() => reader.integer('url')).toThrow('found "amqp://<redacted>@host/v"');
    // Every Parley error, whoever wrote its message, loses URL passwords (its stack too).
    const error = new ConfigError('e.yml', 'event_broker.url', 'cannot use amqps://u:hunter2@host:5671/v');
    expect(error.message).toBe(
      '[parley] e.yml: event_broker.url: cannot use amqps://u:<redacted>@host:5671/v',
    );
    expect(error.stack).not.toContain('hunter2');
  });

  it('done() lists unknown keys with the known ones', () => {
    const reader = readOptions(config({ url: 'x', foo: 1, bar: 2 }), 'amqp');
    reader.string('url');
    reader.integer('port');
    const error = configError(() => reader.done({ warnOnly: { queue: 'unused' } }));
    expect(error.message).toBe(
      '[parley] endpoints.yml: event_broker: unknown keys "foo", "bar" for the amqp broker; ' +
        'known keys: port, queue, url',
    );
  });

  it('done() suggests the known key an unknown one most likely meant', () => {
    const reader = readOptions(
      config({ url: 'x', exchange: 'e', destnation: 'd', Queues: ['q'], prefetch_count: 1, zzz: 1 }),
      'amqp',
    );
    for (const key of ['url', 'exchange_name', 'destination', 'queues', 'prefetch']) reader.string(key);
    expect(() => reader.done()).toThrow(
      '[parley] endpoints.yml: event_broker: unknown keys "exchange" (did you mean "exchange_name"?), ' +
        '"destnation" (did you mean "destination"?), "Queues" (did you mean "queues"?), ' +
        '"prefetch_count" (did you mean "prefetch"?), "zzz" for the amqp broker; ' +
        'known keys: destination, exchange_name, prefetch, queues, url',
    );
  });

  it('oneOf() takes exact values only, and suggests the closest', () => {
    const reader = readOptions(config({ a: 'python', b: 'pyhton', c: 'Compact', d: 'xml', e: 3 }), 'x');
    const formats = ['python', 'compact'] as const;
    expect(reader.oneOf('a', formats)).toBe('python');
    expect(reader.oneOf('missing', formats, 'compact')).toBe('compact');
    expect(() => reader.oneOf('b', formats)).toThrow(
      'event_broker.b: expected "python" or "compact", found "pyhton" (did you mean "python"?)',
    );
    expect(() => reader.oneOf('c', formats)).toThrow('found "Compact" (did you mean "compact"?)');
    expect(() => reader.oneOf('d', formats)).toThrow(/found "xml"$/);
    expect(() => reader.oneOf('e', ['one', 'two', 'three'])).toThrow(
      'expected one of "one", "two" or "three", found 3',
    );
  });

  it('done() warns once for each warnOnly key present, and not for those read or absent', () => {
    const reader = readOptions(
      config({ url: 'x', raise_on_failure: true, partition_by_sender: true }),
      'kafka',
    );
    reader.string('url');
    reader.boolean('partition_by_sender');
    const warnings: string[] = [];
    reader.done({
      warnOnly: { raise_on_failure: 'publishing errors always reject', partition_by_sender: 'x', loop: 'y' },
      warn: (message) => warnings.push(message),
    });
    expect(warnings).toEqual([
      '[parley] endpoints.yml: event_broker.raise_on_failure: ignored by the kafka broker: ' +
        'publishing errors always reject',
    ]);
  });
});
