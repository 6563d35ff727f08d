/**
 * What only Kafka does: Rasa's keys and their errors, the bytes, key and header on the wire (read back with kcat,
 * an independent librdkafka client), a consumer group reading them, dead letters on their topic, and
 * interop with python3-confluent-kafka, Rasa's own client.
 */
import { spawnSync } from 'node:child_process';
import {
  type AnyEvent,
  type Broker,
  type BrokerConfig,
  ConfigError,
  type EventEnvelope,
  encodeEvent,
  userUttered,
} from '@parley/core';
import { afterAll, describe, expect, it } from 'vitest';
import { fromEndpointConfig, kafkaBroker, mskIamTokenProvider, resolveKafkaSettings } from '../src/index.js';
import { rawKafka, readTopic, startCluster, testKeys } from './support.js';

const cluster = await startCluster();
const run = `t${process.pid}-${Date.now().toString(36)}`;
let n = 0;
const fresh = (what: string) => `${run}-${what}-${n++}`;
const open: Broker[] = [];
const make = (topic: string, extra: Parameters<typeof kafkaBroker>[0] = {}) => {
  const broker = kafkaBroker({ ...testKeys(cluster), topic, onWarning: () => {}, ...extra });
  open.push(broker);
  return broker;
};
const event = (i: number, sender = `${run}-s0`): EventEnvelope<AnyEvent> =>
  ({
    sender_id: sender,
    ...userUttered(`hello ${i}`),
    timestamp: 1_700_000_000 + i,
  }) as EventEnvelope<AnyEvent>;

async function waitFor(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

afterAll(async () => {
  await Promise.allSettled(open.map((b) => b.close({ timeoutMs: 5_000 })));
  await cluster.stop();
});

const config = (options: Record<string, unknown>): BrokerConfig =>
  ({ source: 'endpoints.yml', type: 'kafka', options }) as BrokerConfig;

describe('config: Rasa keys', () => {
  it("keeps Rasa's defaults", () => {
    const s = resolveKafkaSettings(
      config({ url: 'k1:9092,k2:9092', sasl_username: 'u', sasl_password: 'p' }),
    );
    expect(s.brokers).toEqual(['k1:9092', 'k2:9092']);
    expect(s.topic).toBe('rasa_core_events');
    expect(s.partitionBySender).toBe(false);
    expect(s.securityProtocol).toBe('SASL_PLAINTEXT');
    expect(s.sasl).toEqual({ mechanism: 'plain', username: 'u', password: 'p' });
    expect(s.deadLetterTopic).toBe('rasa_core_events.dead-letter');
    expect(s.group).toBe('parley');
    expect(s.idempotent).toBe(true);
  });

  it('takes url as a list', () => {
    const s = resolveKafkaSettings(config({ url: ['k1:9092', 'k2:9093'], security_protocol: 'plaintext' }));
    expect(s.brokers).toEqual(['k1:9092', 'k2:9093']);
    expect(s.securityProtocol).toBe('PLAINTEXT');
  });

  it("says PLAINTEXT must be set when Rasa's default SASL_PLAINTEXT has no credentials", () => {
    expect(() => resolveKafkaSettings(config({ url: 'k:9092' }))).toThrow(
      /sasl_username.*SASL_PLAINTEXT \(Rasa's default\).*security_protocol: PLAINTEXT/,
    );
  });

  it('names the key and the allowed values for invalid ones', () => {
    expect(() => resolveKafkaSettings(config({ url: 'k:9092', security_protocol: 'TLS' }))).toThrow(
      /security_protocol.*PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL/,
    );
    expect(() =>
      resolveKafkaSettings(
        config({ url: 'k:9092', sasl_mechanism: 'MD5', sasl_username: 'u', sasl_password: 'p' }),
      ),
    ).toThrow(/sasl_mechanism.*PLAIN, SCRAM-SHA-256, SCRAM-SHA-512/);
    expect(() =>
      resolveKafkaSettings(config({ url: 'k:9092', topci: 'x', security_protocol: 'PLAINTEXT' })),
    ).toThrow(ConfigError);
    expect(() => resolveKafkaSettings(config({ security_protocol: 'PLAINTEXT' }))).toThrow(/url.*required/);
    expect(() => resolveKafkaSettings(config({ url: 'http://k', security_protocol: 'PLAINTEXT' }))).toThrow(
      /url.*host:port/,
    );
  });

  it('accepts SCRAM in any case; GSSAPI is not supported', () => {
    const creds = { url: 'k:9092', sasl_username: 'u', sasl_password: 'p' };
    expect(resolveKafkaSettings(config({ ...creds, sasl_mechanism: 'scram-sha-512' })).sasl?.mechanism).toBe(
      'scram-sha-512',
    );
    expect(() => resolveKafkaSettings(config({ ...creds, sasl_mechanism: 'GSSAPI' }))).toThrow(
      /GSSAPI.*not supported/,
    );
  });

  it('OAUTHBEARER: tokens from code, or from AWS MSK IAM when Rasa Pro switches it on', () => {
    const oauth = { url: 'k:9098', security_protocol: 'SASL_SSL', sasl_mechanism: 'oauthbearer' };
    expect(resolveKafkaSettings(config(oauth), { env: {} }).sasl).toEqual({
      mechanism: 'oauthbearer',
      source: 'code',
    });
    // From endpoints.yml alone there is no token to send: say both ways to get one.
    expect(() => fromEndpointConfig(config(oauth))).toThrow(
      /OAUTHBEARER needs tokens: pass oauthBearerProvider.*KAFKA_MSK_AWS_IAM_ENABLED=true and AWS_DEFAULT_REGION/,
    );
    const withProvider = kafkaBroker({ ...oauth, oauthBearerProvider: async () => ({ value: 't' }) });
    open.push(withProvider);
    expect(withProvider.name).toBe('kafka');

    const msk = { KAFKA_MSK_AWS_IAM_ENABLED: 'true', AWS_DEFAULT_REGION: 'eu-central-1' };
    expect(resolveKafkaSettings(config(oauth), { env: msk }).sasl).toEqual({
      mechanism: 'oauthbearer',
      source: 'aws-msk-iam',
      region: 'eu-central-1',
    });
    expect(() => resolveKafkaSettings(config(oauth), { env: { KAFKA_MSK_AWS_IAM_ENABLED: 'true' } })).toThrow(
      /set AWS_DEFAULT_REGION/,
    );
  });

  it('AWS MSK IAM: a SigV4-signed kafka-cluster:Connect token from the default credential chain', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: 'AKIDPARLEYTEST',
      AWS_SECRET_ACCESS_KEY: 'parley-test-secret',
    });
    try {
      const { value } = await mskIamTokenProvider('eu-central-1')();
      const url = new URL(Buffer.from(value, 'base64url').toString('utf8'));
      expect(url.host).toBe('kafka.eu-central-1.amazonaws.com');
      expect(url.searchParams.get('Action')).toBe('kafka-cluster:Connect');
      expect(url.searchParams.get('X-Amz-Credential')).toMatch(
        /^AKIDPARLEYTEST\/\d{8}\/eu-central-1\/kafka-cluster\//,
      );
      expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect(value).not.toContain('parley-test-secret');
    } finally {
      process.env = saved;
    }
  });

  it('takes the Rasa 1.x names with a warning, and warns for Rasa Pro keys', () => {
    const warnings: string[] = [];
    const s = resolveKafkaSettings(
      config({
        url: 'k:9092',
        sasl_plain_username: 'u',
        sasl_plain_password: 'p',
        stream_pii: false,
        anonymization_topics: ['a'],
      }),
      { warn: (m) => warnings.push(m) },
    );
    expect(s.sasl).toMatchObject({ username: 'u', password: 'p' });
    expect(warnings.join('\n')).toMatch(/sasl_plain_username is the Rasa 1.x name/);
    expect(warnings.join('\n')).toMatch(/stream_pii: ignored/);
    expect(warnings.join('\n')).toMatch(/anonymization_topics: ignored/);
    expect(warnings.every((w) => w.startsWith('[parley] [kafka]'))).toBe(true);
  });

  it('never prints the password', () => {
    try {
      resolveKafkaSettings(config({ url: 'k:9092', sasl_password: 'hunter2', sasl_username: 7 }));
    } catch (error) {
      expect(String(error)).not.toContain('hunter2');
    }
  });

  it('is what the registry builds for type: kafka (fromEndpointConfig)', () => {
    const broker = fromEndpointConfig({
      source: 'endpoints.yml',
      type: 'kafka',
      options: { ...testKeys(cluster), topic: fresh('create') },
    } as BrokerConfig);
    open.push(broker);
    expect(broker.name).toBe('kafka');
    expect(broker.capabilities.ordering).toBe('none');
  });
});

describe('wire: what Rasa writes', () => {
  it('value = the python-format JSON, key = sender_id with partition_by_sender, header RASA_ENVIRONMENT', async () => {
    const topic = fresh('wire');
    const broker = make(topic, { partition_by_sender: true });
    expect(broker.capabilities.ordering).toBe('group');
    const envelope = event(1, 'conv-ä');
    await broker.publish(envelope);
    const [message, ...rest] = readTopic(cluster, topic);
    expect(rest).toEqual([]);
    expect(message?.payload).toBe(Buffer.from(encodeEvent(envelope, { format: 'python' })).toString('utf8'));
    expect(message?.key).toBe('conv-ä');
    expect(message?.headers).toEqual({
      RASA_ENVIRONMENT: process.env.RASA_ENVIRONMENT ?? 'RASA_ENVIRONMENT_NOT_SET',
    });
  });

  it('sends no key without partition_by_sender; a batch keeps its order within its partition', async () => {
    const topic = fresh('batch');
    const broker = make(topic, { partition_by_sender: true });
    await Promise.all(Array.from({ length: 200 }, (_, i) => broker.publish(event(i, `s${i % 3}`))));
    const read = readTopic(cluster, topic);
    expect(read).toHaveLength(200);
    for (const sender of ['s0', 's1', 's2']) {
      const texts = read.filter((m) => m.key === sender).map((m) => JSON.parse(m.payload!).text as string);
      const expected = Array.from({ length: 200 }, (_, i) => i)
        .filter((i) => i % 3 === Number(sender.slice(1)))
        .map((i) => `hello ${i}`);
      expect(texts).toEqual(expected);
    }
    const unkeyed = fresh('nokey');
    await make(unkeyed).publish(event(0));
    expect(readTopic(cluster, unkeyed)[0]?.key).toBeNull();
  });

  it('refuses an event over max_message_bytes, naming the limit', async () => {
    const broker = make(fresh('big'), { max_message_bytes: 1_000 });
    await expect(broker.publish(event(0, 'x'.repeat(2_000)))).rejects.toThrow(/1000|1,000/);
  });

  it("on_message_too_large: error_event sends Rasa Pro's error event in its place, with a warning", async () => {
    const topic = fresh('big-error');
    const warnings: string[] = [];
    const broker = make(topic, {
      max_message_bytes: 1_000,
      on_message_too_large: 'error_event',
      partition_by_sender: true,
      onWarning: (m) => warnings.push(m),
    });
    const sender = `${run}-big`;
    await broker.publish({ ...event(0, sender), text: 'x'.repeat(2_000) } as EventEnvelope<AnyEvent>);
    await broker.publish(event(1, sender));
    const messages = readTopic(cluster, topic);
    expect(messages.map((m) => m.key)).toEqual([sender, sender]);
    const replaced = JSON.parse(messages[0]!.payload!);
    expect(Object.keys(replaced)).toEqual(['event', 'timestamp', 'metadata', 'error_code', 'sender_id']);
    expect(replaced).toMatchObject({
      event: 'error',
      error_code: 10,
      sender_id: sender,
      metadata: { error_source: 'KafkaEventBroker' },
    });
    expect(replaced.metadata.error_msg).toMatch(
      /^Skipping message for event type 'user' because of Kafka message size limit: .*over max_message_bytes \(1000\)/,
    );
    expect(JSON.parse(messages[1]!.payload!).text).toBe('hello 1');
    expect(warnings.join('\n')).toMatch(/event user of sender .* sent as an error event in its place/);
  });
});

describe('headers of consumed messages', () => {
  it('messages with the same single header share one frozen object; others get their own', async () => {
    const { headersOf } = await import('../src/dead-letters.js');
    const env = (value: string) => ({ RASA_ENVIRONMENT: Buffer.from(value) });
    const a = headersOf(env('production'));
    expect(a).toEqual({ RASA_ENVIRONMENT: 'production' });
    expect(Object.isFrozen(a)).toBe(true);
    expect(headersOf(env('production'))).toBe(a);
    expect(headersOf(env('staging'))).toEqual({ RASA_ENVIRONMENT: 'staging' });
    expect(
      headersOf({ RASA_ENVIRONMENT: Buffer.from('x'), trace: [Buffer.from('1'), Buffer.from('2')] }),
    ).toEqual({
      RASA_ENVIRONMENT: 'x',
      trace: '2',
    });
    expect(headersOf({ gone: undefined, only: Buffer.from('v') })).toEqual({ only: 'v' });
    expect(headersOf(undefined)).toEqual({});
  });
});

describe('consumer group', () => {
  it('reads from the beginning for a new group, commits, and a second subscription of the group resumes', async () => {
    const topic = fresh('consume');
    const broker = make(topic, { partition_by_sender: true });
    for (let i = 0; i < 20; i++) await broker.publish(event(i, `s${i % 4}`));
    const seen: string[] = [];
    const group = fresh('g');
    const sub = broker.subscribe(
      (e) => {
        seen.push((e as { text?: string }).text ?? '');
      },
      { group, from: 'beginning' },
    );
    await sub.ready;
    await waitFor(() => seen.length >= 20, '20 events');
    await sub.close();
    expect(new Set(seen).size).toBe(20);
    for (let i = 20; i < 25; i++) await broker.publish(event(i, `s${i % 4}`));
    const later: string[] = [];
    const again = broker.subscribe(
      (e) => {
        later.push((e as { text?: string }).text ?? '');
      },
      { group, from: 'beginning' },
    );
    await again.ready;
    await waitFor(() => later.length >= 5, 'the 5 newer events');
    await new Promise((r) => setTimeout(r, 500));
    await again.close();
    expect(later.sort()).toEqual(['hello 20', 'hello 21', 'hello 22', 'hello 23', 'hello 24']);
  });

  it('a new group loses nothing of the partitions a member that never reads them held first', async () => {
    const topic = fresh('idle-member');
    const group = fresh('g');
    const publisher = make(topic, { partition_by_sender: true });
    await publisher.ready();
    await publisher.publish(event(-1, `${run}-warm`)); // the topic exists (auto-created) before anyone joins
    // A member that joins and reads nothing: what a join that failed halfway leaves until its session times out.
    const idle = rawKafka(cluster).consumer({
      groupId: group,
      sessionTimeout: 6_000,
      heartbeatInterval: 500,
    });
    const idleJoined = new Promise<void>((resolve) => idle.on(idle.events.GROUP_JOIN, () => resolve()));
    await idle.connect();
    await idle.subscribe({ topic });
    await idle.run({ eachMessage: async () => {} });
    await idleJoined;
    idle.pause([{ topic }]);
    const seen = new Set<string>();
    const sub = make(topic).subscribe(
      (e) => {
        seen.add((e as { text?: string }).text ?? '');
      },
      { group, ordering: 'none' },
    );
    await sub.ready;
    // Keyed over every partition: the idle member holds some of them.
    const total = 40;
    for (let i = 0; i < total; i++) await publisher.publish(event(i, `${run}-idle${i % 8}`));
    await waitFor(() => seen.size > 0, 'events of the partitions the subscription was given');
    expect(seen.size, 'the idle member held some partitions').toBeLessThan(total);
    await idle.disconnect(); // its partitions move to the subscription
    await waitFor(() => seen.size >= total, `${total} events (${seen.size} so far)`, 60_000);
    await sub.close();
  }, 90_000);

  it('an ephemeral group (parley tail) reads everything and commits nothing, from the beginning or the end', async () => {
    const topic = fresh('ephemeral');
    const broker = make(topic, { partition_by_sender: true });
    for (let i = 0; i < 8; i++) await broker.publish(event(i, `s${i % 4}`));
    const fromBeginning = fresh('g');
    const seen: string[] = [];
    const sub = broker.subscribe((e) => void seen.push((e as { text?: string }).text ?? ''), {
      group: fromBeginning,
      from: 'beginning',
      ephemeral: true,
    });
    await sub.ready;
    await waitFor(() => seen.length >= 8, '8 events');
    const fromEnd = fresh('g');
    const later: string[] = [];
    const tail = broker.subscribe((e) => void later.push((e as { text?: string }).text ?? ''), {
      group: fromEnd,
      ephemeral: true,
    });
    await tail.ready;
    for (let i = 8; i < 12; i++) await broker.publish(event(i, `s${i % 4}`));
    await waitFor(() => later.length >= 4, 'the 4 newer events');
    await new Promise((r) => setTimeout(r, 500));
    await sub.close();
    await tail.close();
    expect(later.sort()).toEqual(['hello 10', 'hello 11', 'hello 8', 'hello 9']);
    const admin = rawKafka(cluster).admin();
    await admin.connect();
    try {
      for (const groupId of [fromBeginning, fromEnd]) {
        const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
        expect(offsets?.partitions.map((p) => p.offset).filter((o) => o !== '-1')).toEqual([]);
      }
    } finally {
      await admin.disconnect();
    }
  });

  it('dead-letters a poison event to <topic>.dead-letter with the dead-letter headers', async () => {
    const topic = fresh('poison');
    const broker = make(topic);
    const group = fresh('g');
    const sub = broker.subscribe(
      () => {
        throw new Error('poison');
      },
      { group, maxAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
    );
    await sub.ready;
    await broker.publish(event(0));
    await waitFor(() => sub.stats.deadLettered === 1, 'the dead letter');
    await sub.close();
    const [letter] = readTopic(cluster, `${topic}.dead-letter`);
    expect(letter?.headers['x-parley-group']).toBe(group);
    expect(letter?.headers.RASA_ENVIRONMENT).toBeDefined();
    expect(JSON.parse(letter!.payload!).text).toBe('hello 0');
  });

  it('lists dead letters from the dead-letter topic and redrives them to their group only, once', async () => {
    const topic = fresh('redrive');
    const broker = make(topic, { partition_by_sender: true });
    const [group, other] = [fresh('g'), fresh('other')];
    let healed = false;
    const handled: string[] = [];
    const othersSaw: string[] = [];
    const sub = broker.subscribe(
      (e) => {
        if (!healed) throw new Error(`poison ${(e as { text?: string }).text}`);
        handled.push((e as { text?: string }).text ?? '');
      },
      { group, maxAttempts: 1 },
    );
    const bystander = broker.subscribe((e) => void othersSaw.push((e as { text?: string }).text ?? ''), {
      group: other,
    });
    await Promise.all([sub.ready, bystander.ready]);
    for (let i = 0; i < 3; i++) await broker.publish(event(i, `${run}-r${i}`));
    await waitFor(() => sub.stats.deadLettered === 3 && othersSaw.length === 3, '3 dead letters');

    const letters = await broker.deadLetters(group);
    expect(letters.map((l) => JSON.parse(Buffer.from(l.body).toString()).text).sort()).toEqual([
      'hello 0',
      'hello 1',
      'hello 2',
    ]);
    expect(letters.every((l) => /^\d+:\d+$/.test(l.id) && l.reason === 'handler-failed')).toBe(true);
    expect(letters[0]!.error.message).toMatch(/^poison hello/);
    expect(await broker.deadLetters(other)).toEqual([]);

    healed = true;
    expect(await broker.redrive({ group, ids: [letters[0]!.id] })).toEqual({ redriven: 1 });
    await waitFor(() => handled.length === 1, 'the redriven event handled');
    expect((await broker.deadLetters(group)).map((l) => l.id)).toEqual(letters.slice(1).map((l) => l.id));
    expect(await broker.redrive({ group })).toEqual({ redriven: 2 });
    await waitFor(() => handled.length === 3, 'every redriven event handled');
    expect(await broker.deadLetters(group)).toEqual([]);
    await new Promise((r) => setTimeout(r, 1_000));
    // Each once, and only by the group they were redriven to.
    expect(handled.sort()).toEqual(['hello 0', 'hello 1', 'hello 2']);
    expect(othersSaw.sort()).toEqual(['hello 0', 'hello 1', 'hello 2']);
    await Promise.all([sub.close(), bystander.close()]);
  });
});

describe('rebalances', () => {
  it('a second and a third consumer join mid-stream and one leaves: nothing lost, each sender in order', async () => {
    const topic = fresh('rebalance');
    const group = fresh('g');
    const publisher = make(topic, { partition_by_sender: true });
    const first = new Map<string, number>(); // event key -> handlings
    const order = new Map<string, number[]>(); // sender -> seq of each first handling
    const handler = (e: EventEnvelope<AnyEvent>) => {
      const key = `${e.sender_id}#${(e as { text?: string }).text}`;
      const seen = first.get(key) ?? 0;
      first.set(key, seen + 1);
      if (seen === 0) {
        const seq = Number(((e as { text?: string }).text ?? '').split(' ')[1]);
        order.set(e.sender_id, [...(order.get(e.sender_id) ?? []), seq]);
      }
    };
    const shares = new Map<string, number>();
    const consumer = (name: string) => {
      const broker = make(topic, { partition_by_sender: true });
      return broker.subscribe(
        (e) => {
          shares.set(name, (shares.get(name) ?? 0) + 1);
          handler(e);
        },
        { group, concurrency: 4 },
      );
    };
    const a = consumer('a');
    await a.ready;
    const total = 2_000;
    const senders = 40;
    let b: ReturnType<typeof consumer> | undefined;
    let c: ReturnType<typeof consumer> | undefined;
    const joins: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      if (i === 500) {
        b = consumer('b');
        joins.push(b.ready);
      }
      if (i === 1_000) {
        c = consumer('c');
        joins.push(c.ready);
      }
      if (i === 1_500) joins.push(b!.close());
      await publisher.publish(event(i, `${run}-rb${i % senders}`));
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 500)); // ~10 s of traffic, rebalances inside it
    }
    await Promise.all(joins);
    await waitFor(() => first.size >= total, `${total} events (${first.size} so far)`, 60_000);
    const duplicates = [...first.values()].reduce((sum, n) => sum + n - 1, 0);
    console.info(
      `[kafka] rebalances: ${total} sent, ${first.size} received, ${duplicates} duplicates; handled by a/b/c: ${['a', 'b', 'c'].map((n) => shares.get(n) ?? 0).join(' / ')}`,
    );
    expect(shares.get('b'), 'events the second consumer handled before it left').toBeGreaterThan(0);
    expect(shares.get('c'), 'events the third consumer handled').toBeGreaterThan(0);
    const unordered = [...order].filter(([, seqs]) => seqs.some((seq, i) => i > 0 && seq < seqs[i - 1]!));
    expect(
      unordered.map(([sender]) => sender),
      'senders first handled out of publish order',
    ).toEqual([]);
    await Promise.all([a.close(), c!.close()]);
  }, 120_000);
});

const hasConfluent =
  spawnSync('/usr/bin/python3', ['-c', 'import confluent_kafka'], { stdio: 'ignore' }).status === 0;
describe.skipIf(!hasConfluent)("interop with python3-confluent-kafka (Rasa's client)", () => {
  it("receives what a producer doing Rasa's KafkaEventBroker._publish writes", async () => {
    const topic = fresh('rasa');
    const group = fresh('g');
    const broker = make(topic);
    const seen: EventEnvelope<AnyEvent>[] = [];
    const sub = broker.subscribe((e) => void seen.push(e), { group, from: 'beginning' });
    await sub.ready;
    const script = `
import json, sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1]})
for i in range(5):
    event = {"event": "user", "timestamp": 1700000000.5 + i, "text": "héllo %d" % i, "sender_id": "rasa-%d" % (i % 2)}
    p.produce(sys.argv[2], value=json.dumps(event).encode("utf-8"), key=bytes(event["sender_id"], "utf-8"),
              headers=[("RASA_ENVIRONMENT", b"RASA_ENVIRONMENT_NOT_SET")])
p.flush(10)
`;
    const done = spawnSync('/usr/bin/python3', ['-c', script, cluster.url, topic], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(done.status, done.stderr).toBe(0);
    await waitFor(() => seen.length >= 5, "Rasa's 5 events");
    await sub.close();
    expect(seen.map((e) => (e as { text?: string }).text).sort()).toEqual([
      'héllo 0',
      'héllo 1',
      'héllo 2',
      'héllo 3',
      'héllo 4',
    ]);
    expect(seen.map((e) => e.sender_id).sort()).toEqual(['rasa-0', 'rasa-0', 'rasa-0', 'rasa-1', 'rasa-1']);
  });
});
