"""Large requests and answers pass through gdirty in bounded pieces.

A request over 256 KiB is validated while it is forwarded to a worker
(piece by piece): a mistake anywhere in it still gets exactly gunicorn's
DirtyProtocolError, the worker never runs it, and the connection stays
usable. Answers cross the worker link in pieces under a per-call window.
Either way gdirty's memory does not follow payload size.
"""

import struct
import threading

import pytest

import gversions

# Binary frames (protocol v1, gunicorn 25.1+); the cluster carries v1 only.
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from conftest import connect, next_id, recv_frame
from gunicorn.dirty.protocol import BinaryProtocol as BP
from gunicorn.dirty.tlv import TLVEncoder as TLV
from test_hostile import (  # noqa: F401 - fixtures used by name
    APP, good_call, guard, gunicorn_decode_error, hostile, own_gdirty, request, t_dict, t_list,
    t_str,
)

MiB = 1 << 20


def big_request(tail_args):
    """A request whose args hold a 3 MiB string, then the raw TLV values
    ``tail_args`` (so the error, if any, is far into the payload)."""
    n = 1 + len(tail_args)
    return (t_dict(3) + t_str(b"app_path") + TLV.encode(APP) + t_str(b"action")
            + TLV.encode("echo") + t_str(b"args") + t_list(n) + TLV.encode("s" * (3 * MiB))
            + b"".join(tail_args))


BAD_LARGE = {
    "invalid_utf8_at_the_end": big_request([t_str(b"ok" * 100 + b"\xe2\x28\xa1")]),
    "invalid_utf8_in_a_huge_string": big_request([t_str(b"\xc3\xa9" * MiB + b"\xff" + b"x" * 64)]),
    "cut_utf8_at_string_end": big_request([t_str(b"abc\xe2\x82")]),
    "unknown_type_code": big_request([b"\x77"]),
    "non_string_key": big_request([t_dict(1) + TLV.encode(5) + TLV.encode(1)]),
    "trailing_bytes": big_request([]) + b"\x00\x01",
    "truncated_list": big_request([t_list(2) + TLV.encode(1)]),
    "string_longer_than_payload": big_request([b"\x11" + struct.pack(">I", 1000) + b"x" * 10]),
}


@pytest.mark.parametrize("name", sorted(BAD_LARGE))
def test_large_bad_request_gets_gunicorns_error_and_connection_stays_usable(hostile, name):
    payload = BAD_LARGE[name]
    want = gunicorn_decode_error(payload)
    assert want is not None, "the case must be one gunicorn's decoder rejects"
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            rid = next_id()
            s.sendall(request(payload, rid))
            raw = recv_frame(s)
            mtype, got_id, body = BP.decode_message(raw)
            assert (mtype, got_id) == ("error", rid)
            assert body["error"] == want
            good_call(gd.client)
            rid2 = next_id()
            s.sendall(request(TLV.encode({"app_path": APP, "action": "echo", "args": ["after"],
                                          "kwargs": {}}), rid2))
            assert recv_frame(s) == BP.encode_response(rid2, "after")


def test_large_request_and_answer_round_trip_while_others_are_served(hostile):
    blob = bytes(range(256)) * (24 * MiB // 256)
    with guard(hostile) as gd:
        stop = threading.Event()
        errors = []

        def others():
            c = hostile.client()
            try:
                while not stop.is_set():
                    good_call(c, "beside")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                c.close()

        t = threading.Thread(target=others)
        t.start()
        try:
            with connect(hostile.socket_path) as s:
                for _ in range(2):
                    rid = next_id()
                    s.sendall(BP.encode_request(rid, APP, "echo", (blob,)))
                    assert recv_frame(s) == BP.encode_response(rid, blob)
        finally:
            stop.set()
            t.join(60)
        assert not errors, errors


def _hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_does_not_follow_payload_size(own_gdirty):
    """4 clients each send 24 MiB requests and get 24 MiB answers: read
    whole, that is 4 x 48 MiB in flight; in pieces it is a few MiB."""
    h = own_gdirty(workers=2, threads=4)
    c = h.client()
    good_call(c, "warm")
    c.close()
    with open(f"/proc/{h.pid}/clear_refs", "w") as f:
        f.write("5")
    base = _hwm_kib(h.pid)
    blob = b"q" * (24 * MiB)
    errors = []

    def client():
        try:
            with connect(h.socket_path, timeout=120) as s:
                for _ in range(2):
                    rid = next_id()
                    s.sendall(BP.encode_request(rid, APP, "echo", (blob,)))
                    got = recv_frame(s)
                    if got != BP.encode_response(rid, blob):
                        errors.append(f"wrong answer of {len(got)} bytes")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=client) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors
    grew = (_hwm_kib(h.pid) - base) / 1024
    print(f"\ngdirty peak RSS grew {grew:.1f} MiB over {base / 1024:.1f} MiB")
    assert grew < 24, f"gdirty's peak RSS grew {grew:.1f} MiB for 4 x 24 MiB both ways"
