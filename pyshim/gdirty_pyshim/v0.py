"""Protocol v0: gunicorn 25.0.0–25.0.3's JSON messages.

A 25.0.x client's request reaches the worker as the JSON body it sent
(gdirty validated it and forwards it untouched), and the worker writes each
answer's final JSON body, so gdirty only adds the 4-byte length. The
builders and the encoder reproduce 25.0.3's ``gunicorn/dirty/protocol.py``
(``make_response``, ``make_error_response``, ``make_chunk_message``,
``make_end_message``, ``DirtyProtocol.encode``) without importing it, so
they work whatever gunicorn the worker runs; tests/test_v0_protocol.py
checks them against 25.0.3's own.
"""

import json

from gunicorn.dirty.errors import DirtyError, DirtyProtocolError

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


def is_v0(payload):
    """A v0 request is a JSON object and gdirty cuts leading whitespace, so
    it starts with '{' — never a TLV type byte."""
    return payload[:1] == b"{"


def decode(payload):
    """json.loads as 25.0.3's DirtyProtocol.decode does it."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DirtyProtocolError(f"Failed to decode message: {e}",
                                 raw_data=payload)


def encode(message):
    """DirtyProtocol.encode without the length prefix: a result JSON cannot
    carry (bytes, a set, a tuple key, a cycle) or a body over 64 MiB raises
    DirtyProtocolError with 25.0.3's text, which the worker then reports
    as that release's worker does."""
    try:
        payload = json.dumps(message).encode("utf-8")
        if len(payload) > MAX_MESSAGE_SIZE:
            raise DirtyProtocolError(
                f"Message too large: {len(payload)} bytes "
                f"(max: {MAX_MESSAGE_SIZE})")
        return payload
    except (TypeError, ValueError) as e:
        raise DirtyProtocolError(f"Failed to encode message: {e}")


def make_response(request_id, result):
    return {"type": "response", "id": request_id, "result": result}


def make_error_response(request_id, error):
    if isinstance(error, DirtyError):
        error_dict = error.to_dict()
    elif isinstance(error, dict):
        error_dict = error
    else:
        error_dict = {"error_type": type(error).__name__,
                      "message": str(error), "details": {}}
    return {"type": "error", "id": request_id, "error": error_dict}


def make_chunk_message(request_id, data):
    return {"type": "chunk", "id": request_id, "data": data}


def make_end_message(request_id):
    return {"type": "end", "id": request_id}


class Codec:
    """Answer bodies for one v0 call (the client's id is inside them)."""

    def __init__(self, request_id):
        self.request_id = request_id

    def response(self, result):
        return encode(make_response(self.request_id, result))

    def chunk(self, data):
        return encode(make_chunk_message(self.request_id, data))

    def end(self):
        return encode(make_end_message(self.request_id))

    def error(self, err):
        return encode(make_error_response(self.request_id, err))
