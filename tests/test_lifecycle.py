"""Worker and arbiter lifecycle with real processes: crashes, heartbeats,
call timeouts, signals (HUP, TTIN/TTOU, USR1, USR2, TERM, QUIT), MANAGE,
boot failures, gdirty's own death, its parent's death, process settings and
the errorlog.

Every wait is a condition poll with a deadline; every process a test stops
(SIGSTOP) is continued before teardown, every process it starts is stopped.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import threading
import time
import uuid

import pytest

from proctools import session_members
from conftest import (
    APPS_DIR, PYTHON, GDirtyLauncher, connect, descendants, dirty_config, next_id,
    pid_gone, recv_frame, wait_until,
)
from gunicorn.dirty.errors import (
    DirtyNoWorkersAvailableError, DirtyTimeoutError, DirtyWorkerError,
)
import wire
from gversions import requires_v1

try:
    from gunicorn.dirty.protocol import BinaryProtocol as BP
except ImportError:  # gunicorn 25.0.x: no MANAGE message (tests of it need v1)
    BP = None

APP = "lc_apps:LcApp"
ONE = "lc_apps:LcOne"
SPEC = "lc_apps:LcSpec"
BAD = "lc_apps:LcBadInit"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@pytest.fixture
def stopped_pids(gdirty_start):
    """PIDs a test SIGSTOPs; SIGCONT'd before gdirty is stopped (this
    fixture depends on gdirty_start, so its teardown runs first)."""
    pids = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.fixture
def launcher(gdirty_bin, tmp_path_factory):
    """For tests that need more control than gdirty_start (no wait for
    booted workers, gdirty killed on purpose). Whatever still runs at the
    end is stopped; gdirty instances the test did not remove from
    ``launcher.started`` must have stopped cleanly."""
    lc = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-lc")
    yield lc
    lc.stop_all()


def wait_socket(g, timeout=60):
    def line():
        if g.proc.poll() is not None:
            pytest.fail(f"gdirty exited {g.proc.returncode}; stderr:\n{g.stderr()}")
        return g._socket_line()

    g.socket_path = wait_until(line, timeout, lambda: f"the socket line; stderr:\n{g.stderr()}")
    return g.socket_path


def wait_status(g, pred, timeout, what):
    last = {}

    def check():
        if g.proc.poll() is not None:
            pytest.fail(f"gdirty exited {g.proc.returncode} while waiting for {what}; "
                        f"stderr:\n{g.stderr()[-3000:]}")
        try:
            st = g.status()
        except OSError:
            return None
        last["st"] = st
        return st if pred(st) else None

    return wait_until(check, timeout,
                      lambda: f"{what}; last STATUS {last.get('st')!r}; "
                              f"stderr tail:\n{g.stderr()[-2000:]}", interval=0.05)


def booted(n):
    return lambda st: len(st["workers"]) == n and all(w["booted"] for w in st["workers"])


def pids_of(st):
    return {w["pid"] for w in st["workers"]}


def call(g, app, action, *args, timeout=30):
    c = g.client(timeout=timeout)
    try:
        return c.execute(app, action, *args)
    finally:
        c.close()


def request(sock, app, action, *args):
    rid = next_id()
    sock.sendall(wire.encode_request(rid, app, action, args))
    return rid


def manage(g, op, count):
    rid = next_id()
    with connect(g.socket_path) as s:
        s.sendall(BP.encode_manage(rid, op, count))
        msg = BP.read_message(s)
    assert msg["id"] == rid and msg["type"] == "response", msg
    return msg["result"]


def log_has(g, text, timeout=20):
    return wait_until(lambda: text in g.stderr(), timeout,
                      lambda: f"{text!r} in gdirty's log; tail:\n{g.stderr()[-2000:]}")


def descendants_by_session(sid):
    """Live processes of the session gdirty leads (it is started with
    start_new_session): its fork server, workers and hook host stay in it
    even when reparented."""
    return [pid for pid in session_members(sid) if pid != sid]


def apps_count(st):
    counts = {}
    for w in st["workers"]:
        for a in w["apps"]:
            counts[a] = counts.get(a, 0) + 1
    return counts


# ---------------------------------------------------------------------------
# a worker killed with calls in flight
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spawn", ["fork", "exec"])
@pytest.mark.compat
def test_kill9_worker_each_held_call_gets_one_worker_error(gdirty_start, tmp_path, spawn):
    g = gdirty_start(dirty_config([APP, ONE], workers=2, threads=4), workers=2,
                     args=["--spawn", spawn])
    before = {w["pid"]: w for w in g.status()["workers"]}
    [victim] = [p for p, w in before.items() if ONE in w["apps"]]
    markers = [tmp_path / f"held-{i}" for i in range(3)]
    # calls on one connection run one after another (as in gunicorn), so
    # each held call has its own connection; all land on the only worker
    # hosting ONE
    socks = [connect(g.socket_path) for _ in markers]
    try:
        rids = [request(s, ONE, "hold", str(m), 60) for s, m in zip(socks, markers)]
        wait_until(lambda: all(m.exists() for m in markers), 20, "the 3 calls to run in the worker")
        assert {int(m.read_text()) for m in markers} == {victim}

        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        for s, rid in zip(socks, rids):
            msg = wire.read_message(s)
            assert msg["id"] == wire.wire_id(rid), msg
            assert msg["type"] == "error", msg
            err = msg["error"]
            assert err["error_type"] == "DirtyWorkerError", err
            assert err["details"].get("worker_id") == victim, err
        assert time.monotonic() - t0 < 10, "the errors came late"
        # exactly one answer each: the next frame on each connection is the
        # answer to a new call (answers come in request order)
        for s in socks:
            rid = request(s, APP, "echo_value", "next")
            assert recv_frame(s) == wire.encode_response(rid, "next")
    finally:
        for s in socks:
            s.close()

    after = wait_status(g, lambda st: booted(2)(st) and victim not in pids_of(st), 30,
                        "the killed worker to be replaced")
    [new] = [w for w in after["workers"] if w["pid"] not in before]
    assert new["apps"] == before[victim]["apps"] == [APP, ONE]
    assert call(g, ONE, "pid") == new["pid"]
    wait_until(lambda: pid_gone(victim), 10, "the killed worker to be reaped")


# ---------------------------------------------------------------------------
# heartbeat and call timeouts
# ---------------------------------------------------------------------------

def test_sigstopped_worker_is_aborted_and_replaced(gdirty_start, stopped_pids):
    g = gdirty_start(dirty_config([APP, ONE], workers=2, timeout=2), workers=2)
    before = {w["pid"]: w for w in g.status()["workers"]}
    [victim] = [p for p, w in before.items() if ONE in w["apps"]]
    stopped_pids.append(victim)
    t0 = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    after = wait_status(g, lambda st: booted(2)(st) and victim not in pids_of(st), 30,
                        "the stopped worker to be replaced")
    assert time.monotonic() - t0 >= 1.5  # not before dirty_timeout (2 s)
    wait_until(lambda: pid_gone(victim), 15, "the stopped worker to be killed")
    [new] = [w for w in after["workers"] if w["pid"] not in before]
    assert new["apps"] == before[victim]["apps"]
    assert f"DIRTY WORKER TIMEOUT (pid:{victim})" in g.stderr()
    assert call(g, ONE, "pid") == new["pid"]


def test_call_past_timeout_then_fast_calls_get_their_own_answers(gdirty_start):
    # one worker, one thread: the fast call can only run once the stuck
    # worker has been replaced
    timeout = 2
    g = gdirty_start(dirty_config([APP], workers=1, threads=1, timeout=timeout), workers=1)
    [old] = g.worker_pids()
    c = g.client(timeout=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(DirtyTimeoutError) as ei:
            c.execute(APP, "sleep", timeout + 1.5)
        assert timeout - 0.2 <= time.monotonic() - t0 < timeout + 5
        assert ei.value.to_dict() == {"error_type": "DirtyTimeoutError", "message": "Worker timeout",
                                      "details": {"timeout": timeout}}
        assert c.execute(APP, "echo_value", "fast") == "fast"
        # keep calling on this connection until well past the moment the
        # slow call would have answered: each call gets its own answer
        i = 0
        while time.monotonic() - t0 < timeout + 3:
            assert c.execute(APP, "echo_value", ["n", i]) == ["n", i]
            i += 1
        assert i > 0
    finally:
        c.close()
    # the stuck worker was recycled (replacement spawned, old one retired)
    st = wait_status(g, lambda st: booted(1)(st) and old not in pids_of(st), 20,
                     "the stuck worker to be replaced")
    assert st["workers"][0]["apps"] == [APP]
    wait_until(lambda: pid_gone(old), 20, "the stuck worker to exit")


def test_timeout_zero_disables_call_and_heartbeat_timeouts(gdirty_start, stopped_pids):
    g = gdirty_start(dirty_config([APP], workers=2, threads=1, timeout=0), workers=2)
    pids = g.worker_pids()
    stopped_pids.append(pids[1])
    os.kill(pids[1], signal.SIGSTOP)
    t0 = time.monotonic()
    # no timeout: a call several heartbeat-monitor periods (1 s) long
    # succeeds, and the worker silent meanwhile is left alone
    result = call(g, APP, "sleep", 3.5, timeout=60)
    assert result["pid"] == pids[0] and result["slept"] >= 3.4
    assert time.monotonic() - t0 >= 3.4
    assert not pid_gone(pids[1])
    assert set(g.worker_pids()) == set(pids)
    assert "DIRTY WORKER TIMEOUT" not in g.stderr()
    os.kill(pids[1], signal.SIGCONT)
    seen = {call(g, APP, "pid") for _ in range(4)}
    assert seen == set(pids)


# ---------------------------------------------------------------------------
# HUP: reload
# ---------------------------------------------------------------------------

CALLER = textwrap.dedent('''
    import json, os, sys, time
    from gunicorn.dirty.client import DirtyClient

    sock, stop, progress, out, idx = sys.argv[1:]
    apps = ["lc_apps:LcApp", "lc_apps:LcOne", "lc_apps:LcSpec"]
    ok, fails, n = 0, [], 0
    c = DirtyClient(sock, timeout=60)
    while not os.path.exists(stop):
        app = apps[n % len(apps)]
        try:
            if n % 4 == 3:  # some calls last a while: in flight at retirement
                got = c.execute(app, "sleep", 0.15)
                good = isinstance(got, dict) and "pid" in got
            else:
                got = c.execute(app, "echo_value", [idx, n])
                good = got == [idx, n]
            if good:
                ok += 1
            else:
                fails.append(f"{app}: wrong answer {got!r}")
        except Exception as e:
            fails.append(f"{app}: {type(e).__name__}: {e}")
            c.close()
            c = DirtyClient(sock, timeout=60)
        n += 1
        with open(progress + ".tmp", "w") as f:
            f.write(str(n))
        os.replace(progress + ".tmp", progress)
    c.close()
    with open(out, "w") as f:
        json.dump({"ok": ok, "fails": fails, "n": n}, f)
''')


def test_hup_under_steady_calls_replaces_every_worker_without_failures(gdirty_start, tmp_path):
    g = gdirty_start(dirty_config([APP, ONE, f"{SPEC}:2"], workers=3, threads=2), workers=3)
    before = g.status()
    old = pids_of(before)
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    stop = tmp_path / "stop"
    n_callers = 4
    progress = [tmp_path / f"progress-{i}" for i in range(n_callers)]
    outs = [tmp_path / f"out-{i}.json" for i in range(n_callers)]
    env = dict(os.environ, PYTHONPATH=str(APPS_DIR))
    procs = [subprocess.Popen([PYTHON, str(script), g.socket_path, str(stop), str(progress[i]),
                               str(outs[i]), str(i)], env=env, cwd=str(APPS_DIR))
             for i in range(n_callers)]

    def counts():
        try:
            return [int(p.read_text()) for p in progress]
        except (OSError, ValueError):
            return None

    def advanced(base, by):
        def check():
            for p in procs:
                if p.poll() is not None:
                    pytest.fail(f"caller exited early with {p.returncode}")
            now = counts()
            return now if now and all(a - b >= by for a, b in zip(now, base)) else None
        return check

    try:
        base = wait_until(advanced([0] * n_callers, 10), 60, "callers to get going")
        os.kill(g.pid, signal.SIGHUP)
        after = wait_status(g, lambda st: booted(3)(st) and not (pids_of(st) & old), 60,
                            "every worker to be replaced after HUP")
        wait_until(lambda: all(pid_gone(p) for p in old), 30, "the old workers to exit")
        # Calls keep flowing after the reload (a caller may have had no call
        # finish during the reload itself, under load: not asserted; that no
        # call failed across it is, below).
        reloaded = wait_until(counts, 10, "the progress counters")
        wait_until(advanced(reloaded, 10), 60, "callers to keep going after the reload")
    finally:
        stop.write_text("stop")
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    results = [json.loads(o.read_text()) for o in outs]
    assert all(r["fails"] == [] for r in results), [r["fails"][:5] for r in results]
    assert all(r["ok"] > 20 for r in results), results
    # same allocation of apps, new processes
    assert sorted(w["apps"] for w in after["workers"]) == sorted(w["apps"] for w in before["workers"])
    assert after["worker_count"] == 3


def test_hup_picks_up_changed_app_code(gdirty_start, tmp_path):
    mod = f"lc_reload_{uuid.uuid4().hex[:8]}"
    libdir = tmp_path / "lib"
    libdir.mkdir()
    src = libdir / f"{mod}.py"
    body = textwrap.dedent('''
        from gunicorn.dirty import DirtyApp

        class ReloadApp(DirtyApp):
            def version(self):
                return {version!r}
    ''')
    src.write_text(body.format(version="v1"))
    app = f"{mod}:ReloadApp"
    g = gdirty_start(dirty_config([app], workers=2, extra=f"pythonpath = {str(libdir)!r}\n"), workers=2)
    assert {call(g, app, "version") for _ in range(2)} == {"v1"}
    old = set(g.worker_pids())

    src.write_text(body.format(version="version two"))  # a different size too
    shutil.rmtree(libdir / "__pycache__", ignore_errors=True)
    os.kill(g.pid, signal.SIGHUP)
    wait_status(g, lambda st: booted(2)(st) and not (pids_of(st) & old), 60,
                "every worker to be replaced after HUP")
    assert {call(g, app, "version") for _ in range(4)} == {"version two"}


# ---------------------------------------------------------------------------
# TTIN / TTOU / MANAGE
# ---------------------------------------------------------------------------

def test_ttin_ttou_counts_and_the_minimum(gdirty_start):
    # minimum = 2 (SPEC is limited to 2 workers)
    g = gdirty_start(dirty_config([APP, ONE, f"{SPEC}:2"], workers=3), workers=3)
    for expected in (4, 5):
        os.kill(g.pid, signal.SIGTTIN)
        st = wait_status(g, booted(expected), 60, f"{expected} booted workers after TTIN")
        log_has(g, f"SIGTTIN: Increasing dirty workers to {expected}")
        assert st["workers"][-1]["apps"] == [APP]  # the limited apps are covered
        assert apps_count(st) == {APP: expected, ONE: 1, SPEC: 2}
    for expected in (4, 3, 2):
        os.kill(g.pid, signal.SIGTTOU)
        st = wait_status(g, booted(expected), 30, f"{expected} workers after TTOU")
        log_has(g, f"SIGTTOU: Decreasing dirty workers to {expected}")
        assert apps_count(st) == {APP: expected, ONE: 1, SPEC: 2}
    # at the minimum: gunicorn's warning, nothing retired
    os.kill(g.pid, signal.SIGTTOU)
    log_has(g, "SIGTTOU: Cannot decrease below 2 workers (required by app specs)")
    st = g.status()
    assert st["worker_count"] == 2
    assert apps_count(st) == {APP: 2, ONE: 1, SPEC: 2}
    for app in (APP, ONE, SPEC):
        assert call(g, app, "echo_value", app) == app
    # and it can grow again from there
    os.kill(g.pid, signal.SIGTTIN)
    wait_status(g, booted(3), 60, "3 workers after TTIN at the minimum")


def spawn_and_catch_socket_line(launcher, config):
    """Start gdirty and return as soon as its socket line is out (tight
    poll: a supervisor reacts to that line at once)."""
    g = launcher.spawn(config)
    deadline = time.monotonic() + 60
    while g._socket_line() is None:
        if g.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"gdirty did not print its socket line; stderr:\n{g.stderr()}")
        time.sleep(0.0005)
    g.socket_path = g._socket_line()
    return g


def settled(g, timeout=60):
    """STATUS once the pool stopped changing: every worker booted and the
    same workers in two polls 0.5 s apart."""
    last = {}

    def check():
        st = g.status()
        key = [(w["pid"], w["booted"]) for w in st["workers"]]
        prev = last.get("key")
        last["key"], last["st"], last["t"] = key, st, time.monotonic()
        if prev == key and all(b for _, b in key):
            return st
        time.sleep(0.5)
        return None

    return wait_until(check, timeout, lambda: f"the pool to settle; last {last.get('st')!r}")


def test_ttin_right_after_start(launcher):
    # gunicorn's own arbiter loops forever on this; gdirty must end with
    # exactly one more worker and the per-app limits kept
    config = dirty_config([APP, ONE, f"{SPEC}:2"], workers=3)
    for attempt in range(3):
        g = spawn_and_catch_socket_line(launcher, config)
        os.kill(g.pid, signal.SIGTTIN)
        st = settled(g)
        if len(st["workers"]) == 3:
            # the line that says TTIN was handled may only be missing once
            # every worker booted and a grace period passed
            wait_until(lambda: "SIGTTIN" in g.stderr() or len(g.status()["workers"]) != 3, 5,
                       "TTIN sent right after the socket line to be handled")
            st = settled(g)
        assert "SIGTTIN: Increasing dirty workers to 4" in g.stderr()
        assert len(st["workers"]) == 4, [w["apps"] for w in st["workers"]]
        assert apps_count(st) == {APP: 4, ONE: 1, SPEC: 2}, [w["apps"] for w in st["workers"]]
        g.stop()


def test_hup_right_after_socket_line_does_not_kill_gdirty(launcher):
    config = dirty_config([APP], workers=1)
    for attempt in range(5):
        g = spawn_and_catch_socket_line(launcher, config)
        os.kill(g.pid, signal.SIGHUP)
        wait_until(lambda: g.proc.poll() is not None or "SIGHUP: reloading" in g.stderr(), 20,
                   "gdirty to handle the HUP (or die of it)")
        if g.proc.poll() is not None:
            # it died: its fork server and workers must still go away
            launcher.started.remove(g)
            wait_until(lambda: not descendants_by_session(g.pid), 15,
                       "the dead gdirty's processes to exit")
        assert g.proc.poll() is None, f"gdirty died of SIGHUP (rc {g.proc.returncode}) on attempt {attempt}"
        g.stop()


@requires_v1
def test_concurrent_manage_adds_keep_count_and_target_in_step(gdirty_start):
    g = gdirty_start(dirty_config([APP, ONE], workers=1), workers=1)
    n_clients, count = 6, 2
    for round_ in range(5):  # a race: several rounds make it show reliably
        socks = [connect(g.socket_path, timeout=60) for _ in range(n_clients)]
        try:
            frames = [BP.encode_manage(next_id(), 1, count) for _ in socks]
            for s, frame in zip(socks, frames):  # one burst, as fast as possible
                s.sendall(frame)
            results = [BP.read_message(s)["result"] for s in socks]
        finally:
            for s in socks:
                s.close()
        spawned = sum(r["spawned"] for r in results)
        st = settled(g)
        assert spawned == n_clients * count, results
        assert len(st["workers"]) == 1 + spawned, (round_, len(st["workers"]), results)
        assert max(r["target_workers"] for r in results) == 1 + spawned, results
        # back to one worker for the next round
        manage(g, 2, spawned)
        settled_one = wait_status(g, booted(1), 60, "one worker again")
        assert settled_one["workers"][0]["apps"] == [APP, ONE]


@requires_v1
def test_scale_down_never_strands_a_limited_app(gdirty_start):
    # minimum 1; only the oldest worker hosts ONE. gunicorn's arbiter kills
    # the oldest worker first and ONE would be left without a worker.
    g = gdirty_start(dirty_config([APP, ONE], workers=3), workers=3)
    st = g.status()
    [host] = [w["pid"] for w in st["workers"] if ONE in w["apps"]]
    assert host == st["workers"][0]["pid"]
    for expected in (2, 1):
        os.kill(g.pid, signal.SIGTTOU)
        st = wait_status(g, booted(expected), 30, f"{expected} workers after TTOU")
        assert host in pids_of(st)
        assert call(g, ONE, "pid") == host
    os.kill(g.pid, signal.SIGTTOU)
    log_has(g, "SIGTTOU: Cannot decrease below 1 workers (required by app specs)")
    # MANAGE remove cannot strand it either
    r = manage(g, 2, 3)
    assert r["removed"] == 0, r
    st = g.status()
    assert [w["pid"] for w in st["workers"]] == [host]
    assert call(g, ONE, "pid") == host and call(g, APP, "pid") == host


@requires_v1
def test_manage_add_and_remove_results(gdirty_start):
    g = gdirty_start(dirty_config([APP, ONE, f"{SPEC}:2"], workers=3), workers=3)
    r = manage(g, 1, 1)
    assert r == {"success": True, "operation": "add", "requested": 1, "spawned": 1,
                 "total_workers": 4, "target_workers": 4}
    assert list(r) == ["success", "operation", "requested", "spawned", "total_workers", "target_workers"]
    st = wait_status(g, booted(4), 60, "4 booted workers after MANAGE add")
    assert st["workers"][-1]["apps"] == [APP]

    r = manage(g, 2, 1)
    assert r == {"success": True, "operation": "remove", "requested": 1, "removed": 1,
                 "total_workers": 3, "target_workers": 3}
    assert list(r)[:6] == ["success", "operation", "requested", "removed", "total_workers", "target_workers"]
    wait_status(g, booted(3), 30, "3 workers after MANAGE remove")

    # asking for more than the minimum (2) allows: one removed
    r = manage(g, 2, 5)
    assert {k: r[k] for k in ("success", "operation", "requested", "removed", "total_workers",
                              "target_workers")} == \
        {"success": True, "operation": "remove", "requested": 5, "removed": 1,
         "total_workers": 2, "target_workers": 2}, r
    st = wait_status(g, booted(2), 30, "2 workers after MANAGE remove 5")
    assert apps_count(st) == {APP: 2, ONE: 1, SPEC: 2}

    r = manage(g, 1, 2)
    assert r == {"success": True, "operation": "add", "requested": 2, "spawned": 2,
                 "total_workers": 4, "target_workers": 4}
    wait_status(g, booted(4), 60, "4 workers after MANAGE add 2")


@requires_v1
def test_manage_add_when_every_app_is_at_its_limit(gdirty_start):
    g = gdirty_start(dirty_config([ONE, f"{SPEC}:2"], workers=2), workers=2)
    r = manage(g, 1, 1)
    assert r == {"success": True, "operation": "add", "requested": 1, "spawned": 0,
                 "reason": "All apps have reached their worker limits",
                 "total_workers": 2, "target_workers": 2}
    assert list(r) == ["success", "operation", "requested", "spawned", "reason",
                       "total_workers", "target_workers"]
    assert g.status()["worker_count"] == 2


@requires_v1
def test_manage_unknown_operation_is_gunicorns_error(gdirty_start):
    g = gdirty_start(dirty_config([APP], workers=1), workers=1)
    rid = next_id()
    with connect(g.socket_path) as s:
        s.sendall(BP.encode_manage(rid, 9, 1))
        msg = BP.read_message(s)
    assert msg["type"] == "error" and msg["id"] == rid
    assert msg["error"]["error_type"] == "DirtyError"
    assert msg["error"]["message"] == "Unknown manage operation: 9"
    assert g.status()["worker_count"] == 1


# ---------------------------------------------------------------------------
# USR2 / WINCH, TERM, QUIT
# ---------------------------------------------------------------------------

def test_usr2_and_winch_do_not_kill_gdirty(gdirty_start):
    g = gdirty_start(dirty_config([APP], workers=2), workers=2)
    pids = set(g.worker_pids())
    os.kill(g.pid, signal.SIGUSR2)
    os.kill(g.pid, signal.SIGWINCH)
    log_has(g, "Received SIGUSR2: ignored")
    log_has(g, "Received SIGWINCH: ignored")
    assert g.proc.poll() is None
    assert set(g.worker_pids()) == pids
    assert {call(g, APP, "pid") for _ in range(4)} == pids


@pytest.mark.compat
def test_term_drains_in_flight_call(gdirty_start, tmp_path):
    g = gdirty_start(dirty_config([APP], workers=1, threads=2), workers=1)
    marker = tmp_path / "running"
    out = {}

    def run():
        c = g.client(timeout=60)
        try:
            out["result"] = c.execute(APP, "hold", str(marker), 2.0)
        except Exception as e:
            out["error"] = repr(e)
        finally:
            out["t"] = time.monotonic()
            c.close()

    t = threading.Thread(target=run)
    t.start()
    wait_until(marker.exists, 20, "the call to run")
    g.snapshot()
    os.kill(g.pid, signal.SIGTERM)
    t.join(60)
    assert out.get("result") == {"pid": int(marker.read_text()), "done": True}, out
    rc = g.proc.wait(60)
    assert rc == 0, g.stderr()[-2000:]
    g.mark_stopped(rc)


def test_quit_does_not_wait_for_calls(gdirty_start, tmp_path):
    g = gdirty_start(dirty_config([APP], workers=1), workers=1)
    marker = tmp_path / "running"
    with connect(g.socket_path, timeout=60) as s:
        request(s, APP, "hold", str(marker), 60)
        wait_until(marker.exists, 20, "the call to run")
        worker = int(marker.read_text())
        g.snapshot()
        t0 = time.monotonic()
        os.kill(g.pid, signal.SIGQUIT)
        rc = g.proc.wait(30)
        assert time.monotonic() - t0 < 8, "QUIT waited for the call"
        assert rc == 0, g.stderr()[-2000:]
        # the caller is not left hanging: an error or a closed connection
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if data:
            assert wire.starts_error_frame(data), data
    wait_until(lambda: pid_gone(worker), 15, "the worker to be gone")
    g.mark_stopped(rc)


# ---------------------------------------------------------------------------
# boot failures
# ---------------------------------------------------------------------------

def attempts(lcdir):
    path = lcdir / "attempts"
    if not path.exists():
        return []
    return [float(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]


_BACKOFF = re.compile(r"boot failed (\d+) time\(s\) in a row; next spawn in ([\d.]+)(ms|s)")


def backoffs(g):
    """(consecutive failures, delay in s) from gdirty's log, in order."""
    return [(int(n), float(v) / (1000 if unit == "ms" else 1))
            for n, v, unit in _BACKOFF.findall(g.stderr())]


def test_boot_failure_is_logged_and_retried_with_growing_delays(launcher, tmp_path):
    lcdir = tmp_path / "lc"
    lcdir.mkdir()
    (lcdir / "fail").write_text("1")
    # worker 1 hosts APP and BAD (BAD: 1 worker), worker 2 hosts APP only
    config = dirty_config([APP, BAD], workers=2, timeout=30,
                          extra=f"raw_env = ['LC_DIR={lcdir}']\n")
    g = launcher.spawn(config)
    wait_socket(g)
    wait_status(g, lambda st: any(w["booted"] and w["apps"] == [APP] for w in st["workers"]),
                60, "the healthy worker to boot")
    assert call(g, APP, "echo_value", "ok") == "ok"  # the other app is served

    # retried with growing delays (100 ms doubling): wait for a 1.6 s pause
    wait_until(lambda: any(d >= 1.6 for _, d in backoffs(g)), 60,
               lambda: f"a 1.6 s backoff; so far {backoffs(g)}")
    # during the pause BAD has no worker: its calls fail at once
    c = g.client(timeout=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(DirtyNoWorkersAvailableError) as ei:
            c.execute(BAD, "pid")
        assert time.monotonic() - t0 < 1.0
        assert ei.value.app_path == BAD
        assert c.execute(APP, "echo_value", "still ok") == "still ok"
    finally:
        c.close()

    delays = backoffs(g)
    times = attempts(lcdir)
    # each failure doubles the delay; the count restarts only when a worker
    # boots (here: the healthy one, once)
    for (n1, d1), (n2, d2) in zip(delays, delays[1:]):
        assert (n2, d2) == (n1 + 1, min(2 * d1, 10.0)) or (n2, d2) == (1, 0.1), delays
    assert sum(1 for n, _ in delays if n == 1) <= 2, delays
    assert [d for n, d in delays if n <= 5][-5:] == [0.1, 0.2, 0.4, 0.8, 1.6], delays
    # the spawns respect the delays: each attempt comes at least its delay
    # after the previous one (not a hot loop)
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, (_, delay) in zip(gaps, delays):
        assert gap >= delay - 0.02, (gaps, delays)
    assert len([t for t in times if t - times[0] < 2.0]) <= 7, gaps
    err = g.stderr()
    assert "lc init boom in" in err
    assert f"Failed to initialize dirty app {BAD}" in err
    assert "Traceback (most recent call last)" in err
    assert "Dirty worker failed to boot" in err

    # fixed: the next attempt boots and BAD is served
    (lcdir / "fail").unlink()
    st = wait_status(g, lambda st: booted(2)(st) and any(BAD in w["apps"] for w in st["workers"]), 60,
                     "the BAD app's worker to boot once init succeeds")
    [host] = [w["pid"] for w in st["workers"] if BAD in w["apps"]]
    assert call(g, BAD, "pid") == host


def test_call_waiting_for_a_worker_that_fails_to_boot_fails_promptly(launcher, tmp_path):
    lcdir = tmp_path / "lc"
    lcdir.mkdir()
    (lcdir / "fail").write_text("1")
    (lcdir / "slow").write_text("1.0")  # init takes 1 s, then raises
    timeout = 5
    config = dirty_config([APP, BAD], workers=2, timeout=timeout,
                          extra=f"raw_env = ['LC_DIR={lcdir}']\n")
    g = launcher.spawn(config)
    wait_socket(g)
    wait_status(g, lambda st: any(w["booted"] and w["apps"] == [APP] for w in st["workers"]),
                60, "the healthy worker to boot")
    # catch the start of an attempt: BAD's worker is booting (in init)
    n = len(attempts(lcdir))
    wait_until(lambda: len(attempts(lcdir)) > n, 30, "a boot attempt to start")
    c = g.client(timeout=60)
    try:
        t0 = time.monotonic()
        with pytest.raises((DirtyNoWorkersAvailableError, DirtyWorkerError)) as ei:
            c.execute(BAD, "pid")
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert elapsed < timeout - 1, f"answered after {elapsed:.1f}s with {ei.value!r}"


# ---------------------------------------------------------------------------
# gdirty's own death, its parent's death
# ---------------------------------------------------------------------------

def test_sigkill_gdirty_takes_its_processes_down(launcher):
    g = launcher.spawn(dirty_config([APP], workers=3))
    g.wait_ready(3)
    st = g.status()
    procs = set(descendants(g.pid)) | pids_of(st)
    assert pids_of(st) <= procs and len(procs) >= 4  # workers + fork server
    launcher.started.remove(g)  # this test checks the clean-up itself
    g.proc.kill()
    g.proc.wait(30)
    wait_until(lambda: all(pid_gone(p) for p in procs), 20,
               lambda: f"gdirty's processes to exit: {[p for p in procs if not pid_gone(p)]}")
    assert descendants_by_session(g.pid) == []


def test_parent_death_stops_gdirty_cleanly(gdirty_start, tmp_path):
    parent = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(600)"])
    try:
        name = f"gdirty-lc-parent-{uuid.uuid4().hex[:8]}"
        g = gdirty_start(dirty_config([APP], workers=2, extra=f"proc_name = {name!r}\n"),
                         workers=2, args=["--parent-pid", str(parent.pid)])
        # gunicorn's orphan-detection PID file for an owned arbiter
        pidfile = f"/tmp/gunicorn-dirty-{name}.pid"
        assert open(pidfile).read().strip() == str(g.pid)
        g.snapshot()
        parent.kill()
        parent.wait(30)
        rc = g.proc.wait(60)
        assert rc == 0, g.stderr()[-2000:]
        assert "Parent process exited" in g.stderr()
        assert not os.path.exists(pidfile)
        g.mark_stopped(rc)  # teardown checks that its workers are gone
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ---------------------------------------------------------------------------
# process settings and the errorlog
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spawn", ["fork", "exec"])
def test_process_settings_applied_in_workers(gdirty_start, tmp_path, spawn):
    work = tmp_path / "work"
    lib = tmp_path / "lib"
    work.mkdir()
    lib.mkdir()
    (lib / "lc_pp_mod.py").write_text("MARK = 'from the config pythonpath'\n")
    name = f"gdirty-lc-{uuid.uuid4().hex[:8]}"
    seen = tmp_path / "proc_name"
    extra = "\n".join([
        f"chdir = {str(work)!r}",
        f"pythonpath = {str(lib) + ',' + str(APPS_DIR)!r}",
        "raw_env = ['LC_X=hello world', 'LC_EQ=a=b']",
        f"proc_name = {name!r}",
        "def dirty_worker_init(worker):",
        f"    with open({str(seen)!r} + '.' + str(worker.pid), 'w') as f:",
        "        f.write(worker.cfg.proc_name)",
        "",
    ])
    # started in a directory where neither the apps nor lc_pp_mod are importable
    g = gdirty_start(dirty_config([APP], workers=2, extra=extra), workers=2, cwd=tmp_path,
                     args=["--spawn", spawn])
    pids = set(g.worker_pids())
    c = g.client()
    try:
        probes = [c.execute(APP, "probe") for _ in range(4)]
    finally:
        c.close()
    assert {p["pid"] for p in probes} == pids
    for p in probes:
        assert os.path.realpath(p["cwd"]) == os.path.realpath(work)
        assert p["env"]["LC_X"] == "hello world"
        assert p["env"]["LC_EQ"] == "a=b"
        assert p["pythonpath_module"] == "from the config pythonpath"
    for pid in pids:
        assert (tmp_path / f"proc_name.{pid}").read_text() == name


def test_errorlog_gets_all_logs_and_usr1_reopens_it(gdirty_start, tmp_path):
    log = tmp_path / "error.log"
    g = gdirty_start(dirty_config([APP], workers=2, extra=f"errorlog = {str(log)!r}\n"), workers=2)
    pids = g.worker_pids()
    text = wait_until(lambda: (lambda t: t if t.count("Initialized dirty app") >= 2 else None)(
        log.read_text() if log.exists() else ""), 20, "the workers' lines in the errorlog")
    assert "Dirty arbiter listening on" in text          # gdirty's own log
    for pid in pids:                                     # the workers' logs
        assert f"[{pid}] [INFO] Initialized dirty app: {APP}" in text
    assert "Dirty arbiter listening on" not in g.stderr()

    rotated = tmp_path / "error.log.1"
    os.rename(log, rotated)
    os.kill(g.pid, signal.SIGUSR1)
    wait_until(lambda: "SIGUSR1: reopening log files" in rotated.read_text(), 20,
               "gdirty to handle USR1")
    os.kill(g.pid, signal.SIGUSR2)  # logged after the reopen: to the new file
    wait_until(lambda: log.exists() and "Received SIGUSR2: ignored" in log.read_text(), 20,
               "gdirty to log into the reopened errorlog")
    # every worker reopens it too: an app error is logged by the worker
    c = g.client()
    try:
        seen = set()

        def worker_logs_to_new_file():
            tag = uuid.uuid4().hex
            try:
                c.execute(APP, "fail", f"lc-{tag}")
            except Exception:
                pass
            text = log.read_text()
            seen.update(pid for pid in pids if f"[{pid}] [ERROR]" in text)
            return seen == set(pids)

        wait_until(worker_logs_to_new_file, 30, lambda: f"every worker in the new errorlog (seen {seen})",
                   interval=0.1)
    finally:
        c.close()
    old = rotated.read_text()
    assert "SIGUSR1: reopening log files" in old
    assert "Initialized dirty app" in old
