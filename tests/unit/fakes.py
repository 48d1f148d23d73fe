"""A fake of the supervisor's System: the world it acts on (processes, signals, ports, a clock) as plain data."""

import os
import signal


class FakeSystem:
    """The world the supervisor acts on, as plain data a test reads and changes.

    A process group is just its leader's pid; SIGKILL ends it, SIGTERM too unless
    the test says the processes ignore it. Every spawned process carries its mark;
    a test adds daemons that left the group with daemon().
    """

    def __init__(self, now=1000.0):
        self.now = now
        self.rss = {}  # pgid -> resident bytes, what group_rss answers
        self.next_pid = 100
        self.spawned = []  # (argv, cwd, env)
        self.signals = []  # (pgid, signal)
        self.pid_signals = []  # (pid, signal) sent to single processes
        self.running = {}  # pid -> starttime
        self.marks = {}  # pid -> TINYSERV_INSTANCE
        self.exit_codes = {}  # pid -> exit code, until reaped
        self.listening = set()  # ports that accept connections
        self.ignore_sigterm = False
        self.output = b""  # what each spawned process writes before spawn returns
        self.spawn_error = None  # an exception spawn raises instead of starting anything
        self.scans = 0  # how often /proc was scanned for marks
        self.owners = {}  # pid -> uid it runs as (root mode's adoption checks it), else this test's own

    def clock(self):
        return self.now

    def spawn(self, argv, cwd, env, out_fd, user=None):
        if self.spawn_error:
            raise self.spawn_error
        pid = self.next_pid
        self.next_pid += 1
        if self.output:
            os.write(out_fd, self.output)
        self.spawned.append((argv, cwd, env))
        self.running[pid] = pid * 10
        self.marks[pid] = env["TINYSERV_INSTANCE"]
        return pid

    def daemon(self, mark):
        """A process with mark that left its instance's group (setsid); returns its pid."""
        pid = self.next_pid
        self.next_pid += 1
        self.running[pid] = pid * 10
        self.marks[pid] = mark
        return pid

    def exit(self, pid, code):
        """The process ends on its own."""
        del self.running[pid]
        self.exit_codes[pid] = code

    def signal_group(self, pgid, sig):
        self.signals.append((pgid, sig))
        if pgid in self.running and (sig == signal.SIGKILL or not self.ignore_sigterm):
            self.exit(pgid, 128 + sig)

    def signal_pids(self, pids, sig):
        for pid, started in pids:
            if self.alive(pid, started):
                self.pid_signals.append((pid, sig))
                if sig == signal.SIGKILL or not self.ignore_sigterm:
                    self.exit(pid, 128 + sig)

    def marked_by(self, prefix):
        self.scans += 1
        found = {}
        for pid, mark in self.marks.items():
            if pid in self.running and mark.startswith(prefix):
                found.setdefault(mark, []).append((pid, self.running[pid]))
        return found

    def reap(self, pid):
        return self.exit_codes.pop(pid, None)

    def leader_uid(self, pid):
        return self.owners.get(pid, os.getuid()) if pid in self.running else None

    def alive(self, pid, starttime=None):
        return pid in self.running and starttime in (None, self.running[pid])

    def exit_fd(self, pid):
        return None  # as on a kernel without pidfd_open: adopted instances are looked at every ADOPTED_CHECK s

    def starttime(self, pid):
        return self.running.get(pid)

    def children(self, pid):
        return None  # as on a kernel that does not list them: callers fall back on group_members

    def listening_table(self, ports):
        return None  # as on a kernel that refuses sock_diag: accepts() is asked for each web

    def group_members(self, pgid):
        return [pgid] if pgid in self.running else []

    def accepts(self, port, pgid):
        return port in self.listening

    def healthy(self, port, path):
        return True

    def answering(self, ports):
        """The ones of ports a connection is answered on: those that listen."""
        return {port for port in ports if port in self.listening}

    def sent(self, sig):
        return [pgid for pgid, s in self.signals if s == sig]

    def group_rss(self, pgid):
        return self.rss.get(pgid, 0) if pgid in self.running else 0

    def groups_rss(self, pgids):
        return {pgid: self.group_rss(pgid) for pgid in pgids}
