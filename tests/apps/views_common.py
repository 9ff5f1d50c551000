"""Helpers shared by the WSGI and ASGI test apps.

A test POSTs ``/run`` with a JSON list of operations; the app performs them
one after another on the same dirty client (as one HTTP request of a real
app would) and answers a JSON list of outcomes:

* ``{"op": "execute", "app": A, "action": X, "args": [...], "kwargs": {...}}``
  -> ``{"result": R}`` or ``{"error": {...}}``
* ``{"op": "stream", ...same keys...}``
  -> ``{"chunks": [...], "error": None | {...}}`` (chunks received before an
  error are kept)
* ``{"op": "value", "app": A, "name": N}``: sends ``dvalues.CASES[N]`` built
  here, server-side, to the ``echo_value`` action and reports whether the
  answer equals the expected decoded value -> ``{"ok": bool, "got": repr}``
"""

import json

from gunicorn.dirty.errors import DirtyError

import dvalues


def error_info(exc):
    return {
        "type": type(exc).__name__,
        "is_dirty_error": isinstance(exc, DirtyError),
        "message": getattr(exc, "message", str(exc)),
        "str": str(exc),
        "details": getattr(exc, "details", None),
        "app_path": getattr(exc, "app_path", None),
        "action": getattr(exc, "action", None),
        "traceback": getattr(exc, "traceback", None),
    }


def call_parts(op):
    return op["app"], op["action"], op.get("args") or [], op.get("kwargs") or {}


def value_outcome(name, got):
    _sent, expected = dvalues.CASES[name]
    return {"ok": dvalues.strict_equal(got, expected), "got": dvalues.describe(got)}


def value_to_send(name):
    return dvalues.CASES[name][0]


def parse_ops(body):
    ops = json.loads(body or b"[]")
    if not isinstance(ops, list):
        raise ValueError("body must be a JSON list of operations")
    return ops


def dump(obj):
    return json.dumps(obj).encode()
