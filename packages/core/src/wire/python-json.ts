/**
 * Byte-exact compatibility with Python's `json` module as Rasa uses it (`json.dumps(obj)`, default settings).
 *
 * Plain JS values lose what Python keeps: the int/float distinction (`1.0` vs `1`), integers beyond 2^53 and
 * the source order of integer-like object keys. {@link scanNumberShape} records exactly those losses from the
 * source text so that {@link dumpsPython} can reproduce the original bytes.
 *
 * @module
 */

/**
 * `s.charCodeAt(i)` through a reference taken once. Once any loaded module defines `class … extends String` (ioredis
 * does), V8 no longer inlines `charCodeAt` looked up on `String.prototype`: every call site here got about 4× slower
 * and the python encoder 2.3× slower. A constant reference is inlined either way.
 */
const stringCharCodeAt = String.prototype.charCodeAt;
function charCode(s: string, i: number): number {
  return stringCharCodeAt.call(s, i);
}

/** A tree that records, per position in a JSON value, what plain JS values cannot carry. */
export type NumberShape =
  /** Written as a float in the source but integral in JS (`1.0`, `-0.0`, `1e+16`): prints as a Python float. */
  | { readonly kind: 'float' }
  /** An integer literal beyond Number.MAX_SAFE_INTEGER: printed verbatim while the value still equals `Number(raw)`. */
  | { readonly kind: 'raw'; readonly raw: string }
  /**
   * An object or array. `children` is keyed by property name or array index and holds only positions that
   * need something. `keys` is set only for objects whose source key order differs from JS own-key order.
   */
  | {
      readonly kind: 'node';
      readonly children: ReadonlyMap<string | number, NumberShape>;
      readonly keys?: readonly string[];
    };

/**
 * Static float positions, e.g. `{ timestamp: true, intent_ranking: { '*': { confidence: true } } }`.
 * `'*'` matches every array index and every property name; `true` marks a number that is always a float.
 */
export type FloatHints = { readonly [key: string]: FloatHints | true };

/** Options for {@link dumpsPython}. */
export interface PythonDumpOptions {
  /** Shape recorded from the source text ({@link scanNumberShape}), if any. */
  readonly shape?: NumberShape;
  /** Positions that are always floats; a number is printed as a float if either this or `shape` marks it. */
  readonly floats?: FloatHints;
}

/** Thrown by {@link parseJson} for malformed input; the message names line, column, expected and found. */
export class JsonSyntaxError extends SyntaxError {
  /** Zero-based UTF-16 offset of the offending character. */
  readonly offset: number;
  /** One-based line number. */
  readonly line: number;
  /** One-based column, in UTF-16 code units. */
  readonly column: number;

  /** Creates the error; `message` should already mention the position. */
  constructor(message: string, offset: number, line: number, column: number) {
    super(message);
    this.name = 'JsonSyntaxError';
    this.offset = offset;
    this.line = line;
    this.column = column;
  }
}

/**
 * Python `repr(float)` of a JS number, exactly as Python 3 prints it (and `json.dumps` writes it).
 * NaN, Infinity and -Infinity become `NaN`, `Infinity` and `-Infinity`, as in `json.dumps`.
 */
export function pythonFloatRepr(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  const a = Math.abs(n);
  if (a === Number.POSITIVE_INFINITY) return n > 0 ? 'Infinity' : '-Infinity';
  if (a === 0) return Object.is(n, -0) ? '-0.0' : '0.0';
  // Both languages print the shortest round-tripping digits; in Python's fixed range (decimal exponent
  // -4..15) JS also uses fixed notation, so only the missing '.0' differs. The bounds are exact because a
  // shortest repr that round-trips cannot cross a power of ten that is itself a double.
  if (a >= 1e-4 && a < 1e16) {
    const s = String(n);
    return s.includes('.') ? s : s + '.0';
  }
  const s = n.toExponential();
  const e = s.indexOf('e');
  // Python pads the exponent to two digits: 1e-05, 5e+16.
  return s.length - e === 3 ? s.slice(0, e + 2) + '0' + s.slice(e + 2) : s;
}

// ---------------------------------------------------------------------------------------------------------
// Shape scanning

const FLOAT: NumberShape = Object.freeze({ kind: 'float' });
const INDEX_KEY = /^(?:0|[1-9]\d{0,9})$/;

class Frame {
  index = 0;
  keyStart = 0;
  keyEnd = 0;
  expectKey: boolean;
  /** A non-index key was seen: JS moves any later index key ahead of it. */
  sawName = false;
  lastIndex = -1;
  /** Index keys may be out of JS order; checked exactly at close, since duplicate keys defeat this test. */
  reorder = false;
  /** Where each key starts: decoded only if `reorder` is set, and never rescanned, so scanning stays linear. */
  keyStarts: number[] | undefined;
  children: Map<string | number, NumberShape> | undefined;
  constructor(readonly array: boolean) {
    this.expectKey = !array;
  }
}

/** Offset just past the closing quote of the string starting at `start`. */
function stringEnd(text: string, start: number): number {
  let j = start;
  for (;;) {
    j = text.indexOf('"', j + 1);
    if (j === -1) return text.length;
    let k = j - 1;
    while (charCode(text, k) === 0x5c) k--;
    if ((j - k) % 2 === 1) return j + 1;
  }
}

function decodeString(text: string, start: number, end: number): string {
  const raw = text.slice(start + 1, end - 1);
  return raw.includes('\\') ? (JSON.parse(text.slice(start, end)) as string) : raw;
}

/**
 * Whether a plain decimal (no exponent; `dot` is the offset of its '.') is an integral double. An all-zero
 * fraction is; a non-zero one is not while there are at most 15 digits (15 significant digits survive a round
 * trip through a double). A longer one may round to an integer (`1.00000000000000001`), but not if its first
 * non-zero fraction digit, at fraction position z + 1, is 1..8: then the fraction is at least 10^-(z+1) from
 * any integer, while half an ulp of a value with nI integer digits is below 10^nI * 1.2e-16, which is smaller
 * whenever nI + z + 1 <= 15. That spares the slice and Number() for timestamps and confidences, which are long.
 */
function integralDecimal(text: string, start: number, dot: number, end: number): boolean {
  let f = dot + 1;
  while (f < end && charCode(text, f) === 0x30) f++;
  if (f === end) return true;
  if (end - start <= 16) return false;
  const intStart = charCode(text, start) === 0x2d ? start + 1 : start;
  const intDigits = charCode(text, intStart) === 0x30 ? 0 : dot - intStart;
  if (charCode(text, f) !== 0x39 && intDigits + (f - dot) <= 15) return false;
  return Number.isInteger(Number(text.slice(start, end)));
}

function isIndexKey(key: string): boolean {
  return INDEX_KEY.test(key) && Number(key) < 4294967295;
}

function attach(text: string, f: Frame, shape: NumberShape): void {
  f.children ??= new Map();
  f.children.set(f.array ? f.index : decodeString(text, f.keyStart, f.keyEnd), shape);
}

function noteKey(text: string, f: Frame, start: number, end: number): void {
  f.keyStart = start;
  f.keyEnd = end;
  f.expectKey = false;
  f.keyStarts ??= [];
  f.keyStarts.push(start);
  const d = charCode(text, start + 1);
  if (d === 0x5c || (d >= 0x30 && d <= 0x39)) {
    const key = decodeString(text, start, end);
    if (!isIndexKey(key)) f.sawName = true;
    else if (f.sawName || Number(key) <= f.lastIndex) f.reorder = true;
    else f.lastIndex = Number(key);
  } else {
    f.sawName = true;
  }
  // A duplicate key's later value replaces the earlier one, and so must its record.
  f.children?.delete(decodeString(text, start, end));
}

function closeFrame(text: string, f: Frame): NumberShape | undefined {
  let keys: string[] | undefined;
  if (f.reorder) {
    const src = [...new Set(f.keyStarts!.map((k) => decodeString(text, k, stringEnd(text, k))))];
    const js = Object.keys(Object.fromEntries(src.map((k) => [k, 0])));
    if (src.some((k, j) => k !== js[j])) keys = src;
  }
  if (keys !== undefined) return { kind: 'node', children: f.children ?? new Map(), keys };
  return f.children === undefined || f.children.size === 0
    ? undefined
    : { kind: 'node', children: f.children };
}

/**
 * Scans JSON text (already known to parse) and returns the {@link NumberShape} of everything `JSON.parse`
 * loses, or `undefined` when nothing is lost. Accepts `NaN`/`Infinity`/`-Infinity`. Linear time; nesting
 * is tracked on an explicit stack.
 */
export function scanNumberShape(text: string): NumberShape | undefined {
  const stack: Frame[] = [];
  let top: Frame | undefined;
  let root: NumberShape | undefined;
  const n = text.length;
  for (let i = 0; i < n; ) {
    const c = charCode(text, i);
    if (c === 0x22) {
      const end = stringEnd(text, i);
      if (top?.expectKey) noteKey(text, top, i, end);
      i = end;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const s = i;
      let dot = -1;
      let exp = false;
      for (i++; i < n; i++) {
        const d = charCode(text, i);
        if (d >= 0x30 && d <= 0x39) continue;
        if (d === 0x2e) dot = i;
        else if (d === 0x65 || d === 0x45) exp = true;
        else if (d !== 0x2b && d !== 0x2d) break;
      }
      let shape: NumberShape | undefined;
      if (dot < 0 && !exp) {
        // '-' alone (from -Infinity) is too short to get here; 15 digits are always safe.
        if (i - s > 15 && !Number.isSafeInteger(Number(text.slice(s, i))))
          shape = { kind: 'raw', raw: text.slice(s, i) };
      } else if (exp ? Number.isInteger(Number(text.slice(s, i))) : integralDecimal(text, s, dot, i)) {
        shape = FLOAT;
      }
      if (shape !== undefined) {
        if (top === undefined) root = shape;
        else attach(text, top, shape);
      }
    } else if (c === 0x7b || c === 0x5b) {
      if (top !== undefined) stack.push(top);
      top = new Frame(c === 0x5b);
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      if (top === undefined) break;
      const shape = closeFrame(text, top);
      top = stack.pop();
      if (shape !== undefined) {
        if (top === undefined) root = shape;
        else attach(text, top, shape);
      }
      i++;
    } else {
      if (c === 0x2c && top !== undefined) {
        if (top.array) top.index++;
        else top.expectKey = true;
      }
      i++;
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

const MAX_DEPTH = 512;
const PLAIN_RUN = /[^"\\\x00-\x1f]*/y;
const ESCAPED = '"\\/bfnrt';
const UNESCAPED = '"\\/\b\f\n\r\t';
const LITERAL_STARTS = 'tfnNI-';
const LITERALS = ['true', 'false', 'null', 'NaN', 'Infinity', '-Infinity'];
const LITERAL_VALUES = [true, false, null, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
const HEX4 = /^[\da-fA-F]{4}$/;
let scanEnd = 0;

function fail(text: string, offset: number, head: string, tail = ''): JsonSyntaxError {
  let line = 1;
  let lineStart = 0;
  for (let j = text.indexOf('\n'); j !== -1 && j < offset; j = text.indexOf('\n', j + 1)) {
    line++;
    lineStart = j + 1;
  }
  const column = offset - lineStart + 1;
  const message = `${head} at line ${line}, column ${column} (offset ${offset})${tail}`;
  return new JsonSyntaxError(message, offset, line, column);
}

function unexpected(text: string, offset: number, expected: string): JsonSyntaxError {
  const c = charCode(text, offset);
  const found =
    offset >= text.length
      ? 'end of input'
      : c >= 0x20 && c < 0x7f
        ? `'${text[offset]}'`
        : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
  return fail(text, offset, `Unexpected ${found}`, `: expected ${expected}`);
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function readString(text: string, start: number): string {
  let out = '';
  for (let i = start + 1; ; ) {
    PLAIN_RUN.lastIndex = i;
    PLAIN_RUN.test(text);
    const j = PLAIN_RUN.lastIndex;
    const c = charCode(text, j);
    if (c === 0x22) {
      scanEnd = j + 1;
      return out + text.slice(i, j);
    }
    if (c !== 0x5c) {
      throw unexpected(text, j, j >= text.length ? `'"'` : 'an escape sequence, not a raw control character');
    }
    out += text.slice(i, j);
    const e = charCode(text, j + 1);
    if (e === 0x75) {
      const hex = text.slice(j + 2, j + 6);
      if (!HEX4.test(hex))
        throw unexpected(text, j + 2 + (/[^\da-fA-F]/.exec(hex)?.index ?? 4), 'a hex digit');
      out += String.fromCharCode(Number.parseInt(hex, 16));
      i = j + 6;
    } else {
      const k = j + 1 < text.length ? ESCAPED.indexOf(text.charAt(j + 1)) : -1;
      if (k < 0) throw unexpected(text, j + 1, `one of "\\/bfnrtu after '\\'`);
      out += UNESCAPED.charAt(k);
      i = j + 2;
    }
  }
}

function skipDigits(text: string, i: number, what: string): number {
  const c = charCode(text, i);
  if (!(c >= 0x30 && c <= 0x39)) throw unexpected(text, i, what);
  while (++i < text.length) {
    const d = charCode(text, i);
    if (!(d >= 0x30 && d <= 0x39)) break;
  }
  return i;
}

function readNumber(text: string, start: number): number {
  let i = charCode(text, start) === 0x2d ? start + 1 : start;
  i = charCode(text, i) === 0x30 ? i + 1 : skipDigits(text, i, 'a digit');
  if (charCode(text, i) === 0x2e) i = skipDigits(text, i + 1, 'a digit after the decimal point');
  if ((charCode(text, i) | 0x20) === 0x65) {
    const s = charCode(text, i + 1);
    i = skipDigits(text, s === 0x2b || s === 0x2d ? i + 2 : i + 1, 'a digit in the exponent');
  }
  scanEnd = i;
  return Number(text.slice(start, i));
}

function readLiteral(text: string, start: number, word: string, value: unknown): unknown {
  for (let k = 0; k < word.length; k++) {
    if (charCode(text, start + k) !== charCode(word, k)) throw unexpected(text, start + k, `'${word}'`);
  }
  scanEnd = start + word.length;
  return value;
}

function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  // Plain assignment of '__proto__' would replace the prototype; JSON.parse creates an own property.
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** Reads `"key" :` at `i` (after whitespace) and returns the key; `scanEnd` is left after the colon. */
function readKey(text: string, i: number, expected: string): string {
  if (charCode(text, i) !== 0x22) throw unexpected(text, i, expected);
  const key = readString(text, i);
  i = scanEnd;
  while (isWs(charCode(text, i))) i++;
  if (charCode(text, i) !== 0x3a) throw unexpected(text, i, `':'`);
  scanEnd = i + 1;
  return key;
}

/** The full grammar with positioned errors; only reached when JSON.parse fails or nesting is too deep. */
function parseSlow(text: string): unknown {
  const n = text.length;
  const stack: (unknown[] | Record<string, unknown>)[] = [];
  const keys: string[] = [];
  let i = 0;
  for (;;) {
    while (isWs(charCode(text, i))) i++;
    const c = charCode(text, i);
    let value: unknown;
    if (c === 0x5b || c === 0x7b) {
      if (stack.length === MAX_DEPTH) throw fail(text, i, `nesting deeper than ${MAX_DEPTH}`);
      i++;
      while (isWs(charCode(text, i))) i++;
      const d = charCode(text, i);
      if (c === 0x5b && d === 0x5d) value = [];
      else if (c === 0x7b && d === 0x7d) value = {};
      else if (c === 0x5b) {
        stack.push([]);
        keys.push('');
        continue;
      } else {
        keys.push(readKey(text, i, `a string key or '}'`));
        stack.push({});
        i = scanEnd;
        continue;
      }
      i++;
    } else {
      const literal = LITERAL_STARTS.indexOf(text.charAt(i) || '?');
      if (c === 0x22) value = readString(text, i);
      else if ((c === 0x2d && charCode(text, i + 1) !== 0x49) || (c >= 0x30 && c <= 0x39))
        value = readNumber(text, i);
      else if (literal >= 0) value = readLiteral(text, i, LITERALS[literal]!, LITERAL_VALUES[literal]);
      else throw unexpected(text, i, 'a value');
      i = scanEnd;
    }
    // Store the value, then close every container that ends right after it.
    for (;;) {
      const top = stack[stack.length - 1];
      while (isWs(charCode(text, i))) i++;
      if (top === undefined) {
        if (i < n) throw unexpected(text, i, 'end of input');
        return value;
      }
      const array = Array.isArray(top);
      if (array) top.push(value);
      else setKey(top, keys[keys.length - 1]!, value);
      const d = charCode(text, i);
      if (d === 0x2c) {
        i++;
        if (!array) {
          while (isWs(charCode(text, i))) i++;
          keys[keys.length - 1] = readKey(text, i, 'a string key');
          i = scanEnd;
        }
        break;
      }
      if (d !== (array ? 0x5d : 0x7d)) throw unexpected(text, i, array ? `',' or ']'` : `',' or '}'`);
      i++;
      stack.pop();
      keys.pop();
      value = top;
    }
  }
}

function deeperThanMax(text: string): boolean {
  // Valid JSON nested deeper than MAX_DEPTH holds more than MAX_DEPTH openers and as many closers.
  if (text.length <= 2 * MAX_DEPTH + 1) return false;
  // Counting openers (memchr-fast, strings included) rules out nearly every text without a real scan.
  let openers = 0;
  for (let j = text.indexOf('['); j !== -1 && openers <= MAX_DEPTH; j = text.indexOf('[', j + 1)) openers++;
  for (let j = text.indexOf('{'); j !== -1 && openers <= MAX_DEPTH; j = text.indexOf('{', j + 1)) openers++;
  if (openers <= MAX_DEPTH) return false;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = charCode(text, i);
    if (c === 0x22) i = stringEnd(text, i) - 1;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Parses JSON text like `JSON.parse`, additionally accepting Python's `NaN`, `Infinity` and `-Infinity`.
 * Duplicate keys keep the last value at the first key's position; `__proto__` becomes an own property.
 *
 * @throws {@link JsonSyntaxError} on malformed input or nesting deeper than 512.
 */
export function parseJson(text: string): unknown {
  const value = parseJsonNative(text);
  return value === NATIVE_REFUSED ? parseSlow(text) : value;
}

/** What {@link parseJsonNative} returns for a text the native parser refuses. @internal */
export const NATIVE_REFUSED: unique symbol = Symbol('refused by JSON.parse');

/**
 * The codec's hot path (once per consumed message, so no result object): `parseJson`'s value, or `NATIVE_REFUSED`
 * when `JSON.parse` refused the text. Then {@link parseJsonPython} parses it, and the text needed Python's tokens
 * (NaN, Infinity) or is not JSON at all.
 * @throws {@link JsonSyntaxError} for nesting deeper than 512.
 * @internal
 */
export function parseJsonNative(text: string): unknown {
  let value: unknown;
  try {
    // The native parser accepts exactly the same grammar minus the non-finite tokens, and is far faster.
    value = JSON.parse(text);
  } catch {
    return NATIVE_REFUSED;
  }
  return deeperThanMax(text) ? parseSlow(text) : value;
}

/**
 * The full grammar, Python's tokens included, with positioned errors.
 * @throws {@link JsonSyntaxError} on malformed input or nesting deeper than 512.
 * @internal
 */
export const parseJsonPython: (text: string) => unknown = parseSlow;

// ---------------------------------------------------------------------------------------------------------
// Encoding
//
// json.dumps output is pure ASCII (ensure_ascii), so the encoder writes bytes straight into a reused buffer, one
// byte per character. Building the text by concatenation instead made a rope of a few hundred pieces per event,
// and flattening that into bytes cost as much as the walk itself (a third of `encodeEvent`, profiled).

const MAX_ENCODE_DEPTH = 1000; // Python's own recursion limit: deeper values cannot come from Rasa anyway.
/** What json.dumps escapes: control characters, `"`, `\` and everything past `~` (ensure_ascii). */
const NEEDS_ESCAPE = /[\x00-\x1f"\\\x7f-\uffff]/;
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
/** From this length on, a string without escapes is copied by `Buffer#write`: below it, the call costs more. */
const NATIVE_COPY_MIN = 32;
const HEX_DIGITS = Uint8Array.from('0123456789abcdef', (c) => charCode(c, 0));
/** For the characters json.dumps writes as `\b`, `\t`, `\n`, `\f`, `\r`, `\"`, `\\`: the letter after `\`. */
const SHORT_ESCAPES = new Uint8Array(0x80);
for (const e of ['b\b', 't\t', 'n\n', 'f\f', 'r\r', '""', '\\\\'])
  SHORT_ESCAPES[charCode(e, 1)] = charCode(e, 0);
/**
 * The writer's slab, as Node's Buffer pool: a result of up to half of it is returned as a view into it (no copy),
 * and the next one is written after it. Larger ones are copied out, so that a small slab never pins a big one.
 */
const SLAB = 8 * 1024;
const POOLED_MAX = SLAB >>> 1;
/** A fresh slab is taken when less than this is left: most events fit, so few get copied over mid-way. */
const SLAB_MIN_FREE = 1024;
const NO_SLAB = Buffer.alloc(0);

type Hint = FloatHints | true | undefined;
type Node = Extract<NumberShape, { kind: 'node' }>;

/**
 * The shape of a value decoded from a source text, still to be found out. Scanning the source for it costs about
 * as much as encoding, and only two things need it:
 *
 * - an integral number: int or float in the source, or an unsafe integer's digits? Rather than scanning, the
 *   encoder reads the token at the same offset in the source, where it is when the source is what the encoder is
 *   writing (an unchanged event that Python wrote). That is a guess, recorded; at the end, an output equal to the
 *   source proves every guess right (see `confirmGuesses`), else the source is scanned and each guess checked;
 * - an object whose first own key is integer-like (JS moved such keys first: where were they in the source?):
 *   the source is scanned then, once.
 *
 * Most Rasa events hold neither, and the rest are mostly re-encoded unchanged: few get scanned.
 */
const PENDING: Node = { kind: 'node', children: new Map() };

/** Options of the codec's python encoder: {@link PythonDumpOptions}, or the source text to consult on demand. */
export interface PythonEncodeOptions extends PythonDumpOptions {
  /**
   * The text `value` was decoded from, consulted only if the value holds something plain JS cannot tell (see
   * PENDING). Takes the place of `shape`.
   */
  readonly source?: string;
}

/** A number whose shape was read at its offset in the source rather than scanned for. */
interface Guess {
  /** Where its text is in the output, relative to the output's start. */
  readonly start: number;
  readonly end: number;
  readonly value: number;
  readonly hint: Hint;
  /** Its path from the root, to look its shape up if the guess is to be checked. */
  readonly path: readonly (string | number)[];
}

class EncodeError extends Error {
  /** Innermost segment first: each container appends its own while the error unwinds. */
  readonly path: (string | number)[] = [];
  constructor(
    readonly reason: string,
    readonly range = false,
  ) {
    super(reason);
  }
}

/** `v.toJSON(key)` where `v` has one, as JSON.stringify does; else `v`. */
function viaToJSON(v: unknown, key: string): unknown {
  return typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function'
    ? (v as { toJSON(key: string): unknown }).toJSON(key)
    : v;
}

/**
 * Whether a number needs its shape: an integral one may have been a float or an unsafe integer in the source, and
 * an infinite one an integer too long for a double (`1e400` written out). Any other number prints as a Python
 * float whatever the shape says.
 */
function needsShape(v: number): boolean {
  return Number.isInteger(v) || Math.abs(v) === Number.POSITIVE_INFINITY;
}

/** How Python prints number `v`, given what its shape and the float hints say about it. */
function numberText(v: number, shape: NumberShape | undefined, hint: Hint): string {
  if (shape?.kind === 'float') return pythonFloatRepr(v);
  if (shape?.kind === 'raw' && Number(shape.raw) === v) return shape.raw;
  if (hint === true || !Number.isInteger(v)) return pythonFloatRepr(v);
  // Python ints never use exponent notation; String(-0) is '0', which is what a Python int prints.
  return v > -1e21 && v < 1e21 ? String(v) : BigInt(v).toString();
}

/**
 * The shape the number token at `at` in `text` gives, if it is one: what scanNumberShape would record for it
 * (FLOAT for a float token, the digits of an unsafe integer), assuming the value there is integral.
 */
function tokenShape(text: string, at: number): NumberShape | undefined {
  let i = charCode(text, at) === 0x2d ? at + 1 : at;
  let float = false;
  for (; i < text.length; i++) {
    const d = charCode(text, i);
    if (d >= 0x30 && d <= 0x39) continue;
    if (d === 0x2e || d === 0x65 || d === 0x45) float = true;
    else if (d !== 0x2b && d !== 0x2d) break;
  }
  if (float) return FLOAT;
  // As in scanNumberShape: 15 digits are always safe.
  if (i - at > 15 && !Number.isSafeInteger(Number(text.slice(at, i))))
    return { kind: 'raw', raw: text.slice(at, i) };
  return undefined;
}

function hasEnumerable(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

function orderKeys(source: readonly string[], own: string[]): string[] {
  const present = new Set(own);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const k of source) {
    if (present.has(k) && !seen.has(k)) {
      seen.add(k);
      out.push(k);
    }
  }
  for (const k of own) if (!seen.has(k)) out.push(k);
  return out;
}

/** Copies `s` into `b` at `p` with json.dumps' escapes; returns the end. `b` must have room for `6 * s.length`. */
function writeChars(b: Buffer, p: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = charCode(s, i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) {
      b[p++] = c;
      continue;
    }
    b[p++] = 0x5c;
    const e = c < 0x80 ? SHORT_ESCAPES[c]! : 0;
    if (e !== 0) {
      b[p++] = e;
    } else {
      // \uXXXX with lowercase hex, as Python writes it; surrogates (paired or lone) one code unit at a time.
      b[p++] = 0x75;
      b[p++] = HEX_DIGITS[c >> 12]!;
      b[p++] = HEX_DIGITS[(c >> 8) & 15]!;
      b[p++] = HEX_DIGITS[(c >> 4) & 15]!;
      b[p++] = HEX_DIGITS[c & 15]!;
    }
  }
  return p;
}

/** One encoding in progress: the output bytes so far, and what the walk needs to know about where it is. */
class Writer {
  buf = Buffer.allocUnsafeSlow(SLAB);
  /** Where the current output starts in `buf`; everything before it may belong to earlier results. */
  start = 0;
  pos = 0;
  /** The containers being written, outermost first: for cycle detection and the depth limit. */
  readonly stack: object[] = [];
  /** `path[d]`: the key or index leading from the container at depth d to the one at depth d + 1. */
  readonly path: (string | number)[] = [];
  /** The source text of the value (its shape is PENDING), or undefined. */
  source: string | undefined = undefined;
  /** Whether `source` has been scanned; `root` is then its shape. */
  scanned = false;
  root: NumberShape | undefined = undefined;
  /** Numbers whose shape was guessed, in output order (see PENDING). */
  readonly guesses: Guess[] = [];
  /** Object.prototype has no enumerable property, so for-in lists a plain object's own keys only. */
  forIn = true;

  /** Starts an output, after the previous one (8-byte aligned, as Node's pool does) or in a fresh slab. */
  begin(): void {
    const p = (this.pos + 7) & ~7;
    if (p + SLAB_MIN_FREE > this.buf.length) {
      this.buf = Buffer.allocUnsafeSlow(SLAB);
      this.start = this.pos = 0;
    } else {
      this.start = this.pos = p;
    }
  }

  /** Forgets the walk's state; the output is dealt with by the caller. */
  clear(): void {
    // Only a throw leaves containers on the stack; stale `path` entries are never read (they are set first).
    if (this.stack.length !== 0) this.stack.length = 0;
    if (this.guesses.length !== 0) this.guesses.length = 0;
    this.source = undefined;
    this.scanned = false;
    this.root = undefined;
    // A slab grown for one large value is not kept: the next output starts in a fresh one of the usual size.
    if (this.buf.length > SLAB) {
      this.buf = NO_SLAB;
      this.start = this.pos = 0;
    }
  }

  /** Makes room for `n` more bytes, moving the current output to a larger slab if need be. */
  ensure(n: number): void {
    if (this.pos + n > this.buf.length) {
      const used = this.pos - this.start;
      const next = Buffer.allocUnsafeSlow(Math.max(SLAB, 2 * (used + n)));
      this.buf.copy(next, 0, this.start, this.pos);
      this.buf = next;
      this.start = 0;
      this.pos = used;
    }
  }

  /** The node at `path[0..depth)` of the source's shape, scanning the source first if need be. */
  resolve(depth: number): Node | undefined {
    const s = this.shapeAt(depth);
    return s?.kind === 'node' ? s : undefined;
  }

  /** The shape at `path[0..depth)` of the source's shape, scanning the source first if need be. */
  shapeAt(depth: number, path: readonly (string | number)[] = this.path): NumberShape | undefined {
    if (!this.scanned) {
      this.root = scanNumberShape(this.source ?? '');
      this.scanned = true;
    }
    let s = this.root;
    for (let d = 0; d < depth && s !== undefined; d++) {
      s = s.kind === 'node' ? s.children.get(path[d]!) : undefined;
    }
    return s;
  }

  /**
   * Makes sure every guessed shape was right. An output equal to the source proves them all right: the output has
   * no duplicate key (an object's own keys are distinct), so neither has the source, whose value at each guessed
   * path is then the token at the guess's offset, which is the very text written there. A float token there is
   * one the scan records as a float (its value, the number's, is integral), and digits are recorded as raw by
   * the same rule as tokenShape's. Otherwise the source is scanned, each guess checked, and a number printed wrong
   * is rewritten in place (an event edited in place, another writer's spacing, a duplicate key).
   */
  confirmGuesses(): void {
    const written = this.buf.toString('latin1', this.start, this.pos);
    if (written === this.source) return;
    let output = '';
    let last = 0;
    for (const g of this.guesses) {
      const want = numberText(g.value, this.shapeAt(g.path.length, g.path), g.hint);
      if (written.slice(g.start, g.end) === want) continue;
      output += written.slice(last, g.start) + want;
      last = g.end;
    }
    if (last === 0) return;
    output += written.slice(last);
    this.pos = this.start;
    this.ensure(output.length);
    this.pos += this.buf.write(output, this.pos, 'latin1');
  }

  /** Writes `v` (already through toJSON, and not undefined). */
  value(v: unknown, shape: NumberShape | undefined, hint: Hint): void {
    switch (typeof v) {
      case 'string':
        this.string(v);
        return;
      case 'number':
        this.number(v, shape, hint);
        return;
      case 'boolean':
        this.ascii(v ? 'true' : 'false');
        return;
      case 'object':
        if (v === null) this.ascii('null');
        else this.container(v, shape, hint);
        return;
      default:
        throw new EncodeError(`cannot encode a ${typeof v}`);
    }
  }

  /** Writes text known to be printable ASCII with nothing to escape (numbers, literals). */
  ascii(s: string): void {
    const n = s.length;
    this.ensure(n);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) b[p++] = charCode(s, i);
    this.pos = p;
  }

  string(s: string): void {
    this.ensure(6 * s.length + 2);
    const b = this.buf;
    let p = this.pos;
    b[p++] = 0x22;
    if (s.length >= NATIVE_COPY_MIN && !NEEDS_ESCAPE.test(s)) p += b.write(s, p, 'latin1');
    else p = writeChars(b, p, s);
    b[p++] = 0x22;
    this.pos = p;
  }

  /** Writes `, ` (unless `first`), then the quoted key and `: `. */
  key(k: string, first: boolean): void {
    this.ensure(6 * k.length + 6);
    const b = this.buf;
    let p = this.pos;
    if (!first) {
      b[p++] = 0x2c;
      b[p++] = 0x20;
    }
    b[p++] = 0x22;
    p = writeChars(b, p, k);
    b[p++] = 0x22;
    b[p++] = 0x3a;
    b[p++] = 0x20;
    this.pos = p;
  }

  number(v: number, shape: NumberShape | undefined, hint: Hint): void {
    if (shape !== PENDING || !needsShape(v)) {
      this.ascii(numberText(v, shape === PENDING ? undefined : shape, hint));
      return;
    }
    const depth = this.stack.length;
    if (this.scanned) {
      this.ascii(numberText(v, this.shapeAt(depth), hint));
      return;
    }
    const start = this.pos - this.start;
    this.ascii(numberText(v, tokenShape(this.source ?? '', start), hint));
    this.guesses.push({ start, end: this.pos - this.start, value: v, hint, path: this.path.slice(0, depth) });
  }

  container(v: object, shape: NumberShape | undefined, hint: Hint): void {
    const stack = this.stack;
    if (stack.includes(v)) throw new EncodeError('circular structure');
    const depth = stack.length;
    if (depth >= MAX_ENCODE_DEPTH) throw new EncodeError(`nesting deeper than ${MAX_ENCODE_DEPTH}`, true);
    stack.push(v);
    const node = shape?.kind === 'node' ? shape : undefined;
    const hints = typeof hint === 'object' ? hint : undefined;
    if (Array.isArray(v)) this.array(v, node, hints, depth);
    else this.object(v, node, hints, depth);
    stack.pop();
  }

  array(a: unknown[], node: Node | undefined, hints: FloatHints | undefined, depth: number): void {
    this.ensure(1);
    this.buf[this.pos++] = 0x5b;
    let i = 0;
    try {
      for (; i < a.length; i++) {
        if (i > 0) this.ascii(', ');
        const c = viaToJSON(a[i], String(i));
        if (c === undefined) {
          this.ascii('null');
          continue;
        }
        // Under PENDING, children are PENDING too, and the path to them is kept for looking their shape up.
        if (node === PENDING) this.path[depth] = i;
        this.value(
          c,
          node === PENDING ? PENDING : node?.children.get(i),
          hints === undefined ? undefined : (hints[i] ?? hints['*']),
        );
      }
    } catch (e) {
      if (e instanceof EncodeError) e.path.push(i);
      throw e;
    }
    this.ensure(1);
    this.buf[this.pos++] = 0x5d;
  }

  object(o: object, node: Node | undefined, hints: FloatHints | undefined, depth: number): void {
    // for-in reads each property through V8's enum cache, several times faster than `o[k]` over Object.keys(o)
    // (a fifth of the walk, profiled). It lists the same keys in the same order when nothing is inherited: for
    // an object whose prototype is Object.prototype (or null) while that has no enumerable property.
    const proto = Object.getPrototypeOf(o);
    if (node?.keys !== undefined || !this.forIn || (proto !== Object.prototype && proto !== null)) {
      this.objectByKeys(o, node, hints, depth);
      return;
    }
    const start = this.pos;
    this.ensure(1);
    this.buf[this.pos++] = 0x7b;
    // Under PENDING, the first key decides whether the source order must be looked up (see objectByKeys).
    let checkOrder = node === PENDING;
    let first = true;
    let k = '';
    try {
      for (k in o) {
        if (checkOrder) {
          checkOrder = false;
          const d = charCode(k, 0);
          if (d >= 0x30 && d <= 0x39) {
            node = this.resolve(depth);
            if (node?.keys !== undefined) break;
          }
        }
        const c = viaToJSON((o as Record<string, unknown>)[k], k);
        if (c === undefined) continue;
        this.member(k, c, first, node, hints, depth);
        first = false;
      }
    } catch (e) {
      if (e instanceof EncodeError) e.path.push(k);
      throw e;
    }
    if (node?.keys !== undefined) {
      // The source had its keys in another order: start this object again in that order.
      this.pos = start;
      this.objectByKeys(o, node, hints, depth);
      return;
    }
    this.ensure(1);
    this.buf[this.pos++] = 0x7d;
  }

  /** `object` over Object.keys(o), in source order where the shape records one. */
  objectByKeys(o: object, node: Node | undefined, hints: FloatHints | undefined, depth: number): void {
    let keys = Object.keys(o);
    // JS lists integer-like keys first, so only an object whose first key starts with a digit can have had
    // them elsewhere in the source. Without one, own-key order is insertion order, as in a Python dict.
    if (node === PENDING && keys.length > 0) {
      const d = charCode(keys[0]!, 0);
      if (d >= 0x30 && d <= 0x39) node = this.resolve(depth);
    }
    if (node?.keys !== undefined) keys = orderKeys(node.keys, keys);
    this.ensure(1);
    this.buf[this.pos++] = 0x7b;
    let first = true;
    let k = '';
    try {
      for (let j = 0; j < keys.length; j++) {
        k = keys[j]!;
        const c = viaToJSON((o as Record<string, unknown>)[k], k);
        if (c === undefined) continue;
        this.member(k, c, first, node, hints, depth);
        first = false;
      }
    } catch (e) {
      if (e instanceof EncodeError) e.path.push(k);
      throw e;
    }
    this.ensure(1);
    this.buf[this.pos++] = 0x7d;
  }

  /** Writes one member `k: c` of an object whose shape is `node` (resolved already if `c` needs it). */
  member(
    k: string,
    c: unknown,
    first: boolean,
    node: Node | undefined,
    hints: FloatHints | undefined,
    depth: number,
  ): void {
    this.key(k, first);
    if (node === PENDING) this.path[depth] = k;
    this.value(
      c,
      node === PENDING ? PENDING : node?.children.get(k),
      hints === undefined ? undefined : (hints[k] ?? hints['*']),
    );
  }
}

function formatPath(path: readonly (string | number)[]): string {
  let s = '$';
  for (let j = path.length - 1; j >= 0; j--) {
    const p = path[j]!;
    s += typeof p === 'number' ? `[${p}]` : IDENTIFIER.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`;
  }
  return s;
}

/** Kept between calls; a nested call (from a toJSON) finds it taken and makes its own. */
let spare: Writer | undefined;

function run<T>(value: unknown, options: PythonEncodeOptions | undefined, finish: (w: Writer) => T): T {
  const w = spare ?? new Writer();
  spare = undefined;
  w.begin();
  try {
    w.forIn = !hasEnumerable(Object.prototype);
    const v = viaToJSON(value, '');
    if (v === undefined) throw new EncodeError('cannot encode undefined');
    let shape = options?.shape;
    if (options?.source !== undefined) {
      w.source = options.source;
      shape = PENDING;
    }
    w.value(v, shape, options?.floats);
    if (w.guesses.length !== 0) w.confirmGuesses();
    return finish(w);
  } catch (e) {
    w.pos = w.start;
    if (!(e instanceof EncodeError)) throw e;
    const message = `${e.reason} at ${formatPath(e.path)}`;
    throw e.range ? new RangeError(message) : new TypeError(message);
  } finally {
    w.clear();
    spare = w;
  }
}

/** The output as a string; its bytes are free for the next output. */
function toText(w: Writer): string {
  const text = w.buf.toString('latin1', w.start, w.pos);
  w.pos = w.start;
  return text;
}

/** The output as bytes: a view into the slab, or a copy of its own if large (or written in a grown slab). */
function toBytes(w: Writer): Buffer {
  if (w.pos - w.start <= POOLED_MAX && w.buf.length === SLAB) return w.buf.subarray(w.start, w.pos);
  const out = Buffer.allocUnsafe(w.pos - w.start);
  w.buf.copy(out, 0, w.start, w.pos);
  w.pos = w.start;
  return out;
}

/**
 * Python `json.dumps(value)` with default settings, byte for byte. Integral numbers print as Python ints
 * unless `options` marks them as floats; `undefined` properties are skipped and `toJSON` is honoured, as in
 * `JSON.stringify`.
 *
 * @throws TypeError for functions, symbols, bigints, a top-level `undefined` or a circular structure (the
 *   message names the path, e.g. `$.a[0]`); RangeError for nesting deeper than 1000.
 */
export function dumpsPython(value: unknown, options?: PythonDumpOptions): string {
  return run(value, options, toText);
}

/**
 * {@link dumpsPython} for the codec: also takes the source text to scan on demand, and `bytes` returns the
 * UTF-8 (here: ASCII) bytes without making a string first.
 * @internal
 */
export function encodePython(value: unknown, options: PythonEncodeOptions, bytes: true): Buffer;
export function encodePython(value: unknown, options: PythonEncodeOptions, bytes: false): string;
export function encodePython(value: unknown, options: PythonEncodeOptions, bytes: boolean): Buffer | string {
  return bytes ? run(value, options, toBytes) : run(value, options, toText);
}
