"""A WSGI app whose views call the dirty pool through gunicorn's client."""

import json
from urllib.parse import parse_qs

from gunicorn.dirty import get_dirty_client
from gunicorn.dirty.errors import DirtyError


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    client = get_dirty_client()
    try:
        if path == "/echo":
            body = client.execute("dirty_app:EchoApp", "echo", query.get("msg", "hello"))
        elif path == "/whoami":
            body = client.execute("dirty_app:EchoApp", "whoami")
        elif path == "/reverse":
            body = client.execute("dirty_app:ReverseApp", "reverse", query.get("text", "gdirty"))
        elif path == "/count":
            body = list(client.stream("dirty_app:EchoApp", "count", int(query.get("n", "5"))))
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"try /echo?msg=hi, /whoami, /reverse?text=abc, /count?n=5\n"]
    except DirtyError as e:
        start_response("502 Bad Gateway", [("Content-Type", "application/json")])
        return [json.dumps({"error": type(e).__name__, "message": e.message}).encode() + b"\n"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode() + b"\n"]
