import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteMessageBatchCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { createBroker } from '@parley/core';
import { buildApp } from 'fauxqs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type Bridged,
  bridgeEventLines,
  bridgeThroughCut,
  cleanUpAmqp,
  deadLetterAll,
  FIXTURES,
  run,
  tempDir,
  unique,
  wireLines,
  writeEndpoints,
} from './support.js';

/** What the AWS SDK in the spawned `parley` reads: an emulator checks no credentials, but the SDK wants some. */
const AWS_ENV = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' };

let endpoint: string;
let stopSqs: () => Promise<void>;
let sqs: SQSClient;
beforeAll(async () => {
  // fauxqs's startFauxqs() listens on 0.0.0.0; its buildApp() is the same server, bound here to loopback.
  const app = buildApp({ logger: false });
  endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
  stopSqs = () => app.close();
  sqs = new SQSClient({
    endpoint,
    region: AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
});
afterAll(async () => {
  sqs?.destroy();
  await stopSqs?.();
});

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await tempDir());
});
afterEach(() => remove());

/** Rasa-style section of `type: sqs` for a queue of this test's own, created on connect. */
const sqsSection = (queue: string): Record<string, unknown> => ({
  type: 'sqs',
  queue_name: queue,
  create_queue: true,
  endpoint,
  wait_time_seconds: 1,
});

/** Receives (and deletes) what the queue holds now, with a raw client: the bodies, as they were sent. */
async function drain(queue: string): Promise<string[]> {
  let QueueUrl: string | undefined;
  try {
    ({ QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: queue })));
  } catch (error) {
    // Not created yet (the bridge creates it when it connects).
    if ((error as { name?: string }).name === 'QueueDoesNotExist') return [];
    throw error;
  }
  const bodies: string[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 60,
      }),
    );
    if (Messages.length === 0) return bodies;
    bodies.push(...Messages.map((m) => m.Body ?? ''));
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl,
        Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
      }),
    );
  }
}

describe('parley publish and check, SQS', () => {
  it('publish sends every event as Rasa wrote it; check prints the adapter, capabilities and health', async () => {
    const queue = unique('parley-cli-sqs');
    await writeEndpoints(join(dir, 'endpoints.yml'), sqsSection(queue));
    const check = await run(['check'], dir, AWS_ENV);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('adapter       sqs (type: sqs)');
    // A queue: competing consumers, no groups, no replay; no redrive (yet).
    expect(check.stdout).toMatch(
      /capabilities {2}competing consumers, batch publish, .*retry broker, leases\n/,
    );
    expect(check.stdout).not.toMatch(/consumer groups|replay|redrive/);
    expect(check.stdout).toContain('connection    ok');
    expect(check.stdout).toContain('health        ready=true');

    const published = await run(['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl')], dir, AWS_ENV);
    expect(published.code).toBe(0);
    expect(published.stderr).toContain('published 7 events to the sqs broker');
    // A standard queue does not keep order: the same 7 bodies, byte for byte.
    expect((await drain(queue)).toSorted()).toEqual(wireLines('tracker_moodbot.jsonl').toSorted());
  });

  it('check against an endpoint nothing listens on exits 1 naming it', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), {
      ...sqsSection(unique('parley-cli-sqs')),
      endpoint: 'http://127.0.0.1:9',
    });
    const result = await run(['check', '--timeout', '3'], dir, AWS_ENV);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('connection    failed');
    expect(result.stderr).toMatch(/^\[parley\] \[sqs\] /m);
  });

  it('dead-letters lists what a failing consumer dead-lettered, and redrives it to the queue', async () => {
    const queue = unique('parley-cli-sqs');
    const section = {
      ...sqsSection(queue),
      dead_letter_queue: unique('parley-cli-sqs-dl'),
      access_key_id: AWS_ENV.AWS_ACCESS_KEY_ID,
      secret_access_key: AWS_ENV.AWS_SECRET_ACCESS_KEY,
      region: AWS_ENV.AWS_REGION,
    };
    await writeEndpoints(join(dir, 'endpoints.yml'), section);
    const broker = await createBroker(section, { onWarning: () => {} });
    try {
      await deadLetterAll(broker, 3, {}, async () => {
        await writeFile(
          join(dir, 'three.jsonl'),
          `${wireLines('tracker_moodbot.jsonl').slice(0, 3).join('\n')}\n`,
        );
        const published = await run(['publish', 'three.jsonl'], dir, AWS_ENV);
        expect(published.code, published.stderr).toBe(0);
      });

      const list = await run(['dead-letters', 'list'], dir, AWS_ENV);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout.match(/handler-failed/g)).toHaveLength(3);
      expect(list.stdout).toContain('the analytics database is down');
      const redrive = await run(['dead-letters', 'redrive', '--all'], dir, AWS_ENV);
      expect(redrive.code, redrive.stderr).toBe(0);
      expect(redrive.stdout + redrive.stderr).toMatch(/3 of 3/);
      expect((await run(['dead-letters', 'list'], dir, AWS_ENV)).stdout).not.toMatch(/handler-failed/);
      // Back in the queue, as Rasa wrote them.
      expect((await drain(queue)).length).toBe(3);
    } finally {
      await broker.close();
    }
  });
});

describe('parley bridge, RabbitMQ → SQS', () => {
  const prefix = unique('parley-cli-bridge-sqs');
  afterAll(() => cleanUpAmqp(prefix));

  it('the source cut mid-stream: nothing lost', async () => {
    const queue = unique('parley-cli-bridged');
    const arrived: Bridged[] = [];
    const events = await bridgeThroughCut({
      dir,
      prefix,
      target: sqsSection(queue),
      group: 'to-sqs',
      env: AWS_ENV,
      received: async () => {
        for (const body of await drain(queue)) arrived.push(JSON.parse(body) as Bridged);
        return arrived;
      },
    });
    // A standard queue keeps no order: every event, once or more.
    const key = (e: Bridged) => `${e.sender_id}/${e.value}`;
    expect([...new Set(events.map(key))].toSorted()).toEqual(
      bridgeEventLines()
        .map((l) => key(JSON.parse(l) as Bridged))
        .toSorted(),
    );
  });
});
