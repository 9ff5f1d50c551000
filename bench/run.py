"""Side-by-side benchmark: gdirty vs gunicorn's own Python DirtyArbiter vs
the direct path (a client connected straight to a gunicorn dirty worker's
own socket, no arbiter).

    python bench/run.py                  # full run (~8 min on 2 cores)
    python bench/run.py --smoke          # every scenario, very briefly
    python bench/run.py --out docs/benchmarks.md --json bench/results/latest.json

Both arbiters get the same gunicorn config file and the same DirtyApps
(bench/apps.py, bench/apps_slow.py); every figure comes from gunicorn's real
sync DirtyClient, one client per OS process. Runs alternate between the
targets (the order rotates each run) so that machine drift hits all of them;
each figure is the median of the runs.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from loadgen import CLIENT_TIMEOUT_MESSAGE, ClientPool, merge, percentile  # noqa: E402

APP = "apps:BenchApp"
SLOW_APP = "apps_slow:SlowApp"
WORKERS = 2
THREADS = 4
ECHO_ARG = "hello, dirty world"
MIB = 1 << 20
# The largest blob whose answer fits in one 64 MiB frame (TLV overhead).
BLOB64 = 64 * MIB - 64

PROFILES = {
    "full": dict(runs=3, warmup=0.5, duration=3.0, kill_duration=3.0, kill_at=1.0,
                 kill_timeout=10.0, overload_duration=3.0, overload_timeout=10.0,
                 slow_import=None, slow_init=None, settle=1.0, prime=0.5, long_call_min=3.0,
                 after_load_wait=10.0),
    "smoke": dict(runs=1, warmup=0.05, duration=0.3, kill_duration=0.6, kill_at=0.2,
                  kill_timeout=3.0, overload_duration=0.4, overload_timeout=3.0,
                  slow_import=0.2, slow_init=0.05, settle=0.1, prime=0, long_call_min=1.0,
                  after_load_wait=1.0),
}

SCENARIOS = ["echo", "sleep", "stream", "blob", "rss", "overload", "kill",
             "respawn", "respawn_slow", "cluster"]


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------

class Target:
    """Something a client can call: an arbiter, or the workers directly."""

    def __init__(self, name, arbiter=None, direct_of=None):
        self.name = name
        self.arbiter = arbiter
        self.direct_of = direct_of

    @property
    def pid(self):
        return self.arbiter.arbiter_pid if self.arbiter else None

    def sockets(self):
        if self.direct_of is not None:
            return self.direct_of.worker_sockets()
        return [self.arbiter.socket_path]


# ---------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------

def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine_busy_jiffies():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


class Bench:
    def __init__(self, args, pool):
        import procs

        self.procs = procs
        self.args = args
        self.p = dict(PROFILES["smoke" if args.smoke else "full"])
        if args.runs:
            self.p["runs"] = args.runs
        if args.duration:
            self.p["duration"] = args.duration
        self.pool = pool
        self.workdir = tempfile.mkdtemp(prefix="gdirty-bench-")
        self.arbiters = []
        self.results = {"scenarios": {}, "meta": {}}
        self.env = self._env()
        self.max_queue = args.max_queue
        # Run a private copy: bin/gdirty may be rebuilt while the bench runs.
        self.gdirty = os.path.join(self.workdir, "gdirty")
        try:
            shutil.copy2(args.gdirty, self.gdirty)
            # The lean gdirty execs gdirty-cluster from its own directory
            # for the cluster scenarios: copy it along when it is there.
            cluster = os.path.join(os.path.dirname(os.path.realpath(args.gdirty)), "gdirty-cluster")
            if os.path.exists(cluster):
                shutil.copy2(cluster, os.path.join(self.workdir, "gdirty-cluster"))
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    # -- setup ---------------------------------------------------------------

    def _env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("GUNICORN_CMD_ARGS", "GUNICORN_DIRTY_SOCKET", "GDIRTY_SOCKET",
                            "GDIRTY_PYTHON", "GDIRTY_LOG_LEVEL", "GDIRTY_LOG_FORMAT",
                            "GDIRTY_MAX_QUEUE", "GDIRTY_CONFIG", "PYTHONPATH")}
        if self.p["slow_import"] is not None:
            env["BENCH_SLOW_IMPORT_S"] = str(self.p["slow_import"])
            env["BENCH_SLOW_INIT_S"] = str(self.p["slow_init"])
        return env

    def write_config(self, name, app):
        path = os.path.join(self.workdir, f"{name}.conf.py")
        with open(path, "w") as f:
            f.write("# written by bench/run.py: the same file for both arbiters\n"
                    f"dirty_apps = [{app!r}]\n"
                    f"dirty_workers = {WORKERS}\n"
                    f"dirty_threads = {THREADS}\n"
                    "dirty_timeout = 30\n"
                    "dirty_graceful_timeout = 10\n"
                    "loglevel = 'info'\n")
        return path

    def start_pair(self, tag, app, gdirty_args=(), with_gunicorn=True):
        conf = self.write_config(tag, app)
        gd = self.procs.GDirty(f"gdirty-{tag}", self.gdirty, self.args.python,
                               conf, self.workdir, self.env, extra_args=gdirty_args)
        self.arbiters.append(gd)
        gd.launch()
        gu = None
        if with_gunicorn:
            gu = self.procs.GunicornDirty(f"gunicorn-{tag}", self.args.python, conf,
                                          self.workdir, self.env)
            self.arbiters.append(gu)
            gu.launch()
        gd.wait_ready(WORKERS, app)
        if gu:
            gu.wait_ready(WORKERS, app)
        return gd, gu

    def stop(self, *arbs):
        for a in arbs:
            if a is None:
                continue
            rc = a.stop()
            log(f"stopped {a.name}: exit {rc}{' (KILLED)' if a.killed else ''}")
            self.results["meta"].setdefault("stops", []).append(
                {"name": a.name, "returncode": rc, "killed": a.killed})
            if a in self.arbiters:
                self.arbiters.remove(a)

    def stop_all(self):
        for a in list(self.arbiters):
            try:
                self.stop(a)
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                log(f"stopping {a.name} failed: {e}")
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- one measurement -------------------------------------------------------

    def measure(self, target, nclients, action, args=(), stream=False, timeout=30.0,
                rate=None, duration=None, keep_all=False, during=None, app=APP):
        """Run one load window against ``target``. ``during(t_rec, t_end)``
        may act while the load runs (it is called instead of the default
        CPU/RSS sampling loop's idle sleep). Returns the merged results plus
        the arbiter's CPU seconds and RSS samples over the window."""
        procs = self.procs
        duration = duration or self.p["duration"]
        warmup = self.p["warmup"]
        start = time.perf_counter() + 0.1 + 0.004 * nclients
        t_rec = start + warmup
        t_end = t_rec + duration
        job = dict(sockets=target.sockets(), app=app, action=action, args=list(args),
                   stream=stream, timeout=timeout, start=start, warmup=warmup,
                   duration=duration, rate=rate, keep_all=keep_all)
        pid = target.pid
        # The arbiter's peak RSS for this window alone: reset its
        # high-water mark (VmHWM) before the clients start.
        peak_reset = procs.reset_peak_rss(pid) if pid else False
        self.pool.submit(nclients, job)
        cpu0 = cpu1 = None
        rss_max = 0
        extra = {}
        _sleep_until(t_rec)
        if pid:
            cpu0 = procs.proc_cpu_seconds(pid)
        busy0 = machine_busy_jiffies()
        if during is not None:
            extra = during(t_rec, t_end) or {}
        while True:
            now = time.perf_counter()
            if pid:
                rss_max = max(rss_max, procs.proc_mem_kib(pid).get("VmRSS", 0))
            if now >= t_end:
                break
            time.sleep(min(0.05, t_end - now))
        if pid:
            cpu1 = procs.proc_cpu_seconds(pid)
        busy1 = machine_busy_jiffies()
        results = self.pool.collect(nclients, result_timeout=timeout + 30.0)
        m = merge(results)
        m.update(extra)
        m["duration"] = duration
        m["t_rec"], m["t_end"] = t_rec, t_end
        m["arbiter_cpu_s"] = (cpu1 - cpu0) if pid else None
        m["arbiter_rss_max_kib"] = rss_max if pid else None
        if pid:
            hwm = procs.proc_mem_kib(pid).get("VmHWM")
            m["arbiter_peak_kib"] = hwm if peak_reset and hwm else rss_max
        m["machine_busy"] = ((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]))
        return m

    def prime(self, targets):
        """Unrecorded load on each target first: the figures are steady
        state, not the first seconds after a start."""
        if not self.p["prime"]:
            return
        for t in targets:
            for c in (1, 16, 64):
                self.measure(t, c, "echo", (ECHO_ARG,), duration=self.p["prime"])

    def throughput_figures(self, m, unit_scale=1.0):
        """``unit_scale``: what one unit (call or chunk) is worth (MiB for blobs)."""
        calls = len(m["lat"])
        d = m["duration"]
        # Longest stretch of the window in which no call completed at all.
        edges = [m["t_rec"], *m["done"], m["t_end"]]
        stall = max(b - a for a, b in zip(edges, edges[1:]))
        fig = {
            "calls": calls,
            "rps": calls / d,
            "units_per_s": m["units"] * unit_scale / d,
            "p50_us": percentile(m["lat"], 50),
            "p99_us": percentile(m["lat"], 99),
            "longest_stall_ms": stall * 1e3,
            "errors": len(m["errors"]),
            "error_kinds": dict(collections.Counter(f"{e[2]}: {e[3][:120]}"
                                                    for e in m["errors"]).most_common(5)),
            "fatal": m["fatal"],
            "machine_busy": m["machine_busy"],
        }
        if m["arbiter_cpu_s"] is not None:
            fig["arbiter_cpu_s"] = m["arbiter_cpu_s"]
            fig["arbiter_cpu_us_per_call"] = (m["arbiter_cpu_s"] * 1e6 / calls) if calls else None
            fig["arbiter_rss_max_kib"] = m["arbiter_rss_max_kib"]
            fig["arbiter_peak_kib"] = m.get("arbiter_peak_kib")
        return fig

    def alternate(self, scenario, targets, fn):
        """Run ``fn(target)`` ``runs`` times per target, rotating the order
        each run; store per-run figures and medians under ``scenario``."""
        runs = {t.name: [] for t in targets}
        for r in range(self.p["runs"]):
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for t in order:
                fig = fn(t)
                runs[t.name].append(fig)
                log(f"{scenario} run {r + 1} {t.name}: " + short(fig))
        sc = self.results["scenarios"].setdefault(scenario, {})
        sc["runs"] = runs
        sc["median"] = {name: median_fig(rs) for name, rs in runs.items()}
        return sc

    # -- scenarios -------------------------------------------------------------

    def run_all(self):
        p = self.p
        want = set(self.args.scenarios.split(",")) if self.args.scenarios else set(SCENARIOS)
        meta = self.results["meta"]
        meta.update(machine_info(self.args, self.gdirty))
        meta["profile"] = "smoke" if self.args.smoke else "full"
        meta["params"] = dict(p, workers=WORKERS, threads=THREADS, max_queue=self.max_queue)
        meta["loadavg_start"] = loadavg()
        busy0 = machine_busy_jiffies()
        t0 = time.perf_counter()

        main_needed = want & {"echo", "sleep", "stream", "blob", "rss", "overload",
                              "kill", "respawn"}
        if main_needed:
            log("starting gdirty and gunicorn (main config)")
            gd, gu = self.start_pair("main", APP)
            T_gd = Target("gdirty", gd)
            T_gu = Target("gunicorn", gu)
            T_dir = Target("direct", direct_of=gu)
            self.results["meta"]["start_to_ready_s"] = {
                "gdirty": gd.ready_at - gd.launched_at,
                "gunicorn": gu.ready_at - gu.launched_at}
            rss = {}
            if "rss" in want or "blob" in want:
                time.sleep(p["settle"])
                rss["idle"] = {a.kind: self.procs.proc_mem_kib(a.arbiter_pid) for a in (gd, gu)}
            three = [T_gd, T_gu, T_dir]
            self.prime(three)
            if "echo" in want:
                for c in (1, 16, 64):
                    self.alternate(f"echo_c{c}", three, lambda t, c=c: self.throughput_figures(
                        self.measure(t, c, "echo", (ECHO_ARG,))))
            if "sleep" in want:
                self.alternate("sleep10_c16", three, lambda t: self.throughput_figures(
                    self.measure(t, 16, "sleep", (10,))))
            if "stream" in want:
                self.alternate("stream_1000x64", three, lambda t: self.throughput_figures(
                    self.measure(t, 1, "stream", (1000,), stream=True)))
            if "blob" in want or "rss" in want:
                self.alternate("blob_1MiB", three, lambda t: self.throughput_figures(
                    self.measure(t, 1, "blob", (MIB,)), unit_scale=1))
                hwm_before = {a.kind: self.procs.proc_mem_kib(a.arbiter_pid) for a in (gd, gu)}
                reset = {a.kind: self.procs.reset_peak_rss(a.arbiter_pid) for a in (gd, gu)}
                self.alternate("blob_16MiB", three, lambda t: self.throughput_figures(
                    self.measure(t, 1, "blob", (16 * MIB,), duration=max(
                        p["duration"], p["long_call_min"])), unit_scale=16))
                # Memory must not follow payload size: 16 MiB answers to 4
                # clients at once, then 64 MiB answers.
                self.alternate("blob_16MiB_c4", three, lambda t: self.throughput_figures(
                    self.measure(t, 4, "blob", (16 * MIB,), duration=max(
                        p["duration"], p["long_call_min"])), unit_scale=16))
                self.alternate("blob_64MiB", three, lambda t: self.throughput_figures(
                    self.measure(t, 1, "blob", (BLOB64,), duration=max(
                        p["duration"], p["long_call_min"])), unit_scale=BLOB64 / MIB))
                rss["before_blob16"] = hwm_before
                rss["peak_reset_ok"] = reset
                rss["after_blob16"] = {a.kind: self.procs.proc_mem_kib(a.arbiter_pid)
                                       for a in (gd, gu)}
                sc = self.results["scenarios"]["blob_16MiB"]
                rss["blob16_sampled_max_kib"] = {
                    name: max((f.get("arbiter_rss_max_kib") or 0) for f in rs)
                    for name, rs in sc["runs"].items() if name != "direct"}
            if rss:
                # Issue 13's figure: back to idle + 2 MiB within 10 s of the
                # load ending (the last reading, and when it was taken).
                rss["after_load"], rss["after_load_s"] = self.settle_rss(
                    (gd, gu), rss.get("idle", {}), p["after_load_wait"])
                self.results["scenarios"]["rss"] = rss
            if "overload" in want:
                self.scenario_overload(gu)
            if "kill" in want:
                self.alternate("kill_under_load", [T_gd, T_gu], self.kill_under_load)
            if "respawn" in want:
                self.alternate("respawn_trivial", [T_gd, T_gu],
                               lambda t: self.respawn(t, APP))
            self.stop(gd, gu)

        if "respawn_slow" in want:
            log("starting gdirty and gunicorn (slow app: 1 s import + 200 ms init)")
            gd, gu = self.start_pair("slow", SLOW_APP)
            self.results["meta"]["slow_start_to_ready_s"] = {
                "gdirty": gd.ready_at - gd.launched_at,
                "gunicorn": gu.ready_at - gu.launched_at}
            self.alternate("respawn_slow", [Target("gdirty", gd), Target("gunicorn", gu)],
                           lambda t: self.respawn(t, SLOW_APP))
            self.stop(gd, gu)

        if "cluster" in want:
            log("starting nats-server, a hosting gdirty and a front gdirty (cluster)")
            import cluster_bench
            cluster_bench.run(self, APP, WORKERS, ECHO_ARG, MIB)

        busy1 = machine_busy_jiffies()
        meta["loadavg_end"] = loadavg()
        meta["machine_busy_overall"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        meta["wall_s"] = time.perf_counter() - t0
        return self.results

    def settle_rss(self, arbs, idle, wait):
        """Poll each arbiter's RSS until it is within 2 MiB of its idle RSS
        or ``wait`` seconds have passed since the load ended."""
        t0 = time.perf_counter()
        last, when = {}, {}
        pending = list(arbs)
        while True:
            now = time.perf_counter() - t0
            for a in list(pending):
                mem = self.procs.proc_mem_kib(a.arbiter_pid)
                last[a.kind], when[a.kind] = mem, now
                base = idle.get(a.kind, {}).get("VmRSS")
                if base is not None and mem.get("VmRSS", 0) <= base + 2048:
                    pending.remove(a)
            if not pending or now >= wait:
                return last, when
            time.sleep(0.25)

    def scenario_overload(self, gu):
        """Offered load at 4x the pool's capacity (sleep 10 ms on 2 workers x
        4 threads: 800 calls/s), open loop from 64 client processes; gdirty
        runs with --max-queue (gunicorn has no such bound)."""
        p = self.p
        log(f"starting gdirty with --max-queue {self.max_queue} (overload)")
        gdq, _ = self.start_pair("overload", APP, gdirty_args=("--max-queue", str(self.max_queue)),
                                 with_gunicorn=False)
        ms = self.args.overload_sleep_ms
        capacity = WORKERS * THREADS * 1000.0 / ms
        nclients = 64
        rate = 4 * capacity / nclients
        targets = [Target("gdirty", gdq), Target("gunicorn", gu)]

        def fn(t):
            unloaded = self.measure(t, 1, "sleep", (ms,))
            over = self.measure(t, nclients, "sleep", (ms,), rate=rate,
                                timeout=p["overload_timeout"], duration=p["overload_duration"])
            d = over["duration"]
            timeouts = [e for e in over["errors"]
                        if e[2] == "DirtyTimeoutError" and CLIENT_TIMEOUT_MESSAGE in e[3]]
            rejected = [e for e in over["errors"] if e not in timeouts]
            rej_lat = sorted((e[1] - e[0]) * 1e6 for e in rejected)
            return {
                "unloaded_p50_us": percentile(unloaded["lat"], 50),
                "unloaded_p99_us": percentile(unloaded["lat"], 99),
                "offered_rps": over["offered"] / d,
                "target_offered_rps": 4 * capacity,
                "admitted_rps": len(over["lat"]) / d,
                "admitted_p50_us": percentile(over["lat"], 50),
                "admitted_p99_us": percentile(over["lat"], 99),
                "rejected": len(rejected),
                "rejected_p50_us": percentile(rej_lat, 50),
                "rejected_p99_us": percentile(rej_lat, 99),
                "rejected_max_us": rej_lat[-1] if rej_lat else None,
                "rejected_errors": dict(collections.Counter(
                    f"{e[2]}: {e[3][:160]}" for e in rejected).most_common(3)),
                "client_timeouts": len(timeouts) + len(over["fatal"]),
                "machine_busy": over["machine_busy"],
            }

        self.alternate("overload_4x", targets, fn)
        self.results["scenarios"]["overload_4x"]["capacity_rps"] = capacity
        self.results["scenarios"]["overload_4x"]["sleep_ms"] = ms
        self.stop(gdq)

    def kill_under_load(self, t):
        """SIGKILL one worker 1 s into an echo load at concurrency 8."""
        p = self.p
        arb = t.arbiter
        arb.wait_pool(WORKERS, APP)
        victim = sorted(arb.status()["workers"], key=lambda w: w["age"])[0]["pid"]
        box = {}

        def during(t_rec, _t_end):
            _sleep_until(t_rec + p["kill_at"])
            os.kill(victim, signal.SIGKILL)
            # After kill() returned: a call started later was surely sent
            # after the worker's death.
            box["t_kill"] = time.perf_counter()
            return {}

        m = self.measure(t, 8, "echo", (ECHO_ARG,), timeout=p["kill_timeout"],
                         duration=p["kill_duration"], keep_all=True, during=during)
        tk = box["t_kill"]
        spans = m["spans"]
        ok_in_flight = sum(1 for i in range(0, len(spans), 2)
                           if spans[i] <= tk < spans[i + 1])
        never = [e for e in m["errors"]
                 if e[2] == "DirtyTimeoutError" and CLIENT_TIMEOUT_MESSAGE in e[3]]
        errs = [e for e in m["errors"] if e not in never]
        held_errs = [e for e in errs if e[0] <= tk]
        late_errs = [e for e in errs if e[0] > tk]
        fig = {
            "calls_ok": len(spans) // 2,
            "in_flight_at_kill": ok_in_flight + sum(1 for e in m["errors"] if e[0] <= tk < e[1]),
            "errors": len(errs),
            "errors_held": len(held_errs),
            "errors_sent_after_kill": len(late_errs),
            "error_delay_max_ms": (max(e[1] - tk for e in errs) * 1e3) if errs else None,
            "never_answered": len(never) + len(m["fatal"]),
            "error_kinds": dict(collections.Counter(f"{e[2]}: {e[3][:160]}"
                                                    for e in errs).most_common(5)),
            "machine_busy": m["machine_busy"],
        }
        # Put the pool back together before the next run.
        arb.wait_pool(WORKERS, APP)
        return fig

    def respawn(self, t, app):
        """SIGKILL one worker; poll STATUS until a new pid is listed, then
        call in a loop until a call is answered by that new worker. The
        figure is kill -> that first answer. (Calls are only made once the
        replacement is listed, i.e. after the arbiter has dealt with the
        death: calls caught by the death itself are the kill-under-load
        scenario's business.)"""
        arb = t.arbiter
        old = arb.wait_pool(WORKERS, app)
        victim = sorted(arb.status()["workers"], key=lambda w: w["age"])[0]["pid"]
        c = arb.client(timeout=self.p["kill_timeout"])
        errors = collections.Counter()
        never = 0
        try:
            c.execute(app, "pid")  # connected before the clock starts
            t0 = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            deadline = t0 + 60.0

            def new_pid():
                if time.perf_counter() > deadline:
                    raise self.procs.BenchError(f"{arb.name}: no replacement listed in 60 s")
                fresh = [w["pid"] for w in arb.status()["workers"] if w["pid"] not in old]
                return fresh[0] if fresh else None

            new = self.procs.wait_until(new_pid, 60.0, f"{arb.name}'s replacement worker",
                                        interval=0.001)
            t_listed = time.perf_counter()
            while True:
                if time.perf_counter() > deadline:
                    raise self.procs.BenchError(f"{arb.name}: replacement {new} never answered")
                try:
                    pid = c.execute(app, "pid")
                except Exception as e:  # noqa: BLE001
                    if CLIENT_TIMEOUT_MESSAGE in str(e):
                        never += 1
                    errors[f"{type(e).__name__}: {str(e)[:120]}"] += 1
                    time.sleep(0.001)
                    continue
                if pid == new:
                    t1 = time.perf_counter()
                    break
        finally:
            c.close()
        arb.wait_pool(WORKERS, app)
        return {"ms_to_first_answer": (t1 - t0) * 1e3, "ms_to_listed": (t_listed - t0) * 1e3,
                "errors_meanwhile": sum(errors.values()), "never_answered": never,
                "error_kinds": dict(errors)}


def _sleep_until(t):
    while True:
        d = t - time.perf_counter()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))


def short(fig):
    keys = ("rps", "units_per_s", "p50_us", "p99_us", "arbiter_cpu_us_per_call", "errors",
            "longest_stall_ms", "machine_busy",
            "ms_to_first_answer", "never_answered", "errors_held", "admitted_p99_us",
            "unloaded_p99_us", "rejected", "rejected_p99_us", "offered_rps")
    out = []
    for k in keys:
        if k in fig and fig[k] is not None:
            v = fig[k]
            out.append(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(out)


def median_fig(runs):
    """Median of each numeric figure over the runs (other values: the first
    run's value; error kinds: merged)."""
    out = {}
    if not runs:
        return out
    for k in runs[0]:
        vals = [r.get(k) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len([v for v in vals if v is not None]):
            out[k] = statistics.median(nums)
        elif isinstance(vals[0], dict):
            merged = collections.Counter()
            for v in vals:
                merged.update(v or {})
            out[k] = dict(merged)
        elif isinstance(vals[0], list):
            out[k] = [x for v in vals for x in (v or [])]
        else:
            out[k] = vals[0]
    return out


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------

def _cmd_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(args, gdirty):
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    import gunicorn

    py = _cmd_out([args.python, "-c", "import sys; print(sys.version.split()[0])"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_mib": mem,
        "kernel": platform.release(),
        "python": py,
        "go": _cmd_out(["go", "version"]),
        "gunicorn": gunicorn.__version__,
        "gdirty": next(iter((_cmd_out([gdirty, "version"]) or "?").splitlines()), "?"),
        "git": _cmd_out(["git", "describe", "--always", "--dirty"]),
    }


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="every scenario, very briefly")
    ap.add_argument("--runs", type=int, help="runs per target (default 3; smoke 1)")
    ap.add_argument("--duration", type=float, help="seconds per load window (default 3)")
    ap.add_argument("--scenarios", help="comma list out of: " + ",".join(SCENARIOS))
    ap.add_argument("--max-queue", type=int, default=4,
                    help="gdirty --max-queue for the overload scenario (default 4)")
    ap.add_argument("--overload-sleep-ms", type=float, default=10.0,
                    help="the overload scenario's call: sleep this long (default 10)")
    ap.add_argument("--gdirty", default=os.path.join(ROOT, "bin", "gdirty"))
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for workers and gunicorn's arbiter")
    ap.add_argument("--out", help="write the Markdown report here")
    ap.add_argument("--json", help="write all figures as JSON here")
    ap.add_argument("--render", metavar="JSON",
                    help="measure nothing: render the report of a saved --json file")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        import report

        with open(args.render) as f:
            md = report.render(json.load(f))
        print(md)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                f.write(md)
        return
    args.gdirty = os.path.abspath(args.gdirty)
    if not os.access(args.gdirty, os.X_OK):
        sys.exit(f"bench: {args.gdirty} is not an executable (make build)")

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    # Fork the client processes first, while this process is small.
    pool = ClientPool(64)
    bench = None
    try:
        bench = Bench(args, pool)
        results = bench.run_all()
    finally:
        if bench is not None:
            bench.stop_all()
        pool.close()

    import report

    md = report.render(results)
    print(md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(md)
        log(f"wrote {args.out}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
