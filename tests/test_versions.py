"""The gunicorn version matrix itself: gunicorn-versions.txt agrees with
requirements.txt and with the Makefile's compatibility list, and every
gunicorn master the suite starts has a control socket of its own (so two
suites can run on one machine at once)."""

import os
import re
import stat

import pytest

import gversions
from conftest import ROOT, wait_until


def _version_key(v):
    return tuple(int(p) for p in v.split("."))


def _makefile_compat_versions():
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^COMPAT_VERSIONS\s*\??=\s*(.*)$", text, re.M)
    assert m, "the Makefile has no COMPAT_VERSIONS"
    return m.group(1).split()


def test_versions_file_lists_releases_in_order_with_the_pinned_one():
    listed = gversions.LISTED
    assert listed, "gunicorn-versions.txt lists no release"
    assert sorted(listed, key=_version_key) == listed and len(set(listed)) == len(listed)
    assert gversions.PINNED in listed, "gunicorn-versions.txt marks no release 'pinned'"
    req = (ROOT / "requirements.txt").read_text()
    assert f"gunicorn=={gversions.PINNED}" in req.split(), (
        f"requirements.txt must pin the release gunicorn-versions.txt marks pinned "
        f"({gversions.PINNED})")


def test_make_test_covers_oldest_and_newest_of_every_other_minor_line():
    compat = _makefile_compat_versions()
    assert set(compat) <= set(gversions.LISTED), (
        f"COMPAT_VERSIONS names unlisted releases: {set(compat) - set(gversions.LISTED)}")
    assert gversions.PINNED not in compat, "the pinned release already gets the whole suite"
    pinned_line = gversions.PINNED.rsplit(".", 1)[0]
    lines = {}
    for v in gversions.LISTED:
        lines.setdefault(v.rsplit(".", 1)[0], []).append(v)
    for line, releases in lines.items():
        if line == pinned_line:
            continue
        for v in (releases[0], releases[-1]):
            assert v in compat, f"COMPAT_VERSIONS lacks {v} ({line}.x's oldest/newest)"


def _bound_unix_paths(pid):
    """Paths of the Unix sockets that ``pid`` holds open (from /proc)."""
    by_inode = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8:
                by_inode[fields[6]] = fields[7]
    paths = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m and m.group(1) in by_inode:
            paths.add(by_inode[m.group(1)])
    return paths


@pytest.mark.compat
@pytest.mark.skipif(not gversions.HAS_CONTROL_SOCKET,
                    reason=f"gunicorn {gversions.INSTALLED} has no control socket")
def test_each_gunicorn_master_has_its_own_control_socket(main_gdirty, gunicorn_start):
    g = gunicorn_start("sync", main_gdirty)
    own = g.stderr_path.parent / "gunicorn.ctl"
    wait_until(lambda: own.exists() and stat.S_ISSOCK(own.stat().st_mode), 30,
               f"gunicorn's control socket at {own}")
    paths = wait_until(lambda: (p := _bound_unix_paths(g.proc.pid)) and str(own) in p and p,
                       30, f"gunicorn master {g.proc.pid} to hold {own}")
    defaults = {os.path.expanduser("~/.gunicorn/gunicorn.ctl"),
                os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "gunicorn.ctl")}
    assert not paths & defaults, f"gunicorn holds a shared default control socket: {paths}"
    assert not any(p.endswith("/gunicorn.ctl") and p != str(own) for p in paths), paths
