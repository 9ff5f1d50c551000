"""WSGI app (gunicorn sync workers) for the stash interop tests.

* ``GET /health`` -> ``{"ok": true, "pid": ...}``
* ``POST /stash`` with a JSON list of operations (see stash_ops.py): runs them
  here, in the HTTP worker -> ``{"pid": ..., "results": [...]}``
* ``POST /dirty`` with the same body: runs them inside a dirty worker
  (``StashApp.run_ops`` through ``get_dirty_client().execute``) -> the dirty
  worker's ``{"pid": ..., "results": [...]}``
* ``GET /dirty-pid`` -> the pid of the dirty worker that answered
* ``GET /init-seen`` -> what ``StashApp.init()`` saw (from one dirty worker)
"""

import json
import os

from gunicorn.dirty import get_dirty_client

import stash_ops

APP = "stash_dapps:StashApp"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    method = environ["REQUEST_METHOD"]
    if path == "/health":
        out = {"ok": True, "pid": os.getpid()}
    elif path in ("/stash", "/dirty") and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        ops = json.loads(environ["wsgi.input"].read(length) or b"[]")
        if path == "/stash":
            out = stash_ops.run_ops(ops)
        else:
            out = get_dirty_client().execute(APP, "run_ops", ops)
    elif path == "/dirty-pid":
        out = {"pid": get_dirty_client().execute(APP, "pid")}
    elif path == "/init-seen":
        out = get_dirty_client().execute(APP, "init_seen")
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
