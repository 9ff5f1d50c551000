"""gdirty over its Unix socket, driven by gunicorn's own client classes
(``DirtyClient``) and by raw ``BinaryProtocol`` frames. Every expected frame
is computed by gunicorn's encoder from the installed package, never written
by hand."""

import asyncio
import collections
import concurrent.futures
import random
import threading
import time
import uuid

import pytest

import gversions

# Raw binary frames, STATUS / MANAGE: protocol v1 (gunicorn 25.1+).
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

import dvalues
from conftest import (
    ECHO, MAIN_WORKERS, ONE, OVERRIDDEN, SPEC, GDirtyLauncher, connect, dirty_config,
    next_id, recv_frame, wait_until,
)
from gunicorn.dirty.errors import (
    DirtyAppError, DirtyError, DirtyNoWorkersAvailableError, DirtyProtocolError,
)
from gunicorn.dirty.protocol import BinaryProtocol as BP
from gunicorn.dirty.protocol import make_error_response
from gunicorn.dirty.tlv import TLVEncoder

U64_MAX = 2 ** 64 - 1


def decode(frame):
    """(type_str, id, payload dict) of a raw frame, with gunicorn's decoder."""
    return BP.decode_message(frame)


def reencode(frame):
    """gunicorn's own encoding of the decoded frame: a frame gdirty produced
    must be byte-identical to it."""
    mtype, rid, payload = decode(frame)
    if mtype == "response":
        return BP.encode_response(rid, payload["result"])
    if mtype == "error":
        return BP.encode_error(rid, payload["error"])
    if mtype == "chunk":
        return BP.encode_chunk(rid, payload["data"])
    if mtype == "end":
        return BP.encode_end(rid)
    raise AssertionError(f"unexpected frame type {mtype}")


def call_raw(socket_path, frame, count=1):
    with connect(socket_path) as s:
        s.sendall(frame)
        return [recv_frame(s) for _ in range(count)]


@pytest.fixture(scope="module")
def sock_path(main_gdirty):
    return main_gdirty.socket_path


@pytest.fixture
def client(main_gdirty):
    c = main_gdirty.client()
    yield c
    c.close()


# ---------------------------------------------------------------------------
# Values: gunicorn's client, and byte identity of the answer frames
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(dvalues.CASES))
def test_client_value_round_trip(client, name):
    sent, expected = dvalues.CASES[name]
    got = client.execute(ECHO, "echo_value", sent)
    assert dvalues.strict_equal(got, expected), dvalues.describe(got)


@pytest.mark.parametrize("name", sorted(dvalues.CASES))
def test_response_bytes_identical_to_gunicorn(sock_path, name):
    sent, expected = dvalues.CASES[name]
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, "echo_value", (sent,)))
    want = BP.encode_response(rid, expected)
    assert frame == want, (f"{name}: {len(frame)} bytes, gunicorn would send {len(want)}; "
                           f"first 80: {frame[:80]!r} vs {want[:80]!r}")


def test_16_mib_round_trip_bytes_identical(sock_path):
    value = bytes(range(256)) * (1 << 16)  # 16 MiB
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, "echo_value", (value,)))
    assert frame == BP.encode_response(rid, value)


def test_args_kwargs_bytes_identical(sock_path):
    rid = next_id()
    args = (1, "two", [3.5, None], {"k": b"\x00"})
    kwargs = {"z": 1, "a": [True, False], "m": {"n": {}}}
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, "echo", args, kwargs))
    assert frame == BP.encode_response(rid, {"args": list(args), "kwargs": kwargs})


@pytest.mark.parametrize("rid", [0, 1, 255, 2 ** 32, 2 ** 63 - 1, 2 ** 63, U64_MAX - 1, U64_MAX])
def test_response_id_equals_request_id(sock_path, rid):
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, "echo_value", (f"id {rid}",)))
    assert frame == BP.encode_response(rid, f"id {rid}")
    # errors and STATUS carry the id too
    [err] = call_raw(sock_path, BP.encode_request(rid, "dapps:Missing", "x"))
    assert decode(err)[1] == rid
    [st] = call_raw(sock_path, BP.encode_status(rid))
    assert decode(st)[:2] == ("response", rid)


@pytest.mark.compat
def test_stream_frames_identical_to_gunicorn(sock_path):
    rid = next_id()
    frames = call_raw(sock_path, BP.encode_request(rid, ECHO, "acount", (4,)), count=5)
    assert frames == [BP.encode_chunk(rid, f"a{i}") for i in range(4)] + [BP.encode_end(rid)]


def test_sync_stream_frames(sock_path):
    rid = U64_MAX
    frames = call_raw(sock_path, BP.encode_request(rid, ECHO, "count", (3,)), count=4)
    chunks = [decode(f) for f in frames[:3]]
    assert [c[0] for c in chunks] == ["chunk"] * 3
    assert [c[2]["data"]["i"] for c in chunks] == [0, 1, 2]
    for f in frames[:3]:
        assert f == BP.encode_chunk(rid, decode(f)[2]["data"])
    assert frames[3] == BP.encode_end(rid)


def test_empty_stream_is_just_end(sock_path):
    rid = next_id()
    assert call_raw(sock_path, BP.encode_request(rid, ECHO, "empty_stream")) == [BP.encode_end(rid)]


# ---------------------------------------------------------------------------
# Error frames
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("app", ["dapps:NoSuchApp", "nomodule:Nothing", "dapps:SpecLimitedApp:2",
                                 "d\u00e4pps:\u00dcnicode"])
@pytest.mark.compat
def test_unknown_app_error_frame_identical(sock_path, app):
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_request(rid, app, "echo", (1,)))
    want = BP._encode_from_dict(make_error_response(rid, DirtyNoWorkersAvailableError(app)))
    assert frame == want
    assert frame == BP.encode_error(rid, DirtyNoWorkersAvailableError(app))


def test_unknown_app_through_client(client):
    with pytest.raises(DirtyNoWorkersAvailableError) as ei:
        client.execute("dapps:Ghost", "echo")
    assert ei.value.app_path == "dapps:Ghost"
    assert ei.value.message == "No workers available for app: dapps:Ghost"
    assert ei.value.details == {"app_path": "dapps:Ghost"}
    # the connection stays usable
    assert client.execute(ECHO, "echo_value", 5) == 5


@pytest.mark.compat
def test_app_error_frame_identical_to_gunicorn(sock_path):
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, "fail", ("bad input \u00e9",)))
    mtype, got_id, payload = decode(frame)
    assert (mtype, got_id) == ("error", rid)
    tb = payload["error"]["details"]["traceback"]
    assert "ValueError: bad input \u00e9" in tb
    # everything but the traceback text is fixed: rebuild gunicorn's frame
    want = BP.encode_error(rid, DirtyAppError("bad input \u00e9", app_path=ECHO,
                                              action="fail", traceback=tb))
    assert frame == want


@pytest.mark.parametrize("action", ["nope", "_secret", "__class__"])
def test_unknown_action_error_frame(sock_path, action):
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, action))
    tb = decode(frame)[2]["error"]["details"]["traceback"]
    assert f"ValueError: Unknown action: {action}" in tb
    assert frame == BP.encode_error(rid, DirtyAppError(
        f"Unknown action: {action}", app_path=ECHO, action=action, traceback=tb))


def test_unencodable_result_is_app_error(sock_path):
    # gunicorn's worker fails to encode the result and answers DirtyAppError
    # with str() of the encoder's DirtyProtocolError.
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_request(rid, ECHO, "unencodable"))
    payload = decode(frame)[2]
    assert decode(frame)[0] == "error"
    err = payload["error"]
    assert err["error_type"] == "DirtyAppError"
    assert err["message"] == "Unsupported type for TLV encoding: set"
    assert list(err["details"]) == ["app_path", "action", "traceback"]
    assert (err["details"]["app_path"], err["details"]["action"]) == (ECHO, "unencodable")


@pytest.mark.parametrize("action,chunks,exc", [
    ("count_then_fail", [0, 1, 2, 3, 4], "RuntimeError"),
    ("acount_then_fail", ["a0", "a1", "a2", "a3", "a4"], "KeyError"),
])
def test_mid_stream_error_frames(sock_path, action, chunks, exc):
    rid = next_id()
    frames = call_raw(sock_path, BP.encode_request(rid, ECHO, action, (5,), {"message": "boom"}),
                      count=6)
    assert frames[:5] == [BP.encode_chunk(rid, c) for c in chunks]
    mtype, got_id, payload = decode(frames[5])
    assert (mtype, got_id) == ("error", rid)
    tb = payload["error"]["details"]["traceback"]
    assert f"{exc}: " in tb
    message = "boom" if exc == "RuntimeError" else "'boom'"
    # gunicorn: DirtyAppError(str(e), traceback=tb) -- no app_path/action
    assert frames[5] == BP.encode_error(rid, DirtyAppError(message, traceback=tb))


def test_mid_stream_error_through_client(client):
    got = []
    with pytest.raises(DirtyAppError) as ei:
        for chunk in client.stream(ECHO, "count_then_fail", 3, message="halt"):
            got.append(chunk)
    assert got == [0, 1, 2]
    assert ei.value.message == "halt"
    assert ei.value.app_path is None and ei.value.action is None
    assert "RuntimeError: halt" in ei.value.traceback
    assert list(client.stream(ECHO, "acount", 2)) == ["a0", "a1"]


def test_app_error_through_client(client):
    with pytest.raises(DirtyAppError) as ei:
        client.execute(ECHO, "fail", "nope")
    e = ei.value
    assert type(e) is DirtyAppError
    assert (e.message, e.app_path, e.action) == ("nope", ECHO, "fail")
    assert "ValueError: nope" in e.traceback


# ---------------------------------------------------------------------------
# Ordering on one connection
# ---------------------------------------------------------------------------

@pytest.mark.compat
def test_two_pipelined_requests_answered_in_order(sock_path):
    # The first is slow, the second instant: the answers still come in the
    # order the requests arrived (gunicorn's clients match by order).
    a, b = 1001, 1000
    frames = call_raw(sock_path,
                      BP.encode_request(a, ECHO, "sleep", (0.4,)) +
                      BP.encode_request(b, ECHO, "echo_value", ("second",)),
                      count=2)
    first = decode(frames[0])
    assert (first[0], first[1]) == ("response", a)
    assert frames[0] == reencode(frames[0])
    assert frames[1] == BP.encode_response(b, "second")


def test_pipelined_stream_then_call(sock_path):
    s_id, c_id, e_id = 7, 7, 2 ** 40  # a reused id must not confuse anything
    frames = call_raw(sock_path,
                      BP.encode_request(s_id, ECHO, "acount", (3,)) +
                      BP.encode_request(c_id, ECHO, "echo_value", ("after stream",)) +
                      BP.encode_request(e_id, "dapps:Nope", "x"),
                      count=6)
    assert frames[:4] == [BP.encode_chunk(s_id, f"a{i}") for i in range(3)] + [BP.encode_end(s_id)]
    assert frames[4] == BP.encode_response(c_id, "after stream")
    assert frames[5] == BP.encode_error(e_id, DirtyNoWorkersAvailableError("dapps:Nope"))


def test_many_pipelined_requests_in_order(sock_path):
    rng = random.Random(1234)
    ids = [rng.randrange(0, U64_MAX + 1) for _ in range(60)]
    reqs = []
    expected = []
    for i, rid in enumerate(ids):
        if i % 7 == 3:
            reqs.append(BP.encode_request(rid, ECHO, "sleep", (0.01 * (i % 5),)))
            expected.append(None)
        else:
            reqs.append(BP.encode_request(rid, ECHO, "echo_value", (i,)))
            expected.append(BP.encode_response(rid, i))
    frames = call_raw(sock_path, b"".join(reqs), count=len(ids))
    for rid, want, frame in zip(ids, expected, frames):
        assert decode(frame)[1] == rid
        if want is not None:
            assert frame == want


def test_status_pipelined_with_requests(sock_path, main_gdirty):
    frames = call_raw(sock_path,
                      BP.encode_request(1, ECHO, "sleep", (0.2,)) + BP.encode_status(2) +
                      BP.encode_request(3, ECHO, "echo_value", (3,)),
                      count=3)
    assert [decode(f)[1] for f in frames] == [1, 2, 3]
    assert decode(frames[1])[2]["result"]["arbiter_pid"] == main_gdirty.pid
    assert frames[2] == BP.encode_response(3, 3)


# ---------------------------------------------------------------------------
# STATUS, allocation and routing
# ---------------------------------------------------------------------------

@pytest.mark.compat
def test_status_shape(main_gdirty, sock_path):
    rid = next_id()
    [frame] = call_raw(sock_path, BP.encode_status(rid))
    assert frame == reencode(frame)
    st = decode(frame)[2]["result"]
    assert list(st) == ["arbiter_pid", "workers", "worker_count", "apps"]
    assert st["arbiter_pid"] == main_gdirty.pid
    assert st["worker_count"] == MAIN_WORKERS == len(st["workers"])
    assert st["apps"] == [ECHO, ONE, SPEC, OVERRIDDEN]
    for w in st["workers"]:
        assert list(w) == ["pid", "age", "apps", "booted", "last_heartbeat"]
        assert type(w["pid"]) is int and type(w["age"]) is int
        assert w["booted"] is True
        assert type(w["last_heartbeat"]) is float and 0 <= w["last_heartbeat"] < 30
    assert [w["age"] for w in st["workers"]] == [1, 2, 3]
    assert len({w["pid"] for w in st["workers"]}) == MAIN_WORKERS


def test_app_allocation_in_status(main_gdirty):
    # gunicorn's allocation: limited apps go to the first workers spawned,
    # each worker's apps listed in config order.
    workers = main_gdirty.status()["workers"]
    assert [w["apps"] for w in workers] == [
        [ECHO, ONE, SPEC, OVERRIDDEN],
        [ECHO, SPEC],
        [ECHO],
    ]


def pids_for(client, app, calls):
    return [client.execute(app, "pid") for _ in range(calls)]


@pytest.mark.parametrize("app,count", [(ECHO, 3), (ONE, 1), (SPEC, 2), (OVERRIDDEN, 1)])
def test_calls_land_on_the_apps_workers(main_gdirty, client, app, count):
    status_pids = {w["pid"] for w in main_gdirty.status()["workers"] if app in w["apps"]}
    assert len(status_pids) == count
    assert set(pids_for(client, app, 4 * count)) == status_pids


@pytest.mark.parametrize("app,count", [(ECHO, 3), (SPEC, 2)])
def test_successive_calls_rotate_over_workers(client, app, count):
    seq = pids_for(client, app, 4 * count)
    for i in range(len(seq) - count + 1):
        window = seq[i:i + count]
        assert len(set(window)) == count, f"no rotation in {seq}"


def test_concurrent_streams_spread_over_workers(sock_path):
    # Two streams in flight at once on two connections: the second must not
    # queue behind the first when another worker is idle.
    ids = [next_id(), next_id()]
    socks = [connect(sock_path) for _ in ids]
    try:
        for s, rid in zip(socks, ids):
            s.sendall(BP.encode_request(rid, ECHO, "count", (50,)))
        results = []
        for s, rid in zip(socks, ids):
            frames = [recv_frame(s) for _ in range(51)]
            assert frames[-1] == BP.encode_end(rid)
            results.append({decode(f)[2]["data"]["pid"] for f in frames[:-1]})
    finally:
        for s in socks:
            s.close()
    assert all(len(r) == 1 for r in results)


# ---------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def threaded_gdirty(gdirty_bin, tmp_path_factory):
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-threads")
    g = launcher.start(dirty_config([ECHO], workers=2, threads=4), workers=2)
    yield g
    launcher.stop_all()


def test_threads_run_calls_concurrently(threaded_gdirty):
    # 2 workers x 4 threads: 8 concurrent 0.5 s sleeps take ~0.5 s, not 4 s.
    clients = [threaded_gdirty.client() for _ in range(8)]
    for c in clients:
        c.connect()
    barrier = threading.Barrier(8)

    def call(c):
        barrier.wait()
        return c.execute(ECHO, "sleep", 0.5)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, clients))
    elapsed = time.monotonic() - start
    for c in clients:
        c.close()
    assert elapsed < 2.5, f"8 concurrent 0.5 s calls took {elapsed:.2f}s"
    assert all(r["slept"] >= 0.5 for r in results)
    # least-outstanding routing: 4 calls on each worker
    per_worker = collections.Counter(r["pid"] for r in results)
    assert sorted(per_worker.values()) == [4, 4], per_worker
    assert set(per_worker) == set(threaded_gdirty.worker_pids())


def test_busy_worker_is_skipped(threaded_gdirty, tmp_path):
    # least outstanding calls first: while one worker runs a long call,
    # calls made one after another all go to the idle worker.
    marker = tmp_path / "busy"
    result = {}

    def long_call():
        c = threaded_gdirty.client()
        try:
            result["busy"] = c.execute(ECHO, "marked_sleep", str(marker), 1.0)
        finally:
            c.close()

    t = threading.Thread(target=long_call)
    t.start()
    try:
        wait_until(marker.exists, 20, "the long call to start")
        busy_pid = int(marker.read_text())
        c = threaded_gdirty.client()
        try:
            pids = [c.execute(ECHO, "pid") for _ in range(6)]
        finally:
            c.close()
        assert "busy" not in result, "the long call ended before the quick ones"
    finally:
        t.join(timeout=30)
    idle = set(threaded_gdirty.worker_pids()) - {busy_pid}
    assert len(idle) == 1
    assert set(pids) == idle, (pids, busy_pid)
    assert result["busy"]["pid"] == busy_pid


def test_threads_cap_respected(threaded_gdirty):
    # 2 workers x 4 threads: 10 concurrent 0.5 s calls need two rounds, and
    # every one is answered (the extra ones wait, they are not refused).
    n = 10
    clients = [threaded_gdirty.client() for _ in range(n)]
    for c in clients:
        c.connect()
    barrier = threading.Barrier(n)

    def call(c):
        barrier.wait()
        return c.execute(ECHO, "sleep", 0.5)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(call, clients))
    elapsed = time.monotonic() - start
    for c in clients:
        c.close()
    assert len(results) == n
    assert 0.95 <= elapsed < 3.0, elapsed


def test_many_concurrent_raw_clients(main_gdirty):
    def worker(n):
        c = main_gdirty.client()
        try:
            out = []
            for i in range(25):
                tok = f"{n}:{i}:{uuid.uuid4().hex}"
                out.append((tok, c.execute(ECHO, "token", tok)["token"]))
            return out
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        results = [r for rs in pool.map(worker, range(40)) for r in rs]
    assert len(results) == 1000
    mismatched = [(want, got) for want, got in results if want != got]
    assert not mismatched, mismatched[:5]


def test_many_concurrent_raw_connections_frames(sock_path):
    # Raw frames with random 64-bit ids on many connections at once.
    def worker(n):
        rng = random.Random(n)
        with connect(sock_path) as s:
            for i in range(20):
                rid = rng.randrange(0, U64_MAX + 1)
                value = [n, i, "x" * rng.randrange(0, 3000)]
                s.sendall(BP.encode_request(rid, ECHO, "echo_value", (value,)))
                frame = recv_frame(s)
                if frame != BP.encode_response(rid, value):
                    return (n, i, frame[:60])
        return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        failures = [r for r in pool.map(worker, range(32)) if r is not None]
    assert not failures


def test_async_client_concurrent(main_gdirty):
    from gunicorn.dirty.client import DirtyClient

    async def one(n):
        c = DirtyClient(main_gdirty.socket_path, timeout=30)
        try:
            res = await c.execute_async(ECHO, "echo", n, key=f"k{n}")
            chunks = [ch async for ch in c.stream_async(ECHO, "acount", n % 4)]
            return res, chunks
        finally:
            await c.close_async()

    async def main():
        return await asyncio.gather(*(one(n) for n in range(60)))

    results = asyncio.run(main())
    for n, (res, chunks) in enumerate(results):
        assert res == {"args": [n], "kwargs": {"key": f"k{n}"}}
        assert chunks == [f"a{i}" for i in range(n % 4)]


# ---------------------------------------------------------------------------
# Robustness of the connection handling
# ---------------------------------------------------------------------------

def test_client_disconnect_mid_call_harms_nobody(gdirty_start):
    # its own gdirty: the abandoned calls keep its workers busy for a while,
    # which would disturb the routing observed by other tests
    g = gdirty_start(dirty_config([ECHO], workers=2, threads=2), workers=2)
    for _ in range(3):
        s = connect(g.socket_path)
        s.sendall(BP.encode_request(next_id(), ECHO, "sleep", (0.2,)))
        s.close()
        s = connect(g.socket_path)
        s.sendall(BP.encode_request(next_id(), ECHO, "count", (5000,)))
        s.recv(10)
        s.close()
    c = g.client()
    try:
        for i in range(10):
            assert c.execute(ECHO, "echo_value", i) == i
    finally:
        c.close()
    assert g.status()["worker_count"] == 2


def test_bad_magic_closes_connection(sock_path):
    with connect(sock_path, timeout=10) as s:
        s.sendall(b"XX" + bytes(14))
        assert s.recv(1) == b""  # closed, nothing sent: as gunicorn's arbiter
    # the server is unaffected
    [frame] = call_raw(sock_path, BP.encode_request(9, ECHO, "echo_value", ("ok",)))
    assert frame == BP.encode_response(9, "ok")


def test_truncated_request_then_close(sock_path):
    frame = BP.encode_request(11, ECHO, "echo_value", ("x" * 1000,))
    with connect(sock_path) as s:
        s.sendall(frame[:len(frame) // 2])
    [ok] = call_raw(sock_path, frame)
    assert ok == BP.encode_response(11, "x" * 1000)


def test_dirty_error_base_class_catches_everything(client):
    # What user code typically does: catch DirtyError.
    calls = [("dapps:Nope", "x", ()), (ECHO, "nope", ()), (ECHO, "fail", ("m",))]
    for app, action, args in calls:
        with pytest.raises(DirtyError):
            client.execute(app, action, *args)
    assert client.execute(ECHO, "echo_value", "fine") == "fine"


# ---------------------------------------------------------------------------
# Malformed input. gunicorn's arbiter just drops the connection; gdirty
# answers an ERROR carrying the request id when the header was sound, with
# the very error gunicorn's own TLV decoder raises for that payload.
# ---------------------------------------------------------------------------

_REQUEST = TLVEncoder.encode({"app_path": ECHO, "action": "echo", "args": [], "kwargs": {}})
MALFORMED_PAYLOADS = {
    "unknown_type_code": b"\x99",
    "truncated_string": TLVEncoder.encode({"app_path": ECHO})[:-3],
    "invalid_utf8": (b"\x21\x00\x00\x00\x01\x11\x00\x00\x00\x08app_path"
                     b"\x11\x00\x00\x00\x02\xff\xfe"),
    "utf8_surrogate": b"\x11\x00\x00\x00\x03\xed\xa0\x80",
    "int_dict_key": b"\x21\x00\x00\x00\x01\x05" + bytes(8) + b"\x00",
    "trailing_byte": _REQUEST + b"\x00",
    "list_count_over_limit": b"\x20\xff\xff\xff\xff",
    "dict_count_over_limit": b"\x21\x00\x10\x00\x01",
    "str_len_over_limit": b"\x11\x7f\xff\xff\xff",
    "bytes_len_over_limit": b"\x10\x04\x00\x00\x01",
    "truncated_int": b"\x05\x00\x00",
    "truncated_float": b"\x06\x00",
    "missing_bool_byte": b"\x01",
    "truncated_list_count": b"\x20\x00",
    "list_missing_item": b"\x20\x00\x00\x00\x02\x05" + bytes(8),
}


@pytest.mark.parametrize("payload", MALFORMED_PAYLOADS.values(), ids=MALFORMED_PAYLOADS.keys())
def test_malformed_payload_gets_gunicorn_decoder_error(sock_path, payload):
    with pytest.raises(DirtyProtocolError) as ei:
        TLVEncoder.decode_full(payload)
    rid = next_id()
    with connect(sock_path, timeout=10) as s:
        s.sendall(BP.encode_header(0x01, rid, len(payload)) + payload)
        frame = recv_frame(s)
    assert frame == BP.encode_error(rid, ei.value)
    # the server is unaffected
    [ok] = call_raw(sock_path, BP.encode_request(rid, ECHO, "echo_value", (1,)))
    assert ok == BP.encode_response(rid, 1)


@pytest.mark.parametrize("header", [
    BP.encode_header(0x01, 4242, BP.MAX_MESSAGE_SIZE + 1),   # too large
    BP.encode_header(0x07, 4242, 0),                         # unknown type
    b"GD\x02\x01" + bytes(4) + (4242).to_bytes(8, "big"),    # version 2
    b"gd\x01\x01" + bytes(4) + (4242).to_bytes(8, "big"),    # bad magic
], ids=["too_large", "unknown_type", "bad_version", "bad_magic"])
def test_bad_header_closes_connection(sock_path, header):
    # At most one DirtyProtocolError frame for the header's id, then EOF;
    # never a hang, never a read of a 64 MiB body.
    with connect(sock_path, timeout=10) as s:
        s.sendall(header)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if data:
        mtype, rid, payload = decode(data)
        assert (mtype, rid) == ("error", 4242)
        assert payload["error"]["error_type"] == "DirtyProtocolError"
        assert data == reencode(data)
    [ok] = call_raw(sock_path, BP.encode_request(1, ECHO, "echo_value", (1,)))
    assert ok == BP.encode_response(1, 1)
