"""Load generation: a pool of client *processes* (one gunicorn sync
DirtyClient each), so that the load is not serialised by the GIL.

The pool is forked once, early (with gunicorn's client already imported), and
reused for every measurement. A job tells each participating client which socket to
use, what to call and when: all clients sleep until ``start``, run a warm-up
until ``start + warmup`` and record calls that *complete* within the
measurement window ``[start + warmup, start + warmup + duration)``.

``time.perf_counter()`` is CLOCK_MONOTONIC on Linux, so the driver and every
client share one clock (the driver uses the same times to sample the
arbiter's CPU and memory at the window's edges).
"""

import multiprocessing
import signal
import time
from array import array

# Imported before the pool forks, so no client pays for the import inside a
# measurement window.
from gunicorn.dirty.client import DirtyClient

CLIENT_TIMEOUT_MESSAGE = "Timeout waiting for dirty app response"


def _sleep_until(t):
    while True:
        d = t - time.perf_counter()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))


def _one_call(client, job):
    if job.get("stream"):
        n = 0
        for _chunk in client.stream(job["app"], job["action"], *job["args"]):
            n += 1
        return n
    client.execute(job["app"], job["action"], *job["args"])
    return 1


def run_job(job, idx):
    """Run one client's share of ``job``; returns a dict of plain data."""
    sockets = job["sockets"]
    sock = sockets[idx % len(sockets)]
    client = DirtyClient(sock, timeout=job["timeout"])
    start = job["start"]
    t_rec = start + job["warmup"]
    t_end = t_rec + job["duration"]
    rate = job.get("rate")  # open loop: calls per second for this client
    keep_all = job.get("keep_all", False)

    lat = array("d")        # latency (us) of successful calls completed in the window
    done = array("d")       # completion times of those calls (stall detection)
    units = 0               # chunks for streams, calls otherwise
    errors = []             # (t0, t1, type, message) for failed calls in the window
    offered = 0             # calls started in the window
    spans = array("d")      # keep_all: t0, t1 pairs of successful calls

    _sleep_until(start)
    if rate:
        period = 1.0 / rate
        next_t = start + period * (idx / max(1, job["nclients"]))
    while True:
        if rate:
            now = time.perf_counter()
            if next_t >= t_end:
                break
            if next_t > now:
                _sleep_until(next_t)
            next_t += period
        t0 = time.perf_counter()
        if t0 >= t_end:
            break
        if t0 >= t_rec:
            offered += 1
        try:
            n = _one_call(client, job)
            t1 = time.perf_counter()
            if keep_all:
                spans.append(t0)
                spans.append(t1)
            if t_rec <= t1 < t_end:
                lat.append((t1 - t0) * 1e6)
                done.append(t1)
                units += n
        except Exception as e:  # noqa: BLE001 - every failure is a figure
            t1 = time.perf_counter()
            if t1 >= t_rec or keep_all:
                errors.append((t0, t1, type(e).__name__, str(e)[:300]))
    try:
        client.close()
    except Exception:  # noqa: BLE001
        pass
    return {
        "lat": lat.tobytes(),
        "done": done.tobytes(),
        "units": units,
        "errors": errors,
        "offered": offered,
        "spans": spans.tobytes(),
    }


def _client_main(conn, idx):
    # The driver owns Ctrl-C / TERM handling; clients just follow orders.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            res = run_job(job, idx)
        except BaseException as e:  # noqa: BLE001
            res = {"fatal": f"{type(e).__name__}: {e}"}
        try:
            conn.send(res)
        except (BrokenPipeError, OSError):
            return


class ClientPool:
    """``size`` forked client processes, each reached through a Pipe."""

    def __init__(self, size):
        ctx = multiprocessing.get_context("fork")
        self.procs = []
        self.conns = []
        for i in range(size):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_client_main, args=(child, i), daemon=True,
                            name=f"bench-client-{i}")
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)

    @property
    def size(self):
        return len(self.procs)

    def submit(self, nclients, job):
        """Send ``job`` to the first ``nclients`` clients (no waiting)."""
        if nclients > self.size:
            raise ValueError(f"pool has {self.size} clients, {nclients} asked")
        job = dict(job, nclients=nclients)
        for i in range(nclients):
            self.conns[i].send(job)
        return nclients

    def collect(self, nclients, result_timeout):
        """Wait (with a deadline) for the results of the last submit.
        Clients that did not answer in time are reported as ``fatal`` and
        replaced (a late answer would desynchronise the pool)."""
        deadline = time.perf_counter() + result_timeout
        results = [None] * nclients
        pending = set(range(nclients))
        while pending:
            if time.perf_counter() >= deadline:
                break
            for i in list(pending):
                if self.conns[i].poll():
                    results[i] = self.conns[i].recv()
                    pending.discard(i)
            if pending:
                time.sleep(0.005)
        for i in pending:
            results[i] = {"fatal": "no result before the deadline"}
        if pending:
            self._replace(sorted(pending))
        return results

    def run(self, nclients, job, result_timeout):
        self.submit(nclients, job)
        return self.collect(nclients, result_timeout)

    def _replace(self, idxs):
        ctx = multiprocessing.get_context("fork")
        for i in idxs:
            self._stop_one(i)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_client_main, args=(child, i), daemon=True,
                            name=f"bench-client-{i}")
            p.start()
            child.close()
            self.procs[i] = p
            self.conns[i] = parent

    def _stop_one(self, i, timeout=5.0):
        p = self.procs[i]
        try:
            self.conns[i].send(None)
        except (BrokenPipeError, OSError):
            pass
        p.join(timeout)
        if p.is_alive():
            p.terminate()
            p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join(timeout)
        self.conns[i].close()

    def close(self, timeout=10.0):
        for c in self.conns:
            try:
                c.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.perf_counter() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.perf_counter()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for c in self.conns:
            c.close()


def merge(results):
    """Combine the clients' results of one job."""
    lat = array("d")
    done = array("d")
    spans = array("d")
    units = 0
    offered = 0
    errors = []
    fatal = []
    for r in results:
        if "fatal" in r:
            fatal.append(r["fatal"])
            continue
        a = array("d")
        a.frombytes(r["lat"])
        lat.extend(a)
        a = array("d")
        a.frombytes(r["done"])
        done.extend(a)
        s = array("d")
        s.frombytes(r["spans"])
        spans.extend(s)
        units += r["units"]
        offered += r["offered"]
        errors.extend(r["errors"])
    return {"lat": sorted(lat), "done": sorted(done), "units": units, "offered": offered,
            "errors": errors, "fatal": fatal, "spans": spans}


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted sequence (None if empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1,
                   int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]

