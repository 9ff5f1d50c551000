"""gunicorn's dirty hooks under gdirty, with real processes.

The config's hooks append one JSON line per call to a file: which hook,
which process ran it (``os.getpid()``) and the attributes of the arbiter /
worker objects it received. The apps' ``init()`` write to the same file, so
the order of the lines is the order things happened.

What gunicorn does (gunicorn/dirty/arbiter.py, worker.py):
* ``on_dirty_starting(arbiter)``: once, in the arbiter, before any worker;
* ``dirty_post_fork(arbiter, worker)``: in the arbiter, once per worker
  spawned, the worker already in ``arbiter.workers``;
* ``dirty_worker_init(worker)``: in the worker, after every app's
  ``init()``, with ``worker.pid == os.getpid()`` and ``booted`` still False;
* ``dirty_worker_exit(arbiter, worker)``: in the arbiter, once per worker
  that exited (also at shutdown).
gdirty's arbiter is Go: the three arbiter-side hooks run in its Python hook
host (one process, a child of gdirty, started only when one of them is
defined); a hook that raises is logged with its traceback and nothing else
happens.
"""

import json
import os
import signal

import pytest

from conftest import descendants, dirty_config, pid_gone, wait_until

APP = "hooks_apps:HookApp"
ONE = "hooks_apps:HookOne"

HOOKS_PY = '''
import json, os, time

HOOK_LOG = {log!r}


def _rec(**kw):
    kw["os_pid"] = os.getpid()
    kw["t"] = time.time()
    with open(HOOK_LOG, "a") as f:
        f.write(json.dumps(kw, default=repr) + "\\n")


def _worker(w):
    return dict(pid=w.pid, age=w.age, ppid=w.ppid, app_paths=list(w.app_paths),
                booted=w.booted, aborted=w.aborted,
                cfg_ok=hasattr(w.cfg, "dirty_workers"), log_ok=callable(getattr(w.log, "info", None)),
                proc_name=w.cfg.proc_name, str=str(w))


def _arbiter(a):
    return dict(pid=a.pid, ppid=a.ppid, socket_path=a.socket_path,
                workers=sorted(a.workers), num_workers=a.num_workers, alive=a.alive,
                app_specs={{k: dict(v) for k, v in a.app_specs.items()}},
                cfg_ok=hasattr(a.cfg, "dirty_workers"), log_ok=callable(getattr(a.log, "info", None)))
'''

ALL_HOOKS = '''
def on_dirty_starting(arbiter):
    _rec(hook="on_dirty_starting", arbiter=_arbiter(arbiter))


def dirty_post_fork(arbiter, worker):
    _rec(hook="dirty_post_fork", arbiter=_arbiter(arbiter), worker=_worker(worker))


def dirty_worker_init(worker):
    _rec(hook="dirty_worker_init", worker=_worker(worker))


def dirty_worker_exit(arbiter, worker):
    _rec(hook="dirty_worker_exit", arbiter=_arbiter(arbiter), worker=_worker(worker))
'''


def hooks_config(tmp_path, hooks, apps=(APP, ONE), workers=2, extra=""):
    log = tmp_path / "hooks.jsonl"
    text = dirty_config(list(apps), workers=workers, extra=extra)
    text += f"raw_env = ['HOOKS_LOG={log}']\n"
    text += f"proc_name = 'gdirty-hooks-{os.getpid()}'\n"
    text += HOOKS_PY.format(log=str(log)) + hooks
    return text, log


def records(log):
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def by_hook(recs, name):
    return [r for r in recs if r["hook"] == name]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def hook_host_pids(g):
    return [p for p in descendants(g.pid) if "gdirty_pyshim.hooks" in cmdline(p)]


def wait_status(g, pred, timeout, what):
    last = {}

    def check():
        st = g.status()
        last["st"] = st
        return st if pred(st) else None

    return wait_until(check, timeout, lambda: f"{what}; last STATUS {last.get('st')!r}")


def all_booted(n):
    return lambda st: len(st["workers"]) == n and all(w["booted"] for w in st["workers"])


@pytest.mark.compat
def test_hooks_order_processes_and_attributes(gdirty_start, tmp_path):
    text, log = hooks_config(tmp_path, ALL_HOOKS)
    g = gdirty_start(text, workers=2)
    st = g.status()
    wpids = {w["pid"]: w for w in st["workers"]}
    # dirty_worker_init is the last thing a worker does before it serves:
    # the worker is booted, so its record is there
    recs = wait_until(lambda: (lambda r: r if len(by_hook(r, "dirty_worker_init")) == 2 else None)(records(log)),
                      20, lambda: f"2 dirty_worker_init records in {records(log)}")

    [host] = hook_host_pids(g)
    names = [r["hook"] for r in recs]

    # on_dirty_starting: once, first, in the hook host, before any worker
    starting = by_hook(recs, "on_dirty_starting")
    assert len(starting) == 1, names
    assert names[0] == "on_dirty_starting", names
    s = starting[0]
    assert s["os_pid"] == host
    a = s["arbiter"]
    assert a["pid"] == g.pid
    assert a["socket_path"] == g.socket_path
    assert a["workers"] == []
    assert a["num_workers"] == 2
    assert a["alive"] is True
    assert a["cfg_ok"] and a["log_ok"]
    # gunicorn's app_specs: import path -> {import_path, worker_count, original_spec},
    # worker_count from the spec or the class attribute
    assert a["app_specs"] == {
        APP: {"import_path": APP, "worker_count": None, "original_spec": APP},
        ONE: {"import_path": ONE, "worker_count": 1, "original_spec": ONE},
    }

    # dirty_post_fork: once per worker, in the hook host, after on_dirty_starting
    forks = by_hook(recs, "dirty_post_fork")
    assert sorted(r["worker"]["pid"] for r in forks) == sorted(wpids), (forks, wpids)
    for r in forks:
        w = r["worker"]
        assert r["os_pid"] == host
        assert w["age"] == wpids[w["pid"]]["age"]
        assert w["app_paths"] == wpids[w["pid"]]["apps"]
        assert w["ppid"] == g.pid  # gunicorn: worker.ppid is the arbiter's pid
        assert w["booted"] is False and w["aborted"] is False
        assert w["cfg_ok"] and w["log_ok"]
        assert w["str"] == f"<DirtyWorker {w['pid']}>"
        # as in gunicorn, the worker is registered before the hook runs
        assert w["pid"] in r["arbiter"]["workers"]
        assert r["arbiter"]["pid"] == g.pid
        assert recs.index(r) > recs.index(s)

    # dirty_worker_init: once per worker, in that worker, after all its apps' init()
    inits = by_hook(recs, "dirty_worker_init")
    assert sorted(r["worker"]["pid"] for r in inits) == sorted(wpids)
    for r in inits:
        w = r["worker"]
        assert r["os_pid"] == w["pid"], r
        assert w["app_paths"] == wpids[w["pid"]]["apps"]
        assert w["age"] == wpids[w["pid"]]["age"]
        assert w["booted"] is False  # gunicorn sets booted after the hook
        assert w["cfg_ok"] and w["log_ok"]
        assert w["proc_name"] == f"gdirty-hooks-{os.getpid()}"
        idx = recs.index(r)
        app_inits = [i for i, x in enumerate(recs)
                     if x["hook"] == "app_init" and x["os_pid"] == w["pid"]]
        assert sorted(recs[i]["app"] for i in app_inits) == sorted(w["app_paths"])
        assert all(i < idx for i in app_inits), names
    assert not by_hook(recs, "dirty_worker_exit")

    # the apps run only in workers, never in the hook host
    assert {r["os_pid"] for r in by_hook(recs, "app_init")} <= set(wpids)
    assert host not in wpids and host != g.pid


@pytest.mark.parametrize("spawn", ["fork", "exec"])
def test_worker_init_sees_arbiter_pid_as_ppid(gdirty_start, tmp_path, spawn):
    """gunicorn builds each DirtyWorker with ppid = the arbiter's pid, so
    dirty_worker_init sees worker.ppid == the dirty arbiter."""
    text, log = hooks_config(tmp_path, ALL_HOOKS, apps=[APP], workers=1)
    g = gdirty_start(text, workers=1, args=["--spawn", spawn])
    recs = wait_until(lambda: by_hook(records(log), "dirty_worker_init"), 20,
                      "the dirty_worker_init record")
    assert recs[0]["worker"]["ppid"] == g.pid, (
        f"worker.ppid in dirty_worker_init is {recs[0]['worker']['ppid']}, "
        f"gdirty (the arbiter) is {g.pid}")


def test_worker_exit_hook_per_exited_worker_incl_shutdown(gdirty_start, tmp_path):
    text, log = hooks_config(tmp_path, ALL_HOOKS)
    g = gdirty_start(text, workers=2)
    [host] = hook_host_pids(g)
    first = {w["pid"]: w for w in g.status()["workers"]}
    victim = next(p for p, w in first.items() if ONE in w["apps"])

    os.kill(victim, signal.SIGKILL)
    after = wait_status(g, lambda st: all_booted(2)(st) and victim not in {w["pid"] for w in st["workers"]},
                        30, "the killed worker to be replaced")
    [new] = [w for w in after["workers"] if w["pid"] not in first]
    assert new["apps"] == first[victim]["apps"]
    recs = wait_until(lambda: (lambda r: r if len(by_hook(r, "dirty_worker_init")) == 3 else None)(records(log)),
                      20, lambda: f"the replacement's dirty_worker_init in {records(log)}")

    exits = by_hook(recs, "dirty_worker_exit")
    assert [r["worker"]["pid"] for r in exits] == [victim]
    e = exits[0]
    assert e["os_pid"] == host
    assert e["worker"]["app_paths"] == first[victim]["apps"]
    assert e["worker"]["age"] == first[victim]["age"]
    # the replacement got post_fork and worker_init like the others
    assert [r["worker"]["pid"] for r in by_hook(recs, "dirty_post_fork")].count(new["pid"]) == 1
    assert [r["worker"]["pid"] for r in by_hook(recs, "dirty_worker_init")].count(new["pid"]) == 1
    assert by_hook(recs, "dirty_post_fork")[-1]["worker"]["app_paths"] == first[victim]["apps"]

    # shutdown: one dirty_worker_exit for each remaining worker, still in the hook host
    remaining = sorted(w["pid"] for w in after["workers"])
    rc = g.stop()
    assert rc == 0, g.stderr()[-3000:]
    recs = records(log)
    exits = by_hook(recs, "dirty_worker_exit")
    assert sorted(r["worker"]["pid"] for r in exits) == sorted([victim] + remaining), exits
    assert all(r["os_pid"] == host for r in exits)
    assert len(by_hook(recs, "on_dirty_starting")) == 1
    wait_until(lambda: pid_gone(host), 15, "the hook host to exit with gdirty")


def test_worker_exit_hook_sees_worker_removed_from_arbiter(gdirty_start, tmp_path):
    text, log = hooks_config(tmp_path, ALL_HOOKS)
    g = gdirty_start(text, workers=2)
    first = g.worker_pids()
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: by_hook(records(log), "dirty_worker_exit"), 20, "the dirty_worker_exit record")
    assert g.stop() == 0
    exits = by_hook(records(log), "dirty_worker_exit")
    assert len(exits) == 3
    seen = {r["worker"]["pid"]: r["arbiter"]["workers"] for r in exits}
    assert all(pid not in workers for pid, workers in seen.items()), seen


def test_no_hook_host_without_arbiter_hooks(gdirty_start, tmp_path):
    hooks = '''
def dirty_worker_init(worker):
    _rec(hook="dirty_worker_init", worker=_worker(worker))
'''
    text, log = hooks_config(tmp_path, hooks)
    g = gdirty_start(text, workers=2)
    recs = wait_until(lambda: (lambda r: r if len(by_hook(r, "dirty_worker_init")) == 2 else None)(records(log)),
                      20, "2 dirty_worker_init records")
    assert sorted(r["os_pid"] for r in recs if r["hook"] == "dirty_worker_init") == sorted(g.worker_pids())
    assert hook_host_pids(g) == []


def test_raising_arbiter_hooks_are_logged_and_ignored(gdirty_start, tmp_path):
    hooks = '''
def on_dirty_starting(arbiter):
    raise ValueError("hook boom on_dirty_starting")


def dirty_post_fork(arbiter, worker):
    raise ValueError("hook boom dirty_post_fork %s" % worker.pid)


def dirty_worker_exit(arbiter, worker):
    raise ValueError("hook boom dirty_worker_exit %s" % worker.pid)
'''
    text, log = hooks_config(tmp_path, hooks)
    g = gdirty_start(text, workers=2)
    first = g.worker_pids()
    c = g.client()
    try:
        assert c.execute(ONE, "echo_value", "served") == "served"
        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        wait_status(g, lambda st: all_booted(2)(st) and victim not in {w["pid"] for w in st["workers"]},
                    30, "the killed worker to be replaced")
        for _ in range(4):
            assert c.execute(APP, "echo_value", "still") == "still"
        assert c.execute(ONE, "echo_value", "one") == "one"
    finally:
        c.close()
    err = wait_until(lambda: (lambda e: e if f"hook boom dirty_worker_exit {victim}" in e else None)(g.stderr()),
                     20, "the dirty_worker_exit hook's exception in the log")
    for needle in ("hook boom on_dirty_starting",
                   *(f"hook boom dirty_post_fork {p}" for p in first)):
        assert needle in err, needle
    # logged with the traceback, naming the hook
    for name in ("on_dirty_starting", "dirty_post_fork", "dirty_worker_exit"):
        assert f"Hook {name} raised" in err or f"{name}" in err
    assert err.count("Traceback (most recent call last)") >= 4, err[-3000:]
    assert f"ValueError: hook boom dirty_worker_exit {victim}" in err
    assert g.proc.poll() is None


def test_raising_worker_init_hook_is_a_boot_failure_then_retried(gdirty_start, tmp_path):
    """As in gunicorn, an exception in dirty_worker_init makes the worker
    fail to boot (logged with its traceback); gdirty retries it."""
    flag = tmp_path / "raised-once"
    hooks = f'''
def dirty_worker_init(worker):
    flag = {str(flag)!r}
    if not os.path.exists(flag):
        open(flag, "w").write(str(os.getpid()))
        raise ValueError("init hook boom %s" % os.getpid())
    _rec(hook="dirty_worker_init", worker=_worker(worker))
'''
    text, log = hooks_config(tmp_path, hooks, apps=[APP], workers=1)
    g = gdirty_start(text, workers=1)
    failed = int(flag.read_text())
    [w] = g.status()["workers"]
    assert w["pid"] != failed
    assert by_hook(records(log), "dirty_worker_init")[0]["os_pid"] == w["pid"]
    err = g.stderr()
    assert f"ValueError: init hook boom {failed}" in err
    assert "Traceback (most recent call last)" in err
    c = g.client()
    try:
        assert c.execute(APP, "pid") == w["pid"]
    finally:
        c.close()
