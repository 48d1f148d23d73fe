"""`tinyserv local`: run an app's Procfile on this machine, as `heroku local` does.

The server's own parts do the work: procfile.py reads the Procfile, procs.spawn starts each process in
a session of its own (stdin /dev/null, output into a pipe we read), and procs.stop stops them: SIGTERM
to every group, SIGKILL after the grace period, daemons that left their group found by their mark.
Every process type runs one instance (web.1, worker.1 ...); each gets PORT, the first 5000 and each
next one 100 more, as heroku local counts. When one process exits, or on Ctrl-C, all are stopped.
"""

import collections
import os
import selectors
import signal
import sys
import time
import uuid

from tinyserv.common import dotenv, userfiles
from tinyserv.common import processes as procs
from tinyserv.common.errors import TinyservError
from tinyserv.common.printer import color
from tinyserv.common.procfile import parse_procfile, process_types

COLORS = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"]  # as foreman and heroku local cycle them
PORT_STEP = 100
Process = collections.namedtuple("Process", "name command port")


def plan(types, wanted, first_port):
    """The processes to run: wanted types (default: all but release) as TYPE.1, each with its PORT."""
    for name in wanted:
        if name not in types:
            raise TinyservError("the Procfile has no process type %r (it has %s)" % (name, ", ".join(types)))
    chosen = list(wanted) or process_types(types)
    if not chosen:
        raise TinyservError("the Procfile declares no process type to run")
    if first_port < 1 or first_port + PORT_STEP * (len(chosen) - 1) > 65535:
        raise TinyservError("-p must leave room for %d port(s) below 65536, not %d" % (len(chosen), first_port))
    return [Process("%s.1" % t, types[t], first_port + PORT_STEP * i) for i, t in enumerate(chosen)]


class Prefixer:
    """Turns one process's output into whole lines, each behind its coloured `name.N |` prefix."""

    def __init__(self, name, width, code, stream):
        self.prefix = color(name.ljust(width) + " |", code, stream) + " "
        self.partial = b""

    def feed(self, chunk):
        """The complete lines of chunk (and of what came before it), prefixed; keeps an unfinished line."""
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        return "".join(self.prefix + l.decode("utf-8", "replace") + "\n" for l in lines)

    def flush(self):
        """The unfinished last line, if any, once the output has ended."""
        rest, self.partial = self.partial, b""
        return self.prefix + rest.decode("utf-8", "replace") + "\n" if rest else ""


def read_file(path, what, limit):
    """A local file's text (a regular file of at most limit bytes), or the one error that says why not."""
    if not os.path.exists(path):
        raise TinyservError("no %s here (%s)" % (what, os.path.abspath(path)))
    return userfiles.read_text(path, limit)


def environment(env_path, explicit):
    """The environment the processes get: ours, then the .env file's (a missing default .env is fine)."""
    if not explicit and not os.path.exists(env_path):
        return dict(os.environ), 0
    values = dotenv.parse_env(read_file(env_path, "environment file", userfiles.MAX_ENV), env_path)
    return dict(os.environ, **values), len(values)


class Runner:
    """The running processes: their pipes, prefixes and exit codes."""

    def __init__(self, processes, env, out=None):
        self.processes = processes
        self.env = env
        self.out = out or sys.stdout
        self.mark = "local-%s:local:" % uuid.uuid4().hex[:12]  # every process we start carries it
        self.width = max(len(p.name) for p in processes + [Process("system", "", 0)])
        self.selector = selectors.DefaultSelector()
        self.running = {}  # pid -> Process
        self.prefixers = {}  # read fd -> Prefixer
        self.first_exit = None

    def say(self, text):
        """A line of our own, behind the `system |` prefix."""
        self.write(color("system".ljust(self.width) + " |", "1", self.out) + " " + text + "\n")

    def write(self, text):
        """Show text at once."""
        if text:
            try:
                self.out.write(text)
                self.out.flush()
            except BrokenPipeError:
                # The reader went away (a pipe into head): stop the processes, with nothing more to show.
                self.out = open(os.devnull, "w")
                raise

    def start(self):
        """Start every process: `sh -c COMMAND` in its own session, as the server runs a Procfile line."""
        for i, p in enumerate(self.processes):
            read_fd, write_fd = os.pipe()
            env = dict(self.env, PORT=str(p.port), PS=p.name, DYNO=p.name)
            env[procs.MARK] = self.mark + p.name
            try:
                pid = procs.spawn(["sh", "-c", p.command], os.getcwd(), env, write_fd)
            except (OSError, ValueError) as e:
                os.close(read_fd)
                raise TinyservError("cannot start %s: %s" % (p.name, getattr(e, "strerror", None) or e)) from None
            finally:
                os.close(write_fd)
            os.set_blocking(read_fd, False)
            self.prefixers[read_fd] = Prefixer(p.name, self.width, COLORS[i % len(COLORS)], self.out)
            self.selector.register(read_fd, selectors.EVENT_READ)
            self.running[pid] = p
            self.say("%s started with pid %d (PORT=%d): %s" % (p.name, pid, p.port, p.command))

    def pump(self, timeout):
        """Show what the processes printed, waiting up to timeout; note the ones that exited."""
        for key, _ in self.selector.select(timeout):
            self.read(key.fd)
        self.reap()

    def reap(self):
        """Note the processes that exited (and let them go)."""
        for pid, p in list(self.running.items()):
            code = procs.reap(pid)
            if code is not None:
                del self.running[pid]
                self.say("%s exited with code %d" % (p.name, code))
                if self.first_exit is None:
                    self.first_exit = code

    def read(self, fd):
        """Show what one process printed; at the end of its output, stop watching it."""
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.write(self.prefixers[fd].feed(chunk))
        else:
            self.write(self.prefixers[fd].flush())
            self.selector.unregister(fd)
            os.close(fd)
            del self.prefixers[fd]

    def stop(self, grace):
        """SIGTERM every process group (and every process carrying our mark), SIGKILL after grace."""
        if self.running:
            self.say("stopping %s (SIGTERM, then SIGKILL after %g s)" % (", ".join(
                p.name for p in self.running.values()), grace))
        # Our children are reaped as they exit, so that a group of zombies does not look alive where
        # procs cannot read /proc (macOS) and can only ask whether the group exists.
        previous = signal.signal(signal.SIGCHLD, lambda *_: self.reap())
        try:
            procs.stop(list(self.running), grace, "tinyserv local", marks=[self.mark])
        finally:
            signal.signal(signal.SIGCHLD, previous)
        while self.running:
            self.pump(0.05)
        deadline = time.monotonic() + 2  # the last output; a stray that kept a pipe (and no mark) is not waited for
        while self.prefixers and time.monotonic() < deadline:
            self.pump(0.05)

    def run(self, grace):
        """Run until one process exits or we are interrupted; the first exit code (130 after Ctrl-C)."""
        interrupted = False
        previous = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            self.start()
            while self.first_exit is None:
                self.pump(0.2)
        except KeyboardInterrupt:
            interrupted = True
            self.write("\n")
        except BrokenPipeError:
            self.first_exit = 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop(grace)
        return 130 if interrupted else self.first_exit


def raise_interrupt(signum, frame):
    """SIGTERM and SIGHUP stop the processes as Ctrl-C does."""
    raise KeyboardInterrupt


def run(types, procfile="Procfile", env_file=".env", env_given=False, port=5000, grace=5, out=None):
    """`tinyserv local`: run the Procfile here; the exit code."""
    processes = plan(parse_procfile(read_file(procfile, "Procfile", userfiles.MAX_PROCFILE)), types, port)
    env, count = environment(env_file, env_given)
    runner = Runner(processes, env, out)
    if count:
        runner.say("%d variable(s) from %s" % (count, env_file))
    return runner.run(grace)
