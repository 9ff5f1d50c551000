#!/usr/bin/env python3
"""Generate gdirty's golden vectors from the installed gunicorn.

Every expected byte, decoded value and error message in the files written
here comes from gunicorn's own code (gunicorn.dirty.tlv.TLVEncoder,
gunicorn.dirty.protocol.BinaryProtocol and the make_* helpers,
gunicorn.dirty.errors, gunicorn.dirty.app.parse_dirty_app_spec) or, for the
repr vectors, from CPython's repr()/str(). Nothing is hand-written: the only
hand-made bytes are *malformed inputs*, whose expected outcome (gunicorn's
DirtyProtocolError message and details) is recorded by running gunicorn on
them.

Usage (from the repository root):

    .venv/bin/python testdata/golden/gen_vectors.py            # rewrite in place
    .venv/bin/python testdata/golden/gen_vectors.py --out DIR  # write elsewhere

Output is deterministic: running it twice against the same gunicorn gives
byte-identical files (tests/test_codec_vectors.py checks the committed files
are current).

Tagged value form (shared by Go and Python, see compat/golden_test.go):

    {"t": "none"}
    {"t": "bool", "v": true}
    {"t": "int", "v": "-9223372036854775808"}          decimal string
    {"t": "float", "bits": "7ff8000000000000", "repr": "nan"}
                                                       bits are authoritative
    {"t": "bytes", "hex": "00ff"}
    {"t": "bytes", "repeat_hex": "0001..ff", "count": 16384}
    {"t": "str", "v": "text"}
    {"t": "str", "repeat": "ab", "count": 3}           "ababab"
    {"t": "list", "v": [tagged, ...]}
    {"t": "tuple", "v": [tagged, ...]}                 encoder input only
    {"t": "dict", "v": [[tagged key, tagged value], ...]}
                                                       keys may be non-str
                                                       in encoder inputs
"""

import argparse
import asyncio
import json
import os
import random
import struct
import sys
import unicodedata

import gunicorn
from gunicorn.dirty import app as gapp
from gunicorn.dirty import errors as gerr
from gunicorn.dirty import protocol as gproto
from gunicorn.dirty import tlv as gtlv
from gunicorn.dirty.protocol import (
    BinaryProtocol,
    make_chunk_message,
    make_end_message,
    make_error_response,
    make_manage_message,
    make_request,
    make_response,
    make_stash_message,
)
from gunicorn.dirty.tlv import TLVEncoder

HERE = os.path.dirname(os.path.abspath(__file__))

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
UINT64_MAX = 2 ** 64 - 1
MIB = 1024 * 1024


# ---------------------------------------------------------------------------
# Tagged values
# ---------------------------------------------------------------------------

class Repeat:
    """A large str/bytes value described compactly as unit * count."""

    def __init__(self, unit, count):
        self.unit = unit
        self.count = count

    def value(self):
        return self.unit * self.count

    def tag(self):
        if isinstance(self.unit, bytes):
            return {"t": "bytes", "repeat_hex": self.unit.hex(),
                    "count": self.count}
        return {"t": "str", "repeat": self.unit, "count": self.count}


def fbits(f):
    return struct.pack(">d", f).hex()


def ffrom(bits_hex):
    return struct.unpack(">d", bytes.fromhex(bits_hex))[0]


def tag(v, repeats=()):
    """Tag a Python value. repeats lists Repeat objects that may be used to
    describe a large str/bytes compactly when the value equals them."""
    if v is None:
        return {"t": "none"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, int):
        return {"t": "int", "v": str(v)}
    if isinstance(v, float):
        return {"t": "float", "bits": fbits(v), "repr": repr(v)}
    if isinstance(v, (bytes, str)):
        if len(v) > 4096:
            for r in repeats:
                if type(r.unit) is type(v) and r.value() == v:
                    return r.tag()
        if isinstance(v, bytes):
            return {"t": "bytes", "hex": v.hex()}
        return {"t": "str", "v": v}
    if isinstance(v, tuple):
        return {"t": "tuple", "v": [tag(x, repeats) for x in v]}
    if isinstance(v, list):
        return {"t": "list", "v": [tag(x, repeats) for x in v]}
    if isinstance(v, dict):
        return {"t": "dict",
                "v": [[tag(k, repeats), tag(x, repeats)] for k, x in v.items()]}
    raise TypeError(f"cannot tag {type(v).__name__}")


def untag(t):
    """Rebuild the Python value of a tagged form (inverse of tag)."""
    k = t["t"]
    if k == "none":
        return None
    if k == "bool":
        return t["v"]
    if k == "int":
        return int(t["v"])
    if k == "float":
        return ffrom(t["bits"])
    if k == "bytes":
        if "repeat_hex" in t:
            return bytes.fromhex(t["repeat_hex"]) * t["count"]
        return bytes.fromhex(t["hex"])
    if k == "str":
        if "repeat" in t:
            return t["repeat"] * t["count"]
        return t["v"]
    if k == "list":
        return [untag(x) for x in t["v"]]
    if k == "tuple":
        return tuple(untag(x) for x in t["v"])
    if k == "dict":
        return {untag(kk): untag(vv) for kk, vv in t["v"]}
    raise ValueError(f"unknown tag {k!r}")


def same(a, b):
    """Strict equality: same types, floats by bits, dict key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return fbits(a) == fbits(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    return a == b


# ---------------------------------------------------------------------------
# TLV vectors
# ---------------------------------------------------------------------------

def nested_list(depth, leaf):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


def nested_dict(depth, leaf):
    v = leaf
    for i in range(depth):
        v = {f"level{depth - i}": v, "n": i}
    return v


def tlv_cases():
    all_bytes = bytes(range(256))
    big_bytes = Repeat(all_bytes, 4 * MIB // 256)          # 4 MiB
    big_str = Repeat("gdirty-\u00e9\u4e2d\U0001f600", MIB // 16)  # 1 MiB
    assert len(big_str.value().encode()) == MIB

    cases = [
        ("none", None),
        ("true", True),
        ("false", False),
        ("int_zero", 0),
        ("int_one", 1),
        ("int_minus_one", -1),
        ("int_255", 255),
        ("int_256", 256),
        ("int_2pow31", 2 ** 31),
        ("int_minus_2pow31_minus_1", -(2 ** 31) - 1),
        ("int_2pow32", 2 ** 32),
        ("int64_min", INT64_MIN),
        ("int64_max", INT64_MAX),
        ("float_zero", 0.0),
        ("float_neg_zero", -0.0),
        ("float_1_5", 1.5),
        ("float_neg_2_25", -2.25),
        ("float_0_1", 0.1),
        ("float_1e300", 1e300),
        ("float_min_subnormal", 5e-324),
        ("float_max", 1.7976931348623157e308),
        ("float_min_normal", 2.2250738585072014e-308),
        ("float_nan", float("nan")),
        ("float_neg_nan", -float("nan")),
        ("float_nan_payload", ffrom("7ff8000000000001")),
        ("float_inf", float("inf")),
        ("float_neg_inf", float("-inf")),
        ("str_empty", ""),
        ("str_ascii", "hello, dirty world"),
        ("str_nul", "a\x00b"),
        ("str_control", "\t\n\r\x1b\x7f"),
        ("str_latin1", "caf\u00e9 na\u00efve \u00ff"),
        ("str_cjk", "\u4e2d\u6587\u65e5\u672c\u8a9e\ud55c\uad6d\uc5b4"),
        ("str_emoji", "\U0001f600\U0001f680\U0001f44d\U0001f3fd"),
        ("str_mixed_utf8", "a\u00e9\u20ac\U0001f600\u4e2d\ufeff\ufffd\U0010ffff"),
        ("str_1mib", big_str),
        ("bytes_empty", b""),
        ("bytes_all_256", all_bytes),
        ("bytes_utf8_invalid_is_fine", b"\xff\xfe\xc0\x80"),
        ("bytes_4mib", big_bytes),
        ("list_empty", []),
        ("dict_empty", {}),
        ("list_scalars", [None, True, False, 0, -1, 1.5, "s", b"b"]),
        ("list_nested", [1, [2, [3, [4, [5, []]]]], [[], [[]]]]),
        ("list_nested_deep_20", nested_list(20, "leaf")),
        ("dict_simple", {"a": 1, "b": "two", "c": None}),
        ("dict_nested", {"outer": {"inner": {"leaf": [1, 2, {"x": b"\x00"}]}},
                         "list": [{"a": 1}, {"b": [True, None]}]}),
        ("dict_nested_deep_10", nested_dict(10, "bottom")),
        ("dict_insertion_order", {"zeta": 1, "alpha": 2, "mu": 3, "beta": 4,
                                  "\u00e9": 5, "A": 6, "": 7}),
        ("dict_unicode_keys", {"\u4e2d": 1, "\U0001f600": [2], "caf\u00e9": {}}),
        ("tuple_to_list", (1, "two", 3.0)),
        ("tuple_nested", ((1, 2), [3, (4,)], ())),
        ("dict_int_keys", {1: "one", -2: "minus two", INT64_MAX: "max"}),
        ("dict_float_keys", {1.5: "a", -0.0: "b", 1e300: "c", 1e16: "d",
                             5e-324: "e", float("inf"): "f", float("nan"): "g",
                             0.1: "h", 100.0: "i"}),
        ("dict_bool_none_keys", {True: 1, False: 2, None: 3}),
        ("dict_bytes_key", {b"k'ey": 1}),
        ("dict_mixed_keys", {"s": 1, 2: "int", 3.25: "float", None: [],
                             False: {}}),
        # 1 and "1" are distinct Python keys that both encode as "1": the
        # wire carries two entries; decoding keeps the first position and
        # the last value.
        ("dict_key_collision", {1: "int one", "x": 0, "1": "str one"}),
        ("dict_key_collision_large",
         dict([(i, f"v{i}") for i in range(20)] + [("5", "dup"), ("19", "dup19")])),
        ("dict_100_keys", {f"key{i:03d}": i for i in range(100)}),
        ("list_1000_ints", list(range(-500, 500))),
        ("mixed", {
            "app_path": "myapp.ml:MLApp",
            "action": "predict",
            "args": ["text", 3, 2.5, None, True, b"\x00\x01"],
            "kwargs": {"temperature": 0.7, "stop": ["\n", "END"],
                       "meta": {"user": "\u00e9l\u00e8ve", "ids": (1, 2, 3)}},
            "result": [{"score": -0.0, "label": "x"}, float("inf")],
        }),
    ]

    out = []
    for name, value in cases:
        repeats = ()
        if isinstance(value, Repeat):
            repeats = (value,)
            input_tag = value.tag()
            value = value.value()
        else:
            input_tag = tag(value)
        assert same(untag(input_tag), value), name
        encoded = TLVEncoder.encode(value)
        decoded = TLVEncoder.decode_full(encoded)
        out.append({
            "name": name,
            "input": input_tag,
            "decoded": tag(decoded, repeats),
            "hex": encoded.hex(),
        })
    return out


def encode_error_cases():
    """gunicorn's encoder limits, just past each limit. Only the message is
    kept (the inputs are huge); the Go test rebuilds them at runtime."""
    out = []
    for what, size, make in (
            ("bytes", gtlv.MAX_BYTES_SIZE + 1, lambda n: b"\x00" * n),
            ("str", gtlv.MAX_STRING_SIZE + 1, lambda n: "a" * n),
            ("list", gtlv.MAX_LIST_SIZE + 1, lambda n: [None] * n),
            ("dict", gtlv.MAX_DICT_SIZE + 1, lambda n: dict.fromkeys(range(n)))):
        value = make(size)
        try:
            TLVEncoder.encode(value)
        except gerr.DirtyProtocolError as e:
            out.append({"name": f"{what}_over_limit", "what": what,
                        "size": size, "message": str(e.message)})
        else:
            raise AssertionError(f"gunicorn encoded an oversized {what}")
        del value
    return out


# ---------------------------------------------------------------------------
# Frame vectors
# ---------------------------------------------------------------------------

def frame_record(name, frame, builder, go=None, **extra):
    msg_type, request_id, length = BinaryProtocol.decode_header(frame)
    type_name, rid, payload = BinaryProtocol.decode_message(frame)
    assert rid == request_id and len(frame) == gproto.HEADER_SIZE + length
    rec = {
        "name": name,
        "builder": builder,
        "type": msg_type,
        "type_name": type_name,
        "id": request_id,
        "length": length,
        "decoded": tag(payload),
        "hex": frame.hex(),
    }
    if go is not None:
        rec["go"] = go
    rec.update(extra)
    return rec


def frame_cases():
    P = BinaryProtocol
    enc = P._encode_from_dict  # what write_message/write_message_async send
    out = []

    # -- requests ---------------------------------------------------------
    requests = [
        ("request_basic", 1, "myapp.ml:MLApp", "predict", ("hello",), {"k": 1}),
        ("request_empty_args", 0, "a:B", "run", None, None),
        ("request_empty_tuple_args", 2, "a:B", "run", (), {}),
        ("request_id_max", UINT64_MAX, "pkg.mod:App", "act", (1, 2.5, None),
         {"x": [1, {"y": b"\xff"}]}),
        ("request_unicode", 12345, "caf\u00e9.app:\u00c9l\u00e8ve",
         "\u4e2d\U0001f600", ("\U0001f600",), {"\u00e9": "\u00e8"}),
        ("request_empty_strings", 7, "", "", None, None),
        ("request_bytes_arg", 8, "m:C", "upload", (b"\x00" * 64,), None),
        ("request_many_kwargs", 9, "m:C", "call", None,
         {f"kw{i}": i for i in range(40)}),
    ]
    for name, rid, app_path, action, args, kwargs in requests:
        frame = P.encode_request(rid, app_path, action, args, kwargs)
        out.append(frame_record(name, frame, "encode_request",
                                app_path=app_path, action=action))
        frame2 = enc(make_request(rid, app_path, action, args, kwargs))
        assert frame2 == frame
        out.append(frame_record(name + "_via_make_request", frame2,
                                "make_request", app_path=app_path,
                                action=action))

    # -- responses --------------------------------------------------------
    responses = [
        ("response_none", 0, None),
        ("response_int", 1, 42),
        ("response_str", 2, "done"),
        ("response_float_nan", 3, float("nan")),
        ("response_bytes", 4, b"\x00\x01\xfe\xff"),
        ("response_list", 5, [1, "a", None]),
        ("response_dict", UINT64_MAX, {"label": "cat", "score": 0.98,
                                       "boxes": [[1, 2, 3, 4]]}),
        ("response_tuple", 6, (1, 2)),
        ("response_bool", 7, False),
    ]
    for name, rid, result in responses:
        frame = P.encode_response(rid, result)
        out.append(frame_record(name, frame, "encode_response",
                                go={"fn": "ResponsePayload"},
                                result=tag(result)))
        assert enc(make_response(rid, result)) == frame

    # -- errors (to_dict of every DirtyError subclass) ----------------------
    errors = [
        ("error_dirty_error", 10, gerr.DirtyError("something failed")),
        ("error_dirty_error_details", 11,
         gerr.DirtyError("with details", {"a": 1, "b": [1, 2]})),
        ("error_timeout", 12, gerr.DirtyTimeoutError("Timed out", 30)),
        ("error_timeout_default", 13, gerr.DirtyTimeoutError()),
        ("error_connection", 14,
         gerr.DirtyConnectionError("no socket", socket_path="/tmp/x.sock")),
        ("error_worker", 15, gerr.DirtyWorkerError("crashed", worker_id=4242,
                                                   traceback="Traceback...")),
        ("error_app", 16, gerr.DirtyAppError(
            "boom", app_path="m:C", action="run",
            traceback='Traceback (most recent call last):\n  File "x.py", '
                      'line 1, in <module>\nValueError: bad\n')),
        ("error_app_not_found", 17, gerr.DirtyAppNotFoundError("nope:Nope")),
        ("error_no_workers_available", 18,
         gerr.DirtyNoWorkersAvailableError("m:C")),
        ("error_no_workers_available_msg", 19,
         gerr.DirtyNoWorkersAvailableError("m:C", message="custom")),
        ("error_protocol", 20, gerr.DirtyProtocolError("Bad frame")),
        ("error_protocol_raw", 21,
         gerr.DirtyProtocolError("Bad frame", raw_data=b"GD\x02\x01")),
        ("error_plain_exception", UINT64_MAX, ValueError("plain")),
    ]
    for name, rid, err in errors:
        frame = P.encode_error(rid, err)
        out.append(frame_record(name, frame, "encode_error"))
        assert enc(make_error_response(rid, err)) == frame

    # -- the error frames gdirty itself produces (compat builders) ----------
    go_errors = [
        ("goerr_no_workers_for_app", 100,
         gerr.DirtyNoWorkersAvailableError("a:B"),
         {"fn": "ErrNoWorkersForApp", "args": ["a:B"]}),
        ("goerr_no_workers", 101,
         gerr.DirtyError("No dirty workers available"),
         {"fn": "ErrNoWorkers", "args": []}),
        ("goerr_timeout", 102, gerr.DirtyTimeoutError("Worker timeout", 30),
         {"fn": "ErrTimeout", "args": ["Worker timeout", 30]}),
        ("goerr_timeout_zero", 103, gerr.DirtyTimeoutError("Worker timeout", 0),
         {"fn": "ErrTimeout", "args": ["Worker timeout", 0]}),
        ("goerr_worker", 104, gerr.DirtyWorkerError("x", worker_id=123),
         {"fn": "ErrWorker", "args": ["x", 123]}),
        ("goerr_generic", 0, gerr.DirtyError("Unknown manage operation: 9"),
         {"fn": "ErrGeneric", "args": ["Unknown manage operation: %d", 9]}),
        ("goerr_protocol", UINT64_MAX,
         gerr.DirtyProtocolError("Unknown message type: 0x07",
                                 raw_data=b"GD\x01\x07"),
         {"fn": "ErrProtocol", "args": ["Unknown message type: 0x07",
                                        "47440107"]}),
        ("goerr_protocol_no_raw", 5,
         gerr.DirtyProtocolError("Message too large: 67108865 bytes "
                                 "(max: 67108864)"),
         {"fn": "ErrProtocol", "args": ["Message too large: 67108865 bytes "
                                        "(max: 67108864)", None]}),
    ]
    for name, rid, err, go in go_errors:
        frame = P.encode_error(rid, err)
        out.append(frame_record(name, frame, "encode_error", go=go,
                                error_dict=tag(err.to_dict())))

    # -- streaming --------------------------------------------------------
    chunks = [
        ("chunk_str", 30, "token"),
        ("chunk_bytes", 31, b"\x89PNG\r\n\x1a\n"),
        ("chunk_dict", 32, {"delta": "x", "index": 0}),
        ("chunk_none", UINT64_MAX, None),
    ]
    for name, rid, data in chunks:
        frame = P.encode_chunk(rid, data)
        out.append(frame_record(name, frame, "encode_chunk"))
        assert enc(make_chunk_message(rid, data)) == frame
    for rid in (0, 1, 33, UINT64_MAX):
        frame = P.encode_end(rid)
        out.append(frame_record(f"end_id_{rid}", frame, "encode_end"))
        assert enc(make_end_message(rid)) == frame

    # -- stash: every op ----------------------------------------------------
    stash = [
        ("stash_put", 40, gproto.STASH_OP_PUT, "sessions", "user:1",
         {"name": "x", "n": 1}, None),
        ("stash_put_bytes", 41, gproto.STASH_OP_PUT, "blobs", "k", b"\x00\xff",
         None),
        ("stash_get", 42, gproto.STASH_OP_GET, "sessions", "user:1", None, None),
        ("stash_delete", 43, gproto.STASH_OP_DELETE, "sessions", "user:1",
         None, None),
        ("stash_keys", 44, gproto.STASH_OP_KEYS, "sessions", None, None, None),
        ("stash_keys_pattern", 45, gproto.STASH_OP_KEYS, "sessions", None,
         None, "user:*"),
        ("stash_clear", 46, gproto.STASH_OP_CLEAR, "sessions", None, None, None),
        ("stash_info", 47, gproto.STASH_OP_INFO, "sessions", None, None, None),
        ("stash_ensure", 48, gproto.STASH_OP_ENSURE, "t2", None, None, None),
        ("stash_delete_table", 49, gproto.STASH_OP_DELETE_TABLE, "t2", None,
         None, None),
        ("stash_tables", 50, gproto.STASH_OP_TABLES, "", None, None, None),
        ("stash_exists", 51, gproto.STASH_OP_EXISTS, "sessions", "user:1",
         None, None),
        ("stash_exists_table", UINT64_MAX, gproto.STASH_OP_EXISTS, "sessions",
         None, None, None),
        ("stash_all_fields", 0, gproto.STASH_OP_PUT, "t", 7, [1, 2], "p*"),
    ]
    for name, rid, op, table, key, value, pattern in stash:
        frame = P.encode_stash(rid, op, table, key, value, pattern)
        out.append(frame_record(name, frame, "encode_stash"))
        assert enc(make_stash_message(rid, op, table, key, value,
                                      pattern)) == frame

    # -- status / manage ------------------------------------------------------
    for rid in (0, 60, UINT64_MAX):
        frame = P.encode_status(rid)
        out.append(frame_record(f"status_id_{rid}", frame, "encode_status"))
        assert enc({"type": "status", "id": rid}) == frame
    manage = [
        ("manage_add", 70, gproto.MANAGE_OP_ADD, 1),
        ("manage_add_3", 71, gproto.MANAGE_OP_ADD, 3),
        ("manage_remove", 72, gproto.MANAGE_OP_REMOVE, 1),
        ("manage_remove_2", UINT64_MAX, gproto.MANAGE_OP_REMOVE, 2),
    ]
    for name, rid, op, count in manage:
        frame = P.encode_manage(rid, op, count)
        out.append(frame_record(name, frame, "encode_manage"))
        assert enc(make_manage_message(rid, op, count)) == frame
    return out


# ---------------------------------------------------------------------------
# Malformed inputs
# ---------------------------------------------------------------------------

def run_gunicorn(kind, data):
    """Run gunicorn on data; return (exception type name, message, details)
    or None if gunicorn accepts the input."""
    try:
        if kind == "header":
            BinaryProtocol.decode_header(data)
        elif kind == "tlv":
            TLVEncoder.decode_full(data)
        elif kind == "stream":
            async def read():
                reader = asyncio.StreamReader()
                reader.feed_data(data)
                reader.feed_eof()
                return await BinaryProtocol.read_message_async(reader)
            asyncio.run(read())
        else:
            raise ValueError(kind)
    except gerr.DirtyProtocolError as e:
        return "DirtyProtocolError", str(e.message), e.details
    except asyncio.IncompleteReadError:
        return "IncompleteReadError", None, None
    return None


def header(magic=b"GD", version=1, msg_type=1, length=0, rid=0):
    return struct.pack(">2sBBIQ", magic, version, msg_type, length, rid)


def u32(n):
    return struct.pack(">I", n)


def malformed_cases():
    E = TLVEncoder.encode
    S = lambda s: E(s)  # noqa: E731
    cases = []

    def add(name, kind, category, data):
        cases.append((name, kind, category, data))

    # -- header ---------------------------------------------------------------
    add("header_wrong_magic", "header", "bad_magic", header(magic=b"XY"))
    add("header_wrong_magic_quote", "header", "bad_magic", header(magic=b"'\x00"))
    add("header_wrong_magic_swapped", "header", "bad_magic", header(magic=b"DG"))
    add("header_wrong_magic_with_payload", "header", "bad_magic",
        header(magic=b"G\xff") + b"\x00\x01\x02\x03\x04\x05")
    add("header_wrong_version_0", "header", "bad_version", header(version=0))
    add("header_wrong_version_2", "header", "bad_version", header(version=2))
    add("header_wrong_version_255", "header", "bad_version", header(version=255))
    for t in (0x00, 0x06, 0x0f, 0x13, 0xff):
        add(f"header_unknown_type_0x{t:02x}", "header", "unknown_message_type",
            header(msg_type=t))
    add("header_length_over_limit", "header", "message_too_large",
        header(length=64 * MIB + 1, rid=9))
    add("header_length_max_u32", "header", "message_too_large",
        header(length=0xFFFFFFFF))
    for n in (0, 1, 15):
        add(f"header_too_short_{n}", "header", "truncated", header()[:n])

    # -- stream (BinaryProtocol.read_message_async) ---------------------------
    good = BinaryProtocol.encode_request(77, "m:C", "run", (1,), None)
    add("stream_clean_eof", "stream", "eof", b"")
    for n in (1, 8, 15):
        add(f"stream_partial_header_{n}", "stream", "truncated", good[:n])
    add("stream_header_only", "stream", "truncated", good[:16])
    add("stream_partial_payload", "stream", "truncated", good[:16 + 5])
    add("stream_payload_one_short", "stream", "truncated", good[:-1])
    add("stream_huge_length_few_bytes", "stream", "truncated",
        header(length=64 * MIB, rid=3) + b"\x21\x00\x00")
    add("stream_length_over_limit", "stream", "message_too_large",
        header(length=64 * MIB + 1, rid=3) + b"\x00" * 32)
    add("stream_bad_magic", "stream", "bad_magic",
        header(magic=b"HT") + b"TP/1.1")
    add("stream_bad_payload_trailing", "stream", "trailing",
        header(msg_type=2, length=3, rid=5) + b"\x00\x00\x00")
    add("stream_bad_payload_unknown_type", "stream", "unknown_tlv_type",
        header(msg_type=4, length=1, rid=5) + b"\x7f")

    # -- TLV: truncation of every type ------------------------------------------
    add("tlv_empty", "tlv", "truncated", b"")
    add("tlv_bool_missing_value", "tlv", "truncated", b"\x01")
    add("tlv_int64_incomplete", "tlv", "truncated", E(-5)[:5])
    add("tlv_int64_only_type", "tlv", "truncated", b"\x05")
    add("tlv_float64_incomplete", "tlv", "truncated", E(1.5)[:8])
    add("tlv_bytes_length_incomplete", "tlv", "truncated", b"\x10\x00\x00")
    add("tlv_bytes_data_short", "tlv", "truncated", E(b"abcdef")[:-2])
    add("tlv_bytes_data_short_long", "tlv", "truncated",
        E(bytes(range(100)))[:60])
    add("tlv_string_length_incomplete", "tlv", "truncated", b"\x11\x00")
    add("tlv_string_data_short", "tlv", "truncated", E("hello")[:-1])
    add("tlv_string_data_short_long", "tlv", "truncated", E("x" * 100)[:40])
    add("tlv_list_count_incomplete", "tlv", "truncated", b"\x20\x00\x00\x00")
    add("tlv_list_missing_items", "tlv", "truncated", E([1, 2, 3])[:-9])
    add("tlv_list_count_max_no_items", "tlv", "truncated",
        b"\x20" + u32(1024 * 1024))
    add("tlv_dict_count_incomplete", "tlv", "truncated", b"\x21\x00")
    add("tlv_dict_missing_key", "tlv", "truncated", b"\x21" + u32(1))
    add("tlv_dict_missing_value", "tlv", "truncated", b"\x21" + u32(1) + S("k"))
    add("tlv_dict_second_key_missing", "tlv", "truncated",
        b"\x21" + u32(2) + S("a") + E(1))
    add("tlv_dict_count_max_no_items", "tlv", "truncated",
        b"\x21" + u32(1024 * 1024))
    add("tlv_nested_truncated", "tlv", "truncated",
        E({"a": [1, {"b": "xyz"}]})[:-2])

    # -- trailing data ------------------------------------------------------------
    add("tlv_trailing_one", "tlv", "trailing", E(None) + b"\x00")
    add("tlv_trailing_many", "tlv", "trailing", E({"a": 1}) + bytes(range(40)))
    add("tlv_two_values", "tlv", "trailing", E("a") + E("b"))

    # -- unknown type codes --------------------------------------------------------
    for t in (0x02, 0x03, 0x04, 0x07, 0x12, 0x22, 0x7f, 0xff):
        add(f"tlv_unknown_type_0x{t:02x}", "tlv", "unknown_tlv_type",
            bytes([t]) + bytes(range(1, 30)))
    add("tlv_unknown_type_in_list", "tlv", "unknown_tlv_type",
        b"\x20" + u32(2) + E(1) + b"\x30\x00")
    add("tlv_unknown_type_in_dict_value", "tlv", "unknown_tlv_type",
        b"\x21" + u32(1) + S("k") + b"\x08")

    # -- limits --------------------------------------------------------------------
    for what, code in (("string", 0x11), ("bytes", 0x10)):
        add(f"tlv_{what}_length_over_limit", "tlv", "too_large",
            bytes([code]) + u32(64 * MIB + 1))
        add(f"tlv_{what}_length_max_u32", "tlv", "too_large",
            bytes([code]) + u32(0xFFFFFFFF) + b"abc")
        add(f"tlv_{what}_length_at_limit_truncated", "tlv", "truncated",
            bytes([code]) + u32(64 * MIB) + b"abc")
    for what, code in (("list", 0x20), ("dict", 0x21)):
        add(f"tlv_{what}_count_over_limit", "tlv", "too_large",
            bytes([code]) + u32(1024 * 1024 + 1))
        add(f"tlv_{what}_count_max_u32", "tlv", "too_large",
            bytes([code]) + u32(0xFFFFFFFF))
    add("tlv_list_count_over_limit_nested", "tlv", "too_large",
        b"\x21" + u32(1) + S("args") + b"\x20" + u32(2 * 1024 * 1024))

    # -- invalid UTF-8 ---------------------------------------------------------------
    bad_utf8 = [
        ("ff", b"\xff"),
        ("lone_continuation", b"\x80"),
        ("overlong_nul", b"\xc0\x80"),
        ("overlong_slash", b"\xe0\x80\xaf"),
        ("surrogate", b"\xed\xa0\x80"),
        ("above_max", b"\xf4\x90\x80\x80"),
        ("f5", b"\xf5\x80\x80\x80"),
        ("truncated_2", b"ab\xc3"),
        ("truncated_3", b"ab\xe2\x82"),
        ("truncated_4", b"\xf0\x9f\x98"),
        ("bad_continuation", b"\xc3\x28"),
        ("after_valid_multibyte", "\u00e9\u4e2d\U0001f600".encode() + b"\xfe"),
        ("long_prefix", b"x" * 30 + b"\xff" + b"y" * 10),
    ]
    for n, b in bad_utf8:
        add(f"tlv_invalid_utf8_{n}", "tlv", "invalid_utf8",
            b"\x11" + u32(len(b)) + b)
    add("tlv_invalid_utf8_dict_key", "tlv", "invalid_utf8",
        b"\x21" + u32(1) + b"\x11" + u32(2) + b"\xc3\x28" + E(1))
    add("tlv_invalid_utf8_nested", "tlv", "invalid_utf8",
        b"\x21" + u32(1) + S("a") + b"\x20" + u32(2) + S("ok")
        + b"\x11" + u32(1) + b"\x80")

    # -- non-string dict keys --------------------------------------------------------
    for n, key in (("int", 1), ("none", None), ("bool", True), ("float", 1.5),
                   ("bytes", b"k"), ("list", [1]), ("dict", {"a": 1})):
        add(f"tlv_dict_key_{n}", "tlv", "non_string_key",
            b"\x21" + u32(1) + E(key) + E("v"))
    add("tlv_dict_key_int_missing_value", "tlv", "non_string_key",
        b"\x21" + u32(1) + E(7))
    add("tlv_dict_key_second", "tlv", "non_string_key",
        b"\x21" + u32(2) + S("a") + E(1) + E(2) + E(3))
    add("tlv_dict_key_nested", "tlv", "non_string_key",
        b"\x21" + u32(1) + S("x") + b"\x21" + u32(1) + E(None) + E(1))
    # A malformed key reports its own error first (gunicorn decodes it).
    add("tlv_dict_key_truncated_int", "tlv", "truncated",
        b"\x21" + u32(1) + b"\x05\x00")
    add("tlv_dict_key_unknown_type", "tlv", "unknown_tlv_type",
        b"\x21" + u32(1) + b"\x09")
    add("tlv_dict_key_list_with_bad_item", "tlv", "unknown_tlv_type",
        b"\x21" + u32(1) + b"\x20" + u32(1) + b"\x99")

    out = []
    for name, kind, category, data in cases:
        res = run_gunicorn(kind, data)
        if res is None:
            raise AssertionError(f"gunicorn accepted malformed case {name}")
        etype, message, details = res
        if category == "eof":
            assert etype == "IncompleteReadError", name
        else:
            assert etype == "DirtyProtocolError", (name, etype)
        rec = {"name": name, "kind": kind, "category": category,
               "hex": data.hex(), "error": etype, "message": message}
        if details is not None:
            rec["details"] = details
        out.append(rec)
    return out


def utf8_cases():
    """gunicorn's message for many invalid UTF-8 strings, compactly.

    Every lead byte 0x80-0xff, followed by 0-2 bytes (and 3 for the 4-byte
    leads) from a set of boundary bytes, alone and between a valid prefix
    and suffix; only the invalid ones are kept."""
    follow = [0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xf0]
    seqs = []
    for lead in range(0x80, 0x100):
        seqs.append(bytes([lead]))
        for a in follow:
            seqs.append(bytes([lead, a]))
            for b in follow:
                seqs.append(bytes([lead, a, b]))
                if 0xf0 <= lead <= 0xf4:
                    for c in follow:
                        seqs.append(bytes([lead, a, b, c]))
    out = []
    for seq in seqs:
        for data in (seq, "\u00e9".encode() + seq + b"z"):
            try:
                data.decode("utf-8")
                continue
            except UnicodeDecodeError:
                pass
            wire = b"\x11" + u32(len(data)) + data
            res = run_gunicorn("tlv", wire)
            assert res is not None and res[0] == "DirtyProtocolError"
            out.append([data.hex(), res[1]])
    return out


# ---------------------------------------------------------------------------
# repr vectors (Python's repr()/str(), for compat.PyRepr and friends)
# ---------------------------------------------------------------------------

def repr_cases():
    floats = [0.0, -0.0, 1.0, -1.0, 1.5, 0.1, 0.2 + 0.1, 1e16, 1e15,
              9999999999999998.0, 1e-5, 1e-4, 0.0001234, 0.00001234,
              123456789.0, 1234567890123456789.0, 1.5e300, 5e-324,
              2.2250738585072014e-308, 1.7976931348623157e308, 100.0,
              1e22, 1e-7, 3.141592653589793, -2.5e-10, 2.0 ** 53,
              2.0 ** 53 + 2, 1 / 3, float("nan"), float("inf"), float("-inf")]
    rng = random.Random(20240601)
    for _ in range(300):
        bits = rng.getrandbits(64)
        f = struct.unpack(">d", struct.pack(">Q", bits))[0]
        if f == f:  # keep NaNs out of the random set (covered above)
            floats.append(f)
    for _ in range(100):
        floats.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 8)))
    for e in range(-330, 310, 7):
        floats.append(float(f"1.2345e{e}"))

    values = [("float", f) for f in floats]
    values += [
        ("bytes", b""),
        ("bytes", b"GD"),
        ("bytes", b"'"),
        ("bytes", b'"'),
        ("bytes", b"'\""),
        ("bytes", b"it's"),
        ("bytes", b"say \"hi\""),
        ("bytes", b"both ' and \""),
        ("bytes", b"\\ back\\slash"),
        ("bytes", bytes(range(256))),
        ("str", ""),
        ("str", "plain"),
        ("str", "it's"),
        ("str", 'say "hi"'),
        ("str", "both ' and \""),
        ("str", "line1\nline2\r\n\ttab"),
        ("str", "\x00\x01\x1f\x7f\x80\x9f\xa0\xad"),
        ("str", "back\\slash"),
        ("str", "caf\u00e9 \u4e2d\u6587 \U0001f600"),
        ("str", "\u200b\u2028\u2029\u3000\ufeff\ue000\U000f0000"),
        ("str", "\u0378\U0001fffe\U0010ffff"),
        ("str", "\ufffd"),
        ("str", "e\u0301 combining"),
        ("none", None),
        ("bool", True),
        ("bool", False),
        ("int", 0),
        ("int", -42),
        ("int", INT64_MIN),
        ("list", []),
        ("list", [1, "a", b"b", None, True, 1.5, [], {}]),
        ("dict", {}),
        ("dict", {"a": 1, "it's": [1.0, -0.0, float("nan")],
                  "n": {"x": None, "y": b"\x00'"}}),
        ("dict", {"error": {"error_type": "DirtyError",
                            "message": "Key not found: 'k'",
                            "details": {"key": b"k", "n": 1e16}}}),
        ("list", [[[["deep"]]], {"\u4e2d": "\n"}]),
    ]
    out = []
    for kind, v in values:
        out.append({"kind": kind, "input": tag(v), "repr": repr(v),
                    "str": str(v)})

    # Python's str.isprintable() over every non-surrogate code point, as
    # ranges, plus the unassigned (Cn) ranges: Go's unicode tables may be a
    # newer Unicode version than this Python's.
    def ranges(pred):
        rs = []
        start = None
        for cp in range(0x110000):
            ok = not (0xD800 <= cp <= 0xDFFF) and pred(cp)
            if ok and start is None:
                start = cp
            elif not ok and start is not None:
                rs.append([start, cp - 1])
                start = None
        if start is not None:
            rs.append([start, 0x10FFFF])
        return rs

    printable = ranges(lambda cp: chr(cp).isprintable())
    unassigned = ranges(lambda cp: unicodedata.category(chr(cp)) == "Cn")
    return {
        "values": out,
        "unicode_version": unicodedata.unidata_version,
        "printable_ranges": printable,
        "unassigned_ranges": unassigned,
    }


# ---------------------------------------------------------------------------
# App spec vectors (gunicorn.dirty.app.parse_dirty_app_spec)
# ---------------------------------------------------------------------------

def appspec_cases():
    specs = [
        "myapp:App", "myapp.sub.mod:App", "myapp:App:1", "myapp:App:2",
        "myapp.sub:App:16", "a:B:0", "a:B:-1", "a:B:-0", "a:B:+3", "a:B:03",
        "a:B: 4", "a:B:4 ", "a:B:\t5\n", "a:B:x", "a:B:", "a:B:1.5",
        "a:B:0x10", "a:B:1e3", "a:B:3_000", "a:B:\u0663", "a:B:\uff13",
        "a:B:99999999999999999999", "a:B:9223372036854775807",
        "a:B:\u00a07", "a:B:\x1c7", "a:B:1:2", "a:B:C:D:E", "noColon", "",
        ":", "::", ":B", "a:", ":::", "a::3", "::3", "a.b.c:D:2",
        "caf\u00e9:\u00c9l\u00e8ve:2", " a:B ", "a:B:--1",
    ]
    out = []
    for spec in specs:
        try:
            import_path, workers = gapp.parse_dirty_app_spec(spec)
        except gerr.DirtyAppError as e:
            out.append({"spec": spec, "ok": False,
                        "error_type": type(e).__name__,
                        "message": str(e.message), "details": e.details})
            continue
        out.append({"spec": spec, "ok": True, "import_path": import_path,
                    "workers": workers})
    return out


# ---------------------------------------------------------------------------

def write(path, obj):
    text = json.dumps(obj, indent=1, ensure_ascii=True, allow_nan=False)
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(text + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE,
                    help="directory to write into (default: next to this script)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    meta = {
        "generator": "testdata/golden/gen_vectors.py",
        "gunicorn_version": gunicorn.__version__,
    }
    consts = {
        "header_size": gproto.HEADER_SIZE,
        "max_message_size": gproto.MAX_MESSAGE_SIZE,
        "max_string_size": gtlv.MAX_STRING_SIZE,
        "max_bytes_size": gtlv.MAX_BYTES_SIZE,
        "max_list_size": gtlv.MAX_LIST_SIZE,
        "max_dict_size": gtlv.MAX_DICT_SIZE,
    }
    write(os.path.join(args.out, "tlv_vectors.json"),
          dict(meta, constants=consts, cases=tlv_cases(),
               encode_errors=encode_error_cases()))
    write(os.path.join(args.out, "frame_vectors.json"),
          dict(meta, constants=consts, frames=frame_cases(),
               malformed=malformed_cases(), invalid_utf8=utf8_cases()))
    write(os.path.join(args.out, "repr_vectors.json"),
          dict(meta, python_version=sys.version.split()[0], **repr_cases()))
    write(os.path.join(args.out, "appspec_vectors.json"),
          dict(meta, cases=appspec_cases()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
