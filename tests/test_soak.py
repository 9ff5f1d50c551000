"""A short chaos soak inside the normal suite (tests/soak.py; `make soak`
runs the long one): concurrent callers with gunicorn's DirtyClient and raw
sockets while workers are SIGKILLed and gdirty is reloaded (SIGHUP).

The soak runs as its own process (it forks its callers); it reports its
figures as JSON, and this test asserts them."""

import json
import subprocess
import sys

import pytest

import gversions

# Raw binary frames (protocol v1, gunicorn 25.1+) drive this tool.
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from conftest import ROOT

DURATION = 25


def test_chaos_soak(gdirty_bin, tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "tests" / "soak.py"), "--duration", str(DURATION),
           "--binary", str(gdirty_bin), "--json", str(out), "--quiet",
           "--callers", "5", "--min-calls", "100"]
    # bounded: duration + start-up + the soak's own recovery deadlines
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=DURATION + 600)
    print(res.stdout)
    assert out.exists(), f"soak wrote no figures (rc {res.returncode}):\n{res.stdout}\n{res.stderr}"
    fig = json.loads(out.read_text())
    assert res.returncode == 0 and not fig["failures"], (
        f"soak failed (rc {res.returncode}):\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}")
    # the figures the soak itself checked, restated so a regression reads plainly
    assert fig["wrong_answers"] == 0
    assert fig["missing_answers"] == 0
    assert not fig["unexpected"]
    assert fig["kills"] > 0 and fig["hups"] > 0
    assert fig["calls"] >= 100
    assert fig["gdirty_counted_calls"] == fig["calls"]
    assert fig["gdirty_exit"] == 0
    assert set(fig["errors_by_type"]) <= {"DirtyWorkerError", "DirtyTimeoutError", "NoWorkers"}


# ---------------------------------------------------------------------------
# Reload (SIGHUP) in isolation, and racing worker deaths
# ---------------------------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402

from conftest import dirty_config, wait_until  # noqa: E402

APP = "hostile_apps:HostileApp"
WORKERS = 3


def _ages(g):
    return {w["pid"]: w["age"] for w in g.status()["workers"]}


def _reloaded_after(g, old_max_age):
    """STATUS shows exactly WORKERS booted workers, all spawned after
    ``old_max_age`` (i.e. by the reload or later)."""
    ws = g.status()["workers"]
    return (len(ws) == WORKERS and all(w["booted"] for w in ws)
            and all(w["age"] > old_max_age for w in ws))


def test_reload_under_load_loses_no_call(gdirty_start):
    """SIGHUP replaces every worker, new ones up before old ones retire: a
    steady stream of calls and streams sees no error at all."""
    g = gdirty_start(dirty_config([APP], workers=WORKERS, threads=4), workers=WORKERS)
    stop = threading.Event()
    errors, counts = [], {"calls": 0}

    def caller(i):
        c = g.client(timeout=60)
        try:
            while not stop.is_set():
                tok = f"{i}-{uuid.uuid4()}"
                try:
                    if counts["calls"] % 3 == 0:
                        got = list(c.stream(APP, "tok_stream", tok, 5, 0.01))
                        ok = got == [{"token": tok, "i": k} for k in range(5)]
                    else:
                        got = c.execute(APP, "token", tok, 0.02)
                        ok = got["token"] == tok
                    if not ok:
                        errors.append(f"wrong answer for {tok}: {got!r}")
                except Exception as e:
                    errors.append(repr(e))
                counts["calls"] += 1
        finally:
            c.close()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            old_max = max(_ages(g).values())
            before = counts["calls"]
            os.kill(g.pid, signal.SIGHUP)
            wait_until(lambda: _reloaded_after(g, old_max), 60.0,
                       lambda: f"the reload to replace every worker: {g.status()['workers']}")
            wait_until(lambda: counts["calls"] > before + 20, 60.0, "calls to keep flowing")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, f"{len(errors)} failed calls during reloads: {errors[:5]}"
    assert counts["calls"] > 60


def test_reload_racing_worker_deaths_keeps_worker_count(gdirty_start):
    """SIGHUP while workers die: afterwards exactly dirty_workers workers
    run, and all of them were started by the reload (or later).

    Regression test: Pool.Reload used to list the workers to replace, then
    restart the fork server, then spawn one replacement per listed worker;
    a listed worker dying in between was respawned by the crash path as
    well, leaving dirty_workers + 1 workers for good."""
    g = gdirty_start(dirty_config([APP], workers=WORKERS, threads=2), workers=WORKERS)
    for round_ in range(3):
        ages = _ages(g)
        old_max = max(ages.values())
        victim = min(ages, key=ages.get)
        os.kill(g.pid, signal.SIGHUP)
        os.kill(victim, signal.SIGKILL)  # dies while the reload starts
        wait_until(lambda: _reloaded_after(g, old_max), 30.0,
                   lambda: f"round {round_}: exactly {WORKERS} workers, all newer than "
                           f"age {old_max}; STATUS workers {g.status()['workers']}")
    c = g.client()
    try:
        assert c.execute(APP, "token", "after")["token"] == "after"
    finally:
        c.close()
