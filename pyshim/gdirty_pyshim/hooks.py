"""``python -m gdirty_pyshim.hooks [gunicorn options]``: the hook host.

gunicorn runs ``on_dirty_starting(arbiter)``, ``dirty_post_fork(arbiter,
worker)`` and ``dirty_worker_exit(arbiter, worker)`` inside its (Python)
dirty arbiter. gdirty's arbiter is Go, so when the config defines any of
them gdirty starts this process and sends it one JSON event per line on
stdin; each event is answered with one JSON line on stdout ({"ok": true}
or {"ok": false, "error": traceback}). The hooks receive objects with the
attributes gunicorn's DirtyArbiter and DirtyWorker have. A hook that raises
is reported (with its traceback) and does not stop anything.
"""

import json
import os
import sys
import traceback

from .gconfig import load_cfg


class WorkerView:
    """What hooks see of a dirty worker (gunicorn's DirtyWorker attributes)."""

    def __init__(self, data, cfg, log):
        self.pid = data.get("pid")
        self.age = data.get("age")
        self.ppid = data.get("ppid")
        self.app_paths = list(data.get("apps") or [])
        self.booted = bool(data.get("booted"))
        self.aborted = bool(data.get("aborted"))
        self.alive = bool(data.get("alive", True))
        self.exitcode = data.get("exitcode")
        self.cfg = cfg
        self.log = log
        self.socket_path = None
        self.tmp = None
        self.apps = {}

    def __str__(self):
        return f"<DirtyWorker {self.pid}>"


class ArbiterView:
    """What hooks see of the arbiter (gunicorn's DirtyArbiter attributes)."""

    def __init__(self, cfg, log):
        self.cfg = cfg
        self.log = log
        self.pid = None
        self.ppid = None
        self.socket_path = os.environ.get("GUNICORN_DIRTY_SOCKET")
        self.workers = {}
        self.num_workers = cfg.dirty_workers
        self.alive = True
        self.worker_age = 0
        self.app_specs = {}
        self.pidfile = None

    def update(self, data):
        self.pid = data.get("pid", self.pid)
        self.ppid = data.get("ppid", self.ppid)
        self.socket_path = data.get("socket_path", self.socket_path)
        self.num_workers = data.get("num_workers", self.num_workers)
        self.alive = data.get("alive", self.alive)
        self.pidfile = data.get("pidfile", self.pidfile)
        if "app_specs" in data:
            self.app_specs = {
                s["import_path"]: {"import_path": s["import_path"],
                                   "worker_count": s.get("worker_count"),
                                   "original_spec": s.get("original_spec")}
                for s in data["app_specs"]}
        if "workers" in data:
            self.workers = {w["pid"]: WorkerView(w, self.cfg, self.log)
                            for w in data["workers"]}
            self.worker_age = max([w["age"] for w in data["workers"]] + [self.worker_age])

    def __str__(self):
        return f"<DirtyArbiter {self.pid}>"


def main(argv=None):
    cfg = load_cfg(sys.argv[1:] if argv is None else argv)
    log = cfg.logger_class(cfg)
    arbiter = ArbiterView(cfg, log)
    out = sys.stdout
    # Hooks that print must not corrupt the event channel.
    sys.stdout = sys.stderr
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        reply = {"ok": True}
        try:
            event = json.loads(line)
            arbiter.update(event.get("arbiter") or {})
            name = event["event"]
            if name == "on_dirty_starting":
                cfg.on_dirty_starting(arbiter)
            elif name in ("dirty_post_fork", "dirty_worker_exit"):
                worker = WorkerView(event["worker"], cfg, log)
                getattr(cfg, name)(arbiter, worker)
            else:
                raise ValueError(f"unknown hook event {name!r}")
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
