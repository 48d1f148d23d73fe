"""The port an app (or a Redis add-on) gets: the lowest one that nothing holds and nothing listens on."""

import contextlib
import errno
import socket

from tinyserv.state import addonstate, releases
from tinyserv.platform import procs
from tinyserv.common.errors import TinyservError


def free(port):
    """Is nothing listening on port, on any IPv4 or IPv6 address (a listener on ::1 only counts too)?"""
    if procs.listening_sockets(port):
        return False
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                if e.errno != errno.EADDRNOTAVAIL:  # no IPv6 on this machine
                    raise
    return True


def allocate(layout, first):
    """The lowest port >= first that no app holds and nothing listens on."""
    held = addonstate.held_ports(layout)  # a Redis add-on's port is held while its server is stopped, too
    for app in layout.apps():
        with contextlib.suppress(TinyservError):  # a damaged app's port stays unknown; `apps` reports it
            held.add(releases.port(layout, app))
    for port in range(first, 65536):
        if port not in held and free(port):
            return port
    raise TinyservError("no free port at or above %d" % first)
