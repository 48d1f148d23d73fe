"""The router log's pump: a process of its own that reads nginx's datagrams as they come and writes them into a pipe.

Run by the supervisor as `python3 -S routerpump.py SOCKET_FD PIPE_FD` (routerlog.py), with nothing else to do: a
Unix datagram socket queues only net.unix.max_dgram_qlen datagrams (10 on many kernels) and nginx drops every line
past that, so the reader must never wait on a busy supervisor's loop (or its GIL). The pipe holds a megabyte of
lines for the supervisor, each framed by its length. Imports nothing of tinyserv's: it starts in milliseconds.
"""

import os
import signal
import socket
import sys

FRAME = 4  # bytes of the big-endian length before each datagram in the pipe
READY = b""  # the empty frame the pump writes first, once it reads the socket


def pump(sock, out, parent):
    """recv -> write until SIGTERM (then what the socket still holds) or until the parent is gone."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    sock.settimeout(0.5)  # to notice a parent that died without telling
    write(out, READY)  # the supervisor starts nginx only now: no line waits on a reader still starting
    while not stopping:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if os.getppid() != parent:
                return
            continue
        except InterruptedError:
            continue
        except OSError:
            return
        write(out, data)
    sock.setblocking(False)
    while True:  # nginx has stopped: its last lines
        try:
            write(out, sock.recv(65536))
        except OSError:
            return


def write(out, data):
    """One framed datagram into the pipe (blocks while the supervisor's megabyte is full)."""
    frame = len(data).to_bytes(FRAME, "big") + data
    while frame:
        try:
            frame = frame[os.write(out, frame):]
        except InterruptedError:
            continue


def main(argv):
    sock = socket.socket(fileno=int(argv[0]))
    try:
        pump(sock, int(argv[1]), int(argv[2]))
    except BrokenPipeError:
        pass  # the supervisor is gone
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
