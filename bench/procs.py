"""Starting, inspecting and stopping the arbiters under test.

Every wait is a condition poll with a deadline; every process started here
is stopped by ``stop()`` (SIGTERM, wait with a deadline, SIGKILL of the
process group and of every worker PID ever seen as a fallback).
"""

import os
import signal
import sys
import subprocess
import time

from gunicorn.dirty.client import DirtyClient
from gunicorn.dirty.protocol import BinaryProtocol

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)

# The process helpers the test suite uses (one copy for tests and bench).
sys.path.insert(0, os.path.join(ROOT, "tests"))
from proctools import pid_gone  # noqa: E402

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class BenchError(RuntimeError):
    pass


def wait_until(pred, timeout, what, interval=0.01):
    deadline = time.perf_counter() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.perf_counter() >= deadline:
            msg = what() if callable(what) else what
            raise BenchError(f"timed out after {timeout:.1f}s waiting for {msg}")
        time.sleep(interval)


def query_status(socket_path, timeout=5.0):
    import socket as _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(socket_path)
        s.sendall(BinaryProtocol.encode_status(1))
        msg = BinaryProtocol.read_message(s)
    finally:
        s.close()
    if msg.get("type") != "response":
        raise BenchError(f"STATUS answered {msg!r}")
    return msg["result"]


# --- /proc readings --------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid):
    """utime + stime of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_ctx_switches(pid):
    """(voluntary, involuntary) context switches of all ``pid``'s threads:
    a voluntary one is a thread blocking (on epoll, a futex, a read), so
    each is one sleep and one wake-up."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass  # the thread ended
    return vol, invol


def proc_mem_kib(pid):
    """{'VmRSS', 'VmHWM', 'RssAnon', 'RssFile': kib} of ``pid``."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def reset_peak_rss(pid):
    """Reset VmHWM to the current RSS (Linux >= 4.0: clear_refs '5')."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- arbiters ----------------------------------------------------------------

class Arbiter:
    """Common part: a process that serves gunicorn's dirty protocol."""

    kind = "?"

    def __init__(self, name, config_path, workdir, env):
        self.name = name
        self.config_path = config_path
        self.workdir = workdir
        self.env = env
        self.proc = None
        self.socket_path = None
        self.arbiter_pid = None
        self.seen_worker_pids = set()
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        self.launched_at = None
        self.ready_at = None

    # -- to implement
    def command(self):
        raise NotImplementedError

    def _popen(self):
        cmd = self.command()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.launched_at = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd, cwd=BENCH_DIR, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True)

    def stdout_lines(self):
        try:
            with open(self.stdout_path, errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def stderr_tail(self, n=4000):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-n:]
        except FileNotFoundError:
            return ""

    def _stdout_value(self, key):
        for line in self.stdout_lines():
            if line.startswith(key + "="):
                return line.split("=", 1)[1]
        return None

    def launch(self):
        self._popen()

    def status(self):
        st = query_status(self.socket_path)
        self.seen_worker_pids.update(w["pid"] for w in st["workers"])
        return st

    def worker_pids(self):
        return [w["pid"] for w in self.status()["workers"]]

    def client(self, timeout=30.0):
        return DirtyClient(self.socket_path, timeout=timeout)

    def wait_ready(self, nworkers, app, timeout=START_TIMEOUT):
        """Socket line printed, STATUS lists ``nworkers`` workers and every
        one of them has answered a call (``app``'s ``pid`` action)."""
        def socket_line():
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}) "
                                 f"before listening; stderr:\n{self.stderr_tail()}")
            return self._stdout_value("GUNICORN_DIRTY_SOCKET")

        self.socket_path = wait_until(socket_line, timeout,
                                      f"{self.name}'s socket line")
        deadline = time.perf_counter() + timeout
        self.wait_pool(nworkers, app, max(1.0, deadline - time.perf_counter()))
        self.arbiter_pid = self.status()["arbiter_pid"]
        if self.ready_at is None:
            self.ready_at = time.perf_counter()
        return self

    def wait_pool(self, nworkers, app, timeout=START_TIMEOUT):
        """Wait until ``nworkers`` workers are listed and each answers."""
        deadline = time.perf_counter() + timeout
        last = {}

        def listed():
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}); "
                                 f"stderr:\n{self.stderr_tail()}")
            try:
                st = self.status()
            except OSError:
                return None
            last["st"] = st
            return st if len(st["workers"]) == nworkers else None

        st = wait_until(listed, timeout,
                        lambda: f"{nworkers} workers in {self.name}'s STATUS "
                                f"(last {last.get('st')!r})", interval=0.02)
        want = {w["pid"] for w in st["workers"]}
        answered = set()
        c = self.client(timeout=max(1.0, deadline - time.perf_counter()))
        try:
            while not want <= answered:
                if time.perf_counter() >= deadline:
                    raise BenchError(f"{self.name}: workers {sorted(want - answered)} "
                                     f"never answered a call")
                try:
                    answered.add(c.execute(app, "pid"))
                except Exception:  # noqa: BLE001 - booting; poll again
                    time.sleep(0.01)
                # A worker may have been replaced meanwhile.
                if not want <= answered and len(answered) > 4 * nworkers:
                    want = set(self.worker_pids())
                    answered &= want
        finally:
            c.close()
        return want

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait with a deadline, SIGKILL fallback; then make sure
        every worker PID ever seen is gone. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.socket_path:
            try:
                self.status()  # a last look at the worker PIDs
            except Exception:  # noqa: BLE001
                pass
        killed = False
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        # Workers outlive a killed parent only briefly; give them a deadline.
        pids = sorted(self.seen_worker_pids)
        deadline = time.perf_counter() + 15.0
        while time.perf_counter() < deadline and not all(pid_gone(p) for p in pids):
            time.sleep(0.05)
        for p in pids:
            if not pid_gone(p):
                killed = True
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.killed = killed
        return self.proc.returncode


class GDirty(Arbiter):
    kind = "gdirty"

    def __init__(self, name, binary, python, config_path, workdir, env, extra_args=()):
        super().__init__(name, config_path, workdir, env)
        self.binary = binary
        self.python = python
        self.extra_args = list(extra_args)

    def command(self):
        return [self.binary, "--config", self.config_path, "--python", self.python,
                "--no-pidfile", *self.extra_args]


class GunicornDirty(Arbiter):
    """gunicorn's own DirtyArbiter, run by bench/gunicorn_dirty.py."""

    kind = "gunicorn"

    def __init__(self, name, python, config_path, workdir, env):
        super().__init__(name, config_path, workdir, env)
        self.python = python
        self.tmpdir = None

    def command(self):
        return [self.python, os.path.join(BENCH_DIR, "gunicorn_dirty.py"),
                self.config_path]

    def wait_ready(self, nworkers, app, timeout=START_TIMEOUT):
        super().wait_ready(nworkers, app, timeout)
        self.tmpdir = self._stdout_value("GUNICORN_DIRTY_TMPDIR")
        return self

    def worker_sockets(self):
        """The workers' own sockets (the direct path): TMPDIR/worker-<age>.sock."""
        st = self.status()
        return [os.path.join(self.tmpdir, f"worker-{w['age']}.sock")
                for w in sorted(st["workers"], key=lambda w: w["age"])]
