"""WSGI app (gunicorn sync / gthread workers) calling the dirty pool with
gunicorn's sync client: ``get_dirty_client().execute`` / ``.stream``."""

import os

from gunicorn.dirty import get_dirty_client

import views_common as vc


def run_ops(ops):
    client = get_dirty_client()
    outcomes = []
    for op in ops:
        kind = op["op"]
        if kind == "value":
            try:
                got = client.execute(op["app"], "echo_value", vc.value_to_send(op["name"]))
                outcomes.append(vc.value_outcome(op["name"], got))
            except Exception as e:
                outcomes.append({"error": vc.error_info(e)})
        elif kind == "execute":
            app, action, args, kwargs = vc.call_parts(op)
            try:
                outcomes.append({"result": client.execute(app, action, *args, **kwargs)})
            except Exception as e:
                outcomes.append({"error": vc.error_info(e)})
        elif kind == "stream":
            app, action, args, kwargs = vc.call_parts(op)
            chunks = []
            error = None
            try:
                for chunk in client.stream(app, action, *args, **kwargs):
                    chunks.append(chunk)
            except Exception as e:
                error = vc.error_info(e)
            outcomes.append({"chunks": chunks, "error": error})
        else:
            outcomes.append({"error": {"type": "BadOp", "message": kind}})
    return outcomes


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body = vc.dump({"ok": True, "pid": os.getpid(), "kind": "wsgi"})
    elif path == "/run" and environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = vc.dump(run_ops(vc.parse_ops(environ["wsgi.input"].read(length))))
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
