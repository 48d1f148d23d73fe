"""The router log: nginx sends a datagram per request to a socket the supervisor reads (router.py binds it).

A Unix datagram socket queues only net.unix.max_dgram_qlen datagrams (10 on many kernels): nginx, which
never waits on it, drops every line past that while the supervisor's loop is busy (starting thirty webs,
say) — a thread of the supervisor's own still waits on its GIL. So a small process of its own reads the
socket as lines come (routerpump.py) into a pipe of a megabyte, which the supervisor's loop watches.
"""

import os
import socket
import subprocess
import sys
import time

from tinyserv.frontdoor import nginx, routerpump
from tinyserv.platform import procs

READ_BYTES = 64 * 1024  # router lines read per turn of the supervisor's loop (the rest waits in the pipe)
PIPE_SIZE = 1024 * 1024
STOP_WAIT = 2.0  # seconds the pump gets to hand over its last lines when the supervisor stops
READY_WAIT = 5.0  # seconds a starting pump gets to say it reads the socket (then the supervisor goes on anyway)


class Reader:
    """The socket read by the pump process; fileno() is the pipe it writes into, readable while lines wait."""

    def __init__(self, sock):
        self.sock = sock  # kept: a pump that dies is started again on the same socket
        self.buffer = b""
        self.pump = self.pipe = None
        self.start()

    def start(self):
        read_end, write_end = os.pipe()
        procs.enlarge_pipe(read_end, PIPE_SIZE)
        try:
            self.pump = subprocess.Popen(
                [sys.executable, "-S", routerpump.__file__, str(self.sock.fileno()), str(write_end),
                 str(os.getpid())], pass_fds=(self.sock.fileno(), write_end), stdin=subprocess.DEVNULL,
                start_new_session=True)
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        # Until the pump reads, the socket holds only max_dgram_qlen lines: wait for its first (empty) frame.
        ready = procs.readable([read_end], READY_WAIT) and os.read(read_end, routerpump.FRAME)
        os.set_blocking(read_end, False)
        if self.pipe is not None:
            os.close(self.pipe)
        self.pipe = read_end
        self.buffer = b"" if ready == routerpump.FRAME * b"\0" else (ready or b"")

    def fileno(self):
        return self.pipe

    def read(self, limit=READ_BYTES):
        """The whole datagrams among the next `limit` bytes of the pipe; None once the pump is gone and the pipe
        is empty."""
        try:
            data = os.read(self.pipe, limit)
        except BlockingIOError:
            return []
        if not data:
            return None
        self.buffer += data
        lines = []
        while len(self.buffer) >= routerpump.FRAME:
            size = int.from_bytes(self.buffer[:routerpump.FRAME], "big")
            if len(self.buffer) < routerpump.FRAME + size:
                break
            if size:  # an empty frame is the pump's "ready"
                lines.append(self.buffer[routerpump.FRAME:routerpump.FRAME + size])
            self.buffer = self.buffer[routerpump.FRAME + size:]
        return lines

    def take(self):
        """The datagrams waiting (a turn's worth); a pump that died is started again (the socket kept its lines)."""
        lines = self.read()
        if lines is None:
            self.pump.wait()
            self.start()
            return []
        return lines

    def stop(self):
        """Let the pump hand over what the socket still holds (nginx has stopped: the last lines), then end it.
        Returns those lines."""
        if self.pump.poll() is None:
            self.pump.terminate()
        lines, deadline = [], time.monotonic() + STOP_WAIT
        while True:
            more = self.read(PIPE_SIZE)
            if more is None:  # the pump has exited and everything it wrote is read
                break
            lines += more
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not more:
                procs.readable([self.pipe], left)
        if self.pump.poll() is None:
            self.pump.kill()
        self.pump.wait()
        self.sock.setblocking(False)  # a pump ended before it could read them: the socket still has them
        try:
            while True:
                lines.append(self.sock.recv(65536))
        except OSError:
            pass
        return lines

    def close(self):
        """Stop the pump and close everything; returns the last lines."""
        lines = self.stop()
        os.close(self.pipe)
        self.sock.close()
        return lines


class RouterLog:
    """The Router's log socket (self.socket): bound on a full sync, read in the supervisor's loop."""

    def open_socket(self):
        """Bind the datagram socket nginx logs each request to (again: a previous supervisor's is stale)."""
        if self.socket is not None:
            return
        path = self.prefix.router_socket
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            self.say("socket", "no router logs: cannot remove %s: %s" % (path, e.strerror))
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
            sock.bind(path)
            os.chmod(path, 0o600)
        except OSError as e:
            sock.close()
            self.say("socket", "no router logs: cannot bind %s: %s" % (path, e.strerror))
            return
        self.socket = Reader(sock)

    def close_socket(self):
        """Stop reading; returns the entries the pump still handed over (nginx's last requests)."""
        if self.socket is None:
            return []
        last, self.socket = self.socket.close(), None
        return self.entries(last)

    def read_log(self):
        """The router log entries waiting (a turn's worth): [fields dict]."""
        return self.entries(self.socket.take())

    @staticmethod
    def entries(datagrams):
        return [fields for fields in map(nginx.router_fields, datagrams) if fields]
