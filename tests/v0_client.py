"""Drive gunicorn 25.0.x's own DirtyClient (run with a 25.0.x interpreter;
used by tests/test_v0_protocol.py).

Usage: python v0_client.py SOCKET < ops.json > outcomes.json

ops: a JSON list of {"op": "execute"|"stream"|"execute_async"|"stream_async",
"app", "action", "args", "kwargs"}. Every op runs on one client (sync ops
on its socket, async ops on its asyncio connection), as an HTTP worker's
thread-local / context-local client would. Outcomes:
{"result": R} / {"chunks": [...], "error": E|None} / {"error": E}, where E
is {"type", "message", "details" (traceback dropped), "has_traceback"}.
"""

import asyncio
import json
import sys

import gunicorn
from gunicorn.dirty.client import DirtyClient


def error_info(e):
    details = dict(getattr(e, "details", None) or {})
    tb = details.pop("traceback", None)
    return {"type": type(e).__name__, "message": getattr(e, "message", str(e)),
            "details": details, "has_traceback": bool(tb)}


async def run_async(client, op):
    args, kwargs = op.get("args") or [], op.get("kwargs") or {}
    if op["op"] == "execute_async":
        try:
            return {"result": await client.execute_async(op["app"], op["action"], *args, **kwargs)}
        except Exception as e:
            return {"error": error_info(e)}
    chunks = []
    try:
        async for chunk in client.stream_async(op["app"], op["action"], *args, **kwargs):
            chunks.append(chunk)
    except Exception as e:
        return {"chunks": chunks, "error": error_info(e)}
    return {"chunks": chunks, "error": None}


def run_sync(client, op):
    args, kwargs = op.get("args") or [], op.get("kwargs") or {}
    if op["op"] == "execute":
        try:
            return {"result": client.execute(op["app"], op["action"], *args, **kwargs)}
        except Exception as e:
            return {"error": error_info(e)}
    chunks = []
    try:
        for chunk in client.stream(op["app"], op["action"], *args, **kwargs):
            chunks.append(chunk)
    except Exception as e:
        return {"chunks": chunks, "error": error_info(e)}
    return {"chunks": chunks, "error": None}


def main():
    assert gunicorn.__version__.startswith("25.0."), gunicorn.__version__
    client = DirtyClient(sys.argv[1], timeout=30.0)
    ops = json.load(sys.stdin)
    loop = asyncio.new_event_loop()
    out = []
    for op in ops:
        if op["op"].endswith("_async"):
            out.append(loop.run_until_complete(run_async(client, op)))
        else:
            out.append(run_sync(client, op))
    loop.run_until_complete(client.close_async())
    client.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
