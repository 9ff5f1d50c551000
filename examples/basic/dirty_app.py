"""A small DirtyApp: what gunicorn's docs call a stateful, heavy app."""

import os
import time

from gunicorn.dirty import DirtyApp


class EchoApp(DirtyApp):
    """Loaded once per worker; its state lives as long as the worker."""

    def init(self):
        self.calls = 0

    def echo(self, value):
        self.calls += 1
        return value

    def whoami(self):
        return {"pid": os.getpid(), "calls": self.calls}

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    def count(self, n):
        for i in range(n):
            yield i

    def fail(self, message):
        raise ValueError(message)


class ReverseApp(DirtyApp):
    """Limited to one worker: routed only to the worker that loaded it."""

    workers = 1

    def reverse(self, text):
        return text[::-1]
