import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dumpsPython,
  JsonSyntaxError,
  type NumberShape,
  parseJson,
  pythonFloatRepr,
  scanNumberShape,
} from '../src/wire/python-json.js';

const PYTHON = '/usr/bin/python3';
const HAS_PYTHON = existsSync(PYTHON);

/** Runs a Python snippet once over newline-separated input and returns its output lines. */
function python(script: string, lines: readonly string[]): string[] {
  const out = execFileSync(PYTHON, ['-c', script], {
    input: lines.join('\n'),
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  return out.split('\n').slice(0, lines.length);
}

/** First difference between two JSON-like values (Object.is for numbers, own-key order for objects). */
function diff(a: unknown, b: unknown, path = '$'): string | undefined {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) {
    return Object.is(a, b) ? undefined : `${path}: ${String(a)} !== ${String(b)}`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: array vs object`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path}: prototypes differ`;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.join('\u0000') !== kb.join('\u0000')) return `${path}: keys [${ka}] vs [${kb}]`;
  for (const k of ka) {
    const d = diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    if (d !== undefined) return d;
  }
  return undefined;
}

/** What a value becomes after a trip through Python: an integral -0 is the Python int 0. */
function withoutNegativeZero(v: unknown): unknown {
  if (Object.is(v, -0)) return 0;
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(withoutNegativeZero);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    Object.defineProperty(out, k, {
      value: withoutNegativeZero(x),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function roundTrip(source: string): string {
  return dumpsPython(parseJson(source), { shape: scanNumberShape(source) });
}

const vectors = JSON.parse(
  readFileSync(new URL('./fixtures/python-json-vectors.json', import.meta.url), 'utf8'),
) as { source: string }[];

describe('Python json.dumps vectors', () => {
  it('has the generated fixture', () => {
    expect(vectors.length).toBeGreaterThan(150);
  });

  it.each(vectors.map((v, i) => [i, v.source] as const))(
    'vector %i re-encodes byte for byte',
    (_, source) => {
      expect(roundTrip(source)).toBe(source);
      let native: unknown;
      try {
        native = JSON.parse(source);
      } catch {
        return; // NaN/Infinity: JSON.parse has nothing to compare against
      }
      expect(diff(parseJson(source), native)).toBeUndefined();
    },
  );
});

describe('pythonFloatRepr', () => {
  it.each([
    [1, '1.0'],
    [0.1, '0.1'],
    [1e-5, '1e-05'],
    [1e-4, '0.0001'],
    [0.00012345, '0.00012345'],
    [9.999e-5, '9.999e-05'],
    [-1e-7, '-1e-07'],
    [1e15, '1000000000000000.0'],
    [9999999999999998, '9999999999999998.0'],
    [1e16, '1e+16'],
    [1.5e16, '1.5e+16'],
    [1e22, '1e+22'],
    [1e100, '1e+100'],
    [5e-324, '5e-324'],
    [Number.MAX_VALUE, '1.7976931348623157e+308'],
    [-0, '-0.0'],
    [0, '0.0'],
    [123456789.123, '123456789.123'],
    [2 ** 53, '9007199254740992.0'],
    [0.1 + 0.2, '0.30000000000000004'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [Number.NEGATIVE_INFINITY, '-Infinity'],
  ])('%s → %s', (n, repr) => {
    expect(pythonFloatRepr(n)).toBe(repr);
  });

  it('round-trips every double', () => {
    fc.assert(
      fc.property(fc.double(), (x) => Object.is(Number(pythonFloatRepr(x)), x)),
      { numRuns: 10_000 },
    );
  });

  it.runIf(HAS_PYTHON)('matches Python on 2,000 random doubles', () => {
    const doubles = [
      ...fc.sample(fc.double(), 1000),
      ...Array.from({ length: 1000 }, () => randomBytes(8).readDoubleBE(0)),
    ];
    const hex = doubles.map((x) => {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(x);
      return b.toString('hex');
    });
    const expected = python(
      'import json, struct, sys\nfor h in sys.stdin.read().split():\n' +
        "    print(json.dumps(struct.unpack('>d', bytes.fromhex(h))[0]))",
      hex,
    );
    const mismatches = doubles.flatMap((x, i) => {
      const actual = pythonFloatRepr(x);
      return actual === expected[i] ? [] : [`${hex[i]}: ${actual} vs ${expected[i]}`];
    });
    expect(mismatches).toEqual([]);
  });
});

describe('dumpsPython', () => {
  it('formats like json.dumps', () => {
    expect(dumpsPython({ a: [1, 2.5, 'x'], b: null, c: true, d: {}, e: [], f: false })).toBe(
      '{"a": [1, 2.5, "x"], "b": null, "c": true, "d": {}, "e": [], "f": false}',
    );
    expect(dumpsPython('\u0000\u001f\u007f\u0080é\ud83d\ude00\ud800"\\/\n\r\t\b\f')).toBe(
      '"\\u0000\\u001f\\u007f\\u0080\\u00e9\\ud83d\\ude00\\ud800\\"\\\\/\\n\\r\\t\\b\\f"',
    );
  });

  it('prints integers like Python ints', () => {
    expect(dumpsPython(1e21)).toBe('1000000000000000000000');
    expect(dumpsPython(-(2 ** 70))).toBe('-1180591620717411303424');
    expect(dumpsPython(-0)).toBe('0');
    expect(dumpsPython([1.5, Number.NaN, Number.NEGATIVE_INFINITY])).toBe('[1.5, NaN, -Infinity]');
  });

  it('applies float hints and merges them with the shape', () => {
    const event = {
      timestamp: 1700000000,
      parse_data: { intent: { confidence: 1 }, intent_ranking: [{ confidence: 1 }, { confidence: 0, n: 3 }] },
      count: 2,
    };
    const floats = {
      timestamp: true,
      parse_data: { intent: { confidence: true }, intent_ranking: { '*': { confidence: true } } },
    } as const;
    expect(dumpsPython(event, { floats })).toBe(
      '{"timestamp": 1700000000.0, "parse_data": {"intent": {"confidence": 1.0}, "intent_ranking": ' +
        '[{"confidence": 1.0}, {"confidence": 0.0, "n": 3}]}, "count": 2}',
    );
    const source = '{"timestamp": 1, "count": 2.0}';
    expect(dumpsPython(parseJson(source), { shape: scanNumberShape(source), floats })).toBe(
      '{"timestamp": 1.0, "count": 2.0}',
    );
  });

  it('uses a raw integer only while the value still matches it', () => {
    const source = '{"n": 12345678901234567890, "m": 12345678901234567891}';
    const value = parseJson(source) as Record<string, unknown>;
    const shape = scanNumberShape(source);
    expect(dumpsPython(value, { shape })).toBe(source);
    value.m = 5;
    expect(dumpsPython(value, { shape })).toBe('{"n": 12345678901234567890, "m": 5}');
  });

  it('restores source key order, keeping edits', () => {
    const source = '{"b": 1, "2": 2, "a": 3, "1": 4}';
    const value = parseJson(source) as Record<string, unknown>;
    const shape = scanNumberShape(source);
    expect(Object.keys(value)).toEqual(['1', '2', 'b', 'a']);
    expect(dumpsPython(value, { shape })).toBe(source);
    delete value.a;
    value['0'] = 0;
    value.z = 9;
    expect(dumpsPython(value, { shape })).toBe('{"b": 1, "2": 2, "1": 4, "0": 0, "z": 9}');
  });

  it('skips undefined properties and honours toJSON like JSON.stringify', () => {
    const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
    expect(dumpsPython({ a: undefined, b: [undefined], when })).toBe(
      '{"b": [null], "when": "2024-01-02T03:04:05.000Z"}',
    );
    expect(dumpsPython({ toJSON: (key: string) => `key=${key}` })).toBe('"key="');
    expect(dumpsPython([{ toJSON: (key: string) => key }])).toBe('["0"]');
  });

  it('throws TypeError naming the path for unencodable values', () => {
    expect(() => dumpsPython({ a: [1, { f: () => 1 }] })).toThrow(
      new TypeError('cannot encode a function at $.a[1].f'),
    );
    expect(() => dumpsPython({ 'x y': Symbol('s') })).toThrow(
      new TypeError('cannot encode a symbol at $["x y"]'),
    );
    expect(() => dumpsPython([1n])).toThrow(new TypeError('cannot encode a bigint at $[0]'));
    expect(() => dumpsPython(undefined)).toThrow(TypeError);
  });

  it('detects cycles and excessive depth without overflowing the stack', () => {
    const a: Record<string, unknown> = { list: [] };
    (a.list as unknown[]).push({ self: a });
    expect(() => dumpsPython(a)).toThrow(new TypeError('circular structure at $.list[0].self'));
    const shared = { x: 1 };
    expect(dumpsPython([shared, shared])).toBe('[{"x": 1}, {"x": 1}]');
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => dumpsPython(deep)).toThrow(RangeError);
  });

  it('round-trips any JSON value', () => {
    fc.assert(
      fc.property(
        fc.jsonValue(),
        (v) => diff(parseJson(dumpsPython(v)), withoutNegativeZero(v)) === undefined,
      ),
      { numRuns: 1000 },
    );
  });

  it('escapes any string exactly like ensure_ascii', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const expected = JSON.stringify(s).replace(
          /[\x7f-\uffff]/g,
          (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
        );
        const out = dumpsPython(s);
        return out === expected && parseJson(out) === s;
      }),
      { numRuns: 1000 },
    );
  });

  it.runIf(HAS_PYTHON)('agrees with Python json.dumps(json.loads(line)) on 300 values', () => {
    const lines = fc
      .sample(fc.oneof(fc.jsonValue(), fc.string({ unit: 'binary' })), 300)
      .map((v) => dumpsPython(v));
    const expected = python(
      'import json, sys\nfor line in sys.stdin.read().split("\\n"):\n    print(json.dumps(json.loads(line)))',
      lines,
    );
    expect(lines.filter((line, i) => line !== expected[i])).toEqual([]);
  });
});

describe('parseJson', () => {
  it('accepts the non-finite tokens and keeps JSON.parse semantics', () => {
    expect(parseJson(' NaN ')).toBeNaN();
    expect(parseJson('[Infinity, -Infinity, -0, -0.0, 1e400]')).toEqual([
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      -0,
      -0,
      Number.POSITIVE_INFINITY,
    ]);
    for (const tail of ['', ', "n": NaN']) {
      const v = parseJson(`{"a": 1, "__proto__": {"x": 1}, "b": 2, "a": 3${tail}}`) as Record<
        string,
        unknown
      >;
      expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
      expect(Object.keys(v).slice(0, 3)).toEqual(['a', '__proto__', 'b']);
      expect(v.a).toBe(3);
      expect(Object.getOwnPropertyDescriptor(v, '__proto__')?.value).toEqual({ x: 1 });
      expect((v as { x?: unknown }).x).toBeUndefined();
    }
    expect(parseJson('"\\ud800\\u00E9\\/"')).toBe('\ud800é/');
  });

  const errors: [string, string][] = [
    ['[1, 2, 3,}', "Unexpected '}' at line 1, column 10 (offset 9): expected a value"],
    ['{"a": 1,}', "Unexpected '}' at line 1, column 9 (offset 8): expected a string key"],
    ['{\n  "a": 01\n}', "Unexpected '1' at line 2, column 9 (offset 10): expected ',' or '}'"],
    ['', 'Unexpected end of input at line 1, column 1 (offset 0): expected a value'],
    ['"a\nb"', 'Unexpected U+000A at line 1, column 3 (offset 2): expected an escape sequence'],
  ];
  it.each(errors)('reports %j precisely', (text, message) => {
    expect(() => parseJson(text)).toThrow(JsonSyntaxError);
    expect(() => parseJson(text)).toThrow(message);
  });

  it('exposes the position on the error', () => {
    try {
      parseJson('[\n  1,\n  x]');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(JsonSyntaxError);
      expect(e).toBeInstanceOf(SyntaxError);
      expect(e).toMatchObject({ name: 'JsonSyntaxError', line: 3, column: 3, offset: 9 });
    }
  });

  it.each([
    ' ',
    '[1,]',
    "{'a': 1}",
    "['a']",
    '// c\n1',
    '/* c */ 1',
    '[1 /* c */]',
    '01',
    '-01',
    '-',
    '-a',
    '+1',
    '1.',
    '.5',
    '1e',
    '1e+',
    '0x10',
    '"\u0001"',
    '"\\x"',
    '"\\u12G4"',
    '"\\u12"',
    '"\\',
    '"abc',
    '[1] x',
    '[1]]',
    '1 2',
    '{"a" 1}',
    '{"a":}',
    '{1: 2}',
    '{"a": 1 "b": 2}',
    'nul',
    'tru',
    'NaNa',
    'nan',
    'inf',
    '-inf',
    '-NaN',
    'Infinit',
    '[',
    '{',
    '{"a"',
    '[1,',
    'undefined',
    '\ufeff1',
    '\u00a01',
    '[NaN,]',
  ])('rejects %j with a positioned JsonSyntaxError', (text) => {
    expect(() => parseJson(text)).toThrow(JsonSyntaxError);
    expect(() => parseJson(text)).toThrow(/ at line \d+, column \d+ \(offset \d+\): expected /);
  });

  it('limits nesting to 512 and never overflows', () => {
    const nest = (n: number, inner: string) => '['.repeat(n) + inner + ']'.repeat(n);
    expect(parseJson(nest(512, '1'))).toBeDefined();
    expect(parseJson(nest(512, 'NaN'))).toBeDefined();
    expect(() => parseJson(nest(513, '1'))).toThrow('nesting deeper than 512');
    expect(() => parseJson(nest(513, 'NaN'))).toThrow('nesting deeper than 512');
    expect(() => parseJson('{"a": '.repeat(600) + '1' + '}'.repeat(600))).toThrow(JsonSyntaxError);
    const started = performance.now();
    expect(() => parseJson('['.repeat(100_000))).toThrow(JsonSyntaxError);
    expect(() => parseJson(nest(100_000, '1'))).toThrow(JsonSyntaxError);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  /** Returns or throws JsonSyntaxError, and agrees with JSON.parse on both the native and the fallback path. */
  function checkParse(text: string): boolean {
    let native: unknown;
    let nativeOk = true;
    try {
      native = JSON.parse(text);
    } catch {
      nativeOk = false;
    }
    const tooDeep = (e: unknown) => e instanceof JsonSyntaxError && e.message.startsWith('nesting');
    let value: unknown;
    try {
      value = parseJson(text);
    } catch (e) {
      if (!(e instanceof JsonSyntaxError)) throw e;
      return !nativeOk || tooDeep(e);
    }
    if (!nativeOk) return /NaN|Infinity/.test(text);
    if (diff(value, native) !== undefined) return false;
    // Next to a NaN, the same text must take the fallback parser to the same value.
    try {
      return diff((parseJson(`[${text}, NaN]`) as unknown[])[0], native) === undefined;
    } catch (e) {
      if (tooDeep(e)) return true;
      throw e;
    }
  }

  it('never throws anything but JsonSyntaxError on random text', () => {
    const alphabet = fc.constantFrom(...'{}[],:" \n\\/0123456789.eE+-truefalsnNaIfiy\u0000\u00e9'.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: alphabet })), checkParse),
      { numRuns: 5000 },
    );
  });

  it('never throws anything but JsonSyntaxError on mutated JSON', () => {
    const edit = fc.record({
      op: fc.constantFrom('delete', 'insert', 'replace'),
      at: fc.nat(),
      ch: fc.constantFrom(...'{}[],:"\\ 0-.eE+aNI'.split('')),
    });
    const text = fc.oneof(
      fc.jsonValue().map((v) => dumpsPython(v)),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.constantFrom(...vectors.map((v) => v.source)),
    );
    fc.assert(
      fc.property(text, fc.array(edit, { minLength: 1, maxLength: 4 }), (source, edits) => {
        let t = source;
        for (const { op, at, ch } of edits) {
          const i = at % (t.length + 1);
          t = t.slice(0, i) + (op === 'delete' ? '' : ch) + t.slice(op === 'insert' ? i : i + 1);
        }
        return checkParse(t);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('scanNumberShape', () => {
  it('returns undefined when JSON.parse loses nothing', () => {
    for (const text of [
      '{"a": 1.5, "b": 2}',
      '[1, "x", true, null, -3, 1.25e-3, -0, 9007199254740991]',
      '{"b": 1, "a": 2}',
      '{"0": 1, "1": 2, "a": 3, "0": 4}',
      '{"s": "1.0 {\\"2\\": 3} [", "t": "\\\\"}',
      '[NaN, -Infinity, Infinity, 1e400]',
      '{"a": 1.0, "a": 2}',
    ]) {
      expect(scanNumberShape(text), text).toBeUndefined();
    }
  });

  it('records floats, raw integers and key order', () => {
    const float = { kind: 'float' };
    const expected: NumberShape = {
      kind: 'node',
      keys: ['a', '2', 'x'],
      children: new Map<string | number, NumberShape>([
        [
          'a',
          {
            kind: 'node',
            children: new Map<string | number, NumberShape>([
              [0, { kind: 'float' }],
              [1, { kind: 'node', children: new Map([['b', { kind: 'float' }]]) }],
            ]),
          },
        ],
        ['x', { kind: 'raw', raw: '12345678901234567890' }],
      ]),
    };
    expect(scanNumberShape('{"a": [1.0, {"b": 2e3}], "2": 1, "x": 12345678901234567890}')).toEqual(expected);
    expect(scanNumberShape('-0.0')).toEqual(float);
    expect(scanNumberShape('1E2')).toEqual(float);
    expect(scanNumberShape('-9007199254740993')).toEqual({ kind: 'raw', raw: '-9007199254740993' });
    expect(scanNumberShape('{"1": 0, "0": 0, "1": 0}')).toEqual({
      kind: 'node',
      children: new Map(),
      keys: ['1', '0'],
    });
    expect(scanNumberShape('{"a": 0, "\\u0031": [], "b": 2.0}')).toEqual({
      kind: 'node',
      children: new Map([['b', float]]),
      keys: ['a', '1', 'b'],
    });
  });

  it('handles deep input without recursion', () => {
    const depth = 100_000;
    let shape = scanNumberShape('['.repeat(depth) + '1.0' + ']'.repeat(depth));
    let levels = 0;
    for (; shape?.kind === 'node'; levels++) shape = shape.children.get(0);
    expect(levels).toBe(depth);
    expect(shape).toEqual({ kind: 'float' });
    // Every level needs its key order restored; each object's keys are decoded once, not rescanned.
    const started = performance.now();
    let node = scanNumberShape('{"a": 0, "1": '.repeat(depth) + '0' + '}'.repeat(depth));
    expect(performance.now() - started).toBeLessThan(1000);
    for (levels = 0; node?.kind === 'node' && node.keys?.join() === 'a,1'; levels++)
      node = node.children.get('1');
    expect(levels).toBe(depth);
  });
});
