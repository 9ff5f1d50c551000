"""Looking inside: ``gdirty status`` (table and JSON) against gdirty and
against gunicorn's own dirty arbiter, STATUS and MANAGE answers compared in
shape with gunicorn's arbiter answering the same messages, and the
Prometheus metrics after a known load."""

import json
import re
import subprocess
import urllib.request
import uuid

import pytest

import gversions

# Raw binary frames, STATUS / MANAGE: protocol v1 (gunicorn 25.1+).
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from conftest import (
    APPS_DIR, ECHO, ONE, PYTHON, START_TIMEOUT, GDirtyLauncher, clean_env, connect, dirty_config,
    next_id, query_status, stop_process, wait_until,
)
from gunicorn.dirty.errors import (
    DirtyAppError, DirtyNoWorkersAvailableError, DirtyTimeoutError, DirtyWorkerError,
)
from gversions import control_socket_args
from gunicorn.dirty.protocol import BinaryProtocol as BP
from gunicorn.dirty.stash import StashClient
from test_vs_gunicorn import _ARBITER_RE, reference  # noqa: F401  (gunicorn's own arbiter)

LC = "lc_apps:LcApp"


# ---------------------------------------------------------------------------
# gdirty status
# ---------------------------------------------------------------------------

def run_status(gdirty_bin, *args, env=None):
    return subprocess.run([str(gdirty_bin), "status", *args], capture_output=True, text=True,
                          timeout=60, env=clean_env(env))


def check_table(out, st):
    lines = out.splitlines()
    assert lines[0] == f"arbiter pid {st['arbiter_pid']}, {st['worker_count']} workers", out
    assert lines[1] == "apps: " + ", ".join(st["apps"]), out
    assert lines[2] == ""
    assert lines[3].split() == ["PID", "AGE", "BOOTED", "HEARTBEAT", "APPS"], out
    rows = lines[4:]
    assert len(rows) == len(st["workers"]), out
    for row, w in zip(rows, st["workers"]):
        m = re.match(r"^(\d+)\s+(\d+)\s+(yes|no)\s+(\d+\.\d\ds ago|-)\s+(.+)$", row)
        assert m, row
        assert int(m.group(1)) == w["pid"] and int(m.group(2)) == w["age"]
        assert m.group(3) == ("yes" if w["booted"] else "no")
        assert m.group(5) == ", ".join(w["apps"])


def check_json(out, st):
    got = json.loads(out)
    assert list(got) == list(st) == ["arbiter_pid", "workers", "worker_count", "apps"]
    assert got["arbiter_pid"] == st["arbiter_pid"]
    assert got["worker_count"] == st["worker_count"]
    assert got["apps"] == st["apps"]
    assert [list(w) for w in got["workers"]] == [list(w) for w in st["workers"]]
    assert [(w["pid"], w["age"], w["apps"], w["booted"]) for w in got["workers"]] == \
        [(w["pid"], w["age"], w["apps"], w["booted"]) for w in st["workers"]]
    assert all(isinstance(w["last_heartbeat"], float) for w in got["workers"])


@pytest.mark.parametrize("target", ["gdirty", "gunicorn"])
def test_status_command_table_and_json(gdirty_bin, main_gdirty, reference, target):
    path = main_gdirty.socket_path if target == "gdirty" else reference
    st = query_status(path)
    res = run_status(gdirty_bin, "--socket", path)
    assert res.returncode == 0, res.stderr
    check_table(res.stdout, st)
    if target == "gdirty":
        assert "no" not in res.stdout.split()  # every worker booted
        assert st["arbiter_pid"] == main_gdirty.pid
    # --json, socket from GUNICORN_DIRTY_SOCKET as gunicorn's tools have it
    res = run_status(gdirty_bin, "--json", env={"GUNICORN_DIRTY_SOCKET": path})
    assert res.returncode == 0, res.stderr
    check_json(res.stdout, st)


def test_status_command_errors(gdirty_bin, tmp_path):
    res = run_status(gdirty_bin)
    assert res.returncode != 0 and "no socket" in res.stderr
    missing = tmp_path / "nope.sock"
    res = run_status(gdirty_bin, "--socket", str(missing))
    assert res.returncode != 0 and str(missing) in res.stderr
    assert res.stdout == ""


# ---------------------------------------------------------------------------
# STATUS and MANAGE: same shape as gunicorn's own arbiter
# ---------------------------------------------------------------------------

MANAGE_CONFIGS = {
    # an unlimited app: add and remove both work, remove stops at 1
    "open": dirty_config([ECHO], workers=1),
    # only a limited app (1 worker): add cannot spawn
    "limited": dirty_config([ONE], workers=1),
}


def start_gunicorn_arbiters(tmp_path_factory, configs):
    """gunicorn masters with their own dirty arbiters (one per config),
    started together; returns ({name: socket_path}, [procs])."""
    started = {}
    for name, text in configs.items():
        workdir = tmp_path_factory.mktemp(f"gunicorn-ref-{name}")
        (workdir / "gunicorn.conf.py").write_text(text)
        err = workdir / "gunicorn.stderr"
        cmd = [PYTHON, "-m", "gunicorn", "-c", str(workdir / "gunicorn.conf.py"), "-b", "127.0.0.1:0",
               "-w", "1", "--name", f"gdirty-lcref-{uuid.uuid4().hex[:12]}",
               *control_socket_args(workdir / "gunicorn.ctl"), "wsgi_app:app"]
        with open(err, "wb") as f:
            proc = subprocess.Popen(cmd, cwd=str(APPS_DIR), env=clean_env(), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
        started[name] = (proc, err)
    paths = {}
    for name, (proc, err) in started.items():
        def spawned():
            if proc.poll() is not None:
                pytest.fail(f"reference gunicorn exited {proc.returncode}: {err.read_text()}")
            return _ARBITER_RE.search(err.read_text(errors="replace"))

        paths[name] = wait_until(spawned, START_TIMEOUT, "gunicorn's dirty arbiter").group(2)

        def serving(path=paths[name]):
            try:
                st = query_status(path)
                return st["worker_count"] == 1 and len(st["workers"]) == 1
            except OSError:
                return False

        wait_until(serving, START_TIMEOUT, "gunicorn's dirty worker", interval=0.1)
    return paths, [p for p, _ in started.values()]


def manage(path, op, count):
    rid = next_id()
    with connect(path) as s:
        s.sendall(BP.encode_manage(rid, op, count))
        msg = BP.read_message(s)
    assert msg["id"] == rid, msg
    return msg


def shape(value):
    """Keys, their order and value types, recursively; values dropped."""
    if isinstance(value, dict):
        return {"dict": [(k, shape(v)) for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [shape(v) for v in value[:1]]}
    return type(value).__name__


# Each step: (config, op, count). Run in this order on both arbiters.
MANAGE_STEPS = [
    ("add", "open", 1, 1),
    ("remove", "open", 2, 1),
    ("remove_at_minimum", "open", 2, 1),
    ("add_at_limit", "limited", 1, 1),
    ("unknown_op", "open", 7, 1),
]


@pytest.fixture(scope="module")
def manage_answers(gdirty_bin, tmp_path_factory):
    """The MANAGE steps sent to gunicorn's arbiters and to gdirty instances
    with the same configs: {step: (gunicorn's message, gdirty's message)},
    plus STATUS from each."""
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-manage")
    procs = []
    try:
        ref_paths, procs = start_gunicorn_arbiters(tmp_path_factory, MANAGE_CONFIGS)
        ours = {name: launcher.start(text, workers=1).socket_path
                for name, text in MANAGE_CONFIGS.items()}
        answers = {"status": (query_status(ref_paths["open"]), query_status(ours["open"]))}
        for step, config, op, count in MANAGE_STEPS:
            ref = manage(ref_paths[config], op, count)
            got = manage(ours[config], op, count)
            answers[step] = (ref, got)
            if step == "add":
                # let both spawn and register the new worker before removing
                for path in (ref_paths[config], ours[config]):
                    wait_until(lambda p=path: query_status(p)["worker_count"] == 2, 60,
                               "the added worker")
                answers["status_after_add"] = (query_status(ref_paths[config]),
                                               query_status(ours[config]))
            if step == "remove":
                for path in (ref_paths[config], ours[config]):
                    wait_until(lambda p=path: query_status(p)["worker_count"] == 1, 60,
                               "the removed worker to go")
        yield answers
    finally:
        for p in procs:
            stop_process(p)
        launcher.stop_all()


@pytest.mark.parametrize("step", ["status", "status_after_add", "add", "remove", "add_at_limit",
                                  "unknown_op"])
@pytest.mark.compat
def test_status_and_manage_shapes_same_as_gunicorn(manage_answers, step):
    ref, got = manage_answers[step]
    assert shape(got) == shape(ref), f"gunicorn: {ref!r}\ngdirty:   {got!r}"


@pytest.mark.compat
def test_manage_values_same_as_gunicorn(manage_answers):
    for step in ("add", "remove", "remove_at_minimum", "add_at_limit"):
        ref, got = manage_answers[step]
        r, g = ref["result"], got["result"]
        for key in ("success", "operation", "requested", "target_workers"):
            assert g[key] == r[key], (step, key, r, g)
        for key in ("spawned", "removed", "reason"):
            if key in r:
                assert g[key] == r[key], (step, key, r, g)
    ref, got = manage_answers["unknown_op"]
    assert got["type"] == ref["type"] == "error"
    assert got["error"] == ref["error"]


def test_manage_remove_at_minimum_shape_same_as_gunicorn(manage_answers):
    ref, got = manage_answers["remove_at_minimum"]
    assert ref["result"]["removed"] == got["result"]["removed"] == 0
    assert shape(got) == shape(ref), f"gunicorn: {ref!r}\ngdirty:   {got!r}"


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_known_load(gdirty_start, tmp_path):
    timeout = 2
    g = gdirty_start(dirty_config([LC], workers=2, threads=2, timeout=timeout),
                     workers=2, args=["--metrics-bind", "127.0.0.1:0"])
    m = wait_until(lambda: re.search(r"Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)", g.stderr()),
                   20, "the metrics address in the log")
    url = m.group(1)
    s0 = scrape(url)
    assert sample(s0, "gdirty_workers") == 2
    assert sample(s0, "gdirty_worker_starts_total") == 2
    assert sample(s0, "gdirty_requests_in_flight") == 0

    n_ok, n_err, n_unknown = 7, 3, 2
    c = g.client(timeout=30)
    try:
        for i in range(n_ok):
            assert c.execute(LC, "echo_value", i) == i
        for i in range(n_err):
            with pytest.raises(DirtyAppError):
                c.execute(LC, "fail", f"bad {i}")
        for i in range(n_unknown):
            with pytest.raises(DirtyNoWorkersAvailableError):
                c.execute("lc_apps:NoSuchApp", "echo_value", i)
        assert list(c.stream(LC, "count", 4)) == [0, 1, 2, 3]
        with pytest.raises(DirtyTimeoutError):
            c.execute(LC, "sleep", timeout + 1.0)
    finally:
        c.close()
    # a worker dying mid-call
    c = g.client(timeout=30)
    try:
        with pytest.raises(DirtyWorkerError):
            c.execute(LC, "crash")
    finally:
        c.close()
    with StashClient(g.socket_path) as stash:
        stash.put("lc_table", "key", "value" * 10)

    def settled():
        s = scrape(url)
        st = g.status()
        ok = (sample(s, "gdirty_worker_exits_total") == 2      # recycled + crashed
              and sample(s, "gdirty_workers") == 2
              and len(st["workers"]) == 2 and all(w["booted"] for w in st["workers"]))
        return s if ok else None

    s = wait_until(settled, 60, lambda: f"the pool to settle; metrics {scrape(url)!r}", interval=0.2)
    req = "gdirty_requests_total"
    assert sample(s, req, app=LC, action="echo_value", outcome="ok") == n_ok
    assert sample(s, req, app=LC, action="fail", outcome="app_error") == n_err
    assert sample(s, req, app="(unknown)", action="(unknown)", outcome="no_workers") == n_unknown
    assert sample(s, req, app=LC, action="count", outcome="ok") == 1
    assert sample(s, req, app=LC, action="sleep", outcome="timeout") == 1
    assert sample(s, req, app=LC, action="crash", outcome="worker_died") == 1
    total = sum(v for (name, _), v in s.items() if name == req)
    assert total == n_ok + n_err + n_unknown + 3
    assert sample(s, "gdirty_request_duration_seconds_count", app=LC) == n_ok + n_err + 3
    assert sample(s, "gdirty_request_duration_seconds_count", app="(unknown)") == n_unknown
    # the timed-out call took about dirty_timeout
    assert sample(s, "gdirty_request_duration_seconds_sum", app=LC) >= timeout
    assert sample(s, "gdirty_call_timeouts_total") == 1
    assert sample(s, "gdirty_requests_in_flight") == 0
    assert sample(s, "gdirty_queue_depth") == 0
    # 2 at start, 1 replacing the stuck worker, 1 replacing the crashed one
    assert sample(s, "gdirty_worker_starts_total") == 4
    assert sample(s, "gdirty_worker_retirements_total", reason="timeout") == 1
    assert sample(s, "gdirty_stash_tables") == 1
    assert sample(s, "gdirty_stash_entries") == 1
    assert sample(s, "gdirty_stash_bytes") > 0
    # the Go runtime and process collectors are there too
    assert any(name == "go_goroutines" for name, _ in s)
    assert any(name == "process_resident_memory_bytes" for name, _ in s)
