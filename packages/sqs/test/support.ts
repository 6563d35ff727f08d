/**
 * The SQS the tests run against: fauxqs in this process, on 127.0.0.1 and a free port, or whatever `SQS_ENDPOINT`
 * names (LocalStack, ElasticMQ, AWS itself: then credentials come from the environment as usual).
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';

/** Credentials an emulator accepts (it checks none); with SQS_ENDPOINT, the AWS default chain applies instead. */
export const FAKE_CREDENTIALS = { access_key_id: 'test', secret_access_key: 'test' } as const;

export interface TestSqs {
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  /** Keys for sqsBroker(): endpoint, region, and the emulator's credentials where one runs here. */
  readonly keys: { endpoint: string; region: string; access_key_id?: string; secret_access_key?: string };
  /** A raw client for oracles, independent of the adapter. */
  readonly raw: SQSClient;
  stop(): Promise<void>;
}

export async function startSqs(): Promise<TestSqs> {
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const external = process.env.SQS_ENDPOINT;
  let endpoint: string;
  let stop: () => Promise<void> = async () => {};
  let credentials: { access_key_id?: string; secret_access_key?: string } = {};
  if (external) {
    endpoint = external;
  } else {
    // startFauxqs() always listens on 0.0.0.0; its buildApp() is the same server, which we bind to loopback.
    const app = buildApp({ logger: false });
    endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
    stop = () => app.close();
    credentials = FAKE_CREDENTIALS;
  }
  const url = new URL(endpoint);
  const raw = new SQSClient({
    endpoint,
    region,
    ...(credentials.access_key_id ? { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } } : {}),
  });
  return {
    endpoint,
    host: url.hostname,
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    keys: { endpoint, region, ...credentials },
    raw,
    async stop() {
      raw.destroy();
      await stop();
    },
  };
}

/** A queue name for a suite destination: SQS names take letters, digits, "-" and "_" only. */
export function queueName(destination: string, fifo: boolean): string {
  return `${destination.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 70)}${fifo ? '.fifo' : ''}`;
}

/** The dead-letter queue's name of a queue. */
export function deadLetterName(destination: string, fifo: boolean): string {
  return queueName(`${destination.slice(0, 66)}-dl`, fifo);
}
