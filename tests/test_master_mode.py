"""Master mode: a plain ``gunicorn -c gunicorn.conf.py`` whose config has
``import gdirty_pyshim.master`` runs gdirty as its dirty arbiter.

Real gunicorn masters, real gdirty, real workers, real ``gunicornc``:
requests served through the dirty pool; SIGKILL of gdirty -> the master
starts a new one and requests succeed again; HUP reloads gdirty's workers;
TERM leaves no process; ``gunicornc show dirty`` / ``show all`` list
gdirty's workers and ``dirty add/remove`` scale it; an unknown gunicorn
release falls back to gunicorn's own arbiter with one error line.

Releases: the interpreter running pytest (the module is in the
compatibility subset, so ``make test`` runs it on every release of
COMPAT_VERSIONS), plus every venv in ``GDIRTY_MASTER_VENVS``
(colon-separated).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import wait_until
from master_util import DEADLINE, Master
from proctools import pid_gone

pytestmark = pytest.mark.compat


def _pythons():
    found = [sys.executable]
    for venv in filter(None, os.environ.get("GDIRTY_MASTER_VENVS", "").split(":")):
        py = Path(venv) / "bin" / "python"
        if not os.access(py, os.X_OK):
            raise RuntimeError(f"GDIRTY_MASTER_VENVS: no python in {venv}")
        found.append(str(py))
    return found


def _version(python):
    return subprocess.run([python, "-c", "import gunicorn; print(gunicorn.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


RELEASES = {}
for _py in _pythons():
    RELEASES.setdefault(_version(_py), _py)


@pytest.fixture(params=sorted(RELEASES), ids=lambda v: f"gunicorn-{v}")
def release(request):
    return request.param, RELEASES[request.param]


def has_ctl(version):
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (25, 1)


@pytest.fixture
def master(gdirty_bin, tmp_path, release):
    started = []

    def start(extra_conf=""):
        version, python = release
        m = Master(python, version, tmp_path, gdirty_bin, extra_conf)
        started.append(m)
        return m

    yield start
    for m in started:
        if m.proc.poll() is None:
            m.stop()


def test_serves_through_gdirty_and_term_leaves_nothing(master, release):
    m = master()
    m.wait_line(r"Spawned gdirty dirty arbiter \(pid: (\d+)\)")
    pids = m.gdirty_pids()
    assert len(pids) == 1, m.output()
    with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0].endswith(b"gdirty")
    # gunicorn's own arbiter never ran.
    assert not m.find(r"Spawned dirty arbiter \(pid"), m.output()
    m.get_ok("/echo?msg=hi", "hi")
    assert m.find(r"\[%d\] \[INFO\] Dirty arbiter listening on" % pids[0]), m.output()
    m.get_ok("/reverse?text=abc", "cba")
    assert m.get("/count?n=3") == (200, [0, 1, 2])
    st = m.booted_workers(2)
    assert st["arbiter_pid"] == pids[0]
    workers = [w["pid"] for w in st["workers"]]
    # gdirty wrote the PID file of gunicorn's orphan convention that this
    # master (named on its command line) checks.
    pidfile = Path(tempfile.gettempdir()) / f"gunicorn-dirty-{m.name}.pid"
    assert pidfile.read_text().strip() == str(pids[0])
    assert m.stop() == 0
    for pid in [pids[0], *workers]:
        assert pid_gone(pid)
    # gdirty removed its socket, the master the directory it made for it.
    assert not Path(m.socket_path()).parent.exists()
    assert not pidfile.exists()


def test_sigkill_of_gdirty_master_starts_a_new_one(master):
    m = master()
    m.get_ok("/echo?msg=before", "before")
    old = m.gdirty_pids()[0]
    old_workers = [w["pid"] for w in m.booted_workers(2)["workers"]]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: len(m.gdirty_pids()) >= 2, DEADLINE,
               lambda: f"the master to start a new gdirty:\n{m.output()}")
    new = m.gdirty_pids()[-1]
    assert new != old
    # The same socket path: HTTP workers keep working without a restart.
    m.get_ok("/echo?msg=after", "after")
    m.get_ok("/reverse?text=xyz", "zyx")
    st = m.booted_workers(2)
    assert st["arbiter_pid"] == new
    # The old gdirty's workers exit with it (their link closed).
    wait_until(lambda: all(pid_gone(p) for p in old_workers), 30, "the old workers to exit")
    assert m.stop() == 0


def test_hup_reloads_gdirty_workers(master):
    m = master()
    m.get_ok("/echo?msg=x", "x")
    before = {w["pid"] for w in m.booted_workers(2)["workers"]}
    gdirty = m.gdirty_pids()[-1]
    mark = len(m.lines)
    os.kill(m.proc.pid, signal.SIGHUP)
    m.wait_line(r"\[(\d+)\] \[INFO\] SIGHUP: reloading dirty workers", after=mark)

    def replaced():
        st = m.status()
        pids = {w["pid"] for w in (st or {}).get("workers", [])}
        return len(pids) == 2 and not (pids & before) and all(w["booted"] for w in st["workers"])
    wait_until(replaced, DEADLINE, lambda: f"every gdirty worker replaced (before {before}, now {m.status()})")
    assert m.gdirty_pids()[-1] == gdirty  # reloaded, not restarted
    m.get_ok("/echo?msg=y", "y")
    assert m.stop() == 0


def test_usr1_is_forwarded(master):
    m = master()
    m.booted_workers(2)
    mark = len(m.lines)
    os.kill(m.proc.pid, signal.SIGUSR1)
    m.wait_line(r"\[(\d+)\] \[INFO\] SIGUSR1: reopening log files", after=mark)
    assert m.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["INT", "QUIT"])
def test_quick_stops_leave_nothing(master, sig):
    m = master()
    m.get_ok("/echo?msg=x", "x")
    gdirty = m.gdirty_pids()[-1]
    workers = [w["pid"] for w in m.booted_workers(2)["workers"]]
    assert m.stop(sig) == 0
    assert all(pid_gone(p) for p in [gdirty, *workers])


def test_gunicornc_lists_and_scales_gdirty(master, release):
    version, _ = release
    if not has_ctl(version):
        pytest.skip(f"gunicorn {version} has no control socket (gunicornc came in 25.1)")
    m = master()
    m.get_ok("/echo?msg=x", "x")
    st = m.booted_workers(2)
    gdirty = m.gdirty_pids()[-1]
    pids = {w["pid"] for w in st["workers"]}

    dirty = m.gunicornc("show dirty")
    assert dirty["enabled"] is True and dirty["pid"] == gdirty
    assert {w["pid"] for w in dirty["workers"]} == pids
    by_app = {a["import_path"]: a for a in dirty["apps"]}
    assert set(by_app) == {"dirty_app:EchoApp", "dirty_app:ReverseApp"}
    assert set(by_app["dirty_app:EchoApp"]["worker_pids"]) == pids
    assert by_app["dirty_app:ReverseApp"]["current_workers"] == 1
    assert all(w["last_heartbeat"] is not None for w in dirty["workers"])

    text = m.gunicornc("show dirty", as_json=False)
    assert f"Dirty arbiter PID: {gdirty}" in text
    for pid in pids:
        assert re.search(rf"^{pid}\s", text, re.M), text

    everything = m.gunicornc("show all")
    assert everything["dirty_arbiter"]["pid"] == gdirty
    assert {w["pid"] for w in everything["dirty_workers"]} == pids
    assert everything["dirty_worker_count"] == 2

    added = m.gunicornc("dirty add 1")
    assert added["success"] is True, added
    wait_until(lambda: len(m.gunicornc("show dirty")["workers"]) == 3, DEADLINE, "a third gdirty worker")
    removed = m.gunicornc("dirty remove 1")
    assert removed["success"] is True, removed
    wait_until(lambda: len(m.gunicornc("show dirty")["workers"]) == 2, DEADLINE, "back to two workers")
    m.get_ok("/reverse?text=ab", "ba")
    assert m.stop() == 0


@pytest.mark.parametrize("prelude, reason", [
    ("import gunicorn\ngunicorn.__version__ = '99.0.0'\n",
     "gunicorn 99.0.0 is not a release gdirty's master mode knows"),
    ("import os\nos.environ['GDIRTY_BINARY'] = '/nonexistent/gdirty'\n",
     "GDIRTY_BINARY=/nonexistent/gdirty is not an executable file"),
], ids=["unknown-release", "no-binary"])
def test_unusable_master_mode_falls_back_to_gunicorns_arbiter(master, prelude, reason):
    m = master(prelude)
    errors = wait_until(lambda: m.find(r"\[ERROR\] gdirty master mode disabled: (.*)"), DEADLINE,
                        lambda: f"the fallback error line:\n{m.output()}")
    assert len(errors) == 1
    assert reason in errors[0].group(1)
    assert "using gunicorn's own dirty arbiter" in errors[0].group(1)
    m.wait_line(r"Spawned dirty arbiter \(pid: (\d+)\)")
    assert not m.gdirty_pids()
    m.get_ok("/echo?msg=own", "own")
    assert m.stop() == 0
