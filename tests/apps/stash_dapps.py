"""Dirty app for the stash interop tests: plain gunicorn DirtyApp code that
uses ``gunicorn.dirty.stash`` and declares ``stashes``."""

import os

from gunicorn.dirty import DirtyApp, stash

import stash_ops


class StashApp(DirtyApp):
    # gunicorn documents these as created on arbiter start.
    stashes = ["declared_sessions", "declared_counters"]

    def init(self):
        # As in gunicorn's guide: the declared tables are usable in init().
        self.seen_at_init = {
            "exists": stash.exists("declared_counters"),
            "tables": stash.tables(),
        }
        if not stash.exists("declared_counters", "boots"):
            stash.put("declared_counters", "boots", 0)
        stash.put("declared_counters", "boots", stash.get("declared_counters", "boots", 0) + 1)

    def pid(self):
        return os.getpid()

    def init_seen(self):
        return self.seen_at_init

    def run_ops(self, ops):
        return stash_ops.run_ops(ops)
