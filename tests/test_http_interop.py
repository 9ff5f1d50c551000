"""gdirty behind a real gunicorn: HTTP requests to gunicorn sync, gthread and
asgi workers whose views call gdirty with gunicorn's own dirty client
(sync ``get_dirty_client`` in WSGI, ``get_dirty_client_async`` in ASGI)."""

import concurrent.futures
import uuid

import pytest

import dvalues
import gversions
from conftest import ECHO, GunicornLauncher, ONE, SPEC

WORKER_CLASSES = ["sync", "gthread", "asgi"]


@pytest.fixture(scope="module", params=WORKER_CLASSES)
def web(request, main_gdirty, tmp_path_factory):
    """One gunicorn master per worker class, all sharing the session gdirty."""
    launcher = GunicornLauncher(tmp_path_factory)
    g = launcher.start(request.param, main_gdirty)
    yield g
    launcher.stop_all()


def execute(app, action, *args, **kwargs):
    return {"op": "execute", "app": app, "action": action, "args": list(args), "kwargs": kwargs}


def stream(app, action, *args, **kwargs):
    return {"op": "stream", "app": app, "action": action, "args": list(args), "kwargs": kwargs}


def assert_ok(outcome):
    assert "error" not in outcome or outcome["error"] is None, outcome
    return outcome


def sendable(name):
    """Whether the installed gunicorn's client can send the value at all
    (25.0.x's JSON protocol has no bytes, no tuple dict keys, ...)."""
    return gversions.v0_refuses(dvalues.CASES[name][0]) is None


@pytest.mark.parametrize("name", sorted(dvalues.CASES))
@pytest.mark.compat
def test_value_round_trip(web, name):
    why = gversions.v0_refuses(dvalues.CASES[name][0])
    if why:
        pytest.skip(why)
    outcome = web.run1({"op": "value", "app": ECHO, "name": name})
    assert_ok(outcome)
    assert outcome["ok"] is True, (
        f"{web.kind}: round trip of {name!r} gave {outcome['got']}")


@pytest.mark.compat
def test_all_values_in_one_request(web):
    # Many calls one after another on the same client connection.
    names = [n for n in sorted(dvalues.CASES) if sendable(n)]
    outcomes = web.run([{"op": "value", "app": ECHO, "name": n} for n in names])
    bad = {n: o for n, o in zip(names, outcomes) if o.get("ok") is not True}
    assert not bad, bad


@pytest.mark.compat
def test_args_and_kwargs(web):
    outcome = web.run1(execute(ECHO, "echo", 1, "two", [3], {"four": 4},
                               alpha="a", beta=[1, 2], gamma={"x": None}, delta=False))
    assert assert_ok(outcome)["result"] == {
        "args": [1, "two", [3], {"four": 4}],
        "kwargs": {"alpha": "a", "beta": [1, 2], "gamma": {"x": None}, "delta": False},
    }
    # kwargs keep the caller's order (Python dict semantics)
    assert list(outcome["result"]["kwargs"]) == ["alpha", "beta", "gamma", "delta"]
    assert web.run1(execute(ECHO, "echo"))["result"] == {"args": [], "kwargs": {}}


@pytest.mark.compat
def test_app_exception(web):
    err = web.run1(execute(ECHO, "fail", "it went wrong: ünïcode"))["error"]
    assert err["type"] == "DirtyAppError"
    assert err["is_dirty_error"] is True
    assert err["message"] == "it went wrong: ünïcode"
    details = err["details"]
    assert list(details) == ["app_path", "action", "traceback"]
    assert details["app_path"] == ECHO and err["app_path"] == ECHO
    assert details["action"] == "fail" and err["action"] == "fail"
    tb = details["traceback"]
    assert tb == err["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "in fail" in tb and "ValueError: it went wrong: ünïcode" in tb


@pytest.mark.compat
def test_app_exception_message_is_str_of_exception(web):
    # KeyError's str() is the repr of the key: message = str(exc), as gunicorn
    err = web.run1(execute(ECHO, "fail_key"))["error"]
    assert err["type"] == "DirtyAppError"
    assert err["message"] == "'missing'"
    assert "KeyError: 'missing'" in err["details"]["traceback"]


@pytest.mark.compat
def test_unknown_app(web):
    app = "dapps:NoSuchApp"
    err = web.run1(execute(app, "echo", 1))["error"]
    assert err["type"] == "DirtyNoWorkersAvailableError"
    assert err["message"] == f"No workers available for app: {app}"
    assert err["details"] == {"app_path": app}
    assert err["app_path"] == app


@pytest.mark.parametrize("action", ["no_such_action", "_secret", "__init__"])
@pytest.mark.compat
def test_unknown_and_private_action(web, action):
    err = web.run1(execute(ECHO, action))["error"]
    assert err["type"] == "DirtyAppError"
    assert err["message"] == f"Unknown action: {action}"
    assert err["details"]["app_path"] == ECHO
    assert err["details"]["action"] == action
    assert "ValueError: Unknown action" in err["details"]["traceback"]


@pytest.mark.compat
def test_errors_leave_connection_usable(web):
    # Within one HTTP request (one client connection), every kind of error
    # is followed by a call that must get its own, correct answer.
    outcomes = web.run([
        execute(ECHO, "fail", "x"),
        execute(ECHO, "echo", "after-app-error"),
        execute("dapps:Nope", "echo"),
        execute(ECHO, "echo", "after-unknown-app"),
        stream(ECHO, "count_then_fail", 2),
        execute(ECHO, "echo", "after-stream-error"),
        stream(ECHO, "acount_then_fail", 1),
        execute(ECHO, "echo", "after-async-stream-error"),
    ])
    assert outcomes[0]["error"]["type"] == "DirtyAppError"
    assert outcomes[2]["error"]["type"] == "DirtyNoWorkersAvailableError"
    assert outcomes[4]["chunks"] == [0, 1] and outcomes[4]["error"]["type"] == "DirtyAppError"
    assert outcomes[6]["chunks"] == ["a0"] and outcomes[6]["error"]["type"] == "DirtyAppError"
    assert [o["result"]["args"] for o in outcomes[1::2]] == [
        ["after-app-error"], ["after-unknown-app"], ["after-stream-error"],
        ["after-async-stream-error"]]


@pytest.mark.compat
def test_sync_generator_stream(web):
    outcome = web.run1(stream(ECHO, "count", 25))
    assert outcome["error"] is None, outcome
    assert [c["i"] for c in outcome["chunks"]] == list(range(25))
    # one stream runs on one worker
    assert len({c["pid"] for c in outcome["chunks"]}) == 1


@pytest.mark.compat
def test_async_generator_stream(web):
    outcome = web.run1(stream(ECHO, "acount", 30))
    assert outcome == {"chunks": [f"a{i}" for i in range(30)], "error": None}


@pytest.mark.compat
def test_empty_stream(web):
    assert web.run1(stream(ECHO, "empty_stream")) == {"chunks": [], "error": None}


def test_stream_many_chunks(web):
    outcome = web.run1(stream(ECHO, "count", 2000))
    assert outcome["error"] is None
    assert [c["i"] for c in outcome["chunks"]] == list(range(2000))


@pytest.mark.parametrize("action,chunks,exc", [
    ("count_then_fail", [0, 1, 2], "RuntimeError"),
    ("acount_then_fail", ["a0", "a1", "a2"], "KeyError"),
])
@pytest.mark.compat
def test_error_mid_stream(web, action, chunks, exc):
    outcome = web.run1(stream(ECHO, action, 3, message="broke at 3"))
    assert outcome["chunks"] == chunks
    err = outcome["error"]
    assert err is not None, outcome
    assert err["type"] == "DirtyAppError"
    expected_message = "broke at 3" if exc == "RuntimeError" else "'broke at 3'"
    assert err["message"] == expected_message
    # gunicorn reports a mid-stream failure with the traceback only
    assert list(err["details"]) == ["traceback"]
    assert f"{exc}: " in err["details"]["traceback"]
    assert err["app_path"] is None and err["action"] is None


@pytest.mark.compat
def test_stream_of_unknown_app_and_action(web):
    outcomes = web.run([stream("dapps:Nope", "count", 3), stream(ECHO, "nope")])
    assert outcomes[0]["chunks"] == [] and outcomes[1]["chunks"] == []
    assert outcomes[0]["error"]["type"] == "DirtyNoWorkersAvailableError"
    assert outcomes[0]["error"]["details"] == {"app_path": "dapps:Nope"}
    assert outcomes[1]["error"]["type"] == "DirtyAppError"
    assert outcomes[1]["error"]["message"] == "Unknown action: nope"


@pytest.mark.compat
def test_limited_apps_reachable(web, main_gdirty):
    st = main_gdirty.status()
    one_pids = {w["pid"] for w in st["workers"] if "dapps:OneWorkerApp" in w["apps"]}
    outcomes = web.run([execute(ONE, "whoami") for _ in range(4)] +
                       [execute(SPEC, "whoami") for _ in range(4)])
    assert {o["result"]["pid"] for o in outcomes[:4]} == one_pids
    assert all(o["result"]["app"] == "one" for o in outcomes[:4])
    assert all(o["result"]["app"] == "spec" for o in outcomes[4:])


def test_many_concurrent_http_callers(web):
    tokens = [f"{web.kind}-{i}-{uuid.uuid4().hex}" for i in range(200)]

    def call(tok):
        return tok, web.run1(execute(ECHO, "token", tok), timeout=120)

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(call, tokens))
    assert len(results) == 200
    for tok, outcome in results:
        assert_ok(outcome)
        assert outcome["result"]["token"] == tok
    # the calls were spread over gdirty's workers
    assert len({o["result"]["pid"] for _, o in results}) > 1
