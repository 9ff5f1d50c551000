"""Several gdirty nodes on one NATS (issue 10): real processes everywhere.

One nats-server (bin/nats-server, built from the Go module pinned in go.mod)
that the suite starts, kills and restarts; gdirty nodes on 127.0.0.1, each
with its own socket; real gunicorn masters in front of the calling node.

* node B hosts ``dapps:EchoApp``; node A hosts only ``dapps:OneWorkerApp``,
  so every EchoApp call made on A crosses to B through NATS.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import (ECHO, ONE, ROOT, GDirtyLauncher, GunicornLauncher, clean_env,
                      connect, dirty_config, next_id, recv_frame, stop_process, wait_until)
from gunicorn.dirty.errors import DirtyError
from gunicorn.dirty.protocol import BinaryProtocol
from gunicorn.dirty.stash import StashClient

NATS_BIN = ROOT / "bin" / "nats-server"
LIVENESS = "1s"       # --cluster-liveness of every node: failures surface fast
FAIL_BOUND = 6.0      # a dead or hung node must be reported within this


# ---------------------------------------------------------------------------
# nats-server
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def nats_bin():
    """bin/nats-server from the module in go.mod (`make nats-server`)."""
    res = subprocess.run(["go", "build", "-o", str(NATS_BIN), "github.com/nats-io/nats-server/v2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        pytest.fail(f"building nats-server failed:\n{res.stdout}\n{res.stderr}")
    return NATS_BIN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nats:
    """A nats-server with JetStream on 127.0.0.1; restart keeps port and store."""

    def __init__(self, binary, workdir, auth=()):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.auth = list(auth)
        self.proc = None
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self):
        log = open(self.workdir / "nats.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", str(self.workdir / "store"), *self.auth],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()

        def up():
            if self.proc.poll() is not None:
                pytest.fail(f"nats-server exited {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    return s.recv(4).startswith(b"INFO")
            except OSError:
                return False

        wait_until(up, 30, "nats-server to accept connections")
        return self

    def log(self):
        return (self.workdir / "nats.log").read_text(errors="replace")[-3000:]

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            stop_process(self.proc, timeout=15)


@pytest.fixture
def nats(nats_bin, tmp_path):
    n = Nats(nats_bin, tmp_path).start()
    yield n
    n.stop()


# ---------------------------------------------------------------------------
# nodes
# ---------------------------------------------------------------------------

def node_args(nats, *extra):
    return ["--cluster", nats.url, "--cluster-liveness", LIVENESS, *extra]


def start_node(launcher, nats, apps, workers, extra=(), env=None, timeout=30):
    cfg = dirty_config(apps, workers=workers, timeout=timeout)
    return launcher.start(cfg, workers=workers, args=node_args(nats, *extra), env=env)


def cluster_status(nats, name="gdirty", extra=()):
    res = subprocess.run([str(ROOT / "bin" / "gdirty"), "status", "--cluster", nats.url,
                          "--cluster-name", name, "--json", "--wait", "500ms", *extra],
                         capture_output=True, text=True, timeout=30, env=clean_env())
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout) or []


def wait_hosted(nats, app, nodes=1):
    """Until `nodes` nodes announce app (they subscribe once workers boot)."""
    wait_until(lambda: sum(app in (n.get("apps") or []) for n in cluster_status(nats)) >= nodes,
               30, f"{nodes} node(s) to host {app}", interval=0.2)


def client_call(g, app, action, *args, timeout=30.0):
    with g.client(timeout=timeout) as c:
        return c.execute(app, action, *args)


def raw_answer(socket_path, payload_dict):
    """Send one REQUEST frame, return the raw answer frames (bytes, ids zeroed)."""
    rid = next_id()
    frames = []
    with connect(socket_path) as s:
        s.sendall(BinaryProtocol.encode_request(rid, payload_dict["app_path"], payload_dict["action"],
                                                args=payload_dict.get("args", ()),
                                                kwargs=payload_dict.get("kwargs", {})))
        while True:
            f = recv_frame(s)
            frames.append(f[:8] + b"\0" * 8 + f[16:])
            if f[3] in (0x02, 0x03, 0x05):  # RESPONSE, ERROR, END
                return frames


@pytest.fixture
def launcher(gdirty_bin, tmp_path_factory):
    lau = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-node")
    yield lau
    for g in lau.started:  # nodes a test killed are marked stopped already
        if not g.stopped:
            os.kill(g.pid, signal.SIGCONT)
    lau.stop_all()


@pytest.fixture
def pair(nats, launcher):
    """B hosts EchoApp (2 workers); A hosts OneWorkerApp only; one stash."""
    b = start_node(launcher, nats, [ECHO], 2, extra=["--stash", "cluster"])
    a = start_node(launcher, nats, [ONE], 1, extra=["--stash", "cluster"])
    wait_hosted(nats, ECHO)
    return a, b


def kill_node(g, sig=signal.SIGKILL):
    g.snapshot()
    os.kill(g.pid, sig)
    g.proc.wait(10)
    g.mark_stopped(g.proc.returncode)
    g.returncode = 0  # killed on purpose: teardown checks its workers are gone


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
# failures
# ---------------------------------------------------------------------------

def call_in_thread(g, app, action, *args, stream=False):
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            with g.client(timeout=60) as c:
                if stream:
                    box["chunks"] = []
                    for ch in c.stream(app, action, *args):
                        box["chunks"].append(ch)
                else:
                    box["result"] = c.execute(app, action, *args)
        except Exception as e:  # noqa: BLE001 - the error is the outcome
            box["error"] = e
        box["took"] = time.monotonic() - t0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


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
    wait_until(lambda: _echo_ok(a), 30, "remote calls to work again after SIGCONT", interval=0.2)


def _echo_ok(g):
    try:
        return client_call(g, ECHO, "echo_value", "v", timeout=10) == "v"
    except DirtyError:
        return False


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
# stash on JetStream
# ---------------------------------------------------------------------------

def stash_client(g):
    return StashClient(g.socket_path, timeout=30)


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
    assert type(_raises(lambda: sb.info("nope"))).__name__ == "StashTableNotFoundError"
    assert sb.get("sessions", "missing", "dflt") == "dflt"
    a.stop()
    a.check_stopped_cleanly()
    a2 = start_node(launcher, nats, [ONE], 1, extra=["--stash", "cluster"])
    s2 = stash_client(a2)
    assert s2.keys("sessions") == ["u1", 2]
    assert s2.get("sessions", "u1") == {"n": 1, "blob": b"\x00\xff"} and s2.get("sessions", 2) == "two"


def _raises(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    return None


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


# ---------------------------------------------------------------------------
# --cluster-listen: a gdirty runs the NATS server for a small deployment
# ---------------------------------------------------------------------------

def test_cluster_listen_runs_nats_for_the_others(nats_bin, launcher, tmp_path):
    port = free_port()
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    auth = ["--cluster-token-file", str(token), "--cluster-liveness", LIVENESS]
    b = launcher.start(dirty_config([ECHO], workers=1), workers=1,
                       args=["--cluster-listen", f"127.0.0.1:{port}", "--cluster-data-dir", str(tmp_path / "js"),
                             "--stash", "cluster", *auth])
    a = launcher.start(dirty_config([ONE], workers=1), workers=1,
                       args=["--cluster", f"nats://127.0.0.1:{port}", "--stash", "cluster", *auth])
    wait_until(lambda: _echo_ok(a), 30, "a remote call through B's nats-server", interval=0.2)
    stash_client(a).put("t", "k", b"v")
    assert stash_client(b).get("t", "k") == b"v"
    b.snapshot()
    assert any(_is_nats(p) for p in b.seen_descendants), "B runs nats-server as its child"


def _is_nats(pid):
    try:
        return Path(f"/proc/{pid}/exe").resolve().name == "nats-server"
    except OSError:
        return False


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
