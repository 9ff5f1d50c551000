"""``python -m gdirty_pyshim.worker``: one dirty worker process.

Loads the DirtyApps gdirty assigned to it, calls ``init()`` on each, runs
the ``dirty_worker_init`` hook, reports READY, then serves requests arriving
on its link (fd passed by gdirty). Up to ``dirty_threads`` actions run at
once, each in its own thread; answers carry the link id of their request.
What a DirtyApp observes (how it is loaded, called, streamed, closed, and
the error dicts its failures become) follows gunicorn.dirty.worker.

Exit status 3 means the worker failed to boot, as in gunicorn.
"""

import argparse
import asyncio
import inspect
import os
import queue
import signal
import sys
import threading
import time
import traceback
import uuid

from gunicorn import util
from gunicorn.dirty.app import load_dirty_apps
from gunicorn.dirty.errors import (
    DirtyAppError,
    DirtyAppNotFoundError,
    DirtyProtocolError,
    DirtyWorkerError,
)
from gunicorn.workers.workertmp import WorkerTmp

try:
    from gunicorn.dirty.tlv import TLVEncoder
except ImportError:
    # gunicorn 25.0.x has no TLV codec (its clients speak JSON, v0); the
    # private link still uses TLV for READY, so pyshim brings its own.
    from .tlv import TLVEncoder

from . import link as L
from . import v0
from .gconfig import load_cfg

WORKER_BOOT_ERROR = 3

# Marks the end of a generator (StopIteration cannot cross the helpers).
_EXHAUSTED = object()


class _Shutdown(BaseException):
    """Raised in the main thread by a stop signal to leave the read loop."""

    def __init__(self, graceful):
        super().__init__()
        self.graceful = graceful


class DirtyWorker:
    """The worker object handed to hooks; mirrors gunicorn's DirtyWorker
    attributes (age, pid, ppid, app_paths, cfg, log, booted, aborted, alive,
    apps, socket_path)."""

    def __init__(self, age, app_paths, cfg, log, link):
        self.age = age
        self.pid = "[booting]"
        self.ppid = os.getppid()
        self.app_paths = list(app_paths)
        self.cfg = cfg
        self.log = log
        self.link = link
        # gunicorn workers listen on their own socket; gdirty's talk over an
        # inherited pair of pipes, so there is no path to show.
        self.socket_path = None
        self.booted = False
        self.aborted = False
        self.alive = True
        self.apps = {}
        # gunicorn's heartbeat file (created in worker_tmp_dir with the
        # configured umask); gdirty's liveness travels on the link, but the
        # file keeps worker.tmp and worker_tmp_dir behaving as in gunicorn.
        self.tmp = WorkerTmp(cfg)
        self._jobs = queue.SimpleQueue()
        self._threads = []
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self._active = set()      # link ids being answered
        self._cancelled = set()   # link ids whose caller is gone
        self._partial = {}        # link id -> [total, bytearray]: streamed requests
        self._aloop = None
        self._aloop_lock = threading.Lock()
        # Set while a request read from the link is being handed to the
        # job threads: a stop signal then is deferred (see _install_signals).
        self._handing_over = False
        self._deferred_stop = None
        self._stopping = False  # a stop signal was acted on

    def __str__(self):
        return f"<DirtyWorker {self.pid}>"

    # -- boot ---------------------------------------------------------------

    def boot(self):
        if self.cfg.env:
            for k, v in self.cfg.env.items():
                os.environ[k] = v
        util.set_owner_process(self.cfg.uid, self.cfg.gid,
                               initgroups=self.cfg.initgroups)
        util.seed()
        self.load_apps()
        self.pid = os.getpid()
        self.cfg.dirty_worker_init(self)
        self.booted = True

    def load_apps(self):
        try:
            self.apps = load_dirty_apps(self.app_paths)
        except Exception as e:
            self.log.error("Failed to load dirty apps: %s", e)
            raise
        for path, app in self.apps.items():
            self.log.debug("Loaded dirty app: %s", path)
            try:
                app.init()
            except Exception as e:
                self.log.error("Failed to initialize dirty app %s: %s", path, e)
                raise
            self.log.info("Initialized dirty app: %s", path)

    # -- serving --------------------------------------------------------------

    def start_heartbeat(self):
        """Prove liveness from the start, while apps load too: gdirty aborts
        a worker that is stuck, not one that is slow to import a model."""
        hb = threading.Thread(target=self._heartbeat, daemon=True,
                              name="dirty-heartbeat")
        hb.start()

    def serve(self):
        for i in range(max(1, self.cfg.dirty_threads)):
            t = threading.Thread(target=self._run_jobs, daemon=True,
                                 name=f"dirty-worker-{self.pid}-{i}")
            t.start()
            self._threads.append(t)
        self.link.write(L.MSG_READY, 0, TLVEncoder.encode(
            {"pid": os.getpid(), "apps": self.app_paths}))
        while self.alive:
            mtype, link_id, payload = self.link.read()
            if mtype == L.MSG_CREDIT:
                self.link.credit(link_id, payload)
                continue
            if mtype == L.MSG_CANCEL:
                if self._partial.pop(link_id, None) is not None:
                    # Dropped before it was whole: end the call so gdirty
                    # frees its slot.
                    self.link.write(L.MSG_END, link_id)
                    continue
                with self._inflight_cv:
                    if link_id in self._active:
                        self._cancelled.add(link_id)
                self.link.cancel(link_id)
                continue
            if mtype == L.MSG_REQ_BEGIN or mtype == L.MSG_REQ_MORE:
                payload = self._assemble(mtype, link_id, payload)
                if payload is None:
                    continue
            elif mtype != L.MSG_REQUEST:
                self._send_error(link_id, DirtyWorkerError(
                    f"Unknown message type: {mtype}"))
                continue
            self._handing_over = True
            try:
                self._accept(link_id, payload)
            finally:
                self._handing_over = False
            if self._deferred_stop is not None:
                raise self._deferred_stop

    def _assemble(self, mtype, link_id, piece):
        """Collect a streamed request; return its payload once whole."""
        if mtype == L.MSG_REQ_BEGIN:
            (total,) = L.REQ_TOTAL.unpack_from(piece)
            entry = self._partial[link_id] = [total, bytearray(piece[L.REQ_TOTAL.size:])]
        else:
            entry = self._partial.get(link_id)
            if entry is None:
                return None
            entry[1] += piece
        if len(entry[1]) < entry[0]:
            return None
        del self._partial[link_id]
        return bytes(entry[1])

    def _accept(self, link_id, payload):
        """Queue a whole request for the worker threads."""
        with self._inflight_cv:
            self._inflight += 1
            self._active.add(link_id)
        self.link.open_call(link_id)
        # Before the call can start: a request past this mark was never
        # read, so gdirty routes it elsewhere if this worker dies.
        self.link.mark_read(link_id)
        self._jobs.put((link_id, payload))

    def _heartbeat(self):
        timeout = self.cfg.dirty_timeout
        interval = min(timeout / 2.0, 1.0) if timeout > 0 else 1.0
        while True:
            try:
                self.link.write(L.MSG_HEARTBEAT, 0)
                self.tmp.notify()
            except (OSError, ValueError, L.LinkClosed):
                return
            time.sleep(interval)

    def _run_jobs(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            link_id, payload = job
            try:
                self.handle(link_id, payload)
            except L.LinkClosed:
                # The link is gone; the main thread exits on its own.
                pass
            except Exception:
                self.log.exception("Unexpected error answering request")
            finally:
                self.link.close_call(link_id)
                with self._inflight_cv:
                    self._inflight -= 1
                    self._active.discard(link_id)
                    self._cancelled.discard(link_id)
                    self._inflight_cv.notify_all()

    def handle(self, link_id, payload):
        if v0.is_v0(payload):
            self.handle_v0(link_id, payload)
            return
        app_path = action = None
        codec = _TLVCodec
        try:
            request = TLVEncoder.decode_full(payload)
            app_path = request.get("app_path")
            # gunicorn's arbiter re-encodes requests, turning a missing
            # action into "" and falsy args/kwargs into []/{}: same here.
            action = request.get("action", "")
            args = request.get("args") or []
            kwargs = request.get("kwargs") or {}
            if app_path not in self.apps:
                # Reached when the call names no app (app_path ""): as in
                # gunicorn the not-found error is reported as a DirtyAppError.
                raise DirtyAppNotFoundError(app_path)
            result = self.apps[app_path](action, *args, **kwargs)
            self._answer(link_id, result, codec)
        except L.LinkClosed:
            raise
        except L.Cancelled:
            # gdirty dropped the caller mid-answer: end the call so its
            # slot is freed (nobody reads what is sent).
            self.link.write(L.MSG_END, link_id)
        except L.FrameTooLarge as e:
            self._too_large(link_id, e)
        except Exception as e:
            tb = traceback.format_exc()
            self.log.error("Error executing %s.%s: %s\n%s",
                           app_path, action, e, tb)
            self._send_error(link_id, DirtyAppError(
                str(e), app_path=app_path, action=action, traceback=tb), codec)

    def handle_v0(self, link_id, payload):
        """Answer a gunicorn 25.0.x (JSON) request as 25.0.3's worker
        does (DirtyWorker.handle_request), writing each answer's final
        JSON body: same defaults for missing keys, same errors, and a
        result JSON cannot carry becomes 25.0.3's DirtyAppError("Failed to
        encode message: ...")."""
        try:
            message = v0.decode(payload)
        except Exception as e:
            # gdirty validated the JSON; only CPython's own limits (deep
            # nesting, huge integers) can fail here.
            self._send_error(link_id, DirtyProtocolError(
                f"Failed to decode message: {e}"), v0.Codec("unknown"))
            return
        codec = v0.Codec(message.get("id", str(uuid.uuid4())))
        msg_type = message.get("type")
        if msg_type != "request":
            self._send_error(link_id, DirtyWorkerError(
                f"Unknown message type: {msg_type}"), codec)
            return
        app_path = message.get("app_path")
        action = message.get("action")
        args = message.get("args", [])
        kwargs = message.get("kwargs", {})
        try:
            if app_path not in self.apps:
                raise DirtyAppNotFoundError(app_path)
            result = self.apps[app_path](action, *args, **kwargs)
            self._answer(link_id, result, codec)
        except L.LinkClosed:
            raise
        except Exception as e:
            tb = traceback.format_exc()
            self.log.error("Error executing %s.%s: %s\n%s",
                           app_path, action, e, tb)
            self._send_error(link_id, DirtyAppError(
                str(e), app_path=app_path, action=action, traceback=tb), codec)

    def _answer(self, link_id, result, codec):
        if inspect.isgenerator(result):
            self._stream_sync(link_id, result, codec)
        elif inspect.isasyncgen(result):
            self._stream_async(link_id, result, codec)
        else:
            self.link.write(L.MSG_RESPONSE, link_id, codec.response(result))

    def _stream_sync(self, link_id, gen, codec):
        try:
            self._stream(link_id, lambda: next(gen, _EXHAUSTED), codec)
        finally:
            gen.close()

    def _stream_async(self, link_id, agen, codec):
        loop = self._async_loop()

        def next_chunk():
            try:
                return asyncio.run_coroutine_threadsafe(
                    agen.__anext__(), loop).result()
            except StopAsyncIteration:
                return _EXHAUSTED

        try:
            self._stream(link_id, next_chunk, codec)
        finally:
            try:
                asyncio.run_coroutine_threadsafe(agen.aclose(), loop).result()
            except Exception:
                pass

    def _stream(self, link_id, next_chunk, codec):
        """Send CHUNK per item, then END; a failure mid-stream ends it with
        an error, and a cancelled call (its caller is gone) stops early."""
        try:
            while True:
                chunk = next_chunk()
                if chunk is _EXHAUSTED or link_id in self._cancelled:
                    break
                self.link.write(L.MSG_CHUNK, link_id, codec.chunk(chunk))
            self.link.write(L.MSG_END, link_id, codec.end())
        except L.LinkClosed:
            raise
        except L.Cancelled:
            self.link.write(L.MSG_END, link_id, codec.end())
        except L.FrameTooLarge as e:
            self._too_large(link_id, e)
        except Exception as e:
            self._stream_failed(link_id, e, codec)

    def _too_large(self, link_id, e):
        # What gunicorn's arbiter answers when a worker's frame is over the
        # limit: a DirtyWorkerError for that call only.
        self.log.error("Answer to request %s not sent: %s", link_id, e)
        self._send_error(link_id, DirtyWorkerError(
            f"Worker communication failed: {e}", worker_id=os.getpid()))

    def _stream_failed(self, link_id, e, codec):
        # gunicorn reports mid-stream failures without app_path/action.
        tb = traceback.format_exc()
        self.log.error("Error during streaming: %s\n%s", e, tb)
        self._send_error(link_id, DirtyAppError(str(e), traceback=tb), codec)

    def _async_loop(self):
        """One event loop per worker for async generators, as gunicorn runs
        them on its worker's loop."""
        with self._aloop_lock:
            if self._aloop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, daemon=True,
                                     name="dirty-asyncgen-loop")
                t.start()
                self._aloop = loop
            return self._aloop

    def _send_error(self, link_id, err, codec=None):
        self.link.write(L.MSG_ERROR, link_id, (codec or _TLVCodec).error(err))

    # -- shutdown -------------------------------------------------------------

    def drain(self, timeout):
        """Wait for in-flight actions to answer (graceful stop)."""
        deadline = time.monotonic() + timeout
        with self._inflight_cv:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._inflight_cv.wait(left)
        return True

    def close_tmp(self):
        try:
            self.tmp.close()
        except Exception:
            pass

    def close_apps(self):
        for path, app in self.apps.items():
            try:
                app.close()
                self.log.debug("Closed dirty app: %s", path)
            except Exception as e:
                self.log.error("Error closing dirty app %s: %s", path, e)


class _TLVCodec:
    """Answer bodies for a v1 call: TLV payloads, as gunicorn 25.1+'s
    worker writes them."""

    @staticmethod
    def response(result):
        return TLVEncoder.encode({"result": result})

    @staticmethod
    def chunk(data):
        return TLVEncoder.encode({"data": data})

    @staticmethod
    def end():
        return b""

    @staticmethod
    def error(err):
        return TLVEncoder.encode({"error": err.to_dict()})


def _install_signals(worker):
    def stop(sig, frame):
        graceful = sig not in (signal.SIGQUIT, signal.SIGABRT)
        if graceful and worker._stopping:
            # gdirty repeats SIGTERM until the worker exits (a signal that
            # lands just before the main thread blocks on the link would
            # otherwise go unnoticed); once stopping, repeats change nothing.
            return
        worker._stopping = True
        worker.alive = False
        if sig == signal.SIGABRT:
            # gdirty aborts a worker that stopped proving liveness.
            worker.aborted = True
        shutdown = _Shutdown(graceful=graceful)
        if worker._handing_over:
            # Raising between counting a request in flight and queuing it
            # would leave a call counted that never runs: the graceful
            # drain would wait for it until dirty_graceful_timeout.
            # serve() raises it once the request is queued.
            worker._deferred_stop = shutdown
            return
        raise shutdown

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT):
        signal.signal(sig, stop)
    signal.signal(signal.SIGUSR1, lambda s, f: worker.log.reopen_files())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="gdirty_pyshim.worker")
    p.add_argument("--link-in-fd", type=int, required=True)
    p.add_argument("--link-out-fd", type=int, required=True)
    p.add_argument("--mark-fd", type=int, required=True)
    p.add_argument("--age", type=int, required=True)
    p.add_argument("--app", action="append", default=[], dest="apps")
    p.add_argument("gunicorn_args", nargs=argparse.REMAINDER)
    return p.parse_args(argv)


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    gargs = opts.gunicorn_args
    if gargs and gargs[0] == "--":
        gargs = gargs[1:]
    cfg = load_cfg(gargs)
    log = cfg.logger_class(cfg)
    run((opts.link_in_fd, opts.link_out_fd), opts.mark_fd, opts.age, opts.apps, cfg, log)


def run(link_fds, mark_fd, age, apps, cfg, log, ppid=None):
    """Boot and serve one worker on its link (the pipes it reads requests
    from and writes answers to); never returns. Used after exec
    (main) and in a child forked by the fork server (cfg already loaded,
    app modules already imported)."""
    link = L.Link(link_fds[0], link_fds[1], mark_fd)
    util._setproctitle(f"dirty-worker [{cfg.proc_name}]")
    worker = DirtyWorker(age, apps, cfg, log, link)
    if ppid:
        # Forked by the fork server: the arbiter is gdirty, not our parent.
        worker.ppid = ppid
    _install_signals(worker)

    worker.start_heartbeat()
    try:
        worker.boot()
    except _Shutdown:
        os._exit(0)
    except BaseException:
        log.exception("Exception in dirty worker process")
        sys.stderr.flush()
        os._exit(WORKER_BOOT_ERROR)

    graceful = True
    try:
        worker.serve()
    except _Shutdown as s:
        graceful = s.graceful
    except L.LinkClosed:
        # gdirty is gone: nobody is left to answer, stop at once.
        graceful = False
    except Exception:
        log.exception("Dirty worker error")
        graceful = False
    worker.alive = False
    if graceful:
        worker.drain(cfg.dirty_graceful_timeout)
    worker.close_apps()
    worker.close_tmp()
    log.info("Dirty worker %s exiting", worker.pid)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
