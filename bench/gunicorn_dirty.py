"""Run gunicorn's own Python DirtyArbiter standalone, the way gunicorn's
master does (gunicorn/arbiter.py, Arbiter.spawn_dirty_arbiter):

* this process plays the master: it loads the gunicorn config file with
  gunicorn's Config, builds ``DirtyArbiter(cfg, log)`` (which, like in the
  master, imports the app modules to read their ``workers`` attribute),
  then forks; the child calls ``DirtyArbiter.run()`` and forks the workers;
* the master forwards TERM/INT/QUIT to the arbiter and exits with it.
  (``run()`` must happen in a child: the arbiter shuts itself down when its
  parent is not the process that built it.)

Usage: python gunicorn_dirty.py CONFIG
Prints ``GUNICORN_DIRTY_SOCKET=...`` and ``GUNICORN_DIRTY_TMPDIR=...`` on
stdout before forking (workers listen on TMPDIR/worker-<age>.sock).
"""

import os
import signal
import sys


def load_config(path):
    from gunicorn.config import Config

    cfg = Config()
    ns = {"__file__": path, "__name__": "__config__"}
    with open(path, "rb") as f:
        exec(compile(f.read(), path, "exec"), ns)  # noqa: S102 - as gunicorn does
    for k, v in ns.items():
        if k in cfg.settings:
            cfg.set(k.lower(), v)
    return cfg


def main():
    config = os.path.abspath(sys.argv[1])
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as gunicorn: apps import from cwd

    from gunicorn import glogging
    from gunicorn.dirty.arbiter import DirtyArbiter

    cfg = load_config(config)
    log = glogging.Logger(cfg)
    arbiter = DirtyArbiter(cfg, log)  # no pidfile: several may run at once
    print(f"GUNICORN_DIRTY_SOCKET={arbiter.socket_path}", flush=True)
    print(f"GUNICORN_DIRTY_TMPDIR={arbiter.tmpdir}", flush=True)

    child = {"pid": 0}

    def forward(sig, _frame):
        if child["pid"]:
            try:
                os.kill(child["pid"], sig)
            except ProcessLookupError:
                pass

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(s, forward)

    pid = os.fork()
    if pid == 0:
        try:
            arbiter.run()
            os._exit(0)
        except SystemExit as e:
            os._exit(e.code if isinstance(e.code, int) else 1)
        except BaseException:  # noqa: BLE001
            log.exception("Exception in dirty arbiter process")
            os._exit(1)
    child["pid"] = pid
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    sys.exit(os.waitstatus_to_exitcode(status) if status else 0)


if __name__ == "__main__":
    main()
