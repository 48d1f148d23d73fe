"""The supervisor's output handling: every instance's pipe read in bounded slices, within a budget, into its app's log.

One instance's output is read in slices, within a budget, so it can neither starve the
loop nor burn the CPU. Over budget, its pipe is not read until the window ends: the
pipe fills and the instance's writes wait (backpressure), nothing is dropped.
"""

import os
import selectors

from tinyserv.common.errors import TinyservError
from tinyserv.state.logs import Lines, LogFile


READ_CHUNK = 64 * 1024  # at most this much is read from one instance per turn of the loop
OUTPUT_BUDGET = 1024 * 1024  # what one instance may log per window: its bytes, plus LINE_COST per line
BUDGET_WINDOW = 1.0  # seconds
LINE_COST = 32  # a line costs about its stamp and name more in the log ("2026-11-28T05:00:00Z web.1: ")
NOTICE_EVERY = 60  # at most one throttling notice per instance per minute
PIPE_SIZE = 1024 * 1024  # what an instance can write while no supervisor reads (best effort, see procs)
FLUSH_READS = 2 * PIPE_SIZE // READ_CHUNK  # reads of a dead instance's pipe before the rest is dropped


class Budget:
    """How much output one instance slot may still log in the current window; the clock is passed in."""

    def __init__(self, per_window=OUTPUT_BUDGET, window=BUDGET_WINDOW):
        self.per_window = per_window
        self.window = window
        self.started = None
        self.left = per_window
        self.noticed = None  # when the last throttling notice was logged

    def allowance(self, now):
        """Bytes that may be read now; 0 while over budget, until resumes()."""
        if self.started is None or now >= self.started + self.window:
            self.started, self.left = now, self.per_window
        return max(0, self.left)

    def spend(self, cost):
        """Charge what was just logged."""
        self.left -= cost

    def resumes(self):
        """When the current window ends."""
        return self.started + self.window

    def notice_due(self, now):
        """True at most once per NOTICE_EVERY seconds: time to tell the app log about throttling."""
        if self.noticed is not None and now - self.noticed < NOTICE_EVERY:
            return False
        self.noticed = now
        return True


class Stream:
    """One instance's pipe as the supervisor reads it: whose it is, its unfinished line, its budget."""

    def __init__(self, app, name, budget):
        self.app = app
        self.name = name
        self.lines = Lines()
        self.budget = budget


def read_some(fd, size):
    """Up to size bytes from a non-blocking pipe: b'' at end of file, None when nothing waits."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class Output:
    """The Supervisor's output half: its pipes (streams, paused, budgets, selector) and its apps' logs."""

    def open_pipe(self, app, inst):
        """Start reading the pipe of an instance started by someone else (a boot check, a previous supervisor)."""
        try:
            reader = os.open(inst["fifo"], os.O_RDONLY | os.O_NONBLOCK) if inst.get("fifo") else None
        except OSError:
            reader = None
        if reader is not None:
            inst["reader"] = reader
            self.watch(reader, app, inst["name"])

    def log(self, app):
        """The app's open log file."""
        if app not in self.logs:
            self.logs[app] = LogFile(self.layout.log_file(app), clock=self.sys.clock)
        return self.logs[app]

    def close_log(self, app):
        """Close the app's log file (it is opened again on the next line)."""
        log = self.logs.pop(app, None)
        if log:
            log.close()

    def event(self, app, text):
        """A platform event, in the app's log like Heroku's own lines."""
        self.write_lines(app, "tinyserv", [text])

    def write_lines(self, app, source, texts):
        """Append lines to app's log; a log that cannot be written (disk full, app removed) loses them."""
        if not texts:
            return
        try:
            if os.path.isdir(self.layout.app_dir(app)):
                self.log(app).write_lines(source, texts)
        except (OSError, TinyservError):
            self.close_log(app)

    def watch(self, fd, app, name):
        """Start reading an instance's pipe in the loop."""
        self.streams[fd] = Stream(app, name, self.budgets.setdefault((app, name), Budget()))
        self.selector.register(fd, selectors.EVENT_READ)

    def unwatch(self, fd):
        """Stop reading a pipe and close it."""
        self.streams.pop(fd, None)
        if self.paused.pop(fd, None) is None:
            self.selector.unregister(fd)
        os.close(fd)

    def close_output(self, fd):
        """An instance's pipe reached end of file: its processes are all gone."""
        stream = self.streams.get(fd)
        self.unwatch(fd)
        if stream:
            self.touched.add(stream.app)  # the next tick looks at its instances
        for inst in self.apps.get(stream.app, {}).values() if stream else ():
            if inst.get("reader") == fd:  # an old web waiting under web.1~PID reads under its name too
                del inst["reader"]

    def read_output(self, fd):
        """Log at most READ_CHUNK bytes of an instance's output, within its budget; False at end of file."""
        stream = self.streams[fd]
        now = self.sys.clock()
        allowed = min(READ_CHUNK, stream.budget.allowance(now))
        if allowed > 0:
            chunk = read_some(fd, allowed)
            if chunk == b"":
                self.write_lines(stream.app, stream.name, stream.lines.flush())
                return False
            if chunk:
                self.log_output(stream, chunk)
        if stream.budget.allowance(now) <= 0:
            self.throttle(fd, stream, now)
        return True

    def log_output(self, stream, chunk):
        """Turn bytes into stamped lines in the app log and charge them to the budget."""
        lines = stream.lines.feed(chunk)
        self.write_lines(stream.app, stream.name, lines)
        stream.budget.spend(len(chunk) + LINE_COST * len(lines))

    def throttle(self, fd, stream, now):
        """Over budget: leave the pipe unread until the window ends; say so in the app log now and then."""
        if fd not in self.paused:
            self.selector.unregister(fd)
        self.paused[fd] = stream.budget.resumes()
        if stream.budget.notice_due(now):
            self.event(stream.app, "Error L10 (output rate limit): %s logs more than %d KiB/s; its output is "
                       "read at that rate, so its writes wait" % (stream.name, OUTPUT_BUDGET // 1024))

    def resume_due(self, now):
        """Read again the pipes whose budget window has ended."""
        for fd, until in list(self.paused.items()):
            if now >= until:
                del self.paused[fd]
                self.selector.register(fd, selectors.EVENT_READ)

    def flush_output(self, fd):
        """Before a pipe is closed: log what is left in it within the budget, drop and count the rest."""
        stream = self.streams[fd]
        now = self.sys.clock()
        dropped = 0
        for _ in range(FLUSH_READS):
            chunk = read_some(fd, READ_CHUNK)
            if not chunk:
                break
            if stream.budget.allowance(now) > 0:
                self.log_output(stream, chunk)
            else:
                dropped += len(chunk)
        self.write_lines(stream.app, stream.name, stream.lines.flush())
        if dropped:
            self.event(stream.app, "Error L10 (output buffer overflow): %d bytes of %s's output dropped" % (
                dropped, stream.name))
