"""One-command mode: ``gdirty --config c.py --python PY -- gunicorn ...``
starts the dirty pool and then gunicorn (its own dirty pool off, the socket
exported), forwards signals, exits with gunicorn's status and leaves no
process behind."""

import os
import re
import signal
import subprocess
import urllib.error

import pytest

from gversions import control_socket_args
from conftest import (
    APPS_DIR, PYTHON, GDirtyLauncher, Gunicorn, clean_env, descendants, dirty_config,
    pid_gone, wait_until,
)

LC = "lc_apps:LcApp"
LISTEN = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
CONFIG = dirty_config([LC], workers=2, threads=2) + "graceful_timeout = 5\n"


@pytest.fixture
def stack(gdirty_bin, tmp_path_factory, tmp_path):
    """Factory: start gdirty in one-command mode with ``gunicorn_args`` after
    ``--``; teardown stops whatever still runs and checks nothing is left."""
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-stack")
    started = []

    def start(gunicorn_args, wait=True, config=CONFIG):
        # gunicorn reads the same config file as gdirty (a copy: the launcher
        # writes its own in a fresh directory)
        cfg = tmp_path / f"gunicorn-{len(started)}.conf.py"
        cfg.write_text(config)
        cmd = ["--", *gunicorn_args(cfg)]
        g = launcher.spawn(config, args=cmd)
        started.append(g)
        if wait:
            g.wait_ready(2)
            m = wait_until(lambda: LISTEN.search(g.stderr()), 60,
                           lambda: f"gunicorn to listen; stderr:\n{g.stderr()[-3000:]}")
            g.http = Gunicorn(g.proc, "sync", g.stderr_path)
            g.http.base_url = m.group(1)

            def answers():
                try:
                    return g.http.get("/health", timeout=5)[1].get("ok")
                except (OSError, urllib.error.URLError):
                    return False

            wait_until(answers, 60, "gunicorn to answer /health", interval=0.05)
        return g

    yield start
    everything = set()
    for g in started:
        g.snapshot()
        everything |= g.seen_descendants | g.seen_worker_pids
    launcher.stop_all()
    wait_until(lambda: all(pid_gone(p) for p in everything), 20,
               lambda: f"every process to be gone: {[p for p in everything if not pid_gone(p)]}")


def gunicorn_cmd(app="wsgi_app:app", workers=2):
    return lambda cfg: [PYTHON, "-m", "gunicorn", "-c", str(cfg), "-b", "127.0.0.1:0",
                        *control_socket_args(f"{cfg}.ctl"),
                        "--chdir", str(APPS_DIR), "-k", "sync", "-w", str(workers), app]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def gunicorn_pids(g):
    """(master, [HTTP workers]) under gdirty."""
    # (gdirty's own command line holds the gunicorn command too, and so does
    # a child it forked before that child execs: match the start)
    kids = [p for p in descendants(g.pid) if cmdline(p).startswith(f"{PYTHON} -m gunicorn ")]
    masters = [p for p in kids if _ppid(p) == g.pid]
    assert len(masters) == 1, (kids, [cmdline(p) for p in kids])
    return masters[0], sorted(p for p in kids if _ppid(p) == masters[0])


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def http_worker_pids(g, n=2, timeout=60):
    def check():
        _, workers = gunicorn_pids(g)
        return workers if len(workers) == n else None

    return wait_until(check, timeout, f"{n} gunicorn HTTP workers")


def dirty_call(g, action="pid", *args):
    [out] = g.http.run([{"op": "execute", "app": LC, "action": action, "args": list(args)}])
    assert "result" in out, out
    return out["result"]


@pytest.mark.compat
def test_one_command_mode_serves_and_term_leaves_nothing(stack):
    g = stack(gunicorn_cmd())
    dirty = set(g.worker_pids())
    master, http = gunicorn_pids(g)[0], http_worker_pids(g)
    # HTTP -> gunicorn worker -> gdirty -> dirty worker
    assert {dirty_call(g) for _ in range(6)} <= dirty
    assert dirty_call(g, "echo_value", "through the stack") == "through the stack"
    # gunicorn's own dirty arbiter is off; the socket reached its workers
    assert "Spawned dirty arbiter" not in g.stderr()
    everything = set(descendants(g.pid)) | dirty | {master} | set(http)
    assert len(everything) >= 2 + 1 + 1 + 2  # dirty workers, fork server, master, HTTP workers

    os.kill(g.pid, signal.SIGTERM)
    rc = g.proc.wait(60)
    assert rc == 0, g.stderr()[-3000:]
    wait_until(lambda: all(pid_gone(p) for p in everything), 20,
               lambda: f"no process left: {[p for p in everything if not pid_gone(p)]}")
    # gunicorn stopped before the pool
    err = g.stderr()
    assert err.index("Shutting down: Master") < err.index("gdirty exiting")
    g.mark_stopped(rc)


def test_gunicorn_stopping_on_its_own_stops_gdirty_with_its_status(stack):
    g = stack(gunicorn_cmd())
    master, http = gunicorn_pids(g)
    everything = set(descendants(g.pid)) | set(g.worker_pids())
    os.kill(master, signal.SIGTERM)  # not through gdirty
    rc = g.proc.wait(60)
    assert rc == 0, g.stderr()[-3000:]
    wait_until(lambda: all(pid_gone(p) for p in everything), 20,
               lambda: f"no process left: {[p for p in everything if not pid_gone(p)]}")
    g.mark_stopped(rc)


def test_gunicorn_failing_gives_gdirty_its_exit_status(stack, tmp_path):
    # gunicorn alone, same command, an app that cannot be imported: its
    # status (one HTTP worker: with several, gunicorn 27's halt can itself
    # crash and exit 1 instead of 3)
    cmd = gunicorn_cmd(app="nosuch_lc_module:app", workers=1)
    cfg = tmp_path / "alone.conf.py"
    cfg.write_text(CONFIG)
    ref = subprocess.run(cmd(cfg), cwd=str(APPS_DIR),
                         env=clean_env({"GUNICORN_CMD_ARGS": "--dirty-workers 0"}),
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert ref.returncode == 3, ref.stderr[-2000:]  # gunicorn's WORKER_BOOT_ERROR
    g = stack(cmd, wait=False)
    rc = g.proc.wait(120)
    assert rc == ref.returncode, g.stderr()[-3000:]
    assert "gunicorn exited with status 3" in g.stderr()
    g.mark_stopped(0)  # (its exit status was checked here)


def test_exit_status_of_any_command_is_passed_on(stack):
    g = stack(lambda cfg: [PYTHON, "-c", "import sys; sys.exit(7)"], wait=False)
    assert g.proc.wait(60) == 7, g.stderr()[-3000:]
    g.mark_stopped(0)


def test_hup_reloads_gunicorn_and_the_dirty_pool_ttin_goes_to_gunicorn(stack):
    g = stack(gunicorn_cmd())
    old_dirty = set(g.worker_pids())
    master, old_http = gunicorn_pids(g)[0], set(http_worker_pids(g))

    os.kill(g.pid, signal.SIGHUP)

    def reloaded():
        st = g.status()
        new = {w["pid"] for w in st["workers"]}
        _, http = gunicorn_pids(g)
        return (len(new) == 2 and not (new & old_dirty) and all(w["booted"] for w in st["workers"])
                and len(http) == 2 and not (set(http) & old_http))

    wait_until(reloaded, 60, lambda: f"both pools replaced; stderr tail:\n{g.stderr()[-2000:]}")
    assert gunicorn_pids(g)[0] == master  # the master stays, as with HUP to gunicorn
    new_dirty = set(g.worker_pids())
    assert {dirty_call(g) for _ in range(6)} <= new_dirty

    # TTIN is gunicorn's (one more HTTP worker), not the dirty pool's
    os.kill(g.pid, signal.SIGTTIN)
    http_worker_pids(g, n=3)
    assert set(g.worker_pids()) == new_dirty
    assert dirty_call(g, "echo_value", 1) == 1
