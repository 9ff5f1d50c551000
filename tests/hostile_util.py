"""Helpers shared by the hostile-input tests and the chaos soak: reading
gdirty's Prometheus endpoint and its /proc figures. No pytest imports here
(tests/soak.py runs standalone)."""

import os
import re
import time
import urllib.request

METRICS_RE = re.compile(r"Prometheus metrics on (http://[0-9.:\[\]a-z]+/metrics)")
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics_url_from_log(text):
    """The metrics URL gdirty logs at start-up (--metrics-bind 127.0.0.1:0)."""
    m = METRICS_RE.search(text)
    return m.group(1) if m else None


def scrape(url, timeout=10.0):
    """{(name, frozenset(labels.items())): value} of one /metrics scrape."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL_RE.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def proc_status(pid):
    """Selected fields of /proc/PID/status, in bytes where sized."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            parts = val.split()
            if key in ("VmRSS", "VmHWM", "VmSize") and parts:
                out[key] = int(parts[0]) * 1024
            elif key == "Threads" and parts:
                out[key] = int(parts[0])
    return out


def rss(pid):
    return proc_status(pid)["VmRSS"]


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Gauges:
    """gdirty's goroutines / open fds / RSS / Go heap, for leak checks."""

    def __init__(self, pid, url):
        self.pid = pid
        self.url = url

    def read(self):
        s = scrape(self.url)
        return {
            "goroutines": int(metric(s, "go_goroutines")),
            "fds": int(metric(s, "process_open_fds")),
            "rss": rss(self.pid),
            "heap_alloc": int(metric(s, "go_memstats_heap_alloc_bytes")),
        }

    def settle(self, baseline, goroutine_slack, fd_slack, timeout, rss_slack=None,
               poll=0.25):
        """Poll until goroutines and fds (and RSS, when ``rss_slack`` is
        given) are back within slack of ``baseline``. Returns
        ``(ok, last_reading)``; never raises on a slow return."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.read()
            ok = (last["goroutines"] <= baseline["goroutines"] + goroutine_slack
                  and last["fds"] <= baseline["fds"] + fd_slack
                  and (rss_slack is None or last["rss"] <= baseline["rss"] + rss_slack))
            if ok or time.monotonic() >= deadline:
                return ok, last
            time.sleep(poll)


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"
