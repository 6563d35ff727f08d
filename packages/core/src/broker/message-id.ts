/**
 * Message ids: random (version 4) UUIDs, as `crypto.randomUUID()` makes them, but each one flat string. Node's
 * `randomUUID()` joins twenty pieces, and the joined string keeps them as a tree of about 450 bytes until something
 * flattens it: ten thousand publishes waiting for their confirm kept 4.5 MB of such trees alive through every
 * young-generation collection. This one is 36 bytes written into a scratch buffer and read out as one string.
 */
import { randomFillSync } from 'node:crypto';

/** Ids per refill of the random bytes (one `randomFillSync` call per this many ids). */
const BATCH = 128;
const random = Buffer.alloc(16 * BATCH);
let next = BATCH;
/** Where each of the 16 bytes' two hex digits go in `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`. */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const scratch = Buffer.from('00000000-0000-4000-8000-000000000000', 'latin1');

/** A new random UUID (version 4, RFC 9562), lower-case, as one flat string. */
export function messageId(): string {
  if (next === BATCH) {
    randomFillSync(random);
    next = 0;
  }
  const offset = 16 * next++;
  random[offset + 6] = (random[offset + 6]! & 0x0f) | 0x40; // version 4
  random[offset + 8] = (random[offset + 8]! & 0x3f) | 0x80; // variant 10xx
  for (let i = 0; i < 16; i++) {
    const byte = random[offset + i]!;
    const at = AT[i]!;
    scratch[at] = DIGITS[byte >>> 4]!;
    scratch[at + 1] = DIGITS[byte & 0x0f]!;
  }
  return scratch.toString('latin1', 0, 36);
}
