"""The standby's watch over the active supervisor: a supervisor that stops answering is replaced.

The standby waits on the supervisor's lock, which frees the moment the supervisor dies. A supervisor
that is alive but answers nothing (frozen with SIGSTOP, stuck) keeps its lock, and with it every app
unsupervised; so while it waits, the standby pings it every PING_EVERY s, and once it has been silent
for TAKEOVER_AFTER s (longer than any client waits for an answer) kills it and takes over.

The standby stays small: of tinyserv's it imports only privileged.py's line reader (the standby loads that
module anyway), and little of Python's.
"""

import os
import signal
import socket
import time

from tinyserv.platform.privileged import read_line

PING_EVERY = 3  # seconds between the standby's pings of the active supervisor
PING_TIMEOUT = 3  # seconds a ping waits for its answer
TAKEOVER_AFTER = 15  # seconds of silence after which the standby kills the supervisor and takes over


class Silence:
    """How long the active supervisor has not answered, and whether that is long enough to replace it."""

    def __init__(self, after=TAKEOVER_AFTER):
        self.after = after
        self.since = None  # when the first unanswered ping of the current silence was sent

    def heard(self, answered, now):
        """Record one ping sent at now; True once the supervisor has been silent for `after` s."""
        if answered:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.after


def answers(sock_path, timeout=PING_TIMEOUT):
    """Does the supervisor on sock_path answer a ping within timeout?"""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(sock_path)
            conn.sendall(b'{"cmd": "ping"}\n')
            reply = read_line(conn)
    except OSError:
        return False
    return '"ok": true' in reply


def lock_holders(path):
    """Pids holding an flock on path, from /proc/locks (without touching the lock, unlike store.lock_held)."""
    try:
        info = os.stat(path)
        with open("/proc/locks") as f:
            rows = f.read().splitlines()
    except OSError:
        return []
    wanted = "%02x:%02x:%d" % (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    holders = []
    for row in rows:
        fields = row.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:  # "->" rows are waiters
            holders.append(int(fields[4]))
    return holders


def process_state(pid):
    """The state letter of pid in /proc (T: stopped, as by SIGSTOP), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()[0]


def kill_holders(lock_path, note):
    """SIGKILL whoever holds the supervisor's lock (never this process): it has been silent too long."""
    for pid in lock_holders(lock_path):
        if pid != os.getpid():
            note("the supervisor (pid %d) has not answered for %d s: the standby takes over" % (pid, TAKEOVER_AFTER))
            try:
                os.kill(pid, signal.SIGKILL)  # a stopped process dies of it too, and its lock frees
            except (ProcessLookupError, PermissionError):
                pass


def watch(sock_path, lock_path, done, note, ping=answers, kill=kill_holders, clock=time.monotonic):
    """Until done (a threading.Event) is set: ping the supervisor, and kill it once it is silent too long."""
    silence = Silence()
    while not done.wait(PING_EVERY):
        if silence.heard(ping(sock_path), clock()) and not done.is_set():
            kill(lock_path, note)
            silence = Silence()
