#!/usr/bin/env python3
"""Generate the stash golden vectors from the installed gunicorn and CPython.

Two files, both written by running the real code, never by hand:

* ``fnmatch_vectors.json``: ``[name, pattern, match]`` triples (one per
  line) where ``match`` is CPython's ``fnmatch.fnmatch(name, pattern)`` (what gunicorn's
  arbiter uses for ``stash.keys(table, pattern=...)``). Curated corner cases
  plus deterministic random patterns over the characters that matter
  (``* ? [ ] ! - ^ \\ / & ~ |``, newline, non-ASCII).

* ``stash_vectors.json``: one long session of STASH requests replayed, in
  order, through gunicorn's own ``DirtyArbiter.handle_stash_request`` (on a
  bare object holding ``stash_tables``), each request framed by gunicorn's
  encoder and read back with ``BinaryProtocol.read_message_async`` exactly
  as the arbiter reads it. For each step the file holds the request payload,
  gunicorn's answer (message type and payload bytes) and what gdirty must
  answer. The two differ only where gdirty deliberately follows gunicorn's
  documented client behaviour (``deviation`` names the rule):

  - ``error-type``: key/table not found. gunicorn's arbiter sets
    ``error.error_type = "StashKeyNotFoundError"`` (or
    ``StashTableNotFoundError``) on the exception, but ``to_dict()`` sends
    the class name ``DirtyError``, so ``stash.get(t, k, default)`` raises
    instead of returning the default. gdirty sends the name gunicorn meant;
    the message and details stay gunicorn's.
  - ``error-dict-value``: ``get`` of a stored value that is a dict with an
    ``"error"`` key. gunicorn mistakes it for its internal error marker and
    answers an error; gdirty returns the value (encoded here by gunicorn's
    encoder, as gunicorn answers any other value).

Usage (from the repository root)::

    .venv/bin/python testdata/golden/gen_stash_vectors.py            # rewrite
    .venv/bin/python testdata/golden/gen_stash_vectors.py --out DIR  # elsewhere

Output is deterministic (tests/test_stash.py checks the committed files are
current).
"""

import argparse
import asyncio
import fnmatch
import json
import logging
import os
import random
import sys

import gunicorn
from gunicorn.dirty import arbiter as garb
from gunicorn.dirty.protocol import MSG_TYPE_STASH, BinaryProtocol, make_response
from gunicorn.dirty.tlv import TLVEncoder

HERE = os.path.dirname(os.path.abspath(__file__))

PUT, GET, DELETE, KEYS, CLEAR, INFO, ENSURE, DELETE_TABLE, TABLES, EXISTS = range(1, 11)
NAN = float("nan")


# ---------------------------------------------------------------------------
# fnmatch
# ---------------------------------------------------------------------------

CURATED_PATTERNS = [
    "", "*", "**", "?", "??", "*?*", "a*", "*a", "a*b", "*a*b*", "a?c",
    "user:*", "user:?", "user:*:session:?", "*/*", "a/*", "*/", "a/b", "/*",
    "[abc]", "[!abc]", "[a-c]", "[!a-c]", "[a-cx-z]", "[z-a]", "[!z-a]",
    "[a-]", "[-a]", "[!-a]", "[!a-]", "[a-c-e]", "[]]", "[!]]", "[]a]",
    "[!]a]", "[]-a]", "[!]-!]", "[", "[a", "[!", "[!]", "[]", "a[", "a[]",
    "[^a]", "[!^a]", "[[]", "[[a]", "[a[]", "[\\]", "[\\a]", "\\", "a\\b",
    "[a\\-z]", "[--a]", "[a--]", "[a&&b]", "[a~~b]", "[a||b]", "[&]", "[~|]",
    "[a-a]", "[b-a]", "[a-b-a]", "[!a-b-a]", "[]-]", "[!]-]",
    "[à-ÿ]", "é*", "*日本*", "[😀]", "?😀", "[!😀]", "\n", "*\n*", "[\n]",
    ".", ".*", "a.b", "(a)", "a|b", "a+", "{a,b}", "$", "^a", "a$",
    "[[:alpha:]]", "[a[:alpha:]]", "[?]", "[*]", "*[*]*", "[!*]",
]

CURATED_NAMES = [
    "", "a", "b", "c", "z", "ab", "abc", "acb", "a/b", "/", "a/", "/a", "a/b/c",
    "user:1", "user:12", "user:1:session:x", "user:x:session:", "-", "]", "[",
    "!", "^", "\\", "a\\b", "&", "~", "|", "*", "?", ".", "à", "é", "ÿ", "é!",
    "日本", "x日本y", "😀", "a😀", "\n", "a\nb", "True", "None", "1", "1.5",
    "b'x'", "(a)", "a|b", "{a,b}", "$", "a$", "bb", "ba",
]

PAT_ALPHABET = "ab-!]\\[^*?/&~|é😀\n"
NAME_ALPHABET = "ab-!]\\[^/&~|é😀\nxz"


def derived_names(rng, pat):
    """Names likely to match pat: each metacharacter replaced at random."""
    out = []
    for _ in range(2):
        s = []
        for ch in pat:
            if ch == "*":
                s.append("".join(rng.choice(NAME_ALPHABET) for _ in range(rng.randint(0, 3))))
            elif ch in "?[]!":
                s.append(rng.choice(NAME_ALPHABET))
            else:
                s.append(ch)
        out.append("".join(s))
    return out


def fnmatch_cases():
    cases = []
    seen = set()

    def add(name, pat):
        if (name, pat) in seen:
            return
        seen.add((name, pat))
        cases.append([name, pat, bool(fnmatch.fnmatch(name, pat))])

    for pat in CURATED_PATTERNS:
        for name in CURATED_NAMES:
            add(name, pat)
    rng = random.Random(20240527)
    for _ in range(2500):
        pat = "".join(rng.choice(PAT_ALPHABET) for _ in range(rng.randint(0, 9)))
        names = [pat] + derived_names(rng, pat)
        names += ["".join(rng.choice(NAME_ALPHABET) for _ in range(rng.randint(0, 6)))
                  for _ in range(2)]
        for name in names:
            add(name, pat)
    return cases


# ---------------------------------------------------------------------------
# stash session through gunicorn's arbiter
# ---------------------------------------------------------------------------

def steps():
    """(name, payload dict) pairs; absent fields are simply left out."""
    s = []

    def add(name, **payload):
        s.append((name, payload))

    add("tables on an empty stash", op=TABLES, table="")
    add("put creates the table", op=PUT, table="t", key="k1", value="v1")
    add("put bytes value", op=PUT, table="t", key="k2", value=b"\x00\xffbin")
    add("put int key", op=PUT, table="t", key=1, value="int one")
    add("put True updates key 1", op=PUT, table="t", key=True, value="bool true")
    add("put 1.0 updates key 1", op=PUT, table="t", key=1.0, value="float one")
    add("get by True", op=GET, table="t", key=True)
    add("get by 1", op=GET, table="t", key=1)
    add("keys keep the first key object", op=KEYS, table="t")
    add("put False", op=PUT, table="t", key=False, value="false")
    add("put 0 updates False", op=PUT, table="t", key=0, value="zero")
    add("put -0.0 updates False", op=PUT, table="t", key=-0.0, value="negzero")
    add("get 0.0", op=GET, table="t", key=0.0)
    add("put 2.5", op=PUT, table="t", key=2.5, value=[1, 2.5, "x", None, True, b"b", {"n": {"m": []}}])
    add("get 2.5", op=GET, table="t", key=2.5)
    add("put str '1' is not 1", op=PUT, table="t", key="1", value="str one")
    add("put bytes b'1' is not '1'", op=PUT, table="t", key=b"1", value="bytes one")
    add("get b'1'", op=GET, table="t", key=b"1")
    add("put big int", op=PUT, table="t", key=2**63 - 1, value=-2**63)
    add("get big int as float (not equal)", op=GET, table="t", key=9.223372036854775807e18)
    add("put float 2**63", op=PUT, table="t", key=9.223372036854775807e18, value="2**63")
    add("put -2**63 as float equals int", op=PUT, table="t", key=-9.223372036854775808e18, value="min")
    add("get int min", op=GET, table="t", key=-2**63)
    add("put inf", op=PUT, table="t", key=float("inf"), value=float("-inf"))
    add("get inf", op=GET, table="t", key=float("inf"))
    add("put NaN", op=PUT, table="t", key=NAN, value="nan 1")
    add("put NaN again adds", op=PUT, table="t", key=NAN, value="nan 2")
    add("get NaN never found", op=GET, table="t", key=NAN)
    add("exists NaN", op=EXISTS, table="t", key=NAN)
    add("delete NaN", op=DELETE, table="t", key=NAN)
    add("put None key (absent)", op=PUT, table="t", value="none key")
    add("put None key explicit", op=PUT, table="t", key=None, value="none key 2")
    add("get None key (absent)", op=GET, table="t")
    add("put absent value stores None", op=PUT, table="t", key="nv")
    add("get None value", op=GET, table="t", key="nv")
    add("exists with None key is table-level", op=EXISTS, table="t", key=None)
    add("keys in insertion order", op=KEYS, table="t")
    add("re-put k1 keeps position", op=PUT, table="t", key="k1", value="v1b")
    add("delete k2", op=DELETE, table="t", key=b"1")
    add("delete again", op=DELETE, table="t", key=b"1")
    add("re-add moves to end", op=PUT, table="t", key=b"1", value="back")
    add("keys after re-add", op=KEYS, table="t")
    add("info", op=INFO, table="t")
    add("info by equal table key", op=INFO, table="t", key="ignored")

    # key not found / table not found (deviation: error types)
    add("get missing key", op=GET, table="t", key="nope")
    add("get missing key bytes", op=GET, table="t", key=b"it's")
    add("get missing key quotes", op=GET, table="t", key="it's \"q\" é\n")
    add("get missing table", op=GET, table="missing", key="k")
    add("get missing table no key", op=GET, table="missing")
    add("get missing table list key", op=GET, table="missing", key=[1, "a"])
    add("get missing table dict key", op=GET, table="missing", key={"a": 1})
    add("info missing table", op=INFO, table="missing")
    add("info missing bytes table", op=INFO, table=b"missing")
    add("info missing int table", op=INFO, table=42)
    add("info missing no table", op=INFO)
    add("exists missing table", op=EXISTS, table="missing")
    add("exists missing table key", op=EXISTS, table="missing", key="k")
    add("exists missing table list key", op=EXISTS, table="missing", key=[1])
    add("delete missing table", op=DELETE, table="missing", key="k")
    add("delete missing table list key", op=DELETE, table="missing", key=[1])
    add("keys missing table", op=KEYS, table="missing")
    add("keys missing table bad pattern", op=KEYS, table="missing", pattern=5)
    add("clear missing table", op=CLEAR, table="missing")
    add("delete_table missing", op=DELETE_TABLE, table="missing")
    add("tables: nothing created by reads", op=TABLES, table="")

    # unhashable keys and tables
    add("put list key creates table then fails", op=PUT, table="u", key=[1], value="x")
    add("tables shows u", op=TABLES, table="")
    add("put dict key", op=PUT, table="u", key={"a": 1}, value="x")
    add("get list key", op=GET, table="u", key=[1])
    add("get dict key", op=GET, table="u", key={})
    add("delete list key", op=DELETE, table="u", key=[])
    add("exists list key", op=EXISTS, table="u", key=[1])
    add("info u", op=INFO, table="u")
    add("put list table", op=PUT, table=[1], key="k", value="v")
    add("get list table", op=GET, table=[1], key="k")
    add("delete list table", op=DELETE, table={"t": 1}, key="k")
    add("keys list table", op=KEYS, table=[1])
    add("clear list table", op=CLEAR, table=[1])
    add("info dict table", op=INFO, table={"a": [1]})
    add("ensure list table", op=ENSURE, table=[])
    add("delete_table list table", op=DELETE_TABLE, table=[1])
    add("exists list table", op=EXISTS, table=[1])
    add("exists dict table with key", op=EXISTS, table={}, key="k")
    add("tables ignores table field", op=TABLES, table=[1])
    add("tables with no table field", op=TABLES)

    # table identity
    add("ensure 1", op=ENSURE, table=1)
    add("ensure True is table 1", op=ENSURE, table=True)
    add("put into table 1.0", op=PUT, table=1.0, key="k", value="in table one")
    add("info True shows the request's table", op=INFO, table=True)
    add("get from table 1", op=GET, table=1, key="k")
    add("ensure NaN", op=ENSURE, table=NAN)
    add("ensure NaN again adds a table", op=ENSURE, table=NAN)
    add("info NaN", op=INFO, table=NAN)
    add("exists NaN table", op=EXISTS, table=NAN)
    add("delete_table NaN", op=DELETE_TABLE, table=NAN)
    add("ensure None table", op=ENSURE, table=None)
    add("ensure bytes table", op=ENSURE, table=b"t")
    add("ensure str table t again", op=ENSURE, table="t")
    add("put with no table field uses ''", op=PUT, key="k", value="v")
    add("info ''", op=INFO, table="")
    add("tables in creation order", op=TABLES, table="")
    add("delete_table 1 via True", op=DELETE_TABLE, table=True)
    add("delete_table again", op=DELETE_TABLE, table=1)
    add("tables after delete", op=TABLES, table="")
    add("re-create moves to end", op=ENSURE, table=1.0)
    add("tables after re-create", op=TABLES, table="")

    # clear / exists / delete
    add("exists table", op=EXISTS, table="t")
    add("exists key", op=EXISTS, table="t", key="k1")
    add("exists absent key", op=EXISTS, table="t", key="zz")
    add("delete returns True", op=DELETE, table="t", key="k1")
    add("delete returns False", op=DELETE, table="t", key="k1")
    add("clear", op=CLEAR, table="t")
    add("info after clear", op=INFO, table="t")
    add("keys after clear", op=KEYS, table="t")
    add("clear keeps table", op=EXISTS, table="t")
    add("delete_table t", op=DELETE_TABLE, table="t")
    add("exists after delete_table", op=EXISTS, table="t")

    # patterns
    for k in ["user:1", "user:2", "user:10", "admin:1", "a/b", "a/b/c", "x", "[lit]",
              "Ab", "aB", "a\nb", "é", 7, 7.5, b"raw", None, True, -0.0, float("inf")]:
        add(f"put pattern key {k!r}", op=PUT, table="p", key=k, value=str(k))
    for pat in ["*", "user:*", "user:?", "user:??", "*:1", "a/*", "*/*", "a/?", "a*c",
                "[ua]*", "[!ua]*", "[a-u]*", "[!a-u]*", "?", "[[]*", "[]lit]*", "[!]]*",
                "a?b", "A*", "a*", "*\n*", "é", "[à-ÿ]", "7*", "7.?", "b'*'", "None",
                "True", "0.0", "-0.0", "inf", "[", "[*", "\\*", "user:[12]", "user:[!1]",
                "user:[0-9]*", "user:[9-0]*", "*[!0-9]"]:
        add(f"keys pattern {pat!r}", op=KEYS, table="p", pattern=pat)
    for pat in ["", None, 0, 0.0, -0.0, False, [], {}, b""]:
        add(f"keys falsy pattern {pat!r}", op=KEYS, table="p", pattern=pat)
    for pat in [5, 1.5, NAN, True, b"user:*", [1], {"a": 1}]:
        add(f"keys non-str pattern {pat!r}", op=KEYS, table="p", pattern=pat)
    add("ensure an empty table", op=ENSURE, table="empty")
    add("keys empty table int pattern", op=KEYS, table="empty", pattern=5)

    # op field
    for op in [None, 0, 11, -1, 2.5, "1", b"\x01", [1], {"op": 1}, NAN, float("inf"), False]:
        add(f"unknown op {op!r}", op=op, table="t")
    add("op absent", table="t")
    add("op 1.0 is put", op=1.0, table="o", key="k", value="v")
    add("op True is put", op=True, table="o", key="k2", value="v2")
    add("op 2.0 is get", op=2.0, table="o", key="k")
    add("op 9.0 is tables", op=9.0)
    add("extra fields ignored", op=GET, table="o", key="k", extra=[1, 2], pattern="zz")

    # values come back as stored
    values = [None, True, False, 0, -1, 2**63 - 1, -2**63, 0.0, -0.0, 1.5, float("inf"),
              NAN, "", "é日本😀", b"", bytes(range(256)), [], {}, [[[]]],
              {"b": 1, "a": [1, {"z": None}]}, "x" * 1000]
    for i, v in enumerate(values):
        add(f"put value #{i}", op=PUT, table="vals", key=i, value=v)
    for i in range(len(values)):
        add(f"get value #{i}", op=GET, table="vals", key=i)
    add("keys of vals", op=KEYS, table="vals")

    # gunicorn's marker confusion (deviation: error-dict-value)
    add("put dict value with 'error'", op=PUT, table="e", key="a", value={"error": "oops"})
    add("get it back", op=GET, table="e", key="a")
    add("put dict value with error key_not_found", op=PUT, table="e", key="b",
        value={"error": "key_not_found"})
    add("get it back (2)", op=GET, table="e", key="b")
    add("put dict value with non-str error", op=PUT, table="e", key="c", value={"error": 5})
    add("get it back (3)", op=GET, table="e", key="c")
    add("final tables", op=TABLES, table="")
    return s


class _Writer:
    def __init__(self):
        self.buf = b""

    def write(self, data):
        self.buf += data

    async def drain(self):
        pass


class _Arbiter:
    """What handle_stash_request uses of a DirtyArbiter."""

    def __init__(self):
        self.stash_tables = {}
        self.log = logging.getLogger("gen_stash_vectors")
        self.log.addHandler(logging.NullHandler())
        self.log.propagate = False


def _stored(arb, payload):
    """(True, value) when a GET would find a stored value."""
    table = payload.get("table", "")
    key = payload.get("key")
    try:
        if table in arb.stash_tables and key in arb.stash_tables[table]:
            return True, arb.stash_tables[table][key]
    except TypeError:
        pass
    return False, None


async def _run_step(arb, request_id, payload, captured):
    raw = TLVEncoder.encode(payload)
    reader = asyncio.StreamReader()
    reader.feed_data(BinaryProtocol.encode_header(MSG_TYPE_STASH, request_id, len(raw)) + raw)
    reader.feed_eof()
    message = await BinaryProtocol.read_message_async(reader)
    writer = _Writer()
    captured.clear()
    await garb.DirtyArbiter.handle_stash_request(arb, message, writer)
    msg_type, rid, answer = BinaryProtocol.decode_message(writer.buf)
    assert rid == request_id
    return raw, msg_type, writer.buf[BinaryProtocol.HEADER_SIZE:]


def stash_cases():
    arb = _Arbiter()
    captured = []
    real_make_error_response = garb.make_error_response

    def spy(request_id, error):
        captured.append(error)
        return real_make_error_response(request_id, error)

    garb.make_error_response = spy
    out = []
    try:
        for n, (name, payload) in enumerate(steps(), start=1):
            op = payload.get("op")
            found, stored = _stored(arb, payload) if op == GET and type(op) is int else (False, None)
            raw, msg_type, answer = asyncio.run(_run_step(arb, n, payload, captured))
            case = {"name": name, "payload_hex": raw.hex(),
                    "gunicorn": {"type": msg_type, "payload_hex": answer.hex()},
                    "deviation": None}
            expect = {"type": msg_type, "payload_hex": answer.hex()}
            if msg_type == "error" and found:
                case["deviation"] = "error-dict-value"
                resp = make_response(n, stored)
                expect = {"type": "response",
                          "payload_hex": TLVEncoder.encode({"result": resp["result"]}).hex()}
            elif msg_type == "error" and captured and "error_type" in vars(captured[0]):
                err = captured[0]
                case["deviation"] = "error-type"
                d = err.to_dict()
                d["error_type"] = err.error_type
                expect = {"type": "error", "payload_hex": TLVEncoder.encode({"error": d}).hex()}
            case["expect"] = expect
            out.append(case)
    finally:
        garb.make_error_response = real_make_error_response
    return out


def write(path, obj):
    text = json.dumps(obj, indent=1, ensure_ascii=True, allow_nan=False)
    with open(path, "w", encoding="ascii") as f:
        f.write(text + "\n")


def write_fnmatch(path, meta, cases):
    """One case per line: diffs of a regenerated file stay readable."""
    head = json.dumps(meta, indent=1, ensure_ascii=True)[:-2]
    lines = [json.dumps(c, ensure_ascii=True) for c in cases]
    with open(path, "w", encoding="ascii") as f:
        f.write(head + ',\n "cases": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE,
                    help="directory to write into (default: next to this script)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "generator": "testdata/golden/gen_stash_vectors.py",
        "gunicorn_version": gunicorn.__version__,
        "python_version": sys.version.split()[0],
    }
    write_fnmatch(os.path.join(args.out, "fnmatch_vectors.json"), meta, fnmatch_cases())
    write(os.path.join(args.out, "stash_vectors.json"), dict(meta, steps=stash_cases()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
