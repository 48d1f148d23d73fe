"""Talking to the supervisor: start it when it is not running, send it requests over its control socket."""

import json
import os
import socket
import subprocess
import sys
import time

from tinyserv.state import store
from tinyserv.platform import procs, standby
from tinyserv.common.errors import TinyservError
from tinyserv.platform.privileged import read_line
from tinyserv.platform.users import as_root

from tinyserv import REMOTE_SCRIPT  # noqa: E402

FIRST_SYNC_TIMEOUT = 300  # seconds a supervisor we started, still running, may take before it first answers


def request(layout, message, timeout=10):
    """Send one JSON request to the supervisor and return its JSON reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(layout.supervisor_sock)
        conn.sendall((json.dumps(message) + "\n").encode())
        line = read_line(conn)
    if not line:
        raise ConnectionResetError("the supervisor closed the connection without answering")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise TinyservError("the supervisor refused %s: %s" % (message.get("cmd"), reply.get("error")))
    return reply


def running(layout):
    """The supervisor's pid if it answers, else None."""
    try:
        return request(layout, {"cmd": "ping"}, timeout=2)["pid"]
    except (OSError, ValueError):
        return None


def ensure_supervisor(layout, timeout=10):
    """Make sure the supervisor runs (starting it detached if needed); return its pid."""
    pid = running(layout)
    if pid:
        return pid
    if store.lock_held(layout.supervisor_lock):  # one runs, but did not answer: starting, busy, or frozen
        pid = wait_answering(layout, timeout)
        if pid:
            return pid
    if os.path.exists(layout.shutdown_marker):
        raise TinyservError("tinyserv was shut down on this server; run 'tinyserv-remote startup' there first")
    from tinyserv.platform.privileged import deploy_user
    if deploy_user(layout) is not None:
        raise TinyservError("the supervisor is not running: in root mode it runs as root; start it as root "
                            "(systemctl start tinyserv)")
    layout.ensure()
    # Not an app's mark either: the supervisor must not look like one of the processes it stops.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_", procs.MARK))}
    with open(layout.supervisor_log, "ab") as log:
        # Never the caller's stdout/stderr: a git hook's output pipe held by a
        # long-lived process would keep `git push` waiting.
        # -S: no site-packages (tinyserv needs only the standard library): a smaller, faster supervisor.
        proc = subprocess.Popen([sys.executable, "-S", REMOTE_SCRIPT, "supervise", "--if-none"], cwd=layout.root,
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    started = time.monotonic()
    while True:
        pid = running(layout)
        if pid:
            return pid
        # It answers once its first sync has started every app: seconds per hundred apps on a busy machine.
        waited = time.monotonic() - started
        if waited > timeout and (proc.poll() is not None or waited > FIRST_SYNC_TIMEOUT):
            break
        time.sleep(0.05)
    raise TinyservError("the supervisor did not start; see %s" % layout.supervisor_log)


def wait_answering(layout, timeout):
    """The pid of the supervisor that holds the lock, once it answers; None if the lock frees meanwhile.

    One that starts or is busy gets until timeout; one that is stopped (SIGSTOP) will not answer before
    SIGCONT, so that is said at once. Either way its standby kills it once it has been silent too long.
    """
    deadline = time.monotonic() + timeout
    while store.lock_held(layout.supervisor_lock):
        holders = standby.lock_holders(layout.supervisor_lock)
        stopped = any(standby.process_state(pid) in ("T", "t") for pid in holders)
        pid = None if stopped else running(layout)
        if pid:
            return pid
        if stopped or time.monotonic() > deadline:
            raise TinyservError("the supervisor (pid %s) is not answering%s; its standby takes over once it has "
                                "been silent for %d s (see %s)" % (
                                    ", ".join(map(str, holders)) or "unknown",
                                    ": it is stopped (SIGSTOP?)" if stopped else "", standby.TAKEOVER_AFTER,
                                    layout.supervisor_log))
        time.sleep(0.05)
    return None


def sync(layout, app=None, candidate=None):
    """Tell the supervisor that what should run for app (or every app) changed.

    candidate: a web a boot check kept running (boot.Up.instance), for the supervisor to take over.
    """
    message = {"cmd": "sync", "app": app, **({"candidate": candidate} if candidate else {})}
    pid = ensure_supervisor(layout)
    try:
        request(layout, message)
    except OSError as e:  # it died before it answered (killed, say): a sync is safe to ask again, of its standby
        if ensure_supervisor(layout) == pid:
            raise TinyservError("the supervisor (pid %d) did not answer: %s" % (pid, e.strerror or e)) from None
        request(layout, message)


def stop_supervisor(layout, timeout=60):
    """Ask the supervisor to stop every app and exit; wait until it and its standby have gone."""
    pid = running(layout)
    if not pid:
        return False
    request(layout, {"cmd": "shutdown"})
    deadline = time.monotonic() + timeout
    # The standby takes the supervisor's lock when it exits, sees run/shut-down and leaves too.
    while time.monotonic() < deadline:
        with as_root():  # root mode: the locks are root's
            held = store.lock_held(layout.supervisor_lock) or store.lock_held(layout.standby_lock)
        if not procs.alive(pid) and not held:
            return True
        time.sleep(0.05)
    raise TinyservError("the supervisor (pid %d) did not stop within %d s" % (pid, timeout))
