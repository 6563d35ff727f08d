/**
 * The wire codec: bytes ⇄ the flat envelope `{"sender_id": …, ...event}` that Rasa publishes to every broker.
 *
 * Two formats:
 * - `compact` (default): `JSON.stringify`, the fastest; any JSON consumer, Rasa's included, reads it.
 * - `python`: exactly what Rasa's `json.dumps` writes (`", "`/`": "`, `\uXXXX`, floats stay `1.0`), so Parley's
 *   bytes can equal Rasa's. A decoded envelope re-encoded unchanged in this format reproduces its source bytes:
 *   the decoder keeps the source text and the encoder reads from it what plain JS numbers cannot carry.
 */
import { isUtf8 } from 'node:buffer';
import { describeValue, EventDecodeError, type EventValidationError } from '../errors.js';
import { type ParseOptions, safeParseEvent } from '../events/parse.js';
import type { AnyEvent, EventEnvelope, RasaEvent } from '../events/types.js';
import { dumpsPython, type FloatHints, JsonSyntaxError, parseJson, scanNumberShape } from './python-json.js';

/** `compact` is standard JSON (the fast default); `python` is byte-identical to Rasa's `json.dumps`. */
export type WireFormat = 'compact' | 'python';

export interface EncodeOptions {
  /** Default `compact`. Use `python` where a consumer compares bytes with what Rasa writes. */
  readonly format?: WireFormat;
  /** Validate the event before encoding (default true): an invalid event is never published. */
  readonly validate?: boolean;
}

export interface DecodeOptions extends ParseOptions {}

export type DecodeResult<E extends AnyEvent> =
  | { readonly success: true; readonly envelope: EventEnvelope<E> }
  | { readonly success: false; readonly error: EventDecodeError | EventValidationError };

/** The source text of each decoded envelope, read again only when it is re-encoded in the python format. */
const sources = new WeakMap<object, string>();

// Rasa holds these as Python floats: a constructed event's `confidence: 1` must still be written `1.0`.
const intentFloats: FloatHints = { confidence: true };
const entityFloats: FloatHints = {
  '*': { confidence: true, confidence_entity: true, confidence_role: true },
};
const baseFloats: FloatHints = { timestamp: true, anonymized_at: true };
const floatHints: Record<string, FloatHints> = {
  user: {
    ...baseFloats,
    parse_data: { intent: intentFloats, intent_ranking: { '*': intentFloats }, entities: entityFloats },
  },
  action: { ...baseFloats, confidence: true },
  action_execution_rejected: { ...baseFloats, confidence: true },
  entities: { ...baseFloats, entities: entityFloats },
  reminder: { ...baseFloats, entities: entityFloats },
};

/** Encodes an envelope to UTF-8 bytes. @throws EventValidationError when the event is invalid. */
export function encodeEvent(envelope: EventEnvelope<AnyEvent>, options?: EncodeOptions): Uint8Array {
  return Buffer.from(stringifyEvent(envelope, options), 'utf8');
}

/** Encodes an envelope to a string, for transports whose bodies are text (SQS, Redis). */
export function stringifyEvent(envelope: EventEnvelope<AnyEvent>, options?: EncodeOptions): string {
  if (options?.validate !== false) assertEnvelope(envelope);
  if (options?.format === 'python') {
    const source = sources.get(envelope);
    if (source !== undefined) return dumpsPython(envelope, { shape: scanNumberShape(source) });
    return dumpsPython(envelope, { floats: floatHints[envelope.event] ?? baseFloats });
  }
  return JSON.stringify(envelope);
}

function assertEnvelope(envelope: EventEnvelope<AnyEvent>): void {
  const senderId = (envelope as { sender_id?: unknown } | null)?.sender_id;
  if (typeof senderId !== 'string') {
    throw new EventDecodeError(`envelope.sender_id: expected a string, found ${describeValue(senderId)}`);
  }
  const parsed = safeParseEvent(envelope);
  if (!parsed.success) throw parsed.error;
}

/**
 * Decodes bytes (or a string) into a validated envelope. Accepts everything Rasa can write, including Python's
 * NaN and Infinity.
 * @throws EventDecodeError for bytes that are not a JSON object with a string `sender_id`;
 *         EventValidationError for an event that does not match its schema.
 */
export function decodeEvent(
  input: Uint8Array | string,
  options: DecodeOptions & { strict: true },
): EventEnvelope;
export function decodeEvent(input: Uint8Array | string, options?: DecodeOptions): EventEnvelope<AnyEvent>;
export function decodeEvent(input: Uint8Array | string, options?: DecodeOptions): EventEnvelope<AnyEvent> {
  const result = safeDecodeEvent(input, options);
  if (result.success) return result.envelope;
  throw result.error;
}

/** Like `decodeEvent`, but returns a result instead of throwing. */
export function safeDecodeEvent(
  input: Uint8Array | string,
  options: DecodeOptions & { strict: true },
): DecodeResult<RasaEvent>;
export function safeDecodeEvent(input: Uint8Array | string, options?: DecodeOptions): DecodeResult<AnyEvent>;
export function safeDecodeEvent(input: Uint8Array | string, options?: DecodeOptions): DecodeResult<AnyEvent> {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    const bytes = Buffer.isBuffer(input)
      ? input
      : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    if (!isUtf8(bytes)) return fail(new EventDecodeError('payload is not valid UTF-8'));
    text = bytes.toString('utf8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The slow path: Python's NaN/Infinity, or a real syntax error that parseJson describes precisely.
    try {
      value = parseJson(text);
    } catch (error) {
      const why = error instanceof JsonSyntaxError ? error.message : String(error);
      return fail(new EventDecodeError(`payload is not JSON: ${why}`, { cause: error }));
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(
      new EventDecodeError(
        `payload: expected a JSON object (an event envelope), found ${describeValue(value)}`,
      ),
    );
  }
  const senderId = (value as { sender_id?: unknown }).sender_id;
  if (typeof senderId !== 'string') {
    return fail(
      new EventDecodeError(`payload.sender_id: expected a string, found ${describeValue(senderId)}`),
    );
  }
  const parsed = safeParseEvent(value, options);
  if (!parsed.success) return fail(parsed.error);
  sources.set(parsed.event, text);
  return { success: true, envelope: parsed.event as EventEnvelope<AnyEvent> };
}

function fail(error: EventDecodeError | EventValidationError): DecodeResult<never> {
  return { success: false, error };
}
