"""Targeted arbiter measurements, seconds instead of minutes (for
profiling work, not for the report): start gdirty (or gunicorn's arbiter)
on bench/apps.py, then per step reset the arbiter's peak RSS, run calls
from client processes and print peak RSS and arbiter CPU per call.

    python bench/probe.py echo:1:3000 echo:16:20000 blob16:1:40 blob16:4:40 blob64:1:8 idle
    python bench/probe.py --arbiter gunicorn echo:1:3000
    python bench/probe.py --cluster echo:1:3000 echo:64:20000

--cluster: the calls go to a front gdirty (dirty_workers = 0) that sends
them through NATS to the hosting gdirty, which runs nats-server inside
itself (--cluster-listen); CPU per call is printed for both. With
--cpuprofile DIR each gdirty writes DIR/<name>.pprof (go tool pprof).

A step is NAME:CONCURRENCY:CALLS (total calls over all clients); NAME is
echo, blob1, blob16, blob64, stream; "idle" waits 10 s and reports RSS.
"""

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)

import cluster_bench  # noqa: E402
import procs  # noqa: E402

APP = "apps:BenchApp"
MiB = 1 << 20
CALLS = {
    "echo": ("echo", ("hello",), False),
    "blob1": ("blob", (MiB,), False),
    "blob16": ("blob", (16 * MiB,), False),
    "blob64": ("blob", (64 * MiB - 64,), False),
    "stream": ("stream", (1000,), True),
}


def _client(sock, action, args, stream, n, barrier):
    os.environ["GUNICORN_DIRTY_SOCKET"] = sock
    from gunicorn.dirty.client import DirtyClient
    c = DirtyClient(sock, timeout=60.0)
    c.execute(APP, "echo", "warm")
    barrier.wait()
    for _ in range(n):
        if stream:
            for _ in c.stream(APP, action, *args):
                pass
        else:
            c.execute(APP, action, *args)
    c.close()


def step(arb, name, conc, calls, others=()):
    action, args, stream = CALLS[name]
    barrier = mp.Barrier(conc + 1)
    per = max(1, calls // conc)
    ps = [mp.Process(target=_client, args=(arb.socket_path, action, args, stream, per, barrier))
          for _ in range(conc)]
    for p in ps:
        p.start()
    barrier.wait()
    procs.reset_peak_rss(arb.arbiter_pid)
    other0 = [procs.proc_cpu_seconds(o.arbiter_pid) for o in others]
    sw0 = procs.proc_ctx_switches(arb.arbiter_pid)
    cpu0, t0 = procs.proc_cpu_seconds(arb.arbiter_pid), time.perf_counter()
    for p in ps:
        p.join()
    cpu1, t1 = procs.proc_cpu_seconds(arb.arbiter_pid), time.perf_counter()
    sw1 = procs.proc_ctx_switches(arb.arbiter_pid)
    other1 = [procs.proc_cpu_seconds(o.arbiter_pid) for o in others]
    mem = procs.proc_mem_kib(arb.arbiter_pid)
    n = per * conc
    print(f"{arb.kind:8} {name:7} c={conc:<3} calls={n:<6} {n / (t1 - t0):9.0f}/s "
          f"cpu/call {1e6 * (cpu1 - cpu0) / n:8.1f} us  peak RSS {mem['VmHWM'] / 1024:6.1f} MiB  "
          f"RSS now {mem['VmRSS'] / 1024:6.1f} MiB  wake-ups/call {(sw1[0] - sw0[0]) / n:5.2f} "
          f"preempted/call {(sw1[1] - sw0[1]) / n:5.2f}", flush=True)
    for o, c0, c1 in zip(others, other0, other1):
        print(f"{'':8} {o.name}: cpu/call {1e6 * (c1 - c0) / n:8.1f} us", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arbiter", choices=("gdirty", "gunicorn"), default="gdirty")
    ap.add_argument("--gdirty", default=os.path.join(ROOT, "bin", "gdirty"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--attach", help="run this command during the steps, {pid} = the arbiter's "
                    "pid, ended with SIGINT after them (e.g. 'strace -c -f -p {pid} -o FILE')")
    ap.add_argument("--cluster", action="store_true", help="call through a front node and NATS")
    ap.add_argument("--cpuprofile", metavar="DIR", help="each gdirty writes DIR/<name>.pprof")
    ap.add_argument("steps", nargs="+")
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="gdirty-probe-")
    conf = os.path.join(workdir, "probe.conf.py")
    with open(conf, "w") as f:
        f.write(f"dirty_apps = [{APP!r}]\ndirty_workers = 2\ndirty_threads = 4\n"
                "dirty_timeout = 30\nloglevel = 'warning'\n")
    env = dict(os.environ, PYTHONPATH=BENCH_DIR)

    def penv(name):
        if not a.cpuprofile:
            return env
        os.makedirs(a.cpuprofile, exist_ok=True)
        return dict(env, GDIRTY_CPUPROFILE=os.path.join(os.path.abspath(a.cpuprofile), name + ".pprof"))

    host = None
    if a.cluster:
        port = cluster_bench.free_port()
        host = procs.GDirty("host", os.path.abspath(a.gdirty), a.python, conf, workdir, penv("host"),
                            ["--cluster-listen", f"127.0.0.1:{port}",
                             "--cluster-data-dir", os.path.join(workdir, "nats")])
        front_conf = os.path.join(workdir, "front.conf.py")
        with open(front_conf, "w") as f:
            f.write(f"dirty_apps = [{APP!r}]\ndirty_workers = 0\ndirty_timeout = 30\nloglevel = 'warning'\n")
        arb = procs.GDirty("front", os.path.abspath(a.gdirty), a.python, front_conf, workdir, penv("front"),
                           ["--cluster", f"nats://127.0.0.1:{port}"])
    elif a.arbiter == "gdirty":
        arb = procs.GDirty("gdirty-probe", os.path.abspath(a.gdirty), a.python, conf, workdir, penv("gdirty"))
    else:
        arb = procs.GunicornDirty("gunicorn-probe", a.python, conf, workdir, env)
    others = []
    try:
        if host is not None:
            host.launch()
            host.wait_ready(2, APP)
            others = [host]
        arb.launch()
        arb.wait_ready(0 if host else 2, APP)
        if host is not None:
            cluster_bench.wait_remote(arb, APP, procs)
        tool = None
        if a.attach:
            import shlex
            import signal
            import subprocess
            # warm every client path once before counting
            step(arb, "echo", 1, 20)
            tool = subprocess.Popen(shlex.split(a.attach.format(pid=arb.arbiter_pid)))
            time.sleep(1.0)
        for s in a.steps:
            if s == "idle":
                time.sleep(10)
                mem = procs.proc_mem_kib(arb.arbiter_pid)
                print(f"{arb.kind:8} idle    RSS {mem['VmRSS'] / 1024:.1f} MiB (anon "
                      f"{mem.get('RssAnon', 0) / 1024:.1f}, file {mem.get('RssFile', 0) / 1024:.1f})",
                      flush=True)
                continue
            name, conc, calls = s.split(":")
            step(arb, name, int(conc), int(calls), others)
        if tool:
            tool.send_signal(signal.SIGINT)
            tool.wait(30)
    finally:
        arb.stop()
        if host is not None:
            host.stop()



if __name__ == "__main__":
    main()
