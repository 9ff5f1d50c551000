"""``make run``'s script: examples/basic under a plain gunicorn whose master
runs gdirty; Ctrl-C (SIGINT to the foreground process group) or SIGTERM
leaves nothing running."""

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from proctools import session_members
from conftest import ROOT, clean_env, wait_until
from gversions import control_socket_args

SCRIPT = ROOT / "scripts" / "run-example.sh"


session = session_members


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_run_example_serves_and_stops_cleanly(gdirty_bin, tmp_path, how):
    venv = Path(sys.executable).parent.parent  # the venv running the tests
    env = clean_env({"VENV": str(venv), "GDIRTY_BINARY": str(gdirty_bin),
                     "PYTHONPATH": str(ROOT / "pyshim")})
    proc = subprocess.Popen(
        [str(SCRIPT), "--bind", "127.0.0.1:0", "--name", f"gdirty-run-{os.getpid()}-{how}",
         *control_socket_args(tmp_path / "ctl.sock")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        port = wait_until(lambda: next((m.group(1) for line in list(lines)
                                        for m in [re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)] if m),
                                       None), 60, lambda: "".join(lines))
        def echo():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/echo?msg=run", timeout=10) as r:
                    return r.read().strip() == b'"run"'
            except OSError:
                return False
        wait_until(echo, 60, lambda: "an answer from a dirty worker:\n" + "".join(lines))
        assert any("Spawned gdirty dirty arbiter" in line for line in lines), "".join(lines)
    finally:
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the foreground group
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, "".join(lines)
    wait_until(lambda: not session(proc.pid), 30, lambda: f"nothing left running (left: {session(proc.pid)})")
