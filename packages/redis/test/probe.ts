/** The conformance oracle: raw ioredis reads and writes of the streams, independent of the adapter under test. */
import type { Probe, ProbeMessage } from '@parley/conformance';
import type { Redis } from 'ioredis';
import { deadLetterKey } from '../src/index.js';

type Entry = [Buffer, Buffer[]];

/** An entry as the adapter writes it: `body`, and `header:<name>` / `x-parley-*` fields as headers. */
export function probeMessage(fields: Buffer[]): ProbeMessage & { group?: string } {
  let body: Uint8Array = new Uint8Array(0);
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const key = fields[i]!.toString();
    const value = fields[i + 1]!;
    if (key === 'body') body = new Uint8Array(value);
    else if (key.startsWith('header:')) headers[key.slice('header:'.length)] = value.toString();
    else if (key.startsWith('x-parley-')) headers[key] = value.toString();
  }
  return { body, headers };
}

export function redisProbe(client: () => Redis, key: (destination: string) => string): Probe {
  return {
    async publishRaw(destination, body, options) {
      // What a foreign producer following the entry layout writes: the body, sender_id, headers as fields.
      const fields: (string | Buffer)[] = ['body', Buffer.from(body)];
      if (options?.senderId !== undefined) fields.push('sender_id', options.senderId);
      for (const [k, v] of Object.entries(options?.headers ?? {})) fields.push(`header:${k}`, v);
      await client().xadd(key(destination), '*', ...fields);
    },
    async deadLetters(destination, group) {
      const entries = (await client().xrangeBuffer(
        deadLetterKey(key(destination)),
        '-',
        '+',
      )) as unknown as Entry[];
      return entries
        .map(([, fields]) => probeMessage(fields))
        .filter((message) => message.headers['x-parley-group'] === group);
    },
    async tap(destination) {
      const last = (await client().xrevrange(key(destination), '+', '-', 'COUNT', 1))[0]?.[0];
      return {
        messages: async () => {
          const entries = (await client().xrangeBuffer(
            key(destination),
            last === undefined ? '-' : `(${last}`,
            '+',
          )) as unknown as Entry[];
          return entries.map(([, fields]) => probeMessage(fields));
        },
        close: async () => {},
      };
    },
    async cleanup(destination) {
      await client().del(key(destination), deadLetterKey(key(destination)));
    },
  };
}
