#!/usr/bin/env python3
"""CI check of a gdirty wheel, as a user with only Python would use it.

    scripts/wheel_smoke.py dist/gdirty-<v>-py3-none-<platform>.whl

Creates a fresh venv, installs the wheel into it (gunicorn comes as its
dependency), then, with no Go on PATH, serves examples/basic with a plain
``gunicorn -c gunicorn.conf.py`` (whose one import line makes gunicorn's
master run gdirty), checks HTTP answers that come from dirty workers and
that the gdirty running is the wheel's, stops gunicorn with SIGTERM and
checks that no process of the run is left. Exit status 0 when all holds.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0


def fail(msg, log=None):
    print(f"wheel smoke: FAIL: {msg}", file=sys.stderr)
    if log:
        print("---- gunicorn output ----\n" + "".join(log), file=sys.stderr)
    sys.exit(1)


def wait_for(pred, timeout, what, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    fail(f"timed out after {timeout}s waiting for {what}", log)


def session_pids(sid):
    """Live (non-zombie) processes of session sid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def main():
    if len(sys.argv) != 2:
        fail("usage: wheel_smoke.py WHEEL")
    wheel = Path(sys.argv[1]).resolve()
    if not wheel.is_file():
        fail(f"no wheel at {wheel}")
    tmp = Path(tempfile.mkdtemp(prefix="gdirty-wheel-smoke-"))
    try:
        run(wheel, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(wheel, tmp):
    started = time.monotonic()
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(wheel)], check=True)
    gdirty = venv / "bin" / "gdirty"
    if not os.access(gdirty, os.X_OK):
        fail(f"installing the wheel did not put an executable gdirty at {gdirty}")

    # A user's shell: the venv's bin, the system's, and no Go anywhere.
    path = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    path = os.pathsep.join(p for p in path.split(os.pathsep)
                           if not shutil.which("go", path=p))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GDIRTY_", "GUNICORN_", "GO")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=path, VIRTUAL_ENV=str(venv))
    if shutil.which("go", path=path):
        fail("go is still on PATH")

    # The lean gdirty hands cluster work to the wheel's gdirty-cluster: with
    # nothing listening, that is gdirty-cluster's NATS error, not the lean
    # one's "this is the lean gdirty".
    if not os.access(venv / "bin" / "gdirty-cluster", os.X_OK):
        fail(f"installing the wheel did not put an executable gdirty-cluster next to {gdirty}")
    res = subprocess.run([str(gdirty), "status", "--cluster", "nats://127.0.0.1:1", "--timeout", "5s"],
                         capture_output=True, text=True, timeout=30, env=env)
    if res.returncode != 1 or "connect to NATS" not in res.stderr:
        fail(f"gdirty status --cluster did not reach gdirty-cluster (exit {res.returncode}): {res.stderr.strip()}")

    app = tmp / "app"
    shutil.copytree(ROOT / "examples" / "basic", app)
    embedded_nats(gdirty, app, tmp, env)
    name = f"gdirty-wheel-smoke-{os.getpid()}"
    cmd = ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0",
           "--name", name, "--control-socket", str(tmp / "ctl.sock")]
    proc = subprocess.Popen(cmd, cwd=app, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        port = wait_for(lambda: next((m.group(1) for line in list(log)
                                      for m in [re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)] if m), None),
                        DEADLINE, "gunicorn to listen", log)
        spawned = wait_for(lambda: next((m.group(1) for line in list(log)
                                         for m in [re.search(r"Spawned gdirty dirty arbiter \(pid: (\d+)\)", line)] if m), None),
                           DEADLINE, "gunicorn's master to start gdirty", log)
        exe = os.readlink(f"/proc/{spawned}/exe")
        if Path(exe).resolve() != gdirty.resolve():
            fail(f"the master runs {exe}, not the wheel's {gdirty}", log)

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    return r.status, r.read().decode()
            except OSError:
                return None

        answer = wait_for(lambda: (lambda r: r if r and r[0] == 200 else None)(get("/echo?msg=from-the-wheel")),
                          DEADLINE, "an answer from a dirty worker", log)
        if answer[1].strip() != '"from-the-wheel"':
            fail(f"/echo answered {answer!r}", log)
        status, body = get("/reverse?text=gdirty") or (None, None)
        if status != 200 or body.strip() != '"ytridg"':
            fail(f"/reverse answered {status} {body!r}", log)
    finally:
        stop_cleanly(proc, "gunicorn", log)
    print(f"wheel smoke: ok: {wheel.name} installed without Go, gunicorn's master ran "
          f"{gdirty.relative_to(tmp)}, dirty workers answered, SIGTERM left nothing running, "
          "--cluster-listen ran nats-server inside gdirty-cluster "
          f"({time.monotonic() - started:.1f}s)")


def embedded_nats(gdirty, app, tmp, env):
    """--cluster-listen from the wheel alone: the lean gdirty hands over to
    gdirty-cluster, which runs nats-server inside itself (no nats-server
    binary anywhere) with the stash in its JetStream, and stops cleanly."""
    cmd = [str(gdirty), "--config", "gunicorn.conf.py", "--no-pidfile", "--socket", str(tmp / "embedded.sock"),
           "--cluster-listen", "127.0.0.1:0", "--cluster-data-dir", str(tmp / "js"), "--stash", "cluster"]
    proc = subprocess.Popen(cmd, cwd=app, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = []
    threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        for what, pattern in (("the embedded nats-server", r"nats-server \S+ listening on"),
                              ("the stash in JetStream", r"stash in JetStream bucket"),
                              ("its workers", r"Dirty worker \d+ booted")):
            wait_for(lambda: any(re.search(pattern, line) for line in list(log)), DEADLINE, what, log)
        exe = os.readlink(f"/proc/{proc.pid}/exe")
        if Path(exe).name != "gdirty-cluster":
            fail(f"--cluster-listen runs {exe}, not the wheel's gdirty-cluster", log)
    finally:
        stop_cleanly(proc, "gdirty --cluster-listen", log)


def stop_cleanly(proc, name, log):
    """SIGTERM: exit 0 and nothing of the process's session left behind."""
    os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        fail(f"{name} did not stop on SIGTERM", log)
    wait_for(lambda: not session_pids(proc.pid), 30, f"every process of the {name} run to exit", log)
    if code != 0:
        fail(f"{name} exited {code} on SIGTERM", log)


if __name__ == "__main__":
    main()
