"""``python -m gdirty_pyshim.forkserver --control-fd N [gunicorn options]``

gdirty's fork server: loads the gunicorn config once, imports every dirty
app module once (as gunicorn's arbiter does before forking), then forks a
worker for each spawn request. A respawned worker therefore starts in
milliseconds instead of paying interpreter start-up and imports again.

Control channel (SOCK_SEQPACKET, one JSON message per packet):
  gdirty -> here: {"op": "spawn", "age": N, "apps": [...], "env": ["K=V"]} + the worker's
                  link fds (the pipe it reads requests from, the pipe it writes answers
                  to) and read-mark fd (SCM_RIGHTS); {"op": "retire"}: fork no more and
                  exit once every child has exited.
  here -> gdirty: {"op": "spawned", "age": N, "pid": P} or
                  {"op": "error", "age": N, "error": "..."};
                  {"op": "exit", "pid": P, "status": wait status}.
The server stays single-threaded so that forking is safe. It exits when
gdirty closes the channel (its children then see their links close too).
"""

import argparse
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback

from gunicorn.dirty.app import parse_dirty_app_spec

from . import worker as W
from .gconfig import load_cfg


class ForkServer:
    def __init__(self, ctl, cfg, log):
        self.ctl = ctl
        self.cfg = cfg
        self.log = log
        self.children = set()
        self.retiring = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def preload(self):
        """Import the app modules so forked workers inherit them."""
        for spec in self.cfg.dirty_apps:
            try:
                import_path, _ = parse_dirty_app_spec(spec)
                importlib.import_module(import_path.rsplit(":", 1)[0])
            except Exception as e:
                # The worker reports it properly when it loads the app.
                self.log.warning("Fork server could not preload %s: %s", spec, e)

    def send(self, msg):
        self.ctl.send(json.dumps(msg).encode())

    def serve(self):
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # gdirty stops this process by closing the channel; signals aimed at
        # its process group are not for us.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        sel = selectors.DefaultSelector()
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        sel.register(self.wake_r, selectors.EVENT_READ, "chld")
        while True:
            for key, _ in sel.select():
                if key.data == "chld":
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                elif not self.handle_control():
                    return
            if self.retiring and not self.children:
                return

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"op": "exit", "pid": pid, "status": status})

    def handle_control(self):
        msg, fds, _flags, _addr = socket.recv_fds(self.ctl, 65536, 4)
        if not msg:
            return False
        req = json.loads(msg)
        op = req.get("op")
        if op == "retire":
            self.retiring = True
            for fd in fds:
                os.close(fd)
            return True
        if op != "spawn" or len(fds) != 3 or self.retiring:
            for fd in fds:
                os.close(fd)
            self.send({"op": "error", "age": req.get("age"),
                       "error": f"bad spawn request {op!r} with {len(fds)} fds"})
            return True
        in_fd, out_fd, mark_fd = fds
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            self.send({"op": "error", "age": req["age"], "error": str(e)})
            return True
        if pid == 0:
            self.become_worker((in_fd, out_fd), mark_fd, req["age"], req["apps"], req.get("ppid"),
                               req.get("env") or [])
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        self.send({"op": "spawned", "age": req["age"], "pid": pid})
        return True

    def become_worker(self, link_fds, mark_fd, age, apps, ppid, env=()):
        try:
            # gdirty's per-worker variables (device placement), set before
            # any app code runs in this process.
            for item in env:
                name, _, value = item.partition("=")
                os.environ[name] = value
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                        signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_DFL)
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.ctl.close()
            W.run(link_fds, mark_fd, age, apps, self.cfg, self.log, ppid=ppid)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(W.WORKER_BOOT_ERROR)


def main(argv=None):
    p = argparse.ArgumentParser(prog="gdirty_pyshim.forkserver")
    p.add_argument("--control-fd", type=int, required=True)
    p.add_argument("gunicorn_args", nargs=argparse.REMAINDER)
    opts = p.parse_args(sys.argv[1:] if argv is None else argv)
    gargs = opts.gunicorn_args
    if gargs and gargs[0] == "--":
        gargs = gargs[1:]
    ctl = socket.socket(fileno=opts.control_fd)
    cfg = load_cfg(gargs)
    log = cfg.logger_class(cfg)
    server = ForkServer(ctl, cfg, log)
    server.preload()
    server.send({"op": "ready", "pid": os.getpid()})
    server.serve()
    os._exit(0)


if __name__ == "__main__":
    main()
