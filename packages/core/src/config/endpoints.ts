import { readFile } from 'node:fs/promises';
import { type Document, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument, visit } from 'yaml';
import { ParleyError } from '../errors.js';
import { didYouMeanHint } from '../suggest.js';

/** The `event_broker` section of an endpoints.yml, Rasa's rules applied. */
export interface BrokerConfig {
  /**
   * Normalised adapter name ('amqp' | 'kafka' | 'file' | 'sql' | 'memory' | 'sqs' | 'redis'),
   * or a custom module specifier, verbatim.
   */
  readonly type: string;
  /** The `type` (or `store_type`) after `${VAR}` substitution; undefined when absent (then pika applies). */
  readonly typeAsWritten?: string;
  /**
   * Every other key of the section, with `${VAR}` substituted; values keep their YAML types except
   * substituted strings, which stay strings like in Rasa. `type`/`store_type` removed.
   */
  readonly options: Readonly<Record<string, unknown>>;
  /** Where the config came from, for error messages (the file path, or '<inline>'). */
  readonly source: string;
  /** The endpoints.yml section this came from, for error messages; `event_broker` when absent. */
  readonly section?: string;
}

/**
 * An endpoints.yml section written as an object in code, with the same keys as the YAML:
 * `{ type: 'pika', url: 'localhost', username: 'guest', password: 'guest' }`. {@link brokerConfig} normalises it.
 */
export type BrokerSection = Readonly<Record<string, unknown>>;

/** Options for {@link loadEndpoints}, {@link parseEndpoints} and {@link brokerConfig}. */
export interface LoadEndpointsOptions {
  /** Variables for `${VAR}` substitution; defaults to `process.env`. */
  readonly env?: Env;
  /** The top-level key to read; defaults to `event_broker`. */
  readonly section?: string;
}

/** A configuration problem; the message reads `[parley] <source>: <key>: <detail>`. */
export class ConfigError extends ParleyError {
  /** The file path (or `<inline>`) the configuration came from. */
  readonly source: string;
  /** The key path at fault, e.g. `event_broker.port`, when the problem is about one key. */
  readonly key?: string;

  /** Builds the message from its parts so every error in Parley reads the same. */
  constructor(source: string, key: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(`${source}: ${key === undefined ? '' : `${key}: `}${detail}`, 'CONFIG_INVALID', options);
    this.source = source;
    if (key !== undefined) this.key = key;
  }
}

const AMQP_ALIASES = ['pika', 'rabbitmq', 'amqp'];
const OTHER_TYPES = ['kafka', 'file', 'sql', 'memory', 'sqs', 'redis'];
// Rasa's resolver is `^(.*)\$\{(.*)\}(.*)$`; `.` stops at newlines in both languages.
const TRIGGER = /\$\{.*\}/;
// posixpath.expandvars' own pattern (re.ASCII, so \w is ASCII here as in JS).
const REFERENCE = /\$(\w+|\{[^}]*\})/g;
const SECRET_KEY = /pass|secret|token|key|credential/i;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads an endpoints.yml file. Returns undefined when the file has no such section (like Rasa). Throws
 * ConfigError for unreadable files, invalid YAML (with line/col), non-mapping sections, unknown types and
 * unset environment variables.
 */
export async function loadEndpoints(
  path: string,
  options?: LoadEndpointsOptions,
): Promise<BrokerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    // Rasa logs and runs without a broker; silently losing every event is worse than failing at start-up.
    throw new ConfigError(path, undefined, `cannot read file: ${(cause as Error).message}`, { cause });
  }
  return parseEndpoints(text, path, options);
}

/** Same, from YAML text already in memory (source names it in errors). */
export function parseEndpoints(
  yamlText: string,
  source = '<inline>',
  options?: LoadEndpointsOptions,
): BrokerConfig | undefined {
  const section = options?.section ?? 'event_broker';
  // Rasa reads YAML 1.2 with ruamel, which honours `<<` merge keys and rejects duplicate keys.
  const lineCounter = new LineCounter();
  const doc = parseDocument(yamlText, {
    version: '1.2',
    merge: true,
    uniqueKeys: true,
    prettyErrors: true,
    lineCounter,
  });
  const problem = yamlProblem(doc);
  if (problem) {
    // The YAML library's messages quote the source (`Unresolved alias …: Xy9!secret`), which may be a password:
    // Parley says what is wrong in its own words, with the position and the key, never the text.
    const { line, col } = lineCounter.linePos(problem.offset);
    const what = YAML_PROBLEMS[problem.code] ?? 'the YAML syntax is invalid here';
    throw new ConfigError(
      source,
      keyAt(doc, problem.offset),
      `invalid YAML at line ${line}, column ${col}: ${what}`,
    );
  }
  let content: unknown;
  try {
    content = doc.toJS();
  } catch (cause) {
    // Not echoed, nor kept as the cause: the library's message may quote a value.
    const name = cause instanceof Error ? cause.name : 'Error';
    throw new ConfigError(source, undefined, `invalid YAML: it cannot be read as data (${name})`);
  }
  if (content === null || content === undefined) return undefined;
  if (!isMapping(content)) {
    throw new ConfigError(source, undefined, `expected a mapping of sections, found ${describe(content)}`);
  }
  const value = content[section];
  // Rasa's `content.get(endpoint_type) is None`: an empty `event_broker:` means no broker, too.
  if (value === null || value === undefined) return undefined;
  return brokerConfig(value as Record<string, unknown>, source, options);
}

/**
 * Normalises a section given as an object (e.g. built in code) exactly as {@link parseEndpoints} normalises the
 * YAML: `type` aliases and case (a missing `type` means pika), `store_type`, and `${VAR}` substitution in every
 * string, nested ones included, from `options.env` (default `process.env`).
 */
export function brokerConfig(
  section: BrokerSection,
  source = '<inline>',
  options?: LoadEndpointsOptions,
): BrokerConfig {
  const name = options?.section ?? 'event_broker';
  if (!isMapping(section)) {
    throw new ConfigError(source, name, `expected a mapping of broker options, found ${describe(section)}`);
  }
  const env = options?.env ?? process.env;
  const missing = new Map<string, string[]>();
  const expanded = substitute(section, name, env, missing) as Record<string, unknown>;
  if (missing.size > 0) throw missingVariables(source, missing);
  // Rasa's `kwargs.pop("store_type", kwargs.pop("type", None))` runs inside out: both go, store_type wins.
  const typeKey = 'store_type' in expanded ? 'store_type' : 'type';
  const { type: _type, store_type: _storeType, ...rest } = expanded;
  const raw = expanded[typeKey];
  const base = { options: Object.freeze(rest), source, section: name };
  if (raw === null || raw === undefined) return Object.freeze({ type: 'amqp', ...base });
  if (typeof raw !== 'string') {
    throw new ConfigError(source, `${name}.${typeKey}`, `expected a string, found ${describe(raw)}`);
  }
  const lower = raw.toLowerCase();
  const known = AMQP_ALIASES.includes(lower) ? 'amqp' : OTHER_TYPES.includes(lower) ? lower : undefined;
  // Rasa imports any other type as `module.Class`; Parley adds npm packages and paths for JS adapters.
  const custom = /[./]/.test(raw) || raw.startsWith('@') ? raw : undefined;
  const type = known ?? custom;
  if (type !== undefined) return Object.freeze({ type, typeAsWritten: raw, ...base });
  const accepted = [...AMQP_ALIASES, ...OTHER_TYPES];
  throw new ConfigError(
    source,
    `${name}.${typeKey}`,
    `unknown broker type ${JSON.stringify(raw)}${didYouMeanHint(raw, accepted)}; expected one of ${accepted.join(', ')}, ` +
      'or a module specifier (a Python-style dotted path, a package name or a path)',
  );
}

/** What an endpoints.yml may get wrong, said without quoting it; most often an unquoted value starting with `*`, `!`… */
const YAML_PROBLEMS: Readonly<Record<string, string>> = {
  BAD_ALIAS:
    "a value starting with * is read as an alias, and no anchor has that name: quote the value ('*…')",
  TAG_RESOLVE_FAILED: "a value starting with ! is read as a YAML tag: quote the value ('!…')",
  BAD_SCALAR_START: 'a plain value cannot start with @ or `: quote the value',
  BAD_DQ_ESCAPE:
    'an invalid escape sequence in a double-quoted value: use single quotes, or write \\\\ for a backslash',
  DUPLICATE_KEY: 'a key appears twice in the same mapping',
  MISSING_CHAR: 'a closing quote, bracket or separator is missing',
  MULTILINE_IMPLICIT_KEY: 'a key must be on one line (is a ":" missing, or the indentation off?)',
  BAD_INDENT: 'the indentation is inconsistent',
  TAB_AS_INDENT: 'tabs are not allowed as indentation',
  BLOCK_AS_IMPLICIT_KEY: 'a block value cannot be a key',
  BLOCK_IN_FLOW: 'a block value inside [ ] or { }',
  MULTIPLE_DOCS: 'more than one YAML document (a "---" line)',
  MULTIPLE_ANCHORS: 'a value has more than one anchor (&)',
  MULTIPLE_TAGS: 'a value has more than one tag (!)',
  ALIAS_PROPS: 'an alias (*) cannot have an anchor or a tag',
  BAD_PROP_ORDER: 'an anchor or tag is in the wrong place',
  BAD_DIRECTIVE: 'an unknown % directive',
  BAD_COLLECTION_TYPE: 'a tag that does not fit its value',
  KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
  RESOURCE_EXHAUSTION: 'too many aliases',
  UNEXPECTED_TOKEN:
    'unexpected characters: does a value start with a special character (* & ! | > % @ `) and need quotes?',
};

/**
 * The first thing that makes the document unusable: a syntax error, an unknown tag (ruamel, and so Rasa, fails on
 * it; the YAML library only warns and silently drops the value), or an alias with no anchor (found here, with its
 * position, rather than by `toJS()` throwing).
 */
function yamlProblem(doc: Document): { code: string; offset: number } | undefined {
  const error = doc.errors[0] ?? doc.warnings.find((warning) => warning.code === 'TAG_RESOLVE_FAILED');
  if (error) return { code: error.code, offset: error.pos[0] };
  let unresolved: { code: string; offset: number } | undefined;
  visit(doc, {
    Alias(_, alias) {
      if (alias.resolve(doc) !== undefined) return undefined;
      unresolved = { code: 'BAD_ALIAS', offset: alias.range?.[0] ?? 0 };
      return visit.BREAK;
    },
  });
  return unresolved;
}

/** The dotted key (`event_broker.password`, `event_broker.queues[1]`) whose entry holds `offset`, if any. */
function keyAt(doc: Document, offset: number): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Pair(_, pair, path) {
      const start = (pair.key as Node | null)?.range?.[0];
      const end = (pair.value as Node | null)?.range?.[2] ?? (pair.key as Node | null)?.range?.[2];
      if (start === undefined || end === undefined || offset < start || offset > end) return;
      // Parents come before children: the last match is the innermost key.
      let key = '';
      const chain = [...path, pair];
      for (const [i, node] of chain.entries()) {
        if (isPair(node))
          key += `${key === '' ? '' : '.'}${isScalar(node.key) ? String(node.key.value) : '?'}`;
        else if (isSeq(node) && i + 1 < chain.length) key += `[${node.items.indexOf(chain[i + 1] as never)}]`;
      }
      // A list item has no key of its own: name it by its index.
      let value: unknown = pair.value;
      while (isSeq(value)) {
        const index = value.items.findIndex((item) => {
          const range = (item as Node | null)?.range;
          return range != null && offset >= range[0] && offset <= range[2];
        });
        if (index === -1) break;
        key += `[${index}]`;
        value = value.items[index];
      }
      found = key;
    },
  });
  return found;
}

/**
 * Rasa expands only scalars its resolver matches (ones containing `${...}`), so `pa$$word` stays literal;
 * within those, `$X` is expanded too. Rasa's resolver sees only plain scalars, so it most likely leaves
 * quoted ones alone (unverified); Parley expands both because `password: "${PW}"` is what users write.
 * Unset variables are collected in `missing` (variable → the keys using it) rather than thrown one at a time, so
 * that one run reports every variable still to set.
 */
function substitute(value: unknown, path: string, env: Env, missing: Map<string, string[]>): unknown {
  if (Array.isArray(value)) return value.map((item, i) => substitute(item, `${path}[${i}]`, env, missing));
  if (isMapping(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substitute(v, `${path}.${k}`, env, missing)]),
    );
  }
  if (typeof value !== 'string' || !TRIGGER.test(value)) return value;
  // One pass, like expandvars: a value that itself contains `$` is inserted as is, never re-expanded.
  return value.replace(REFERENCE, (match, ref: string) => {
    const name = ref.startsWith('{') ? ref.slice(1, -1) : ref;
    const found = env[name];
    if (found !== undefined) return found;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shows the empty reference as the user wrote it
    const shown = name === '' ? '${}' : name;
    const paths = missing.get(shown) ?? [];
    if (!paths.includes(path)) paths.push(path);
    missing.set(shown, paths);
    return match;
  });
}

/**
 * Every unset variable at once, each with the keys that use it. One key: `event_broker.password: environment
 * variable PW not set`; several: `environment variables not set: PW (event_broker.password), HOST (…)`.
 */
function missingVariables(source: string, missing: ReadonlyMap<string, readonly string[]>): ConfigError {
  const names = [...missing.keys()];
  const paths = [...new Set([...missing.values()].flat())];
  const plural = names.length > 1 ? 's' : '';
  if (paths.length === 1) {
    return new ConfigError(source, paths[0], `environment variable${plural} ${names.join(', ')} not set`);
  }
  const each = names.map((name) => `${name} (${missing.get(name)!.join(', ')})`).join(', ');
  return new ConfigError(source, undefined, `environment variable${plural} not set: ${each}`);
}

/** Reads one adapter's keys from {@link BrokerConfig.options}; see {@link readOptions}. */
export interface OptionReader {
  /** A string; null or absent gives the fallback. Numbers are refused: YAML already lost their spelling. */
  string(key: string): string | undefined;
  string(key: string, fallback: string): string;
  /** An integer, from a number or a string Python's `int()` accepts (`'5672'`, `'1_000'`). */
  integer(key: string, opts?: Bounds): number | undefined;
  integer(key: string, fallback: number, opts?: Bounds): number;
  /** A finite number, from a number or a string Python's `float()` accepts. */
  number(key: string, opts?: Bounds): number | undefined;
  number(key: string, fallback: number, opts?: Bounds): number;
  /** A boolean, from a boolean, 1/0, or true/false/yes/no/on/off/1/0 in any case. */
  boolean(key: string): boolean | undefined;
  boolean(key: string, fallback: boolean): boolean;
  /** A list of strings; a single string is a one-item list (Rasa's `queues: one` → ['one']). */
  stringList(key: string): string[] | undefined;
  /**
   * One of `values` (exact spelling); anything else is an error listing them, with the closest as a hint:
   * `expected "python" or "compact", found "pyhton" (did you mean "python"?)`.
   */
  oneOf<T extends string>(key: string, values: readonly T[]): T | undefined;
  oneOf<T extends string>(key: string, values: readonly T[], fallback: T): T;
  /**
   * Finishes reading: keys that were never read are an error listing them (`unknown key "foo" for the
   * amqp broker; known keys: …`), except keys in `warnOnly` (keys Rasa knows but this adapter ignores,
   * mapped to the reason), which produce one warning each via `warn` (default: `process.emitWarning`).
   * Known keys are those the adapter asked for, so read every key before calling this.
   */
  done(opts?: { warnOnly?: Record<string, string>; warn?: (message: string) => void }): void;
}

/** Inclusive limits for {@link OptionReader.integer} and {@link OptionReader.number}. */
export type Bounds = { readonly min?: number; readonly max?: number };

/**
 * Reads typed options from {@link BrokerConfig.options}, converting strings the way Rasa's brokers do
 * (`int('5672')`, booleans from 'true'/'False'/'1'/'no'…), so every adapter reports errors the same way:
 * `[parley] endpoints.yml: event_broker.port: expected an integer, found "abc"`. Values of keys that look
 * secret (pass, secret, token, key, credential) show as `<redacted>`, and URL credentials never show.
 */
export function readOptions(config: BrokerConfig, adapter: string): OptionReader {
  const section = config.section ?? 'event_broker';
  const read = new Set<string>();
  const fail = (key: string, expected: string, found: unknown, hint = ''): never => {
    const shown = SECRET_KEY.test(key) ? '<redacted>' : `${describe(found)}${hint}`;
    throw new ConfigError(config.source, `${section}.${key}`, `expected ${expected}, found ${shown}`);
  };
  const get = (key: string): unknown => {
    read.add(key);
    return Object.hasOwn(config.options, key) ? (config.options[key] ?? undefined) : undefined;
  };
  const numeric = (integer: boolean) => (key: string, a?: number | Bounds, b?: Bounds) => {
    const [fallback, bounds] = typeof a === 'number' ? [a, b] : [undefined, a];
    const value = get(key);
    if (value === undefined) return fallback;
    const what = integer ? 'an integer' : 'a number';
    const text = typeof value === 'string' ? value.trim().replace(/(?<=\d)_(?=\d)/g, '') : undefined;
    const pattern = integer ? /^[+-]?\d+$/ : /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
    const parsed =
      typeof value === 'number' ? value : text !== undefined && pattern.test(text) ? Number(text) : NaN;
    if (!Number.isFinite(parsed) || (integer && !Number.isSafeInteger(parsed))) return fail(key, what, value);
    const { min = -Infinity, max = Infinity } = bounds ?? {};
    if (parsed < min || parsed > max) {
      const range =
        max === Infinity ? `>= ${min}` : min === -Infinity ? `<= ${max}` : `between ${min} and ${max}`;
      return fail(key, `${what} ${range}`, value);
    }
    return parsed;
  };
  return {
    string: ((key: string, fallback?: string) => {
      const value = get(key);
      if (value === undefined) return fallback;
      return typeof value === 'string' ? value : fail(key, 'a string', value);
    }) as OptionReader['string'],
    integer: numeric(true) as OptionReader['integer'],
    number: numeric(false) as OptionReader['number'],
    boolean: ((key: string, fallback?: boolean) => {
      const value = get(key);
      if (value === undefined) return fallback;
      if (typeof value === 'boolean') return value;
      const word = String(typeof value === 'number' || typeof value === 'string' ? value : '').toLowerCase();
      if (['true', 'yes', 'on', '1'].includes(word)) return true;
      if (['false', 'no', 'off', '0'].includes(word)) return false;
      return fail(key, 'a boolean', value);
    }) as OptionReader['boolean'],
    stringList: (key) => {
      const value = get(key);
      if (value === undefined) return undefined;
      if (typeof value === 'string') return [value];
      if (!Array.isArray(value)) return fail(key, 'a list of strings', value);
      return value.map((item, i) =>
        typeof item === 'string' ? item : fail(`${key}[${i}]`, 'a string', item),
      );
    },
    oneOf: ((key: string, values: readonly string[], fallback?: string) => {
      const value = get(key);
      if (value === undefined) return fallback;
      if (typeof value === 'string' && values.includes(value)) return value;
      const quoted = values.map((v) => JSON.stringify(v));
      const expected =
        quoted.length <= 2
          ? quoted.join(' or ')
          : `one of ${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
      return fail(key, expected, value, typeof value === 'string' ? didYouMeanHint(value, values) : '');
    }) as OptionReader['oneOf'],
    done: (opts) => {
      const warnOnly = opts?.warnOnly ?? {};
      const unread = Object.keys(config.options).filter((key) => !read.has(key));
      const unknown = unread.filter((key) => !Object.hasOwn(warnOnly, key));
      if (unknown.length > 0) {
        const knownKeys = [...new Set([...read, ...Object.keys(warnOnly)])].sort();
        const known = knownKeys.join(', ') || '(none)';
        const names = unknown
          .map((key) => `${JSON.stringify(key)}${didYouMeanHint(key, knownKeys)}`)
          .join(', ');
        const detail = `unknown key${unknown.length > 1 ? 's' : ''} ${names} for the ${adapter} broker`;
        throw new ConfigError(config.source, section, `${detail}; known keys: ${known}`);
      }
      const warn = opts?.warn ?? ((message: string) => process.emitWarning(message, 'ParleyConfigWarning'));
      const prefix = `[parley] ${config.source}: ${section}`;
      for (const key of unread) warn(`${prefix}.${key}: ignored by the ${adapter} broker: ${warnOnly[key]}`);
    },
  };
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Shows a found value in an error; URL credentials are never printed. */
function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (isMapping(value)) return 'a mapping';
  if (typeof value !== 'string') return String(value);
  const safe = value.replace(/\/\/\S*@/g, '//<redacted>@');
  return JSON.stringify(safe.length > 80 ? `${safe.slice(0, 77)}...` : safe);
}
