"""Dirty apps used by the interop suite (loaded by gdirty's Python workers).

Every action here is plain gunicorn DirtyApp code: nothing knows it runs
under gdirty.
"""

import asyncio
import os
import threading
import time

from gunicorn.dirty import DirtyApp


class _Base(DirtyApp):
    """Actions shared by every test app."""

    def init(self):
        self.calls = 0
        self._lock = threading.Lock()

    def pid(self):
        with self._lock:
            self.calls += 1
        return os.getpid()

    def app_name(self):
        return type(self).__name__

    def crash(self, code=1):
        """Kill this worker process outright (a segfault stand-in)."""
        os._exit(code)

    def _secret(self):  # must never be callable from a client
        return "leaked"


class EchoApp(_Base):
    """Loaded on every worker."""

    def echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def echo_value(self, value):
        return value

    def token(self, tok):
        return {"token": tok, "pid": os.getpid()}

    def env(self, name):
        return os.environ.get(name)

    def fail(self, message):
        raise ValueError(message)

    def fail_key(self):
        return {}["missing"]

    def fail_os(self, path):
        with open(path):  # FileNotFoundError: the app's own OSError
            pass

    def text(self, n):
        """n characters (JSON-encodable, unlike bytes: for protocol v0)."""
        return "\u00e9x" * (n // 2)

    def unencodable(self):
        return {1, 2, 3}  # a set: not TLV-encodable

    def sleep(self, seconds):
        started = time.monotonic()
        time.sleep(seconds)
        return {"pid": os.getpid(), "slept": time.monotonic() - started}

    def marked_sleep(self, marker, seconds):
        """Create ``marker`` (so a test knows the call is running), sleep."""
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(seconds)
        return {"pid": os.getpid(), "done": True}

    def cwd(self):
        return os.getcwd()

    def count(self, n):
        for i in range(n):
            yield {"i": i, "pid": os.getpid()}

    def slow_stream(self, n, gap):
        for i in range(n):
            time.sleep(gap)
            yield i

    async def aslow_stream(self, n, gap):
        for i in range(n):
            await asyncio.sleep(gap)
            yield i

    def tracked_stream(self, path, n, gap):
        """Stream n chunks; record in ``path`` whether the generator ran to
        the end or was closed early (GeneratorExit)."""
        try:
            for i in range(n):
                time.sleep(gap)
                yield i
        except GeneratorExit:
            with open(path, "w") as f:
                f.write(f"closed after {i}")
            raise
        with open(path, "w") as f:
            f.write("completed")

    def squares(self, n):
        for i in range(n):
            yield i * i

    def count_then_fail(self, n, message="stream broke"):
        for i in range(n):
            yield i
        raise RuntimeError(message)

    async def acount(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"a{i}"

    async def acount_then_fail(self, n, message="async stream broke"):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"a{i}"
        raise KeyError(message)

    def empty_stream(self):
        return
        yield  # pragma: no cover - makes this a generator


class OneWorkerApp(_Base):
    """Limited by the class attribute: loaded on one worker only."""

    workers = 1

    def whoami(self):
        return {"app": "one", "pid": os.getpid()}


class SpecLimitedApp(_Base):
    """No class attribute: the config spec ``dapps:SpecLimitedApp:2`` limits it."""

    def whoami(self):
        return {"app": "spec", "pid": os.getpid()}


class OverriddenApp(_Base):
    """The class says 3 workers, the spec ``:1`` must win (gunicorn priority)."""

    workers = 3
