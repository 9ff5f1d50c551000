"""Dirty apps for the hostile-input tests and the chaos soak
(tests/test_hostile.py, tests/soak.py). Plain gunicorn DirtyApp code."""

import os
import time

from gunicorn.dirty import DirtyApp


class HostileApp(DirtyApp):
    """Every answer carries the caller's token, so a misrouted answer is
    recognisable."""

    def init(self):
        self.pid_ = os.getpid()

    def pid(self):
        return os.getpid()

    def echo(self, value):
        return value

    def token(self, tok, work=0.0):
        if work:
            time.sleep(work)
        return {"token": tok, "pid": os.getpid()}

    def tok_stream(self, tok, n, gap=0.0):
        for i in range(n):
            if gap:
                time.sleep(gap)
            yield {"token": tok, "i": i}

    def big_stream(self, n, size):
        """n chunks of size bytes each, as fast as the worker can make them."""
        blob = b"x" * size
        for i in range(n):
            yield {"i": i, "blob": blob}

    def sleep(self, seconds):
        time.sleep(seconds)
        return {"pid": os.getpid(), "slept": seconds}

    def watched_stream(self, marker, n, gap):
        """A long generation that records, when it stops, how far it got
        (closed early by the host when nobody listens any more)."""
        i = -1
        try:
            for i in range(n):
                time.sleep(gap)
                yield i
        finally:
            with open(marker + ".tmp", "w") as f:
                f.write(f"{i} {n}")
            os.replace(marker + ".tmp", marker)  # appears complete

    def blob(self, n):
        """n bytes: with n near 64 MiB the answer frame exceeds the
        protocol's 64 MiB message limit."""
        return b"x" * n

    def blob_stream(self, sizes):
        for n in sizes:
            yield b"y" * n

    def token_marked(self, tok, marker, work):
        """Create ``marker`` (the call is running), work, answer the token."""
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(work)
        return {"token": tok, "pid": os.getpid()}
