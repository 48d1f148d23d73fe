"""The boot check: does a release's web start and keep listening, before anything is switched?

A deploy, a config change and a rollback each start web on a trial port first, with the
environment it will run with. Only a web that accepts connections and is still running
SETTLE seconds later lets the change go ahead; otherwise the change is refused with the
last lines web printed, and the running release is never touched.
"""

import collections
import socket
import time

from . import appenv, procs

SETTLE = 0.3  # web must keep running this long after it first accepts a connection
SHOWN_LINES = 15

Up = collections.namedtuple("Up", "port")
Crashed = collections.namedtuple("Crashed", "exit_code lines")
TimedOut = collections.namedtuple("TimedOut", "seconds lines")


def free_port():
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(layout, app, build_dir, meta, config, version, timeout, cancelled=lambda: None):
    """Start web on a trial port, wait until it listens and stays up, stop it: Up, Crashed or TimedOut.

    cancelled() may raise to abandon the check (the push's client went away); web is
    stopped, with every process it started, whatever happens.
    """
    port = free_port()
    mark = layout.mark(app, "trial.%d" % time.time_ns())
    env = appenv.process_env(build_dir, meta, config, app, "web.1", port, version, mark, layout.ensure_data_dir(app))
    import tempfile  # here: `tinyserv-remote ps` imports this module and starts faster without it
    with tempfile.TemporaryFile() as out:
        pid = procs.spawn(["/bin/sh", "-c", meta["procfile"]["web"]], build_dir, env, out.fileno())
        try:
            result = wait_listening(pid, port, timeout, cancelled)
        finally:
            procs.stop([pid], grace=5, what="stopping the trial web", marks=[mark])
            procs.reap(pid)
        if isinstance(result, Up):
            return result
        out.seek(0)
        lines = list(collections.deque(out.read().decode("utf-8", "replace").splitlines(), SHOWN_LINES))
        return result._replace(lines=lines)


def wait_listening(pid, port, timeout, cancelled):
    """Up once port accepts connections and web still runs SETTLE s later; else why not."""
    from .supervisor import listening
    deadline = time.monotonic() + timeout
    listening_at = None
    while True:
        cancelled()
        code = procs.reap(pid)
        if code is not None:
            return Crashed(code, [])
        if listening_at is None and listening(port, pid):
            listening_at = time.monotonic()
        if listening_at is not None and time.monotonic() - listening_at >= SETTLE:
            return Up(port)
        if listening_at is None and time.monotonic() > deadline:
            return TimedOut(timeout, [])
        time.sleep(0.05)


def describe(result):
    """Why a boot check failed, in words."""
    if isinstance(result, Crashed):
        return "web exited with %d at boot" % result.exit_code
    return "web did not listen on $PORT within %d s" % result.seconds
