/**
 * Property tests of the wire codec: every event type round-trips through both formats, the python format is a
 * fixed point of its own decoder and of Python's json module, and malformed input never crashes or hangs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type AnyEvent,
  createEvent,
  decodeEvent,
  dumpsPython,
  EventDecodeError,
  type EventEnvelope,
  type EventName,
  EventValidationError,
  encodeEvent,
  eventNames,
  eventSchemas,
  type FlowStarted,
  isKnownEvent,
  parseJson,
  type RasaEvent,
  safeDecodeEvent,
  stringifyEvent,
  unknownEvent,
} from '../src/index.js';
import { envelope, eventFields, jsonValue } from './support/arbitraries.js';
import { wireLines } from './support/fixtures.js';

const PYTHON = '/usr/bin/python3';
const hasPython = existsSync(PYTHON);

/** Runs per property: the file stays well under 10 s. */
const RUNS = 2_000;
const FUZZ_RUNS = 3_000;

const finite = { nonFinite: false };
const withNonFinite = { nonFinite: true };
const python = { format: 'python' } as const;

/**
 * -0 survives neither format at an int position: JSON.stringify writes `0`, and the python format writes the
 * Python int `0` (only float positions such as `timestamp` or `confidence` get `-0.0`). Compare without it.
 */
function withoutNegativeZero(v: unknown): unknown {
  if (Object.is(v, -0)) return 0;
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(withoutNegativeZero);
  // Object.fromEntries defines own properties, so an own `__proto__` key stays a key.
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withoutNegativeZero(x)]));
}

function expectSameEvent(actual: unknown, expected: unknown): void {
  expect(withoutNegativeZero(actual)).toEqual(withoutNegativeZero(expected));
}

/** Every error the decoder reports: one of its two classes, prefixed, and naming what went wrong where. */
function expectDecodeError(error: unknown): void {
  if (!(error instanceof EventDecodeError || error instanceof EventValidationError)) {
    expect.fail(`unexpected error: ${String(error)}`);
  }
  expect(error.message.startsWith('[parley] ')).toBe(true);
  if (error instanceof EventValidationError) {
    // Only a top-level non-object has no path: the whole payload is at fault.
    if (error.path === '') expect(error.expected).toBe('a JSON object (an event envelope)');
    expect(error.expected).not.toBe('');
    expect(error.found).not.toBe('');
    expect(error.issues.length).toBeGreaterThan(0);
  }
}

/** Decoding `input` returns a result (never throws); failures are well-formed; successes re-encode stably. */
function checkDecodes(input: string | Uint8Array): void {
  for (const strict of [false, true]) {
    const result = safeDecodeEvent(input, { strict });
    let thrown: unknown;
    try {
      decodeEvent(input, { strict });
    } catch (error) {
      thrown = error;
    }
    if (!result.success) {
      expectDecodeError(result.error);
      expectDecodeError(thrown);
      expect((thrown as Error).message).toBe(result.error.message);
      continue;
    }
    expect(thrown).toBeUndefined();
    const env = result.envelope;
    expect(typeof env.sender_id).toBe('string');
    if (strict) expect(isKnownEvent(env)).toBe(true);
    // Whatever was accepted can be written in the python format, and that text is a fixed point.
    const written = stringifyEvent(env, python);
    const back = decodeEvent(written, { strict });
    expect(stringifyEvent(back, python)).toBe(written);
    expectSameEvent(back, env);
  }
}

/**
 * Rewrites integer literals of python-format text as the Python floats they may as well be (`5` → `5.0`), those
 * whose bit in `mask` is set; strings are left alone. Only up to 15 digits, where Python's repr is `<int>.0`.
 */
function floatify(s: string, mask: number): string {
  let i = 0;
  return s.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/g, (token) => {
    if (token.startsWith('"') || /[.eE]/.test(token) || token.replace('-', '').length > 15) return token;
    return (mask >>> (i++ % 32)) & 1 ? `${token}.0` : token;
  });
}

describe('arbitraries', () => {
  it('cover every event type and exactly the fields of its schema', () => {
    const fields = eventFields(finite);
    expect(Object.keys(fields).sort()).toEqual([...eventNames].sort());
    expect(eventNames).toHaveLength(35);
    for (const name of eventNames) {
      const schema = eventSchemas[name];
      const spec = fields[name];
      const required = Object.keys(spec.required ?? {});
      const optional = Object.keys(spec.optional ?? {});
      expect([...required, ...optional, 'event', 'timestamp', 'metadata'].sort(), name).toEqual(
        Object.keys(schema.properties).sort(),
      );
      expect([...required, 'event', 'timestamp'].sort(), name).toEqual([...(schema.required ?? [])].sort());
    }
  });

  it('generate valid events of every type, and unknown ones', () => {
    const seen = new Set<string>();
    for (const env of fc.sample(envelope(withNonFinite), { numRuns: 1_500, seed: 7 })) {
      seen.add(isKnownEvent(env) ? env.event : '(unknown)');
      expect(() => stringifyEvent(env, python)).not.toThrow();
    }
    expect([...seen].sort()).toEqual([...eventNames, '(unknown)'].sort());
  });
});

describe('round trips', () => {
  it('compact: decodeEvent(encodeEvent(env)) equals env, strictly and leniently', () => {
    fc.assert(
      fc.property(envelope(finite), (env) => {
        const bytes = encodeEvent(env);
        expectSameEvent(decodeEvent(bytes), env);
        if (eventNames.includes(env.event as EventName)) {
          expectSameEvent(decodeEvent(bytes, { strict: true }), env);
        } else {
          const strict = safeDecodeEvent(bytes, { strict: true });
          expect(strict.success).toBe(false);
          if (!strict.success) expect(strict.error).toMatchObject({ path: 'event' });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('python: decodeEvent(encodeEvent(env, python)) equals env, NaN and Infinity included', () => {
    fc.assert(
      fc.property(envelope(withNonFinite), (env) => {
        const bytes = encodeEvent(env, python);
        expectSameEvent(decodeEvent(bytes), env);
        if (eventNames.includes(env.event as EventName)) {
          expectSameEvent(decodeEvent(bytes, { strict: true }), env);
        } else {
          expect(safeDecodeEvent(bytes, { strict: true }).success).toBe(false);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('python: re-encoding what was decoded reproduces the bytes (printable ASCII only)', () => {
    fc.assert(
      fc.property(envelope(withNonFinite), (env) => {
        const s = stringifyEvent(env, python);
        expect(s).toMatch(/^[\x20-\x7e]*$/);
        expect(stringifyEvent(decodeEvent(s), python)).toBe(s);
        expect(Buffer.from(encodeEvent(decodeEvent(Buffer.from(s)), python)).toString('latin1')).toBe(s);
      }),
      { numRuns: RUNS },
    );
  });

  it('python: floats where an int is expected (as Rasa may write them) survive decoding and re-encoding', () => {
    fc.assert(
      fc.property(envelope(withNonFinite), fc.integer(), (env, mask) => {
        const s = floatify(stringifyEvent(env, python), mask);
        expect(stringifyEvent(decodeEvent(s), python)).toBe(s);
      }),
      { numRuns: RUNS },
    );
  });

  // Regression: float hints were once looked up on a plain object, so `constructor` found Object's members.
  it('python: events named like Object.prototype members keep a float timestamp', () => {
    for (const event of ['constructor', '__proto__', 'toString']) {
      const env = { sender_id: 's', ...unknownEvent({ event, timestamp: 1 }) };
      expect(stringifyEvent(env, python)).toBe(
        `{"sender_id": "s", "event": ${JSON.stringify(event)}, "timestamp": 1.0}`,
      );
    }
  });

  it('python: -0 is -0.0 at float positions and the int 0 elsewhere, as in Python', () => {
    // `zero` is no field of `action`: past the type, to see how a free-form number is written.
    const env = { sender_id: 's', event: 'action', timestamp: -0, confidence: -0, zero: -0 } as EventEnvelope;
    const s = stringifyEvent(env, python);
    expect(s).toBe('{"sender_id": "s", "event": "action", "timestamp": -0.0, "confidence": -0.0, "zero": 0}');
    const back = decodeEvent(s);
    expect(Object.is(back.timestamp, -0)).toBe(true);
    expect(Object.is((back as { zero?: unknown }).zero, 0)).toBe(true);
    expect(stringifyEvent(back, python)).toBe(s);
  });
});

describe('Python oracle', () => {
  const runPython = (script: string, args: string[], input = ''): string[] => {
    const out = execFileSync(PYTHON, ['-c', script, ...args], {
      input,
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    return out.split('\n').slice(0, -1);
  };

  it.skipIf(!hasPython)(
    "python format is a fixed point of Python's json.loads/json.dumps (needs /usr/bin/python3)",
    () => {
      const envs = fc.sample(envelope(withNonFinite), { numRuns: 500, seed: 20240621 });
      const lines = envs.map((env) => stringifyEvent(env, python));
      const out = runPython(PYTHON_FIXED_POINT, [], lines.join('\n'));
      expect(out).toHaveLength(lines.length);
      for (let i = 0; i < lines.length; i++) expect(out[i], `envelope ${i}`).toBe(lines[i]);
    },
  );

  it.skipIf(!hasPython)(
    'envelopes Python writes decode and re-encode byte for byte (needs /usr/bin/python3)',
    () => {
      const lines = runPython(PYTHON_EVENTS, ['20240621', '200']);
      expect(lines).toHaveLength(200);
      for (const [i, line] of lines.entries()) {
        const env = decodeEvent(line);
        expect(stringifyEvent(env, python), `line ${i}`).toBe(line);
        expect(stringifyEvent(decodeEvent(Buffer.from(line)), python), `line ${i}`).toBe(line);
      }
    },
  );
});

/**
 * Python: `json.dumps(json.loads(line))` for each line of stdin, or what is wrong when a position that Rasa holds
 * as a Python float (timestamps, confidences) came out as an int.
 */
const PYTHON_FIXED_POINT = String.raw`
import json, sys
ENTITY = ('confidence', 'confidence_entity', 'confidence_role')
def floats(e):
    yield 'timestamp', e.get('timestamp')
    yield 'anonymized_at', e.get('anonymized_at')
    kind, entities = e['event'], []
    if kind in ('action', 'action_execution_rejected'):
        yield 'confidence', e.get('confidence')
    if kind == 'user' and isinstance(e.get('parse_data'), dict):
        pd = e['parse_data']
        yield 'parse_data.intent.confidence', (pd.get('intent') or {}).get('confidence')
        for i in pd.get('intent_ranking') or []:
            yield 'parse_data.intent_ranking[].confidence', i.get('confidence')
        entities = pd.get('entities') or []
    if kind in ('entities', 'reminder'):
        entities = e.get('entities') or []
    for x in entities:
        for k in ENTITY:
            yield 'entities[].' + k, x.get(k)
for line in sys.stdin.buffer.read().decode('utf-8').split('\n'):
    e = json.loads(line)
    ints = [k for k, v in floats(e) if type(v) is int]
    print('ints at float positions: ' + ', '.join(ints) if ints else json.dumps(e))
`;

/** Python: `json.dumps(json.loads(line))` for each line of stdin (read as UTF-8 bytes, whatever the locale). */
const PYTHON_ROUND_TRIP = String.raw`
import json, sys
for line in sys.stdin.buffer.read().decode('utf-8').split('\n'):
    print(json.dumps(json.loads(line)))
`;

/** Python: random event envelopes (seed, count in argv), one `json.dumps` per line. */
const PYTHON_EVENTS = String.raw`
import json, struct, sys
import random as _random
r = _random.Random(int(sys.argv[1]))
SPECIAL = ['\x00', '\x1f', '\x7f', '\n', '"', '\\', '/', '\u2028', '\ud800', '\udfff', '\U0001f600',
           '\U0010ffff', '\ufeff', '\xe9', '\u4e2d']
FLOATS = [1.0, 1e-05, 1e16, -0.0, 0.0, 0.1, 1e22, 1.5e300, 5e-324, 2.2250738585072014e-308,
          1.7976931348623157e308, 123456789.125, 1e15, 9007199254740993.0, 1718964815.060891,
          float('nan'), float('inf'), float('-inf')]
INTS = [0, -1, 2**53, 2**53 + 1, 2**60, -2**63, 2**64 + 1, 10**21, 10**30, 12345678901234567890123, 10**400]
KEYS = ['__proto__', 'constructor', '0', '1', '2', '10', '01', '-1', '1.5', '4294967294', '4294967295', '', 'a', 'b']

def rstr(n=8):
    out = []
    for _ in range(r.randint(0, n)):
        k = r.random()
        if k < 0.4: out.append(chr(r.randint(0x20, 0x7e)))
        elif k < 0.5: out.append(chr(r.randint(0, 0x1f)))
        elif k < 0.7: out.append(chr(r.randint(0x80, 0xffff)))
        elif k < 0.85: out.append(chr(r.randint(0x10000, 0x10ffff)))
        else: out.append(r.choice(SPECIAL))
    return ''.join(out)

def rnum():
    k = r.random()
    if k < 0.3: return r.choice(FLOATS)
    if k < 0.45: return r.choice(INTS)
    if k < 0.6: return r.randint(-10**6, 10**6)
    if k < 0.8: return struct.unpack('<d', r.getrandbits(64).to_bytes(8, 'little'))[0]
    return r.uniform(-1e6, 1e6)

def rkey():
    return r.choice(KEYS) if r.random() < 0.3 else rstr(6)

def rvalue(depth=3):
    k = r.random()
    if depth > 0 and k < 0.2: return [rvalue(depth - 1) for _ in range(r.randint(0, 4))]
    if depth > 0 and k < 0.4: return {rkey(): rvalue(depth - 1) for _ in range(r.randint(0, 4))}
    if k < 0.5: return None
    if k < 0.6: return r.random() < 0.5
    if k < 0.8: return rnum()
    return rstr()

def rdict(n=4, reserved=()):
    d = {}
    for _ in range(r.randint(0, n)):
        k = rkey()
        if k not in reserved: d[k] = rvalue()
    return d

def conf():
    return r.choice([0.0, 1.0, r.random(), r.random(), float('nan'), None])

def intent():
    return {'name': rstr(), 'confidence': conf()}

def entity():
    e = {'entity': rstr(), 'start': r.randint(0, 100), 'end': r.randint(0, 100), 'value': rvalue()}
    if r.random() < 0.5: e['confidence_entity'] = conf() or 1.0
    e.update(rdict(2, e.keys() | {'confidence', 'extractor', 'role', 'group'}))
    return e

def fields(kind):
    if kind == 'slot': return {'name': rstr(), 'value': rvalue()}
    if kind == 'bot': return {'text': rstr(), 'data': rdict(), 'metadata': rdict(2, {'model_id', 'assistant_id'})}
    if kind == 'user': return {'text': rstr(), 'parse_data': {
        'intent': intent(), 'entities': [entity() for _ in range(r.randint(0, 2))], 'text': rstr(),
        'message_id': None, 'metadata': rdict(2),
        'intent_ranking': [intent() for _ in range(r.randint(0, 3))],
        'commands': [dict(rdict(2, {'command'}), command=rstr()) for _ in range(r.randint(0, 2))]},
        'input_channel': None, 'message_id': rstr()}
    if kind == 'action': return {'name': rstr(), 'policy': None, 'confidence': conf(), 'action_text': None,
                                 'hide_rule_turn': r.random() < 0.5}
    if kind == 'entities': return {'entities': [entity() for _ in range(r.randint(0, 3))]}
    if kind == 'stack': return {'update': json.dumps([{'op': 'add', 'path': '/0', 'value': rvalue()}])}
    if kind == 'flow_completed': return {'flow_id': rstr(), 'step_id': rstr()}
    if kind == 'error': return {'error_code': r.choice([0, 1, 2**53, -5])}
    return {}

KINDS = ['slot', 'bot', 'user', 'action', 'entities', 'stack', 'flow_completed', 'error', 'restart',
         'agent_handoff', '__proto__', 'constructor', None]
for _ in range(int(sys.argv[2])):
    kind = r.choice(KINDS)
    name = kind if kind is not None else 'x_' + rstr()
    env = {'sender_id': rstr(12), 'event': name,
           'timestamp': r.choice([r.uniform(1e9, 2e9), float(r.randint(10**9, 2 * 10**9)), 1718964815.060891])}
    if r.random() < 0.5:
        env['metadata'] = dict(rdict(2, {'model_id', 'assistant_id'}), model_id=rstr(), assistant_id=rstr())
    env.update(fields(kind))
    env.update(rdict(3, env.keys() | {'metadata', 'name', 'text', 'data', 'value', 'confidence', 'policy'}))
    print(json.dumps(env))
`;

describe('malformed input', () => {
  const lines = wireLines().map((l) => l.line);
  const fixtureLine = fc.constantFrom(...lines);

  /** Pieces of JSON, to get deeper into the parser than uniformly random text does. */
  const token = fc.oneof(
    fc.constantFrom('{', '}', '[', ']', '"', '\\', ':', ',', ' ', '-', '0', '1', '.', 'e', 'E', '+'),
    fc.constantFrom('NaN', 'Infinity', '-Infinity', 'true', 'null', 'nul', '\\u', '\\ud800', '"x"', '1e400'),
    fc.constantFrom('"sender_id"', '"event"', '"timestamp"', '"slot"', '"user"', '"form"', '"__proto__"'),
    fc.string({ unit: 'binary', maxLength: 3 }),
  );
  const jsonish = fc.array(token, { maxLength: 40 }).map((t) => t.join(''));

  /** A wrong value for any field: another type, a non-finite number, a huge int. */
  const wrongValue = fc.oneof(
    fc.constantFrom<unknown>('x', '', 5, 1.5, -1, 2 ** 70, Number.NaN, Number.POSITIVE_INFINITY, true, null),
    fc.constantFrom<unknown>({}, [], [1], { a: 1 }, { entity: 5 }),
    jsonValue(withNonFinite),
  );

  /** Every path into a JSON value. */
  function pathsOf(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
    out.push(prefix);
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) pathsOf(x, [...prefix, i], out);
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) pathsOf(x, [...prefix, k], out);
    }
    return out;
  }

  function setPath(root: unknown, path: readonly (string | number)[], value: unknown): unknown {
    if (path.length === 0) return value;
    let parent = root;
    for (let i = 0; ; i++) {
      if (typeof parent !== 'object' || parent === null) return root;
      if (i === path.length - 1) break;
      parent = (parent as Record<string | number, unknown>)[path[i]!];
    }
    // defineProperty, so that a `__proto__` key stays an own key.
    Object.defineProperty(parent, path[path.length - 1]!, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    return root;
  }

  /** Re-parses `s` and changes it as JSON; leaves text that no longer parses alone. */
  const asJson = (s: string, change: (v: unknown) => unknown): string => {
    let v: unknown;
    try {
      v = parseJson(s);
    } catch {
      return s;
    }
    return dumpsPython(change(v));
  };

  type Mutation = (s: string) => string;
  const at = (s: string, n: number) => n % (s.length + 1);
  const remove =
    (p: number, n: number): Mutation =>
    (s) =>
      s.slice(0, at(s, p)) + s.slice(at(s, p) + n);
  const insert =
    (p: number, t: string, replace: boolean): Mutation =>
    (s) =>
      s.slice(0, at(s, p)) + t + s.slice(at(s, p) + (replace ? 1 : 0));
  const truncate =
    (p: number): Mutation =>
    (s) =>
      s.slice(0, at(s, p));
  /** Duplicate keys: a copy in front loses to the original value, a copy at the end wins. */
  const duplicate =
    (k: string, v: unknown, first: boolean): Mutation =>
    (s) =>
      first ? `{"${k}": ${dumpsPython(v)}, ${s.slice(1)}` : `${s.slice(0, -1)}, "${k}": ${dumpsPython(v)}}`;
  const setAny =
    (p: number, v: unknown): Mutation =>
    (s) =>
      asJson(s, (root) => {
        const paths = pathsOf(root);
        return setPath(root, paths[p % paths.length]!, v);
      });
  const set =
    (path: readonly string[], v: unknown): Mutation =>
    (s) =>
      asJson(s, (root) => setPath(root, path, v));
  const targeted: readonly (readonly [readonly string[], unknown])[] = [
    [['timestamp'], 'x'],
    [['name'], 5],
    [['parse_data', 'entities'], {}],
    [['parse_data', 'intent', 'confidence'], 'high'],
    [['parse_data', 'entities', '0'], { value: 1 }],
    [['entities'], [{ entity: 'a' }]],
    [['event'], 5],
    [['event'], 'form'],
    [['sender_id'], null],
    [['metadata'], []],
    [['metadata', 'model_id'], 1],
    [['update'], []],
    [['flow_id'], null],
    [['error_code'], 1.5],
  ];
  const duplicatedKey = fc.constantFrom('sender_id', 'event', 'timestamp', 'name', 'metadata', 'parse_data');
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.tuple(fc.nat(), fc.nat(12)).map(([p, n]) => remove(p, n)),
    fc.tuple(fc.nat(), token, fc.boolean()).map(([p, t, r]) => insert(p, t, r)),
    fc.nat().map(truncate),
    fc.tuple(duplicatedKey, wrongValue, fc.boolean()).map(([k, v, first]) => duplicate(k, v, first)),
    fc.tuple(fc.nat(), wrongValue).map(([p, v]) => setAny(p, v)),
    fc.constantFrom(...targeted).map(([path, v]) => set(path, v)),
  );
  const mutated = fc
    .tuple(fixtureLine, fc.array(mutation, { minLength: 1, maxLength: 3 }))
    .map(([line, ms]) => ms.reduce((s, m) => m(s), line));

  it('random strings never crash the decoder', () => {
    fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary' }), jsonish), checkDecodes), {
      numRuns: FUZZ_RUNS,
    });
  });

  it('random bytes never crash the decoder, at any byte offset', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          jsonish.map((s) => new Uint8Array(Buffer.from(s))),
        ),
        fc.nat(7),
        (bytes, pad) => {
          checkDecodes(bytes);
          // The same bytes inside a larger buffer decode the same.
          const outer = new Uint8Array(bytes.length + 2 * pad).fill(0x7b);
          outer.set(bytes, pad);
          const view = outer.subarray(pad, pad + bytes.length);
          const a = safeDecodeEvent(bytes);
          const b = safeDecodeEvent(view);
          expect(b.success).toBe(a.success);
          if (!a.success && !b.success) expect(b.error.message).toBe(a.error.message);
        },
      ),
      { numRuns: FUZZ_RUNS },
    );
  });

  it('bytes that are not UTF-8 are rejected, wherever they are; a real U+FFFD is not', () => {
    const invalid = fc.constantFrom(
      [0xff],
      [0x80],
      [0xc0, 0x80], // overlong NUL
      [0xe2, 0x82], // truncated sequence
      [0xed, 0xa0, 0x80], // an encoded surrogate
      [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
    );
    fc.assert(
      fc.property(envelope(finite), invalid, fc.nat(), (env, bad, at) => {
        // `{"sender_id":"<inserted><sender id>", ...}`: compact JSON, with the insertion point at a known place.
        const { sender_id, ...rest } = env;
        const head = Buffer.from('{"sender_id":"');
        const tail = Buffer.from(`${JSON.stringify(sender_id).slice(1)},${JSON.stringify(rest).slice(1)}`);
        const bytes = Buffer.concat([head, tail]);
        for (const i of [head.length, at % (bytes.length + 1)]) {
          const result = safeDecodeEvent(
            Buffer.concat([bytes.subarray(0, i), Buffer.from(bad), bytes.subarray(i)]),
          );
          expect(result.success).toBe(false);
          if (!result.success) expect(result.error.message).toBe('[parley] payload is not valid UTF-8');
        }
        const replacement = Buffer.concat([head, Buffer.from('\uFFFD'), tail]);
        expect(decodeEvent(replacement).sender_id).toBe(`\uFFFD${sender_id}`);
        expectSameEvent(decodeEvent(bytes), env);
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated fixture lines never crash the decoder', () => {
    fc.assert(fc.property(mutated, checkDecodes), { numRuns: FUZZ_RUNS });
  });

  it.skipIf(!hasPython)(
    'what is accepted re-encodes exactly as Python re-encodes it (needs /usr/bin/python3)',
    () => {
      // Duplicate keys, odd whitespace, raw unicode, wrong-typed extras: Parley's bytes must be Python's. Legacy
      // `form` events are left out (Parley normalises them, as Rasa does on reading), and so are texts that
      // cannot travel as a UTF-8 line.
      const accepted = fc.sample(mutated, { numRuns: 3_000, seed: 20240621 }).filter((t) => {
        const result = safeDecodeEvent(t);
        if (!result.success || t.includes('\n') || Buffer.from(t).toString() !== t) return false;
        const { event } = parseJson(t) as { event: string };
        return event !== 'form' && event !== 'form_validation';
      });
      expect(accepted.length).toBeGreaterThan(300);
      const out = execFileSync(PYTHON, ['-c', PYTHON_ROUND_TRIP], {
        input: accepted.join('\n'),
        encoding: 'utf8',
        maxBuffer: 1 << 26,
      }).split('\n');
      for (const [i, t] of accepted.entries()) {
        expect(stringifyEvent(decodeEvent(t), python), `input ${i}: ${t}`).toBe(out[i]);
      }
    },
  );

  it('wrong types in known fields are reported with the path, the expectation and the found value', () => {
    const slot = lines.find((l) => l.includes('"event": "slot"'))!;
    const user = lines.find((l) => l.includes('"event": "user"'))!;
    const cases: [string, string[], unknown, { path: string; expected: string; found: string }][] = [
      [slot, ['timestamp'], 'x', { path: 'timestamp', expected: 'a number', found: 'string "x"' }],
      [slot, ['name'], 5, { path: 'name', expected: 'a string', found: 'number 5' }],
      [
        user,
        ['parse_data', 'entities'],
        {},
        { path: 'parse_data.entities', expected: 'an array', found: 'an object' },
      ],
      [
        user,
        ['parse_data', 'intent', 'confidence'],
        'high',
        { path: 'parse_data.intent.confidence', expected: 'a number or null', found: 'string "high"' },
      ],
    ];
    for (const [line, path, value, issue] of cases) {
      const result = safeDecodeEvent(asJson(line, (root) => setPath(root, path, value)));
      if (result.success) return expect.fail(`accepted ${issue.path}`);
      expect(result.error).toBeInstanceOf(EventValidationError);
      expect(result.error).toMatchObject(issue);
      expect(result.error.message).toMatch(/^\[parley\] invalid "(slot|user)" event at /);
    }
  });

  it('deep nesting fails fast instead of overflowing the stack', () => {
    const N = 200_000;
    const inputs = [
      '['.repeat(N),
      '{"a":'.repeat(N),
      '['.repeat(N) + ']'.repeat(N),
      '{"a":'.repeat(N) + '1' + '}'.repeat(N),
      `{"sender_id": "s", "event": "x", "timestamp": NaN, "d": ${'['.repeat(N)}${']'.repeat(N)}}`,
      `{"sender_id": "s", "event": "x", "timestamp": 1.0, "d": ${'{"a":'.repeat(N)}`,
    ];
    for (const input of inputs) {
      const start = performance.now();
      const result = safeDecodeEvent(input);
      expect(performance.now() - start).toBeLessThan(1_000);
      expect(result.success).toBe(false);
      if (!result.success) expectDecodeError(result.error);
      expect(() => decodeEvent(Buffer.from(input))).toThrow(/^\[parley\] /);
    }
  });

  it('deep but well-formed nesting inside an envelope returns a result quickly', () => {
    // Accepted today when JSON.parse takes it (the 512 limit only applies on the slow path); see the report.
    const input = `{"sender_id": "s", "event": "x", "timestamp": 1.0, "d": ${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    const start = performance.now();
    const result = safeDecodeEvent(input);
    expect(performance.now() - start).toBeLessThan(1_000);
    if (!result.success) expectDecodeError(result.error);
  });
});

describe('types', () => {
  it('strict decoding gives the RasaEvent union, which narrows on event', () => {
    const line = '{"sender_id": "s", "event": "slot", "timestamp": 1.0, "name": "city", "value": "Berlin"}';
    const e = decodeEvent(line, { strict: true });
    expectTypeOf(e).toEqualTypeOf<EventEnvelope<RasaEvent>>();
    expectTypeOf(decodeEvent(line)).toEqualTypeOf<EventEnvelope<AnyEvent>>();
    if (e.event === 'slot') {
      expectTypeOf(e.name).toEqualTypeOf<string>();
      expect(e.name).toBe('city');
    } else {
      expect.fail('not narrowed');
    }
    const started = createEvent('flow_started', { flow_id: 'x' });
    expectTypeOf(started).toEqualTypeOf<FlowStarted>();
    expect(started).toMatchObject({ event: 'flow_started', flow_id: 'x' });
  });
});
