"""Raw frames in the protocol the installed gunicorn speaks, built and read
with that release's own code: the binary protocol v1 (``BinaryProtocol``,
gunicorn 25.1.0 and later) or the JSON protocol v0 (``DirtyProtocol`` and
its ``make_*`` helpers, gunicorn 25.0.x).

Tests that write frames by hand (pipelining, a held call on its own
connection, a client vanishing mid-stream) use these instead of
``BinaryProtocol`` so the same test runs on every release. Request ids are
given as ints; on v0 they go on the wire as strings, as a 25.0.x client
sends them (``wire_id`` gives the id as the peer will echo it).
"""

import struct

from gversions import HAS_V1

if HAS_V1:
    from gunicorn.dirty.protocol import MSG_TYPE_ERROR, BinaryProtocol as _BP
else:
    from gunicorn.dirty.protocol import (
        DirtyProtocol as _DP, make_chunk_message, make_end_message,
        make_error_response, make_request, make_response,
    )


def wire_id(rid):
    """The request id as it is on the wire (and in decoded messages)."""
    return rid if HAS_V1 else str(rid)


def encode_request(rid, app, action, args=(), kwargs=None):
    if HAS_V1:
        return _BP.encode_request(rid, app, action, tuple(args), kwargs)
    return _DP.encode(make_request(wire_id(rid), app, action, tuple(args), kwargs))


def encode_response(rid, result):
    if HAS_V1:
        return _BP.encode_response(rid, result)
    return _DP.encode(make_response(wire_id(rid), result))


def encode_error(rid, error):
    if HAS_V1:
        return _BP.encode_error(rid, error)
    return _DP.encode(make_error_response(wire_id(rid), error))


def encode_chunk(rid, data):
    if HAS_V1:
        return _BP.encode_chunk(rid, data)
    return _DP.encode(make_chunk_message(wire_id(rid), data))


def encode_end(rid):
    if HAS_V1:
        return _BP.encode_end(rid)
    return _DP.encode(make_end_message(wire_id(rid)))


def read_message(sock):
    """One decoded message: a dict with "type", "id" and the payload."""
    return (_BP if HAS_V1 else _DP).read_message(sock)


def recv_frame(sock):
    """One raw frame (header + payload bytes), for byte comparisons."""
    if HAS_V1:
        header = _BP._recv_exactly(sock, _BP.HEADER_SIZE)
        _type, _rid, length = _BP.decode_header(header)
        return header + (_BP._recv_exactly(sock, length) if length else b"")
    header = _DP._recv_exactly(sock, _DP.HEADER_SIZE)
    (length,) = struct.unpack(_DP.HEADER_FORMAT, header)
    return header + _DP._recv_exactly(sock, length)


def starts_error_frame(data):
    """Whether ``data`` (the first bytes read after a request) begins an
    error frame: v1 has the type byte at offset 3; v0 frames are JSON
    objects whose first key is "type"."""
    if HAS_V1:
        return len(data) > 3 and data[3] == MSG_TYPE_ERROR
    return data[4:].startswith(b'{"type": "error"')
