"""App logs: one timestamped line per output line, size-capped rotation, tail and follow."""

import os
import select
import sys
import time

from tinyserv.common.names import number
from tinyserv.common.printer import escape
from tinyserv.state.releases import now_iso

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


def max_bytes(environ=os.environ):
    """The rotation size (TINYSERV_LOG_MAX_BYTES, default 5 MiB); two files are kept."""
    return number(environ.get("TINYSERV_LOG_MAX_BYTES"), DEFAULT_MAX_BYTES)


MAX_LINE = 10000  # bytes of one output line kept in the log: Heroku's limit too (it splits longer lines into
# 10,000-byte chunks; we keep the first and drop the rest, so a line that never ends cannot fill the log)
CUT_MARK = " [tinyserv: line cut at %d bytes]"


def format_line(source, text, clock=time.time):
    """'2026-11-28T05:00:00Z web.1: text' plus a newline."""
    return "%s %s: %s\n" % (now_iso(clock), source, text.rstrip("\r\n"))


def utf8_prefix(data, limit):
    """At most limit bytes of data, not ending inside a UTF-8 character."""
    cut = data[:limit]
    start = len(cut)
    while start > 0 and len(cut) - start < 3 and cut[start - 1] & 0xC0 == 0x80:
        start -= 1  # step back over continuation bytes to the character's first byte
    if start > 0 and cut[start - 1] >= 0xC0:
        needed = 2 if cut[start - 1] < 0xE0 else 3 if cut[start - 1] < 0xF0 else 4
        if len(cut) - (start - 1) < needed:
            return cut[:start - 1]
    return cut


class Lines:
    """Turns an instance's output bytes into text lines of at most `limit` bytes.

    An unfinished line waits for its newline, but never grows past the limit: a
    longer one is logged cut, with a mark, and its rest is dropped up to its newline.
    """

    def __init__(self, limit=MAX_LINE):
        self.limit = limit
        self.partial = b""
        self.skipping = False  # inside the dropped rest of a line that was cut

    def feed(self, data):
        """The lines that data finishes (or cuts); keeps the unfinished rest."""
        *whole, rest = data.split(b"\n")
        lines = []
        for piece in whole:
            if self.skipping:
                self.skipping = False
            else:
                lines.append(self.text(self.partial + piece))
                self.partial = b""
        if not self.skipping:
            self.partial += rest
            if len(self.partial) > self.limit:
                lines.append(self.text(self.partial))
                self.partial, self.skipping = b"", True
        return lines

    def flush(self):
        """The unfinished line, as a line of its own (the output ended without a newline)."""
        rest, self.partial, self.skipping = self.partial, b"", False
        return [self.text(rest)] if rest else []

    def text(self, data):
        """One line as text: invalid UTF-8 replaced, cut with a mark past the limit."""
        if len(data) <= self.limit:
            return data.decode("utf-8", "replace")
        return utf8_prefix(data, self.limit).decode("utf-8", "replace") + CUT_MARK % self.limit


class LogFile:
    """An app log the supervisor appends to; rotates to <path>.1 once it reaches its size cap.

    A file passes its cap by one line at most: rotation happens in the middle of a batch.
    """

    def __init__(self, path, limit=None, clock=time.time):
        self.path = path
        self.limit = limit or max_bytes()
        self.clock = clock
        self.file = None

    def write(self, source, text):
        """Append one line from source ('web.1', 'tinyserv')."""
        self.write_lines(source, [text])

    def write_lines(self, source, texts):
        """Append one stamped line per text, in as few writes as the size cap allows."""
        if not texts:
            return
        size = self.open()
        head = "%s %s: " % (now_iso(self.clock), source)
        batch = []
        for text in texts:
            line = (head + text.rstrip("\r\n") + "\n").encode("utf-8", "replace")
            batch.append(line)
            size += len(line)
            if size >= self.limit:
                self.append(batch)
                batch, size = [], 0
                self.rotate()
        if batch:
            self.append(batch)

    def open(self):
        """Open the file at self.path for appending (again, if another writer rotated it); its size."""
        if self.file is not None and self.moved():
            self.close()  # another writer rotated the log: follow it to the new file
        if self.file is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.file = open(self.path, "ab")
        return os.fstat(self.file.fileno()).st_size

    def append(self, lines):
        """Write encoded lines to the end of the file, opening it if a rotation closed it."""
        if self.file is None:
            self.open()
        self.file.write(b"".join(lines))
        self.file.flush()

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
        """Close the file; a write that failed (disk full) may have left data buffered, which is dropped."""
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None

def append(path, source, text):
    """One-shot append from a process other than the supervisor (deploys, config changes)."""
    log = LogFile(path)
    try:
        for line in text.splitlines() or [""]:
            log.write(source, line)
    finally:
        log.close()


def show(layout, app, num, following, ps, raw=False):
    """logs: the last num lines of the app's log (of one process type or instance); then follow it.

    Each line's control characters are escaped (printer.escape), as the app may have written any; raw: not.
    """
    from tinyserv.common.errors import TinyservError
    layout.require(app)
    if num < 0:
        raise TinyservError("-n must be 0 or more, not %d" % num)
    path = layout.log_file(app)
    out = sys.stdout if raw else Escaping(sys.stdout)
    out.writelines(tail(path, num, ps))
    out.flush()
    if following:
        follow(path, ps, out, stdin_closed)


class Escaping:
    """A stream of whole lines whose text is escaped on its way to out (the newline that ends each kept)."""

    def __init__(self, out):
        self.out = out

    def write(self, line):
        text = line[:-1] if line.endswith("\n") else line
        self.out.write(escape(text) + line[len(text):])

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self.out.flush()


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
