/**
 * The python encoder's own machinery, beyond what the format tests pin down: outputs are views into a shared slab
 * (never overwritten by later ones), the source text is scanned only on demand (with the same result as scanning
 * it up front), and the for-in fast path agrees with Object.keys.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEvent, type EventEnvelope, encodeEvent, stringifyEvent } from '../src/index.js';
import { dumpsPython, encodePython, parseJson, scanNumberShape } from '../src/wire/python-json.js';
import { wireLines } from './support/fixtures.js';

const python = { format: 'python' } as const;
const lines = wireLines().map((l) => l.line);

describe('outputs', () => {
  it('stay intact while later events are encoded, as bytes or as text', () => {
    const kept: [Uint8Array, string][] = [];
    for (let round = 0; round < 3; round++) {
      for (const line of lines) {
        kept.push([encodeEvent(decodeEvent(line), python), line]);
        // Text outputs reuse the slab space they were written in: that must not reach the views handed out.
        expect(stringifyEvent(decodeEvent(line), python)).toBe(line);
      }
    }
    for (const [bytes, line] of kept) expect(Buffer.from(bytes).toString('latin1')).toBe(line);
  });

  it('can be large, before and after small ones', () => {
    const small: EventEnvelope = { sender_id: 's', event: 'slot', timestamp: 1, name: 'n', value: 'v' };
    const smallText = '{"sender_id": "s", "event": "slot", "timestamp": 1.0, "name": "n", "value": "v"}';
    const first = encodeEvent(small, python);
    for (const size of [4_000, 4_200, 9_000, 300_000, 2_000_000]) {
      const big = { ...small, value: 'é'.repeat(size / 6) + 'x'.repeat(size) };
      const text = smallText.replace('"v"', `"${'\\u00e9'.repeat(size / 6)}${'x'.repeat(size)}"`);
      expect(Buffer.from(encodeEvent(big, python)).toString('latin1')).toBe(text);
      expect(stringifyEvent(big, python)).toBe(text);
      expect(Buffer.from(encodeEvent(small, python)).toString('latin1')).toBe(smallText);
    }
    expect(Buffer.from(first).toString('latin1')).toBe(smallText);
  });

  it('survive a toJSON that encodes while it is being encoded', () => {
    const inner: EventEnvelope = { sender_id: 'i', event: 'slot', timestamp: 2.5, name: 'x', value: null };
    const innerText = stringifyEvent(inner, python);
    let nested: Uint8Array | undefined;
    const outer: EventEnvelope = {
      sender_id: 'o',
      event: 'slot',
      timestamp: 1,
      name: 'y',
      value: {
        toJSON() {
          nested = encodeEvent(inner, python);
          return dumpsPython([1.5, 'a']);
        },
      },
    };
    expect(stringifyEvent(outer, python)).toBe(
      '{"sender_id": "o", "event": "slot", "timestamp": 1.0, "name": "y", "value": "[1.5, \\"a\\"]"}',
    );
    expect(Buffer.from(nested!).toString('latin1')).toBe(innerText);
  });

  it('leave nothing behind after an error', () => {
    expect(() => dumpsPython({ a: [1, 2, { b: () => 0 }] })).toThrow(
      new TypeError('cannot encode a function at $.a[2].b'),
    );
    expect(dumpsPython({ a: [1, 2, { b: 0 }] })).toBe('{"a": [1, 2, {"b": 0}]}');
  });
});

describe('the source text, scanned on demand', () => {
  /** Every way of writing the same value that the shape cares about. */
  const text = fc
    .oneof(
      fc.jsonValue().map((v) => dumpsPython(v)),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.constantFrom(...lines),
      fc.constantFrom(
        '{"b": 1, "2": 2.0, "a": [1.0, {"1": 0, "0": 1e2}], "1": 12345678901234567890}',
        '[1.0, -0.0, 1e400, -1e400, 9007199254740993, 1.00000000000000001]',
        '{"x": {"y": {"z": [0, 1.0]}}, "w": 2}',
        '1.0',
        '12345678901234567890123',
      ),
    )
    .map((s) =>
      // Some integers written as floats, as Rasa writes them (`1.0`).
      s.replace(/(?<=^|[[:,\s])-?\d+(?=[,\]}]|$)/g, (int, at: number) => (at % 3 === 0 ? `${int}.0` : int)),
    );

  it('gives what scanning it first gives, unchanged or edited', () => {
    fc.assert(
      fc.property(text, fc.array(fc.tuple(fc.nat(), fc.jsonValue()), { maxLength: 3 }), (source, edits) => {
        let value: unknown;
        try {
          value = parseJson(source);
        } catch {
          return; // the digit rewrite can break a string's escape: not JSON any more
        }
        const eager = () => dumpsPython(value, { shape: scanNumberShape(source) });
        expect(encodePython(value, { source }, false)).toBe(eager());
        // Replacing values (not keys) keeps the key sets, where the two agree by construction.
        for (const [at, replacement] of edits) {
          const holders = containers(value);
          if (holders.length === 0) break;
          const holder = holders[at % holders.length]!;
          const keys = Object.keys(holder);
          if (keys.length === 0) continue;
          (holder as Record<string, unknown>)[keys[at % keys.length]!] = replacement;
          expect(encodePython(value, { source }, false)).toBe(eager());
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('is read where the number is, and checked when the output is not the source', () => {
    const cases: [string, string][] = [
      // duplicate keys: the last value wins, at the first key's place
      ['{"a": 1.0, "a": 1}', '{"a": 1}'],
      ['{"a": 1, "b": 2, "a": 1.0}', '{"a": 1.0, "b": 2}'],
      // another writer's spacing: nothing is where the output has it
      [
        '{"a":1.0,"b":[1,2.0,12345678901234567890],"c":-0}',
        '{"a": 1.0, "b": [1, 2.0, 12345678901234567890], "c": 0}',
      ],
      ['[-0, -0.0, 1E2, 1e400, -1e400]', '[0, -0.0, 100.0, Infinity, -Infinity]'],
      ['  7.0 ', '7.0'],
      ['{"é": 1.0, "x": 2.0}', '{"\\u00e9": 1.0, "x": 2.0}'],
    ];
    for (const [source, expected] of cases) {
      expect(encodePython(parseJson(source), { source }, false), source).toBe(expected);
    }
    const line = lines.find((l) =>
      l.includes('"confidence": 1.0, "action_text": null, "hide_rule_turn": false'),
    )!;
    const edits: [(e: Record<string, unknown>) => void, (l: string) => string][] = [
      // after the guessed number, before it (shifting it), and the number itself
      [
        (e) => (e.hide_rule_turn = true),
        (l) => l.replace('"hide_rule_turn": false', '"hide_rule_turn": true'),
      ],
      [
        (e) => (e.policy = 'a longer policy'),
        (l) => l.replace('"policy": null', '"policy": "a longer policy"'),
      ],
      [(e) => (e.confidence = 3), (l) => l.replace('"confidence": 1.0', '"confidence": 3.0')],
      [(e) => (e.confidence = 0.5), (l) => l.replace('"confidence": 1.0', '"confidence": 0.5')],
    ];
    for (const [edit, expected] of edits) {
      const event = decodeEvent(line) as unknown as Record<string, unknown>;
      edit(event);
      expect(stringifyEvent(event as never, python)).toBe(expected(line));
    }
  });

  it('is read only for a value that needs it, and then as a whole', () => {
    // Non-integral, `n` needs nothing from the source; integral again, it is the float the source had.
    const source = '{"n": 1.0, "s": "x"}';
    const value = parseJson(source) as Record<string, unknown>;
    value.n = 0.5;
    expect(encodePython(value, { source }, false)).toBe('{"n": 0.5, "s": "x"}');
    value.n = 2;
    expect(encodePython(value, { source }, false)).toBe('{"n": 2.0, "s": "x"}');
  });
});

describe('the for-in fast path', () => {
  it('lists own keys only, even when Object.prototype has an enumerable property', () => {
    const proto = Object.prototype as Record<string, unknown>;
    proto.polluted = 1;
    try {
      expect(dumpsPython({ a: 1, b: { c: 2 } })).toBe('{"a": 1, "b": {"c": 2}}');
      expect(stringifyEvent(decodeEvent(lines[0]!), python)).toBe(lines[0]);
    } finally {
      delete proto.polluted;
    }
  });

  it('ignores enumerable properties an object inherits', () => {
    function Legacy(this: { own: number }) {
      this.own = 1;
    }
    Legacy.prototype.inherited = 2;
    const value = new (Legacy as unknown as new () => { own: number })();
    expect(dumpsPython({ v: value })).toBe('{"v": {"own": 1}}');
    expect(dumpsPython(Object.assign(Object.create(null), { z: 1, '1': 2 }))).toBe('{"1": 2, "z": 1}');
  });
});

describe('long decimals', () => {
  it('are floats exactly when their double is integral', () => {
    const digits = (n: number) =>
      fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: n, maxLength: n + 20 });
    const decimal = fc
      .tuple(
        fc.boolean(),
        fc.oneof(
          fc.constant('0'),
          fc.tuple(fc.constantFrom(...'123456789'), digits(0)).map(([a, b]) => a + b),
        ),
        fc.oneof(
          digits(1),
          fc.tuple(fc.nat(20), digits(0)).map(([n, d]) => '0'.repeat(n) + d),
          fc.tuple(fc.nat(20), digits(0)).map(([n, d]) => '9'.repeat(n) + d),
        ),
      )
      .map(([minus, int, frac]) => `${minus ? '-' : ''}${int}.${frac}`);
    fc.assert(
      fc.property(decimal, (d) => {
        expect(scanNumberShape(d)?.kind === 'float').toBe(Number.isInteger(Number(d)));
      }),
      { numRuns: 20_000 },
    );
  });
});

/** Every object and array in `v`. */
function containers(v: unknown, out: object[] = []): object[] {
  if (typeof v !== 'object' || v === null) return out;
  out.push(v);
  for (const x of Object.values(v)) containers(x, out);
  return out;
}

describe('String.prototype', () => {
  // Once a loaded module subclasses String (ioredis does), V8 stops inlining methods looked up on String.prototype:
  // `s.charCodeAt(i)` got about 4× slower and the encoder 2.3× slower. The codec takes its references once, so a
  // later change to String.prototype reaches none of its hot paths; this pins that down without timing anything.
  it('is not looked up while encoding or decoding', () => {
    const decoded = lines.map((line) => decodeEvent(line));
    const built = decoded.map((event) => JSON.parse(JSON.stringify(event)) as EventEnvelope);
    const original = String.prototype.charCodeAt;
    let calls = 0;
    String.prototype.charCodeAt = function (this: string, i: number) {
      calls++;
      return original.call(this, i);
    };
    let texts: string[];
    try {
      texts = [
        ...decoded.map((event) => stringifyEvent(event, python)),
        ...built.map((event) => Buffer.from(encodeEvent(event, python)).toString('latin1')),
        ...lines.map((line) => stringifyEvent(decodeEvent(line), python)),
      ];
    } finally {
      String.prototype.charCodeAt = original;
    }
    expect(calls).toBe(0);
    expect(texts.slice(0, lines.length)).toEqual(lines);
  });
});
