"""Protocol v0: gunicorn 25.0.0–25.0.3's JSON protocol, through gdirty.

Needs an interpreter with gunicorn 25.0.x (and gdirty_pyshim's
dependencies, i.e. just gunicorn): GDIRTY_TEST_VENV_25_0 names its venv
(default: .venv-25.0.3 in the repository, made with
``python3 -m venv .venv-25.0.3 && .venv-25.0.3/bin/pip install
gunicorn==25.0.3``). Without one the module is skipped, saying so.

gdirty's workers run that interpreter; gunicorn 25.0.3's own clients
(DirtyClient execute / stream / execute_async / stream_async, and a real
gunicorn 25.0.3 master with sync and asgi workers) call through gdirty; raw
answers are compared byte for byte with gunicorn 25.0.3's own arbiter
(tracebacks aside: they name different files); malformed JSON frames are
answered or closed per connection while other connections carry on.
"""

import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import gunicorn
import pytest
from gunicorn.dirty.errors import DirtyAppError

import conftest
from conftest import (APPS_DIR, ECHO, ROOT, GDirtyLauncher, GunicornLauncher,
                      dirty_config, stop_process, wait_until)

VENV_ENV = "GDIRTY_TEST_VENV_25_0"


# The venvs looked for, in order, when the suite itself does not run on
# 25.0.x: $GDIRTY_TEST_VENV_25_0, the version matrix's venv, a hand-made one.
DEFAULT_VENVS = (".venv-gunicorn-25.0.3", ".venv-25.0.3")


def _python_25_0():
    if RUNS_ON_25_0 and VENV_ENV not in os.environ:
        return sys.executable, gunicorn.__version__
    venvs = [os.environ[VENV_ENV]] if VENV_ENV in os.environ else [str(ROOT / v) for v in DEFAULT_VENVS]
    py = next((Path(v) / "bin" / "python" for v in venvs if (Path(v) / "bin" / "python").exists()), None)
    if py is None:
        return None, f"no gunicorn 25.0.x venv at {' or '.join(venvs)} (set {VENV_ENV})"
    res = subprocess.run([str(py), "-c", "import gunicorn; print(gunicorn.__version__)"],
                         capture_output=True, text=True, timeout=60)
    version = res.stdout.strip()
    if res.returncode != 0 or not version.startswith("25.0."):
        return None, f"{py} has gunicorn {version or '(none)'}, not 25.0.x (set {VENV_ENV})"
    return str(py), version


RUNS_ON_25_0 = gunicorn.__version__.startswith("25.0.")
PY25, _WHY = _python_25_0()
pytestmark = [pytest.mark.skipif(PY25 is None, reason=f"protocol v0 interop: {_WHY}")]
if RUNS_ON_25_0:
    # In the version matrix's compatibility subset for 25.0.x releases; on
    # other releases the same tests run once, in the whole suite.
    pytestmark.append(pytest.mark.compat)

# Both the fork-server workers and the config loader run the 25.0.x
# interpreter; pyshim comes from the tree (gdirty embeds it).
SHIM_ENV = {"PYTHONPATH": str(ROOT / "pyshim")}
CONFIG = dirty_config([ECHO], workers=2, threads=2)


@pytest.fixture(scope="module")
def v0_gdirty(gdirty_bin, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "PYTHON", PY25)
        launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-v0")
        g = launcher.start(CONFIG, workers=2)
        yield g
        launcher.stop_all()


@pytest.fixture(scope="module")
def gunicorn_arbiter(tmp_path_factory):
    """gunicorn 25.0.x's own DirtyArbiter on the same config (the
    reference the raw answers are compared with)."""
    workdir = tmp_path_factory.mktemp("gunicorn-25.0-arbiter")
    config = workdir / "gunicorn.conf.py"
    config.write_text(CONFIG)
    out = workdir / "stdout"
    with open(out, "wb") as o, open(workdir / "stderr", "wb") as e:
        proc = subprocess.Popen([PY25, str(ROOT / "bench" / "gunicorn_dirty.py"), str(config)],
                                cwd=str(APPS_DIR), stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def socket_path():
        if proc.poll() is not None:
            pytest.fail(f"gunicorn's arbiter exited {proc.returncode}")
        for line in out.read_text().splitlines():
            if line.startswith("GUNICORN_DIRTY_SOCKET="):
                path = line.split("=", 1)[1]
                return path if os.path.exists(path) else None
        return None

    path = wait_until(socket_path, 60, "gunicorn 25.0's arbiter socket")
    # Its workers are ready once a call succeeds.
    wait_until(lambda: _try_echo(path), 60, "gunicorn 25.0's workers to answer")
    yield path
    stop_process(proc)


# ---------------------------------------------------------------------------
# raw v0 frames
# ---------------------------------------------------------------------------

def frame(body):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return struct.pack("!I", len(body)) + body


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_body(sock):
    (n,) = struct.unpack("!I", recv_exactly(sock, 4))
    return recv_exactly(sock, n)


def recv_answer(sock):
    """Bodies until the final one (response, error or end)."""
    bodies = []
    while True:
        body = recv_body(sock)
        bodies.append(body)
        if json.loads(body)["type"] in ("response", "error", "end"):
            return bodies


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def call(path, body):
    with connect(path) as s:
        s.sendall(frame(body))
        return recv_answer(s)


def _try_echo(path):
    try:
        [b] = call(path, {"type": "request", "id": "probe", "app_path": ECHO,
                          "action": "echo_value", "args": [1], "kwargs": {}})
    except OSError:
        return False
    return json.loads(b)["type"] == "response"


def request(rid, app, action, *args, **kwargs):
    """gunicorn 25.0's make_request, key order included."""
    return {"type": "request", "id": rid, "app_path": app, "action": action,
            "args": list(args), "kwargs": kwargs}


def drop_traceback(body):
    """The answer with details.traceback emptied (it names files), re-dumped
    with json.dumps: for json.dumps output this is byte-identical apart
    from the traceback, which the assertion checks first."""
    msg = json.loads(body)
    assert json.dumps(msg).encode() == body, f"not json.dumps output: {body!r}"
    details = msg.get("error", {}).get("details")
    if isinstance(details, dict) and "traceback" in details:
        assert details["traceback"].startswith("Traceback (most recent call last):")
        details["traceback"] = "<traceback>"
    return json.dumps(msg).encode()


NASTY = [float("nan"), float("inf"), -0.0, 1e16, 1e-5, 2 ** 70, -(2 ** 63),
         "caf\u00e9 \U0001F600 \ud800 \"\\/\b\f\n\r\t\x00\x7f", [], {}, None, True]

# Raw bodies sent to both arbiters; each answer must be the same bytes.
SAME_AS_GUNICORN = {
    "echo": request("r1", ECHO, "echo", *NASTY, k=NASTY),
    "echo-unicode-id": request("caf\u00e9 \U0001F600 \ud800", ECHO, "echo_value", "x"),
    "int-id": request(7, ECHO, "echo_value", 1.5),
    "null-id": request(None, ECHO, "echo_value", 1),
    "list-id": request([1, {"a": "b"}], ECHO, "echo_value", 1),
    "stream-squares": request("s", ECHO, "squares", 4),
    "large-answer": request("big", ECHO, "text", 3 * 1024 * 1024),
    "large-request": request("big", ECHO, "echo_value", "\u00e9" * (2 * 1024 * 1024)),
    "empty-stream": request("s", ECHO, "empty_stream"),
    "async-stream": request("s", ECHO, "acount", 3),
    "stream-fails": request("s", ECHO, "count_then_fail", 2, "it broke"),
    "async-stream-fails": request("s", ECHO, "acount_then_fail", 2),
    "app-raises": request("e", ECHO, "fail", "boom \u00e9"),
    "app-raises-keyerror": request("e", ECHO, "fail_key"),
    "app-raises-oserror": request("e", ECHO, "fail_os", "/nonexistent/gdirty"),
    "result-set": request("e", ECHO, "unencodable"),
    "private-action": request("e", ECHO, "_secret"),
    "unknown-action": request("e", ECHO, "nope"),
    "null-action": request("e", ECHO, None),
    "unknown-app": request("e", "nope.mod:App", "x"),
    "unknown-app-unicode": request("e", "n\u00e9\U0001F600:App", "x"),
    "empty-app": request("e", "", "x"),
    "null-app": request("e", None, "echo_value", 3),
    "int-app": request("e", 5, "x"),
    "float-app": request("e", 1.5, "x"),
    "nan-app": request("e", float("nan"), "x"),
    "true-app": request("e", True, "x"),
    "zero-app": request("e", 0, "x"),
    "status-type": {"type": "status", "id": "t"},
    "no-type": {"id": "t", "app_path": ECHO, "action": "echo_value", "args": [1]},
    "no-id": {"type": "request", "app_path": "nope:App", "action": "x"},
    "null-args": {"type": "request", "id": "a", "app_path": ECHO, "action": "echo", "args": None},
    "no-args": {"type": "request", "id": "a", "app_path": ECHO, "action": "echo"},
    "dict-args": {"type": "request", "id": "a", "app_path": ECHO, "action": "echo", "args": {"x": 1}},
    "bad-kwargs": {"type": "request", "id": "a", "app_path": ECHO, "action": "echo_value", "args": [1], "kwargs": {"nope": 1}},
    "whitespace": b' \n\t{"type": "request", "id": "w", "app_path": "dapps:EchoApp", "action": "echo_value", "args": [1e5, 1E-7, -0, 1.50]} \r\n',
    "escapes": b'{"type": "request", "id": "\\u0041\\/", "app_path": "dapps:EchoApp", "action": "echo_value", "args": ["\\ud83d\\ude00\\uDC00"]}',
    "repeated-keys": b'{"type": "request", "id": "1", "id": "2", "app_path": "x:Y", "app_path": "dapps:EchoApp", "action": "echo_value", "args": [1], "args": [2]}',
}


@pytest.mark.parametrize("name", sorted(SAME_AS_GUNICORN))
def test_answers_are_gunicorn_25_0_bytes(name, v0_gdirty, gunicorn_arbiter):
    body = SAME_AS_GUNICORN[name]
    want = call(gunicorn_arbiter, body)
    got = call(v0_gdirty.socket_path, body)
    assert [drop_traceback(b) for b in got] == [drop_traceback(b) for b in want]
    # Where no traceback is involved the bytes are identical outright.
    if b'"traceback"' not in b"".join(want):
        assert got == want


def test_unencodable_results_get_25_0s_error(v0_gdirty):
    """bytes, sets and tuple keys are what JSON cannot carry: 25.0.3's
    worker reports the encoder's error as a DirtyAppError."""
    [b] = call(v0_gdirty.socket_path, request("u", ECHO, "unencodable"))
    err = json.loads(b)["error"]
    assert err["error_type"] == "DirtyAppError"
    assert err["message"] == "Failed to encode message: Object of type set is not JSON serializable"
    assert err["details"]["app_path"] == ECHO and err["details"]["action"] == "unencodable"


# ---------------------------------------------------------------------------
# gunicorn 25.0's own client
# ---------------------------------------------------------------------------

def run_client(socket_path, ops):
    res = subprocess.run([PY25, str(ROOT / "tests" / "v0_client.py"), socket_path],
                         input=json.dumps(ops), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def op(kind, action, *args, app=ECHO, **kwargs):
    return {"op": kind, "app": app, "action": action, "args": list(args), "kwargs": kwargs}


def test_dirty_client_sync_and_async(v0_gdirty):
    ops = [
        op("execute", "echo", 1, "caf\u00e9", x=[1.5, None]),
        op("stream", "count", 3),
        op("execute_async", "echo_value", {"k": [True, 2]}),
        op("stream_async", "acount", 2),
        op("stream_async", "squares", 3),
        op("execute", "fail", "boom"),
        op("stream", "count_then_fail", 2, "mid-stream"),
        op("execute_async", "unencodable"),
        op("stream_async", "acount_then_fail", 1),
        op("execute", "x", app="nope:App"),
        op("execute", "echo_value", "still fine"),
    ]
    out = run_client(v0_gdirty.socket_path, ops)
    assert out[0] == {"result": {"args": [1, "caf\u00e9"], "kwargs": {"x": [1.5, None]}}}
    assert [c["i"] for c in out[1]["chunks"]] == [0, 1, 2] and out[1]["error"] is None
    assert out[2] == {"result": {"k": [True, 2]}}
    assert out[3] == {"chunks": ["a0", "a1"], "error": None}
    assert out[4] == {"chunks": [0, 1, 4], "error": None}
    assert out[5]["error"] == {"type": "DirtyAppError", "message": "boom", "has_traceback": True,
                               "details": {"app_path": ECHO, "action": "fail"}}
    assert out[6]["chunks"] == [0, 1]
    assert out[6]["error"] == {"type": "DirtyAppError", "message": "mid-stream",
                               "details": {}, "has_traceback": True}
    assert out[7]["error"]["message"] == "Failed to encode message: Object of type set is not JSON serializable"
    assert out[8]["chunks"] == ["a0"] and out[8]["error"]["message"] == "'async stream broke'"
    assert out[9]["error"] == {"type": "DirtyNoWorkersAvailableError", "has_traceback": False,
                               "message": "No workers available for app: nope:App",
                               "details": {"app_path": "nope:App"}}
    assert out[10] == {"result": "still fine"}


# ---------------------------------------------------------------------------
# malformed frames: clear error, connection-local
# ---------------------------------------------------------------------------

def test_bad_json_is_answered_and_the_connection_carries_on(v0_gdirty):
    path = v0_gdirty.socket_path
    with connect(path) as s:
        for bad in (b"{bad", b'{"a": 1,}', b"[1]", b'{"a": "\xff"}', b""):
            s.sendall(frame(bad))
            msg = json.loads(recv_body(s))
            assert msg["type"] == "error" and msg["id"] == "unknown"
            err = msg["error"]
            assert err["error_type"] == "DirtyProtocolError"
            if bad:
                assert err["message"].startswith("Failed to decode message: ")
                assert err["details"] == {"raw_data": bad.hex()}
            else:
                assert err["message"] == "Empty message received"
        s.sendall(frame(request("after", ECHO, "echo_value", "ok")))
        assert recv_answer(s) == [b'{"type": "response", "id": "after", "result": "ok"}']


def test_broken_framing_closes_only_that_connection(v0_gdirty):
    path = v0_gdirty.socket_path
    bystander = connect(path)
    try:
        # a stream in progress on another connection
        bystander.sendall(frame(request("b", ECHO, "slow_stream", 3, 0.2)))
        first = json.loads(recv_body(bystander))
        assert first["type"] == "chunk"
        for bad in (struct.pack("!I", 64 * 1024 * 1024 + 1) + b"{}",  # over the limit
                    struct.pack("!I", 100) + b'{"type": '):            # cut short
            with connect(path) as s:
                s.sendall(bad)
                if bad.endswith(b": "):
                    s.shutdown(socket.SHUT_WR)
                assert s.recv(1) == b""  # closed, as gunicorn 25.0's arbiter does
        rest = recv_answer(bystander)
        assert [json.loads(b)["type"] for b in rest] == ["chunk", "chunk", "end"]
        bystander.sendall(frame(request("b2", ECHO, "echo_value", 2)))
        assert recv_answer(bystander) == [b'{"type": "response", "id": "b2", "result": 2}']
    finally:
        bystander.close()


@pytest.mark.skipif(importlib.util.find_spec("gunicorn.dirty.tlv") is None,
                    reason="the suite's own gunicorn has no binary (v1) client")
def test_v1_calls_to_25_0_workers(v0_gdirty):
    """A binary (25.1+) client's calls reach 25.0.x workers too: they decode
    it with pyshim's own TLV codec (25.0 has none). An app's own OSError is
    its error, not a dead link."""
    c = v0_gdirty.client()
    try:
        assert c.execute(ECHO, "echo", b"\x00", "\u00e9", k=[1.5, None]) == {
            "args": [b"\x00", "\u00e9"], "kwargs": {"k": [1.5, None]}}
        assert list(c.stream(ECHO, "squares", 3)) == [0, 1, 4]
        with pytest.raises(DirtyAppError) as ei:
            c.execute(ECHO, "fail_os", "/nonexistent/gdirty")
        assert ei.value.message == "[Errno 2] No such file or directory: '/nonexistent/gdirty'"
    finally:
        c.close()


def test_v0_and_v1_clients_share_one_gdirty(v0_gdirty):
    """The protocol is per connection: a 25.1+ (binary) STATUS works on the
    same socket while v0 connections are open."""
    with connect(v0_gdirty.socket_path) as s:
        s.sendall(frame(request("x", ECHO, "echo_value", 1)))
        st = v0_gdirty.status()
        assert st["worker_count"] == 2
        assert recv_answer(s) == [b'{"type": "response", "id": "x", "result": 1}']


# ---------------------------------------------------------------------------
# a real gunicorn 25.0 master and HTTP workers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sync", "asgi"])
def test_gunicorn_25_0_http_workers_through_gdirty(kind, v0_gdirty, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "PYTHON", PY25)
        # 25.0.x masters have no control socket (nor its option).
        mp.setattr(conftest, "control_socket_args", lambda path: [], raising=False)
        launcher = GunicornLauncher(tmp_path_factory)
        try:
            web = launcher.start(kind, v0_gdirty)
            out = web.run([
                {"op": "execute", "app": ECHO, "action": "echo", "args": [1, "\u00e9"], "kwargs": {"k": None}},
                {"op": "stream", "app": ECHO, "action": "count", "args": [3]},
                {"op": "stream", "app": ECHO, "action": "acount", "args": [2]},
                {"op": "execute", "app": ECHO, "action": "fail", "args": ["boom"]},
                {"op": "execute", "app": "nope:App", "action": "x"},
            ])
        finally:
            launcher.stop_all()
    assert out[0] == {"result": {"args": [1, "\u00e9"], "kwargs": {"k": None}}}
    assert [c["i"] for c in out[1]["chunks"]] == [0, 1, 2] and out[1]["error"] is None
    assert out[2] == {"chunks": ["a0", "a1"], "error": None}
    assert out[3]["error"]["type"] == "DirtyAppError" and out[3]["error"]["message"] == "boom"
    assert out[4]["error"]["type"] == "DirtyNoWorkersAvailableError"
    assert out[4]["error"]["message"] == "No workers available for app: nope:App"


# ---------------------------------------------------------------------------
# golden vectors and pyshim's v0 codec vs gunicorn 25.0's own
# ---------------------------------------------------------------------------

def test_v0_golden_vectors_are_current(tmp_path):
    gen = ROOT / "testdata" / "golden" / "gen_v0_vectors.py"
    res = subprocess.run([PY25, str(gen), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    name = "v0_vectors.json"
    want = (ROOT / "testdata" / "golden" / name).read_bytes()
    got = (tmp_path / name).read_bytes()
    # Made from 25.0.3; another 25.0.x release must give the same bytes but
    # for the version it records.
    recorded = json.loads(want)["gunicorn_version"]
    got = got.replace(f'"gunicorn_version": "{json.loads(got)["gunicorn_version"]}"'.encode(),
                      f'"gunicorn_version": "{recorded}"'.encode(), 1)
    assert got == want, (
        f"testdata/golden/{name} is stale: run {PY25} testdata/golden/gen_v0_vectors.py "
        f"(with gunicorn {recorded})")


PYSHIM_CHECK = r"""
import json, math, sys
from gunicorn.dirty import errors as E
from gunicorn.dirty.protocol import (DirtyProtocol, make_chunk_message,
    make_end_message, make_error_response, make_response)
from gdirty_pyshim import v0

values = json.loads(sys.stdin.read(), parse_constant=float)
values += [(1, 2), {1: "int key", 2.5: "float key", None: "none", True: "t"}]
for rid in ("r", 7, None, "caf\u00e9 \ud800"):
    codec = v0.Codec(rid)
    for v in values:
        assert codec.response(v) == DirtyProtocol.encode(make_response(rid, v))[4:]
        assert codec.chunk(v) == DirtyProtocol.encode(make_chunk_message(rid, v))[4:]
    assert codec.end() == DirtyProtocol.encode(make_end_message(rid))[4:]
    for err in (E.DirtyAppError("m", app_path="a:B", action="x", traceback="tb"),
                E.DirtyWorkerError("Unknown message type: None"), ValueError("v"),
                {"error_type": "X", "message": "y", "details": {}}):
        assert codec.error(err) == DirtyProtocol.encode(make_error_response(rid, err))[4:]
cyc = []
cyc.append(cyc)
for bad in (b"bytes", {1, 2}, {(1, 2): 3}, cyc, "x" * (64 * 1024 * 1024)):
    try:
        DirtyProtocol.encode(make_response("r", bad))
    except E.DirtyProtocolError as e:
        want = e.message
    try:
        v0.Codec("r").response(bad)
    except E.DirtyProtocolError as e:
        assert e.message == want, (e.message, want)
    else:
        raise AssertionError(f"{type(bad).__name__} encoded")
print("ok")
"""


def test_pyshim_v0_codec_is_gunicorn_25_0s():
    env = dict(os.environ, **SHIM_ENV)
    res = subprocess.run([PY25, "-c", PYSHIM_CHECK], input=json.dumps(NASTY),
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_v0_client_over_max_connections_gets_its_error(gdirty_bin, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "PYTHON", PY25)
        launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-v0-maxconn")
        try:
            g = launcher.start(dirty_config([ECHO], workers=1), workers=1,
                               args=["--max-connections", "1"])
            def admitted():
                # the STATUS connections of start-up may still hold the slot
                s = connect(g.socket_path)
                s.sendall(frame(request("in", ECHO, "echo_value", 1)))
                if recv_answer(s) == [b'{"type": "response", "id": "in", "result": 1}']:
                    return s
                s.close()
                return None

            with wait_until(admitted, 30, "one client admitted") as held:
                with connect(g.socket_path) as extra:
                    extra.sendall(frame(request("over", ECHO, "echo_value", 2)))
                    msg = json.loads(recv_body(extra))
                    assert extra.recv(1) == b""
            assert msg["id"] == "over" and msg["error"]["error_type"] == "DirtyError"
            assert "limit 1" in msg["error"]["message"]
        finally:
            launcher.stop_all()


def test_v0_timeout_and_worker_death(gdirty_bin, tmp_path_factory):
    """The errors the arbiter synthesises reach a 25.0.x client as v0
    messages under the call's id: dirty_timeout (25.0.3's arbiter's own
    DirtyTimeoutError, byte for byte) and a worker dying mid-call."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "PYTHON", PY25)
        launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-v0-faults")
        try:
            g = launcher.start(dirty_config([ECHO], workers=1, timeout=1), workers=1)
            with connect(g.socket_path) as s:
                s.sendall(frame(request("slow", ECHO, "sleep", 3)))
                assert recv_answer(s) == [
                    b'{"type": "error", "id": "slow", "error": {"error_type": "DirtyTimeoutError", '
                    b'"message": "Worker timeout", "details": {"timeout": 1}}}']
                wait_until(lambda: _try_echo(g.socket_path), 60, "a replacement worker")
                s.sendall(frame(request(42, ECHO, "crash")))
                [b] = recv_answer(s)
                msg = json.loads(b)
                assert msg["id"] == 42 and msg["type"] == "error"
                assert msg["error"]["error_type"] == "DirtyWorkerError"
                assert msg["error"]["message"].startswith("Worker communication failed")
                assert json.dumps(msg).encode() == b
        finally:
            launcher.stop_all()


HOOKS_CONFIG = '''
import json, os

def _rec(name, **kw):
    with open({log!r}, "a") as f:
        f.write(json.dumps(dict(hook=name, os_pid=os.getpid(), **kw)) + "\\n")

def on_dirty_starting(arbiter):
    _rec("on_dirty_starting")

def dirty_post_fork(arbiter, worker):
    _rec("dirty_post_fork", pid=worker.pid)

def dirty_worker_init(worker):
    _rec("dirty_worker_init", pid=worker.pid)

def dirty_worker_exit(arbiter, worker):
    _rec("dirty_worker_exit", pid=worker.pid)
'''


def test_hooks_run_on_25_0(gdirty_bin, tmp_path_factory, tmp_path):
    """The config loader, worker host and hook host all run on 25.0.x."""
    log = tmp_path / "hooks.jsonl"

    def records():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def hooks():
        return [r["hook"] for r in records()]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "PYTHON", PY25)
        launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-v0-hooks")
        try:
            g = launcher.start(dirty_config([ECHO], workers=1, extra=HOOKS_CONFIG.format(log=str(log))),
                               workers=1)
            wait_until(lambda: "dirty_worker_init" in hooks(), 30, "dirty_worker_init")
            [pid] = g.worker_pids()
            assert hooks()[0] == "on_dirty_starting"
            assert {"hook": "dirty_post_fork", "pid": pid} in [
                {k: r[k] for k in ("hook", "pid")} for r in records() if "pid" in r]
            with connect(g.socket_path) as s:
                s.sendall(frame(request("c", ECHO, "crash")))
                recv_answer(s)
            wait_until(lambda: any(r["hook"] == "dirty_worker_exit" and r["pid"] == pid
                                   for r in records()), 30, "dirty_worker_exit for the crashed worker")
        finally:
            launcher.stop_all()
