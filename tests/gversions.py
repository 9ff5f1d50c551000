"""Which gunicorn the suite runs against, and what that release has.

The suite always tests the gunicorn installed in the interpreter running
pytest: that interpreter also runs gdirty's config loader and workers, the
gunicorn masters and the clients (``make matrix`` / ``make test-compat`` run
pytest from each release's ``.venv-gunicorn-X.Y.Z``). The supported releases
and the pinned one are listed in ``gunicorn-versions.txt`` at the root.

Features a release lacks are found by looking at the installed package
itself (its modules and its settings), never by a table of version numbers,
and tests of them are skipped with a reason naming the installed version.
"""

import importlib.util
from pathlib import Path

import pytest

import gunicorn
from gunicorn.config import KNOWN_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = ROOT / "gunicorn-versions.txt"

INSTALLED = gunicorn.__version__


def _read_versions():
    listed, pinned = [], None
    for line in VERSIONS_FILE.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        listed.append(fields[0])
        if fields[1:] == ["pinned"]:
            pinned = fields[0]
    return listed, pinned


LISTED, PINNED = _read_versions()
IS_PINNED = INSTALLED == PINNED


def _has_module(name):
    return importlib.util.find_spec(name) is not None


def _has_setting(name):
    return any(s.name == name for s in KNOWN_SETTINGS)


# Protocol v1 (binary frames + TLV) and with it STASH / STATUS / MANAGE:
# gunicorn 25.1.0 and later. 25.0.x speaks JSON frames (protocol v0).
HAS_V1 = _has_module("gunicorn.dirty.tlv")
HAS_STASH = _has_module("gunicorn.dirty.stash")
# The control socket gunicorn's master opens (gunicornc), 25.1.0 and later.
HAS_CONTROL_SOCKET = _has_setting("control_socket")

NO_V1 = (f"gunicorn {INSTALLED} has no binary protocol v1 (gunicorn.dirty.tlv): "
         "it speaks JSON protocol v0")
NO_STASH = f"gunicorn {INSTALLED} has no stash (gunicorn.dirty.stash)"
requires_v1 = pytest.mark.skipif(not HAS_V1, reason=NO_V1)
requires_stash = pytest.mark.skipif(not HAS_STASH, reason=NO_STASH)
requires_pinned = pytest.mark.skipif(
    not IS_PINNED, reason=f"checks files generated from the pinned gunicorn "
                          f"{PINNED}; installed is {INSTALLED}")


def v0_refuses(value):
    """On a release speaking JSON protocol v0 (25.0.x): why its own client
    refuses to send ``value`` as an argument (the error of that release's
    ``DirtyProtocol.encode``: bytes, tuple dict keys, ... have no JSON
    form), or None when it can be sent. Always None on protocol v1."""
    if HAS_V1:
        return None
    from gunicorn.dirty.errors import DirtyProtocolError
    from gunicorn.dirty.protocol import DirtyProtocol, make_request
    try:
        DirtyProtocol.encode(make_request("0", "app:App", "echo_value", (value,)))
    except DirtyProtocolError as e:
        return (f"gunicorn {INSTALLED}'s JSON client refuses to send it "
                f"(no JSON form): {e}")
    return None


def control_socket_args(path):
    """gunicorn master arguments giving it a control socket of its own at
    ``path`` (in the test's temp dir). Without them every master shares
    ``~/.gunicorn/gunicorn.ctl`` (26.0+) or ``./gunicorn.ctl`` (25.x), so two
    suites on one machine would take each other's socket."""
    if not HAS_CONTROL_SOCKET:
        return []
    return ["--control-socket", str(path)]


def golden_matches(committed, fresh):
    """Whether the golden file ``fresh``, just generated with the installed
    gunicorn, equals the ``committed`` one (generated with the pinned
    release) byte for byte. On another release the recorded
    ``gunicorn_version`` is the one difference allowed: the rest being equal
    proves that release's encoder makes the same bytes."""
    want = Path(committed).read_bytes()
    got = Path(fresh).read_bytes()
    if not IS_PINNED:
        got = got.replace(f'"gunicorn_version": "{INSTALLED}"'.encode(),
                          f'"gunicorn_version": "{PINNED}"'.encode(), 1)
    return want == got
