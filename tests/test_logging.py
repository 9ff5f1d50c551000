"""gdirty's own log lines follow gunicorn's logging setup.

Every expected line is produced by Python's ``logging.Formatter`` with the
format gunicorn itself uses (``gunicorn.glogging.Logger.error_fmt`` /
``datefmt``) or the one the test's ``logconfig_dict`` sets, for a record
carrying the fields read back from gdirty's line: gdirty's bytes must equal
what gunicorn's logging would have written.
"""

import json
import logging
import re
import socket
import sys
import time
from datetime import datetime

from conftest import dirty_config, wait_until, ECHO
from gunicorn.glogging import Logger
from master_util import Master

LINE = re.compile(r"^\[(?P<ts>[^\]]+)\] \[(?P<pid>\d+)\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)$")


def gunicorn_line(ts, pid, level, msg, fmt=Logger.error_fmt, datefmt=Logger.datefmt, msecs=None):
    """The line gunicorn's error logger writes for this record."""
    record = logging.LogRecord("gunicorn.error", logging.getLevelName(level), "gdirty", 0, msg, None, None)
    record.created = ts
    record.msecs = float(msecs) if msecs is not None else 0.0
    record.process = pid
    return logging.Formatter(fmt, datefmt).format(record)


def parse_gunicorn_ts(ts):
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S %z").timestamp()


def check_default_format(lines, pid):
    """Every line of ``pid`` equals gunicorn's rendering of its fields."""
    mine = []
    for line in lines:
        m = LINE.match(line)
        if m and int(m["pid"]) == pid:
            expected = gunicorn_line(parse_gunicorn_ts(m["ts"]), pid, m["level"], m["msg"])
            assert line == expected
            mine.append(m)
    return mine


def test_master_mode_lines_look_like_the_masters(gdirty_bin, tmp_path):
    m = Master(sys.executable, "", tmp_path, gdirty_bin)
    try:
        m.get_ok("/echo?msg=x", "x")
        m.booted_workers(2)
    finally:
        assert m.stop() == 0
    lines = m.output().splitlines()
    gdirty = m.gdirty_pids()[0]
    ours = check_default_format(lines, gdirty)
    # The master's own lines, from gunicorn's logger in the same run, pass
    # the same check: one format on one stream.
    theirs = check_default_format(lines, m.proc.pid)
    assert len(ours) >= 4 and len(theirs) >= 4, m.output()
    texts = [x["msg"] for x in ours]
    assert any(t.startswith("gdirty ") and "starting" in t for t in texts), texts
    assert any(t.startswith("Dirty arbiter listening on") for t in texts), texts
    assert {x["level"] for x in ours} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    # Every line of the run is in gunicorn's format (workers included).
    for line in lines:
        assert LINE.match(line), line


def test_master_mode_follows_the_masters_command_line_errorlog(gdirty_bin, tmp_path):
    """--error-logfile and --log-level given to gunicorn (not in the config)
    reach gdirty too: its lines land in the master's errorlog."""
    log = tmp_path / "master-error.log"
    with socket.socket() as s:  # a free port: nothing at INFO says which
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = Master(sys.executable, "", tmp_path, gdirty_bin,
               args=["--error-logfile", str(log), "--log-level", "warning"], errorlog=log, port=port)
    try:
        m.get_ok("/echo?msg=x", "x")
    finally:
        assert m.stop() == 0
    text = log.read_text()
    assert "[INFO]" not in text, text  # --log-level warning, master and gdirty alike
    assert not any("gdirty" in line for line in m._stdout), m._stdout

    m2dir = tmp_path / "info"
    m2dir.mkdir()
    log2 = m2dir / "error.log"
    m2 = Master(sys.executable, "", m2dir, gdirty_bin, args=["--error-logfile", str(log2)], errorlog=log2)
    try:
        m2.get_ok("/echo?msg=x", "x")
    finally:
        assert m2.stop() == 0
    lines = log2.read_text().splitlines()
    gdirty = int(re.search(r"Spawned gdirty dirty arbiter \(pid: (\d+)\)", "\n".join(lines)).group(1))
    ours = check_default_format(lines, gdirty)
    assert any(x["msg"].startswith("Dirty arbiter listening on") for x in ours), lines
    assert not any("Dirty arbiter listening" in line for line in m2._stdout), m2._stdout


def _gdirty_lines(text, pid):
    return [line for line in text.splitlines() if f"] [{pid}] [" in line]


def test_errorlog_file_and_loglevel(gdirty_start, tmp_path):
    log = tmp_path / "error.log"
    g = gdirty_start(dirty_config([ECHO], workers=1, extra=f"errorlog = {str(log)!r}\n"), workers=1)
    wait_until(lambda: _gdirty_lines(log.read_text(), g.pid), 20, "gdirty's lines in the errorlog")
    assert g.stderr() == ""  # everything went to the errorlog
    mine = check_default_format(log.read_text().splitlines(), g.pid)
    assert any(m["msg"].startswith("Dirty arbiter listening on") for m in mine)

    quiet = gdirty_start(dirty_config([ECHO], workers=1, extra="loglevel = 'warning'\n"), workers=1)
    quiet.stop()
    assert not [line for line in _gdirty_lines(quiet.stderr(), quiet.pid) if "[INFO]" in line], quiet.stderr()

    loud = gdirty_start(dirty_config([ECHO], workers=1), workers=1, args=["--log-level", "debug"])
    assert _gdirty_lines(loud.stderr(), loud.pid)


def test_logconfig_dict_format_level_and_file(gdirty_start, tmp_path):
    log = tmp_path / "custom.log"
    fmt = "%(levelname)-8s|%(name)s|%(process)05d|%(levelno)s|%(message)s|%(asctime)s"
    datefmt = "%d/%b/%Y:%H:%M:%S"
    logconfig = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"custom": {"format": fmt, "datefmt": datefmt},
                       "plain": {"format": "%(asctime)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "custom"},
            "console": {"class": "logging.StreamHandler", "formatter": "plain",
                        "stream": "ext://sys.stderr", "level": "WARNING"},
        },
        "loggers": {"gunicorn.error": {"handlers": ["file", "console"], "level": "INFO",
                                       "propagate": False}},
    }
    g = gdirty_start(dirty_config([ECHO], workers=1, extra=f"logconfig_dict = {logconfig!r}\n"), workers=1)
    wait_until(lambda: "Dirty arbiter listening on" in log.read_text(), 20, "gdirty's line in the logconfig file")
    pattern = re.compile(r"^(?P<level>[A-Z]+) *\|gunicorn\.error\|(?P<pid>\d+)\|(?P<levelno>\d+)\|"
                         r"(?P<msg>.*)\|(?P<ts>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d)$")
    checked = 0
    for line in log.read_text().splitlines():
        m = pattern.match(line)
        if not m or int(m["pid"]) != g.pid:
            continue
        ts = time.mktime(time.strptime(m["ts"], datefmt))
        assert line == gunicorn_line(ts, g.pid, m["level"], m["msg"], fmt, datefmt)
        checked += 1
    assert checked >= 2, log.read_text()
    # The console handler takes WARNING and up: gdirty logged no warning.
    assert not _gdirty_lines(g.stderr(), g.pid)
    assert "Dirty arbiter listening on" not in g.stderr()

    # Python's default date format (no datefmt): "%Y-%m-%d %H:%M:%S,mmm".
    g.stop()
    plain = {**logconfig, "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                                                   "stream": "ext://sys.stderr"}},
             "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False}}}
    p = gdirty_start(dirty_config([ECHO], workers=1, extra=f"logconfig_dict = {plain!r}\n"), workers=1)
    p.stop()
    found = 0
    for line in p.stderr().splitlines():
        m = re.match(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}) (?P<msg>gdirty .*starting.*)$", line)
        if m:
            ts = time.mktime(time.strptime(m["ts"], "%Y-%m-%d %H:%M:%S"))
            assert line == gunicorn_line(ts, p.pid, "INFO", m["msg"], "%(asctime)s %(message)s", None,
                                         msecs=int(m["ms"]))
            found += 1
    assert found == 1, p.stderr()


def test_logconfig_json_and_unsupported_handlers(gdirty_start, tmp_path):
    """logconfig_json goes through the same gunicorn setup; a handler gdirty
    cannot write to (syslog) is named once in a warning."""
    log = tmp_path / "json-config.log"
    conf = tmp_path / "logging.json"
    conf.write_text(json.dumps({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"f": {"format": "<%(levelname)s> %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "f"},
                     "mem": {"class": "logging.handlers.MemoryHandler", "capacity": 10}},
        "loggers": {"gunicorn.error": {"handlers": ["file", "mem"], "level": "INFO", "propagate": False}},
        "root": {"level": "WARNING", "handlers": []},
    }))
    g = gdirty_start(dirty_config([ECHO], workers=1, extra=f"logconfig_json = {str(conf)!r}\n"), workers=1)
    wait_until(lambda: "<INFO> Dirty arbiter listening on" in log.read_text(), 20, "the logconfig_json format")
    text = log.read_text()
    assert "<WARNING> gdirty does not write to these gunicorn.error handlers: MemoryHandler" in text, text
    assert text.count("MemoryHandler") == 1


def test_log_format_json(gdirty_start):
    g = gdirty_start(dirty_config([ECHO], workers=1), workers=1, args=["--log-format", "json"])
    g.stop()
    records = [json.loads(line) for line in g.stderr().splitlines() if line.startswith("{")]
    assert any(r.get("msg", "").startswith("Dirty arbiter listening on") and r.get("level") == "info"
               for r in records), g.stderr()


def test_capture_output_sends_workers_prints_to_the_errorlog(gdirty_start, tmp_path):
    (tmp_path / "printing_app.py").write_text(
        "from gunicorn.dirty import DirtyApp\n"
        "class PrintingApp(DirtyApp):\n"
        "    def init(self):\n"
        "        print('printed-by-the-app', flush=True)\n"
        "    def ping(self):\n"
        "        return 'pong'\n")
    log = tmp_path / "captured.log"
    extra = (f"errorlog = {str(log)!r}\ncapture_output = True\n"
             f"pythonpath = {str(tmp_path)!r}\n")
    g = gdirty_start(dirty_config(["printing_app:PrintingApp"], workers=1, extra=extra), workers=1)
    wait_until(lambda: "printed-by-the-app" in log.read_text(), 20, "the app's print in the errorlog")
    assert "printed-by-the-app" not in g.stderr()
    assert g.stdout().startswith("GUNICORN_DIRTY_SOCKET=")  # still on the real stdout
    assert g.client().execute("printing_app:PrintingApp", "ping") == "pong"


def test_critical_level_silences_gdirtys_info_and_warnings(gdirty_start):
    g = gdirty_start(dirty_config([ECHO], workers=1), workers=1, args=["--log-level", "critical"])
    g.stop()
    assert not _gdirty_lines(g.stderr(), g.pid)  # nothing gdirty logs is CRITICAL
