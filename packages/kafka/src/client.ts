/**
 * The kafkajs client as Parley configures it: connection, TLS and SASL (OAUTHBEARER through AWS MSK IAM or a
 * provider), the partition assigner, and which errors a retry can mend.
 */
import { ConnectionError } from '@parley/core';
import {
  AssignerProtocol,
  type KafkaConfig,
  logLevel,
  type PartitionAssigner,
  type SASLOptions,
} from 'kafkajs';
import type { KafkaSettings } from './options.js';

export const SCOPE = 'kafka';

/** Test and escape-hatch hooks that are not endpoints.yml keys. */
export interface KafkaDriverHooks {
  /** Extra kafkajs client config (a `socketFactory` for fault injection, say), merged over Parley's. */
  readonly kafkaConfig?: Partial<KafkaConfig>;
  /**
   * With `sasl_mechanism: OAUTHBEARER` (and no AWS MSK IAM switched on): the token for each authentication, from
   * your identity provider. kafkajs asks again whenever a connection authenticates.
   */
  readonly oauthBearerProvider?: () => Promise<{ readonly value: string }>;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An authentication or authorisation refusal: no retry or rejoin mends it. */
export function isRefusal(error: unknown): boolean {
  const e = error as { type?: string; name?: string };
  return /AUTHORIZATION|SASL/.test(String(e.type)) || e.name === 'KafkaJSSASLAuthenticationError';
}

/**
 * Whether sending again can succeed. kafkajs marks its errors `retriable`, but a connection error that outlived
 * its own retries comes wrapped as non-retriable: only what the broker refuses for the message itself or for who
 * sends it (size, an invalid record, authorisation, authentication, an unsupported request) is permanent, wherever
 * it sits in the cause chain. Anything else (a lost connection, a leader moving) is retried by core.
 */
export function isRetryable(error: unknown): boolean {
  for (let e = error as { type?: string; name?: string; cause?: unknown } | undefined; e; ) {
    if (
      /MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE|INVALID_RECORD|AUTHORIZATION|SASL|UNSUPPORTED|INVALID_TOPIC|INVALID_REQUIRED_ACKS/.test(
        String(e.type),
      )
    )
      return false;
    if (e.name === 'KafkaJSSASLAuthenticationError') return false;
    e = e.cause as typeof e;
  }
  return true;
}

/** aws-msk-iam-sasl-signer-js, an optional peer: needed only for AWS MSK IAM. */
export async function loadMskSigner(): Promise<typeof import('aws-msk-iam-sasl-signer-js')> {
  try {
    return await import('aws-msk-iam-sasl-signer-js');
  } catch (error) {
    throw new ConnectionError(
      SCOPE,
      'AWS MSK IAM (KAFKA_MSK_AWS_IAM_ENABLED=true) signs its tokens with the package aws-msk-iam-sasl-signer-js: install it (npm install aws-msk-iam-sasl-signer-js)',
      { cause: error, permanent: true },
    );
  }
}

/**
 * AWS MSK IAM tokens for `region`: SigV4-signed with the AWS default credential chain, as Rasa Pro's
 * `get_aws_iam_token`. What `KAFKA_MSK_AWS_IAM_ENABLED=true` uses; also an `oauthBearerProvider` for code.
 */
export function mskIamTokenProvider(region: string): () => Promise<{ value: string }> {
  return async () => ({ value: (await (await loadMskSigner()).generateAuthToken({ region })).token });
}

function saslOf(settings: KafkaSettings, hooks: KafkaDriverHooks): SASLOptions | undefined {
  const sasl = settings.sasl;
  if (sasl === undefined) return undefined;
  if (sasl.mechanism !== 'oauthbearer') return sasl as SASLOptions;
  if (sasl.source === 'aws-msk-iam') {
    return { mechanism: 'oauthbearer', oauthBearerProvider: mskIamTokenProvider(sasl.region) };
  }
  const provider = hooks.oauthBearerProvider;
  if (provider === undefined) return undefined; // refused in fromConfig before any driver exists
  return { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: (await provider()).value }) };
}

export function kafkaConfigOf(settings: KafkaSettings, hooks: KafkaDriverHooks): KafkaConfig {
  const sasl = saslOf(settings, hooks);
  const tls = settings.tls
    ? {
        ...(settings.tls.ca === undefined ? {} : { ca: [settings.tls.ca] }),
        ...(settings.tls.cert === undefined ? {} : { cert: settings.tls.cert }),
        ...(settings.tls.key === undefined ? {} : { key: settings.tls.key }),
        ...(settings.tls.checkHostname ? {} : { checkServerIdentity: () => undefined }),
      }
    : undefined;
  return {
    brokers: [...settings.brokers],
    ...(settings.clientId === undefined ? {} : { clientId: settings.clientId }),
    ...(sasl ? { sasl } : {}),
    ...(tls ? { ssl: tls } : {}),
    connectionTimeout: 5_000,
    requestTimeout: 15_000,
    // Core retries failed sends with backoff and owns reconnection: kafkajs tries a few times, then reports.
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 2_000 },
    // kafkajs logs to stdout by default; its errors reach us as rejected calls anyway.
    logLevel: logLevel.NOTHING,
    ...hooks.kafkaConfig,
  };
}

/**
 * kafkajs's round robin, but each topic's partitions go only to the members that subscribe to it. kafkajs's own
 * gives the leader's topics to every member, so two subscriptions of one group to different topics (a group is
 * named per topic in Parley, as on every broker) took each other's partitions and left their own unread. Same
 * name and metadata as kafkajs's, so plain kafkajs members can share a group with Parley's.
 */
export const roundRobinBySubscription: PartitionAssigner = ({ cluster }) => ({
  name: 'RoundRobinAssigner',
  version: 0,
  async assign({ members }) {
    const subscribers = new Map<string, string[]>();
    for (const { memberId, memberMetadata } of members) {
      for (const t of AssignerProtocol.MemberMetadata.decode(memberMetadata)?.topics ?? []) {
        subscribers.set(t, [...(subscribers.get(t) ?? []), memberId]);
      }
    }
    await cluster.addMultipleTargetTopics([...subscribers.keys()]);
    const assignment = new Map<string, Record<string, number[]>>(members.map((m) => [m.memberId, {}]));
    for (const [t, ids] of subscribers) {
      ids.sort();
      const partitions = cluster.findTopicPartitionMetadata(t).map((p) => p.partitionId);
      partitions.sort((a, b) => a - b);
      partitions.forEach((partition, i) => {
        const own = assignment.get(ids[i % ids.length]!)!;
        own[t] = [...(own[t] ?? []), partition];
      });
    }
    return [...assignment].map(([memberId, own]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: own,
        userData: Buffer.alloc(0),
      }),
    }));
  },
  protocol({ topics }) {
    return {
      name: 'RoundRobinAssigner',
      metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});
