"""App logs: one timestamped line per output line, size-capped rotation, tail and follow."""

import os
import select
import sys
import time

from .names import number
from .releases import now_iso

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


def max_bytes(environ=os.environ):
    """The rotation size (TINYSERV_LOG_MAX_BYTES, default 5 MiB); two files are kept."""
    return number(environ.get("TINYSERV_LOG_MAX_BYTES"), DEFAULT_MAX_BYTES)


def format_line(source, text, clock=time.time):
    """'2026-11-28T05:00:00Z web.1: text' plus a newline."""
    return "%s %s: %s\n" % (now_iso(clock), source, text.rstrip("\r\n"))


class LogFile:
    """An app log the supervisor appends to; rotates to <path>.1 past a size cap."""

    def __init__(self, path, limit=None, clock=time.time):
        self.path = path
        self.limit = limit or max_bytes()
        self.clock = clock
        self.file = None

    def write(self, source, text):
        """Append one line from source ('web.1', 'tinyserv')."""
        if self.file is not None and self.moved():
            self.close()  # another writer rotated the log: follow it to the new file
        if self.file is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.file = open(self.path, "a", encoding="utf-8", errors="replace")
        self.file.write(format_line(source, text, self.clock))
        self.file.flush()
        if self.file.tell() >= self.limit:
            self.rotate()

    def moved(self):
        """Is our open file no longer the one at self.path?"""
        try:
            return os.stat(self.path).st_ino != os.fstat(self.file.fileno()).st_ino
        except FileNotFoundError:
            return True

    def rotate(self):
        """Keep one old file: app.log -> app.log.1."""
        self.close()
        try:
            os.replace(self.path, self.path + ".1")
        except FileNotFoundError:
            pass

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def append(path, source, text):
    """One-shot append from a process other than the supervisor (deploys, config changes)."""
    log = LogFile(path)
    try:
        for line in text.splitlines() or [""]:
            log.write(source, line)
    finally:
        log.close()


def show(layout, app, num, following, ps):
    """logs: the last num lines of the app's log (of one process type or instance); then follow it."""
    from .errors import TinyservError
    layout.require(app)
    if num < 0:
        raise TinyservError("-n must be 0 or more, not %d" % num)
    path = layout.log_file(app)
    sys.stdout.writelines(tail(path, num, ps))
    sys.stdout.flush()
    if following:
        follow(path, ps, sys.stdout, stdin_closed)


def matches(line, ps):
    """Does a log line come from process type or instance ps ('web' or 'web.1')?"""
    if not ps:
        return True
    parts = line.split(" ", 2)
    if len(parts) < 2:
        return False
    source = parts[1].rstrip(":")
    return source == ps or source.split(".")[0] == ps


def tail(path, count, ps=None):
    """The last count lines of the log (and its rotated part) that match ps."""
    lines = []
    for name in (path + ".1", path):
        try:
            with open(name, encoding="utf-8", errors="replace") as f:
                lines.extend(line for line in f if matches(line, ps))
        except FileNotFoundError:
            pass
    return lines[-count:] if count > 0 else []


def follow(path, ps, out, stop, interval=0.2):
    """Copy lines appended to path to out until stop() is true; survives rotation."""
    handle = _open_at_end(path)
    try:
        _follow(handle, path, ps, out, stop, interval)
    finally:
        if handle is not None:
            handle.close()


def _follow(handle, path, ps, out, stop, interval):
    partial = ""
    while not stop():
        if handle is None:
            handle = _open_at_start(path)
        if handle is not None:
            chunk = handle.read()
            if chunk:
                partial = _emit(partial + chunk, ps, out)
            elif _rotated(handle, path):
                handle.close()
                handle = _open_at_start(path)
                continue
        time.sleep(interval)


def _emit(text, ps, out):
    """Write the whole lines of text that match ps; return the unfinished rest."""
    *whole, rest = text.split("\n")
    for line in whole:
        if matches(line, ps):
            out.write(line + "\n")
    out.flush()
    return rest


def _open_at_end(path):
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    handle.seek(0, os.SEEK_END)
    return handle


def _open_at_start(path):
    try:
        return open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _rotated(handle, path):
    """Has path been replaced by a new file since handle was opened?"""
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def stdin_closed():
    """True once our stdin reaches end of file: the client went away (ssh closed)."""
    if sys.stdin is None or sys.stdin.isatty():
        return False
    try:
        ready, _, _ = select.select([sys.stdin], [], [], 0)
    except (ValueError, OSError):
        return True
    return bool(ready) and not os.read(sys.stdin.fileno(), 4096)
