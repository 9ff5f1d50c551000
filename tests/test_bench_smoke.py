"""The side-by-side benchmark (bench/run.py) in its smoke variant: every
scenario runs very briefly against gdirty, gunicorn's own DirtyArbiter and
the direct path. Only that each scenario produced its figures is checked —
never the figures themselves (they mean nothing in a few hundred ms on a
busy CI machine); `make bench` is the real measurement."""

import json
import numbers
import subprocess
import sys

import pytest

import gversions

# Raw binary frames (protocol v1, gunicorn 25.1+) drive this tool.
pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)

from conftest import ROOT, clean_env

THROUGHPUT = ["echo_c1", "echo_c16", "echo_c64", "sleep10_c16", "stream_1000x64",
              "blob_1MiB", "blob_16MiB", "blob_16MiB_c4"]
ARBITERS = ["gdirty", "gunicorn"]


def is_num(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def test_bench_smoke(gdirty_bin, tmp_path):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke",
           "--gdirty", str(gdirty_bin), "--json", str(out), "--out", str(md)]
    res = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (
        f"bench smoke exited {res.returncode}\nstderr tail:\n{res.stderr[-5000:]}")
    data = json.loads(out.read_text())
    sc = data["scenarios"]

    missing = []

    def need(cond, what):
        if not cond:
            missing.append(what)

    for s in THROUGHPUT:
        for target in ARBITERS + ["direct"]:
            runs = sc.get(s, {}).get("runs", {}).get(target)
            need(runs, f"{s}/{target}: no runs")
            for i, r in enumerate(runs or []):
                for k in ("rps", "units_per_s", "p50_us", "p99_us"):
                    need(is_num(r.get(k)), f"{s}/{target} run {i}: {k}={r.get(k)!r}")
                if target != "direct":
                    need(is_num(r.get("arbiter_cpu_us_per_call")),
                         f"{s}/{target} run {i}: no arbiter CPU figure")
                    need(is_num(r.get("arbiter_peak_kib")),
                         f"{s}/{target} run {i}: no arbiter peak RSS figure")

    rss = sc.get("rss", {})
    for phase in ("idle", "after_load", "after_blob16"):
        for kind in ARBITERS:
            need(is_num(rss.get(phase, {}).get(kind, {}).get("VmRSS")),
                 f"rss/{phase}/{kind}")

    for kind in ARBITERS:
        for r in sc.get("overload_4x", {}).get("runs", {}).get(kind, []) or [None]:
            need(r is not None, f"overload_4x/{kind}: no runs")
            for k in ("unloaded_p99_us", "offered_rps", "admitted_rps", "admitted_p99_us",
                      "rejected", "client_timeouts"):
                need(r is not None and is_num(r.get(k)), f"overload_4x/{kind}: {k}")
        for r in sc.get("kill_under_load", {}).get("runs", {}).get(kind, []) or [None]:
            need(r is not None, f"kill_under_load/{kind}: no runs")
            for k in ("calls_ok", "errors_held", "errors_sent_after_kill", "never_answered"):
                need(r is not None and is_num(r.get(k)), f"kill_under_load/{kind}: {k}")
        for s in ("respawn_trivial", "respawn_slow"):
            for r in sc.get(s, {}).get("runs", {}).get(kind, []) or [None]:
                need(r is not None and is_num(r.get("ms_to_first_answer")),
                     f"{s}/{kind}: ms_to_first_answer")

    sys.path.insert(0, str(ROOT / "bench"))
    import cluster_bench  # noqa: PLC0415 - bench/ is not a package
    for s in cluster_bench.SCENARIOS:  # both NATS topologies
        for target in ("local", "remote"):
            runs = sc.get(s, {}).get("runs", {}).get(target)
            need(runs, f"{s}/{target}: no runs")
            for i, r in enumerate(runs or []):
                for k in ("rps", "units_per_s", "p50_us"):
                    need(is_num(r.get(k)), f"{s}/{target} run {i}: {k}={r.get(k)!r}")

    stops = data["meta"].get("stops", [])
    need(stops and not any(s["killed"] for s in stops),
         f"every process stopped on SIGTERM: {stops}")
    text = md.read_text()
    need("## Targets" in text and "## Machine" in text, "Markdown report rendered")
    need("## Across hosts (NATS)" in text, "the cluster section rendered")
    assert not missing, "bench smoke produced no figure for:\n  " + "\n  ".join(missing)
