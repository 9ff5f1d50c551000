"""Markdown report of a bench run: machine, target table (met / missed),
one table per scenario with gdirty, gunicorn's arbiter, the direct path and
the ratios."""

KIB_PER_MIB = 1024.0


def f(v, digits=1, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 100:
            s = f"{v:,.0f}"
        else:
            s = f"{v:.{digits}f}"
    else:
        s = f"{v:,}" if isinstance(v, int) else str(v)
    return s + unit


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fx(r):
    return "–" if r is None else f"{r:.2f}x"


def met(ok):
    if ok is None:
        return "n/a"
    return "**met**" if ok else "**MISSED**"


def med(results, scenario, target):
    return results["scenarios"].get(scenario, {}).get("median", {}).get(target, {})


def table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------

def targets(res):
    """[(target, goal, figure, met)] from the medians."""
    rows = []
    sc = res["scenarios"]

    if "echo_c1" in sc:
        gd, dr = med(res, "echo_c1", "gdirty"), med(res, "echo_c1", "direct")
        r = ratio(gd.get("rps"), dr.get("rps"))
        added = (gd["p50_us"] - dr["p50_us"]) if gd.get("p50_us") and dr.get("p50_us") else None
        rows.append(("echo c=1 req/s", ">= 0.85x direct",
                     f"{f(gd.get('rps'))} vs {f(dr.get('rps'))} req/s = {fx(r)}",
                     None if r is None else r >= 0.85))
        rows.append(("echo c=1 arbiter-added p50", "<= 30 us",
                     f"{f(added)} us ({f(gd.get('p50_us'))} - {f(dr.get('p50_us'))})",
                     None if added is None else added <= 30))

    for c, goal in ((1, 45), (16, 15)):
        s = f"echo_c{c}"
        if s in sc:
            a = med(res, s, "gdirty").get("arbiter_cpu_us_per_call")
            b = med(res, s, "gunicorn").get("arbiter_cpu_us_per_call")
            rows.append((f"arbiter CPU per echo call, c={c}", f"<= {goal} us",
                         f"{f(a)} us (gunicorn {f(b)} us = {fx(ratio(a, b))})",
                         None if a is None else a <= goal))

    if "echo_c64" in sc:
        gd, gu = med(res, "echo_c64", "gdirty"), med(res, "echo_c64", "gunicorn")
        dr = med(res, "echo_c64", "direct")
        r1 = ratio(gd.get("rps"), gu.get("rps"))
        r2 = ratio(gd.get("p99_us"), gu.get("p99_us"))
        floor = ratio(dr.get("p99_us"), gu.get("p99_us"))
        rows.append(("echo c=64 req/s", ">= 1.3x gunicorn",
                     f"{f(gd.get('rps'))} vs {f(gu.get('rps'))} = {fx(r1)}",
                     None if r1 is None else r1 >= 1.3))
        rows.append(("echo c=64 p99", "<= 0.5x gunicorn",
                     f"{f(gd.get('p99_us'))} vs {f(gu.get('p99_us'))} us = {fx(r2)} (direct path "
                     f"p99 {f(dr.get('p99_us'))} us = {fx(floor)} of gunicorn's)",
                     None if r2 is None else r2 <= 0.5))

    if "sleep10_c16" in sc:
        gd = med(res, "sleep10_c16", "gdirty")
        rows.append(("sleep 10 ms, 2 x 4 threads, c=16", ">= 700 req/s",
                     f"{f(gd.get('rps'))} req/s (gunicorn {f(med(res, 'sleep10_c16', 'gunicorn').get('rps'))},"
                     f" direct {f(med(res, 'sleep10_c16', 'direct').get('rps'))})",
                     None if gd.get("rps") is None else gd["rps"] >= 700))

    for s, label in (("blob_1MiB", "blob 1 MiB"), ("blob_16MiB", "blob 16 MiB")):
        if s in sc:
            gd, dr = med(res, s, "gdirty"), med(res, s, "direct")
            r = ratio(gd.get("units_per_s"), dr.get("units_per_s"))
            rows.append((f"{label} MiB/s", ">= 0.9x direct",
                         f"{f(gd.get('units_per_s'))} vs {f(dr.get('units_per_s'))} MiB/s = {fx(r)}",
                         None if r is None else r >= 0.9))

    if "stream_1000x64" in sc:
        gd, dr = med(res, "stream_1000x64", "gdirty"), med(res, "stream_1000x64", "direct")
        r = ratio(gd.get("units_per_s"), dr.get("units_per_s"))
        rows.append(("stream 1000 x 64 B chunks/s", ">= 0.95x direct",
                     f"{f(gd.get('units_per_s'))} vs {f(dr.get('units_per_s'))} = {fx(r)}",
                     None if r is None else r >= 0.95))

    rss = sc.get("rss")
    if rss:
        idle = rss.get("idle", {}).get("gdirty", {}).get("VmRSS")
        rows.append(("RSS idle", "<= 12 MiB",
                     f"{f(idle / KIB_PER_MIB if idle else None)} MiB", None if idle is None else
                     idle <= 12 * 1024))
        after = rss.get("after_load", {}).get("gdirty", {}).get("VmRSS")
        secs = rss.get("after_load_s", {}).get("gdirty")
        rows.append(("RSS after the load", "<= idle + 2 MiB within 10 s",
                     f"{f(after / KIB_PER_MIB if after else None)} MiB "
                     f"({f(secs)} s after the load)",
                     None if after is None or idle is None else
                     after <= idle + 2 * 1024 and (secs is None or secs <= 10.5)))
    p16 = peak_kib(res, "blob_16MiB", "gdirty")
    for s, label, goal in (("blob_16MiB", "16 MiB blobs, c=1", 24), ("blob_16MiB_c4", "16 MiB blobs, c=4", 32)):
        peak = peak_kib(res, s, "gdirty")
        if peak is not None:
            gu = peak_kib(res, s, "gunicorn")
            rows.append((f"arbiter peak RSS, {label}", f"<= {goal} MiB",
                         f"{f(peak / KIB_PER_MIB)} MiB (gunicorn {f(gu / KIB_PER_MIB if gu else None)} MiB)",
                         peak <= goal * 1024))
    p64 = peak_kib(res, "blob_64MiB", "gdirty")
    p16 = max((p for p in (p16, peak_kib(res, "blob_16MiB_c4", "gdirty")) if p), default=None)
    if p64 is not None and p16 is not None:
        # The scenario runs right after the 16 MiB ones, whose memory may
        # not be released yet when its high-water mark is reset.
        rows.append(("arbiter peak RSS, 64 MiB blobs",
                     "no higher than with 16 MiB blobs (c=1 or 4; +1 MiB noise)",
                     f"{f(p64 / KIB_PER_MIB)} vs {f(p16 / KIB_PER_MIB)} MiB",
                     p64 <= p16 + 1024))

    if "respawn_trivial" in sc:
        gd = med(res, "respawn_trivial", "gdirty").get("ms_to_first_answer")
        gu = med(res, "respawn_trivial", "gunicorn").get("ms_to_first_answer")
        rows.append(("respawn, trivial app", "<= 50 ms to first answer",
                     f"{f(gd)} ms (gunicorn {f(gu)} ms)", None if gd is None else gd <= 50))
    if "respawn_slow" in sc:
        gd = med(res, "respawn_slow", "gdirty").get("ms_to_first_answer")
        gu = med(res, "respawn_slow", "gunicorn").get("ms_to_first_answer")
        rows.append(("respawn, 1 s import + 200 ms init", "<= gunicorn's",
                     f"{f(gd)} vs {f(gu)} ms = {fx(ratio(gd, gu))}",
                     None if gd is None or gu is None else gd <= gu))

    if "kill_under_load" in sc:
        runs = sc["kill_under_load"]["runs"].get("gdirty", [])
        ok = bool(runs) and all(kill_ok(r, res) for r in runs)
        rows.append(("kill under load (c=8)",
                     "0 errors for calls not yet sent; each held call one prompt error; "
                     "0 never answered",
                     kill_summary(runs), ok if runs else None))

    if "overload_4x" in sc:
        gd = med(res, "overload_4x", "gdirty")
        r = ratio(gd.get("admitted_p99_us"), gd.get("unloaded_p99_us"))
        rows.append(("overload 4x: admitted p99", "<= 2x unloaded p99",
                     f"{f(us_ms(gd.get('admitted_p99_us')), 2)} vs {f(us_ms(gd.get('unloaded_p99_us')), 2)} ms"
                     f" = {fx(r)}", None if r is None else r <= 2.0))
        rej99 = gd.get("rejected_p99_us")
        kinds = gd.get("rejected_errors") or {}
        clear = bool(kinds) and all(k.split(":", 1)[0] != "DirtyError" or len(k) > 20
                                    for k in kinds)
        first = next(iter(kinds), "none")
        rows.append(("overload 4x: rejected calls", "fail in < 10 ms with a clear error",
                     f"{f(gd.get('rejected'))} rejected, p99 {f(us_ms(rej99), 2)} ms: `{first}`",
                     None if rej99 is None else (rej99 < 10_000 and clear)))
    return rows


def us_ms(v):
    return None if v is None else v / 1000.0


def peak_kib(res, scenario, target):
    """The arbiter's highest peak RSS over a scenario's runs (each run
    resets the high-water mark first)."""
    runs = res["scenarios"].get(scenario, {}).get("runs", {}).get(target, [])
    peaks = [r.get("arbiter_peak_kib") for r in runs if r.get("arbiter_peak_kib")]
    return max(peaks) if peaks else None


def blob16_peak_kib(rss, kind):
    if rss.get("peak_reset_ok", {}).get(kind):
        return rss.get("after_blob16", {}).get(kind, {}).get("VmHWM")
    return rss.get("blob16_sampled_max_kib", {}).get(kind)


def kill_ok(r, res):
    threads = res["meta"]["params"]["threads"]
    delay = r.get("error_delay_max_ms")
    return (r["never_answered"] == 0 and r["errors_sent_after_kill"] == 0
            and r["errors"] <= threads and (delay is None or delay < 500))


def kill_summary(runs):
    if not runs:
        return "–"
    per = lambda k: "/".join(f(r.get(k)) for r in runs)  # noqa: E731
    return (f"per run: errors {per('errors')} (the killed worker holds up to dirty_threads "
            f"calls), of which for calls the client sent before the kill {per('errors_held')} "
            f"and after it {per('errors_sent_after_kill')}, max error delay "
            f"{per('error_delay_max_ms')} ms, never answered {per('never_answered')}")


# ---------------------------------------------------------------------------
# Scenario tables
# ---------------------------------------------------------------------------

ORDER = ("direct", "gunicorn", "gdirty")


def throughput_table(res, s, unit, unit_key="rps", ms=False):
    scale = 1000.0 if ms else 1.0
    lu = "ms" if ms else "µs"
    hdr = ["path", unit, f"p50 {lu}", f"p99 {lu}", "arbiter CPU µs/call",
           "arbiter peak RSS MiB", "errors", "machine busy"]
    rows = []
    meds = {t: med(res, s, t) for t in ORDER}
    for t in ORDER:
        m = meds[t]
        if not m:
            continue
        rows.append([t, f(m.get(unit_key)), f(div(m.get("p50_us"), scale), 2),
                     f(div(m.get("p99_us"), scale), 2), f(m.get("arbiter_cpu_us_per_call")),
                     f(div(peak_kib(res, s, t), KIB_PER_MIB)), f(m.get("errors")),
                     pct(m.get("machine_busy"))])
    for a, b in (("gdirty", "gunicorn"), ("gdirty", "direct")):
        if meds.get(a) and meds.get(b):
            rows.append([f"*{a} / {b}*", fx(ratio(meds[a].get(unit_key), meds[b].get(unit_key))),
                         fx(ratio(meds[a].get("p50_us"), meds[b].get("p50_us"))),
                         fx(ratio(meds[a].get("p99_us"), meds[b].get("p99_us"))),
                         fx(ratio(meds[a].get("arbiter_cpu_us_per_call"),
                                  meds[b].get("arbiter_cpu_us_per_call"))),
                         fx(ratio(peak_kib(res, s, a), peak_kib(res, s, b))), "", ""])
    return table(hdr, rows)


def div(v, s):
    return None if v is None else v / s


def pct(v):
    return "–" if v is None else f"{v * 100:.0f}%"


NOTES = """## Reading these figures

* **The direct path is gunicorn's worker.** It is the only worker a gunicorn
  client can reach without an arbiter. gdirty does not run gunicorn's
  `DirtyWorker` but its own worker host (pyshim), which runs the same
  DirtyApps differently (e.g. a generator is not stepped through the thread
  pool once per chunk), so "gdirty / direct" above 1.00x is possible and the
  ratio is not a pure measure of the arbiter's overhead.
* **The load generator shares the machine.** Clients are Python processes
  (up to 64) on the same cores as the arbiter and the workers. From
  concurrency 16 up the machine is CPU-bound ("machine busy" ~100%), the
  arbiter gets a fair-scheduler share of it, and tail latencies are set by
  how often 16-64 runnable client processes get a core: compare every p99
  with the direct path's, which has no arbiter at all.
* **Arbiter CPU** counts the arbiter process only (gdirty: all its threads);
  workers and clients are excluded. `/proc` ticks are 10 ms, hence the
  3 s windows.
* **Kill under load** classifies errors by when the *client* sent the call:
  "after the kill" means the worker was already dead (SIGKILL returned)
  when the client sent it.

"""


def render(res):
    meta = res["meta"]
    p = meta.get("params", {})
    out = []
    out.append("# gdirty benchmarks: gdirty vs gunicorn's dirty arbiter vs the direct path\n")
    out.append("Generated by `make bench` (`bench/run.py`); do not edit by hand. "
               + ("**SMOKE RUN: windows far too short for meaningful figures.**"
                  if meta.get("profile") == "smoke" else "") + "\n")
    out.append("## Machine\n")
    out.append(table(["", ""], [
        ["date", meta.get("date")],
        ["nproc", meta.get("nproc")],
        ["CPU", meta.get("cpu_model")],
        ["memory", f"{meta.get('mem_total_mib')} MiB"],
        ["kernel", meta.get("kernel")],
        ["Python", meta.get("python")],
        ["Go", meta.get("go")],
        ["gunicorn", meta.get("gunicorn")],
        ["gdirty", f"{meta.get('gdirty')} (git {meta.get('git')})"],
        ["load average (1/5/15 min) at start", " / ".join(map(str, meta.get("loadavg_start", [])))],
        ["load average at end", " / ".join(map(str, meta.get("loadavg_end", [])))],
        ["whole-machine CPU busy during the run", pct(meta.get("machine_busy_overall"))],
        ["wall time", f"{meta.get('wall_s', 0):.0f} s"],
    ]))
    out.append("")
    out.append("## Method\n")
    out.append(
        f"Both arbiters read the same gunicorn config file: `dirty_workers = {p.get('workers')}`, "
        f"`dirty_threads = {p.get('threads')}`, `dirty_timeout = 30`, apps from `bench/apps.py`. "
        "gunicorn's arbiter is its own `gunicorn.dirty.arbiter.DirtyArbiter`, built in a "
        "stand-in master process and run in a forked child exactly as "
        "`Arbiter.spawn_dirty_arbiter` does (`bench/gunicorn_dirty.py`). The **direct path** is "
        "the same client connected straight to a gunicorn dirty worker's own socket "
        "(`worker-N.sock`; with c > 1 the clients are spread over both workers) — no arbiter, "
        "the floor. Every call is made by gunicorn's sync `DirtyClient`, one client per OS "
        "process. Each figure is the median of "
        f"{p.get('runs')} runs; within a run the order of the targets rotates. Load windows: "
        f"{p.get('warmup')} s warm-up, then {p.get('duration')} s measured (calls completing "
        "in the window). Latencies are client-side, per call (per whole stream for streams). "
        "Arbiter CPU = utime+stime of the arbiter process only (`/proc/PID/stat`) over the "
        "window / calls. RSS = the arbiter process only (`VmRSS`); \"arbiter peak RSS\" = its "
        "`VmHWM` at the end of each load window, reset through `/proc/PID/clear_refs` just "
        "before the window's clients start, so each figure is that scenario's alone (the "
        "highest over the runs). \"machine busy\" = whole "
        "machine CPU use during the window (clients, workers, arbiter and anything else "
        "running).\n")
    out.append(NOTES)
    out.append("## Targets\n")
    rows = [[name, goal, fig, met(ok)] for name, goal, fig, ok in targets(res)]
    out.append(table(["target", "goal", "figure (median)", "result"], rows))
    out.append("")

    sc = res["scenarios"]
    for c in (1, 16, 64):
        s = f"echo_c{c}"
        if s in sc:
            out.append(f"## echo of a short string, concurrency {c}\n")
            out.append(throughput_table(res, s, "req/s"))
            out.append("")
    if "sleep10_c16" in sc:
        out.append(f"## sleep 10 ms, {p.get('workers')} workers x {p.get('threads')} threads, "
                   "concurrency 16\n")
        out.append(throughput_table(res, "sleep10_c16", "req/s", ms=True))
        out.append("")
    for s, label, c in (("blob_1MiB", "1 MiB", 1), ("blob_16MiB", "16 MiB", 1),
                        ("blob_16MiB_c4", "16 MiB", 4), ("blob_64MiB", "64 MiB", 1)):
        if s in sc:
            out.append(f"## blob of {label}, concurrency {c}\n")
            out.append(throughput_table(res, s, "MiB/s", unit_key="units_per_s", ms=True))
            if s == "blob_64MiB":
                out.append("\n(gunicorn's sync client reads a frame with `data += chunk`, which is "
                           "quadratic in the number of reads: one 64 MiB answer takes it longer "
                           "than the load window, so few or no calls complete inside it. The "
                           "figure this scenario is for is the arbiter's peak RSS.)")
            out.append("")
    if "stream_1000x64" in sc:
        out.append("## stream of 1000 chunks x 64 B, concurrency 1\n")
        out.append(throughput_table(res, "stream_1000x64", "chunks/s", unit_key="units_per_s",
                                    ms=True))
        out.append("\n(latency and CPU are per whole stream of 1000 chunks)\n")
    rss = sc.get("rss")
    if rss:
        out.append("## Arbiter memory (arbiter process only)\n")
        rows = []
        for kind in ("gunicorn", "gdirty"):
            mib = lambda kib: f(None if kib is None else kib / KIB_PER_MIB, 1)  # noqa: E731
            rows.append([kind,
                         mib(rss.get("idle", {}).get(kind, {}).get("VmRSS")),
                         mib(rss.get("after_load", {}).get(kind, {}).get("VmRSS")),
                         f(rss.get("after_load_s", {}).get(kind)),
                         mib(peak_kib(res, "blob_1MiB", kind)),
                         mib(peak_kib(res, "blob_16MiB", kind)),
                         mib(peak_kib(res, "blob_16MiB_c4", kind)),
                         mib(peak_kib(res, "blob_64MiB", kind))])
        out.append(table(["arbiter", "idle MiB", "after load MiB", "s after the load",
                          "peak, 1 MiB blobs", "peak, 16 MiB blobs", "peak, 16 MiB blobs c=4",
                          "peak, 64 MiB blobs"], rows))
        out.append("\n(\"after load\": polled until within 2 MiB of idle, for at most 10 s; "
                   "each peak is the arbiter's VmHWM over that scenario alone, highest run)\n")
    if "overload_4x" in sc:
        o = sc["overload_4x"]
        out.append(f"## Overload: offered 4x the pool's capacity "
                   f"(capacity {f(o.get('capacity_rps'))} calls/s of sleep {f(o.get('sleep_ms', 10.0), 0)} ms), "
                   "open loop, 64 clients\n")
        out.append(f"gdirty runs with `--max-queue {p.get('max_queue')}`; gunicorn's arbiter "
                   "has no queue bound (its clients, being synchronous, throttle themselves). "
                   "Unloaded = the same call at concurrency 1.\n")
        rows = []
        for kind in ("gunicorn", "gdirty"):
            m = med(res, "overload_4x", kind)
            if not m:
                continue
            rows.append([kind, f(us_ms(m.get("unloaded_p99_us")), 2), f(m.get("offered_rps")),
                         f(m.get("admitted_rps")), f(us_ms(m.get("admitted_p50_us")), 2),
                         f(us_ms(m.get("admitted_p99_us")), 2),
                         fx(ratio(m.get("admitted_p99_us"), m.get("unloaded_p99_us"))),
                         f(m.get("rejected")), f(us_ms(m.get("rejected_p50_us")), 3),
                         f(us_ms(m.get("rejected_p99_us")), 3),
                         "<br>".join(f"`{k}` ×{v}" for k, v in
                                     (m.get("rejected_errors") or {}).items()) or "–",
                         f(m.get("client_timeouts")), pct(m.get("machine_busy"))])
        out.append(table(["arbiter", "unloaded p99 ms", "offered/s", "admitted/s",
                          "admitted p50 ms", "admitted p99 ms", "admitted p99 / unloaded",
                          "rejected", "rejected p50 ms", "rejected p99 ms",
                          "rejection error (count over all runs)",
                          "client timeouts", "machine busy"], rows))
        out.append("")
    if "kill_under_load" in sc:
        out.append(f"## SIGKILL of one worker during an echo load at concurrency 8 "
                   f"(client timeout {p.get('kill_timeout')} s)\n")
        rows = []
        for kind in ("gunicorn", "gdirty"):
            runs = sc["kill_under_load"]["runs"].get(kind, [])
            if not runs:
                continue
            per = lambda k: " / ".join(f(r.get(k)) for r in runs)  # noqa: E731
            kinds = {}
            for r in runs:
                for k, v in (r.get("error_kinds") or {}).items():
                    kinds[k] = kinds.get(k, 0) + v
            rows.append([kind, per("calls_ok"), per("in_flight_at_kill"), per("errors_held"),
                         per("errors_sent_after_kill"), per("error_delay_max_ms"),
                         per("never_answered"),
                         "<br>".join(f"`{k}` ×{v}" for k, v in kinds.items()) or "–"])
        out.append(table(["arbiter", "calls ok", "calls in flight at the kill",
                          "errors (calls sent before the kill)",
                          "errors (calls sent after the kill)", "last error, ms after kill",
                          "never answered", "errors by type (all runs)"], rows))
        out.append("\n(one value per run)\n")
    for s, label in (("respawn_trivial", "trivial app"),
                     ("respawn_slow", "app with 1 s import + 200 ms init()")):
        if s in sc:
            out.append(f"## Respawn after SIGKILL, {label}: time to the first answer "
                       "from the replacement\n")
            rows = []
            for kind in ("gunicorn", "gdirty"):
                runs = sc[s]["runs"].get(kind, [])
                if not runs:
                    continue
                m = med(res, s, kind)
                rows.append([kind, f(m.get("ms_to_first_answer")),
                             " / ".join(f(r.get("ms_to_first_answer")) for r in runs),
                             " / ".join(f(r.get("ms_to_listed")) for r in runs),
                             " / ".join(f(r.get("errors_meanwhile")) for r in runs),
                             "<br>".join(f"`{k}` ×{v}" for k, v in
                                         (m.get("error_kinds") or {}).items()) or "–"])
            out.append(table(["arbiter", "median ms", "runs ms",
                              "replacement listed in STATUS, ms", "failed calls meanwhile",
                              "errors"], rows))
            out.append("")
    if meta.get("start_to_ready_s") or meta.get("slow_start_to_ready_s"):
        out.append("## Cold start (launch to every worker answering), for information\n")
        rows = []
        for key, label in (("start_to_ready_s", "trivial app"),
                           ("slow_start_to_ready_s", "1 s import + 200 ms init")):
            v = meta.get(key)
            if v:
                rows.append([label, f(v["gunicorn"] * 1000), f(v["gdirty"] * 1000)])
        out.append(table(["app", "gunicorn ms", "gdirty ms"], rows))
        out.append("")
    import cluster_bench  # noqa: PLC0415 - the cluster section lives with its scenario
    out.extend(cluster_bench.render(res, med, table, f, fx, met))
    return "\n".join(out) + "\n"
