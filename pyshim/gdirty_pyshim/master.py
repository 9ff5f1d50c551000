"""gunicorn's own master runs gdirty as its dirty arbiter.

One line in ``gunicorn.conf.py``::

    import gdirty_pyshim.master  # gdirty is gunicorn's dirty arbiter

and a plain ``gunicorn -c gunicorn.conf.py app:app`` starts the ``gdirty``
binary where it would fork its Python dirty arbiter. Everything else stays
gunicorn's: the master restarts gdirty when it dies, forwards HUP, USR1,
TERM, INT and QUIT to it, waits for it on shutdown, exports
``GUNICORN_DIRTY_SOCKET`` to the HTTP workers, and its control server
(``gunicornc show dirty``, ``show all``, ``dirty add/remove``) talks to gdirty
over the dirty socket (gdirty answers STATUS and MANAGE as gunicorn's arbiter
does).

This rides on gunicorn internals: ``Arbiter.spawn_dirty_arbiter`` (replaced),
and the attributes the rest of the master and the control server read
(``dirty_arbiter_pid``, ``dirty_arbiter.socket_path``, ``.workers``,
``.app_specs``, ``.app_worker_map``, ``dirty_pidfile``,
``_cleanup_orphaned_dirty_arbiter``, ``_get_dirty_pidfile_path``). Those are
the same in every release listed in ``KNOWN_RELEASES``; on any other release
the master logs one error line and keeps gunicorn's own dirty arbiter.

The binary is ``$GDIRTY_BINARY``, else ``gdirty`` next to the interpreter (a
venv's ``bin/``, where the wheel puts it), else ``gdirty`` on ``PATH``.
"""

import atexit
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import gunicorn
from gunicorn.arbiter import Arbiter

__all__ = []

# Releases whose master-side dirty arbiter code master mode was tested on
# (tests/test_master_mode.py). 25.2.0 and 26.1.0 ship the same code as
# their neighbours (checked method by method); 25.0.x has the same hooks but
# speaks protocol v0 to its workers' clients, which gdirty must speak too.
KNOWN_RELEASES = frozenset({
    "25.0.0", "25.0.1", "25.0.2", "25.0.3",
    "25.1.0", "25.2.0", "25.3.0",
    "26.0.0", "26.1.0", "26.2.0",
    "27.0.0", "27.0.1",
})

# The attributes of gunicorn's Arbiter master mode relies on.
_REQUIRED = ("spawn_dirty_arbiter", "kill_dirty_arbiter", "reap_dirty_arbiter",
             "manage_dirty_arbiter", "_cleanup_orphaned_dirty_arbiter",
             "_get_dirty_pidfile_path")

# How long the first start waits for gdirty's workers to boot before HTTP
# workers are spawned (gdirty loads the config, the workers the apps).
START_WAIT = float(os.environ.get("GDIRTY_START_WAIT", "60"))


def _config_path():
    """Absolute path of the gunicorn config being executed (this module is
    imported from it, as ``__config__``), resolved now, before any chdir."""
    mod = sys.modules.get("__config__")
    path = getattr(mod, "__file__", None)
    return os.path.abspath(path) if path else None


CONFIG_PATH = _config_path()


def find_binary():
    """The gdirty binary to run, or None."""
    env = os.environ.get("GDIRTY_BINARY")
    if env:
        return env if os.access(env, os.X_OK) else None
    beside = os.path.join(os.path.dirname(sys.executable), "gdirty")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("gdirty")


def unsupported_reason():
    """Why master mode cannot run on this gunicorn, or None."""
    version = getattr(gunicorn, "__version__", "?")
    if version not in KNOWN_RELEASES:
        return (f"gunicorn {version} is not a release gdirty's master mode knows "
                f"(known: {', '.join(sorted(KNOWN_RELEASES))})")
    missing = [a for a in _REQUIRED if not hasattr(Arbiter, a)]
    if missing:
        return f"gunicorn {version} lacks Arbiter.{', '.join(missing)}"
    return None


class _Heartbeat:
    """Stands in for a worker's tmp file: the control server computes
    ``monotonic() - tmp.last_update()``."""

    def __init__(self, ago):
        self._at = None if ago is None else time.monotonic() - ago

    def last_update(self):
        if self._at is None:
            raise ValueError("no heartbeat")
        return self._at


class _Worker:
    def __init__(self, info):
        self.pid = info.get("pid")
        self.age = info.get("age")
        self.app_paths = list(info.get("apps") or [])
        self.booted = bool(info.get("booted"))
        self.tmp = _Heartbeat(info.get("last_heartbeat"))


class GdirtyArbiter:
    """What gunicorn's master keeps as ``self.dirty_arbiter``: the socket
    path, and the worker and app tables its control server reads, fetched
    from gdirty with gunicorn's STATUS message."""

    def __init__(self, socket_path, pid, dirty_apps, binary):
        self.socket_path = socket_path
        self.binary = binary
        self.pid = pid
        self._dirty_apps = list(dirty_apps)
        self._status = None
        self._status_at = 0.0

    def status(self):
        """gdirty's STATUS result (cached briefly: one gunicornc command
        reads several tables), {} when gdirty does not answer."""
        now = time.monotonic()
        if self._status is not None and now - self._status_at < 0.5:
            return self._status
        from gunicorn.dirty.protocol import DirtyProtocol
        result = {}
        try:
            if hasattr(DirtyProtocol, "MSG_TYPE_STATUS"):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2.0)
                    s.connect(self.socket_path)
                    DirtyProtocol.write_message(
                        s, {"type": DirtyProtocol.MSG_TYPE_STATUS, "id": 1})
                    answer = DirtyProtocol.read_message(s)
                if answer.get("type") == DirtyProtocol.MSG_TYPE_RESPONSE:
                    result = answer.get("result") or {}
            else:
                # gunicorn 25.0.x has no STATUS message: ask gdirty's CLI.
                out = subprocess.run([self.binary, "status", "--json", "--socket", self.socket_path],
                                     capture_output=True, timeout=5, check=True).stdout
                result = json.loads(out)
        except Exception:  # a dead or busy gdirty: empty tables, as gunicorn's ctl does
            result = {}
        self._status, self._status_at = result, time.monotonic()
        return result

    @property
    def workers(self):
        return {w.get("pid"): _Worker(w) for w in self.status().get("workers", [])}

    @property
    def app_worker_map(self):
        apps = {}
        for w in self.status().get("workers", []):
            for path in w.get("apps") or []:
                apps.setdefault(path, set()).add(w.get("pid"))
        return apps

    @property
    def app_specs(self):
        """gunicorn's shape. The limit is the spec's ``:N``; a class
        attribute ``workers`` is not read here (that would import the app
        into the master), so it shows as no limit."""
        from gunicorn.dirty.app import parse_dirty_app_spec
        specs = {}
        for spec in self._dirty_apps:
            try:
                path, count = parse_dirty_app_spec(spec)
            except Exception:  # gdirty reports a bad spec itself
                continue
            specs[path] = {"import_path": path, "worker_count": count,
                           "original_spec": spec}
        return specs


def _command(binary, cfg, socket_path):
    argv = [binary, "--config", CONFIG_PATH or cfg.config,
            "--python", sys.executable, "--socket", socket_path,
            "--parent-pid", str(os.getpid()),
            "--dirty-workers", str(cfg.dirty_workers),
            "--dirty-threads", str(cfg.dirty_threads),
            "--dirty-timeout", str(cfg.dirty_timeout),
            "--dirty-graceful-timeout", str(cfg.dirty_graceful_timeout)]
    # The master's effective values (its command line included) win over
    # the config file gdirty re-reads.
    for spec in cfg.dirty_apps:
        argv += ["--dirty-app", spec]
    return argv


def _environment(arbiter):
    cfg = arbiter.cfg
    env = dict(os.environ)
    # gdirty's config loader applies GUNICORN_CMD_ARGS as gunicorn does; add
    # the master's log settings so a --log-level, --error-logfile or
    # --capture-output given on gunicorn's command line reaches gdirty too
    # (and a logconfig_dict still wins over them, as in gunicorn).
    # The master's proc_name names the PID file of gunicorn's orphan
    # convention: gdirty writes the very file the master checks.
    extra = ["--log-level", cfg.loglevel, "--error-logfile", cfg.errorlog,
             "--name", arbiter.proc_name]
    if cfg.capture_output:
        extra.append("--capture-output")
    env["GUNICORN_CMD_ARGS"] = " ".join(
        filter(None, [env.get("GUNICORN_CMD_ARGS", ""), shlex.join(extra)]))
    env.setdefault("GDIRTY_QUIET_SOCKET_LINE", "1")
    return env


def _socket_path(arbiter):
    """One socket path per master, kept across gdirty restarts, so HTTP
    workers that read GUNICORN_DIRTY_SOCKET once keep finding gdirty."""
    path = getattr(arbiter, "_gdirty_socket", None)
    if path is None:
        directory = tempfile.mkdtemp(prefix="gdirty-")
        path = os.path.join(directory, "arbiter.sock")
        arbiter._gdirty_socket = path
        master = os.getpid()
        # Forked HTTP workers inherit atexit handlers: only the master's
        # own exit removes the directory.
        atexit.register(lambda: os.getpid() == master and shutil.rmtree(directory, ignore_errors=True))
    return path


def _wait_ready(arbiter, pid, want, deadline):
    """Until gdirty's STATUS shows ``want`` booted workers, gdirty exits, or
    the deadline: HTTP workers spawned after this find calls served from
    the first request."""
    while time.monotonic() < deadline:
        arbiter.dirty_arbiter._status = None  # no cache: poll
        workers = arbiter.dirty_arbiter.status().get("workers") or []
        if len(workers) >= want and all(w.get("booted") for w in workers):
            return True
        try:
            wpid, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            wpid, status = pid, 0
        if wpid:
            arbiter.log.error("gdirty (pid: %s) exited before its workers booted (exit code %s)",
                              pid, os.waitstatus_to_exitcode(status))
            arbiter.dirty_arbiter_pid = 0
            arbiter.dirty_arbiter = None
            return False
        time.sleep(0.05)
    arbiter.log.warning("gdirty (pid: %s) workers still booting after %ss; starting HTTP workers",
                        pid, START_WAIT)
    return False


class _Backoff:
    """gunicorn respawns its arbiter on every turn of its loop; a gdirty
    that cannot start (a bad config: it exits at once with a clear error)
    is retried after 1, 2, 4 ... 30 s instead, and a gdirty that ran for a
    while is restarted at once."""

    STABLE = 10.0
    MAX = 30.0

    def __init__(self):
        self.delay = 0.0
        self.last = None

    @classmethod
    def of(cls, arbiter):
        b = getattr(arbiter, "_gdirty_backoff", None)
        if b is None:
            b = arbiter._gdirty_backoff = cls()
        return b

    def ready(self):
        if self.last is None:
            return True
        now = time.monotonic()
        if now - self.last >= self.STABLE + self.delay:
            self.delay = 0.0
            return True
        if now - self.last < self.delay:
            return False
        return True

    def started(self):
        now = time.monotonic()
        if self.last is not None and now - self.last < self.STABLE + self.delay:
            self.delay = min(self.MAX, max(1.0, self.delay * 2))
        self.last = now


def spawn_dirty_arbiter(self):
    """Replaces gunicorn's: start gdirty where gunicorn forks its arbiter."""
    reason = unsupported_reason()
    binary = find_binary() if reason is None else None
    if reason is None and binary is None:
        env = os.environ.get("GDIRTY_BINARY")
        reason = (f"GDIRTY_BINARY={env} is not an executable file" if env else
                  "no gdirty binary (set GDIRTY_BINARY, or install the gdirty wheel)")
    if reason is not None:
        if not getattr(self, "_gdirty_warned", False):
            self._gdirty_warned = True  # one line, not one per respawn
            self.log.error("gdirty master mode disabled: %s; using gunicorn's own dirty arbiter", reason)
        return spawn_dirty_arbiter._original(self)

    from gunicorn.dirty import set_dirty_socket_path

    if self.dirty_arbiter_pid:
        return None
    backoff = _Backoff.of(self)
    if not backoff.ready():
        return None  # the master's loop calls again about once a second
    self._cleanup_orphaned_dirty_arbiter()
    self.dirty_pidfile = self._get_dirty_pidfile_path()
    path = _socket_path(self)
    argv = _command(binary, self.cfg, path)
    try:
        pid = os.posix_spawn(binary, argv, _environment(self))
    except OSError as e:
        self.log.error("Cannot start gdirty %s: %s", binary, e)
        return None
    backoff.started()
    self.dirty_arbiter_pid = pid
    self.dirty_arbiter = GdirtyArbiter(path, pid, self.cfg.dirty_apps, binary)
    set_dirty_socket_path(path)
    os.environ["GUNICORN_DIRTY_SOCKET"] = path
    self.log.info("Spawned gdirty dirty arbiter (pid: %s) at %s", pid, path)
    if not self.WORKERS:
        # First start: HTTP workers come next; let them find gdirty ready.
        _wait_ready(self, pid, self.cfg.dirty_workers, time.monotonic() + START_WAIT)
    return pid


def install():
    """Point gunicorn's Arbiter at gdirty (idempotent)."""
    current = getattr(Arbiter, "spawn_dirty_arbiter", None)
    if current is None:
        # No dirty arbiters in this gunicorn at all: nothing to replace, and
        # its logger is not set up yet while the config is read.
        print(f"[gdirty] master mode disabled: {unsupported_reason()}", file=sys.stderr)
        return
    if getattr(current, "_gdirty", False):
        return
    spawn_dirty_arbiter._gdirty = True
    spawn_dirty_arbiter._original = current
    Arbiter.spawn_dirty_arbiter = spawn_dirty_arbiter


install()
