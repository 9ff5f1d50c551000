"""Recycling of dirty workers (max_requests with jitter, memory of the
worker's process tree, age, idle time) and accelerator placement, against
real gdirty processes and real Python workers.

Settings come from gunicorn.conf.py (``gdirty_*`` names), the gdirty TOML
and flags. Every wait is a condition poll with a deadline.
"""

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import (APPS_DIR, PYTHON, clean_env, dirty_config, pid_gone,
                      wait_until)

LEAKY = "recycle_apps:Leaky"
COUNTER = "recycle_apps:Counter"
MiB = 1024 * 1024

RECYCLE_LINE = re.compile(r"Recycling dirty worker (\d+) \((\w+)\): ([^;\"]*); starting its replacement")


def recycles(g, reason=None):
    """[(pid, reason, detail)] from gdirty's log, in order."""
    out = [(int(m.group(1)), m.group(2), m.group(3)) for m in RECYCLE_LINE.finditer(g.stderr())]
    return [r for r in out if reason is None or r[1] == reason]


def workers_by_pid(st):
    return {w["pid"]: w for w in st["workers"]}


def booted(n):
    return lambda st: len(st["workers"]) == n and all(w["booted"] for w in st["workers"])


def wait_status(g, pred, timeout, what):
    last = {}

    def check():
        st = g.status()
        last["st"] = st
        return st if pred(st) else None
    return wait_until(check, timeout, lambda: f"{what}; last STATUS {last.get('st')!r}")


class Load:
    """``threads`` callers, each with its own client, calling
    ``action(*args)`` every ``pause`` seconds until stopped; every result
    and every error is kept."""

    def __init__(self, g, app, action, args=(), threads=4, pause=0.0):
        self.g, self.app, self.action, self.args = g, app, action, args
        self.pause = pause
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.results, self.errors = [], []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        client = self.g.client(timeout=30)
        try:
            while not self.stop_event.is_set():
                try:
                    r = client.execute(self.app, self.action, *self.args)
                    with self.lock:
                        self.results.append(r)
                except Exception as e:  # every failure is a test failure, kept for the message
                    with self.lock:
                        self.errors.append(f"{type(e).__name__}: {e}")
                    client.close()
                    client = self.g.client(timeout=30)
                if self.pause:
                    self.stop_event.wait(self.pause)
        finally:
            client.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
            assert not t.is_alive(), "a caller thread hung"

    def count(self):
        with self.lock:
            return len(self.results)


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^gdirty_worker_retirements_total\{reason="(\w+)"\} (\S+)$', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------

def test_leaky_app_is_recycled_at_the_memory_bound_with_zero_errors(gdirty_start, tmp_path):
    bound = 64 * MiB  # a fresh worker holds ~20 MiB; each call keeps 2 MiB more
    exits = tmp_path / "exits"
    extra = (f"gdirty_max_worker_memory = '64MiB'\n"
             f"def dirty_worker_exit(arbiter, worker):\n"
             f"    with open({str(exits)!r}, 'a') as f:\n"
             f"        f.write('%d\\n' % worker.pid)\n")
    g = gdirty_start(dirty_config([LEAKY], workers=2, threads=2, extra=extra), workers=2,
                     args=["--metrics-bind", "127.0.0.1:0"])
    # A steady, paced load (about 40 calls/s in all), so a worker's memory
    # grows steadily between two checks.
    with Load(g, LEAKY, "grow", (2,), threads=4, pause=0.1) as load:
        wait_until(lambda: len(recycles(g, "max_memory")) >= 6 or load.errors, 60,
                   lambda: f"6 memory recycles; log:\n{g.stderr()[-3000:]}")
    n, errors = load.count(), list(load.errors)
    peak = max(r["rss"] for r in load.results) if load.results else 0
    print(f"\nmemory recycling under load: {n} calls, {len(errors)} errors, "
          f"{len(recycles(g, 'max_memory'))} recycles, peak worker RSS {peak / MiB:.0f} MiB (bound 64 MiB)")
    assert errors == [], errors[:5]
    assert n > 50
    # each retired worker finished its calls and exited on its own
    assert "still busy after" not in g.stderr()

    done = recycles(g, "max_memory")
    for pid, _, detail in done:
        # gdirty measured the tree over the bound; the worker itself saw it too
        m = re.match(r"resident memory (\S+) (\w+) is over max_worker_memory 64\.0 MiB", detail)
        assert m, detail
        seen = [r["rss"] for r in load.results if r["pid"] == pid]
        assert seen and max(seen) > bound - 4 * MiB, (pid, seen[-3:])
    # every recycled worker exited, went through dirty_worker_exit, and
    # the pool is back to two serving workers
    recycled = {pid for pid, _, _ in done}
    wait_until(lambda: all(pid_gone(p) for p in recycled), 30, "recycled workers to exit")
    wait_until(lambda: recycled <= {int(x) for x in exits.read_text().split()} if exits.exists() else False,
               30, "dirty_worker_exit for every recycled worker")
    st = wait_status(g, booted(2), 30, "two booted workers")
    assert not set(workers_by_pid(st)) & recycled
    assert all(isinstance(w["requests"], int) for w in st["workers"])
    # metrics say why
    url = re.search(r"Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)", g.stderr()).group(1)
    by_reason = scrape(url)
    assert by_reason["max_memory"] >= len(done)
    assert by_reason["max_requests"] == 0 and by_reason["reload"] == 0


# ---------------------------------------------------------------------------
# max_requests with jitter (from the gdirty TOML)
# ---------------------------------------------------------------------------

def test_max_requests_with_jitter_recycles_within_the_band(gdirty_start, tmp_path):
    toml = tmp_path / "gdirty.toml"
    toml.write_text("max_requests = 10\nmax_requests_jitter = 5\n")
    g = gdirty_start(dirty_config([COUNTER], workers=2), workers=2, args=["--gdirty-config", str(toml)])
    client = g.client()
    served = {}
    try:
        def enough():
            r = client.execute(COUNTER, "hit")
            served[r["pid"]] = max(served.get(r["pid"], 0), r["calls"])
            return len(recycles(g, "max_requests")) >= 4
        wait_until(enough, 60, lambda: f"4 recycles by max_requests; log:\n{g.stderr()[-3000:]}", interval=0)
    finally:
        client.close()
    for pid, _, detail in recycles(g, "max_requests"):
        m = re.match(r"served (\d+) calls \(its max_requests: (\d+)\)", detail)
        assert m, detail
        count, limit = int(m.group(1)), int(m.group(2))
        assert 10 <= limit <= 15, f"worker {pid}: limit {limit} outside max_requests 10 + jitter 0..5"
        assert count >= limit
        assert served[pid] >= limit, (pid, served[pid], limit)
    st = wait_status(g, booted(2), 30, "two booted workers")
    assert all("requests" in w for w in st["workers"])
    assert "still busy after" not in g.stderr()


# ---------------------------------------------------------------------------
# age and idle time
# ---------------------------------------------------------------------------

def test_worker_ttl_replaces_an_old_worker(gdirty_start):
    ttl = 2
    g = gdirty_start(dirty_config([COUNTER], workers=1, extra=f"gdirty_worker_ttl = {ttl}\n"), workers=1)
    client = g.client()
    try:
        first = client.execute(COUNTER, "hit")
        wait_until(lambda: pid_gone(first["pid"]), 30, "the worker to be recycled by worker_ttl")
        # its age at the decision was at least the ttl (the worker's own
        # clock starts a little after gdirty's)
        assert time.time() >= first["started"] + ttl - 0.5
        assert [r[:2] for r in recycles(g)][0] == (first["pid"], "ttl")
        after = client.execute(COUNTER, "hit")
        assert after["pid"] != first["pid"] and after["calls"] == 1
    finally:
        client.close()


def test_worker_idle_ttl_replaces_only_a_worker_that_went_idle(gdirty_start):
    idle = 1.5
    g = gdirty_start(dirty_config([COUNTER], workers=2), workers=2, args=["--worker-idle-ttl", str(idle)])
    before = set(workers_by_pid(g.status()))
    client = g.client()
    try:
        used = client.execute(COUNTER, "hit")["pid"]
        last_call = time.monotonic()
        unused = (before - {used}).pop()
        wait_until(lambda: pid_gone(used), 30, "the idle worker to be recycled")
        assert time.monotonic() - last_call >= idle
        assert [r[:2] for r in recycles(g)] == [(used, "idle_ttl")]
        # the worker that never got a call was not recycled for idleness
        st = wait_status(g, booted(2), 30, "two booted workers")
        assert unused in workers_by_pid(st)
    finally:
        client.close()


# ---------------------------------------------------------------------------
# a recycle during a stream
# ---------------------------------------------------------------------------

def test_recycle_during_a_stream_lets_the_stream_finish(gdirty_start, tmp_path):
    g = gdirty_start(dirty_config([COUNTER], workers=1, threads=2, extra="gdirty_max_requests = 2\n"),
                     workers=1)
    old = g.worker_pids()[0]
    flag = tmp_path / "go-on"
    chunks, failure = [], []
    first = threading.Event()

    def stream():
        c = g.client()
        try:
            for ch in c.stream(COUNTER, "stream_until", str(flag), 20):
                chunks.append(ch)
                first.set()
        except Exception as e:
            failure.append(f"{type(e).__name__}: {e}")
            first.set()
        finally:
            c.close()

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        assert first.wait(30) and not failure, failure
        c = g.client()
        try:
            for _ in range(2):  # the second call reaches max_requests
                assert c.execute(COUNTER, "hit")["pid"] == old
        finally:
            c.close()
        # the replacement is serving; the old worker retires, stream in hand
        wait_status(g, lambda st: old in workers_by_pid(st)
                    and workers_by_pid(st)[old].get("retiring") == "max_requests"
                    and any(w["booted"] and w["pid"] != old for w in st["workers"]),
                    30, "the replacement ready while the old worker finishes its stream")
        c = g.client()
        try:
            assert c.execute(COUNTER, "hit")["pid"] != old
        finally:
            c.close()
    finally:
        flag.write_text("go")
        t.join(60)
    assert failure == []
    assert [ch["i"] for ch in chunks] == list(range(20))
    assert {ch["pid"] for ch in chunks} == {old}
    wait_until(lambda: pid_gone(old), 30, "the old worker to exit after its stream")


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------

def env_by_pid(g, var, pids, timeout=30):
    """Call until every pid in ``pids`` answered: {pid: its ``var``}."""
    seen = {}
    client = g.client()
    try:
        def all_seen():
            r = client.execute(COUNTER, "where", var)
            seen[r["pid"]] = r["devices"]
            return set(pids) <= set(seen)
        wait_until(all_seen, timeout, lambda: f"answers from {pids}, got {seen}", interval=0)
    finally:
        client.close()
    return {p: seen[p] for p in pids}


def check_placement(g, var, groups):
    st = wait_status(g, booted(2), 30, "two booted workers")
    placed = {w["pid"]: ",".join(w["devices"]) for w in st["workers"]}
    assert sorted(placed.values()) == groups
    assert env_by_pid(g, var, list(placed)) == placed
    return placed


@pytest.mark.parametrize("spawn,var,devices,groups", [
    ("fork", "CUDA_VISIBLE_DEVICES", "gdirty_devices = 4", ["0,1", "2,3"]),
    ("exec", "HIP_VISIBLE_DEVICES", "gdirty_devices = ['a', 'b', 'c', 'd']\ngdirty_devices_env = 'HIP_VISIBLE_DEVICES'",
     ["a,b", "c,d"]),
], ids=["fork-count", "exec-list-custom-env"])
def test_each_worker_sees_its_own_devices_across_kill9_and_hup(gdirty_start, spawn, var, devices, groups):
    extra = devices + "\ngdirty_devices_per_worker = 2\n"
    g = gdirty_start(dirty_config([COUNTER], workers=2, extra=extra), workers=2, args=["--spawn", spawn])
    placed = check_placement(g, var, groups)

    victim, its = next(iter(placed.items()))
    os.kill(victim, signal.SIGKILL)
    wait_status(g, lambda st: booted(2)(st) and victim not in workers_by_pid(st), 30,
                     "the killed worker replaced")
    after_kill = check_placement(g, var, groups)
    [new] = set(after_kill) - set(placed)
    assert after_kill[new] == its, "the respawned worker did not get the dead worker's devices"

    os.kill(g.pid, signal.SIGHUP)
    wait_status(g, lambda st: booted(2)(st) and not set(workers_by_pid(st)) & set(after_kill), 60,
                "every worker replaced after HUP")
    check_placement(g, var, groups)


def test_more_workers_than_devices_is_a_start_up_error_unless_shared(gdirty_spawn, gdirty_start):
    g = gdirty_spawn(dirty_config([COUNTER], workers=3, extra="gdirty_devices = [0, 1]\n"))
    rc = g.proc.wait(60)
    err = g.stderr().strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert "gdirty_devices: 3 workers x 1 device(s) each need 3 devices, only 2 given (0,1)" in err
    assert "devices_shared" in err

    g = gdirty_start(dirty_config([COUNTER], workers=3, extra="gdirty_devices = [0, 1]\n"), workers=3,
                     args=["--devices-shared"])
    assert sorted(",".join(w["devices"]) for w in g.status()["workers"]) == ["0", "0", "1"]


# ---------------------------------------------------------------------------
# settings: one-line errors, flags win, gunicorn ignores gdirty_* names
# ---------------------------------------------------------------------------

BAD_SETTINGS = [
    ("gdirty_max_worker_memory = '2G'\n", [], None,
     'gdirty_max_worker_memory = "2G": unknown unit "G"'),
    ("gdirty_max_requests = -1\n", [], None, "gdirty_max_requests = -1: must be a whole number >= 0"),
    ("gdirty_worker_ttl = 5\n", ["--worker-ttl", "soon"], None, '--worker-ttl = "soon": must be a number of seconds'),
    ("", [], 'max_requests = "many"\n', 'max_requests = "many": must be a whole number >= 0'),
    ("gdirty_devices = {0, 1}\n", [], None, "Invalid value for gdirty_devices: {0, 1}"),
    ("gdirty_devices = 2\nraw_env = ['CUDA_VISIBLE_DEVICES=0']\n", [], None,
     "env/raw_env sets CUDA_VISIBLE_DEVICES too"),
]


@pytest.mark.parametrize("extra,args,toml,want", BAD_SETTINGS,
                         ids=["unit", "negative", "flag", "toml", "set", "raw_env"])
def test_bad_settings_are_one_line_errors(gdirty_spawn, tmp_path, extra, args, toml, want):
    if toml is not None:
        path = tmp_path / "gdirty.toml"
        path.write_text(toml)
        args = [*args, "--gdirty-config", str(path)]
    g = gdirty_spawn(dirty_config([COUNTER], workers=1, extra=extra), args=args)
    rc = g.proc.wait(60)
    err = g.stderr().strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert want in err


def test_flags_win_over_toml_over_the_config_file(gdirty_start, tmp_path):
    toml = tmp_path / "gdirty.toml"
    toml.write_text("max_requests = 200\ndevices = 2\n")
    conf = "gdirty_max_requests = 100\ngdirty_devices = 8\ngdirty_worker_ttl = 3600\ngdirty_max_reqests = 5\n"
    g = gdirty_start(dirty_config([COUNTER], workers=1, extra=conf), workers=1,
                     args=["--gdirty-config", str(toml), "--max-requests", "300"])
    log = g.stderr()
    assert "Recycling dirty workers on: max_requests 300 (+0..0), worker_ttl 1h0m0s" in log
    assert "Devices 0,1: 1 per worker through CUDA_VISIBLE_DEVICES" in log
    assert "unknown gdirty setting gdirty_max_reqests (ignored)" in log


@pytest.mark.compat
def test_gunicorn_itself_ignores_gdirty_names(tmp_path):
    # Every gdirty_* name of this feature, on whichever gunicorn runs the
    # test (the compatibility subset runs it on every listed release).
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(dirty_config([COUNTER], workers=1, extra=(
        "gdirty_max_requests = 10\ngdirty_max_requests_jitter = 5\n"
        "gdirty_max_worker_memory = '2GiB'\ngdirty_worker_ttl = 60\ngdirty_worker_idle_ttl = 30\n"
        "gdirty_devices = ['0', '1']\ngdirty_devices_per_worker = 1\ngdirty_devices_shared = True\n"
        "gdirty_devices_env = 'HIP_VISIBLE_DEVICES'\n")))
    res = subprocess.run([PYTHON, "-m", "gunicorn", "--check-config", "-c", str(conf), "wsgi_app:app"],
                         cwd=str(APPS_DIR), env=clean_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
