"""Processes on Linux: start one in its own session, inspect it via /proc, stop its group."""

import os
import signal
import time


def proc_stat(pid):
    """(state letter, process group, start time in ticks) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def alive(pid, starttime=None):
    """True if pid exists, is not a zombie and (if given) started at starttime.

    kill(pid, 0) is not enough: zombies linger until reaped, and pids get reused.
    """
    stat = proc_stat(pid)
    if stat is None or stat[0] in "ZX":
        return False
    return starttime is None or stat[2] == starttime


def starttime(pid):
    """Start time of pid in clock ticks since boot (None if gone)."""
    stat = proc_stat(pid)
    return stat[2] if stat else None


def group_members(pgid):
    """Live (non-zombie) pids in process group pgid."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat and stat[1] == pgid and stat[0] not in "ZX":
                members.append(int(name))
    return members


def signal_group(pgid, sig):
    """Send sig to a whole process group; a group that is gone is fine."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_groups(pgids, grace, term=True):
    """SIGTERM the groups (unless term is False: already asked), wait for them to end,
    SIGKILL whatever is left after grace seconds; give up 5 s after that."""
    if term:
        for pgid in pgids:
            signal_group(pgid, signal.SIGTERM)
    deadline, killed = time.monotonic() + grace, False
    while any(group_members(g) for g in pgids):
        if time.monotonic() > deadline:
            if killed:
                return False
            for pgid in pgids:
                signal_group(pgid, signal.SIGKILL)
            deadline, killed = time.monotonic() + 5, True
        time.sleep(0.05)
    return True


def spawn(argv, cwd, env, out_fd):
    """Start argv in a new session with stdin /dev/null and stdout+stderr on out_fd; return pid."""
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's code
        try:
            os.setsid()
            os.chdir(cwd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            os.closerange(3, 65536)
            for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe(argv[0], argv, env)
        except BaseException as e:  # noqa: BLE001 - report and die, whatever happened
            os.write(2, ("tinyserv: cannot start %s: %s\n" % (argv[0], e)).encode())
        finally:
            os._exit(127)
    return pid


def reap(pid):
    """Exit code of our child pid if it has exited (signal N -> 128+N), else None."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def has_env(pid, assignment):
    """Was pid started with this exact NAME=value in its environment?"""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return assignment.encode() in f.read().split(b"\0")
    except OSError:
        return False


def listening_sockets(port):
    """Inodes of the TCP sockets listening on port (IPv4 or IPv6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add("socket:[%s]" % fields[9])
    return inodes


def group_listens(pgid, port):
    """Does a process of group pgid hold a socket listening on port?

    Knocking on the port is not enough: until the old process has let go of it, the
    port may answer for someone else.
    """
    sockets = listening_sockets(port)
    for pid in group_members(pgid) if sockets else ():
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in sockets:
                    return True
            except OSError:
                pass
    return False
