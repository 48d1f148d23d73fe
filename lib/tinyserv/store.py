"""State files: atomic JSON writes, reads with defaults, and file locks."""

import contextlib
import fcntl
import json
import os
import time

from .errors import TinyservError


def write_atomic(path, data, mode=0o600):
    """Write bytes or text to path so readers see the old or the new file, never half."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = os.path.join(os.path.dirname(path) or ".", ".tmp-%d-%d" % (os.getpid(), time.time_ns()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path, value, mode=0o600):
    """Atomically write value as pretty JSON."""
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n", mode)


def remove(path):
    """Delete a file if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_json(path, default=None):
    """Read JSON from path; default when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except ValueError as e:
        raise TinyservError("%s is not valid JSON (%s)" % (path, e)) from e


@contextlib.contextmanager
def locked(path, timeout=None, waiting=None):
    """Hold an exclusive flock on path; wait up to timeout seconds (None: forever)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, timeout, waiting)
        yield
    finally:
        os.close(fd)


def _acquire(fd, timeout, waiting):
    """Take the lock, calling waiting() once if we have to wait for it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if waiting:
            waiting()
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TinyservError("timed out waiting for a lock on %s" % path_of(fd)) from None
            time.sleep(0.05)


def path_of(fd):
    """Best-effort name of an open file, for messages."""
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return "fd %d" % fd
