/**
 * The commands on Kafka (librdkafka's mock cluster, see {@link startKafka}): tail reads through a throwaway group
 * that commits nothing, dead letters made by a real failing consumer are listed, shown and redriven to their group
 * only, check prints the adapter, and a bridge from RabbitMQ cut mid-stream loses nothing and keeps each
 * conversation's order (sender keys: `partition_by_sender`).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type Broker, createBroker } from '@parley/core';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type Bridged,
  bridgeThroughCut,
  cleanUpAmqp,
  deadLetterAll,
  expectAllInOrder,
  FIXTURES,
  type KafkaCluster,
  kafkaSection,
  run,
  start,
  startKafka,
  tempDir,
  unique,
  wireLines,
  writeEndpoints,
} from './support.js';

const quiet = { onWarning: () => {} };
let cluster: KafkaCluster;
let kafka: Kafka;
beforeAll(async () => {
  cluster = await startKafka();
  kafka = new Kafka({
    brokers: cluster.url.split(','),
    logLevel: logLevel.NOTHING,
    clientId: 'parley-cli-test',
  });
});
afterAll(() => cluster?.stop());

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

/** The committed offsets of `group` on `topic`, per partition (-1: none). */
async function committed(group: string, topic: string): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return (offsets?.partitions ?? []).map((p) => p.offset);
  } finally {
    await admin.disconnect();
  }
}

/** The values of a topic, partition by partition in offset order (kcat: librdkafka, no group, no kafkajs). */
function readTopic(topic: string): string[] {
  try {
    return execFileSync(
      'kcat',
      ['-b', cluster.url, '-C', '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%s\n'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 20_000,
      },
    )
      .split('\n')
      .filter((l) => l !== '');
  } catch (error) {
    return ((error as { stdout?: string }).stdout ?? '').split('\n').filter((l) => l !== '');
  }
}

describe('parley tail, Kafka', () => {
  it('--from beginning replays through a throwaway group that leaves no committed offsets', async () => {
    const topic = unique('parley-cli-tail');
    await writeEndpoints(join(dir, 'endpoints.yml'), kafkaSection(cluster, topic));
    expect((await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir)).code).toBe(0);

    const tail = start(['tail', '--from', 'beginning', '--json', '--max', '7'], dir);
    const result = await tail.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('tailing the kafka broker through a throwaway group');
    expect(result.stdout.split('\n').filter((l) => l !== '')).toEqual(wireLines('tracker_moodbot.jsonl'));
    // The mock cluster cannot list groups: tail names its throwaway group.
    const group = /through a throwaway group, "(parley-tail-[^"]+)"/.exec(result.stderr)?.[1] ?? '';
    expect(group).toMatch(new RegExp(`^parley-tail-.+-${tail.child.pid}-`));
    // It kept no offset on the topic (a named group does: see the next case).
    expect(await committed(group, topic)).not.toHaveLength(0);
    expect((await committed(group, topic)).filter((offset) => offset !== '-1')).toEqual([]);
  });

  it('--group NAME reads as that group, which keeps its offsets; without --from it prints what arrives', async () => {
    const topic = unique('parley-cli-tail');
    const group = unique('parley-cli-named');
    await writeEndpoints(join(dir, 'endpoints.yml'), kafkaSection(cluster, topic));
    const tail = start(['tail', '--group', group, '--max', '7'], dir);
    await tail.waitFor('stderr', new RegExp(`tailing the kafka broker through group "${group}"`));
    expect((await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir)).code).toBe(0);
    const result = await tail.exited;
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(7);
    expect(lines[1]).toMatch(/ mysender +user +"\/greet" {2}intent=greet \(0\.54\)$/);
    expect((await committed(group, topic)).reduce((sum, o) => sum + Math.max(0, Number(o)), 0)).toBe(7);
  });
});

/** What `group` handles within `ms`, or until it has `count` events. */
async function consume(broker: Broker, group: string, count: number, ms: number): Promise<string[]> {
  const seen: string[] = [];
  let enough!: () => void;
  const done = new Promise<void>((resolve) => (enough = resolve));
  const subscription = broker.subscribe(
    (event) => {
      seen.push(event.event);
      if (seen.length === count) enough();
    },
    { group, from: 'beginning' },
  );
  await subscription.ready;
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, ms))]);
  await subscription.close();
  return seen;
}

describe('parley dead-letters, Kafka', () => {
  it('lists and shows what a failing consumer dead-lettered, and redrives it to that group only', async () => {
    const topic = unique('parley-cli-dl');
    const endpoints = await writeEndpoints(join(dir, 'endpoints.yml'), kafkaSection(cluster, topic));
    expect((await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir)).code).toBe(0);
    const broker = await createBroker(endpoints, quiet);
    try {
      // Another group handles every event, and has nothing left to handle.
      expect(await consume(broker, 'billing', 7, 30_000)).toHaveLength(7);
      await deadLetterAll(broker, 7, { group: 'analytics', from: 'beginning' });

      const list = await run(['dead-letters', 'list', '--group', 'analytics'], dir);
      expect(list.code).toBe(0);
      const [header, ...rows] = list.stdout.trimEnd().split('\n');
      expect(header).toMatch(/^ID +REASON +ATTEMPTS +AGE +SENDER +ERROR$/);
      expect(rows).toHaveLength(7);
      for (const row of rows) {
        expect(row).toMatch(/^\S+ +handler-failed +2 +\d+s +mysender +.*the analytics database is down$/);
      }
      const ids = rows.map((row) => row.split(' ')[0] ?? '');
      const other = await run(['dead-letters', 'list', '--group', 'billing'], dir);
      expect(other.code).toBe(0);
      expect(other.stdout).toBe('');

      const show = await run(['dead-letters', 'show', ids[1] ?? '', '--group', 'analytics'], dir);
      expect(show.code).toBe(0);
      expect(show.stdout).toContain('reason:      handler-failed');
      expect(show.stdout).toContain(`destination: ${topic}`);
      expect(show.stdout).toContain(`body:        ${wireLines('tracker_moodbot.jsonl')[1]}`);

      const one = await run(['dead-letters', 'redrive', ids[0] ?? '', '--group', 'analytics'], dir);
      expect(one.code).toBe(0);
      expect(one.stderr).toContain('redrove 1 of 1 dead letter to group "analytics"');
      const rest = await run(['dead-letters', 'redrive', '--all', '--group', 'analytics'], dir);
      expect(rest.code).toBe(0);
      expect(rest.stderr).toContain('redrove 6 of 6 dead letters to group "analytics"');
      const empty = await run(['dead-letters', 'list', '--group', 'analytics'], dir);
      expect(empty.code).toBe(0);
      expect(empty.stdout).toBe('');

      // The group handles them again, in order; billing, which saw them all, is not given them a second time.
      expect(await consume(broker, 'analytics', 7, 30_000)).toEqual(
        wireLines('tracker_moodbot.jsonl').map((line) => JSON.parse(line).event),
      );
      expect(await consume(broker, 'billing', 1, 3_000)).toEqual([]);
    } finally {
      await broker.close();
    }
  }, 120_000);
});

describe('parley check, Kafka', () => {
  it('prints the adapter, its capabilities (redrive among them) and its health', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), kafkaSection(cluster, unique('parley-cli-check')));
    const result = await run(['check'], dir);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('adapter       kafka (type: kafka)');
    expect(result.stdout).toMatch(/capabilities {2}consumer groups, .*replay, .*redrive, .*headers/);
    expect(result.stdout).toContain('connection    ok');
    expect(result.stdout).toContain('health        ready=true');
  });
});

describe('parley bridge, RabbitMQ → Kafka', () => {
  const prefix = unique('parley-cli-bridge-kafka');
  afterAll(() => cleanUpAmqp(prefix));

  it('the source cut mid-stream: nothing lost, each conversation in order', async () => {
    const topic = unique('parley-cli-bridged');
    const events = await bridgeThroughCut({
      dir,
      prefix,
      target: { ...kafkaSection(cluster, topic), partition_by_sender: true },
      group: 'to-kafka',
      received: () => readTopic(topic).map((l) => JSON.parse(l) as Bridged),
    });
    expectAllInOrder(events);
  });
});
