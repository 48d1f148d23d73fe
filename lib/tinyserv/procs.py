"""Processes on Linux: start one in its own session, inspect it via /proc, stop its group."""

import os
import signal
import time

from .errors import TinyservError


def proc_stat(pid):
    """(state letter, process group, start time in ticks) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def parent(pid):
    """The parent pid of pid (None if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return int(data[data.rindex(")") + 2:].split()[1])


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


MARK = "TINYSERV_INSTANCE"


def env_value(pid, name):
    """The value of one variable in pid's environment as it was started, or None."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode("utf-8", "replace")
    return None


def marked(marks):
    """[(pid, starttime)] of live processes whose TINYSERV_INSTANCE matches one of marks.

    A mark ending in ':' matches every value it starts with (all of an app's processes);
    any other mark matches exactly (one instance). Daemons that left their process group
    (setsid, double fork) still carry the variable they were started with.
    """
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        value = env_value(int(name), MARK)
        if value is not None and any(value == m or (m.endswith(":") and value.startswith(m)) for m in marks):
            stat = proc_stat(int(name))
            if stat and stat[0] not in "ZX":
                found.append((int(name), stat[2]))
    return found


def signal_pids(pids, sig):
    """Send sig to each (pid, starttime) that is still that process."""
    for pid, started in pids:
        if alive(pid, started):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def stop_groups(pgids, grace, term=True, marks=()):
    """Stop process groups and every process carrying one of marks; return the survivors.

    SIGTERM (unless term is False: already asked), wait up to grace seconds, SIGKILL what
    is left, wait 5 s more. Returns the pids still alive then ([] when everything ended).
    """
    strays = marked(marks) if marks else []

    def left():
        return [p for g in pgids for p in group_members(g)] + [p for p, s in strays if alive(p, s)]

    def send(sig):
        for pgid in pgids:
            signal_group(pgid, sig)
        signal_pids(strays, sig)
    if term:
        send(signal.SIGTERM)
    deadline, killed = time.monotonic() + grace, False
    while left():
        if time.monotonic() > deadline:
            if killed:
                return left()
            send(signal.SIGKILL)
            deadline, killed = time.monotonic() + 5, True
        time.sleep(0.05)
    return []


def stop(pgids, grace, what, term=True, marks=()):
    """stop_groups, but processes that survive SIGKILL are an error the caller must act on."""
    survivors = stop_groups(pgids, grace, term, marks)
    if survivors:
        raise TinyservError("%s: processes %s did not stop even after SIGKILL (stuck in the kernel?); "
                            "check them with ps and try again" % (what, ", ".join(map(str, survivors))))


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
    name, _, value = assignment.partition("=")
    return env_value(pid, name) == value


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
