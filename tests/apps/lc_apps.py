"""Dirty apps for the lifecycle / stack / observability tests.

Plain gunicorn DirtyApp code: nothing here knows it runs under gdirty.
Files used to coordinate with a test live in a directory the test names
through the ``LC_DIR`` environment variable (set with ``raw_env``) or pass
as an argument.
"""

import os
import sys
import time

from gunicorn.dirty import DirtyApp


def _lc_dir():
    return os.environ.get("LC_DIR")


class LcApp(DirtyApp):
    """Loaded on every worker."""

    def init(self):
        self.started = time.time()

    def pid(self):
        return os.getpid()

    def echo_value(self, value):
        return value

    def fail(self, message):
        raise ValueError(message)

    def sleep(self, seconds):
        t0 = time.monotonic()
        time.sleep(seconds)
        return {"pid": os.getpid(), "slept": time.monotonic() - t0}

    def hold(self, marker, seconds):
        """Write ``marker`` (the worker's pid in it) so the test knows the
        call runs, then sleep."""
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(seconds)
        return {"pid": os.getpid(), "done": True}

    def crash(self, code=1):
        """Kill this worker outright (a segfault stand-in)."""
        os._exit(code)

    def count(self, n):
        for i in range(n):
            yield i

    def probe(self):
        """What the process settings did to this worker."""
        try:
            import lc_pp_mod  # only importable through the config's pythonpath
            pp = lc_pp_mod.MARK
        except ImportError as e:
            pp = f"ImportError: {e}"
        return {
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("LC_")},
            "pythonpath_module": pp,
            "sys_path": list(sys.path),
            "uid": os.getuid(),
        }


class LcOne(LcApp):
    """Limited by its class attribute: one worker."""

    workers = 1


class LcSpec(LcApp):
    """Limited by the config spec (``lc_apps:LcSpec:2``)."""


class LcBadInit(DirtyApp):
    """``init()`` raises while the file ``$LC_DIR/fail`` exists, after
    sleeping the seconds written in ``$LC_DIR/slow`` if that exists; every
    attempt appends a line (time, pid) to ``$LC_DIR/attempts``."""

    workers = 1

    def init(self):
        d = _lc_dir()
        with open(os.path.join(d, "attempts"), "a") as f:
            f.write(f"{time.time():.6f} {os.getpid()}\n")
        slow = os.path.join(d, "slow")
        if os.path.exists(slow):
            with open(slow) as f:
                time.sleep(float(f.read()))
        if os.path.exists(os.path.join(d, "fail")):
            raise RuntimeError(f"lc init boom in {os.getpid()}")

    def pid(self):
        return os.getpid()
