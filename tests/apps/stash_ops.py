"""Stash operations run by the stash interop tests, from an HTTP view
(stash_wsgi.py) or from inside a dirty app (stash_dapps.py): the same code,
plain ``gunicorn.dirty.stash`` calls.

An operation is ``[fn, args, kwargs]`` where ``args`` / ``kwargs`` are Python
literals as strings (so bytes, tuples, non-string keys survive JSON and TLV),
``fn`` is a module-level ``stash`` function (``put``, ``get``, ...), a
dict-like table operation (``table.getitem``, ``table.len``, ...) whose first
argument is the table name, or ``sleep`` (keeps this worker busy, so a
concurrent request must be served by another one). Each outcome is ``{"ok": repr(result)}`` or
``{"error": {...}}`` describing the exception the caller saw.
"""

import ast
import os
import time

from gunicorn.dirty import stash
from gunicorn.dirty.stash import StashError


def _table_op(fn, name, *args):
    t = stash.table(name)
    if fn == "getitem":
        return t[args[0]]
    if fn == "setitem":
        t[args[0]] = args[1]
        return None
    if fn == "delitem":
        del t[args[0]]
        return None
    if fn == "contains":
        return args[0] in t
    if fn == "len":
        return len(t)
    if fn == "iter":
        return list(t)
    if fn == "items":
        return list(t.items())
    if fn == "values":
        return list(t.values())
    if fn == "get":
        return t.get(*args)
    if fn == "keys":
        return t.keys(*args)
    if fn == "clear":
        return t.clear()
    if fn == "name":
        return t.name
    raise ValueError(f"unknown table operation {fn!r}")


def error_info(exc):
    return {
        "type": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "is_stash_error": isinstance(exc, StashError),
        "str": str(exc),
        "table_name": repr(getattr(exc, "table_name", None)),
        "key": repr(getattr(exc, "key", None)),
        "args": repr(exc.args),
    }


def run_ops(ops):
    out = []
    for op in ops:
        fn = op[0]
        args = ast.literal_eval(op[1]) if len(op) > 1 and op[1] else ()
        kwargs = ast.literal_eval(op[2]) if len(op) > 2 and op[2] else {}
        try:
            if fn == "sleep":
                result = time.sleep(*args)
            elif fn.startswith("table."):
                result = _table_op(fn[len("table."):], *args, **kwargs)
            else:
                result = getattr(stash, fn)(*args, **kwargs)
            out.append({"ok": repr(result)})
        except Exception as e:  # reported to the test, which asserts on it
            out.append({"error": error_info(e)})
    return {"pid": os.getpid(), "results": out}
