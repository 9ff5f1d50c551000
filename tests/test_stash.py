"""The stash (gunicorn.dirty.stash) held by gdirty, end to end.

gunicorn's own client code (``from gunicorn.dirty import stash``) runs in a
real gunicorn HTTP worker (``stash_wsgi.py``, gunicorn master with
``--dirty-workers 0`` and ``GUNICORN_DIRTY_SOCKET`` pointing at gdirty) and
inside gdirty's dirty workers (``stash_dapps.StashApp``), and every stash
operation is checked from both places, plus visibility across workers,
fnmatch patterns, non-string keys, bytes values, the error types the client
maps (``get`` default, ``StashTableNotFoundError``, the dict-like table),
tables declared in ``stashes``, and the memory bound.

A whole session recorded from gunicorn's own arbiter
(testdata/golden/stash_vectors.json) is also replayed over gdirty's socket
and must be answered byte for byte (apart from the documented deviations
baked into the vectors), and the golden files are checked to be exactly what
testdata/golden/gen_stash_vectors.py produces with the installed gunicorn.
"""

import concurrent.futures
import json
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

import gversions

pytest.importorskip("gunicorn.dirty.stash", reason=gversions.NO_STASH)

from conftest import (  # noqa: E402
    ECHO,
    ROOT,
    WORKER_CLASS_ARGS,
    GDirtyLauncher,
    GunicornLauncher,
    connect,
    dirty_config,
    recv_frame,
)
from gunicorn.dirty.protocol import MSG_TYPE_STASH, BinaryProtocol
from gunicorn.dirty.stash import StashClient, StashError

GOLDEN = ROOT / "testdata" / "golden"
GENERATOR = GOLDEN / "gen_stash_vectors.py"
STASH_APP = "stash_dapps:StashApp"
DIRTY_WORKERS = 2
MAX_BYTES = 4 << 20  # --stash-max-bytes of the shared instance

# gunicorn worker flavour serving the stash test view (conftest's launcher
# picks its arguments from this table).
WORKER_CLASS_ARGS.setdefault("stash-sync", ["-k", "sync", "-w", "2", "stash_wsgi:app"])


@pytest.fixture(scope="module")
def stash_gdirty(gdirty_bin, tmp_path_factory):
    launcher = GDirtyLauncher(gdirty_bin, tmp_path_factory, name="gdirty-stash")
    g = launcher.start(dirty_config([STASH_APP], workers=DIRTY_WORKERS, threads=2),
                       workers=DIRTY_WORKERS, args=["--stash-max-bytes", str(MAX_BYTES)])
    yield g
    launcher.stop_all()


@pytest.fixture(scope="module")
def web(stash_gdirty, tmp_path_factory):
    launcher = GunicornLauncher(tmp_path_factory)
    g = launcher.start("stash-sync", stash_gdirty)
    yield g
    launcher.stop_all()


def post(web, path, ops, timeout=60.0):
    """Run ops (fn, args tuple[, kwargs dict]) in an HTTP worker (/stash) or
    a dirty worker (/dirty); returns {"pid", "results"}."""
    body = json.dumps([[fn, repr(tuple(args)), repr(kw[0]) if kw else ""]
                       for fn, args, *kw in ops]).encode()
    req = urllib.request.Request(web.base_url + path, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.status == 200
        return json.loads(r.read())


def get_json(web, path):
    with urllib.request.urlopen(web.base_url + path, timeout=60) as r:
        return json.loads(r.read())


def run(web, where, ops):
    return post(web, "/stash" if where == "http" else "/dirty", ops)["results"]


def check(outcomes, expected, ops):
    """expected items: ("ok", repr) or ("err", exception type, str part)."""
    assert len(outcomes) == len(expected)
    for i, (got, want, op) in enumerate(zip(outcomes, expected, ops)):
        if want[0] == "ok":
            assert got == {"ok": want[1]}, f"op #{i} {op}: {got}, want {want}"
        else:
            assert "error" in got, f"op #{i} {op}: {got}, want {want}"
            err = got["error"]
            assert err["type"] == want[1], f"op #{i} {op}: {err}, want {want}"
            assert want[2] in err["str"], f"op #{i} {op}: {err}, want {want}"


def fresh(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------
# every operation, from an HTTP worker and from inside a dirty app
# ---------------------------------------------------------------------------

def all_ops_script(t, t2, missing):
    """(op, expected) pairs covering the ten operations and the dict-like
    table, as gunicorn's guide documents them."""
    return [
        (("exists", (t,)), ("ok", "False")),
        (("ensure", (t,)), ("ok", "None")),
        (("ensure", (t,)), ("ok", "None")),
        (("exists", (t,)), ("ok", "True")),
        (("put", (t, "user:1", {"name": "Alice", "role": "admin"})), ("ok", "None")),
        (("put", (t, "user:2", b"\x00\xffbin")), ("ok", "None")),
        (("put", (t, 1, "one")), ("ok", "None")),
        (("put", (t, True, "true")), ("ok", "None")),   # True == 1: same key
        (("put", (t, 2.5, [1, None, 1.5, {"n": b"x"}])), ("ok", "None")),
        (("put", (t, b"raw", None)), ("ok", "None")),
        (("put", (t, ("a", 1), "x")), ("err", "StashError", "unhashable type: 'list'")),
        (("get", (t, "user:1")), ("ok", "{'name': 'Alice', 'role': 'admin'}")),
        (("get", (t, "user:2")), ("ok", "b'\\x00\\xffbin'")),
        (("get", (t, 1.0)), ("ok", "'true'")),
        (("get", (t, 2.5)), ("ok", "[1, None, 1.5, {'n': b'x'}]")),
        (("get", (t, b"raw", "default")), ("ok", "None")),  # stored None, not the default
        (("get", (t, "nope")), ("ok", "None")),
        (("get", (t, "nope", "default")), ("ok", "'default'")),
        (("get", (missing, "k", 7)), ("ok", "7")),
        (("keys", (t,)), ("ok", "['user:1', 'user:2', 1, 2.5, b'raw']")),
        (("keys", (t, "user:*")), ("ok", "['user:1', 'user:2']")),
        (("keys", (t,), {"pattern": "*"}), ("ok", "['user:1', 'user:2', 1, 2.5, b'raw']")),
        (("keys", (missing,)), ("ok", "[]")),
        (("info", (t,)), ("ok", f"{{'size': 5, 'table': {t!r}}}")),
        (("info", (missing,)), ("err", "StashTableNotFoundError", f"Stash table not found: {missing}")),
        (("exists", (t, "user:1")), ("ok", "True")),
        (("exists", (t, "zz")), ("ok", "False")),
        (("exists", (missing, "user:1")), ("ok", "False")),
        (("delete", (t, "user:1")), ("ok", "True")),
        (("delete", (t, "user:1")), ("ok", "False")),
        (("delete", (missing, "user:1")), ("ok", "False")),
        (("put", (t, "user:1", "back")), ("ok", "None")),    # re-added: now last
        (("put", (t, "user:2", "again")), ("ok", "None")),   # replaced: stays
        (("keys", (t,)), ("ok", "['user:2', 1, 2.5, b'raw', 'user:1']")),
        # the dict-like interface
        (("table.name", (t2,)), ("ok", repr(t2))),
        (("table.setitem", (t2, "a", 1)), ("ok", "None")),
        (("table.setitem", (t2, "n", None)), ("ok", "None")),
        (("table.getitem", (t2, "a")), ("ok", "1")),
        (("table.getitem", (t2, "n")), ("ok", "None")),
        (("table.getitem", (t2, "zz")), ("err", "KeyError", "zz")),
        (("table.getitem", (missing, "zz")), ("err", "KeyError", "zz")),
        (("table.contains", (t2, "a")), ("ok", "True")),
        (("table.contains", (t2, "zz")), ("ok", "False")),
        (("table.len", (t2,)), ("ok", "2")),
        (("table.len", (missing,)), ("err", "StashTableNotFoundError", missing)),
        (("table.iter", (t2,)), ("ok", "['a', 'n']")),
        (("table.items", (t2,)), ("ok", "[('a', 1), ('n', None)]")),
        (("table.values", (t2,)), ("ok", "[1, None]")),
        (("table.get", (t2, "zz", 5)), ("ok", "5")),
        (("table.keys", (t2, "?")), ("ok", "['a', 'n']")),
        (("table.delitem", (t2, "a")), ("ok", "None")),
        (("table.delitem", (t2, "a")), ("err", "KeyError", "a")),
        (("table.clear", (t2,)), ("ok", "None")),
        (("table.len", (t2,)), ("ok", "0")),
        # clear / delete_table / tables
        (("clear", (t,)), ("ok", "None")),
        (("info", (t,)), ("ok", f"{{'size': 0, 'table': {t!r}}}")),
        (("clear", (missing,)), ("ok", "None")),
        (("exists", (missing,)), ("ok", "False")),   # clear does not create
        (("delete_table", (t,)), ("ok", "None")),
        (("exists", (t,)), ("ok", "False")),
        (("delete_table", (t,)), ("ok", "None")),
    ]


@pytest.mark.parametrize("where", ["http", "dirty"])
@pytest.mark.compat
def test_every_operation(web, where):
    t, t2, missing = fresh(f"ops_{where}"), fresh(f"dict_{where}"), fresh("missing")
    script = all_ops_script(t, t2, missing)
    ops = [op for op, _ in script]
    check(run(web, where, ops), [want for _, want in script], ops)
    [tables] = run(web, where, [("tables", ())])
    names = eval(tables["ok"])  # a repr of a list of str
    assert t2 in names and t not in names and missing not in names
    assert names.index("declared_sessions") < names.index("declared_counters") < names.index(t2)


@pytest.mark.compat
def test_error_details_seen_by_the_client(web):
    """The exception objects gunicorn's client builds from gdirty's answers."""
    missing = fresh("nosuch")
    [info] = run(web, "http", [("info", (missing,))])
    err = info["error"]
    assert err["type"] == "StashTableNotFoundError"
    assert err["is_stash_error"] and "DirtyError" in err["mro"]
    assert err["table_name"] == repr(missing)
    t = fresh("err")
    res = run(web, "dirty", [("put", (t, "k", 1)), ("put", (t, [1], 1)), ("put", (t, {"a": 1}, 1))])
    assert res[0] == {"ok": "None"}
    assert res[1]["error"]["type"] == "StashError" and res[1]["error"]["str"] == "unhashable type: 'list'"
    assert res[2]["error"]["str"] == "unhashable type: 'dict'"


# ---------------------------------------------------------------------------
# visibility across workers
# ---------------------------------------------------------------------------

def test_visible_across_http_workers(web):
    t = fresh("x_http")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        # The writer stays busy after its put, so readers meanwhile are
        # served by the other sync worker.
        writer = ex.submit(post, web, "/stash", [("put", (t, "k", b"from A")), ("sleep", (3.0,))])
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:
            r = post(web, "/stash", [("get", (t, "k"))])
            if r["results"] == [{"ok": "b'from A'"}]:
                seen = r
                break
            time.sleep(0.05)
        put = writer.result(timeout=60)
    assert seen is not None, "value never became visible to another request"
    assert seen["pid"] != put["pid"], "reader and writer were the same HTTP worker"


def test_visible_across_dirty_workers(web):
    t = fresh("x_dirty")
    put = post(web, "/dirty", [("put", (t, "k", {"v": 1}))])
    assert put["results"] == [{"ok": "None"}]
    deadline = time.monotonic() + 30
    while True:
        r = post(web, "/dirty", [("get", (t, "k"))])
        assert r["results"] == [{"ok": "{'v': 1}"}]
        if r["pid"] != put["pid"]:
            break
        assert time.monotonic() < deadline, "calls never reached a second dirty worker"


def test_visible_between_http_and_dirty_workers(web):
    t = fresh("x_mixed")
    assert run(web, "http", [("put", (t, "from_http", 1))]) == [{"ok": "None"}]
    assert run(web, "dirty", [("put", (t, "from_dirty", 2))]) == [{"ok": "None"}]
    for where in ("http", "dirty"):
        res = run(web, where, [("get", (t, "from_http")), ("get", (t, "from_dirty")), ("keys", (t,))])
        assert res == [{"ok": "1"}, {"ok": "2"}, {"ok": "['from_http', 'from_dirty']"}]


# ---------------------------------------------------------------------------
# patterns and key types
# ---------------------------------------------------------------------------

PATTERN_KEYS = ["user:1", "user:2", "user:10", "admin:1", "a/b", "a/b/c", "x",
                "[lit]", "Ab", 7, 7.5, b"raw", None, True, -0.0]
PATTERNS = {
    "*": PATTERN_KEYS,
    "user:*": ["user:1", "user:2", "user:10"],
    "user:?": ["user:1", "user:2"],
    "*:1": ["user:1", "admin:1"],
    "a/*": ["a/b", "a/b/c"],          # '*' crosses '/'
    "*/*": ["a/b", "a/b/c"],
    "a?b": ["a/b"],
    "[ua]*": ["user:1", "user:2", "user:10", "admin:1", "a/b", "a/b/c"],
    "[!ua]*": ["x", "[lit]", "Ab", 7, 7.5, b"raw", None, True, -0.0],
    "user:[12]": ["user:1", "user:2"],
    "user:[!1]": ["user:2"],
    "user:[0-9]*": ["user:1", "user:2", "user:10"],
    "[[]*": ["[lit]"],
    "[": [],
    "a*": ["admin:1", "a/b", "a/b/c"],   # case-sensitive
    "7*": [7, 7.5],                      # str(7.5) == "7.5"
    "b'*'": [b"raw"],                    # str(b"raw") == "b'raw'"
    "None": [None],
    "True": [True],
    "-0.0": [-0.0],
}


@pytest.mark.parametrize("where", ["http", "dirty"])
def test_patterns(web, where):
    t = fresh(f"pat_{where}")
    puts = [("put", (t, k, repr(k))) for k in PATTERN_KEYS]
    assert run(web, where, puts) == [{"ok": "None"}] * len(puts)
    pats = list(PATTERNS)
    res = run(web, where, [("keys", (t, p)) for p in pats] + [("keys", (t, ""))])
    for p, got in zip(pats, res):
        assert got == {"ok": repr(PATTERNS[p])}, f"pattern {p!r}"
    assert res[-1] == {"ok": repr(PATTERN_KEYS)}  # empty pattern: no filter


def test_values_round_trip(web):
    t = fresh("vals")
    values = [None, True, False, 0, -1, 2**63 - 1, -2**63, 0.0, -0.0, 1.5, "", "é日本😀",
              b"", bytes(range(256)), b"\x00" * 100000, [], {}, [[[]]],
              {"b": 1, "a": [1, {"z": None}]}, "x" * 100000]
    ops = [("put", (t, i, v)) for i, v in enumerate(values)]
    ops += [("get", (t, i, "absent")) for i in range(len(values))]
    res = run(web, "http", ops)
    assert res[:len(values)] == [{"ok": "None"}] * len(values)
    for v, got in zip(values, res[len(values):]):
        assert got == {"ok": repr(v)}


# ---------------------------------------------------------------------------
# declared tables, memory bound
# ---------------------------------------------------------------------------

def test_declared_stashes_exist_from_start(web):
    seen = get_json(web, "/init-seen")
    assert seen["exists"] is True
    assert seen["tables"][:2] == ["declared_sessions", "declared_counters"]
    res = run(web, "http", [("exists", ("declared_sessions",)),
                            ("info", ("declared_sessions",)),
                            ("get", ("declared_counters", "boots"))])
    assert res[0] == {"ok": "True"}
    assert res[1]["ok"].endswith("'table': 'declared_sessions'}")
    assert int(res[2]["ok"]) >= 1  # every worker's init() counted itself


def test_memory_bound(web):
    t = fresh("big")
    res = run(web, "http", [("put", (t, "small", b"s" * 1000)),
                            ("put", (t, "big", b"x" * (MAX_BYTES + 1))),
                            ("get", (t, "big", "absent")),
                            ("keys", (t,)),
                            ("put", (t, "small", b"t" * 1000)),
                            ("get", (t, "small"))])
    assert res[0] == {"ok": "None"}
    err = res[1]["error"]
    assert err["type"] == "StashError", err
    assert "Stash memory limit exceeded" in err["str"] and "--stash-max-bytes" in err["str"]
    assert res[2:] == [{"ok": "'absent'"}, {"ok": "['small']"}, {"ok": "None"},
                       {"ok": repr(b"t" * 1000)}]
    run(web, "http", [("delete_table", (t,))])


# ---------------------------------------------------------------------------
# gunicorn's arbiter session replayed over gdirty's socket
# ---------------------------------------------------------------------------

@pytest.mark.compat
def test_gunicorn_session_replayed_over_socket(gdirty_start, tmp_path):
    """A fresh gdirty (empty stash; the bound set in the TOML file) answers
    the session recorded from gunicorn's arbiter exactly as the vectors say,
    then refuses a put past stash_max_bytes."""
    toml = tmp_path / "gdirty.toml"
    toml.write_text("stash_max_bytes = 200000\n")
    g = gdirty_start(dirty_config([ECHO], workers=1), workers=1,
                     args=["--gdirty-config", str(toml)])
    with open(GOLDEN / "stash_vectors.json", encoding="ascii") as f:
        steps = json.load(f)["steps"]
    with connect(g.socket_path) as s:
        for rid, st in enumerate(steps, start=1000):
            payload = bytes.fromhex(st["payload_hex"])
            s.sendall(BinaryProtocol.encode_header(MSG_TYPE_STASH, rid, len(payload)) + payload)
            frame = recv_frame(s)
            msg_type, got_id, _ = BinaryProtocol.decode_message(frame)
            assert got_id == rid
            assert (msg_type, frame[BinaryProtocol.HEADER_SIZE:].hex()) == (
                st["expect"]["type"], st["expect"]["payload_hex"]), st["name"]
    with StashClient(g.socket_path) as c:
        c.put("bounded", "small", b"x" * 1000)
        with pytest.raises(StashError, match="Stash memory limit exceeded"):
            c.put("bounded", "big", b"x" * 200000)
        assert c.get("bounded", "big", "absent") == "absent"
        assert c.keys("bounded") == ["small"]


# ---------------------------------------------------------------------------
# the golden files are what the generator produces today
# ---------------------------------------------------------------------------

@pytest.mark.compat
def test_stash_vectors_are_current(tmp_path):
    res = subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for name in ("fnmatch_vectors.json", "stash_vectors.json"):
        assert gversions.golden_matches(GOLDEN / name, tmp_path / name), (
            f"testdata/golden/{name} is stale: regenerate with "
            f"{sys.executable} testdata/golden/gen_stash_vectors.py")
