"""Helpers and fixtures of the cluster suites (test_cluster.py,
test_cluster_faults.py): the nats-server they start, kill and restart
(bin/nats-server, built from the Go module pinned in go.mod), gdirty nodes
on 127.0.0.1 with their own sockets, cluster status and calls."""


import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (ECHO, ONE, ROOT, GDirtyLauncher, clean_env,
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


def echo_ok(g):
    try:
        return client_call(g, ECHO, "echo_value", "v", timeout=10) == "v"
    except DirtyError:
        return False




def stash_client(g):
    return StashClient(g.socket_path, timeout=30)


def raises(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    return None


