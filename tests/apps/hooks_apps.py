"""Dirty apps for the hook tests: each ``init()`` appends a JSON line to the
file named by ``$HOOKS_LOG`` (the same file the config's hooks write), so a
test can see whether ``dirty_worker_init`` ran after every app's init."""

import json
import os
import time

from gunicorn.dirty import DirtyApp


def record(**kw):
    path = os.environ.get("HOOKS_LOG")
    if not path:
        return
    kw["os_pid"] = os.getpid()
    kw["t"] = time.time()
    with open(path, "a") as f:
        f.write(json.dumps(kw, default=repr) + "\n")


class HookApp(DirtyApp):
    """On every worker."""

    def init(self):
        record(hook="app_init", app="hooks_apps:HookApp")

    def pid(self):
        return os.getpid()

    def echo_value(self, value):
        return value


class HookOne(HookApp):
    """On one worker (class attribute)."""

    workers = 1

    def init(self):
        record(hook="app_init", app="hooks_apps:HookOne")
