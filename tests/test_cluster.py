"""Several gdirty nodes on one NATS (issue 10): real processes everywhere.

One nats-server (bin/nats-server, built from the Go module pinned in go.mod)
that the suite starts, kills and restarts; gdirty nodes on 127.0.0.1, each
with its own socket; real gunicorn masters in front of the calling node.

* node B hosts ``dapps:EchoApp``; node A hosts only ``dapps:OneWorkerApp``,
  so every EchoApp call made on A crosses to B through NATS.
"""

import os
import time
import urllib.request
from pathlib import Path

import pytest

import gversions

# Binary frames (protocol v1, gunicorn 25.1+); the cluster carries v1 only.
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from clustertools import (LIVENESS, call_in_thread, client_call, cluster_status, echo_ok,
                          free_port, raises,
                          raw_answer, start_node, stash_client, wait_hosted)
from conftest import (ECHO, ONE, GunicornLauncher, connect, dirty_config, next_id,
                      recv_frame, wait_until)
from gunicorn.dirty.errors import DirtyError
from gunicorn.dirty.protocol import BinaryProtocol
from clustertools import launcher, nats, nats_bin, pair  # noqa: F401,F811 - fixtures

# ---------------------------------------------------------------------------
# remote apps
# ---------------------------------------------------------------------------

def test_view_on_a_calls_app_only_on_b(pair, tmp_path_factory):
    a, b = pair
    web = GunicornLauncher(tmp_path_factory)
    try:
        g = web.start("sync", a)
        b_pids = set(b.worker_pids())
        out = g.run([
            {"op": "execute", "app": ECHO, "action": "pid"},
            {"op": "execute", "app": ECHO, "action": "echo", "args": [1, "x"], "kwargs": {"k": [1.5, None]}},
            {"op": "execute", "app": ECHO, "action": "fail", "args": ["boom"]},
            {"op": "stream", "app": ECHO, "action": "squares", "args": [50]},
            {"op": "stream", "app": ECHO, "action": "count_then_fail", "args": [3]},
            {"op": "execute", "app": ONE, "action": "whoami"},
            {"op": "execute", "app": "nobody:Hosts", "action": "x"},
        ])
        assert out[0]["result"] in b_pids
        assert out[1]["result"] == {"args": [1, "x"], "kwargs": {"k": [1.5, None]}}
        assert out[2]["error"]["type"] == "DirtyAppError" and "boom" in out[2]["error"]["message"]
        assert out[3] == {"chunks": [i * i for i in range(50)], "error": None}
        assert out[4]["chunks"] == [0, 1, 2] and out[4]["error"]["type"] == "DirtyAppError", out[4]
        assert "result" in out[5], out[5:]
        assert out[5]["result"]["pid"] in a.worker_pids()
        assert out[6]["error"]["type"] == "DirtyNoWorkersAvailableError"
    finally:
        web.stop_all()


def test_answers_are_byte_identical_to_the_hosting_node(pair):
    a, b = pair
    blob = bytes(range(256)) * (6 * 4096 + 7)  # ~6 MiB: several NATS messages each way
    for req in ({"app_path": ECHO, "action": "echo_value", "args": (blob,)},
                {"app_path": ECHO, "action": "echo", "args": (1, 2.5, "é", None, [b"x"])},
                {"app_path": ECHO, "action": "squares", "args": (20,)},
                {"app_path": ECHO, "action": "fail", "args": ("bad",)},
                {"app_path": ECHO, "action": "no_such_action"}):
        got, want = raw_answer(a.socket_path, req), raw_answer(b.socket_path, req)
        if req["action"] == "fail":  # the traceback names the worker's frames only
            assert [f[:16] for f in got][:1] and got[0][3] == want[0][3] == 0x03
            continue
        assert got == want, req["action"]


def test_no_node_hosts_the_app_fails_at_once(pair):
    a, _ = pair
    start = time.monotonic()
    with pytest.raises(DirtyError) as ei:
        client_call(a, "nobody:Hosts", "x")
    assert type(ei.value).__name__ == "DirtyNoWorkersAvailableError"
    assert time.monotonic() - start < 1.0


def test_status_lists_every_node(nats, pair):
    a, b = pair
    nodes = cluster_status(nats)
    pids = {n["pid"]: n for n in nodes}
    assert set(pids) == {a.pid, b.pid}
    assert pids[b.pid]["apps"] == [ECHO] and pids[b.pid]["workers"] == 2
    assert pids[a.pid]["apps"] == [ONE]


def test_client_gone_cancels_the_remote_stream(pair, tmp_path):
    a, _ = pair
    marker = tmp_path / "stream.txt"
    rid = next_id()
    with connect(a.socket_path) as s:
        s.sendall(BinaryProtocol.encode_request(rid, ECHO, "tracked_stream", args=(str(marker), 200, 0.05)))
        recv_frame(s)  # the first chunk came across: the stream runs on B
    wait_until(lambda: marker.exists() and marker.read_text().startswith("closed after"), 20,
               "the generator on node B to be closed after the client left")



# ---------------------------------------------------------------------------
# stash on JetStream
# ---------------------------------------------------------------------------



def test_stash_shared_and_survives_restart(nats, launcher):
    b = start_node(launcher, nats, [ECHO], 1, extra=["--stash", "cluster"])
    a = start_node(launcher, nats, [ONE], 1, extra=["--stash", "cluster"])
    sa = stash_client(a)
    sa.put("sessions", "u1", {"n": 1, "blob": b"\x00\xff"})
    sa.put("sessions", 2, [1.5, None])
    sa.put("sessions", 2.0, "two")  # Python key identity: replaces 2
    sb = stash_client(b)
    assert sb.get("sessions", "u1") == {"n": 1, "blob": b"\x00\xff"}
    assert sb.keys("sessions") == ["u1", 2]
    assert sb.get("sessions", 2) == "two"
    assert sb.keys("sessions", "u*") == ["u1"]
    assert type(raises(lambda: sb.info("nope"))).__name__ == "StashTableNotFoundError"
    assert sb.get("sessions", "missing", "dflt") == "dflt"
    a.stop()
    a.check_stopped_cleanly()
    a2 = start_node(launcher, nats, [ONE], 1, extra=["--stash", "cluster"])
    s2 = stash_client(a2)
    assert s2.keys("sessions") == ["u1", 2]
    assert s2.get("sessions", "u1") == {"n": 1, "blob": b"\x00\xff"} and s2.get("sessions", 2) == "two"


# ---------------------------------------------------------------------------
# --cluster-listen: a gdirty runs the NATS server for a small deployment
# ---------------------------------------------------------------------------

def test_cluster_listen_runs_nats_for_the_others(launcher, tmp_path):
    port = free_port()
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    auth = ["--cluster-token-file", str(token), "--cluster-liveness", LIVENESS]
    b_args = ["--cluster-listen", f"127.0.0.1:{port}", "--cluster-data-dir", str(tmp_path / "js"),
              "--stash", "cluster", *auth]
    b = launcher.start(dirty_config([ECHO], workers=1), workers=1, args=b_args)
    a = launcher.start(dirty_config([ONE], workers=1), workers=1,
                       args=["--cluster", f"nats://127.0.0.1:{port}", "--stash", "cluster", *auth])
    wait_until(lambda: echo_ok(a), 30, "a remote call through B's nats-server", interval=0.2)
    stash_client(a).put("t", "k", b"v")
    assert stash_client(b).get("t", "k") == b"v"
    b.snapshot()
    assert not any(_is_nats(p) for p in b.seen_descendants), "nats-server runs inside B, not as a child"
    assert _listener_pids(port) == {b.pid}, "B's own process serves the NATS port"

    # The server goes and comes back with B; A rejoins by itself and the
    # stash is still in B's data directory.
    b.stop()
    b.check_stopped_cleanly()
    assert _listener_pids(port) == set()
    b2 = launcher.start(dirty_config([ECHO], workers=1), workers=1, args=b_args)
    wait_until(lambda: echo_ok(a), 30, "A back in touch through the restarted B", interval=0.2)
    assert stash_client(a).get("t", "k") == b"v"


def _is_nats(pid):
    try:
        return Path(f"/proc/{pid}/exe").resolve().name == "nats-server"
    except OSError:
        return False


def _listener_pids(port):
    """The pids holding a TCP socket listening on 127.0.0.1:port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                pids.add(int(pid))
        except OSError:
            continue
    return pids


def test_spill_sends_a_busy_apps_call_to_a_free_node(nats, launcher, tmp_path):
    b = start_node(launcher, nats, [ECHO], 1)
    a = start_node(launcher, nats, [ECHO], 1, extra=["--spill"])
    wait_hosted(nats, ECHO, nodes=2)
    assert client_call(a, ECHO, "pid") in a.worker_pids()  # free: stays local
    marker = tmp_path / "busy"
    t, box = call_in_thread(a, ECHO, "marked_sleep", str(marker), 3)
    wait_until(marker.exists, 20, "A's only worker to be busy")
    assert client_call(a, ECHO, "pid") in b.worker_pids()  # spilled to B
    t.join(30)
    assert box["result"]["pid"] in a.worker_pids()


def test_pure_front_with_no_workers(nats, launcher, tmp_path_factory):
    """dirty_workers = 0: a front that hosts nothing; gunicorn in front of it."""
    b = start_node(launcher, nats, [ECHO], 1)
    front = start_node(launcher, nats, [ECHO], 0)
    wait_hosted(nats, ECHO)
    assert front.status()["workers"] == []
    web = GunicornLauncher(tmp_path_factory)
    try:
        g = web.start("gthread", front)
        out = g.run([{"op": "execute", "app": ECHO, "action": "pid"},
                     {"op": "stream", "app": ECHO, "action": "squares", "args": [5]}])
        assert out[0]["result"] in b.worker_pids()
        assert out[1] == {"chunks": [0, 1, 4, 9, 16], "error": None}
    finally:
        web.stop_all()


def test_remote_call_metrics_only_with_metrics_bind(nats, launcher):
    b = start_node(launcher, nats, [ECHO], 1)
    port = free_port()
    a = start_node(launcher, nats, [ONE], 1, extra=["--metrics-bind", f"127.0.0.1:{port}"])
    wait_hosted(nats, ECHO)
    client_call(a, ECHO, "pid")
    with pytest.raises(DirtyError):
        client_call(a, "nobody:Hosts", "x")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    node_b = next(n["name"] for n in cluster_status(nats) if n["pid"] == b.pid)
    assert f'gdirty_remote_calls_total{{node="{node_b}",outcome="ok"}} 1' in text
    assert 'gdirty_remote_calls_total{node="",outcome="no_workers"} 1' in text
    assert "gdirty_remote_call_seconds_bucket" in text


@pytest.mark.parametrize("args, message", [
    (["--stash", "cluster"], "--stash cluster and --spill need --cluster"),
    (["--stash", "redis", "--cluster", "nats://127.0.0.1:1"], "--stash must be local or cluster"),
    (["--cluster", "nats://127.0.0.1:1", "--cluster-name", "a.b"], "--cluster-name \"a.b\""),
    (["--cluster", "nats://127.0.0.1:1", "--cluster-user", "u"], "user and password go together"),
    (["--cluster", "nats://127.0.0.1:1"], "connect to NATS at nats://127.0.0.1:1"),
], ids=["stash-without-cluster", "bad-stash", "bad-name", "user-without-password", "nothing-listening"])
def test_cluster_settings_errors(gdirty_spawn, args, message):
    g = gdirty_spawn(dirty_config([ECHO], workers=1), args=args)
    assert g.proc.wait(60) == 2, g.stderr()
    assert message in g.stderr()


