#!/usr/bin/env python3
"""Generate test/fixtures/python-json-vectors.json: values whose json.dumps output Parley must reproduce.

Each vector is {"source": json.dumps(value)} with Python's default settings, exactly as Rasa writes events.
Run: /usr/bin/python3 packages/core/scripts/gen-python-json-vectors.py
"""

import json
import math
import os
import random
import sys

FLOATS = [
    1.0, 0.1, 0.5, 1e-05, 1e-4, 0.0001, 0.00012345, 9.999e-05, 1e15, 1e16, 1.5e16, 9007199254740993.0,
    1e21, 1e22, 1e100, 1e-100, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.0,
    123456789.123, float(2**53), float(2**53 + 2), 1234567890123456.0, 9999999999999998.0, 0.30000000000000004,
    1 / 3, -2.5, 100.0, 1e300 * 10, 3.141592653589793, 2.718281828459045e-10, 6.02214076e23, -1e-7,
    float("nan"), float("inf"), float("-inf"), 1.6952345678e9, 1700000000.123456,
]

INTS = [0, 1, -1, 42, 2**31, 2**32, 2**53 - 1, 2**53, 2**53 + 1, -(2**53 + 1), 10**20, 10**21, -10**30,
        18446744073709551615, 12345678901234567890, 10**100]

STRINGS = [
    "", "plain", "é", "naïve café", "日本語テキスト", "😀", "a😀b", "\U0001F468\u200d\U0001F469",
    json.loads('"\\ud800"'), json.loads('"\\udfff"'), json.loads('"x\\udc00y\\ud83d"'),
    "".join(chr(c) for c in range(0x20)), "\x7f", "\x80", "\u00a0", "\u2028\u2029", "\ufeff", "\uffff",
    'say "hi"', "back\\slash", "a/b</script>", "tab\there", "line\nbreak\r\n", "\b\f", "~ !",
]

KEYED = [
    {"2": 1, "10": 2, "a": 3, "1": 4},
    {"a": 1, "2": 2},
    {"1": "x", "0": "y"},
    {"b": {"3": 1, "c": 2, "0": 3}, "a": [{"9": 1, "8": 2}]},
    {"4294967294": 1, "4294967295": 2, "a": 3, "0": 4},
    {"01": 1, "1": 2},
    {"-1": 1, "0": 2},
    {"1.5": 1, "1": 2},
    {"__proto__": {"x": 1}, "constructor": 2, "toString": 3},
    {"0": 1, "1": 2, "2": 3},
    {"z": 1, "y": 2, "x": 3},
    {"": 0, " ": 1, "é": 2, "😀": 3},
]


def deep(n, leaf):
    v = leaf
    for i in range(n):
        v = [v] if i % 2 else {"d": v}
    return v


def rasa_event():
    return {
        "event": "user", "timestamp": 1700000000.0, "metadata": {"model_id": "abc"}, "text": "hé /start",
        "parse_data": {
            "intent": {"name": "greet", "confidence": 1.0},
            "entities": [{"entity": "n", "start": 0, "end": 2, "confidence_entity": 0.9987, "value": 12}],
            "intent_ranking": [{"name": "greet", "confidence": 1.0}, {"name": "bye", "confidence": 0.0}],
            "text": "hé",
        },
        "input_channel": None, "message_id": "5f0c", "sender_id": "42",
    }


def random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(INTS + [rng.randrange(-10**25, 10**25)])
    if kind == 2:
        return rng.choice(FLOATS + [rng.uniform(-1e6, 1e6), float(rng.randrange(-1000, 1000))])
    if kind == 3:
        e = rng.randrange(-330, 310)
        return rng.random() * 10.0 ** e if e < 308 else rng.random()
    if kind == 4:
        return "".join(chr(rng.choice([rng.randrange(0x20, 0x7f), rng.randrange(0x10000),
                                       rng.randrange(0x20)])) for _ in range(rng.randrange(8)))
    if kind == 5:
        return rng.choice(STRINGS)
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = [rng.choice(["a", "b", "0", "1", "2", "10", "x y", "é", "7"]) for _ in range(rng.randrange(6))]
    return {k: random_value(rng, depth + 1) for k in keys}


def main():
    values = []
    values += FLOATS + [-f for f in FLOATS if not math.isnan(f)]
    values += INTS
    values += STRINGS
    values += KEYED
    values += [{}, [], [[]], [{}], {"a": {}}, {"a": []}, None, True, False]
    values += [deep(40, 1.0), deep(200, "x"), deep(512, 0)]
    values += [rasa_event(), [rasa_event(), {"event": "action", "timestamp": 1.0, "name": "x", "confidence": 1}]]
    values += [FLOATS, INTS, STRINGS, {"floats": FLOATS, "ints": INTS}]
    rng = random.Random(20240611)
    values += [random_value(rng) for _ in range(60)]

    vectors = [{"source": json.dumps(v)} for v in values]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures",
                       "python-json-vectors.json")
    with open(out, "w", encoding="ascii") as f:
        f.write("[\n" + ",\n".join(" " + json.dumps(v) for v in vectors) + "\n]\n")
    print(f"wrote {len(vectors)} vectors to {os.path.normpath(out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
