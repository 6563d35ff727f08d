/**
 * The commands on SQS (fauxqs, in this process on 127.0.0.1 and a free port; the spawned `parley` reaches it over
 * loopback, with dummy credentials from the environment as the AWS SDK reads them): publish, check, a bridge from
 * RabbitMQ cut mid-stream that loses nothing, and dead-letters refused while the adapter cannot redrive.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteMessageBatchCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { type FaultProxy, startFaultProxy } from '@parley/conformance';
import { buildApp } from 'fauxqs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AMQP_URL,
  cleanUpAmqp,
  FIXTURES,
  pikaSection,
  run,
  start,
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

  it('dead-letters: the adapter cannot redrive yet, which is refused, saying so (exit 2)', async () => {
    await writeEndpoints(join(dir, 'endpoints.yml'), {
      ...sqsSection(unique('parley-cli-sqs')),
      dead_letter_queue: unique('parley-cli-sqs-dl'),
    });
    const result = await run(['dead-letters', 'list'], dir, AWS_ENV);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'keeps no dead letters Parley can list or redrive (capabilities.redrive is false)',
    );
  });
});

const SENDERS = ['alice', 'bob', 'carol'];
const PER_SENDER = 100;

describe('parley bridge, RabbitMQ → SQS', () => {
  const prefix = unique('parley-cli-bridge-sqs');
  let proxy: FaultProxy | undefined;
  afterAll(async () => {
    await proxy?.close();
    await cleanUpAmqp(prefix);
  });

  it('the source cut mid-stream: nothing lost', async () => {
    const amqp = new URL(AMQP_URL);
    proxy = await startFaultProxy({ upstream: { host: amqp.hostname, port: Number(amqp.port || 5672) } });
    const direct = await writeEndpoints(join(dir, 'rabbitmq.yml'), pikaSection(prefix));
    await writeEndpoints(join(dir, 'source.yml'), {
      ...pikaSection(prefix),
      port: proxy.port,
      connection_attempts: 50,
    });
    const queue = unique('parley-cli-bridged');
    await writeEndpoints(join(dir, 'target.yml'), sqsSection(queue));
    const lines: string[] = [];
    for (let i = 0; i < PER_SENDER; i += 1) {
      for (const sender of SENDERS) {
        lines.push(
          JSON.stringify({
            sender_id: sender,
            event: 'slot',
            timestamp: 1_700_000_000 + i,
            name: 'n',
            value: i,
          }),
        );
      }
    }
    await writeFile(join(dir, 'first.jsonl'), `${lines.slice(0, 150).join('\n')}\n`);
    await writeFile(join(dir, 'second.jsonl'), `${lines.slice(150).join('\n')}\n`);

    const bridge = start(
      ['bridge', '--endpoints', 'source.yml', '--to', 'target.yml', '--group', 'to-sqs'],
      dir,
      AWS_ENV,
    );
    await bridge.waitFor('stderr', /bridging amqp .* to sqs/);
    expect((await run(['publish', 'first.jsonl', '--endpoints', direct], dir)).code).toBe(0);
    const arrived = new Set<string>();
    const receive = async () => {
      for (const body of await drain(queue)) {
        const e = JSON.parse(body) as { sender_id: string; value: number };
        arrived.add(`${e.sender_id}/${e.value}`);
      }
      return arrived.size;
    };
    await eventually(async () => (await receive()) >= 30, 'the first events to be bridged');
    await proxy.cut();
    expect((await run(['publish', 'second.jsonl', '--endpoints', direct], dir)).code).toBe(0);
    expect(await receive()).toBeLessThanOrEqual(150);
    await proxy.restore();
    await eventually(async () => (await receive()) === 300, 'all 300 events in the queue');

    bridge.child.kill('SIGTERM');
    const result = await bridge.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/SIGTERM: bridged \d+ events \(received \d+, retried 0, dead-lettered 0\)/);
    expect(proxy.stats.cut).toBeGreaterThan(0);
    expect([...arrived].toSorted()).toEqual(
      lines
        .map((l) => JSON.parse(l) as { sender_id: string; value: number })
        .map((e) => `${e.sender_id}/${e.value}`)
        .toSorted(),
    );
  });
});

/** Polls until `check` holds (the bridge runs in another process). */
async function eventually(check: () => Promise<boolean>, what: string, ms = 45_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
