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
# worker -> gdirty: a large answer in pieces. FRAME_BEGIN's payload is the
# answer's type (1 byte) and total payload length (uint32) followed by the
# first piece; FRAME_MORE carries the next pieces until the total is reached.
MSG_FRAME_BEGIN = 0x43
MSG_FRAME_MORE = 0x44
# gdirty -> worker: payload uint64 = answer bytes of this call gdirty has
# written to its client so far (cumulative).
MSG_CREDIT = 0x45
# gdirty -> worker: a large request in pieces as it arrives from the client.
# REQ_BEGIN's payload is the total payload length (uint32) followed by the
# first piece; REQ_MORE carries the next pieces. The call runs once the
# total has arrived; a CANCEL before that drops it.
MSG_REQ_BEGIN = 0x46
MSG_REQ_MORE = 0x47
REQ_TOTAL = struct.Struct(">I")

MAX_MESSAGE_SIZE = 64 * 1024 * 1024

# Answers above this size go out in pieces of this size: gdirty then never
# holds a whole large answer, and other calls' answers interleave with it.
PIECE_SIZE = 64 * 1024
# At most this many answer bytes of one call may be unacknowledged by
# gdirty; a call whose client reads slowly waits here (its thread only).
# Must exceed gdirty's acknowledgement step (256 KiB) plus one piece.
CREDIT_WINDOW = 1024 * 1024
# Every frame (or piece) counts its payload plus this much against the
# window, on both sides: gdirty's memory per queued frame is not just its
# payload, so a stream of tiny chunks is bounded too.
FRAME_COST = 64
BEGIN = struct.Struct(">BI")
CREDIT = struct.Struct(">Q")


class LinkClosed(Exception):
    """gdirty closed the link (or died): the worker must exit."""


class FrameTooLarge(Exception):
    """An answer over the protocol's 64 MiB frame limit. Only its call
    fails (as in gunicorn, whose arbiter refuses the frame); the worker and
    its other calls carry on."""

    def __init__(self, size):
        self.size = size
        super().__init__(f"Message too large: {size} bytes (max: {MAX_MESSAGE_SIZE})")


class Cancelled(Exception):
    """gdirty cancelled the call whose answer was being sent."""


class _Flow:
    """Answer bytes of one call: sent, and acknowledged by gdirty."""
    __slots__ = ("sent", "credited", "cancelled")

    def __init__(self):
        self.sent = 0
        self.credited = 0
        self.cancelled = False


class Link:
    """gdirty's side is a pair of pipes: requests come in on in_fd, answers
    go out on out_fd (blocking descriptors; gdirty's ends are the
    non-blocking ones)."""

    def __init__(self, in_fd, out_fd, mark_fd):
        self.out_fd = out_fd
        # The read mark: 8 bytes shared with gdirty holding the link id of
        # the last request read. gdirty looks at it only if this worker
        # dies, to tell requests it never read (safe to route elsewhere)
        # from ones it may have started. No syscall per request.
        self._mark = mmap.mmap(mark_fd, 8)
        os.close(mark_fd)
        self.rfile = os.fdopen(in_fd, "rb", buffering=256 * 1024)
        self._wlock = threading.Lock()
        self._flows = {}
        self._fcv = threading.Condition()
        self._closed = False

    def read(self):
        """Return (msg_type, link_id, payload bytes)."""
        try:
            return self._read()
        except (LinkClosed, OSError, ValueError):
            self.closed()
            raise

    def _read(self):
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

    # -- per-call answer flow -------------------------------------------------

    def open_call(self, link_id):
        with self._fcv:
            self._flows[link_id] = _Flow()

    def close_call(self, link_id):
        with self._fcv:
            self._flows.pop(link_id, None)

    def credit(self, link_id, payload):
        if len(payload) != CREDIT.size:
            return
        (total,) = CREDIT.unpack(payload)
        with self._fcv:
            flow = self._flows.get(link_id)
            if flow is not None and total > flow.credited:
                flow.credited = total
                self._fcv.notify_all()

    def cancel(self, link_id):
        with self._fcv:
            flow = self._flows.get(link_id)
            if flow is not None:
                flow.cancelled = True
                self._fcv.notify_all()

    def closed(self):
        """The link is gone: no sender may keep waiting for credit."""
        with self._fcv:
            self._closed = True
            self._fcv.notify_all()

    def _reserve(self, flow, cost, piece, wait):
        """Count cost against the call's window, first waiting (if wait)
        until it fits. A piece of a fragmented answer is not sent once the
        call is cancelled (the caller ends the call instead); final frames
        never wait: they must always go out."""
        with self._fcv:
            while True:
                if piece and flow.cancelled:
                    raise Cancelled()
                if self._closed:
                    raise LinkClosed()
                outstanding = flow.sent - flow.credited
                if not wait or outstanding <= 0 or outstanding + cost <= CREDIT_WINDOW:
                    flow.sent += cost
                    return
                if flow.cancelled:
                    raise Cancelled()
                self._fcv.wait()

    # -- writing ---------------------------------------------------------------

    def write(self, mtype, link_id, payload=b""):
        n = len(payload)
        if n > MAX_MESSAGE_SIZE:
            raise FrameTooLarge(n)
        flow = self._flows.get(link_id) if link_id else None
        # Link-level messages (id 0: READY, HEARTBEAT) always go whole.
        if n <= PIECE_SIZE or not link_id:
            if flow is not None:
                self._reserve(flow, n + FRAME_COST, piece=False, wait=mtype == MSG_CHUNK)
            head = HEADER.pack(MAGIC, VERSION, mtype, n, link_id)
            with self._wlock:
                self._send(lambda: self._sendv(head, payload) if n else self._sendv(head))
            return
        view = memoryview(payload)
        for off in range(0, n, PIECE_SIZE):
            piece = view[off:off + PIECE_SIZE]
            if flow is not None:
                self._reserve(flow, len(piece) + FRAME_COST, piece=True, wait=True)
            if off == 0:
                head = HEADER.pack(MAGIC, VERSION, MSG_FRAME_BEGIN,
                                   BEGIN.size + len(piece), link_id)
                head += BEGIN.pack(mtype, n)
            else:
                head = HEADER.pack(MAGIC, VERSION, MSG_FRAME_MORE,
                                   len(piece), link_id)
            with self._wlock:
                self._send(lambda: self._sendv(head, piece))

    @staticmethod
    def _send(send):
        # A failed send is LinkClosed, not OSError, so the worker can tell
        # a dead link from an app that raised OSError (which must reach the
        # caller as DirtyAppError).
        try:
            send()
        except OSError as e:
            raise LinkClosed() from e

    def _sendv(self, *bufs):
        """Send bufs with one writev as a rule (no copy of a payload)."""
        bufs = list(bufs)
        while bufs:
            sent = os.writev(self.out_fd, bufs)
            while bufs and sent >= len(bufs[0]):
                sent -= len(bufs[0])
                bufs.pop(0)
            if bufs and sent:
                bufs[0] = memoryview(bufs[0])[sent:]
