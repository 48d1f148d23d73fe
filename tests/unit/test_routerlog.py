"""The router log's pump: every datagram nginx sends reaches the supervisor, even while its loop is busy."""

import os
import select
import signal
import socket

import pytest

from tinyserv.frontdoor.routerlog import Reader


@pytest.fixture
def bound(tmp_path):
    path = str(tmp_path / "router.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.connect(path)
    sender.setblocking(False)  # as nginx: a full queue drops the line
    yield sock, sender
    sender.close()


def read_all(reader, count, timeout=10):
    got = []
    while len(got) < count:
        assert select.select([reader], [], [], timeout)[0], "only %d of %d lines came" % (len(got), count)
        got += reader.take()
    return got


def send(sender, lines):
    """Send like nginx does, but retry a full queue (the pump is slower to start than this loop)."""
    for line in lines:
        while True:
            try:
                sender.send(line)
                break
            except BlockingIOError:
                select.select([], [sender], [], 1)


def test_a_burst_far_past_the_socket_queue_reaches_the_reader_whole_and_in_order(bound):
    sock, sender = bound
    reader = Reader(sock)
    try:
        lines = [b"line %d " % n + b"x" * (n % 300) for n in range(5000)]
        send(sender, lines)  # never read by this process meanwhile: the pump keeps the queue short
        assert read_all(reader, len(lines)) == lines
    finally:
        reader.close()


def test_stop_hands_over_the_lines_still_waiting(bound):
    sock, sender = bound
    reader = Reader(sock)
    send(sender, [b"one", b"two", b"three"])
    assert reader.close() == [b"one", b"two", b"three"]  # nothing was taken before: all of them, in order


def test_a_pump_that_dies_is_started_again_on_the_same_socket(bound):
    sock, sender = bound
    reader = Reader(sock)
    try:
        first = reader.pump.pid
        os.kill(first, signal.SIGKILL)
        reader.pump.wait()
        assert select.select([reader], [], [], 5)[0]  # EOF on the pipe wakes the loop
        assert reader.take() == []
        assert reader.pump.pid != first and reader.pump.poll() is None
        send(sender, [b"after"])
        assert read_all(reader, 1) == [b"after"]
    finally:
        reader.close()
