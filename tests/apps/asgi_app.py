"""ASGI app (gunicorn's native ``asgi`` worker) calling the dirty pool with
gunicorn's async client: ``await get_dirty_client_async()`` then
``execute_async`` / ``stream_async``."""

import os

from gunicorn.dirty import close_dirty_client_async, get_dirty_client_async

import views_common as vc


async def run_ops(ops):
    client = await get_dirty_client_async()
    outcomes = []
    try:
        for op in ops:
            kind = op["op"]
            if kind == "value":
                try:
                    got = await client.execute_async(op["app"], "echo_value",
                                                     vc.value_to_send(op["name"]))
                    outcomes.append(vc.value_outcome(op["name"], got))
                except Exception as e:
                    outcomes.append({"error": vc.error_info(e)})
            elif kind == "execute":
                app, action, args, kwargs = vc.call_parts(op)
                try:
                    outcomes.append({"result": await client.execute_async(app, action, *args, **kwargs)})
                except Exception as e:
                    outcomes.append({"error": vc.error_info(e)})
            elif kind == "stream":
                app, action, args, kwargs = vc.call_parts(op)
                chunks = []
                error = None
                try:
                    async for chunk in client.stream_async(app, action, *args, **kwargs):
                        chunks.append(chunk)
                except Exception as e:
                    error = vc.error_info(e)
                outcomes.append({"chunks": chunks, "error": error})
            else:
                outcomes.append({"error": {"type": "BadOp", "message": kind}})
    finally:
        # The async client lives in this request's context; close its
        # connection instead of leaving it to the garbage collector.
        await close_dirty_client_async()
    return outcomes


async def _read_body(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        status, body = 200, vc.dump({"ok": True, "pid": os.getpid(), "kind": "asgi"})
    elif path == "/run" and scope["method"] == "POST":
        ops = vc.parse_ops(await _read_body(receive))
        status, body = 200, vc.dump(await run_ops(ops))
    else:
        status, body = 404, b"not found\n"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
