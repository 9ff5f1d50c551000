"""Differential tests: the same request frames go to gunicorn's own dirty
arbiter (a real gunicorn master with dirty_workers > 0, running the same
config and DirtyApps) and to gdirty; the answers must be the same.

Answers are compared as gunicorn's encoding of the decoded frames after
normalising what legitimately differs between two runs of the same app:
the body of a traceback (file paths of the worker host; its last line, the
exception, must match) and ``0x...`` object addresses in messages.
"""

import copy
import re
import subprocess
import uuid

import pytest

import gversions

# Raw binary frames, STATUS / MANAGE: protocol v1 (gunicorn 25.1+).
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

import dvalues
from conftest import (
    APPS_DIR, ECHO, MAIN_CONFIG, ONE, OVERRIDDEN, PYTHON, SPEC, START_TIMEOUT,
    clean_env, connect, query_status, stop_process, wait_until,
)
from gversions import control_socket_args
from gunicorn.dirty.protocol import BinaryProtocol as BP
from gunicorn.dirty.tlv import TLVEncoder

_ARBITER_RE = re.compile(r"Spawned dirty arbiter \(pid: (\d+)\) at (\S+)")
_ADDR_RE = re.compile(r"0x[0-9a-f]+")
TERMINAL = ("response", "error", "end")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """gunicorn 27's own dirty arbiter, same config as ``main_gdirty``."""
    workdir = tmp_path_factory.mktemp("gunicorn-reference")
    config = workdir / "gunicorn.conf.py"
    config.write_text(MAIN_CONFIG)
    stderr_path = workdir / "gunicorn.stderr"
    # a unique proc name: gunicorn keeps a dirty-arbiter PID file named after it
    cmd = [PYTHON, "-m", "gunicorn", "-c", str(config), "-b", "127.0.0.1:0", "-w", "1",
           "--name", f"gdirty-ref-{uuid.uuid4().hex[:12]}",
           *control_socket_args(workdir / "gunicorn.ctl"), "wsgi_app:app"]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=str(APPS_DIR), env=clean_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    try:
        def spawned():
            if proc.poll() is not None:
                pytest.fail(f"reference gunicorn exited {proc.returncode}: "
                            f"{stderr_path.read_text()}")
            return _ARBITER_RE.search(stderr_path.read_text(errors="replace"))

        m = wait_until(spawned, START_TIMEOUT, "gunicorn's dirty arbiter to start")
        path = m.group(2)

        def serving():
            try:
                if query_status(path)["worker_count"] != 3:
                    return False
                with connect(path, timeout=10) as s:
                    for i, app in enumerate((ECHO, ONE, SPEC, OVERRIDDEN)):
                        s.sendall(BP.encode_request(i, app, "pid"))
                        if BP.read_message(s)["type"] != "response":
                            return False
                return True
            except OSError:
                return False

        wait_until(serving, START_TIMEOUT, "gunicorn's dirty workers to serve", interval=0.1)
        yield path
    finally:
        stop_process(proc)


def normalized(msg):
    msg = copy.deepcopy(msg)
    if msg["type"] == "error":
        err = msg["error"]
        if isinstance(err.get("message"), str):
            err["message"] = _ADDR_RE.sub("0x?", err["message"])
        details = err.get("details")
        if isinstance(details, dict) and isinstance(details.get("traceback"), str):
            last = details["traceback"].rstrip().splitlines()[-1]
            details["traceback"] = _ADDR_RE.sub("0x?", last)
    return BP._encode_from_dict(msg)


def exchange(path, frames, timeout=30.0):
    """Send ``frames`` pipelined on one connection; read until each got its
    final message; return the normalised answers."""
    out = []
    with connect(path, timeout=timeout) as s:
        s.sendall(b"".join(frames))
        finals = 0
        while finals < len(frames):
            msg = BP.read_message(s)
            out.append(normalized(msg))
            finals += msg["type"] in TERMINAL
    return out


def assert_same(reference, gdirty, frames):
    want = exchange(reference, frames)
    got = exchange(gdirty.socket_path, frames)
    assert got == want, (
        "gdirty answered differently from gunicorn:\n  gunicorn: "
        + repr([BP.decode_message(f) for f in want])[:1500]
        + "\n  gdirty:   " + repr([BP.decode_message(f) for f in got])[:1500])


def raw_request(rid, payload):
    body = TLVEncoder.encode(payload)
    return BP.encode_header(0x01, rid, len(body)) + body


@pytest.mark.parametrize("name", sorted(dvalues.CASES))
def test_values_same_as_gunicorn(reference, main_gdirty, name):
    sent, _ = dvalues.CASES[name]
    assert_same(reference, main_gdirty, [BP.encode_request(77, ECHO, "echo_value", (sent,))])


CALLS = {
    "args_kwargs": (ECHO, "echo", (1, "a", [None]), {"k": {"n": 1.5}, "b": b"\xff"}),
    "no_args": (ECHO, "echo", (), {}),
    "app_exception": (ECHO, "fail", ("went wrong",), {}),
    "key_error_message": (ECHO, "fail_key", (), {}),
    "unknown_app": ("dapps:NoSuchApp", "echo", (), {}),
    "unknown_module": ("no_such_module:App", "echo", (), {}),
    "spec_suffix_is_not_an_app": (SPEC + ":2", "pid", (), {}),
    "unknown_action": (ECHO, "no_such_action", (), {}),
    "private_action": (ECHO, "_secret", (), {}),
    "dunder_action": (ECHO, "__init__", (), {}),
    "empty_action": (ECHO, "", (), {}),
    "not_callable_attribute": (ECHO, "calls", (), {}),
    "bad_kwarg": (ECHO, "echo_value", (), {"nope": 1}),
    "missing_arg": (ECHO, "echo_value", (), {}),
    "unencodable_result": (ECHO, "unencodable", (), {}),
    "sync_stream": (ECHO, "squares", (5,), {}),
    "async_stream": (ECHO, "acount", (7,), {}),
    "empty_stream": (ECHO, "empty_stream", (), {}),
    "sync_stream_error": (ECHO, "count_then_fail", (3,), {"message": "m"}),
    "async_stream_error": (ECHO, "acount_then_fail", (2,), {"message": "m"}),
    "limited_app_one": (ONE, "app_name", (), {}),
    "limited_app_spec": (SPEC, "app_name", (), {}),
    "limited_app_overridden": (OVERRIDDEN, "app_name", (), {}),
}


@pytest.mark.parametrize("case", sorted(CALLS))
@pytest.mark.compat
def test_call_same_as_gunicorn(reference, main_gdirty, case):
    app, action, args, kwargs = CALLS[case]
    assert_same(reference, main_gdirty,
                [BP.encode_request(2 ** 64 - 1, app, action, args, kwargs)])


def test_pipelined_mixture_same_as_gunicorn(reference, main_gdirty):
    frames = []
    for i, case in enumerate(sorted(CALLS)):
        app, action, args, kwargs = CALLS[case]
        frames.append(BP.encode_request(i * 7919, app, action, args, kwargs))
    assert_same(reference, main_gdirty, frames)


@pytest.mark.parametrize("case,payload", [
    ("missing_args_and_kwargs", {"app_path": ECHO, "action": "echo"}),
    ("null_args_and_kwargs", {"app_path": ECHO, "action": "echo", "args": None, "kwargs": None}),
    ("extra_keys", {"app_path": ECHO, "action": "echo", "args": [1], "kwargs": {}, "x": 1}),
    ("key_order", {"kwargs": {"a": 1}, "args": [2], "action": "echo", "app_path": ECHO}),
])
def test_unusual_but_valid_requests_same_as_gunicorn(reference, main_gdirty, case, payload):
    assert_same(reference, main_gdirty, [raw_request(5, payload)])


@pytest.mark.compat
def test_status_same_shape_as_gunicorn(reference, main_gdirty):
    ref = query_status(reference)
    got = main_gdirty.status()
    assert list(got) == list(ref)
    assert got["apps"] == ref["apps"]
    assert got["worker_count"] == ref["worker_count"]
    assert [list(w) for w in got["workers"]] == [list(w) for w in ref["workers"]]
    assert [(w["age"], w["apps"]) for w in got["workers"]] == \
        [(w["age"], w["apps"]) for w in ref["workers"]]
    for g, r in zip(got["workers"], ref["workers"]):
        assert type(g["pid"]) is type(r["pid"]) is int
        assert type(g["last_heartbeat"]) is type(r["last_heartbeat"]) is float
        assert type(g["booted"]) is type(r["booted"]) is bool
        # (gunicorn's arbiter always reports booted False: its copy of the
        # worker object is never updated after the fork; gdirty reports the
        # truth, which is the point of the field.)


@pytest.mark.parametrize("app", [ECHO, SPEC])
def test_rotation_pattern_same_as_gunicorn(reference, main_gdirty, app):
    """gunicorn documents that calls one after another rotate round-robin
    over an app's workers: the sequence of worker ages must have the same
    period on both."""
    def ages(path, status):
        age_of = {w["pid"]: w["age"] for w in status["workers"]}
        with connect(path) as s:
            seq = []
            for i in range(12):
                s.sendall(BP.encode_request(i, app, "pid"))
                seq.append(age_of[BP.read_message(s)["result"]])
        return seq

    ref = ages(reference, query_status(reference))
    got = ages(main_gdirty.socket_path, main_gdirty.status())
    period = len(set(ref))
    assert len(set(got)) == period
    assert all(ref[i] != ref[i + 1] for i in range(len(ref) - 1)) or period == 1
    assert all(got[i] == got[i + period] for i in range(len(got) - period)), got
    assert all(len(set(got[i:i + period])) == period for i in range(len(got) - period + 1)), got


# ---------------------------------------------------------------------------
# Former differences, now matched: a falsy app_path goes to any worker,
# a non-str one gets gunicorn's DirtyNoWorkersAvailableError.
# ---------------------------------------------------------------------------

def test_empty_app_path_same_as_gunicorn(reference, main_gdirty):
    assert_same(reference, main_gdirty, [BP.encode_request(3, "", "echo_value", ("x",))])


def test_non_string_app_path_same_as_gunicorn(reference, main_gdirty):
    assert_same(reference, main_gdirty, [BP.encode_request(3, 5, "echo")])
