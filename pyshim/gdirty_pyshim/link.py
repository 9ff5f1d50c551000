"""The private link between gdirty and one worker process.

Frames use gunicorn's 16-byte header (``>2sBBIQ``, magic ``GD``, version 1)
and TLV payloads, so the payloads gunicorn clients send reach the worker
unchanged and the worker's answers go back to them byte for byte. The
request id is gdirty's link id, not the client's. Beyond gunicorn's types
the link carries a few of its own (READY, HEARTBEAT), all >= 0x40 so they
can never be confused with a client message.
"""

import mmap
import os
import struct
import threading

HEADER = struct.Struct(">2sBBIQ")
MARK = struct.Struct("<Q")
MAGIC = b"GD"
VERSION = 1

MSG_REQUEST = 0x01
MSG_RESPONSE = 0x02
MSG_ERROR = 0x03
MSG_CHUNK = 0x04
MSG_END = 0x05
# Link-only messages (worker -> gdirty).
MSG_READY = 0x40       # apps loaded and initialised; payload {"pid", "apps"}
MSG_HEARTBEAT = 0x41   # liveness; empty payload
# gdirty -> worker: the caller of this link id is gone; stop its stream.
MSG_CANCEL = 0x42

MAX_MESSAGE_SIZE = 64 * 1024 * 1024

# Below this size header and payload go out in one send; above it they go
# out separately so a 16 MiB blob is not copied just to prepend 16 bytes.
_COALESCE_LIMIT = 64 * 1024


class LinkClosed(Exception):
    """gdirty closed the link (or died): the worker must exit."""


class FrameTooLarge(Exception):
    """An answer over the protocol's 64 MiB frame limit. Only its call
    fails (as in gunicorn, whose arbiter refuses the frame); the worker and
    its other calls carry on."""

    def __init__(self, size):
        self.size = size
        super().__init__(f"Message too large: {size} bytes (max: {MAX_MESSAGE_SIZE})")


class Link:
    def __init__(self, sock, mark_fd):
        self.sock = sock
        # The read mark: 8 bytes shared with gdirty holding the link id of
        # the last request read. gdirty looks at it only if this worker
        # dies, to tell requests it never read (safe to route elsewhere)
        # from ones it may have started. No syscall per request.
        self._mark = mmap.mmap(mark_fd, 8)
        os.close(mark_fd)
        self.rfile = sock.makefile("rb", buffering=256 * 1024)
        self._wlock = threading.Lock()

    def read(self):
        """Return (msg_type, link_id, payload bytes)."""
        head = self.rfile.read(HEADER.size)
        if len(head) < HEADER.size:
            raise LinkClosed()
        magic, version, mtype, length, link_id = HEADER.unpack(head)
        if magic != MAGIC or version != VERSION or length > MAX_MESSAGE_SIZE:
            raise LinkClosed()
        payload = self.rfile.read(length) if length else b""
        if len(payload) < length:
            raise LinkClosed()
        return mtype, link_id, payload

    def mark_read(self, link_id):
        MARK.pack_into(self._mark, 0, link_id)

    def write(self, mtype, link_id, payload=b""):
        if len(payload) > MAX_MESSAGE_SIZE:
            raise FrameTooLarge(len(payload))
        head = HEADER.pack(MAGIC, VERSION, mtype, len(payload), link_id)
        # A failed send is LinkClosed, not OSError, so the worker can tell
        # a dead link from an app that raised OSError (which must reach the
        # caller as DirtyAppError).
        try:
            with self._wlock:
                if len(payload) <= _COALESCE_LIMIT:
                    self.sock.sendall(head + payload)
                else:
                    self.sock.sendall(head)
                    self.sock.sendall(payload)
        except OSError as e:
            raise LinkClosed() from e
