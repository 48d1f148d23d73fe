"""The router log: nginx sends a datagram per request to a socket the supervisor reads (router.py binds it)."""

import os
import socket

from tinyserv.frontdoor import nginx

LOG_READS = 256  # router datagrams read per turn of the supervisor's loop


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
        sock.setblocking(False)
        self.socket = sock

    def close_socket(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def read_log(self):
        """The router log entries waiting on the socket (at most LOG_READS): [fields dict]."""
        entries = []
        for _ in range(LOG_READS):
            try:
                data = self.socket.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            fields = nginx.router_fields(data)
            if fields:
                entries.append(fields)
        return entries
