"""A gunicorn master running gdirty in master mode, for the master-mode and
logging suites: started in its own session on a copy of examples/basic's
apps, output collected line by line, stopped with a check that no process
of the run is left."""

import json
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from proctools import session_members
from conftest import ROOT, clean_env, query_status, wait_until

EXAMPLE = ROOT / "examples" / "basic"
PYSHIM = ROOT / "pyshim"
DEADLINE = 60.0


class Master:
    """A gunicorn master started with master mode on, its output collected."""

    def __init__(self, python, version, workdir, gdirty_bin, extra_conf="", args=(), errorlog=None, port=None):
        """``args`` go on gunicorn's command line; ``errorlog`` is where the
        run's log lines are read from (default: its output); ``port`` (default:
        one the OS picks, read from gunicorn's INFO line) for runs that do not
        log at INFO."""
        self.version = version
        self.workdir = workdir
        for f in ("dirty_app.py", "wsgi.py"):
            (workdir / f).write_text((EXAMPLE / f).read_text())
        self.ctl = workdir / "ctl.sock"
        self.name = f"gdirty-mm-{os.getpid()}-{id(self)}"
        (workdir / "gunicorn.conf.py").write_text(
            f"{extra_conf}"
            "import gdirty_pyshim.master\n"
            f"bind = '127.0.0.1:{port or 0}'\n"
            "workers = 2\n"
            "wsgi_app = 'wsgi:app'\n"
            f"control_socket = {str(self.ctl)!r}\n"
            "dirty_apps = ['dirty_app:EchoApp', 'dirty_app:ReverseApp']\n"
            "dirty_workers = 2\n"
            "dirty_threads = 2\n"
            "dirty_timeout = 30\n"
            "graceful_timeout = 20\n")
        env = clean_env({"PYTHONPATH": str(PYSHIM), "GDIRTY_BINARY": str(gdirty_bin)})
        self.python = python
        self.proc = subprocess.Popen(
            [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--name", self.name, *args], cwd=workdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.errorlog = errorlog
        self._stdout = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = port or self.wait_line(r"Listening at: http://127\.0\.0\.1:(\d+)")

    def _read(self):
        for line in iter(self.proc.stdout.readline, ""):
            self._stdout.append(line)

    @property
    def lines(self):
        """The run's log lines: its output, or its errorlog file when set."""
        if self.errorlog is None:
            return list(self._stdout)
        try:
            return self.errorlog.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            return []

    def output(self):
        return "".join(self.lines)

    def find(self, pattern):
        return [m for line in list(self.lines) for m in [re.search(pattern, line)] if m]

    def wait_line(self, pattern, after=0, timeout=DEADLINE):
        def hit():
            found = [m for line in list(self.lines)[after:] for m in [re.search(pattern, line)] if m]
            return found[0].group(1) if found else None
        return wait_until(hit, timeout, lambda: f"a line matching {pattern!r} in:\n{self.output()}")

    def gdirty_pids(self):
        return [int(m.group(1)) for m in self.find(r"Spawned gdirty dirty arbiter \(pid: (\d+)\)")]

    def socket_path(self):
        self.wait_line(r"Spawned gdirty dirty arbiter \(pid: \d+\) at (\S+)")
        return self.find(r"Spawned gdirty dirty arbiter \(pid: \d+\) at (\S+)")[-1].group(1)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    def get_ok(self, path, expect, timeout=DEADLINE):
        return wait_until(lambda: self.get(path) == (200, expect), timeout,
                          lambda: f"GET {path} -> 200 {expect!r} (last: {self.get(path)!r})\n{self.output()}")

    def status(self):
        try:
            return query_status(self.socket_path(), timeout=5)
        except OSError:
            return None

    def booted_workers(self, n):
        def ok():
            st = self.status()
            if st and len(st["workers"]) == n and all(w["booted"] for w in st["workers"]):
                return st
            return None
        return wait_until(ok, DEADLINE, lambda: f"{n} booted gdirty workers (last: {self.status()})")

    def gunicornc(self, command, as_json=True):
        # The master opens its control socket after spawning its workers.
        wait_until(self.ctl.exists, DEADLINE, lambda: f"the control socket {self.ctl}\n{self.output()}")
        gunicornc = Path(self.python).parent / "gunicornc"
        cmd = [str(gunicornc), "-s", str(self.ctl), "-c", command] + (["-j"] if as_json else [])
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, f"{cmd}: {res.returncode}\n{res.stdout}\n{res.stderr}"
        return json.loads(res.stdout) if as_json else res.stdout

    def session(self):
        return session_members(self.proc.pid)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            pytest.fail(f"gunicorn did not stop on {sig!r}:\n{self.output()}")
        wait_until(lambda: not self.session(), 30,
                   lambda: f"no process left of the run (left: {self.session()})")
        return code
