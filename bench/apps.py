"""DirtyApps used by the side-by-side benchmark (bench/run.py).

The same classes are loaded by gdirty's workers and by gunicorn's own
DirtyArbiter workers; neither knows about the other.
"""

import os
import time

from gunicorn.dirty import DirtyApp

CHUNK = b"x" * 64


class BenchApp(DirtyApp):
    """echo, sleep(ms), blob(n bytes), stream(n chunks x 64 B), pid."""

    def init(self):
        self._blobs = {}

    def echo(self, value):
        return value

    def sleep(self, ms):
        time.sleep(ms / 1000.0)
        return ms

    def blob(self, n):
        # Cached so that the figure measures transport, not allocation.
        data = self._blobs.get(n)
        if data is None:
            data = self._blobs[n] = os.urandom(64) * (n // 64) + b"z" * (n % 64)
        return data

    def stream(self, n):
        for _ in range(n):
            yield CHUNK

    def pid(self):
        return os.getpid()
