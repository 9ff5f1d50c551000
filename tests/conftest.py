"""Fixtures for the gdirty interop suite: real processes everywhere.

* ``gdirty_bin``: builds ``bin/gdirty`` once per session (``go build``; no Go
  is a hard failure, never a skip). ``GDIRTY_TEST_BINARY=/path/to/gdirty``
  tests that binary instead of building one.
* ``gdirty_start`` (per test) / ``GDirtyLauncher`` (for module- and
  session-scoped instances): start gdirty on a config written to a temp dir,
  read its ``GUNICORN_DIRTY_SOCKET=`` line, wait (STATUS polls) until every
  worker is booted, and at teardown stop it with SIGTERM and check that it
  exited 0 and that every worker PID it ever reported is gone.
* ``gunicorn_start`` / ``GunicornLauncher``: a real gunicorn master
  (``python -m gunicorn``, sync / gthread / asgi workers) with its own dirty
  pool off (``--dirty-workers 0``) and ``GUNICORN_DIRTY_SOCKET`` pointing at
  gdirty, bound to 127.0.0.1 on a port the OS picks.

Every wait is a condition poll with a deadline.
"""

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import proctools
import wire
from gversions import control_socket_args
from proctools import descendants, pid_gone  # noqa: F401  (re-exported)

from gunicorn.dirty.client import DirtyClient

try:
    from gunicorn.dirty.protocol import BinaryProtocol
except ImportError:  # gunicorn 25.0.x: JSON protocol v0 only (see the preflight)
    BinaryProtocol = None

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = ROOT / "tests"
APPS_DIR = TESTS_DIR / "apps"
GDIRTY_BIN = ROOT / "bin" / "gdirty"
PYTHON = sys.executable  # the venv interpreter running pytest: has gunicorn

# The test apps' helper modules (dvalues) are importable from the tests too.
if str(APPS_DIR) not in sys.path:
    sys.path.insert(0, str(APPS_DIR))

# Environment variables that would change how gdirty / gunicorn behave.
_SCRUB_ENV = ("GUNICORN_CMD_ARGS", "GUNICORN_DIRTY_SOCKET", "GDIRTY_SOCKET",
              "GDIRTY_PYTHON", "GDIRTY_LOG_LEVEL", "GDIRTY_LOG_FORMAT",
              "GDIRTY_MAX_QUEUE", "GDIRTY_CONFIG", "GDIRTY_STASH_MAX_BYTES",
              "GDIRTY_SPAWN", "GDIRTY_PARENT_PID", "GDIRTY_METRICS_BIND",
              "GDIRTY_MAX_CONNECTIONS", "PYTHONPATH",
              "GDIRTY_QUIET_SOCKET_LINE", "GDIRTY_BINARY", "GDIRTY_START_WAIT",
              # cluster (tests/test_cluster.py passes its own)
              "GDIRTY_CLUSTER", "GDIRTY_CLUSTER_NAME", "GDIRTY_CLUSTER_LISTEN", "GDIRTY_STASH",
              "GDIRTY_SPILL", "GDIRTY_CLUSTER_TOKEN", "GDIRTY_CLUSTER_PASSWORD",
              "GDIRTY_CLUSTER_USER", "GDIRTY_CLUSTER_CREDS", "GDIRTY_CLUSTER_TOKEN_FILE",
              "GDIRTY_CLUSTER_PASSWORD_FILE")


# The pyshim modules gdirty runs with --python: each must import with the
# gunicorn under test, or nothing in the suite can work.
PYSHIM_MODULES = ("gdirty_pyshim.config", "gdirty_pyshim.worker",
                  "gdirty_pyshim.forkserver", "gdirty_pyshim.hooks")


def pytest_sessionstart(session):
    """Preflight: stop at once, saying why, when gdirty's Python side cannot
    import with the installed gunicorn (instead of every test timing out
    while workers fail to boot)."""
    import gunicorn
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    res = subprocess.run([PYTHON, "-c", code, *PYSHIM_MODULES], capture_output=True,
                         text=True, timeout=120, cwd=str(ROOT),
                         env=clean_env({"PYTHONPATH": str(ROOT / "pyshim")}))
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        pytest.exit(f"gdirty's pyshim cannot be imported with gunicorn "
                    f"{gunicorn.__version__} ({PYTHON}): {last}\n{res.stderr}",
                    returncode=3)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "compat: the compatibility subset run on every release of "
                   "the gunicorn matrix (`make test-compat`)")


START_TIMEOUT = 60.0   # gdirty: socket line + all workers booted
STOP_TIMEOUT = 30.0    # SIGTERM -> exit


# ---------------------------------------------------------------------------
# Generic process helpers
# ---------------------------------------------------------------------------

def wait_until(predicate, timeout, message, interval=0.02):
    """Poll ``predicate`` until it returns a truthy value (returned) or the
    deadline passes (test failure naming ``message``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            msg = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout:.1f}s waiting for: {msg}")
        time.sleep(interval)


def stop_process(proc, timeout=STOP_TIMEOUT, sig=signal.SIGTERM):
    """proctools.stop_process with the fixtures' default deadline."""
    return proctools.stop_process(proc, timeout, sig)


_ids = itertools.count(1)


def next_id():
    return next(_ids)


def recv_frame(sock):
    """Read one raw frame (header + payload bytes) from ``sock``, in the
    protocol of the installed gunicorn."""
    return wire.recv_frame(sock)


def connect(socket_path, timeout=30.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(socket_path)
    return s


def query_status(socket_path, timeout=10.0):
    """gunicorn's STATUS message (0x11) -> the decoded result dict."""
    if BinaryProtocol is None:
        # gunicorn 25.0.x has no binary client: gdirty's own sends STATUS.
        binary = os.environ.get("GDIRTY_TEST_BINARY") or str(GDIRTY_BIN)
        res = subprocess.run([binary, "status", "--socket", socket_path, "--json"],
                             capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise OSError(f"gdirty status: {res.stderr.strip()}")
        return json.loads(res.stdout)
    rid = next_id()
    with connect(socket_path, timeout) as s:
        s.sendall(BinaryProtocol.encode_status(rid))
        msg = BinaryProtocol.read_message(s)
    assert msg["type"] == "response", msg
    assert msg["id"] == rid, msg
    return msg["result"]


# ---------------------------------------------------------------------------
# gdirty
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def gdirty_bin():
    prebuilt = os.environ.get("GDIRTY_TEST_BINARY")
    if prebuilt:  # e.g. a binary built from a known-good tree; never a skip
        path = Path(prebuilt).resolve()
        if not os.access(path, os.X_OK):
            pytest.fail(f"GDIRTY_TEST_BINARY={prebuilt} is not an executable file")
        return path
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go toolchain ('go') is required to build bin/gdirty "
                    "for the interop suite, and it is not on PATH")
    GDIRTY_BIN.parent.mkdir(exist_ok=True)
    # As `make build` (static, no cgo): the lean gdirty, and next to it
    # gdirty-cluster, which it execs when a cluster setting is given.
    for tags, out in ((["-tags", "lean,urfave_cli_no_docs"], GDIRTY_BIN),
                      (["-tags", "urfave_cli_no_docs"], GDIRTY_BIN.with_name("gdirty-cluster"))):
        res = subprocess.run([go, "build", *tags, "-o", str(out), "./cmd/gdirty"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, CGO_ENABLED="0"))
        if res.returncode != 0:
            pytest.fail(f"go build {' '.join(tags)} ./cmd/gdirty failed ({res.returncode}):\n"
                        f"{res.stdout}\n{res.stderr}")
    return GDIRTY_BIN


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    env.update(extra or {})
    return env


class GDirty:
    """A running gdirty process."""

    def __init__(self, proc, workdir, config_path, stdout_path, stderr_path):
        self.proc = proc
        self.pid = proc.pid
        self.workdir = workdir
        self.config_path = config_path
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.socket_path = None
        self.seen_worker_pids = set()
        self.seen_descendants = set()
        self.stopped = False
        self.returncode = None
        self.killed = False

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def status(self):
        st = query_status(self.socket_path)
        self.seen_worker_pids.update(w["pid"] for w in st["workers"])
        return st

    def worker_pids(self):
        return [w["pid"] for w in self.status()["workers"]]

    def client(self, timeout=30.0):
        return DirtyClient(self.socket_path, timeout=timeout)

    def _socket_line(self):
        for line in self.stdout().splitlines():
            if line.startswith("GUNICORN_DIRTY_SOCKET="):
                return line.split("=", 1)[1]
        return None

    def wait_ready(self, workers, timeout=START_TIMEOUT):
        def socket_line():
            if self.proc.poll() is not None:
                pytest.fail(f"gdirty exited with {self.proc.returncode} before "
                            f"printing its socket line; stderr:\n{self.stderr()}")
            return self._socket_line()

        self.socket_path = wait_until(
            socket_line, timeout,
            lambda: f"gdirty's GUNICORN_DIRTY_SOCKET= line; stderr:\n{self.stderr()}")
        assert os.path.isabs(self.socket_path), self.socket_path

        last = {}

        def all_booted():
            if self.proc.poll() is not None:
                pytest.fail(f"gdirty exited with {self.proc.returncode} while its "
                            f"workers booted; stderr:\n{self.stderr()}")
            try:
                st = self.status()
            except OSError:
                return None
            last["status"] = st
            ws = st["workers"]
            return len(ws) == workers and all(w["booted"] for w in ws)

        wait_until(all_booted, timeout,
                   lambda: f"{workers} booted workers, last STATUS "
                           f"{last.get('status')!r}; stderr:\n{self.stderr()}",
                   interval=0.05)
        return self

    def snapshot(self):
        """Remember the worker PIDs and every process gdirty started
        (workers, fork server, hook host): all must be gone after it exits."""
        if self.proc.poll() is None and self.socket_path:
            try:
                self.status()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.seen_descendants.update(descendants(self.pid))

    def mark_stopped(self, returncode):
        """For tests that stopped gdirty themselves (teardown still checks)."""
        self.stopped, self.returncode, self.killed = True, returncode, False

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait, SIGKILL fallback; returns the exit code."""
        if self.stopped:
            return self.returncode
        self.snapshot()
        rc, killed = stop_process(self.proc, timeout)
        self.stopped = True
        self.returncode = rc
        self.killed = killed
        return rc

    def check_stopped_cleanly(self):
        assert not self.killed, (
            f"gdirty did not exit within {STOP_TIMEOUT}s of SIGTERM (killed); "
            f"stderr tail:\n{self.stderr()[-3000:]}")
        assert self.returncode == 0, (
            f"gdirty exited {self.returncode} on SIGTERM (want 0); "
            f"stderr tail:\n{self.stderr()[-3000:]}")
        pids = sorted(self.seen_worker_pids | self.seen_descendants)
        wait_until(lambda: all(pid_gone(p) for p in pids), 15.0,
                   lambda: "gdirty's worker processes to be gone after it exited: "
                           f"still running {[p for p in pids if not pid_gone(p)]}")


class GDirtyLauncher:
    """Starts gdirty processes and stops (and checks) all of them at the end."""

    def __init__(self, binary, tmp_path_factory, name="gdirty"):
        self.binary = binary
        self.tmp_path_factory = tmp_path_factory
        self.name = name
        self.started = []

    def spawn(self, config_text, args=(), env=None, cwd=APPS_DIR, config_name="gunicorn.conf.py"):
        """Start gdirty without waiting for anything. ``cwd=None`` runs it in
        the temp dir holding the config (apps then need chdir/pythonpath)."""
        workdir = self.tmp_path_factory.mktemp(self.name)
        if cwd is None:
            cwd = workdir
        config_path = workdir / config_name
        config_path.write_text(config_text)
        stdout_path = workdir / "gdirty.stdout"
        stderr_path = workdir / "gdirty.stderr"
        cmd = [str(self.binary), "--config", str(config_path), "--python", PYTHON, *args]
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=str(cwd), env=clean_env(env),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        g = GDirty(proc, workdir, config_path, stdout_path, stderr_path)
        self.started.append(g)
        return g

    def start(self, config_text, workers, args=(), env=None, cwd=APPS_DIR):
        """Start gdirty and wait until ``workers`` workers are booted."""
        return self.spawn(config_text, args=args, env=env, cwd=cwd).wait_ready(workers)

    def stop_all(self):
        """Stop everything started; then assert every one stopped cleanly."""
        for g in self.started:
            if not g.stopped:
                g.stop()
        for g in self.started:
            if g.socket_path is not None:  # it ran: a clean SIGTERM exit is due
                g.check_stopped_cleanly()


@pytest.fixture
def gdirty_start(gdirty_bin, tmp_path_factory):
    """Per-test factory: ``gdirty_start(config_text, workers=N, args=..., env=...)``."""
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory)
    yield launcher.start
    launcher.stop_all()


@pytest.fixture
def gdirty_spawn(gdirty_bin, tmp_path_factory):
    """Per-test: start gdirty without waiting (for start-up failure tests).
    Processes still running at teardown are stopped."""
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory)
    yield launcher.spawn
    for g in launcher.started:
        stop_process(g.proc)


def dirty_config(apps, workers, threads=1, timeout=30, extra=""):
    lines = [
        "# written by the gdirty interop suite",
        f"dirty_apps = {list(apps)!r}",
        f"dirty_workers = {workers}",
        f"dirty_threads = {threads}",
        f"dirty_timeout = {timeout}",
        "dirty_graceful_timeout = 10",
        "loglevel = 'info'",
    ]
    return "\n".join(lines) + "\n" + extra


ECHO = "dapps:EchoApp"
ONE = "dapps:OneWorkerApp"
SPEC = "dapps:SpecLimitedApp"
OVERRIDDEN = "dapps:OverriddenApp"

# The instance most tests share: 3 workers; EchoApp on all of them,
# OneWorkerApp on 1 (class attribute), SpecLimitedApp on 2 (":2" spec),
# OverriddenApp on 1 (":1" spec beats its class attribute workers = 3).
MAIN_WORKERS = 3
MAIN_THREADS = 2
MAIN_CONFIG = dirty_config(
    [ECHO, ONE, f"{SPEC}:2", f"{OVERRIDDEN}:1"],
    workers=MAIN_WORKERS, threads=MAIN_THREADS)


@pytest.fixture(scope="session")
def main_gdirty(gdirty_bin, tmp_path_factory):
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-main")
    g = launcher.start(MAIN_CONFIG, workers=MAIN_WORKERS)
    yield g
    launcher.stop_all()


# ---------------------------------------------------------------------------
# gunicorn
# ---------------------------------------------------------------------------

class Gunicorn:
    def __init__(self, proc, kind, stderr_path):
        self.proc = proc
        self.kind = kind
        self.stderr_path = stderr_path
        self.base_url = None

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def get(self, path, timeout=30.0):
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as r:
            return r.status, json.loads(r.read())

    def run(self, ops, timeout=60.0):
        """POST /run: perform ``ops`` inside a gunicorn worker; returns the
        list of outcomes."""
        req = urllib.request.Request(
            self.base_url + "/run", data=json.dumps(ops).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                assert r.status == 200
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            pytest.fail(f"gunicorn ({self.kind}) answered {e.code}: {e.read()[:2000]!r}; "
                        f"gunicorn stderr tail:\n{self.stderr()[-3000:]}")

    def run1(self, op, timeout=60.0):
        [outcome] = self.run([op], timeout=timeout)
        return outcome


WORKER_CLASS_ARGS = {
    "sync": ["-k", "sync", "-w", "2", "wsgi_app:app"],
    "gthread": ["-k", "gthread", "-w", "2", "--threads", "4", "wsgi_app:app"],
    "asgi": ["-k", "asgi", "-w", "2", "asgi_app:app"],
}

_LISTEN_RE = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


class GunicornLauncher:
    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.started = []

    def start(self, kind, gdirty, timeout=START_TIMEOUT):
        """Start a gunicorn master with ``kind`` workers, its dirty pool off,
        talking to ``gdirty``; wait until HTTP answers."""
        workdir = self.tmp_path_factory.mktemp(f"gunicorn-{kind}")
        stderr_path = workdir / "gunicorn.stderr"
        cmd = [PYTHON, "-m", "gunicorn",
               # the same config file gdirty reads, as in a real deployment
               "-c", str(gdirty.config_path),
               "--dirty-workers", "0",
               "-b", "127.0.0.1:0",
               "--chdir", str(APPS_DIR),
               "--graceful-timeout", "5",
               "--timeout", "60",
               "--log-level", "info",
               *control_socket_args(workdir / "gunicorn.ctl"),
               *WORKER_CLASS_ARGS[kind]]
        env = clean_env({"GUNICORN_DIRTY_SOCKET": gdirty.socket_path})
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=str(APPS_DIR), env=env,
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        g = Gunicorn(proc, kind, stderr_path)
        self.started.append(g)

        def listening():
            if proc.poll() is not None:
                pytest.fail(f"gunicorn ({kind}) exited with {proc.returncode}; "
                            f"stderr:\n{g.stderr()}")
            m = _LISTEN_RE.search(g.stderr())
            return m.group(1) if m else None

        g.base_url = wait_until(listening, timeout,
                                lambda: f"gunicorn ({kind}) to listen; stderr:\n{g.stderr()}")

        def answers():
            if proc.poll() is not None:
                pytest.fail(f"gunicorn ({kind}) exited with {proc.returncode}; "
                            f"stderr:\n{g.stderr()}")
            try:
                status, body = g.get("/health", timeout=5)
            except (OSError, urllib.error.URLError):
                return False
            return status == 200 and body.get("ok") is True

        wait_until(answers, timeout,
                   lambda: f"gunicorn ({kind}) to answer /health; stderr:\n{g.stderr()}",
                   interval=0.05)
        return g

    def stop_all(self):
        for g in self.started:
            stop_process(g.proc, timeout=STOP_TIMEOUT)


@pytest.fixture
def gunicorn_start(tmp_path_factory):
    """Per-test factory: ``gunicorn_start(kind, gdirty)``."""
    launcher = GunicornLauncher(tmp_path_factory)
    yield launcher.start
    launcher.stop_all()
