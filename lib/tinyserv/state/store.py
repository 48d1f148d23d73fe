"""State files: atomic JSON writes, reads with defaults, and file locks."""

import contextlib
import fcntl
import json
import os
import time

from tinyserv.common.errors import TinyservError


def write_atomic(path, data, mode=0o600, durable=True):
    """Write bytes or text to path so readers see the old or the new file, never half.

    durable=False: no fsync, for a file that describes running processes (run/state.json, nginx/routes.json),
    which a power failure ends anyway: a reader that finds it damaged after one starts afresh. At 1,000 apps
    the supervisor's startup wrote each app's state several times, and the fsyncs took seconds."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    # An unguessable name: where another user may write, a file planted under it would refuse our write.
    tmp = os.path.join(os.path.dirname(path) or ".", ".tmp-%d-%s" % (os.getpid(), os.urandom(8).hex()))
    try:
        _write_then_rename(tmp, path, data, mode, durable)
    except OSError as e:
        raise TinyservError("cannot write %s: %s" % (path, e.strerror)) from None


def _write_then_rename(tmp, path, data, mode, durable=True):
    # Created here and never looked up by name again but to rename it: in a directory an app's user may
    # write (root mode), the name can become a link to any file of ours at any moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path, value, mode=0o600, durable=True):
    """Atomically write value as pretty JSON; a file written often that describes running processes
    (durable=False) on one line, by json's C encoder (indented output is Python's, several times slower)."""
    text = json.dumps(value, indent=2 if durable else None, sort_keys=True, separators=None if durable else (",", ":"))
    write_atomic(path, text + "\n", mode, durable)


def remove(path):
    """Delete a file if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_json(path, default=None):
    """Read JSON from path; default when the file does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return default
    except OSError as e:
        raise TinyservError("cannot read %s: %s" % (path, e.strerror)) from None
    if len(data) > MAX_STATE_BYTES:
        raise TinyservError("%s is damaged (larger than %d bytes)" % (path, MAX_STATE_BYTES))
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise TinyservError("%s is damaged (not valid JSON: %s)" % (path, e)) from None


MAX_STATE_BYTES = 64 * 1024 * 1024
MISSING = object()


def load(path, shape, default=MISSING):
    """Read a state file and check that it has shape; the one way state comes off the disk.

    A file that is missing gives default (an error when there is none); one that is not
    JSON or not of the expected shape is an error that names the file and what is wrong.
    """
    value = read_json(path, MISSING)
    if value is MISSING:
        if default is MISSING:
            raise TinyservError("%s is missing" % path)
        return default
    problem = mismatch(value, shape, "")
    if problem:
        raise TinyservError("%s is damaged (%s)" % (path, problem))
    return value


def mismatch(value, shape, where):
    """Why value does not have shape, or None. Shapes: a type or tuple of types (None for null),
    [shape] for a list of them, {key: shape} for an object ('?key' when the key is optional),
    a tuple holding such shapes for "any of them", or a function that returns the problem or None."""
    at = " at %s" % where if where else ""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return "expected an object%s" % at
        for key, sub in shape.items():
            name = key.lstrip("?")
            if name not in value:
                if key.startswith("?"):
                    continue
                return "%s is missing%s" % (name, at)
            problem = mismatch(value[name], sub, (where + "." if where else "") + name)
            if problem:
                return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return "expected a list%s" % at
        for n, item in enumerate(value):
            problem = mismatch(item, shape[0], "%s[%d]" % (where, n))
            if problem:
                return problem
        return None
    if callable(shape) and not isinstance(shape, type):
        problem = shape(value)
        return problem and problem + at
    if isinstance(shape, tuple) and any(isinstance(s, (list, dict)) for s in shape):  # alternatives of any shape
        problems = [mismatch(value, s, where) for s in shape]
        return None if None in problems else problems[0]
    types = tuple(type(None) if t is None else t for t in (shape if isinstance(shape, tuple) else (shape,)))
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        return "expected %s%s, found %s" % (" or ".join(_type_name(t) for t in types), at, _type_name(type(value)))
    return None


def _type_name(t):
    return {str: "text", int: "a whole number", float: "a number", bool: "true/false", dict: "an object",
            list: "a list", type(None): "null"}.get(t, t.__name__)


def mapping_of(shape):
    """A shape: an object whose values all have shape (keys are free)."""
    def check(value):
        if not isinstance(value, dict):
            return "expected an object"
        for key, item in value.items():
            problem = mismatch(item, shape, key)
            if problem:
                return problem
        return None
    return check


@contextlib.contextmanager
def locked(path, timeout=None, waiting=None, cancelled=None):
    """Hold an exclusive flock on path; wait up to timeout seconds (None: forever).

    waiting() is called once if we have to wait; cancelled() is called while we wait
    and may raise to give up (the client that asked went away).
    """
    fd = _open_lock(path)
    try:
        _acquire(fd, timeout, waiting, cancelled)
        yield
    finally:
        os.close(fd)


def lock_held(path):
    """Does some process hold an flock on path right now?

    Asking takes the lock for a moment: a standby that tries it at that very instant
    gives up, and the next check (the supervisor's STANDBY_CHECK s later) starts another.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock_if_free(path):
    """Hold path's lock if nobody holds it; yields whether we do."""
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _open_lock(path):
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise TinyservError("cannot open the lock %s: %s" % (path, e.strerror)) from None


def _acquire(fd, timeout, waiting, cancelled):
    """Take the lock, calling waiting() once if we have to wait for it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if waiting:
            waiting()
    if timeout is None and cancelled is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if cancelled:
                cancelled()
            if deadline is not None and time.monotonic() > deadline:
                raise TinyservError("timed out waiting for a lock on %s" % path_of(fd)) from None
            time.sleep(0.05)


def path_of(fd):
    """Best-effort name of an open file, for messages."""
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return "fd %d" % fd
