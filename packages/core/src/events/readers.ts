/** Readers that make Rasa's awkward fields pleasant: the JSON-string stack patch, NLU results in parse_data. */
import { parseJson } from '../wire/python-json.js';
import type * as T from './types.js';

const patches = new WeakMap<object, readonly T.JsonPatchOperation[]>();

/**
 * The JSON Patch (RFC 6902) carried by a `stack` event, parsed on demand and cached. Rasa serialises it as a
 * string, so consumers would otherwise parse it twice.
 * @throws SyntaxError when `update` is not valid JSON (Python's NaN and Infinity are accepted).
 */
export function stackPatch(event: T.AnyEvent): readonly T.JsonPatchOperation[] {
  let patch = patches.get(event);
  if (patch === undefined) {
    if (event.event !== 'stack' || typeof event.update !== 'string') {
      throw new TypeError(`[parley] stackPatch() needs a "stack" event, got "${event.event}"`);
    }
    const parsed = parseJson(event.update);
    if (!Array.isArray(parsed)) throw new SyntaxError('[parley] stack.update: expected a JSON Patch array');
    patch = parsed as T.JsonPatchOperation[];
    patches.set(event, patch);
  }
  return patch;
}

// Readers take any event, so that lenient decoding (which may return an UnknownEvent) needs no casts.
function parseDataOf(event: T.AnyEvent): T.ParseData | undefined {
  return event.event === 'user' ? ((event as T.UserUttered).parse_data ?? undefined) : undefined;
}

/** The intent NLU gave a `user` event (`parse_data.intent`); undefined when there is none or it is no `user` event. */
export function userIntent(event: T.AnyEvent): { name: string; confidence: number | null } | undefined {
  const intent = parseDataOf(event)?.intent;
  if (!intent || typeof intent.name !== 'string') return undefined;
  return { name: intent.name, confidence: intent.confidence ?? null };
}

/** The entities of a `user` event (`parse_data.entities`), `[]` when there are none. */
export function userEntities(event: T.AnyEvent): readonly T.Entity[] {
  return parseDataOf(event)?.entities ?? [];
}

/** The CALM commands of a `user` event (`parse_data.commands`, Rasa Pro), `[]` when there are none. */
export function userCommands(event: T.AnyEvent): readonly T.Command[] {
  return parseDataOf(event)?.commands ?? [];
}

/** When the event happened, as a Date (Rasa's `timestamp` is in seconds). */
export function eventTime(event: { timestamp: number }): Date {
  return new Date(event.timestamp * 1000);
}
