#!/usr/bin/env python3
"""Generate the protocol v0 (gunicorn 25.0.x, JSON) golden vectors.

Must run under gunicorn 25.0.x (25.0.3 is the reference): every expected
byte and message here comes from that release's own code —
gunicorn.dirty.protocol.DirtyProtocol.encode/decode, the make_* helpers and
gunicorn.dirty.errors. The only hand-made bytes are *inputs* (raw JSON
texts, malformed bodies); what they become is recorded by running gunicorn
on them.

Usage (from the repository root):

    .venv-25.0.3/bin/python testdata/golden/gen_v0_vectors.py            # rewrite
    .venv-25.0.3/bin/python testdata/golden/gen_v0_vectors.py --out DIR  # elsewhere

Deterministic; tests/test_v0_protocol.py checks the committed file is
current. Read by compat/v0/golden_test.go.
"""

import argparse
import json
import math
import os
import random
import struct
import sys

import gunicorn
from gunicorn.dirty import errors as E
from gunicorn.dirty.protocol import (
    DirtyProtocol,
    make_chunk_message,
    make_end_message,
    make_error_response,
    make_request,
    make_response,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_NAME = "v0_vectors.json"

# Values a 25.0 client or worker may put in a message: the JSON edge cases
# (escapes, non-ASCII, astral, lone surrogates, NaN/Infinity, -0.0, big
# ints, float repr boundaries, nesting, key order).
VALUES = [
    None, True, False, 0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64, -(10 ** 30),
    0.0, -0.0, 0.1, 1.5, 1e16, 1e15, 1e-4, 1e-5, 123456789.125, 1e308,
    5e-324, math.nan, math.inf, -math.inf,
    "", "plain", 'quote " backslash \\ slash /', "\b\f\n\r\t\x00\x1f\x7f",
    "caf\u00e9 \u20ac \u4e2d", "emoji \U0001F600", "lone \ud800 \udfff x",
    [], [1, "two", [3.0, None]], {}, {"b": 1, "a": [True, {"z": "y"}]},
    {"1": "int key as str", "": "empty key"},
]

# Raw JSON texts used as an id: gunicorn's arbiter echoes
# json.dumps(json.loads(text)) in the errors it synthesises.
ID_TEXTS = [
    '"0b5e1c52-3f0e-4c1c-9d7e-0a4a5a3c9b11"', '"\\u0041\\/\\u00e9"',
    '"\\uD83D\\uDE00"', '"\\ud800"', '"\\udc00\\ud800"', '"\u00e9\U0001F600"',
    '12', '-0', '1E5', '1.0e-7', '2.50', '123456789012345678901234567890',
    '1e400', '-1e400', '1e-400', 'NaN', '-Infinity', 'true', 'null',
    '[1, [2, {"a": "b"}]]', '{"k": 1, "k": 2, "j": 3}', ' {  } ',
]

# Bodies json.loads refuses (DirtyProtocol.decode's error is recorded).
INVALID = [
    b"", b" ", b"{", b"}", b"{]", b'{"a"}', b'{"a" 1}', b'{"a": }', b'{"a": 1,}',
    b'{"a": 1 "b": 2}', b"[1, 2,]", b'{"a": 01}', b'{"a": 1.}', b'{"a": .5}',
    b'{"a": -}', b'{"a": +1}', b'{"a": 1e}', b'{"a": nan}', b'{"a": inf}',
    b'{"a": True}', b'{"a": "\\x"}', b'{"a": "\\u12G4"}', b'{"a": "\\u12"}',
    b'{"a": "tab\there"}', b'{"a": "unterminated}', b"{'a': 1}",
    b'{"a": 1} x', b'{"a": 1}{}', b"\xef\xbb\xbf{}", b'{"a": "\xff"}',
    b'{"a": "\xed\xa0\x80"}', b'{"a": "\xc3"}', b"\n{\n\"a\":\n}",
    b'{"a": "\xc3\xa9", "b": }',
]


def frame_hex(msg):
    return DirtyProtocol.encode(msg).hex()


def dumps(v):
    return json.dumps(v)


def frame_cases():
    """Messages as 25.0.3's client, arbiter and worker write them."""
    cases = []
    for i, v in enumerate(VALUES):
        rid = f"req-{i}"
        cases.append({"name": f"request/{i}", "hex": frame_hex(make_request(
            rid, "mod.app:App", "act", args=(v,), kwargs={"k": v})),
            "id": dumps(rid), "app_path": dumps("mod.app:App"), "action": "act"})
        cases.append({"name": f"response/{i}", "hex": frame_hex(make_response(rid, v)),
                      "id": dumps(rid)})
        cases.append({"name": f"chunk/{i}", "hex": frame_hex(make_chunk_message(rid, v)),
                      "id": dumps(rid)})
        if isinstance(v, str):
            # Strings as id, app_path and action.
            cases.append({"name": f"request-str/{i}", "hex": frame_hex(make_request(
                v, v, v)), "id": dumps(v), "app_path": dumps(v),
                "action": v if "\ud800" not in v else None})
        if not isinstance(v, str) and v is not None:
            # Non-str app_path / id (a client may send anything).
            cases.append({"name": f"request-value/{i}", "hex": frame_hex(make_request(
                v, v, "act")), "id": dumps(v), "app_path": dumps(v), "action": "act"})
    cases.append({"name": "end", "hex": frame_hex(make_end_message("r")), "id": dumps("r")})
    cases.append({"name": "request/no-args", "hex": frame_hex(make_request(
        "r", "m:A", "a")), "id": dumps("r"), "app_path": dumps("m:A"), "action": "a"})
    return cases


def random_strings():
    """Raw UTF-8 ids over the whole code space but surrogates (which only
    escapes can carry), for ensure_ascii's output."""
    rng = random.Random(2503)
    planes = [(0, 0x80), (0x80, 0x800), (0x800, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000)]
    out = []
    for _ in range(60):
        chars = []
        for _ in range(rng.randint(0, 12)):
            lo, hi = rng.choice(planes)
            chars.append(chr(rng.randrange(lo, hi)))
        out.append(json.dumps("".join(chars), ensure_ascii=False))
    return out


def id_cases():
    out = []
    for text in ID_TEXTS + random_strings():
        body = ('{"type": "request", "id": ' + text + ', "app_path": "m:A"}').encode()
        out.append({"body_hex": body.hex(),
                    "id": dumps(DirtyProtocol.decode(body)["id"])})
    return out


def invalid_cases():
    out = []
    for body in INVALID:
        if body == b"":
            continue  # read_message refuses it before decode ("Empty message received")
        try:
            DirtyProtocol.decode(body)
        except E.DirtyProtocolError as e:
            out.append({"body_hex": body.hex(), "message": e.message,
                        "details": e.details})
        else:
            raise SystemExit(f"gunicorn accepted {body!r}")
    return out


def error_cases():
    """Errors gunicorn 25.0.3's arbiter synthesises, for ids of every
    kind: {ctor, args} names the Go constructor that must produce it."""
    ids = ['"5d3c"', '"caf\\u00e9 \\ud83d\\ude00"', "7", "null"]
    specs = [
        ("no_workers", [], lambda: E.DirtyError("No dirty workers available")),
        ("no_workers_for_app", ["mod:App"], lambda: E.DirtyNoWorkersAvailableError("mod:App")),
        ("no_workers_for_app", ["\u00e9\U0001F600\n"], lambda: E.DirtyNoWorkersAvailableError("\u00e9\U0001F600\n")),
        ("no_workers_for_app_value", ["1.5"], lambda: E.DirtyNoWorkersAvailableError(1.5)),
        ("no_workers_for_app_value", ["true"], lambda: E.DirtyNoWorkersAvailableError(True)),
        ("no_workers_for_app_value", ["NaN"], lambda: E.DirtyNoWorkersAvailableError(math.nan)),
        ("no_workers_for_app_value", ["-12"], lambda: E.DirtyNoWorkersAvailableError(-12)),
        ("timeout", [30], lambda: E.DirtyTimeoutError("Worker timeout", 30)),
        ("timeout", [0], lambda: E.DirtyTimeoutError("Worker timeout", 0)),
        ("worker", ["Worker communication failed: worker 4321 exited", 4321],
         lambda: E.DirtyWorkerError("Worker communication failed: worker 4321 exited", worker_id=4321)),
        ("protocol", ["Failed to decode message: Expecting value: line 1 column 1 (char 0)", "7b7d00ff"],
         lambda: E.DirtyProtocolError("Failed to decode message: Expecting value: line 1 column 1 (char 0)",
                                      raw_data=bytes.fromhex("7b7d00ff"))),
        ("protocol", ["Message too large: 67108865 bytes (max: 67108864)", None],
         lambda: E.DirtyProtocolError("Message too large: 67108865 bytes (max: 67108864)")),
        ("generic", ["gdirty is stopping \u2014 try again"],
         lambda: E.DirtyError("gdirty is stopping \u2014 try again")),
    ]
    out = []
    for id_text in ids:
        rid = json.loads(id_text)
        for ctor, args, build in specs:
            out.append({"id": id_text, "ctor": ctor, "args": args,
                        "hex": frame_hex(make_error_response(rid, build()))})
    return out


def float_cases():
    """json.dumps of floats across magnitudes and repr's switch points
    (bit patterns are the input, so NaN payloads and -0.0 are exact)."""
    rng = random.Random(25003)
    floats = [0.1 * 3, 2.0 ** -1074, 2.0 ** 1023 * 1.999, 1e15 - 0.5, 9999999999999998.0,
              1e16 - 2, 0.0001, 0.00009999999999999999, 123e-7, -1.5e300]
    for _ in range(150):
        floats.append(rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30))
    for _ in range(50):
        floats.append(struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0])
    return [{"bits": struct.pack(">d", f).hex(), "json": json.dumps(f)} for f in floats]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args(argv)
    if not gunicorn.__version__.startswith("25.0."):
        raise SystemExit(f"needs gunicorn 25.0.x, found {gunicorn.__version__}")
    data = {
        "generator": "testdata/golden/gen_v0_vectors.py",
        "gunicorn_version": gunicorn.__version__,
        "max_message_size": DirtyProtocol.MAX_MESSAGE_SIZE,
        "frames": frame_cases(),
        "ids": id_cases(),
        "invalid": invalid_cases(),
        "errors": error_cases(),
        "floats": float_cases(),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, OUT_NAME), "w", encoding="ascii") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
