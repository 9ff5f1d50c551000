"""A small TLV codec for the private link, used when the running gunicorn
has none (25.0.x, whose own protocol is JSON). Same wire format and limits
as gunicorn 25.1+'s ``gunicorn.dirty.tlv.TLVEncoder`` (encode and
decode_full), which is used instead whenever it exists.

Type codes: None 0x00, bool 0x01, int64 0x05, float64 0x06, bytes 0x10,
str 0x11, list 0x20, dict 0x21; big-endian, 4-byte lengths and counts.
"""

import struct

from gunicorn.dirty.errors import DirtyProtocolError

MAX_SIZE = 64 * 1024 * 1024   # str / bytes
MAX_ITEMS = 1024 * 1024       # list / dict
MAX_DEPTH = 64                # gdirty's nesting bound

_I = struct.Struct(">I")
_Q = struct.Struct(">q")
_D = struct.Struct(">d")


class TLVEncoder:
    @staticmethod
    def encode(value):
        parts = []
        _encode(value, parts)
        return b"".join(parts)

    @staticmethod
    def decode_full(data):
        value, offset = _decode(memoryview(data), 0, 0)
        if offset != len(data):
            raise DirtyProtocolError(
                f"Trailing data after TLV: {len(data) - offset} bytes")
        return value


def _sized(parts, code, raw, what):
    if len(raw) > MAX_SIZE:
        raise DirtyProtocolError(f"{what} too large: {len(raw)} bytes (max: {MAX_SIZE})")
    parts.append(bytes([code]) + _I.pack(len(raw)))
    parts.append(raw)


def _encode(value, parts):
    if value is None:
        parts.append(b"\x00")
    elif isinstance(value, bool):
        parts.append(b"\x01\x01" if value else b"\x01\x00")
    elif isinstance(value, int):
        parts.append(b"\x05" + _Q.pack(value))
    elif isinstance(value, float):
        parts.append(b"\x06" + _D.pack(value))
    elif isinstance(value, bytes):
        _sized(parts, 0x10, value, "Bytes")
    elif isinstance(value, str):
        _sized(parts, 0x11, value.encode("utf-8"), "String")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise DirtyProtocolError(f"List too large: {len(value)} items (max: {MAX_ITEMS})")
        parts.append(b"\x20" + _I.pack(len(value)))
        for item in value:
            _encode(item, parts)
    elif isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise DirtyProtocolError(f"Dict too large: {len(value)} items (max: {MAX_ITEMS})")
        parts.append(b"\x21" + _I.pack(len(value)))
        for k, v in value.items():
            _encode(k if isinstance(k, str) else str(k), parts)
            _encode(v, parts)
    else:
        raise DirtyProtocolError(
            f"Unsupported type for TLV encoding: {type(value).__name__}")


def _need(data, offset, n):
    if offset + n > len(data):
        raise DirtyProtocolError("Truncated TLV data")


def _decode(data, offset, depth):
    _need(data, offset, 1)
    code = data[offset]
    offset += 1
    if code == 0x00:
        return None, offset
    if code == 0x01:
        _need(data, offset, 1)
        return data[offset] != 0, offset + 1
    if code in (0x05, 0x06):
        _need(data, offset, 8)
        s = _Q if code == 0x05 else _D
        return s.unpack_from(data, offset)[0], offset + 8
    if code in (0x10, 0x11, 0x20, 0x21):
        _need(data, offset, 4)
        n = _I.unpack_from(data, offset)[0]
        offset += 4
        if code in (0x10, 0x11):
            if n > MAX_SIZE:
                raise DirtyProtocolError(f"Value too large: {n} bytes (max: {MAX_SIZE})")
            _need(data, offset, n)
            raw = bytes(data[offset:offset + n])
            return (raw if code == 0x10 else raw.decode("utf-8")), offset + n
        if n > MAX_ITEMS:
            raise DirtyProtocolError(f"Container too large: {n} items (max: {MAX_ITEMS})")
        if depth >= MAX_DEPTH:
            raise DirtyProtocolError("TLV nesting too deep")
        if code == 0x20:
            items = []
            for _ in range(n):
                item, offset = _decode(data, offset, depth + 1)
                items.append(item)
            return items, offset
        result = {}
        for _ in range(n):
            key, offset = _decode(data, offset, depth + 1)
            if not isinstance(key, str):
                raise DirtyProtocolError(
                    f"Dict key must be string, got {type(key).__name__}")
            result[key], offset = _decode(data, offset, depth + 1)
        return result, offset
    raise DirtyProtocolError(f"Unknown TLV type code: 0x{code:02x}")
