"""Processes on Linux: start one in its own session, inspect it via /proc, stop its group."""

import errno
import fcntl
import os
import resource
import signal
import time

from tinyserv.common.errors import TinyservError
from tinyserv.platform.privileged import as_owner_of, as_root, become, can_switch, shed_root


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
    """Live (non-zombie) pids in process group pgid (none for 0 or 1: kernel threads and init, never ours)."""
    if pgid <= 1 or not group_exists(pgid):
        return []
    try:
        names = os.listdir("/proc")
    except FileNotFoundError:  # no /proc (tinyserv local on macOS): the group is there, its members unknown
        return [pgid]
    members = []
    for name in names:
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat and stat[1] == pgid and stat[0] not in "ZX":
                members.append(int(name))
    return members


def group_exists(pgid):
    """Is any process (a zombie too) left in group pgid? One system call, no /proc scan."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def signal_group(pgid, sig):
    """Send sig to a whole process group; a group that is gone is fine.

    pgid 0 or 1 is never a group of ours (killpg(0) would hit the caller's own group).
    """
    if pgid <= 1:
        return
    try:
        with as_root():  # root mode: the app's processes are another user's
            os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


MARK = "TINYSERV_INSTANCE"


def env_value(pid, name):
    """The value of one variable in pid's environment as it was started, or None."""
    try:
        data = read_proc(pid, "environ")
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode("utf-8", "replace")
    return None


def read_proc(pid, name):
    """The bytes of /proc/PID/name; a root-mode supervisor reads another user's as that user."""
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read()
    except PermissionError:
        if not can_switch():
            raise
    with as_owner_of(pid):
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read()


def list_fds(pid):
    """The descriptors of pid (/proc/PID/fd) and what each points to; another user's read as that user."""
    def read():
        path = "/proc/%d/fd" % pid
        found = []
        for fd in os.listdir(path):
            try:
                found.append(os.readlink(os.path.join(path, fd)))
            except OSError:
                pass
        return found
    try:
        return read()
    except PermissionError:
        if not can_switch():
            raise
    with as_owner_of(pid):
        return read()


def marked(marks):
    """[(pid, starttime)] of live processes whose TINYSERV_INSTANCE matches one of marks.

    A mark ending in ':' matches every value it starts with (all of an app's processes);
    any other mark matches exactly (one instance). Daemons that left their process group
    (setsid, double fork) still carry the variable they were started with.
    """
    found = []
    for prefix in {m.rsplit(":", 1)[0] + ":" for m in marks}:
        for value, pids in marked_by(prefix).items():
            if any(value == m or (m.endswith(":") and value.startswith(m)) for m in marks):
                found.extend(pids)
    return sorted(set(found))


def marked_by(prefix):
    """{mark: [(pid, starttime)]} of live processes whose TINYSERV_INSTANCE starts with prefix.

    One pass over /proc answers for every instance at once: stopping a thousand
    instances must not read every process's environment a thousand times.
    """
    found = {}
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except FileNotFoundError:  # no /proc (tinyserv local on macOS): no process can be found by its mark
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        value = env_value(int(name), MARK)
        if value is not None and value.startswith(prefix):
            stat = proc_stat(int(name))
            if stat and stat[0] not in "ZX":
                found.setdefault(value, []).append((int(name), stat[2]))
    return found


def signal_pids(pids, sig):
    """Send sig to each (pid, starttime) that is still that process."""
    for pid, started in pids:
        if alive(pid, started):
            try:
                with as_root():
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


_nofile_at_start = None  # RLIMIT_NOFILE as we were started with it, once raise_fd_limit() changed ours


def raise_fd_limit():
    """Let this process open as many files as the hard limit allows; children get the original limit back."""
    global _nofile_at_start
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _nofile_at_start is None:
        _nofile_at_start = (soft, hard)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def restore_fd_limit():
    """In a child before exec: the open-files limit this process started with (apps expect the usual one)."""
    if _nofile_at_start is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, _nofile_at_start)


def apply_limits(env):
    """The app's own limits, from its environment: TINYSERV_NOFILE open files and TINYSERV_NPROC processes
    (soft and hard, never above the hard limit this process has)."""
    import resource
    from tinyserv.common.settings import open_files, processes
    for kind, value in ((resource.RLIMIT_NOFILE, open_files(env)), (resource.RLIMIT_NPROC, processes(env))):
        if value:
            hard = resource.getrlimit(kind)[1]
            resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else min(value, hard)))


def group_rss(pgid):
    """Resident memory of the live processes of group pgid, in bytes."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in group_members(pgid):
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def spawn(argv, cwd, env, out_fd, keep_caps=False, user=None, in_fd=None, err_fd=None):
    """Start argv in a new session with stdin /dev/null and stdout+stderr on out_fd; return pid.

    user: a privileged.Account to run as (root mode: an app's own user, with its HOME); in_fd
    and err_fd: other descriptors for stdin and stderr. A child of a root-mode supervisor
    never keeps the root it could take back.

    A failure to start it (no memory to fork, a directory that is gone, an environment
    too big for exec) raises OSError here, in the caller; a NUL byte raises ValueError.
    Capabilities this process was given (systemd's AmbientCapabilities, for nginx to bind
    ports below 1024) are not passed on unless keep_caps: apps never get them.
    """
    for key, value in env.items():
        if "\0" in key or "\0" in value or "=" in key:
            raise ValueError("the environment variable %r cannot be passed to a process" % key[:40])
    drop = None if keep_caps or not has_ambient_caps() else ambient_dropper()
    if user is not None:
        env = dict(env, HOME=user.home, USER=user.name, LOGNAME=user.name)
    report_r, report_w = os.pipe()  # close-on-exec: end of file means exec succeeded
    try:
        pid = os.fork()
    except BaseException:
        os.close(report_r)
        os.close(report_w)
        raise
    if pid == 0:  # child: never return into the caller's code
        _exec_child(argv, cwd, env, (in_fd, out_fd, out_fd if err_fd is None else err_fd), report_w, drop, user)
    os.close(report_w)
    try:
        report = _read_all(report_r)
    finally:
        os.close(report_r)
    if report:
        os.waitpid(pid, 0)
        code, _, message = report.decode("utf-8", "replace").partition(":")
        raise OSError(int(code) if code.isdigit() else errno.EIO, message)
    return pid


def _exec_child(argv, cwd, env, stdio, report_w, drop=None, user=None):
    """The child's side of spawn: set up its session, user and descriptors, then exec; report failure on report_w."""
    try:
        if drop:
            drop()
        os.setsid()
        become(user) if user is not None else shed_root()
        os.chdir(cwd)
        in_fd, out_fd, err_fd = stdio
        if in_fd is None:
            in_fd = os.open(os.devnull, os.O_RDONLY)
        # Above the standard three first: dup2 onto 0-2 must not overwrite a descriptor still to be copied.
        moved = [os.dup(fd) if fd < 3 else fd for fd in (in_fd, out_fd, err_fd)]
        for target, fd in enumerate(moved):
            os.dup2(fd, target)
        os.set_inheritable(0, True)
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 65536)
        restore_fd_limit()
        apply_limits(env)
        for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.execvpe(argv[0], argv, env)
    except BaseException as e:  # noqa: BLE001 - report and die, whatever happened
        code = getattr(e, "errno", None) or errno.EIO
        text = getattr(e, "strerror", None) or str(e)
        try:
            os.write(report_w, ("%d:cannot start %s: %s" % (code, argv[0], text)).encode())
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(127)


_ambient = None  # this process's ambient capability set (CapAmb in /proc/self/status), read once


def has_ambient_caps():
    """Was this process given ambient capabilities (by systemd's AmbientCapabilities)?"""
    global _ambient
    if _ambient is None:
        _ambient = 0
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("CapAmb:"):
                        _ambient = int(line.split()[1], 16)
        except (OSError, ValueError):
            pass
    return _ambient != 0


_dropper = None


def ambient_dropper():
    """A function that clears the ambient capability set (for a child, before exec: it then runs without any)."""
    global _dropper
    if _dropper is None:
        import ctypes  # only here: a supervisor given no capabilities never loads it
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4

        def drop():
            if prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "cannot drop the ambient capabilities")
        _dropper = drop
    return _dropper


def _read_all(fd):
    """Everything until end of file from a blocking descriptor."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return data
        data += chunk


F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python 3.10 names it; Linux has had it since 2.6.35


def enlarge_pipe(fd, size):
    """Best effort: make the pipe behind fd hold size bytes (capped by /proc/sys/fs/pipe-max-size).

    Past the per-user pipe-buffer soft limit the kernel refuses: the pipe keeps its 64 KiB.
    """
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, min(size, pipe_max_size()))
        return True
    except OSError:
        return False


def pipe_max_size():
    """/proc/sys/fs/pipe-max-size (what an unprivileged process may ask for), or 1 MiB."""
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024 * 1024


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


LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them (the kernel's numbers, in hex)


def tcp_sockets(state):
    """[(local port, remote port, state, inode)] of the IPv4 and IPv6 TCP sockets in state (LISTEN, ESTABLISHED).

    Asked of the kernel over netlink (sock_diag), which looks only at sockets in that state.
    Reading /proc/net/tcp walks the whole connection table instead: about 10 ms on a machine
    with much memory, for every boot check and every switch at the front door. It stays for
    kernels that refuse sock_diag.
    """
    try:
        return list(diag_sockets(state))
    except OSError:
        return [row for row in proc_sockets() if row[2] == state]


NETLINK_INET_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 0x1, 0x300, 2, 3


def diag_sockets(state):
    """tcp_sockets() from a sock_diag dump (inet_diag_req_v2 asking for one state, then inet_diag_msg replies)."""
    import socket
    import struct
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_INET_DIAG) as s:
        s.settimeout(5)
        for family in (socket.AF_INET, socket.AF_INET6):
            request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << int(state, 16))
            s.send(struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
                               family, 0) + request)
            done = False
            while not done:
                data = s.recv(65536)
                at = 0
                while at + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, at)
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR or length < 16 + 72:
                        raise OSError("sock_diag refused the request")
                    found = struct.unpack_from("=B", data, at + 17)[0]
                    local, remote = struct.unpack_from(">HH", data, at + 20)
                    inode = struct.unpack_from("=I", data, at + 16 + 68)[0]
                    yield local, remote, "%02X" % found, "socket:[%d]" % inode
                    at += (length + 3) & ~3
                if not data:
                    raise OSError("sock_diag closed")


def proc_sockets():
    """(local port, remote port, state, inode) of every TCP socket in /proc/net/tcp{,6}."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9:
                yield (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16), fields[3],
                       "socket:[%s]" % fields[9])


def listening_sockets(port):
    """Inodes of the TCP sockets listening on port (IPv4 or IPv6)."""
    return {inode for local, _, _, inode in tcp_sockets(LISTEN) if local == port}


def group_listens(pgid, port):
    """Does a process of group pgid hold a socket listening on port?

    Knocking on the port is not enough: until the old process has let go of it, the
    port may answer for someone else.
    """
    sockets = listening_sockets(port)
    for pid in group_members(pgid) if sockets else ():
        try:
            if sockets.intersection(list_fds(pid)):
                return True
        except OSError:
            continue
    return False
