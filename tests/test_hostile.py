"""Hostile clients against a real gdirty with real Python workers.

Every malformed frame class is sent over gdirty's real socket. For each:

* the offending connection gets an ERROR frame shaped like gunicorn's
  ``DirtyProtocolError`` ({"error_type", "message", "details"}) carrying the
  request id it sent when the header was readable, or it is closed:
  - bad payload (header fine): error, then the connection stays usable;
  - readable header with an unknown type or a length over 64 MiB: error,
    then close;
  - wrong magic / version, truncated frames: close;
* a second, well-behaved client keeps being served throughout (a call is
  interleaved with each hostile exchange, and a bystander thread calls in a
  loop for the whole test);
* nothing leaks: go_goroutines and process_open_fds from gdirty's metrics
  endpoint return to their baseline (polled with a deadline: closes are
  asynchronous).

Where gunicorn's own decoder rejects the same bytes, the error dict is
compared with the ``DirtyProtocolError`` gunicorn raises for them.

Then: slow and stalled clients (half a header and silence, a stream nobody
reads), memory bounds (RSS and Go heap), --max-connections, socket file
safety and --allow-uid with a client running as another uid.
"""

import errno
import os
import select
import socket
import stat
import struct
import subprocess
import threading
import time
import uuid

import pytest

import gversions

# Raw binary frames, STATUS / MANAGE: protocol v1 (gunicorn 25.1+).
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from conftest import (
    GDirtyLauncher, connect, dirty_config, next_id, query_status, recv_frame,
    stop_process, wait_until,
)
from gunicorn.dirty.client import DirtyClient
from gunicorn.dirty.errors import DirtyError, DirtyNoWorkersAvailableError, DirtyProtocolError
from gunicorn.dirty.protocol import BinaryProtocol as BP
from gunicorn.dirty.tlv import TLVEncoder as TLV
from hostile_util import Gauges, metric, metrics_url_from_log, mib, rss, scrape

APP = "hostile_apps:HostileApp"
MiB = 1 << 20
MAX_MESSAGE = 64 * MiB

# Leak-check slack: a metrics scrape itself runs a goroutine or two and
# holds an fd; nothing else may stay behind.
GOROUTINE_SLACK = 4
FD_SLACK = 3
SETTLE_TIMEOUT = 60.0


# ---------------------------------------------------------------------------
# Frame building (gunicorn's encoder for every well-formed part)
# ---------------------------------------------------------------------------

def header(msg_type, length, rid, magic=b"GD", version=1):
    return struct.pack(">2sBBIQ", magic, version, msg_type, length, rid)


def frame(msg_type, payload, rid):
    return header(msg_type, len(payload), rid) + payload


def request(payload, rid):
    return frame(0x01, payload, rid)


def t_str(raw):
    """A TLV string with raw (possibly invalid UTF-8) bytes."""
    return b"\x11" + struct.pack(">I", len(raw)) + raw


def t_dict(count):
    return b"\x21" + struct.pack(">I", count)


def t_list(count):
    return b"\x20" + struct.pack(">I", count)


def good_request_payload(action="echo", args=("x",)):
    return TLV.encode({"app_path": APP, "action": action, "args": list(args), "kwargs": {}})


def with_args(args_tlv):
    """A request dict whose "args" value is the raw TLV ``args_tlv``."""
    return (t_dict(4) + t_str(b"app_path") + TLV.encode(APP) + t_str(b"action")
            + TLV.encode("echo") + t_str(b"args") + args_tlv + t_str(b"kwargs") + TLV.encode({}))


def nested_lists(depth, leaf=b"\x00"):
    return t_list(1) * depth + leaf


def nested_dicts(depth, leaf=b"\x00"):
    return (t_dict(1) + t_str(b"k")) * depth + leaf


# Bad payloads behind a well-formed REQUEST header: name -> payload bytes.
BAD_PAYLOADS = {
    "trailing_bytes": good_request_payload() + b"\x00",
    "trailing_value": good_request_payload() + TLV.encode({"x": 1}),
    "unknown_tlv_type_top": b"\x99",
    "unknown_tlv_type_value": t_dict(1) + t_str(b"app_path") + b"\x7f",
    "unknown_tlv_type_in_args": with_args(t_list(2) + b"\x00\x42"),
    "unknown_tlv_type_long_tail": with_args(t_list(2) + b"\x00\x42" + b"\x00" * 40),
    "str_length_overruns": t_dict(1) + t_str(b"app_path") + b"\x11" + struct.pack(">I", 4096) + b"ab",
    "bytes_length_overruns": with_args(b"\x10" + struct.pack(">I", 1 << 20) + b"abc"),
    "str_length_over_64mib": with_args(b"\x11" + struct.pack(">I", MAX_MESSAGE + 1)),
    "bytes_length_max_u32": with_args(b"\x10" + struct.pack(">I", 0xFFFFFFFF)),
    "list_count_overruns": with_args(t_list(3) + b"\x00"),
    "dict_count_overruns": t_dict(3) + t_str(b"app_path") + TLV.encode(APP),
    "truncated_int64": with_args(t_list(1) + b"\x05\x00\x00\x00"),
    "truncated_float64": with_args(t_list(1) + b"\x06\x00"),
    "truncated_bool": with_args(t_list(1) + b"\x01"),
    "truncated_str_length": t_dict(1) + t_str(b"app_path") + b"\x11\x00\x00",
    "truncated_dict_count": b"\x21\x00",
    "nesting_70_lists": with_args(t_list(1) + nested_lists(70)),
    "nesting_70_dicts": with_args(t_list(1) + nested_dicts(70)),
    "nesting_100k_lists": with_args(nested_lists(100_000)),
    "nesting_100k_dicts": t_dict(1) + t_str(b"kwargs") + nested_dicts(100_000),
    "invalid_utf8_app_path": t_dict(2) + t_str(b"app_path") + t_str(b"hostile_apps:\xffApp")
    + t_str(b"action") + TLV.encode("echo"),
    "invalid_utf8_key": t_dict(1) + t_str(b"\xc3\x28"),
    "invalid_utf8_truncated_seq": with_args(t_list(1) + t_str(b"abc\xe2\x82")),
    "invalid_utf8_surrogate": with_args(t_list(1) + t_str(b"\xed\xa0\x80")),
    "invalid_utf8_overlong": with_args(t_list(1) + t_str(b"\xc0\xaf")),
    "non_string_key_int": t_dict(1) + TLV.encode(1) + TLV.encode(APP),
    "non_string_key_bytes": t_dict(1) + TLV.encode(b"app_path") + TLV.encode(APP),
    "non_string_key_none": t_dict(1) + b"\x00" + b"\x00",
    "non_string_key_dict": t_dict(1) + TLV.encode({}) + b"\x00",
    "non_string_key_nested": with_args(t_list(1) + t_dict(1) + TLV.encode(2.5) + b"\x00"),
    "missing_app_path": TLV.encode({"action": "echo", "args": [], "kwargs": {}}),
    "empty_request_dict": TLV.encode({}),
    "app_path_int": TLV.encode({"app_path": 7, "action": "echo"}),
    "app_path_none": TLV.encode({"app_path": None, "action": "echo"}),
    "app_path_bytes": TLV.encode({"app_path": APP.encode(), "action": "echo"}),
    "app_path_list": TLV.encode({"app_path": [APP], "action": "echo"}),
    "huge_list_count_no_items": with_args(t_list(1 << 20)),
    "huge_list_count_over_limit": with_args(t_list(0xFFFFFFFF)),
    "huge_dict_count_no_items": t_dict(1 << 20),
    "huge_dict_count_over_limit": t_dict((1 << 20) + 1),
    "payload_list": TLV.encode([APP, "echo"]),
    "payload_str": TLV.encode(APP),
    "payload_none": TLV.encode(None),
    "payload_int": TLV.encode(12),
    "payload_bytes": TLV.encode(b"\x21\x00\x00\x00\x00"),
    "payload_empty": b"",
    # gunicorn decodes the whole value first: trailing data is its error
    "payload_none_then_trailing": b"\x00" + good_request_payload(),
}


def gunicorn_decode_error(payload):
    """gunicorn's DirtyProtocolError for ``payload`` as a dict, or None when
    gunicorn's decoder accepts the bytes (the error is then gdirty's own:
    request shape, nesting bound). An empty payload is {} to gunicorn's
    decode_message, as for END frames."""
    if not payload:
        return None
    try:
        TLV.decode_full(payload)
    except DirtyProtocolError as e:
        return e.to_dict()
    except RecursionError:
        return None
    return None


def gunicorn_header_error(hdr):
    try:
        BP.decode_header(hdr)
    except DirtyProtocolError as e:
        return e
    raise AssertionError(f"gunicorn accepts header {hdr!r}")


# ---------------------------------------------------------------------------
# Socket helpers
# ---------------------------------------------------------------------------

def read_until_closed(sock, timeout=30.0):
    """Bytes the peer sends until it closes (EOF or reset); fails when it
    stays open past ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            pytest.fail(f"gdirty kept the connection open for {timeout}s "
                        f"(read {len(data)} bytes: {data[:64]!r})")
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def assert_closed_silently(sock, timeout=30.0):
    data = read_until_closed(sock, timeout)
    assert data == b"", f"expected a close without any frame, got {data[:200]!r}"


def split_frames(data, allow_partial_tail=False):
    """Complete frames in ``data``. A partial frame at the end is an error
    unless ``allow_partial_tail`` (a write cut short by a close)."""
    frames = []
    while data:
        if len(data) < BP.HEADER_SIZE:
            assert allow_partial_tail, f"partial frame: {data!r}"
            break
        _t, _rid, length = BP.decode_header(data[:BP.HEADER_SIZE])
        if len(data) < BP.HEADER_SIZE + length:
            assert allow_partial_tail, f"partial frame: {data[:64]!r}"
            break
        frames.append(data[:BP.HEADER_SIZE + length])
        data = data[BP.HEADER_SIZE + length:]
    return frames


def assert_protocol_error_frame(raw, rid):
    """``raw`` is an ERROR frame for ``rid`` shaped like gunicorn's
    DirtyProtocolError; returns its error dict."""
    mtype, got_id, payload = BP.decode_message(raw)
    assert (mtype, got_id) == ("error", rid), (mtype, got_id, payload)
    assert list(payload) == ["error"], payload
    err = payload["error"]
    assert list(err) == ["error_type", "message", "details"], err
    assert err["error_type"] == "DirtyProtocolError", err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["details"], dict), err
    assert set(err["details"]) <= {"raw_data"}, err
    # and gunicorn's client turns it into the right exception class
    exc = DirtyError.from_dict(err)
    assert type(exc) is DirtyProtocolError
    # the frame is exactly what gunicorn's encoder makes of that dict
    assert raw == BP._encode_from_dict({"type": "error", "id": rid, "error": err})
    return err


def send_in_background(sock, data):
    """sendall from a thread (``data`` may exceed the socket buffers while
    the test reads answers); a peer that closes early ends it quietly."""
    def run():
        try:
            sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def good_call(client, what="interleaved"):
    tok = f"{what}-{uuid.uuid4()}"
    got = client.execute(APP, "token", tok)
    assert got["token"] == tok, got
    return got


class Bystander(threading.Thread):
    """A well-behaved client calling in a loop on its own connection; every
    answer must carry its own token."""

    def __init__(self, socket_path):
        super().__init__(daemon=True)
        self.socket_path = socket_path
        self.stop_evt = threading.Event()
        self.calls = 0
        self.errors = []
        self.first = threading.Event()

    def run(self):
        c = DirtyClient(self.socket_path, timeout=60.0)
        try:
            while True:
                tok = str(uuid.uuid4())
                try:
                    got = c.execute(APP, "token", tok)
                    if not (isinstance(got, dict) and got.get("token") == tok):
                        self.errors.append(f"wrong answer {got!r} for {tok}")
                except Exception as e:  # reported by the fixture
                    self.errors.append(repr(e))
                self.calls += 1
                self.first.set()
                if self.stop_evt.is_set():
                    return
                time.sleep(0.01)
        finally:
            c.close()

    def finish(self):
        """Stop after one more call; fail on any bad answer."""
        n = self.calls
        wait_until(lambda: self.calls > n or not self.is_alive(), 60.0,
                   "the bystander client to complete one more call")
        self.stop_evt.set()
        self.join(60.0)
        assert not self.is_alive(), "bystander did not stop"
        assert not self.errors, f"the well-behaved client was disturbed: {self.errors[:5]}"
        assert self.calls >= 2


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

class Hostile:
    """A running gdirty with its metrics endpoint."""

    def __init__(self, g):
        self.g = g
        self.pid = g.pid
        self.socket_path = g.socket_path
        self.url = wait_until(lambda: metrics_url_from_log(g.stderr()), 30.0,
                              lambda: f"metrics URL in gdirty's log:\n{g.stderr()}")
        self.gauges = Gauges(g.pid, self.url)

    def client(self, timeout=60.0):
        return DirtyClient(self.socket_path, timeout=timeout)

    def assert_alive(self):
        assert self.g.proc.poll() is None, (
            f"gdirty died ({self.g.proc.returncode}); stderr tail:\n{self.g.stderr()[-3000:]}")


def start_hostile(launcher, workers=2, threads=4, timeout=30, args=()):
    g = launcher.start(dirty_config([APP], workers=workers, threads=threads, timeout=timeout),
                       workers=workers, args=["--metrics-bind", "127.0.0.1:0", *args])
    return Hostile(g)


@pytest.fixture(scope="module")
def hostile(gdirty_bin, tmp_path_factory):
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-hostile")
    h = start_hostile(launcher)
    yield h
    launcher.stop_all()


@pytest.fixture
def own_gdirty(gdirty_bin, tmp_path_factory):
    """Per-test factory for a gdirty with metrics: ``own_gdirty(**kw)``."""
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-hostile-own")
    yield lambda **kw: start_hostile(launcher, **kw)
    launcher.stop_all()


def guard(h):
    """Context for one hostile exchange on ``h``: leak baseline, a
    bystander client for the whole time, an interleaved client."""

    class _Guard:
        def __enter__(self):
            h.assert_alive()
            self.baseline = h.gauges.read()
            self.bystander = Bystander(h.socket_path)
            self.bystander.start()
            assert self.bystander.first.wait(60.0), "bystander's first call never answered"
            self.client = h.client()
            return self

        def __exit__(self, exc_type, exc, tb):
            self.client.close()
            if exc_type is not None:
                self.bystander.stop_evt.set()
                return False
            h.assert_alive()
            self.bystander.finish()
            ok, last = h.gauges.settle(self.baseline, GOROUTINE_SLACK, FD_SLACK, SETTLE_TIMEOUT)
            assert ok, (f"gdirty leaked: baseline {self.baseline}, "
                        f"{SETTLE_TIMEOUT:.0f}s later {last}")
            return False

    return _Guard()


# ---------------------------------------------------------------------------
# Bad payloads: error with the request's id, connection stays usable
# ---------------------------------------------------------------------------

# Well-formed requests without a usable app_path. gunicorn's arbiter routes
# whatever app_path holds: a non-str value finds no worker and gets
# DirtyNoWorkersAvailableError(value). gdirty may answer exactly that, or
# refuse the request's shape with DirtyProtocolError; either way an error
# carrying the request's id, and the connection stays usable.
APP_PATH_VALUES = {"app_path_int": 7, "app_path_bytes": APP.encode(), "app_path_list": [APP]}
SHAPE_CASES = {"missing_app_path", "empty_request_dict", "app_path_none"}


def check_bad_request_answer(raw, rid, name):
    """``raw`` is gdirty's answer to the bad request ``name`` sent with
    ``rid``; returns its error dict."""
    mtype, got_id, body = BP.decode_message(raw)
    assert (mtype, got_id) == ("error", rid), (mtype, got_id, body)
    err = body["error"]
    if name in APP_PATH_VALUES and err["error_type"] != "DirtyProtocolError":
        # gunicorn's arbiter's own answer, byte for byte
        assert raw == BP.encode_error(rid, DirtyNoWorkersAvailableError(APP_PATH_VALUES[name])), err
        return err
    if name in SHAPE_CASES and err["error_type"] != "DirtyProtocolError":
        assert err["error_type"] in ("DirtyAppNotFoundError", "DirtyNoWorkersAvailableError",
                                     "DirtyAppError", "DirtyError"), err
        assert raw == BP._encode_from_dict({"type": "error", "id": rid, "error": err})
        return err
    err = assert_protocol_error_frame(raw, rid)
    want = gunicorn_decode_error(BAD_PAYLOADS[name])
    if want is not None:
        # same text as the DirtyProtocolError gunicorn raises for these bytes.
        assert err["message"] == want["message"], (err, want)
    elif name.startswith("nesting"):
        assert "deep" in err["message"].lower() or "nest" in err["message"].lower(), err
    elif name in APP_PATH_VALUES or name in SHAPE_CASES:
        assert "app_path" in err["message"], err
    else:
        assert name.startswith("payload"), name
    return err


@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_bad_request_payload(hostile, name):
    payload = BAD_PAYLOADS[name]
    rid = next_id() | (1 << 63)  # ids use all 64 bits
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as bad:
            data = request(payload, rid)
            cut = max(len(data) // 2, BP.HEADER_SIZE)
            bad.sendall(data[:cut])  # half a frame, then a good call elsewhere
            good_call(gd.client)
            bad.sendall(data[cut:])
            check_bad_request_answer(recv_frame(bad), rid, name)
            good_call(gd.client)

            # the connection is still in sync and usable
            rid2 = next_id()
            bad.sendall(request(good_request_payload("echo", [name]), rid2))
            assert recv_frame(bad) == BP.encode_response(rid2, name)


def test_bad_payload_error_dicts_equal_gunicorns(hostile):
    """For every bad payload gunicorn's decoder rejects, the whole error dict
    (details included: their keys are API) and so the whole frame equal
    gunicorn's DirtyProtocolError.to_dict() for the same bytes. All cases
    are checked, then every mismatch is reported at once.

    (Regression test: gdirty used to omit an empty raw_data, cut it at 20
    bytes where gunicorn's windows are 21/25, and add one gunicorn does not
    send for non-string keys.)
    """
    mismatches = []
    with connect(hostile.socket_path) as s:
        for name in sorted(BAD_PAYLOADS):
            payload = BAD_PAYLOADS[name]
            want = gunicorn_decode_error(payload)
            if want is None:
                continue
            rid = next_id()
            s.sendall(request(payload, rid))
            raw = recv_frame(s)
            got = BP.decode_message(raw)[2].get("error")
            if got != want or raw != BP._encode_from_dict({"type": "error", "id": rid, "error": want}):
                mismatches.append(f"{name}:\n      gdirty   {got}\n      gunicorn {want}")
    assert not mismatches, (f"{len(mismatches)} error dicts differ from gunicorn's:\n  "
                            + "\n  ".join(mismatches))


REQUEST_SHAPE_MESSAGES = ("Request is missing app_path", "Request app_path must be a string",
                          "Request payload must be a dict", "Nesting too deep")


def _mutations(seed, count):
    import random
    rng = random.Random(seed)
    leaves = [1, -5, 2 ** 63 - 1, 2.5, float("inf"), "h\u00e9llo", "\U0001f600", b"\x00\xff", None,
              True, [1, "a", {"k": b"v"}], {"x": {"y": [None, False]}}]
    for _ in range(count):
        args = [rng.choice(leaves) for _ in range(rng.randint(0, 5))]
        p = bytearray(TLV.encode({"app_path": APP, "action": "echo", "args": args,
                                  "kwargs": {"k": "v" * rng.randint(0, 40)}}))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(p))
            op = rng.random()
            if op < 0.4:
                p[i] = rng.randrange(256)
            elif op < 0.6:
                del p[max(i, 1):]
            elif op < 0.8:
                p[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif i + 4 <= len(p):
                p[i:i + 4] = struct.pack(">I", rng.choice(
                    [0, 1, 0xFFFFFFFF, 1 << 20, (1 << 20) + 1, MAX_MESSAGE, MAX_MESSAGE + 1,
                     rng.randrange(1 << 32)]))
        yield bytes(p)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_differential_fuzz_against_gunicorn_decoder(hostile, seed):
    """1000 randomly corrupted REQUEST payloads per seed, pipelined on one
    connection. Each gets exactly one answer with its own id; where
    gunicorn's decoder rejects the bytes gdirty answers DirtyProtocolError
    with gunicorn's message; where gunicorn accepts them gdirty either
    serves the call or refuses the request's shape (never a TLV error).
    (Payloads that are not a dict at top level are left to the explicit
    cases above: see payload_none_then_trailing.)"""
    payloads = list(_mutations(seed, 1000))
    base = next_id() << 16
    blob = b"".join(request(p, base + i) for i, p in enumerate(payloads))
    problems = []
    with guard(hostile) as gd, connect(hostile.socket_path, timeout=120) as s:
        sender = send_in_background(s, blob)
        for i, p in enumerate(payloads):
            raw = recv_frame(s)
            mtype, rid, body = BP.decode_message(raw)
            if rid != base + i:
                pytest.fail(f"answer {i} carries id {rid}, expected {base + i}")
            if i % 250 == 0:
                good_call(gd.client)
            if mtype == "chunk":
                problems.append((i, "stream answer to echo", p.hex()))
                break
            err = body.get("error") if mtype == "error" else None
            want = gunicorn_decode_error(p)
            is_proto = err is not None and err["error_type"] == "DirtyProtocolError"
            if want is not None:
                if not is_proto:
                    problems.append((i, "gunicorn rejects, gdirty did not", p.hex(), mtype, body))
                elif p[:1] == b"\x21" and err["message"] != want["message"]:
                    problems.append((i, "message", p.hex(), err["message"], want["message"]))
            elif is_proto and not err["message"].startswith(REQUEST_SHAPE_MESSAGES):
                problems.append((i, "gunicorn accepts, gdirty TLV error", p.hex(), err))
        sender.join(60)
        rid = next_id()
        s.sendall(request(good_request_payload("echo", ["end"]), rid))
        assert recv_frame(s) == BP.encode_response(rid, "end")
    assert not problems, f"{len(problems)} discrepancies, first: {problems[:3]}"


def test_many_bad_frames_pipelined_on_one_connection(hostile):
    """Every bad payload back to back on one connection, then a good call:
    one error per request, each with its own id, in order."""
    with guard(hostile) as gd:
        names = sorted(BAD_PAYLOADS)
        ids = [next_id() for _ in names]
        answers = {}
        blob = b"".join(request(BAD_PAYLOADS[n], i) for n, i in zip(names, ids))
        last = next_id()
        blob += request(good_request_payload("echo", ["after all"]), last)
        with connect(hostile.socket_path, timeout=60) as s:
            sender = send_in_background(s, blob)  # bigger than the socket buffer
            for name, rid in zip(names, ids):
                answers[name] = recv_frame(s)
                if rid == ids[len(ids) // 2]:
                    good_call(gd.client)
            assert recv_frame(s) == BP.encode_response(last, "after all")
            sender.join(30)
        for name, rid in zip(names, ids):
            if name == "payload_none_then_trailing":
                continue  # its known message bug is reported by test_bad_request_payload
            check_bad_request_answer(answers[name], rid, name)


@pytest.mark.parametrize("msg_type,name", [(0x02, "response"), (0x03, "error"),
                                           (0x04, "chunk"), (0x05, "end")])
def test_client_sending_server_message_types(hostile, msg_type, name):
    """Types only the arbiter may send: refused with the request's id, the
    connection stays usable."""
    rid = next_id()
    payload = b"" if msg_type == 0x05 else TLV.encode({"result": 1})
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            s.sendall(frame(msg_type, payload, rid))
            err = assert_protocol_error_frame(recv_frame(s), rid)
            assert name in err["message"], err
            good_call(gd.client)
            rid2 = next_id()
            s.sendall(request(good_request_payload("echo", [1]), rid2))
            assert recv_frame(s) == BP.encode_response(rid2, 1)


@pytest.mark.parametrize("msg_type", [0x10, 0x12])  # STASH, MANAGE
@pytest.mark.parametrize("case", ["unknown_tlv_type_top", "trailing_bytes", "nesting_100k_dicts",
                                  "invalid_utf8_key", "huge_list_count_no_items"])
def test_bad_stash_and_manage_payloads(hostile, msg_type, case):
    rid = next_id()
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            s.sendall(frame(msg_type, BAD_PAYLOADS[case], rid))
            assert_protocol_error_frame(recv_frame(s), rid)
            good_call(gd.client)
            rid2 = next_id()
            s.sendall(BP.encode_status(rid2))
            assert BP.decode_message(recv_frame(s))[:2] == ("response", rid2)


def test_deep_but_allowed_nesting_is_served(hostile):
    value = "leaf"
    for i in range(40):
        value = [value] if i % 2 else {"k": value}
    c = hostile.client()
    try:
        assert c.execute(APP, "echo", value) == value
    finally:
        c.close()


def test_status_with_malformed_payload_is_refused(hostile):
    """A STATUS frame whose payload is not valid TLV is a malformed frame
    like any other: DirtyProtocolError with its id (gunicorn's arbiter
    decodes every payload and drops such a connection).

    (Regression test: gdirty used to ignore a STATUS payload.)"""
    for case in ("unknown_tlv_type_top", "trailing_bytes"):
        rid = next_id()
        with connect(hostile.socket_path) as s:
            s.sendall(frame(0x11, BAD_PAYLOADS[case], rid))
            got = BP.decode_message(recv_frame(s))
            assert got[:2] == ("error", rid), (
                f"STATUS with a malformed payload ({case}) was answered: {str(got)[:200]}")
    rid = next_id()
    with connect(hostile.socket_path) as s:
        s.sendall(frame(0x11, BAD_PAYLOADS["trailing_bytes"], rid))
        assert_protocol_error_frame(recv_frame(s), rid)
        rid2 = next_id()
        s.sendall(request(good_request_payload("echo", [1]), rid2))
        assert recv_frame(s) == BP.encode_response(rid2, 1)


def test_status_with_valid_payload_is_answered(hostile):
    # gunicorn decodes and ignores it: well-formed extra payload is fine
    rid = next_id()
    with connect(hostile.socket_path) as s:
        s.sendall(frame(0x11, TLV.encode({"x": [1, 2]}), rid))
        assert BP.decode_message(recv_frame(s))[:2] == ("response", rid)


def test_same_request_id_on_many_connections(hostile):
    """Request ids are the client's: 12 connections all using id 7 at
    once (streams and calls) each get exactly their own answers."""
    errors = []

    def one(i):
        try:
            with connect(hostile.socket_path, timeout=60) as s:
                for round_ in range(5):
                    tok = f"conn{i}-r{round_}"
                    if (i + round_) % 2:
                        s.sendall(BP.encode_request(7, APP, "token", (tok, 0.01)))
                        mtype, rid, body = BP.decode_message(recv_frame(s))
                        assert (mtype, rid, body["result"]["token"]) == ("response", 7, tok)
                    else:
                        s.sendall(BP.encode_request(7, APP, "tok_stream", (tok, 5, 0.002)))
                        for k in range(5):
                            mtype, rid, body = BP.decode_message(recv_frame(s))
                            assert (mtype, rid, body["data"]) == ("chunk", 7, {"token": tok, "i": k})
                        assert recv_frame(s) == BP.encode_end(7)
        except Exception as e:
            errors.append(f"conn {i}: {e!r}")

    with guard(hostile):
        ts = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(180)
        assert not any(t.is_alive() for t in ts)
        assert not errors, errors


def test_connection_churn_and_vanishing_clients(hostile):
    """Hundreds of clients that connect and leave at every possible moment:
    before sending, after a request (answer never read), mid-stream, with
    pipelined requests unread. Nothing may leak, others keep being served."""
    with guard(hostile) as gd:
        for i in range(100):
            connect(hostile.socket_path).close()
        for i in range(60):
            s = connect(hostile.socket_path)
            kind = i % 4
            if kind == 0:    # request, leave before the answer
                s.sendall(BP.encode_request(next_id(), APP, "token", ("gone", 0.05)))
            elif kind == 1:  # stream, read one chunk, leave
                s.sendall(BP.encode_request(next_id(), APP, "tok_stream", ("gone", 50, 0.001)))
                recv_frame(s)
            elif kind == 2:  # many pipelined requests, read nothing
                s.sendall(b"".join(BP.encode_request(next_id(), APP, "echo", (k,))
                                   for k in range(20)))
            else:            # STATUS, leave
                s.sendall(BP.encode_status(next_id()))
            s.close()
            if i % 10 == 0:
                good_call(gd.client)


def test_client_gone_mid_stream_stops_the_generator(own_gdirty, tmp_path):
    """A client that goes away during a long stream (a user closing the
    page during a generation) must not keep the worker generating for
    nobody: gunicorn's arbiter drops its worker connection when the client
    write fails, and gunicorn's worker then closes the generator, so the
    worker thread is free again within a chunk or two.

    (Regression test: gdirty used to only abandon the call locally; the
    worker ran the generator to its end holding a dirty_threads slot, so
    with one worker x one thread the next caller got DirtyTimeoutError
    after dirty_timeout. Fixed by the link's cancel message.)"""
    h = own_gdirty(workers=1, threads=1, timeout=20)
    marker = tmp_path / "stream-stopped"
    n = 3000  # 3000 x 20 ms: a minute of generation if nobody stops it
    with connect(h.socket_path) as s:
        s.sendall(BP.encode_request(next_id(), APP, "watched_stream", (str(marker), n, 0.02)))
        recv_frame(s)
        recv_frame(s)
    wait_until(marker.exists, 30.0,
               "the stream's generator to be closed after its client left "
               "(it keeps running: the worker slot stays busy)")
    stopped_at, total = map(int, marker.read_text().split())
    assert stopped_at < total - 1
    c = h.client(timeout=60)
    try:
        good_call(c, "after-abandoned-stream")
    finally:
        c.close()


def test_oversized_answer_fails_only_its_call(own_gdirty, tmp_path):
    """An action returning 64 MiB of bytes (a legal TLV value: gunicorn's
    encoder allows bytes up to 64 MiB) makes an answer frame just over the
    64 MiB message limit. That call fails; nothing else may: gunicorn's
    arbiter rejects the header, answers that call with DirtyWorkerError
    and reconnects to the same, still running, worker.

    (Regression test: the whole worker used to go away, failing every
    other call it held and re-initialising its apps.)"""
    h = own_gdirty(workers=1, threads=4, timeout=60)
    (pid_before,) = h.g.worker_pids()
    marker = tmp_path / "running"
    result = {}

    def bystander_call():
        c = h.client(timeout=120)
        try:
            result["v"] = c.execute(APP, "token_marked", "held", str(marker), 6.0)
        except Exception as e:
            result["v"] = e
        finally:
            c.close()

    t = threading.Thread(target=bystander_call)
    t.start()
    try:
        wait_until(marker.exists, 60.0, "the concurrent call to be running on the worker")
        c = h.client(timeout=120)
        try:
            with pytest.raises(DirtyError):
                c.execute(APP, "blob", MAX_MESSAGE)
        finally:
            c.close()
    finally:
        t.join(120)
    assert isinstance(result.get("v"), dict) and result["v"]["token"] == "held", (
        f"another caller's call on the same worker failed: {result.get('v')!r}")
    assert h.g.worker_pids() == [pid_before], "the worker was replaced"


# ---------------------------------------------------------------------------
# Bad headers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hdr", [
    pytest.param(header(0x01, 0, 1, magic=b"XX"), id="magic_XX"),
    pytest.param(header(0x01, 0, 1, magic=b"GX"), id="magic_GX"),
    pytest.param(header(0x01, 0, 1, magic=b"DG"), id="magic_swapped"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http_request"),
    pytest.param(header(0x01, 0, 1, version=0), id="version_0"),
    pytest.param(header(0x01, 0, 1, version=2), id="version_2"),
    pytest.param(header(0x11, 0, 1, version=0xFF), id="version_255_status"),
])
def test_bad_magic_or_version_closes(hostile, hdr):
    gunicorn_header_error(hdr[:16])  # gunicorn rejects it too
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            s.sendall(hdr)
            good_call(gd.client)
            assert_closed_silently(s)


@pytest.mark.parametrize("msg_type,length", [
    pytest.param(0x00, 0, id="type_0x00"),
    pytest.param(0x06, 0, id="type_0x06"),
    pytest.param(0x13, 0, id="type_0x13"),
    pytest.param(0x7F, 5, id="type_0x7f_with_length"),
    pytest.param(0xFF, 0, id="type_0xff"),
    pytest.param(0x01, MAX_MESSAGE + 1, id="request_64MiB_plus_1"),
    pytest.param(0x01, 0xFFFFFFFF, id="request_4GiB"),
    pytest.param(0x10, 0x80000000, id="stash_2GiB"),
    pytest.param(0x11, MAX_MESSAGE + 1, id="status_too_large"),
])
def test_readable_bad_header_gets_error_then_close(hostile, msg_type, length):
    rid = next_id() | (1 << 62)
    hdr = header(msg_type, length, rid)
    want = gunicorn_header_error(hdr)
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            s.sendall(hdr)
            good_call(gd.client)
            frames = split_frames(read_until_closed(s))
            assert len(frames) == 1, frames
            assert frames[0] == BP.encode_error(rid, want), (
                BP.decode_message(frames[0]), want.to_dict())


@pytest.mark.parametrize("nbytes", [1, 2, 8, 15])
def test_truncated_header_then_close(hostile, nbytes):
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            s.sendall(BP.encode_request(next_id(), APP, "echo", ("x",))[:nbytes])
            good_call(gd.client)
            s.shutdown(socket.SHUT_WR)
            assert_closed_silently(s)


@pytest.mark.parametrize("kind", ["request", "stash"])
@pytest.mark.parametrize("sent_fraction", [0.0, 0.5])
def test_truncated_payload_then_close(hostile, kind, sent_fraction):
    rid = next_id()
    if kind == "request":
        data = BP.encode_request(rid, APP, "echo", ("y" * 5000,))
    else:
        data = BP.encode_stash(rid, 3, "table", "key")
    keep = BP.HEADER_SIZE + int((len(data) - BP.HEADER_SIZE) * sent_fraction)
    with guard(hostile) as gd:
        with connect(hostile.socket_path) as s:
            s.sendall(data[:keep])
            good_call(gd.client)
            s.shutdown(socket.SHUT_WR)
            frames = split_frames(read_until_closed(s))
            # closed; an error for the known id is acceptable before the close
            assert len(frames) <= 1, frames
            for f in frames:
                assert_protocol_error_frame(f, rid)


# ---------------------------------------------------------------------------
# Memory: lengths are never trusted
# ---------------------------------------------------------------------------

def test_oversized_headers_allocate_nothing(hostile):
    """Headers announcing more than 64 MiB on many connections: each gets
    its error and a close; gdirty's RSS and Go heap stay put."""
    with guard(hostile):
        before = hostile.gauges.read()
        peak_rss, peak_heap = 0, 0
        for batch in range(10):
            socks = []
            for i in range(20):
                s = connect(hostile.socket_path)
                s.sendall(header(0x01, 0xFFFFFFFF - i, next_id()))
                socks.append(s)
            for s in socks:
                frames = split_frames(read_until_closed(s))
                assert len(frames) == 1
                s.close()
            now = hostile.gauges.read()
            peak_rss = max(peak_rss, now["rss"])
            peak_heap = max(peak_heap, now["heap_alloc"])
        # 200 frames of 4 GiB each were announced; a few MiB of noise is all
        assert peak_rss - before["rss"] < 32 * MiB, (mib(before["rss"]), mib(peak_rss))
        assert peak_heap - before["heap_alloc"] < 32 * MiB, (mib(before["heap_alloc"]), mib(peak_heap))


def test_max_size_frames_trickled_on_many_connections(hostile):
    """40 connections each announce a 64 MiB payload (the maximum, so
    valid), send 1 KiB and stall. gdirty must commit memory as bytes arrive,
    not as announced (40 x 64 MiB = 2.5 GiB), and keep serving others."""
    n = 40
    with guard(hostile) as gd:
        before = hostile.gauges.read()
        socks = []
        try:
            for _ in range(n):
                s = connect(hostile.socket_path)
                s.sendall(header(0x01, MAX_MESSAGE, next_id()) + b"\x21" + b"\x00" * 1023)
                socks.append(s)
            for _ in range(5):
                good_call(gd.client)
            # all 40 are read by now (their goroutines sit in the payload read)
            wait_until(lambda: hostile.gauges.read()["goroutines"] >= before["goroutines"] + n,
                       60.0, "gdirty to accept the 40 stalled connections")
            during = hostile.gauges.read()
            assert during["heap_alloc"] - before["heap_alloc"] < 64 * MiB, (
                f"Go heap grew {mib(during['heap_alloc'] - before['heap_alloc'])} for "
                f"{n} stalled 64 MiB frames")
            assert during["rss"] - before["rss"] < 128 * MiB, (
                f"RSS grew {mib(during['rss'] - before['rss'])}")
        finally:
            for s in socks:
                s.close()


def test_half_header_and_silence_blocks_nobody(hostile):
    """Clients that send half a header (or half a payload) and then sleep
    do not hold up anybody else; closing them frees everything."""
    with guard(hostile) as gd:
        sleepers = []
        try:
            for i in range(10):
                s = connect(hostile.socket_path)
                s.sendall(BP.encode_request(next_id(), APP, "echo", ("z",))[:8])
                sleepers.append(s)
                s = connect(hostile.socket_path)
                s.sendall(BP.encode_request(next_id(), APP, "echo", ("z" * 1000,))[:200])
                sleepers.append(s)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3.0:
                good_call(gd.client)
            # concurrent well-behaved clients as well
            errors = []

            def burst():
                c = hostile.client()
                try:
                    for _ in range(10):
                        good_call(c, "burst")
                except Exception as e:
                    errors.append(repr(e))
                finally:
                    c.close()

            ts = [threading.Thread(target=burst) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            assert not errors, errors
            # the sleepers are still connected, waiting for their frames
            for s in sleepers:
                r, _, _ = select.select([s], [], [], 0)
                assert not r, "gdirty answered or closed a silent client"
        finally:
            for s in sleepers:
                s.close()


def test_unread_stream_blocks_nobody_and_memory_stays_bounded(own_gdirty):
    """A client asks for a 1 GiB stream (2048 chunks of 512 KiB) and stops
    reading after the first chunk. With one worker, every other call runs on
    that same worker: they must all be served meanwhile; gdirty's RSS stays
    bounded (the per-call queue is capped at 64 MiB); gdirty eventually
    drops the stalled client and frees everything."""
    h = own_gdirty(workers=1, threads=4, timeout=60)
    baseline = h.gauges.read()
    bystander = Bystander(h.socket_path)
    bystander.start()
    stalled = connect(h.socket_path, timeout=60)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    rid = next_id()
    peak = {"rss": 0}
    try:
        stalled.sendall(BP.encode_request(rid, APP, "big_stream", (2048, 512 * 1024)))
        first = BP.decode_message(recv_frame(stalled))
        assert first[:2] == ("chunk", rid) and first[2]["data"]["i"] == 0
        # stop reading now
        (worker_pid,) = [w["pid"] for w in h.g.status()["workers"]]

        def sample():
            peak["rss"] = max(peak["rss"], rss(h.pid))

        c = h.client(timeout=60)
        try:
            for i in range(20):
                got = good_call(c, "same-worker")
                assert got["pid"] == worker_pid
                sample()
            chunks = list(c.stream(APP, "tok_stream", "side-stream", 30))
            assert [x["i"] for x in chunks] == list(range(30))
            assert all(x["token"] == "side-stream" for x in chunks)
            sample()
            # gdirty gives up on the stalled client by itself (write timeout
            # or the 64 MiB queue bound): wait for it, sampling RSS
            def dropped():
                sample()
                s = scrape(h.url)
                return metric(s, "gdirty_requests_total", action="big_stream") >= 1
            wait_until(dropped, 180.0, "gdirty to drop the client that stopped reading",
                       interval=0.2)
            for _ in range(5):
                good_call(c, "after-drop")
        finally:
            c.close()
        outcome = {dict(ls).get("outcome"): v for (n, ls), v in scrape(h.url).items()
                   if n == "gdirty_requests_total" and dict(ls).get("action") == "big_stream"}
        assert outcome == {"client_gone": 1.0}, outcome
        # what the stalled client can still read: chunks in order, then close
        data = read_until_closed(stalled, timeout=60)
        frames = split_frames(data, allow_partial_tail=True)
        idx = [BP.decode_message(f)[2]["data"]["i"] for f in frames
               if BP.decode_message(f)[0] == "chunk"]
        assert idx == list(range(1, 1 + len(idx))), idx[:10]
        assert len(idx) < 2047, "the whole 1 GiB stream was buffered for a stalled client"
    except BaseException:
        stalled.close()
        bystander.stop_evt.set()
        raise
    stalled.close()
    bystander.finish()
    print(f"\nunread stream: baseline RSS {mib(baseline['rss'])}, peak {mib(peak['rss'])}; "
          f"stalled client got {len(idx) + 1} of 2048 chunks")
    assert peak["rss"] - baseline["rss"] < 256 * MiB, (
        f"gdirty RSS peaked at {mib(peak['rss'])} (baseline {mib(baseline['rss'])}) "
        "while a client stalled on a 1 GiB stream")
    ok, last = h.gauges.settle(baseline, GOROUTINE_SLACK, FD_SLACK, SETTLE_TIMEOUT)
    assert ok, f"gdirty leaked: baseline {baseline}, later {last}"
    c = h.client()
    try:
        good_call(c, "end")  # the worker is free again
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Connection limit
# ---------------------------------------------------------------------------

def test_max_connections(own_gdirty):
    limit = 3
    h = own_gdirty(workers=1, threads=2, args=["--max-connections", str(limit)])
    baseline = h.gauges.read()
    clients = [h.client() for _ in range(limit)]
    try:
        for c in clients:
            good_call(c)  # all three admitted and served
        extra = h.client()
        try:
            with pytest.raises(DirtyError) as ei:
                extra.execute(APP, "token", "over the limit")
            assert type(ei.value) is DirtyError, repr(ei.value)
            assert str(limit) in ei.value.message and "connection" in ei.value.message.lower(), (
                ei.value.message)
        finally:
            extra.close()
        # a raw client over the limit gets the error under its own id
        rid = next_id()
        with connect(h.socket_path) as s:
            s.sendall(BP.encode_request(rid, APP, "echo", (1,)))
            frames = split_frames(read_until_closed(s))
        assert len(frames) == 1
        mtype, got, payload = BP.decode_message(frames[0])
        assert (mtype, got) == ("error", rid)
        assert payload["error"]["error_type"] == "DirtyError"
        # admitted clients are unaffected
        for c in clients:
            good_call(c)
        # a slot frees when one leaves
        clients.pop().close()

        def admitted():
            c = h.client()
            try:
                good_call(c, "freed-slot")
                return True
            except DirtyError:
                return False
            finally:
                c.close()
        wait_until(admitted, 30.0, "a new client to be admitted after one left", interval=0.1)
    finally:
        for c in clients:
            c.close()
    ok, last = h.gauges.settle(baseline, GOROUTINE_SLACK, FD_SLACK, SETTLE_TIMEOUT)
    assert ok, f"gdirty leaked: baseline {baseline}, later {last}"


# ---------------------------------------------------------------------------
# Socket file safety
# ---------------------------------------------------------------------------

def assert_mode(path, want_sock, want_dir):
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == want_sock, oct(st.st_mode)
    dst = os.stat(os.path.dirname(path))
    assert stat.S_IMODE(dst.st_mode) == want_dir, oct(dst.st_mode)


def test_socket_private_modes(hostile):
    assert_mode(hostile.socket_path, 0o600, 0o700)


def wait_exit(g, timeout=60.0):
    try:
        return g.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(g.proc)
        pytest.fail(f"gdirty kept running; stderr:\n{g.stderr()[-3000:]}")


CONF1 = dirty_config([APP], workers=1, threads=2)


def test_second_gdirty_on_live_socket_fails_first_keeps_serving(gdirty_start, gdirty_spawn,
                                                              tmp_path):
    path = tmp_path / "live" / "dirty.sock"
    first = gdirty_start(CONF1, workers=1, args=["--socket", str(path)])
    c = first.client()
    try:
        good_call(c)  # a connection open across the second start
        ino = os.stat(path).st_ino
        second = gdirty_spawn(CONF1, args=["--socket", str(path)])
        rc = wait_exit(second)
        assert rc != 0
        err = second.stderr()
        assert str(path) in err and ("in use" in err or "running" in err), err[-2000:]
        assert os.stat(path).st_ino == ino, "the live socket file was replaced"
        good_call(c)
        c2 = first.client()
        try:
            good_call(c2)
        finally:
            c2.close()
        assert_mode(str(path), 0o600, 0o700)
    finally:
        c.close()


def test_stale_socket_is_replaced(gdirty_start, tmp_path):
    d = tmp_path / "stale"
    d.mkdir(mode=0o700)
    path = d / "dirty.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # a socket file nobody listens on
    g = gdirty_start(CONF1, workers=1, args=["--socket", str(path)])
    assert query_status(g.socket_path)["worker_count"] == 1
    assert_mode(str(path), 0o600, 0o700)
    c = g.client()
    try:
        good_call(c)
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["regular_file", "symlink_to_file", "symlink_to_missing"])
def test_non_socket_at_socket_path_is_refused_untouched(gdirty_spawn, tmp_path, kind):
    d = tmp_path / "trap"
    d.mkdir(mode=0o700)
    path = d / "dirty.sock"
    target = tmp_path / "precious.txt"
    if kind == "regular_file":
        path.write_text("precious")
    elif kind == "symlink_to_file":
        target.write_text("precious")
        path.symlink_to(target)
    else:
        path.symlink_to(tmp_path / "nowhere" / "x.sock")
    g = gdirty_spawn(CONF1, args=["--socket", str(path)])
    rc = wait_exit(g)
    assert rc != 0, g.stderr()[-2000:]
    assert str(path) in g.stderr()
    assert os.path.lexists(path)
    if kind == "regular_file":
        assert path.read_text() == "precious"
    elif kind == "symlink_to_file":
        assert path.is_symlink() and target.read_text() == "precious"
    else:
        assert path.is_symlink() and not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------------------
# --allow-uid: a client running as another uid (forked child, setuid)
# ---------------------------------------------------------------------------

NOBODY = 65534


def call_as_uid(socket_path, uid, timeout=20.0):
    """Fork; the child drops to ``uid`` and sends one REQUEST over a raw
    socket. Returns what it saw: "connect-refused:<errno>", "closed",
    "response:<result>", "error:<error_type>" or "other:<...>"."""
    rfd, wfd = os.pipe()
    rid = next_id()
    req = BP.encode_request(rid, APP, "echo", (f"uid {uid}",))
    pid = os.fork()
    if pid == 0:  # child: no pytest, no threads of ours, only os/socket
        out = "other:child failed"
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(socket_path)
            except OSError as e:
                out = f"connect-refused:{errno.errorcode.get(e.errno, e.errno)}"
            else:
                try:
                    s.sendall(req)
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                        if len(data) >= 16:
                            n = struct.unpack(">I", data[4:8])[0]
                            if len(data) >= 16 + n:
                                break
                    if not data:
                        out = "closed"
                    else:
                        mtype, got_id, payload = BP.decode_message(data)
                        if got_id != rid:
                            out = f"other:id {got_id} != {rid}"
                        elif mtype == "response":
                            out = f"response:{payload['result']}"
                        else:
                            out = f"{mtype}:{payload.get('error', {}).get('error_type')}"
                except (ConnectionResetError, BrokenPipeError):
                    out = "closed"
                except Exception as e:
                    out = f"other:{e!r}"
        except BaseException as e:
            out = f"other:{e!r}"
        finally:
            try:
                os.write(wfd, out.encode()[:4000])
            finally:
                os._exit(0)
    os.close(wfd)
    chunks = []
    deadline = time.monotonic() + timeout + 30
    while True:
        r, _, _ = select.select([rfd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(rfd)
            pytest.fail("child client (setuid) hung")
        b = os.read(rfd, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(rfd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client under another uid")


def test_other_uid_cannot_reach_private_socket(root_only, hostile):
    assert call_as_uid(hostile.socket_path, NOBODY) == "connect-refused:EACCES"
    c = hostile.client()
    try:
        good_call(c)
    finally:
        c.close()


def test_allow_uid_serves_listed_uid(root_only, own_gdirty):
    h = own_gdirty(workers=1, threads=2, args=["--allow-uid", str(NOBODY)])
    assert_mode(h.socket_path, 0o666, 0o711)
    assert call_as_uid(h.socket_path, NOBODY) == f"response:uid {NOBODY}"
    c = h.client()  # gdirty's own uid is always served
    try:
        good_call(c)
    finally:
        c.close()


def test_allow_uid_refuses_unlisted_uid(root_only, own_gdirty):
    h = own_gdirty(workers=1, threads=2, args=["--allow-uid", "12345"])
    assert_mode(h.socket_path, 0o666, 0o711)
    baseline = h.gauges.read()
    for _ in range(20):
        assert call_as_uid(h.socket_path, NOBODY) == "closed"
    assert call_as_uid(h.socket_path, 12345) == "response:uid 12345"
    c = h.client()
    try:
        good_call(c)
    finally:
        c.close()
    ok, last = h.gauges.settle(baseline, GOROUTINE_SLACK, FD_SLACK, SETTLE_TIMEOUT)
    assert ok, f"gdirty leaked: baseline {baseline}, later {last}"
