/**
 * Reads events to publish from a file, validating every one before anything is sent:
 * - JSON Lines: one envelope per line, `{"sender_id": …, "event": …, "timestamp": …}` (what Rasa's file broker
 *   and `parley tail --json` write); blank lines are skipped;
 * - a Rasa tracker dump: one JSON object with `sender_id` and `events` (GET /conversations/<id>/tracker);
 * - a JSON array of events (a tracker's `events` alone), which needs `--sender`.
 * Lines keep their exact text, so events published in the python format are byte-identical to the file's.
 */
import { readFile } from 'node:fs/promises';
import {
  type AnyEvent,
  dumpsPython,
  type EventEnvelope,
  type ParleyError,
  parseJson,
  safeDecodeEvent,
  safeParseEvent,
} from '@parley/core';
import { UsageError } from './exit.js';

/** One event that cannot be published: where it is in the file, and why. */
export interface InvalidEvent {
  /** `line 3` for JSON Lines, `events[2]` in a tracker dump or array. */
  readonly where: string;
  readonly reason: string;
}

export interface EventsFile {
  readonly kind: 'json-lines' | 'tracker' | 'array';
  readonly events: EventEnvelope<AnyEvent>[];
  readonly invalid: InvalidEvent[];
}

/** Reads and validates every event of a file. `sender` fills in (or, for a tracker, replaces) the sender_id. */
export async function readEventsFile(path: string, sender?: string): Promise<EventsFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`${path}: cannot read the file: ${(error as Error).message}`, { cause: error });
  }
  const document = wholeDocument(text);
  if (document === undefined) return readJsonLines(text, sender);
  if (Array.isArray(document)) {
    if (sender === undefined) {
      throw new UsageError(
        `${path}: a JSON array of events has no sender_id: pass the conversation with --sender ID`,
      );
    }
    return readList('array', document, sender);
  }
  if (isObject(document) && Array.isArray(document.events)) {
    const id = sender ?? document.sender_id;
    if (typeof id !== 'string') {
      throw new UsageError(
        `${path}: the tracker dump has no string sender_id: pass the conversation with --sender ID`,
      );
    }
    return readList('tracker', document.events, id);
  }
  // One object that is not a tracker: a single-line JSON Lines file.
  return readJsonLines(text, sender);
}

/** The file as one JSON document (a dump or an array, on one line or many); undefined for JSON Lines. */
function wholeDocument(text: string): unknown {
  const trimmed = text.trim();
  if (!trimmed.startsWith('[') && !trimmed.startsWith('{')) return undefined;
  try {
    return parseJson(trimmed);
  } catch {
    return undefined;
  }
}

function readJsonLines(text: string, sender: string | undefined): EventsFile {
  const events: EventEnvelope<AnyEvent>[] = [];
  const invalid: InvalidEvent[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    const where = `line ${index + 1}`;
    let result = safeDecodeEvent(line);
    if (!result.success && sender !== undefined && lacksSender(line)) {
      result = safeDecodeEvent(withSender(line, sender));
    }
    if (result.success) events.push(result.envelope);
    else invalid.push({ where, reason: reasonOf(result.error) });
  });
  return { kind: 'json-lines', events, invalid };
}

function readList(kind: 'tracker' | 'array', list: unknown[], sender: string): EventsFile {
  const events: EventEnvelope<AnyEvent>[] = [];
  const invalid: InvalidEvent[] = [];
  list.forEach((event, index) => {
    const where = `events[${index}]`;
    if (!isObject(event)) {
      invalid.push({ where, reason: 'expected an event object' });
      return;
    }
    const result = safeParseEvent({ sender_id: sender, ...event });
    if (result.success) events.push(result.event as EventEnvelope<AnyEvent>);
    else invalid.push({ where, reason: reasonOf(result.error) });
  });
  return { kind, events, invalid };
}

function lacksSender(line: string): boolean {
  try {
    const value = JSON.parse(line) as unknown;
    return isObject(value) && value.sender_id === undefined;
  } catch {
    return false;
  }
}

/**
 * A JSON object's text with `sender_id` added last, as Rasa's exporter adds it (`json.dumps` spacing), keeping
 * the rest of the text as it is.
 */
export function withSender(objectText: string, sender: string): string {
  const body = objectText.trim();
  const inner = body.slice(1, -1).trim();
  return `{${inner}${inner === '' ? '' : ', '}"sender_id": ${dumpsPython(sender)}}`;
}

function reasonOf(error: ParleyError): string {
  return error.message.replace(/^\[parley\] /, '');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
