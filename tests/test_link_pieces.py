"""The worker side of the private link (pyshim's link.py) on real pipes:
large answers go out in pieces under the per-call credit window, a cancel
stops a waiting sender, link-level messages stay whole."""

import fcntl
import os
import select
import struct
import sys
import threading

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "pyshim"))
from gdirty_pyshim import link as L  # noqa: E402

HEADER = struct.Struct(">2sBBIQ")


class Peer:
    """gdirty's end of the link: reads what the worker writes."""

    def __init__(self, fd):
        self.fd = fd

    def recv(self, n, timeout=10.0):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        assert ready, f"nothing from the worker within {timeout} s"
        return os.read(self.fd, n)

    def silent_for(self, seconds):
        """True if the worker writes nothing for that long (a bounded
        look, not a timing claim)."""
        ready, _, _ = select.select([self.fd], [], [], seconds)
        return not ready


@pytest.fixture
def pair():
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    for fd in (to_worker_w, from_worker_r):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 256 * 1024)  # as gdirty sizes them
    mark_fd = os.memfd_create("test-mark")
    os.ftruncate(mark_fd, 8)
    lk = L.Link(to_worker_r, from_worker_w, mark_fd)
    yield lk, Peer(from_worker_r)
    lk.rfile.close()
    for fd in (to_worker_w, from_worker_r, from_worker_w):
        os.close(fd)


def read_frame(peer):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = peer.recv(n - len(buf))
            assert chunk, "link closed"
            buf += chunk
        return buf
    magic, version, mtype, length, lid = HEADER.unpack(exactly(HEADER.size))
    assert (magic, version) == (b"GD", 1)
    return mtype, lid, exactly(length) if length else b""


def test_large_answer_goes_in_pieces_under_the_window(pair):
    lk, peer = pair
    lk.open_call(7)
    payload = bytes(range(256)) * (3 * L.CREDIT_WINDOW // 256)  # 3 windows
    t = threading.Thread(target=lk.write, args=(L.MSG_RESPONSE, 7, payload))
    t.start()
    got = bytearray()
    cost = 0  # what gdirty counts: payload plus FRAME_COST per piece
    mtype, lid, first = read_frame(peer)
    assert (mtype, lid) == (L.MSG_FRAME_BEGIN, 7)
    rtype, total = L.BEGIN.unpack_from(first)
    assert (rtype, total) == (L.MSG_RESPONSE, len(payload))
    got += first[L.BEGIN.size:]
    cost += len(first) - L.BEGIN.size + L.FRAME_COST
    # Without credit the worker stops at the window.
    window_pieces = L.CREDIT_WINDOW // (L.PIECE_SIZE + L.FRAME_COST)
    while len(got) < window_pieces * L.PIECE_SIZE:
        mtype, lid, piece = read_frame(peer)
        assert (mtype, lid) == (L.MSG_FRAME_MORE, 7) and len(piece) <= L.PIECE_SIZE
        got += piece
        cost += len(piece) + L.FRAME_COST
    assert cost <= L.CREDIT_WINDOW
    assert peer.silent_for(0.2), "nothing more until credited"
    assert t.is_alive(), "the sender must be waiting for credit"
    while len(got) < len(payload):
        # What the serve loop does on a CREDIT from gdirty.
        lk.credit(7, struct.pack(">Q", cost))
        limit = cost + L.CREDIT_WINDOW
        while len(got) < len(payload) and cost + L.PIECE_SIZE + L.FRAME_COST <= limit:
            mtype, lid, piece = read_frame(peer)
            assert (mtype, lid) == (L.MSG_FRAME_MORE, 7)
            got += piece
            cost += len(piece) + L.FRAME_COST
    t.join(10)
    assert bytes(got) == payload


def test_tiny_chunks_count_against_the_window_final_frames_never_wait(pair):
    lk, peer = pair
    lk.open_call(5)
    sent = []

    def stream():
        for i in range(L.CREDIT_WINDOW // L.FRAME_COST + 10):
            lk.write(L.MSG_CHUNK, 5, b"")
            sent.append(i)

    t = threading.Thread(target=stream)
    t.start()
    n = L.CREDIT_WINDOW // L.FRAME_COST
    for _ in range(n):
        assert read_frame(peer) == (L.MSG_CHUNK, 5, b"")
    assert peer.silent_for(0.2), "empty chunks still fill the window"
    assert t.is_alive()
    lk.credit(5, struct.pack(">Q", n * L.FRAME_COST))
    t.join(10)
    for _ in range(10):
        assert read_frame(peer) == (L.MSG_CHUNK, 5, b"")
    lk.write(L.MSG_END, 5)  # over the window again? final frames go anyway
    lk.write(L.MSG_ERROR, 5, b"e" * 100)
    assert read_frame(peer) == (L.MSG_END, 5, b"")
    assert read_frame(peer)[0] == L.MSG_ERROR


def test_cancel_stops_a_sender_waiting_for_credit(pair):
    lk, peer = pair
    lk.open_call(9)
    errors = []

    def send():
        try:
            lk.write(L.MSG_RESPONSE, 9, b"x" * (2 * L.CREDIT_WINDOW))
        except L.Cancelled:
            errors.append("cancelled")

    t = threading.Thread(target=send)
    t.start()
    for _ in range(L.CREDIT_WINDOW // (L.PIECE_SIZE + L.FRAME_COST)):
        read_frame(peer)  # the window's worth of pieces; then it waits
    lk.cancel(9)
    t.join(10)
    assert errors == ["cancelled"]


def test_small_answers_and_link_messages_stay_whole(pair):
    lk, peer = pair
    lk.open_call(3)
    lk.write(L.MSG_RESPONSE, 3, b"y" * 100)
    assert read_frame(peer) == (L.MSG_RESPONSE, 3, b"y" * 100)
    big_ready = b"r" * (L.PIECE_SIZE * 2)
    lk.write(L.MSG_READY, 0, big_ready)
    assert read_frame(peer) == (L.MSG_READY, 0, big_ready)
