"""Dirty apps for the recycling and device placement tests.

Plain gunicorn DirtyApp code: nothing here knows it runs under gdirty.
"""

import os
import time

from gunicorn.dirty import DirtyApp

MiB = 1024 * 1024


def tree_rss():
    """Resident bytes of this process (its children, if any, are the
    arbiter's business)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Leaky(DirtyApp):
    """Keeps ``mib`` MiB of touched memory from every call: a leak."""

    def init(self):
        self.hoard = []
        self.calls = 0

    def grow(self, mib):
        # b"x" * n writes every page (bytes(n) would stay unresident).
        self.hoard.append(b"x" * (mib * MiB))
        self.calls += 1
        return {"pid": os.getpid(), "calls": self.calls, "rss": tree_rss()}


class Counter(DirtyApp):
    """Counts its calls; tells when its worker started."""

    def init(self):
        self.calls = 0
        self.started = time.time()

    def hit(self):
        self.calls += 1
        return {"pid": os.getpid(), "calls": self.calls, "started": self.started}

    def where(self, name="CUDA_VISIBLE_DEVICES"):
        return {"pid": os.getpid(), "devices": os.environ.get(name)}

    def stream_until(self, flag, n):
        """Yield one chunk, wait until the test creates ``flag`` (bounded),
        then yield the rest."""
        yield {"pid": os.getpid(), "i": 0}
        deadline = time.monotonic() + 30
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(1, n):
            yield {"pid": os.getpid(), "i": i}
