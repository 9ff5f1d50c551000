"""Recycling under load: how many calls fail while workers are recycled.

    python bench/recycle_load.py [--clients 16] [--calls 4000] [--max-requests 300]

Starts gdirty on bench/apps.py (2 workers x 4 threads) with
gdirty_max_requests (+ a jitter of a fifth of it), so workers are retired
and replaced all through the load; every client process makes its calls
back to back and counts the ones that raise. Prints calls, errors and how
many workers were recycled (gdirty's "Retiring dirty worker" lines).
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

import procs  # noqa: E402

APP = "apps:BenchApp"


def _client(sock, n, results):
    from gunicorn.dirty.client import DirtyClient
    c = DirtyClient(sock, timeout=60.0)
    errors = []
    for i in range(n):
        try:
            if c.execute(APP, "echo", i) != i:
                errors.append(f"wrong answer to call {i}")
        except Exception as e:  # noqa: BLE001 - every failure counts
            errors.append(f"{type(e).__name__}: {e}")
    c.close()
    results.put((n, errors))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gdirty", default=os.path.join(ROOT, "bin", "gdirty"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--calls", type=int, default=4000, help="per client")
    ap.add_argument("--max-requests", type=int, default=300)
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="gdirty-recycle-")
    conf = os.path.join(workdir, "recycle.conf.py")
    with open(conf, "w") as f:
        f.write(f"dirty_apps = [{APP!r}]\ndirty_workers = 2\ndirty_threads = 4\ndirty_timeout = 30\n"
                f"gdirty_max_requests = {a.max_requests}\n"
                f"gdirty_max_requests_jitter = {a.max_requests // 5}\n")
    arb = procs.GDirty("gdirty-recycle", os.path.abspath(a.gdirty), a.python, conf, workdir,
                       dict(os.environ, PYTHONPATH=BENCH_DIR))
    try:
        arb.launch()
        arb.wait_ready(2, APP)
        results = mp.Queue()
        ps = [mp.Process(target=_client, args=(arb.socket_path, a.calls, results)) for _ in range(a.clients)]
        t0 = time.perf_counter()
        for p in ps:
            p.start()
        got = [results.get(timeout=600) for _ in ps]
        for p in ps:
            p.join()
        elapsed = time.perf_counter() - t0
        calls = sum(n for n, _ in got)
        errors = [e for _, errs in got for e in errs]
        with open(arb.stderr_path, errors="replace") as f:
            recycled = sum("Retiring dirty worker" in line and "max_requests" in line for line in f)
        print(f"{calls} calls in {elapsed:.1f} s from {a.clients} clients, {len(errors)} errors, "
              f"{recycled} workers recycled (max_requests {a.max_requests} +0..{a.max_requests // 5})")
        for e in errors[:5]:
            print("  ", e)
        sys.exit(1 if errors else 0)
    finally:
        arb.stop()


if __name__ == "__main__":
    main()
