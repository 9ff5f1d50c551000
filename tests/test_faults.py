"""Faults seen from gunicorn's side of the socket: calls exceeding
dirty_timeout, long streams, a worker dying mid-call. Each test runs its own
gdirty. (dirty_timeout is 2 s, not 1, so a loaded machine cannot make a
heartbeat look stale.)"""

import threading
import time

import pytest

from conftest import ECHO, ONE, connect, dirty_config, next_id, wait_until
from gunicorn.dirty.errors import (
    DirtyNoWorkersAvailableError, DirtyTimeoutError, DirtyWorkerError,
)
import wire

TIMEOUT = 2


def test_timeout_error_and_late_answer_discarded(gdirty_start):
    g = gdirty_start(dirty_config([ECHO], workers=1, threads=2, timeout=TIMEOUT), workers=1)
    slow, fast = next_id(), next_id()
    start = time.monotonic()
    with connect(g.socket_path) as s:
        # a call longer than dirty_timeout, then a quick one pipelined
        s.sendall(wire.encode_request(slow, ECHO, "sleep", (TIMEOUT + 1.0,)) +
                  wire.encode_request(fast, ECHO, "echo_value", ("after timeout",)))
        first = wire.recv_frame(s)
        elapsed = time.monotonic() - start
        # exactly gunicorn's arbiter answer: DirtyTimeoutError("Worker timeout", dirty_timeout)
        assert first == wire.encode_error(slow, DirtyTimeoutError("Worker timeout", TIMEOUT))
        assert TIMEOUT - 0.1 <= elapsed < TIMEOUT + 1.0, elapsed
        assert wire.recv_frame(s) == wire.encode_response(fast, "after timeout")

        # Keep calling on the same connection until well after the slow call
        # has finished: its late answer must never show up.
        i = 0
        while time.monotonic() - start < TIMEOUT + 2.0:
            rid = next_id()
            s.sendall(wire.encode_request(rid, ECHO, "echo_value", (i,)))
            assert wire.recv_frame(s) == wire.encode_response(rid, i)
            i += 1
        assert i > 0


@pytest.mark.compat
def test_timeout_through_client(gdirty_start):
    g = gdirty_start(dirty_config([ECHO], workers=1, threads=1, timeout=TIMEOUT), workers=1)
    c = g.client(timeout=30)
    try:
        with pytest.raises(DirtyTimeoutError) as ei:
            c.execute(ECHO, "sleep", TIMEOUT + 0.5)
        assert ei.value.message == "Worker timeout"
        assert ei.value.timeout == TIMEOUT
        assert c.execute(ECHO, "echo_value", "still fine") == "still fine"
    finally:
        c.close()


def test_streams_longer_than_timeout(gdirty_start):
    # gunicorn applies dirty_timeout to each message of a stream, not to the
    # whole stream: a long generation that keeps producing chunks succeeds;
    # a gap between chunks longer than dirty_timeout ends it with gunicorn's
    # timeout error after the chunks already produced.
    g = gdirty_start(dirty_config([ECHO], workers=1, threads=3, timeout=TIMEOUT), workers=1)
    results = {}

    def consume(action):
        c = g.client(timeout=30)
        try:
            results[action] = list(c.stream(ECHO, action, 6, TIMEOUT / 5))
        except Exception as e:  # reported by the assertion below
            results[action] = repr(e)
        finally:
            c.close()

    start = time.monotonic()
    threads = [threading.Thread(target=consume, args=(a,)) for a in ("slow_stream", "aslow_stream")]
    for t in threads:
        t.start()
    rid = next_id()
    with connect(g.socket_path) as s:
        s.sendall(wire.encode_request(rid, ECHO, "slow_stream", (3, TIMEOUT * 0.4)))
        assert wire.recv_frame(s) == wire.encode_chunk(rid, 0)
        s.sendall(wire.encode_request(rid + 1, ECHO, "slow_stream", (2, TIMEOUT * 1.5)))
        assert wire.recv_frame(s) == wire.encode_chunk(rid, 1)
        assert wire.recv_frame(s) == wire.encode_chunk(rid, 2)
        assert wire.recv_frame(s) == wire.encode_end(rid)
        assert wire.recv_frame(s) == wire.encode_error(rid + 1, DirtyTimeoutError("Worker timeout", TIMEOUT))
    for t in threads:
        t.join(timeout=30)
    assert results == {"slow_stream": list(range(6)), "aslow_stream": list(range(6))}
    assert time.monotonic() - start > TIMEOUT


@pytest.mark.compat
def test_worker_crash_costs_only_its_call_and_is_replaced_with_same_apps(gdirty_start):
    g = gdirty_start(dirty_config([ECHO, ONE], workers=2, threads=2), workers=2)
    before = g.status()["workers"]
    [victim] = [w for w in before if ONE in w["apps"]]
    [other] = [w for w in before if w is not victim]
    c = g.client()
    try:
        with pytest.raises(DirtyWorkerError) as ei:
            c.execute(ONE, "crash")
        assert ei.value.details.get("worker_id") == victim["pid"]

        def replaced():
            ws = g.status()["workers"]
            ok = (len(ws) == 2 and all(w["booted"] for w in ws)
                  and victim["pid"] not in {w["pid"] for w in ws})
            return ws if ok else None

        after = wait_until(replaced, 30, "the crashed worker to be replaced")
        [new] = [w for w in after if w["pid"] != other["pid"]]
        assert other in after or other["pid"] in {w["pid"] for w in after}
        assert new["apps"] == victim["apps"] == [ECHO, ONE]
        assert new["age"] > max(w["age"] for w in before)
        # the app limited to the dead worker is served by its replacement
        assert c.execute(ONE, "whoami") == {"app": "one", "pid": new["pid"]}
        assert c.execute(ECHO, "echo_value", "ok") == "ok"
    finally:
        c.close()


def test_max_queue_refuses_at_once_with_no_workers_error(gdirty_start, tmp_path):
    # 1 worker x 1 thread, --max-queue 1: while a call runs, one call may
    # wait; a further one is refused at once with the error gunicorn's
    # clients already handle for "no capacity" (DirtyNoWorkersAvailableError).
    g = gdirty_start(dirty_config([ECHO], workers=1, threads=1), workers=1,
                     args=["--max-queue", "1"])
    marker = tmp_path / "running"
    events = []  # completion order
    lock = threading.Lock()

    def run(name, action, *args):
        c = g.client(timeout=30)
        try:
            out = ("ok", c.execute(ECHO, action, *args))
        except Exception as e:
            out = ("error", e)
        finally:
            c.close()
        with lock:
            events.append((name, out))

    a = threading.Thread(target=run, args=("A", "marked_sleep", str(marker), 2.0))
    a.start()
    wait_until(marker.exists, 20, "call A to run in the worker")
    others = [threading.Thread(target=run, args=(n, "echo_value", n)) for n in ("B", "C")]
    for t in others:
        t.start()
    for t in [a] + others:
        t.join(timeout=30)
    assert len(events) == 3, events
    first_name, (kind, err) = events[0]
    # the refusal comes back first, while A still runs
    assert first_name in ("B", "C") and kind == "error", events
    assert isinstance(err, DirtyNoWorkersAvailableError), repr(err)
    assert err.app_path == ECHO
    assert err.message.startswith(f"No workers available for app: {ECHO}")
    rest = dict(events[1:])
    assert rest["A"][0] == "ok"
    [queued] = [n for n in ("B", "C") if n != first_name]
    assert rest[queued] == ("ok", queued)


def test_client_disconnect_closes_stream_generator(gdirty_start, tmp_path):
    g = gdirty_start(dirty_config([ECHO], workers=1, threads=1), workers=1)
    track = tmp_path / "fate"
    with connect(g.socket_path) as s:
        rid = next_id()
        s.sendall(wire.encode_request(rid, ECHO, "tracked_stream", (str(track), 60, 0.05)))
        assert wire.recv_frame(s) == wire.encode_chunk(rid, 0)
        assert wire.recv_frame(s) == wire.encode_chunk(rid, 1)
    # the client is gone; the generator must be closed early, not run on
    # (the file exists a moment before the app's write lands in it)
    wait_until(lambda: track.exists() and track.read_text(), 15,
               "the stream generator to end one way or another")
    assert track.read_text().startswith("closed after"), track.read_text()
