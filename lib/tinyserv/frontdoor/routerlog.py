"""The router log: nginx sends a datagram per request to a socket the supervisor reads (router.py binds it).

A Unix datagram socket queues only net.unix.max_dgram_qlen datagrams (10 on many kernels): nginx, which
never waits on it, drops every line past that while the supervisor's loop is busy (starting thirty webs,
say). So a thread of the supervisor's reads the socket as lines come, into memory, and wakes the loop
through a pipe (self.socket is that pipe's reading end, as the loop watches it).
"""

import collections
import os
import socket
import threading

from tinyserv.frontdoor import nginx

LOG_READS = 256  # router datagrams read per turn of the supervisor's loop
KEPT = 100000  # datagrams kept in memory for the loop at most (the oldest go first)


class Reader:
    """The socket read by a thread into a deque; fileno() is a pipe that is readable while lines wait."""

    def __init__(self, sock):
        self.sock = sock
        self.lines = collections.deque(maxlen=KEPT)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.stopped = False
        self.sock.settimeout(0.5)  # to see `stopped` now and then
        self.thread = threading.Thread(target=self.run, name="router-log", daemon=True)
        self.thread.start()

    def fileno(self):
        return self.wake_r

    def run(self):
        while not self.stopped:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.lines.append(data)
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass  # the pipe is full: the loop is woken already

    def take(self, count):
        """Up to count datagrams, oldest first (the wake pipe emptied first, so no line is left unsignalled)."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except OSError:
            pass
        taken = []
        while self.lines and len(taken) < count:
            taken.append(self.lines.popleft())
        if self.lines:
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass
        return taken

    def stop(self):
        """Stop the thread and take what the socket still holds (nginx has stopped: the last lines)."""
        self.stopped = True
        self.thread.join(2)
        self.sock.setblocking(False)
        try:
            while True:
                self.lines.append(self.sock.recv(65536))
        except OSError:
            pass

    def close(self):
        if not self.stopped:
            self.stop()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


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
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def read_log(self):
        """The router log entries waiting on the socket (at most LOG_READS): [fields dict]."""
        entries = []
        for data in self.socket.take(LOG_READS):
            fields = nginx.router_fields(data)
            if fields:
                entries.append(fields)
        return entries
