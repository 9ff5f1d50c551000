"""Cluster faults (issue 10): a node killed or stopped mid-call and
mid-stream, NATS killed and restarted under load, a node shutting down,
wrong credentials, dirty_timeout across nodes. Real processes everywhere
(see clustertools.py)."""

import os
import signal
import threading
import time

import pytest

import gversions

# Binary frames (protocol v1, gunicorn 25.1+); the cluster carries v1 only.
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from clustertools import (FAIL_BOUND, Nats, call_in_thread, client_call, cluster_status,
                          echo_ok, kill_node, node_args, start_node, stash_client, wait_hosted)
from conftest import ECHO, ONE, dirty_config, wait_until
from gunicorn.dirty.errors import DirtyError
from clustertools import launcher, nats, nats_bin, pair  # noqa: F401,F811 - fixtures


# ---------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------



@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_sigkill_of_b_mid_call(nats, pair, stream):
    a, b = pair
    if stream:
        t, box = call_in_thread(a, ECHO, "slow_stream", 1000, 0.05, stream=True)
        wait_until(lambda: len(box.get("chunks", [])) >= 3, 20, "chunks from node B")
    else:
        t, box = call_in_thread(a, ECHO, "sleep", 30)
        wait_until(lambda: any(n["pid"] == b.pid and n["serving"] >= 1 for n in cluster_status(nats)), 20,
            "node B to run the call", interval=0.1)
    killed_at = time.monotonic()
    kill_node(b)
    t.join(FAIL_BOUND + 5)
    assert not t.is_alive(), "the call hangs after node B died"
    assert type(box["error"]).__name__ == "DirtyWorkerError", box
    assert time.monotonic() - killed_at < FAIL_BOUND


def test_sigstop_of_b_is_a_bounded_failure(pair):
    a, b = pair
    os.kill(b.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(DirtyError) as ei:
            client_call(a, ECHO, "echo", 1)
        assert type(ei.value).__name__ == "DirtyWorkerError"
        assert time.monotonic() - t0 < FAIL_BOUND
        # Local apps are untouched.
        assert client_call(a, ONE, "whoami")["pid"] in a.worker_pids()
    finally:
        os.kill(b.pid, signal.SIGCONT)
    wait_until(lambda: echo_ok(a), 30, "remote calls to work again after SIGCONT", interval=0.2)


def test_nats_killed_and_restarted_under_load(nats, pair):
    a, b = pair
    stop = threading.Event()
    seen = {"ok": 0, "errors": set()}

    def load():
        while not stop.is_set():
            try:
                client_call(a, ECHO, "echo_value", 1, timeout=20)
                seen["ok"] += 1
            except DirtyError as e:
                seen["errors"].add(type(e).__name__)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: seen["ok"] > 10, 20, "remote calls before NATS goes away")
    stash_client(a).put("t", "before", 1)
    nats.kill()
    t0 = time.monotonic()
    with pytest.raises(DirtyError) as ei:  # remote calls fail fast
        client_call(a, ECHO, "echo_value", 1)
    assert type(ei.value).__name__ in ("DirtyNoWorkersAvailableError", "DirtyWorkerError")
    assert time.monotonic() - t0 < FAIL_BOUND
    assert client_call(a, ONE, "whoami")["pid"] in a.worker_pids()  # local apps keep working
    nats.start()
    before = seen["ok"]
    wait_until(lambda: seen["ok"] > before + 10, 40, "remote calls to recover after NATS is back")
    stop.set()
    for t in threads:
        t.join(30)
    assert seen["errors"] <= {"DirtyNoWorkersAvailableError", "DirtyWorkerError"}, seen
    # The stash is back too, with what was put before (JetStream on disk).
    sb = stash_client(b)
    assert sb.get("t", "before") == 1
    sb.put("t", "after", 2)
    assert stash_client(a).keys("t") == ["before", "after"]


# ---------------------------------------------------------------------------
# credentials
# ---------------------------------------------------------------------------

def test_wrong_credentials_are_refused(nats_bin, tmp_path, launcher, gdirty_spawn):
    n = Nats(nats_bin, tmp_path, auth=["--user", "gd", "--pass", "s3cret"]).start()
    try:
        bad = gdirty_spawn(dirty_config([ECHO], workers=1),
                           args=node_args(n, "--cluster-user", "gd"),
                           env={"GDIRTY_CLUSTER_PASSWORD": "wrong"})
        assert bad.proc.wait(60) == 2
        assert "Authorization Violation" in bad.stderr() or "authorization" in bad.stderr().lower()
        pw = tmp_path / "pw"
        pw.write_text("s3cret\n")
        good = start_node(launcher, n, [ECHO], 1, extra=["--cluster-user", "gd", "--cluster-password-file", str(pw)])
        assert client_call(good, ECHO, "echo_value", 7) == 7
    finally:
        for g in launcher.started:
            g.stop()
        n.stop()


def test_calls_a_stopped_node_never_started_go_to_another(nats, launcher):
    """Three nodes: B and C host EchoApp, A calls. With B stopped (SIGSTOP:
    still subscribed, never answering) every call still succeeds, on C."""
    b = start_node(launcher, nats, [ECHO], 1)
    c = start_node(launcher, nats, [ECHO], 1)
    a = start_node(launcher, nats, [ONE], 1)
    wait_hosted(nats, ECHO, nodes=2)
    wait_until(lambda: len({client_call(a, ECHO, "pid") for _ in range(8)}) == 2, 20,
               "A to reach both B and C")
    os.kill(b.pid, signal.SIGSTOP)
    try:
        c_pids = set(c.worker_pids())
        for _ in range(6):
            t0 = time.monotonic()
            assert client_call(a, ECHO, "pid") in c_pids
            assert time.monotonic() - t0 < FAIL_BOUND
    finally:
        os.kill(b.pid, signal.SIGCONT)


def test_dirty_timeout_of_the_calling_node_applies(nats, launcher):
    start_node(launcher, nats, [ECHO], 1)  # dirty_timeout 30 there
    a = launcher.start(dirty_config([ONE], workers=1, timeout=2), workers=1, args=node_args(nats))
    wait_hosted(nats, ECHO)
    t0 = time.monotonic()
    with pytest.raises(DirtyError) as ei:
        client_call(a, ECHO, "sleep", 4)
    assert type(ei.value).__name__ == "DirtyTimeoutError"
    assert 1.5 < time.monotonic() - t0 < 6
