"""Cluster scenario of the benchmark (issue 10): the same calls made on the
node that hosts the app ("local") and on a pure front node (dirty_workers =
0) that sends every call to it through NATS ("remote"). One nats-server
(bin/nats-server, built by `make`) on 127.0.0.1 for the scenario.

Targets (the issue's): remote adds at most 150 µs at p50 over local at c=1,
c=64 throughput at least 0.6x local, 16 MiB blobs at least 0.5x local.
"""

import os
import socket
import subprocess
import time

NATS_BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin", "nats-server")
SCENARIOS = [f"cluster_{t}_{s}" for t in ("nats", "embedded") for s in ("echo_c1", "echo_c64", "blob_16MiB")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_nats(workdir, procs):
    if not os.access(NATS_BIN, os.X_OK):  # `make nats-server`, from the module in go.mod
        res = subprocess.run(["go", "build", "-o", NATS_BIN, "github.com/nats-io/nats-server/v2"],
                             cwd=os.path.dirname(os.path.dirname(NATS_BIN)), capture_output=True, text=True)
        if res.returncode != 0:
            raise procs.BenchError(f"building nats-server failed: {res.stderr[-2000:]}")
    port = free_port()
    log = open(os.path.join(workdir, "nats.log"), "wb")
    proc = subprocess.Popen([NATS_BIN, "-a", "127.0.0.1", "-p", str(port), "-js",
                             "-sd", os.path.join(workdir, "nats")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()

    def up():
        if proc.poll() is not None:
            raise procs.BenchError(f"nats-server exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    procs.wait_until(up, 30, "nats-server")
    return proc, f"nats://127.0.0.1:{port}"


def run(bench, app, workers, echo_arg, mib):
    """Both topologies, one after the other: a hosting node and a front node
    on a nats-server of their own, then the hosting node running the server
    inside itself (--cluster-listen) with the front connecting to it."""
    procs = bench.procs
    nats, url = _start_nats(bench.workdir, procs)
    try:
        _run_topology(bench, app, workers, echo_arg, mib, "nats", ["--cluster", url], ["--cluster", url])
    finally:
        nats.terminate()
        try:
            nats.wait(15)
        except subprocess.TimeoutExpired:
            nats.kill()
            nats.wait()
    port = free_port()
    _run_topology(bench, app, workers, echo_arg, mib, "embedded",
                  ["--cluster-listen", f"127.0.0.1:{port}",
                   "--cluster-data-dir", os.path.join(bench.workdir, "nats-embedded")],
                  ["--cluster", f"nats://127.0.0.1:{port}"])


def _run_topology(bench, app, workers, echo_arg, mib, topo, host_args, front_args):
    """Start the hosting and the front node; measure local vs remote; stop."""
    procs = bench.procs
    host = front = None
    try:
        host = procs.GDirty(f"gdirty-host-{topo}", bench.gdirty, bench.args.python,
                            bench.write_config(f"cluster-host-{topo}", app), bench.workdir, bench.env, host_args)
        bench.arbiters.append(host)
        host.launch()
        host.wait_ready(workers, app)
        conf = os.path.join(bench.workdir, f"cluster-front-{topo}.conf.py")
        with open(conf, "w") as f:
            f.write(f"dirty_apps = [{app!r}]\ndirty_workers = 0\ndirty_timeout = 30\n")
        front = procs.GDirty(f"gdirty-front-{topo}", bench.gdirty, bench.args.python, conf,
                             bench.workdir, bench.env, front_args)
        bench.arbiters.append(front)
        front.launch()
        front.wait_ready(0, app)
        wait_remote(front, app, procs)
        from run import Target  # noqa: PLC0415 - run.py imports this module lazily
        local, remote = Target("local", host), Target("remote", front)
        both = [local, remote]
        for t in both:  # unrecorded warm-up
            bench.measure(t, 16, "echo", (echo_arg,), duration=bench.p["prime"] or 0.2)
        bench.alternate(f"cluster_{topo}_echo_c1", both, lambda t: bench.throughput_figures(
            bench.measure(t, 1, "echo", (echo_arg,))))
        bench.alternate(f"cluster_{topo}_echo_c64", both, lambda t: bench.throughput_figures(
            bench.measure(t, 64, "echo", (echo_arg,))))
        bench.alternate(f"cluster_{topo}_blob_16MiB", both, lambda t: bench.throughput_figures(
            bench.measure(t, 1, "blob", (16 * mib,), duration=max(
                bench.p["duration"], bench.p["long_call_min"])), unit_scale=16))
    finally:
        bench.stop(front, host)


def wait_remote(front, app, procs):
    """Until the front reaches the hosting node (it announces its apps once
    its workers are up)."""
    def ok():
        try:
            with front.client(timeout=5) as c:
                c.execute(app, "pid")
            return True
        except Exception:  # noqa: BLE001 - not yet
            time.sleep(0.05)
            return False

    procs.wait_until(ok, 30, "the front node to reach the hosting node")


TOPOLOGIES = (("nats", "own nats-server process"),
              ("embedded", "nats-server inside the hosting node (`--cluster-listen`)"))


def render(res, med, table, f, fx, met):
    """The report's cluster section (empty when the scenario did not run)."""
    topos = [(t, label) for t, label in TOPOLOGIES if f"cluster_{t}_echo_c1" in res["scenarios"]]
    if not topos:
        return []
    rows, checks = [], []
    for topo, where in topos:
        for sc, label, key, unit in (("echo_c1", "echo, c=1", "p50_us", "µs p50"),
                                     ("echo_c64", "echo, c=64", "rps", "calls/s"),
                                     ("blob_16MiB", "16 MiB blob, c=1", "units_per_s", "MiB/s")):
            sc = f"cluster_{topo}_{sc}"
            lo, re_ = med(res, sc, "local").get(key), med(res, sc, "remote").get(key)
            rows.append([where, label, unit, f(lo), f(re_), fx(re_ / lo) if lo and re_ else "–"])
        c1l = med(res, f"cluster_{topo}_echo_c1", "local").get("p50_us")
        c1r = med(res, f"cluster_{topo}_echo_c1", "remote").get("p50_us")
        added = (c1r - c1l) if c1l is not None and c1r is not None else None
        r64 = _ratio(med(res, f"cluster_{topo}_echo_c64", "remote").get("rps"),
                     med(res, f"cluster_{topo}_echo_c64", "local").get("rps"))
        rb = _ratio(med(res, f"cluster_{topo}_blob_16MiB", "remote").get("units_per_s"),
                    med(res, f"cluster_{topo}_blob_16MiB", "local").get("units_per_s"))
        checks += [[where, "remote adds ≤ 150 µs p50 at c=1", f(added, 0, " µs"),
                    met(None if added is None else added <= 150)],
                   [where, "remote c=64 throughput ≥ 0.6x local", fx(r64), met(None if r64 is None else r64 >= 0.6)],
                   [where, "remote 16 MiB ≥ 0.5x local", fx(rb), met(None if rb is None else rb >= 0.5)]]
    out = ["## Across hosts (NATS)\n",
           "\"local\": calls made on the gdirty that hosts the app; \"remote\": the same calls made "
           "on a second gdirty with `dirty_workers = 0` that sends them through NATS on 127.0.0.1 "
           "(`bench/cluster_bench.py`), in two topologies: a nats-server process of its own, and the "
           "hosting node running nats-server inside itself (`--cluster-listen`, the small-deployment "
           "setup of the README; the hosting node then reaches the server in-process). Both nodes, "
           "the NATS server, the workers and the clients share the machine's cores.\n",
           table(["NATS", "", "unit", "local", "remote", "remote / local"], rows), "",
           table(["NATS", "target", "measured", ""], checks), ""]
    return out


def _ratio(a, b):
    return a / b if a is not None and b else None
