/**
 * parseEvent / safeParseEvent: a typed event out of any decoded JSON value, or an error that names the path,
 * what was expected and what was found. Validators are compiled once per event type, on first use.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { TypeSystemPolicy } from '@sinclair/typebox/system';
import { describeValue, EventValidationError, type ValidationIssue } from '../errors.js';
import { eventSchemas, legacyEventSchemas, UnknownEventSchema } from './schemas.js';
import type { AnyEvent, RasaEvent } from './types.js';
import { hasUnknownMark, markUnknown, unknownEventMark } from './unknown.js';

export interface ParseOptions {
  /** Reject event names Parley does not know, instead of returning them as `UnknownEvent`. Default false. */
  readonly strict?: boolean;
}

export type ParseResult<E> =
  | { readonly success: true; readonly event: E }
  | { readonly success: false; readonly error: EventValidationError };

const schemasByName: Record<string, TSchema> = Object.assign(
  Object.create(null),
  eventSchemas,
  legacyEventSchemas,
);
const validators = new Map<string, TypeCheck<TSchema>>();
let unknownValidator: TypeCheck<TSchema> | undefined;

function compile(schema: TSchema): TypeCheck<TSchema> {
  // Python writes NaN and Infinity for floats and Rasa may emit them, so number fields must accept them.
  const allowNaN = TypeSystemPolicy.AllowNaN;
  TypeSystemPolicy.AllowNaN = true;
  try {
    return TypeCompiler.Compile(schema);
  } finally {
    TypeSystemPolicy.AllowNaN = allowNaN;
  }
}

function validatorFor(name: string): TypeCheck<TSchema> | undefined {
  const schema = schemasByName[name];
  if (!schema) return undefined;
  const compiled = compile(schema);
  validators.set(name, compiled);
  return compiled;
}

/** True when `event` is one of the event types Rasa emits (narrows to the `RasaEvent` union). */
export function isKnownEvent(event: AnyEvent): event is RasaEvent {
  return Object.hasOwn(eventSchemas, event.event);
}

/**
 * Validates a decoded value as a Rasa event and returns it typed. Known events are checked against their
 * schema; unknown names are kept as `UnknownEvent`, a copy with every field and the `unknownEventMark` that lets it
 * be published (or rejected with `strict`). Extra keys are never stripped.
 * Legacy `form` and `form_validation` events come back as `active_loop` and `loop_interrupted`, as Rasa reads them.
 * @throws EventValidationError naming the path, the expected and the found value.
 */
export function parseEvent(input: unknown, options: ParseOptions & { strict: true }): RasaEvent;
export function parseEvent(input: unknown, options?: ParseOptions): AnyEvent;
export function parseEvent(input: unknown, options?: ParseOptions): AnyEvent {
  const result = checkEvent(input, options?.strict === true);
  if (result instanceof EventValidationError) throw result;
  return parsed(result);
}

/** Like `parseEvent`, but returns `{ success, event }` or `{ success: false, error }` instead of throwing. */
export function safeParseEvent(
  input: unknown,
  options: ParseOptions & { strict: true },
): ParseResult<RasaEvent>;
export function safeParseEvent(input: unknown, options?: ParseOptions): ParseResult<AnyEvent>;
export function safeParseEvent(input: unknown, options?: ParseOptions): ParseResult<AnyEvent> {
  const result = checkEvent(input, options?.strict === true);
  return result instanceof EventValidationError
    ? { success: false, error: result }
    : { success: true, event: parsed(result) };
}

/**
 * A parsed unknown event is one read from outside (a newer Rasa's), so it gets the mark that lets it be published
 * again: on a copy, since the input belongs to the caller. Known events are returned as they are.
 */
function parsed(event: AnyEvent): AnyEvent {
  if (isKnownEvent(event) || hasUnknownMark(event)) return event;
  return { ...event, [unknownEventMark]: true };
}

/**
 * The event, or the error describing what is wrong with it. Returning the error rather than a result object
 * keeps the decode hot path free of allocations (it runs once per consumed message). `mark`: an unknown event gets
 * `unknownEventMark` in place (the decoder's own object, read from the wire).
 * @internal
 */
export function checkEvent(input: unknown, strict: boolean, mark = false): AnyEvent | EventValidationError {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return invalid(undefined, [{ path: '', expected: 'an event object', found: describeValue(input) }]);
  }
  const name = (input as { event?: unknown }).event;
  if (typeof name !== 'string') {
    return invalid(undefined, [
      { path: 'event', expected: 'a string (the event name)', found: describeValue(name) },
    ]);
  }
  const validator = validators.get(name) ?? validatorFor(name);
  if (validator === undefined) {
    if (strict) {
      const expected = `one of ${Object.keys(eventSchemas).join(', ')}`;
      return invalid(name, [{ path: 'event', expected, found: `unknown event ${JSON.stringify(name)}` }]);
    }
    unknownValidator ??= compile(UnknownEventSchema);
    if (!unknownValidator.Check(input)) return invalid(name, issuesOf(unknownValidator, input));
    if (mark) markUnknown(input as AnyEvent);
    return input as AnyEvent;
  }
  if (!validator.Check(input)) return invalid(name, issuesOf(validator, input));
  if (name === 'form' || name === 'form_validation') return normaliseLegacy(input, name);
  return input as AnyEvent;
}

function invalid(name: string | undefined, issues: ValidationIssue[]): EventValidationError {
  return new EventValidationError(name, issues);
}

const MAX_ISSUES = 10;

function issuesOf(validator: TypeCheck<TSchema>, input: unknown): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const seen: string[] = [];
  for (const error of validator.Errors(input)) {
    // A union reports itself, then each failed branch below it: the union's own message says it all.
    if (seen.some((pointer) => error.path === pointer || error.path.startsWith(`${pointer}/`))) continue;
    seen.push(error.path);
    issues.push({
      path: dottedPath(error.path),
      expected: describeSchema(error.schema),
      found: describeValue(error.value),
    });
    if (issues.length >= MAX_ISSUES) break;
  }
  return issues;
}

/** `/parse_data/entities/0/value` → `parse_data.entities[0].value` */
function dottedPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^\d+$/.test(part) ? `[${part}]` : out === '' ? part : `.${part}`;
  }
  return out;
}

function describeSchema(schema: TSchema): string {
  switch (schema[Kind]) {
    case 'Union':
      return (schema.anyOf as TSchema[]).map(describeSchema).join(' or ');
    case 'String':
      return 'a string';
    case 'Number':
      return 'a number';
    case 'Integer':
      return 'an integer';
    case 'Boolean':
      return 'a boolean';
    case 'Null':
      return 'null';
    case 'Array':
      return 'an array';
    case 'Object':
    case 'Record':
      return 'an object';
    case 'Literal':
      return JSON.stringify(schema.const);
    default:
      return 'a value';
  }
}

/** Rasa reads `form` as an `active_loop` and `form_validation` as `loop_interrupted` (is_interrupted = !validate). */
function normaliseLegacy(input: object, name: 'form' | 'form_validation'): AnyEvent {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (key === 'event') out.event = name === 'form' ? 'active_loop' : 'loop_interrupted';
    else if (!(name === 'form_validation' && key === 'validate')) out[key] = value;
  }
  if (name === 'form_validation') out.is_interrupted = (input as { validate?: boolean }).validate === false;
  return out as AnyEvent;
}
