#!/usr/bin/env python
"""Chaos soak for gdirty: many concurrent callers while workers die.

    .venv/bin/python tests/soak.py --duration 60        # about a minute
    make soak                                           # about 5 minutes

What it does:

* starts a real gdirty (``--metrics-bind``) with real Python workers
  running ``tests/apps/hostile_apps.py``;
* forks ``--callers`` caller processes. Each one runs gunicorn's own
  ``DirtyClient`` (``execute`` and ``stream``) and raw-socket callers
  (unique 64-bit request ids, pipelining-free) in a random mix; every call
  carries a unique token that the app echoes back in its result and in
  every stream chunk;
* meanwhile a chaos thread SIGKILLs random workers at random intervals
  (sometimes two at once) and sends SIGHUP (reload) to gdirty now and then.

Checks (the exit status is 0 only when all hold):

* every call ends in exactly one final answer: its result, or a documented
  error (DirtyWorkerError for calls held by a killed worker,
  DirtyTimeoutError from gdirty, DirtyNoWorkersAvailableError / "No dirty
  workers available" at most briefly);
* no answer ever carries another call's token or id (wrong answers = 0);
* streams either complete in order or end with one error after in-order
  chunks;
* zero never-answered calls (the client timeout is generous: a client-side
  timeout or a connection closed without an answer counts as missing);
* gdirty counted every call exactly once (gdirty_requests_total) and has
  none in flight at the end;
* after the chaos stops the pool is whole again, and gdirty's goroutines,
  open fds and RSS return to within a small margin of their baseline
  (polled with a deadline);
* gdirty exits 0 on SIGTERM and no worker survives it.

Bounded in time (duration + fixed deadlines) and calls (--max-calls per
caller); every process it starts is stopped (SIGTERM, wait, SIGKILL) even
on failure. Figures go to stdout, and to ``--json`` when given.
"""

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS_DIR = HERE / "apps"
sys.path.insert(0, str(HERE))

from hostile_util import Gauges, metric, metrics_url_from_log, mib, scrape  # noqa: E402
from proctools import descendants, pid_gone, stop_process  # noqa: E402

from gunicorn.dirty.client import DirtyClient  # noqa: E402
from gunicorn.dirty.errors import (  # noqa: E402
    DirtyConnectionError, DirtyError, DirtyTimeoutError,
)
from gunicorn.dirty.protocol import BinaryProtocol as BP  # noqa: E402

APP = "hostile_apps:HostileApp"

_SCRUB_ENV = ("GUNICORN_CMD_ARGS", "GUNICORN_DIRTY_SOCKET", "GDIRTY_SOCKET",
              "GDIRTY_PYTHON", "GDIRTY_LOG_LEVEL", "GDIRTY_LOG_FORMAT",
              "GDIRTY_MAX_QUEUE", "GDIRTY_CONFIG", "GDIRTY_METRICS_BIND",
              "GDIRTY_MAX_CONNECTIONS", "PYTHONPATH")

# Timeouts raised by gunicorn's client itself (no answer arrived in time).
CLIENT_TIMEOUT_PREFIXES = ("Timeout waiting for dirty app response",
                           "Timeout connecting to dirty arbiter",
                           "Stream exceeded total timeout",
                           "Timeout waiting for next chunk")


class SoakFailure(Exception):
    pass


# ---------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------

def pid_alive(pid):
    return not pid_gone(pid)


def stop_mp(proc, timeout=10.0):
    """Stop a multiprocessing child: SIGTERM, wait, SIGKILL. True if it had
    to be signalled at all."""
    if not proc.is_alive():
        proc.join(1)
        return False
    proc.terminate()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join(30)
    return True


def status(socket_path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(socket_path)
        rid = random.getrandbits(63)
        s.sendall(BP.encode_status(rid))
        msg = BP.read_message(s)
    finally:
        s.close()
    if msg.get("type") != "response" or msg.get("id") != rid:
        raise SoakFailure(f"bad STATUS answer {msg!r}")
    return msg["result"]


# ---------------------------------------------------------------------------
# Callers (separate processes)
# ---------------------------------------------------------------------------

def classify_error_dict(err):
    t = err.get("error_type")
    m = err.get("message") or ""
    if t == "DirtyWorkerError":
        return "DirtyWorkerError"
    if t == "DirtyTimeoutError":
        return "DirtyTimeoutError"
    if t == "DirtyNoWorkersAvailableError" or (t == "DirtyError"
                                               and m == "No dirty workers available"):
        return "NoWorkers"
    return f"unexpected:{t}:{m[:100]}"


def classify_exception(e):
    if isinstance(e, DirtyTimeoutError) and str(e.message).startswith(CLIENT_TIMEOUT_PREFIXES):
        return "missing:client_timeout"
    if isinstance(e, DirtyConnectionError):
        return "missing:connection"
    if isinstance(e, DirtyError):
        return classify_error_dict({"error_type": type(e).__name__, "message": e.message})
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "missing:client_timeout"
    if isinstance(e, (ConnectionError, EOFError, OSError)):
        return "missing:connection"
    return f"harness:{e!r}"[:200]


class Caller:
    def __init__(self, idx, socket_path, end_at, seed, call_timeout, max_calls):
        self.idx = idx
        # half the callers use gunicorn's async client API (execute_async,
        # stream_async), as ASGI workers do; the others the sync one
        self.use_async = idx % 2 == 0
        self.loop = asyncio.new_event_loop() if self.use_async else None
        self.socket_path = socket_path
        self.end_at = end_at
        self.rng = random.Random(seed)
        self.call_timeout = call_timeout
        self.max_calls = max_calls
        self.client = None
        self.raw = None
        self.seq = 0
        self.counts = collections.Counter()
        self.modes = collections.Counter()
        self.anomalies = []
        self.timeline = []  # (t_end, 1 if no-workers else 0) for ok / no-workers
        self.drain = "not run"

    # -- bookkeeping --------------------------------------------------------

    def note(self, outcome, mode, tok, detail=None):
        self.counts[outcome] += 1
        self.modes[mode] += 1
        if outcome == "ok":
            self.timeline.append((time.monotonic(), 0))
        elif outcome == "NoWorkers":
            self.timeline.append((time.monotonic(), 1))
        if outcome not in ("ok", "abandoned", "DirtyWorkerError", "DirtyTimeoutError", "NoWorkers") \
                and len(self.anomalies) < 25:
            self.anomalies.append({"caller": self.idx, "mode": mode, "token": tok,
                                   "outcome": outcome, "detail": repr(detail)[:500]})

    def wrong(self, mode, tok, detail):
        self.note("wrong", mode, tok, detail)

    # -- gunicorn's DirtyClient ----------------------------------------------

    def dirty_client(self):
        if self.client is None:
            self.client = DirtyClient(self.socket_path, timeout=self.call_timeout)
        return self.client

    def client_execute(self, tok, work):
        mode = "execute" if work < 0.1 else "execute_slow"
        if self.use_async:
            mode += "_async"
        try:
            if self.use_async:
                got = self.loop.run_until_complete(
                    self.dirty_client().execute_async(APP, "token", tok, work))
            else:
                got = self.dirty_client().execute(APP, "token", tok, work)
        except Exception as e:  # classified
            return self.note(classify_exception(e), mode, tok, e)
        if isinstance(got, dict) and got.get("token") == tok:
            return self.note("ok", mode, tok)
        return self.wrong(mode, tok, got)

    def client_stream(self, tok, n, gap):
        mode = "stream_async" if self.use_async else "stream"
        got = []

        async def consume():
            async for item in self.dirty_client().stream_async(APP, "tok_stream", tok, n, gap):
                got.append(item)

        try:
            if self.use_async:
                self.loop.run_until_complete(consume())
            else:
                for item in self.dirty_client().stream(APP, "tok_stream", tok, n, gap):
                    got.append(item)
        except Exception as e:  # ended by an error: chunks so far must be in order
            if not self._in_order(got, tok):
                return self.wrong(mode, tok, ("chunks before error", got[:5], e))
            return self.note(classify_exception(e), mode, tok, e)
        if len(got) != n or not self._in_order(got, tok):
            return self.wrong(mode, tok, ("stream", n, got[:5], len(got)))
        return self.note("ok", mode, tok)

    @staticmethod
    def _in_order(chunks, tok):
        return all(isinstance(c, dict) and c.get("token") == tok and c.get("i") == i
                   for i, c in enumerate(chunks))

    # -- raw socket: checks request ids too ------------------------------------

    def raw_sock(self):
        if self.raw is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.call_timeout)
            s.connect(self.socket_path)
            self.raw = s
        return self.raw

    def raw_drop(self):
        if self.raw is not None:
            try:
                self.raw.close()
            except OSError:
                pass
            self.raw = None

    def raw_call(self, tok, stream, n=0, gap=0.0):
        mode = "raw_stream" if stream else "raw_execute"
        rid = (self.idx << 48) | (self.seq & 0xFFFFFFFFFFFF)
        try:
            s = self.raw_sock()
        except OSError as e:
            return self.note("missing:connect", mode, tok, e)
        try:
            if stream:
                s.sendall(BP.encode_request(rid, APP, "tok_stream", (tok, n, gap)))
            else:
                s.sendall(BP.encode_request(rid, APP, "token", (tok, 0.0)))
            expect = 0
            while True:
                msg = BP.read_message(s)
                if msg.get("id") != rid:
                    self.raw_drop()
                    return self.wrong(mode, tok, ("id", msg.get("id"), rid, msg))
                t = msg.get("type")
                if t == "error":
                    return self.note(classify_error_dict(msg.get("error") or {}), mode, tok, msg)
                if not stream:
                    if t == "response" and isinstance(msg.get("result"), dict) \
                            and msg["result"].get("token") == tok:
                        return self.note("ok", mode, tok)
                    self.raw_drop()
                    return self.wrong(mode, tok, msg)
                if t == "chunk":
                    d = msg.get("data")
                    if not (isinstance(d, dict) and d.get("token") == tok and d.get("i") == expect):
                        self.raw_drop()
                        return self.wrong(mode, tok, ("chunk", expect, msg))
                    expect += 1
                    continue
                if t == "end" and expect == n:
                    return self.note("ok", mode, tok)
                self.raw_drop()
                return self.wrong(mode, tok, ("final", expect, n, msg))
        except (socket.timeout, TimeoutError) as e:
            self.raw_drop()
            return self.note("missing:client_timeout", mode, tok, e)
        except (OSError, DirtyError) as e:  # closed without an answer
            self.raw_drop()
            return self.note("missing:connection", mode, tok, e)

    def abandon(self, tok, stream):
        """A client that leaves mid-call (a user closing the page): a fresh
        connection, a request, maybe a few chunks, then close. gdirty must
        cope (cancel the stream, free the slot); nothing to check here but
        the chunks read, the soak's end state checks the rest."""
        mode = "abandon_stream" if stream else "abandon_execute"
        rid = (self.idx << 48) | (self.seq & 0xFFFFFFFFFFFF)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.call_timeout)
        try:
            s.connect(self.socket_path)
            if stream:
                s.sendall(BP.encode_request(rid, APP, "tok_stream", (tok, 200, 0.01)))
                for i in range(self.rng.randint(0, 5)):
                    msg = BP.read_message(s)
                    if msg.get("type") == "error" and msg.get("id") == rid:
                        return self.note(classify_error_dict(msg.get("error") or {}), mode, tok)
                    d = msg.get("data")
                    if msg.get("id") != rid or msg.get("type") != "chunk" or \
                            not (isinstance(d, dict) and d.get("token") == tok and d.get("i") == i):
                        return self.wrong(mode, tok, msg)
            else:
                s.sendall(BP.encode_request(rid, APP, "token", (tok, self.rng.choice([0.0, 0.05]))))
            return self.note("abandoned", mode, tok)
        except (socket.timeout, TimeoutError) as e:
            return self.note("missing:client_timeout", mode, tok, e)
        except (OSError, DirtyError) as e:
            return self.note("missing:connection", mode, tok, e)
        finally:
            s.close()

    # -- loop ---------------------------------------------------------------

    def run(self):
        rng = self.rng
        while time.monotonic() < self.end_at and self.seq < self.max_calls:
            self.seq += 1
            tok = f"c{self.idx}-{self.seq}-{uuid.uuid4().hex[:12]}"
            r = rng.random()
            if r < 0.35:
                self.client_execute(tok, rng.choice([0.0, 0.0, 0.005, 0.02]))
            elif r < 0.45:
                self.client_execute(tok, rng.uniform(0.1, 0.4))
            elif r < 0.70:
                self.client_stream(tok, rng.randint(0, 12), rng.choice([0.0, 0.005, 0.02]))
            elif r < 0.82:
                self.raw_call(tok, stream=False)
            elif r < 0.85:
                self.abandon(tok, stream=rng.random() < 0.7)
            else:
                self.raw_call(tok, stream=True, n=rng.randint(0, 12),
                              gap=rng.choice([0.0, 0.005, 0.02]))
        if self.client is not None:
            if self.use_async:
                self.loop.run_until_complete(self.client.close_async())
                self.loop.close()
            else:
                self.client.close()
        self.final_drain_check()
        self.raw_drop()

    def final_drain_check(self):
        """Nothing may follow a final answer: on the raw connection (kept
        across errors), a STATUS must be the very next frame to arrive."""
        if self.raw is None:
            return
        rid = (self.idx << 48) | 0xFFFFFFFFFFFF
        try:
            self.raw.sendall(BP.encode_status(rid))
            msg = BP.read_message(self.raw)
        except (OSError, DirtyError) as e:
            self.drain = f"no STATUS answer: {e!r}"
            return
        if msg.get("type") != "response" or msg.get("id") != rid:
            self.drain = f"frame after a final answer: {msg!r}"[:500]
        else:
            self.drain = "ok"


def caller_main(idx, socket_path, end_at, seed, call_timeout, max_calls, out_path):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    c = Caller(idx, socket_path, end_at, seed, call_timeout, max_calls)
    result = {"idx": idx}
    try:
        c.run()
    except BaseException:
        result["crash"] = traceback.format_exc()[-3000:]
    result.update(calls=c.seq, drain=c.drain, counts=dict(c.counts), modes=dict(c.modes),
                  anomalies=c.anomalies, timeline=c.timeline)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, out_path)


# ---------------------------------------------------------------------------
# Chaos
# ---------------------------------------------------------------------------

class Chaos(threading.Thread):
    def __init__(self, gdirty_pid, socket_path, end_at, rng, kill_every, hup_every, log,
                 hup_quiet=0.0):
        super().__init__(daemon=True)
        self.hup_quiet = hup_quiet
        self.last_hup = self.last_kill = -1e9
        self.gdirty_pid = gdirty_pid
        self.socket_path = socket_path
        self.end_at = end_at
        self.rng = rng
        self.kill_every = kill_every
        self.hup_every = hup_every
        self.log = log
        self.kills = 0
        self.kill_all = 0
        self.hups = 0
        self.status_errors = []
        self.seen_workers = set()
        self.error = None
        self.stop_evt = threading.Event()

    def run(self):
        try:
            self._run()
        except BaseException:
            self.error = traceback.format_exc()

    def _run(self):
        rng = self.rng
        now = time.monotonic()
        next_kill = now + rng.uniform(*self.kill_every)
        next_hup = now + rng.uniform(*self.hup_every)
        while not self.stop_evt.is_set():
            now = time.monotonic()
            if now >= self.end_at:
                return
            wake = min(next_kill, next_hup, self.end_at)
            if self.stop_evt.wait(max(0.0, wake - now)):
                return
            now = time.monotonic()
            if now >= self.end_at:
                return
            if now >= next_hup:
                if now - self.last_kill < self.hup_quiet:
                    next_hup = self.last_kill + self.hup_quiet
                else:
                    os.kill(self.gdirty_pid, signal.SIGHUP)
                    self.last_hup = now
                    self.hups += 1
                    self.log(f"chaos: SIGHUP gdirty (#{self.hups})")
                    next_hup = now + rng.uniform(*self.hup_every)
            if now >= next_kill:
                q = self.hup_quiet
                if q > 0 and now - self.last_hup < q:
                    next_kill = self.last_hup + q
                elif q > 0 and next_hup - now < q:
                    next_kill = next_hup + q  # hold kills around the coming SIGHUP
                else:
                    self._kill_some()
                    self.last_kill = time.monotonic()
                    next_kill = self.last_kill + rng.uniform(*self.kill_every)

    def _kill_some(self):
        try:
            st = status(self.socket_path)
        except Exception as e:
            self.status_errors.append(repr(e))
            return
        pids = [w["pid"] for w in st.get("workers", [])]
        self.seen_workers.update(pids)
        # only ever signal processes gdirty itself started
        ours = set(descendants(self.gdirty_pid))
        pids = [p for p in pids if p in ours]
        if not pids:
            return
        r = self.rng.random()
        if r < 0.07:
            victims = pids  # the whole pool at once
            self.kill_all += 1
        else:
            victims = self.rng.sample(pids, 2 if len(pids) > 1 and r < 0.22 else 1)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass
        self.log(f"chaos: SIGKILL worker(s) {victims} (kills so far {self.kills})")


# ---------------------------------------------------------------------------
# The soak
# ---------------------------------------------------------------------------

def build_binary():
    go = shutil.which("go")
    if go is None:
        raise SoakFailure("no --binary given and no Go toolchain to build bin/gdirty")
    out = ROOT / "bin" / "gdirty"
    out.parent.mkdir(exist_ok=True)
    res = subprocess.run([go, "build", "-o", str(out), "./cmd/gdirty"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SoakFailure(f"go build failed:\n{res.stdout}\n{res.stderr}")
    return out


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise SoakFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def longest_no_worker_stretch(timeline):
    """Longest time span covered by consecutive no-worker answers (merged
    over all callers) with no successful call in between."""
    longest, start, last = 0.0, None, None
    for t, bad in sorted(timeline):
        if bad:
            if start is None:
                start = t
            last = t
            longest = max(longest, last - start)
        else:
            start = None
    return longest


def run(args):
    log = print if not args.quiet else (lambda *a, **k: None)
    rng = random.Random(args.seed)
    binary = Path(args.binary).resolve() if args.binary else build_binary()
    workdir = Path(tempfile.mkdtemp(prefix="gdirty-soak-"))
    conf = workdir / "gunicorn.conf.py"
    conf.write_text("\n".join([
        "# written by tests/soak.py",
        f"dirty_apps = [{APP!r}]",
        f"dirty_workers = {args.workers}",
        f"dirty_threads = {args.threads}",
        f"dirty_timeout = {args.dirty_timeout}",
        "dirty_graceful_timeout = 10",
        "loglevel = 'info'",
    ]) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    out_path, err_path = workdir / "gdirty.stdout", workdir / "gdirty.stderr"
    fig = {"seed": args.seed, "duration": args.duration, "callers": args.callers,
           "workers": args.workers, "threads": args.threads, "workdir": str(workdir)}
    failures = []
    proc = None
    callers = []
    chaos = None
    seen_pids = set()
    try:
        with open(out_path, "wb") as o, open(err_path, "wb") as e:
            proc = subprocess.Popen(
                [str(binary), "--config", str(conf), "--python", sys.executable,
                 "--metrics-bind", "127.0.0.1:0", "--no-pidfile"],
                cwd=str(APPS_DIR), env=env, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                start_new_session=True)
        fig["gdirty_pid"] = proc.pid

        def stderr_text():
            return err_path.read_text(errors="replace")

        def socket_line():
            if proc.poll() is not None:
                raise SoakFailure(f"gdirty exited {proc.returncode}:\n{stderr_text()[-3000:]}")
            for line in out_path.read_text().splitlines():
                if line.startswith("GUNICORN_DIRTY_SOCKET="):
                    return line.split("=", 1)[1]
            return None

        sock = wait_for(socket_line, 60, "gdirty's socket line")
        url = wait_for(lambda: metrics_url_from_log(stderr_text()), 30, "the metrics URL")
        gauges = Gauges(proc.pid, url)

        def pool_whole():
            try:
                st = status(sock)
            except Exception:
                return False
            ws = st["workers"]
            seen_pids.update(w["pid"] for w in ws)
            return len(ws) == args.workers and all(w["booted"] for w in ws)

        wait_for(pool_whole, 60, f"{args.workers} booted workers")
        # a few calls so lazily created state exists before the baseline
        c = DirtyClient(sock, timeout=30)
        for i in range(2 * args.workers):
            c.execute(APP, "token", f"warmup-{i}")
        list(c.stream(APP, "tok_stream", "warmup", 3))
        c.close()
        time.sleep(1.0)
        baseline = gauges.read()
        base_samples = scrape(url)
        base_requests = metric(base_samples, "gdirty_requests_total")
        base_exits = metric(base_samples, "gdirty_worker_exits_total")
        fig["baseline"] = baseline
        log(f"soak: gdirty pid {proc.pid}, socket {sock}, {args.workers} workers x "
            f"{args.threads} threads; baseline goroutines {baseline['goroutines']}, "
            f"fds {baseline['fds']}, RSS {mib(baseline['rss'])}")

        # callers: forked before any thread of ours exists
        start = time.monotonic()
        end_at = start + args.duration
        ctx = multiprocessing.get_context("fork")
        for i in range(args.callers):
            path = str(workdir / f"caller-{i}.json")
            p = ctx.Process(target=caller_main, name=f"soak-caller-{i}",
                            args=(i + 1, sock, end_at, rng.getrandbits(64), args.call_timeout,
                                  args.max_calls, path))
            p.start()
            callers.append((p, path))
        log(f"soak: {args.callers} caller processes for {args.duration:.0f}s")

        chaos = Chaos(proc.pid, sock, end_at, random.Random(rng.getrandbits(64)),
                      (args.kill_min, args.kill_max), (args.hup_min, args.hup_max), log,
                      hup_quiet=args.hup_quiet)
        chaos.start()

        # progress while it runs
        while time.monotonic() < end_at:
            time.sleep(min(10.0, max(0.0, end_at - time.monotonic())))
            if proc.poll() is not None:
                raise SoakFailure(f"gdirty died during the soak ({proc.returncode}):\n"
                                  f"{stderr_text()[-3000:]}")
            if not args.quiet and time.monotonic() < end_at:
                g = gauges.read()
                log(f"soak: t={time.monotonic() - start:.0f}s goroutines {g['goroutines']} "
                    f"fds {g['fds']} RSS {mib(g['rss'])} kills {chaos.kills} hups {chaos.hups}")
        chaos.stop_evt.set()
        chaos.join(30)
        if chaos.error:
            failures.append(f"chaos thread crashed:\n{chaos.error}")
        seen_pids.update(chaos.seen_workers)

        # callers finish their last call (bounded by the client timeout)
        hard = time.monotonic() + args.call_timeout + 60
        for p, _ in callers:
            p.join(max(0.0, hard - time.monotonic()))
        hung = [p.name for p, _ in callers if p.is_alive()]
        for p, _ in callers:
            stop_mp(p)
        if hung:
            failures.append(f"caller processes never finished (calls never answered): {hung}")

        # merge the callers' figures
        counts = collections.Counter()
        modes = collections.Counter()
        anomalies, timeline = [], []
        calls = 0
        for p, path in callers:
            try:
                with open(path) as f:
                    r = json.load(f)
            except (OSError, ValueError):
                failures.append(f"{p.name} left no result (exit code {p.exitcode})")
                continue
            if r.get("crash"):
                failures.append(f"{p.name} crashed:\n{r['crash']}")
            calls += r["calls"]
            if r.get("drain") not in ("ok", "not run"):
                failures.append(f"{p.name}: {r['drain']}")
            counts.update(r["counts"])
            modes.update(r["modes"])
            anomalies.extend(r["anomalies"])
            timeline.extend(r["timeline"])
        wrong = counts.get("wrong", 0)
        missing = sum(v for k, v in counts.items() if k.startswith("missing"))
        unexpected = {k: v for k, v in counts.items()
                      if k.startswith(("unexpected", "harness"))}
        errors = {k: v for k, v in counts.items() if k not in ("ok", "abandoned")}
        stretch = longest_no_worker_stretch(timeline)
        answered = sum(counts.values())
        fig.update(calls=calls, answered=answered, ok=counts.get("ok", 0),
                   abandoned=counts.get("abandoned", 0), errors_by_type=errors,
                   modes=dict(modes), wrong_answers=wrong, missing_answers=missing,
                   unexpected=unexpected, kills=chaos.kills, kill_all=chaos.kill_all,
                   hups=chaos.hups,
                   status_errors=len(chaos.status_errors),
                   longest_no_workers_stretch_s=round(stretch, 2), anomalies=anomalies[:25])
        if answered != calls:
            failures.append(f"{calls} calls made but {answered} outcomes recorded")
        if wrong:
            failures.append(f"{wrong} wrong answers (another call's token/id, bad order)")
        if missing:
            failures.append(f"{missing} calls never answered")
        if unexpected:
            failures.append(f"undocumented errors: {unexpected}")
        if chaos.status_errors:
            failures.append(f"STATUS failed during the soak: {chaos.status_errors[:3]}")
        if stretch > args.max_no_workers_stretch:
            failures.append(f"no-worker answers for {stretch:.1f}s in a row "
                            f"(> {args.max_no_workers_stretch}s)")
        if calls < args.min_calls:
            failures.append(f"only {calls} calls made (want >= {args.min_calls})")
        if args.duration >= 10 and chaos.kills == 0:
            failures.append("the chaos thread killed no worker")

        # recovery: pool whole, every call accounted for, resources back
        try:
            wait_for(pool_whole, 90, f"the pool to be whole again ({args.workers} booted workers)")
        except SoakFailure as e:
            try:
                last = [(w["pid"], w["age"], w["booted"]) for w in status(sock)["workers"]]
            except Exception as se:
                last = repr(se)
            failures.append(f"{e}; STATUS workers (pid, age, booted): {last}")
        samples = {}

        def all_accounted():
            samples["s"] = scrape(url)
            return metric(samples["s"], "gdirty_requests_in_flight") == 0
        try:
            wait_for(all_accounted, 60, "gdirty_requests_in_flight to return to 0")
        except SoakFailure as e:
            failures.append(str(e))
        s = samples["s"]
        served = metric(s, "gdirty_requests_total") - base_requests
        exits = metric(s, "gdirty_worker_exits_total") - base_exits
        outcomes = collections.Counter()
        for (n, ls), v in s.items():
            if n == "gdirty_requests_total":
                outcomes[dict(ls).get("outcome")] += int(v)
        for (n, ls), v in base_samples.items():
            if n == "gdirty_requests_total":
                outcomes[dict(ls).get("outcome")] -= int(v)
        fig.update(gdirty_counted_calls=int(served), gdirty_worker_exits=int(exits),
                   gdirty_outcomes={k: v for k, v in outcomes.items() if v})
        if not hung and int(served) != calls:
            failures.append(f"gdirty counted {int(served)} calls, callers made {calls}")
        worker_errors = counts.get("DirtyWorkerError", 0)
        if worker_errors > args.threads * max(exits, chaos.kills):
            failures.append(f"{worker_errors} DirtyWorkerErrors for {chaos.kills} kills / "
                            f"{int(exits)} worker exits x {args.threads} threads")

        ok, after = gauges.settle(baseline, args.goroutine_slack, args.fd_slack,
                                  args.settle_timeout, rss_slack=args.rss_slack * (1 << 20))
        fig["after"] = after
        if not ok:
            failures.append(
                f"gdirty did not return to baseline within {args.settle_timeout:.0f}s: "
                f"goroutines {baseline['goroutines']} -> {after['goroutines']} "
                f"(slack {args.goroutine_slack}), fds {baseline['fds']} -> {after['fds']} "
                f"(slack {args.fd_slack}), RSS {mib(baseline['rss'])} -> {mib(after['rss'])} "
                f"(slack {args.rss_slack} MiB)")
        try:
            pool_whole()
        except Exception:
            pass
    except SoakFailure as e:
        failures.append(str(e))
    except BaseException as e:
        failures.append(f"soak aborted: {e!r}\n{traceback.format_exc()[-3000:]}")
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        if chaos is not None:
            chaos.stop_evt.set()
            chaos.join(30)
        for p, _ in callers:
            stop_mp(p)
        if proc is not None:
            if proc.poll() is None:
                seen_pids.update(descendants(proc.pid))
            rc, killed = stop_process(proc)
            fig["gdirty_exit"] = rc
            if killed:
                failures.append("gdirty did not exit within 30s of SIGTERM (killed)")
            elif rc != 0:
                failures.append(f"gdirty exited {rc} on SIGTERM")
            deadline = time.monotonic() + 15
            while any(pid_alive(p) for p in seen_pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = [p for p in seen_pids if pid_alive(p)]
            if left:
                failures.append(f"worker processes outlived gdirty: {left}")
                for p in left:  # started by the gdirty this soak started
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                fig["gdirty_stderr_tail"] = err_path.read_text(errors="replace")[-2000:]
            except OSError:
                pass
    fig["failures"] = failures
    if failures or args.keep:
        fig["kept_workdir"] = str(workdir)  # gdirty.stderr etc. for the post-mortem
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return fig


def report(fig):
    b, a = fig.get("baseline") or {}, fig.get("after") or {}
    lines = [
        "=" * 72,
        f"gdirty chaos soak: {fig['duration']:.0f}s, {fig['callers']} callers, "
        f"{fig['workers']} workers x {fig['threads']} threads, seed {fig['seed']}",
        f"  calls made:          {fig.get('calls', '?')}  (ok {fig.get('ok', '?')}, "
        f"abandoned by their client {fig.get('abandoned', '?')}; "
        f"gdirty counted {fig.get('gdirty_counted_calls', '?')})",
        f"  by mode:             {fig.get('modes', {})}",
        f"  errors by type:      {fig.get('errors_by_type', {})}",
        f"  wrong answers:       {fig.get('wrong_answers', '?')}",
        f"  missing answers:     {fig.get('missing_answers', '?')}",
        f"  chaos:               {fig.get('kills', '?')} worker SIGKILLs ({fig.get('kill_all', '?')}"
        f" times the whole pool), {fig.get('hups', '?')} "
        f"SIGHUPs; gdirty saw {fig.get('gdirty_worker_exits', '?')} worker exits",
        f"  no-worker stretch:   {fig.get('longest_no_workers_stretch_s', '?')} s (longest)",
        f"  gdirty outcomes:     {fig.get('gdirty_outcomes', {})}",
    ]
    if b and a:
        lines += [
            f"  goroutines:          {b['goroutines']} before -> {a['goroutines']} after",
            f"  open fds:            {b['fds']} before -> {a['fds']} after",
            f"  RSS:                 {mib(b['rss'])} before -> {mib(a['rss'])} after",
        ]
    lines.append(f"  gdirty exit code:    {fig.get('gdirty_exit', '?')}")
    if fig.get("anomalies"):
        lines.append("  first anomalies:")
        lines += [f"    {x}" for x in fig["anomalies"][:10]]
    if fig.get("kept_workdir"):
        lines.append(f"  logs kept in:        {fig['kept_workdir']}")
    if fig["failures"]:
        lines.append("FAILED:")
        lines += [f"  - {f}" for f in fig["failures"]]
    else:
        lines.append("PASSED")
    lines.append("=" * 72)
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of chaos (default 60)")
    ap.add_argument("--callers", type=int, default=6, help="caller processes (default 6)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--dirty-timeout", type=int, default=20)
    ap.add_argument("--call-timeout", type=float, default=90.0,
                    help="client-side timeout: an answer later than this counts as missing")
    ap.add_argument("--max-calls", type=int, default=200_000, help="bound per caller")
    ap.add_argument("--min-calls", type=int, default=50)
    ap.add_argument("--kill-min", type=float, default=0.7)
    ap.add_argument("--kill-max", type=float, default=2.5)
    ap.add_argument("--hup-min", type=float, default=6.0)
    ap.add_argument("--hup-max", type=float, default=14.0)
    ap.add_argument("--hup-quiet", type=float, default=0.0,
                    help="no worker kill within this many seconds of a SIGHUP (default 0: "
                         "kills may race reloads)")
    ap.add_argument("--max-no-workers-stretch", type=float, default=15.0)
    ap.add_argument("--goroutine-slack", type=int, default=8)
    ap.add_argument("--fd-slack", type=int, default=4)
    ap.add_argument("--rss-slack", type=float, default=32.0, help="MiB over baseline")
    ap.add_argument("--settle-timeout", type=float, default=90.0)
    ap.add_argument("--binary", help="gdirty binary (default: build bin/gdirty)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) even on success")
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    if not 0 < args.duration <= 6 * 3600:
        ap.error("--duration must be in (0, 21600]")
    return args


def main(argv=None):
    args = parse_args(argv)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    fig = run(args)
    print(report(fig), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=1, default=str)
    return 0 if not fig["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
