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
SCENARIOS = ["cluster_echo_c1", "cluster_echo_c64", "cluster_blob_16MiB"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_nats(workdir, procs):
    if not os.access(NATS_BIN, os.X_OK):  # `make nats-server`, from the module in go.mod
        res = subprocess.run(["go", "build", "-o", NATS_BIN, "github.com/nats-io/nats-server/v2"],
                             cwd=os.path.dirname(os.path.dirname(NATS_BIN)), capture_output=True, text=True)
        if res.returncode != 0:
            raise procs.BenchError(f"building nats-server failed: {res.stderr[-2000:]}")
    port = _free_port()
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
    """Start NATS, a hosting node and a front node; measure; stop them."""
    procs = bench.procs
    nats, url = _start_nats(bench.workdir, procs)
    args = ["--cluster", url]
    host = front = None
    try:
        host = procs.GDirty("gdirty-host", bench.gdirty, bench.args.python,
                            bench.write_config("cluster-host", app), bench.workdir, bench.env, args)
        bench.arbiters.append(host)
        host.launch()
        host.wait_ready(workers, app)
        conf = os.path.join(bench.workdir, "cluster-front.conf.py")
        with open(conf, "w") as f:
            f.write(f"dirty_apps = [{app!r}]\ndirty_workers = 0\ndirty_timeout = 30\n")
        front = procs.GDirty("gdirty-front", bench.gdirty, bench.args.python, conf,
                             bench.workdir, bench.env, args)
        bench.arbiters.append(front)
        front.launch()
        front.wait_ready(0, app)
        _wait_remote(front, app, procs)
        from run import Target  # noqa: PLC0415 - run.py imports this module lazily
        local, remote = Target("local", host), Target("remote", front)
        both = [local, remote]
        for t in both:  # unrecorded warm-up
            bench.measure(t, 16, "echo", (echo_arg,), duration=bench.p["prime"] or 0.2)
        bench.alternate("cluster_echo_c1", both, lambda t: bench.throughput_figures(
            bench.measure(t, 1, "echo", (echo_arg,))))
        bench.alternate("cluster_echo_c64", both, lambda t: bench.throughput_figures(
            bench.measure(t, 64, "echo", (echo_arg,))))
        bench.alternate("cluster_blob_16MiB", both, lambda t: bench.throughput_figures(
            bench.measure(t, 1, "blob", (16 * mib,), duration=max(
                bench.p["duration"], bench.p["long_call_min"])), unit_scale=16))
    finally:
        bench.stop(front, host)
        nats.terminate()
        try:
            nats.wait(15)
        except subprocess.TimeoutExpired:
            nats.kill()
            nats.wait()


def _wait_remote(front, app, procs):
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


def render(res, med, table, f, fx, met):
    """The report's cluster section (empty when the scenario did not run)."""
    if "cluster_echo_c1" not in res["scenarios"]:
        return []
    rows, checks = [], []
    for sc, label, key, unit in (("cluster_echo_c1", "echo, c=1", "p50_us", "µs p50"),
                                 ("cluster_echo_c64", "echo, c=64", "rps", "calls/s"),
                                 ("cluster_blob_16MiB", "16 MiB blob, c=1", "units_per_s", "MiB/s")):
        lo, re_ = med(res, sc, "local").get(key), med(res, sc, "remote").get(key)
        rows.append([label, unit, f(lo), f(re_), fx(re_ / lo) if lo and re_ else "–"])
    c1l, c1r = med(res, "cluster_echo_c1", "local").get("p50_us"), med(res, "cluster_echo_c1", "remote").get("p50_us")
    added = (c1r - c1l) if c1l is not None and c1r is not None else None
    r64 = _ratio(med(res, "cluster_echo_c64", "remote").get("rps"), med(res, "cluster_echo_c64", "local").get("rps"))
    rb = _ratio(med(res, "cluster_blob_16MiB", "remote").get("units_per_s"),
                med(res, "cluster_blob_16MiB", "local").get("units_per_s"))
    checks = [["remote adds ≤ 150 µs p50 at c=1", f(added, 0, " µs"), met(None if added is None else added <= 150)],
              ["remote c=64 throughput ≥ 0.6x local", fx(r64), met(None if r64 is None else r64 >= 0.6)],
              ["remote 16 MiB ≥ 0.5x local", fx(rb), met(None if rb is None else rb >= 0.5)]]
    out = ["## Across hosts (NATS)\n",
           "\"local\": calls made on the gdirty that hosts the app; \"remote\": the same calls made "
           "on a second gdirty with `dirty_workers = 0` that sends them through one nats-server "
           "on 127.0.0.1 (`bench/cluster_bench.py`). Both nodes, the NATS server, the workers "
           "and the clients share the machine's cores.\n",
           table(["", "unit", "local", "remote", "remote / local"], rows), "",
           table(["target", "measured", ""], checks), ""]
    return out


def _ratio(a, b):
    return a / b if a is not None and b else None
