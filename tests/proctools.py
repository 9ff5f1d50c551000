"""Process helpers shared by the pytest fixtures (conftest.py) and the
standalone chaos soak (soak.py): stopping processes, finding a process's
descendants, telling whether a pid still runs."""

import os
import signal
import subprocess


def stop_process(proc, timeout=30.0, sig=signal.SIGTERM):
    """Send ``sig``, wait up to ``timeout`` for the exit, SIGKILL as a
    fallback. Returns ``(returncode, killed)``: ``killed`` is True when the
    process did not exit on ``sig`` in time."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
        return proc.returncode, False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        return proc.returncode, True


def pid_gone(pid):
    """True when ``pid`` no longer runs (absent, or a zombie not yet reaped
    by an init that does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except FileNotFoundError:
        return True
    except (IndexError, OSError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def descendants(root):
    """PIDs of every live descendant of ``root`` (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def session_members(sid):
    """PIDs of the live processes in session ``sid`` (leader included):
    processes stay in their session when reparented, so this finds what a
    run started even after its parent died."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            out.append(int(entry))
    return out
