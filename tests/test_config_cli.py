"""gdirty's command line, gunicorn config semantics, start-up failures,
shutdown and the socket's permissions."""

import os
import re
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import (
    APPS_DIR, ECHO, ONE, PYTHON, clean_env, dirty_config,
    query_status, wait_until,
)
from gunicorn.dirty.errors import DirtyError

BASE = dirty_config([ECHO], workers=1)


# ---------------------------------------------------------------------------
# gunicorn configuration semantics
# ---------------------------------------------------------------------------

@pytest.mark.compat
def test_gunicorn_cmd_args_sets_worker_count(gdirty_start):
    g = gdirty_start(BASE, workers=3, env={"GUNICORN_CMD_ARGS": "--dirty-workers 3"})
    st = g.status()
    assert st["worker_count"] == 3
    assert [w["age"] for w in st["workers"]] == [1, 2, 3]


def test_dirty_workers_flag_sets_worker_count(gdirty_start):
    g = gdirty_start(BASE, workers=3, args=["--dirty-workers", "3"])
    assert g.status()["worker_count"] == 3
    assert len(set(g.worker_pids())) == 3


@pytest.mark.compat
def test_flag_beats_gunicorn_cmd_args(gdirty_start):
    # gunicorn's priority: config file < GUNICORN_CMD_ARGS < command line
    g = gdirty_start(BASE, workers=2, args=["--dirty-workers", "2"],
                     env={"GUNICORN_CMD_ARGS": "--dirty-workers 3"})
    assert g.status()["worker_count"] == 2


def test_dirty_app_flag_replaces_config_list(gdirty_start):
    # As in gunicorn, --dirty-app on the command line replaces the file's list.
    g = gdirty_start(BASE, workers=1, args=["--dirty-app", ONE])
    st = g.status()
    assert st["apps"] == [ONE]
    assert st["workers"][0]["apps"] == [ONE]
    c = g.client()
    try:
        with pytest.raises(DirtyError) as ei:
            c.execute(ECHO, "pid")
        assert type(ei.value).__name__ == "DirtyNoWorkersAvailableError"
        assert c.execute(ONE, "whoami")["app"] == "one"
    finally:
        c.close()


def test_only_limited_apps_spawns_only_needed_workers(gdirty_start):
    # gunicorn stops spawning when no app needs another worker: with only a
    # workers=1 app, dirty_workers=3 still gives one worker.
    g = gdirty_start(dirty_config([ONE], workers=3), workers=1)
    st = g.status()
    assert st["worker_count"] == 1 and st["workers"][0]["apps"] == [ONE]
    c = g.client()
    try:
        assert c.execute(ONE, "whoami")["pid"] == st["workers"][0]["pid"]
    finally:
        c.close()
    assert g.status()["worker_count"] == 1


def test_env_flag_replaces_raw_env(gdirty_start):
    # gunicorn: --env (here from GUNICORN_CMD_ARGS) replaces the file's raw_env
    config = BASE + 'raw_env = ["GDIRTY_T_FROM_FILE=file value"]\n'
    g = gdirty_start(config, workers=1,
                     env={"GUNICORN_CMD_ARGS": "--env 'GDIRTY_T_FROM_CMD=from cmd args'"})
    c = g.client()
    try:
        assert c.execute(ECHO, "env", "GDIRTY_T_FROM_CMD") == "from cmd args"
        assert c.execute(ECHO, "env", "GDIRTY_T_FROM_FILE") is None
    finally:
        c.close()


def test_raw_env_in_config_visible_to_app(gdirty_start):
    config = BASE + 'raw_env = ["GDIRTY_T_FROM_FILE=file value", "GDIRTY_T_EQ=a=b=c"]\n'
    g = gdirty_start(config, workers=1)
    c = g.client()
    try:
        assert c.execute(ECHO, "env", "GDIRTY_T_FROM_FILE") == "file value"
        assert c.execute(ECHO, "env", "GDIRTY_T_EQ") == "a=b=c"
        assert c.execute(ECHO, "env", "GDIRTY_T_NOT_SET") is None
    finally:
        c.close()


def test_pythonpath_in_config(gdirty_start):
    # started outside the apps directory: the config's pythonpath finds them
    g = gdirty_start(BASE + f"pythonpath = {str(APPS_DIR)!r}\n", workers=1, cwd=None)
    c = g.client()
    try:
        assert c.execute(ECHO, "echo_value", "found") == "found"
    finally:
        c.close()


def test_chdir_in_config(gdirty_start):
    g = gdirty_start(BASE + f"chdir = {str(APPS_DIR)!r}\n", workers=1, cwd=None)
    c = g.client()
    try:
        assert os.path.realpath(c.execute(ECHO, "cwd")) == os.path.realpath(APPS_DIR)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Start-up failures: quick, non-zero, one line naming the culprit
# ---------------------------------------------------------------------------

def wait_exit(g, timeout=20.0):
    wait_until(lambda: g.proc.poll() is not None, timeout,
               lambda: f"gdirty to exit; stderr so far:\n{g.stderr()}")
    return g.proc.returncode


def test_syntax_error_in_config(gdirty_spawn):
    g = gdirty_spawn('dirty_apps = ["dapps:EchoApp"\ndirty_workers = 2\n')
    start = time.monotonic()
    rc = wait_exit(g)
    assert time.monotonic() - start < 15
    assert rc != 0
    lines = g.stderr().strip().splitlines()
    assert len(lines) == 1, lines
    assert str(g.config_path) in lines[0]
    assert "SyntaxError" in lines[0]
    assert "GUNICORN_DIRTY_SOCKET=" not in g.stdout()


@pytest.mark.parametrize("spec,culprit", [
    ("nosuchmodule_xyz:App", "nosuchmodule_xyz"),
    ("dapps:NoSuchClass", "dapps:NoSuchClass"),
])
def test_unimportable_dirty_app(gdirty_spawn, spec, culprit):
    g = gdirty_spawn(dirty_config([ECHO, spec], workers=2))
    start = time.monotonic()
    rc = wait_exit(g)
    assert time.monotonic() - start < 15
    assert rc != 0
    lines = g.stderr().strip().splitlines()
    assert len(lines) == 1, lines
    assert spec in lines[0] and culprit in lines[0]
    assert "GUNICORN_DIRTY_SOCKET=" not in g.stdout()


def test_missing_config_file(gdirty_bin, tmp_path):
    missing = tmp_path / "nope.conf.py"
    res = subprocess.run([str(gdirty_bin), "--config", str(missing), "--python", PYTHON],
                         cwd=APPS_DIR, env=clean_env(), capture_output=True, text=True,
                         timeout=30)
    assert res.returncode != 0
    assert str(missing) in res.stderr
    assert res.stdout == ""


def test_version_command(gdirty_bin):
    res = subprocess.run([str(gdirty_bin), "version"], capture_output=True, text=True,
                         timeout=30, env=clean_env())
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    m = re.fullmatch(r"gdirty (\S+)", first)
    assert m, res.stdout
    version = m.group(1)
    assert re.match(r"v?\d+\.\d+\.\d+", version), version
    # the --version flag reports the same version
    res2 = subprocess.run([str(gdirty_bin), "--version"], capture_output=True, text=True,
                          timeout=30, env=clean_env())
    assert res2.returncode == 0
    assert version in res2.stdout


# ---------------------------------------------------------------------------
# Shutdown
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.compat
def test_graceful_stop_finishes_calls_in_flight(gdirty_start, tmp_path, sig):
    g = gdirty_start(dirty_config([ECHO], workers=1, threads=2), workers=1)
    marker = tmp_path / "running"
    result = {}

    def call():
        c = g.client(timeout=30)
        try:
            result["value"] = c.execute(ECHO, "marked_sleep", str(marker), 1.0)
        except Exception as e:  # reported by the assertion below
            result["error"] = repr(e)
        finally:
            c.close()

    t = threading.Thread(target=call)
    t.start()
    wait_until(marker.exists, 20, "the call to start running in the worker")
    worker_pid = int(marker.read_text())
    g.snapshot()
    g.proc.send_signal(sig)
    t.join(timeout=30)
    assert not t.is_alive()
    assert result == {"value": {"pid": worker_pid, "done": True}}
    rc = wait_exit(g, timeout=30)
    assert rc == 0, g.stderr()[-2000:]
    assert not os.path.exists(g.socket_path), "socket file left behind"
    g.mark_stopped(rc)  # teardown checks that every process it started is gone


# ---------------------------------------------------------------------------
# Socket
# ---------------------------------------------------------------------------

def assert_private_socket(path):
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    dst = os.stat(os.path.dirname(path))
    assert stat.S_IMODE(dst.st_mode) == 0o700, oct(dst.st_mode)


def test_default_socket_permissions(main_gdirty):
    assert_private_socket(main_gdirty.socket_path)


def test_socket_flag_permissions_and_path(gdirty_start, tmp_path):
    path = tmp_path / "run" / "sub" / "dirty.sock"
    g = gdirty_start(BASE, workers=1, args=["--socket", str(path)])
    assert g.socket_path == str(path)
    assert_private_socket(str(path))
    assert query_status(str(path))["worker_count"] == 1


def test_socket_in_use_is_refused(gdirty_start, gdirty_spawn, tmp_path):
    path = tmp_path / "s" / "dirty.sock"
    first = gdirty_start(BASE, workers=1, args=["--socket", str(path)])
    second = gdirty_spawn(BASE, args=["--socket", str(path)])
    rc = wait_exit(second)
    assert rc != 0
    assert str(path) in second.stderr()
    # the first one is untouched
    c = first.client()
    try:
        assert c.execute(ECHO, "echo_value", 1) == 1
    finally:
        c.close()


