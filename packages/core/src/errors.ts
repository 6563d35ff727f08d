/**
 * Every error Parley throws starts with `[parley]` (and the adapter, `[parley] [kafka]`), carries a stable
 * `code`, and never contains a credential.
 */
export class ParleyError extends Error {
  /** A stable, machine-readable reason, e.g. `EVENT_INVALID`. */
  readonly code: string;

  /** Any URL in `message` loses its password here, whoever built the message (and so does the stack). */
  constructor(message: string, code: string, options?: { cause?: unknown; scope?: string }) {
    const scope = options?.scope ? ` [${options.scope}]` : '';
    super(
      redactUrl(`[parley]${scope} ${message}`),
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = new.target.name;
    this.code = code;
  }
}

/** One thing wrong with an event: where, what was expected, what was found. */
export interface ValidationIssue {
  /** Dotted path into the event, e.g. `parse_data.intent.confidence` or `entities[0].value`. */
  readonly path: string;
  readonly expected: string;
  readonly found: string;
}

/** An event that does not match its Rasa schema. `message` names the first issue; `issues` lists them all. */
export class EventValidationError extends ParleyError {
  readonly issues: readonly ValidationIssue[];
  readonly path: string;
  readonly expected: string;
  readonly found: string;
  /** The `event` name, when the input had one. */
  readonly eventName: string | undefined;

  /** `hint`, when given, ends the message: what to do about it. */
  constructor(
    eventName: string | undefined,
    issues: readonly ValidationIssue[],
    options?: { hint?: string },
  ) {
    const first = issues[0] ?? { path: '', expected: 'a valid event', found: 'something else' };
    const what = eventName === undefined ? 'event' : `"${eventName}" event`;
    const where = first.path === '' ? '' : ` at ${first.path}`;
    const more =
      issues.length > 1 ? ` (and ${issues.length - 1} more issue${issues.length > 2 ? 's' : ''})` : '';
    const hint = options?.hint === undefined ? '' : `; ${options.hint}`;
    super(
      `invalid ${what}${where}: expected ${first.expected}, found ${first.found}${more}${hint}`,
      'EVENT_INVALID',
    );
    this.issues = issues;
    this.path = first.path;
    this.expected = first.expected;
    this.found = first.found;
    this.eventName = eventName;
  }
}

/**
 * Bytes that cannot be read at all: not UTF-8, or not JSON. JSON that is not a valid envelope (not an object, no
 * `sender_id`) is an {@link EventValidationError}, like any other schema failure.
 */
export class EventDecodeError extends ParleyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'EVENT_UNDECODABLE', options);
  }
}

/** A short, safe description of a value for error messages (strings are truncated). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (the key is missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  switch (typeof value) {
    case 'string':
      return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
    case 'number':
    case 'boolean':
      return `${typeof value} ${String(value)}`;
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

/** A publish the broker did not accept: refused, or still unsent when the broker closed. */
export class PublishError extends ParleyError {
  constructor(scope: string, message: string, options?: { cause?: unknown; code?: string }) {
    super(message, options?.code ?? 'PUBLISH_FAILED', { scope, cause: options?.cause });
  }
}

/** The publish buffer is full: the broker has been unreachable for a while. The event was not taken. */
export class BufferFullError extends ParleyError {
  constructor(scope: string, size: number, bytes?: string) {
    const what = bytes === undefined ? `${size} events` : `${size} events, ${bytes}`;
    const knob = bytes === undefined ? 'bufferSize' : 'bufferBytes';
    super(
      `publish buffer full (${what} waiting for the broker): the event was not accepted; retry later or raise ${knob}`,
      'BUFFER_FULL',
      { scope },
    );
  }
}

/** The broker (or subscription) is closed. */
export class BrokerClosedError extends ParleyError {
  constructor(scope: string, what = 'broker') {
    super(`${what} is closed`, 'BROKER_CLOSED', { scope });
  }
}

/**
 * The broker could not be reached (in time), or refused the connection. `permanent` errors (wrong credentials, no
 * permission, an unknown virtual host) are not retried: no wait can fix them.
 */
export class ConnectionError extends ParleyError {
  /** False for failures that no retry can fix: connecting gives up at once. */
  readonly retryable: boolean;

  constructor(
    scope: string,
    message: string,
    options?: { cause?: unknown; permanent?: boolean; code?: string },
  ) {
    super(message, options?.code ?? 'CONNECTION_FAILED', { scope, cause: options?.cause });
    this.retryable = options?.permanent !== true;
  }
}

/** Whether an error says that no retry can fix it (`retryable: false`, as a permanent `ConnectionError` has). */
export function isPermanent(error: unknown): boolean {
  return (error as { retryable?: unknown } | null)?.retryable === false;
}

/** A configuration that cannot work, found before anything was sent. */
export class BrokerConfigError extends ParleyError {
  constructor(scope: string, message: string) {
    super(message, 'BROKER_CONFIG', { scope });
  }
}

/** Name, message and code of any thrown value: what a dead letter records. */
export function errorSummary(error: unknown): { name: string; message: string; code?: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string'
      ? { name: error.name, message: error.message, code }
      : { name: error.name, message: error.message };
  }
  return { name: 'Error', message: String(error) };
}

/**
 * `amqp://user:pass@host:5672/vhost` → `amqp://user:<redacted>@host:5672/vhost`, for every URL in a text (any
 * scheme: amqp, amqps, redis, kafka…). For messages, warnings and logs: Parley's own errors pass through it.
 */
export function redactUrl(text: string): string {
  // Greedy up to the authority's last '@', like URL parsers: an unencoded '@' in a password stays hidden.
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:]*):([^\s/?#]*)@/gi, '$1$2:<redacted>@');
}
