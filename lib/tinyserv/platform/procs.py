"""Processes on the server: common/processes.py's, with root mode's powers, and what /proc says about them.

A root-mode supervisor signals an app's processes as root and reads their /proc entries as their
owner (ROOT_MODE); a child it starts becomes the app's user, or sheds the root it could take back.
"""

import fcntl
import os

from tinyserv.common import processes
# The plain ones, for the server's modules to find here with the rest:
from tinyserv.common.processes import (MARK, alive, apply_limits, ended_child, exit_fd, readable,  # noqa: F401
                                       group_members, proc_stat, raise_fd_limit, reap, starttime)
from tinyserv.platform.users import as_owner_of, as_root, become, can_switch, could_take_root_back, shed_root


def parent(pid):
    """The parent pid of pid (None if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return int(data[data.rindex(")") + 2:].split()[1])


def read_proc(pid, name):
    """The bytes of /proc/PID/name; a root-mode supervisor reads another user's as that user."""
    try:
        return processes.read_proc(pid, name)
    except PermissionError:
        if not can_switch():
            raise
    with as_owner_of(pid):
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read()


ROOT_MODE = processes.Power(as_root, read_proc)  # signal as root, read another user's /proc entries as that user


def signal_group(pgid, sig):
    """common.processes.signal_group, as root in root mode (the app's processes are another user's)."""
    processes.signal_group(pgid, sig, ROOT_MODE)


def signal_pids(pids, sig):
    """common.processes.signal_pids, as root in root mode."""
    processes.signal_pids(pids, sig, ROOT_MODE)


def env_value(pid, name):
    """common.processes.env_value, reading another user's environment as that user."""
    return processes.env_value(pid, name, ROOT_MODE)


def marked(marks):
    """common.processes.marked, with root mode's powers."""
    return processes.marked(marks, ROOT_MODE)


def marked_by(prefix):
    """common.processes.marked_by, with root mode's powers."""
    return processes.marked_by(prefix, ROOT_MODE)


def stop_groups(pgids, grace, term=True, marks=()):
    """common.processes.stop_groups, with root mode's powers."""
    return processes.stop_groups(pgids, grace, term, marks, ROOT_MODE)


def stop(pgids, grace, what, term=True, marks=()):
    """common.processes.stop, with root mode's powers: survivors of SIGKILL are an error."""
    processes.stop(pgids, grace, what, term, marks, ROOT_MODE)


ROOT_NPROC = 512  # root mode: the processes an app's user may have, unless the app sets TINYSERV_NPROC
LOOKS = 5  # looks for a one-off run's leftovers: one that forks while we stop it is found by the next


def stop_run(pgids, mark, what, term=True):
    """Stop a one-off run (`tinyserv run`) and everything carrying its mark, daemons too, as destroy would.

    A daemon may fork a child after a look at /proc: look again until none is left (LOOKS at most).
    """
    stop(pgids, 5, what, term, [mark])
    for _ in range(LOOKS):
        if not marked([mark]):
            return
        stop([], 5, what, True, [mark])


def spawn(argv, cwd, env, out_fd, keep_caps=False, user=None, in_fd=None, err_fd=None):
    """common.processes.spawn for the server: as user, never with the root or capabilities it could keep.

    user: a users.Account to run as (root mode: an app's own user, with its HOME). A child of a
    root-mode supervisor never keeps the root it could take back. Capabilities this process was
    given (systemd's AmbientCapabilities, for nginx to bind ports below 1024) are not passed on
    unless keep_caps: apps never get them. An app's own user has at most ROOT_NPROC processes unless the app
    sets TINYSERV_NPROC: a fork bomb stops there.
    """
    drop = None if keep_caps or not has_ambient_caps() else ambient_dropper()
    if user is not None:
        env = dict(env, HOME=user.home, USER=user.name, LOGNAME=user.name)

    def setup():
        if drop:
            drop()
        become(user) if user is not None else shed_root()
    plain = drop is None and user is None and not could_take_root_back()  # setup() would do nothing
    return processes.spawn(argv, cwd, env, out_fd, in_fd, err_fd, None if plain else setup,
                           ROOT_NPROC if user is not None else None)


def leader_uid(pid):
    """The uid that owns pid when pid leads its own process group; None when it does not, or is gone."""
    try:
        return os.stat("/proc/%d" % pid).st_uid if os.getpgid(pid) == pid else None
    except OSError:
        return None


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


def children(pid):
    """The live children of pid, from /proc/PID/task/*/children: a few small reads, where a group's members
    need a scan of all of /proc. None when the kernel does not say (no CONFIG_PROC_CHILDREN, no /proc)."""
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    found = set()
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task), "rb") as f:
                found.update(int(child) for child in f.read().split())
        except FileNotFoundError:
            if not os.path.exists("/proc/%d/task/%s" % (pid, task)):
                continue  # the thread ended
            return None
        except OSError:
            return None
    return [child for child in found if (proc_stat(child) or "Z")[0] not in "ZX"]


def groups_rss(pgids):
    """{pgid: resident bytes} of the live processes of each group in pgids: one /proc scan for all of them."""
    wanted = set(pgids)
    totals = dict.fromkeys(wanted, 0)
    if not wanted:
        return totals
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        names = os.listdir("/proc")
    except FileNotFoundError:
        return totals
    for name in names:
        if not name.isdigit():
            continue
        stat = proc_stat(int(name))
        if stat and stat[1] in wanted and stat[0] not in "ZX":
            try:
                with open("/proc/%s/statm" % name) as f:
                    totals[stat[1]] += int(f.read().split()[1]) * page
            except (OSError, IndexError, ValueError):
                pass
    return totals


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


def has_env(pid, assignment):
    """Was pid started with this exact NAME=value in its environment?"""
    name, _, value = assignment.partition("=")
    return env_value(pid, name) == value


LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them (the kernel's numbers, in hex)


def tcp_sockets(state, local=None, remote=None):
    """[(local port, remote port, state, inode)] of the IPv4 and IPv6 TCP sockets in state (LISTEN, ESTABLISHED),
    only those with that local or remote port when one is given.

    Asked of the kernel over netlink (sock_diag), which looks only at sockets in that state, and on that port.
    Reading /proc/net/tcp walks the whole connection table instead: about 10 ms on a machine
    with much memory, for every boot check and every switch at the front door. It stays for
    kernels that refuse sock_diag.
    """
    try:
        return list(diag_sockets(state, local, remote))
    except OSError:
        return [row for row in proc_sockets() if row[2] == state and local in (None, row[0])
                and remote in (None, row[1])]


NETLINK_INET_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 0x1, 0x300, 2, 3
INET_DIAG_REQ_BYTECODE, INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE, INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE = 1, 2, 3, 4, 5


def diag_request(s, family, state, local=None, remote=None, local_range=None):
    """Ask netlink socket s for a dump of family's TCP sockets in state (inet_diag_req_v2); with a local or remote
    port (or a (low, high) range of local ports), the kernel's filter passes only those (bytecode: port >= P,
    then port <= P; a failed test jumps past the end, which rejects the socket)."""
    import socket
    import struct
    request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << int(state, 16))
    low, high = local_range if local_range else (local, local)
    tests = [(op, port) for ops, port in zip(((INET_DIAG_BC_S_GE,), (INET_DIAG_BC_S_LE,),
                                              (INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE)), (low, high, remote))
             if port is not None for op in ops]
    if tests:
        size = 8 * len(tests)
        code = b"".join(struct.pack("=BBHBBH", op, 8, size - 8 * i + 4, 0, 0, port)
                        for i, (op, port) in enumerate(tests))
        request += struct.pack("=HH", 4 + size, INET_DIAG_REQ_BYTECODE) + code
    s.send(struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, 0)
           + request)


def diag_sockets(state, local=None, remote=None):
    """tcp_sockets() from a sock_diag dump (inet_diag_req_v2 asking for one state, then inet_diag_msg replies)."""
    import socket
    import struct
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_INET_DIAG) as s:
        s.settimeout(5)
        for family in (socket.AF_INET, socket.AF_INET6):
            diag_request(s, family, state, local, remote)
            for msg in diag_replies(s):
                found = struct.unpack_from("=B", msg, 1)[0]
                local_port, remote_port = struct.unpack_from(">HH", msg, 4)
                inode = struct.unpack_from("=I", msg, 68)[0]
                yield local_port, remote_port, "%02X" % found, "socket:[%d]" % inode


LOOPBACK_OR_ANY = {bytes(4), bytes([127, 0, 0, 1]),  # 0.0.0.0, 127.0.0.1; then ::, ::1, ::ffff:127.0.0.1
                   bytes(16), bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])}


def listeners(ports):
    """{port: {inode, ...}} of the TCP sockets listening on ports where 127.0.0.1 reaches them, from one sock_diag
    dump for all of them (the kernel passes the range from the lowest to the highest). Raises OSError when the
    kernel refuses sock_diag."""
    import socket
    import struct
    wanted, found = set(ports), {}
    if not wanted:
        return found
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_INET_DIAG) as s:
        s.settimeout(5)
        for family, size in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
            diag_request(s, family, LISTEN, local_range=(min(wanted), max(wanted)))
            for msg in diag_replies(s):
                port = struct.unpack_from(">H", msg, 4)[0]
                if port in wanted and msg[8:8 + size] in LOOPBACK_OR_ANY:
                    found.setdefault(port, set()).add("socket:[%d]" % struct.unpack_from("=I", msg, 68)[0])
    return found


def listen_queues(ports=None):
    """{port: (queued, backlog)} of the TCP sockets listening where 127.0.0.1 reaches them (loopback or any
    address), from one sock_diag dump: queued connections wait for accept(), past backlog the kernel drops new
    ones; with ports, the kernel passes only those from the lowest to the highest (the webs' kernel-chosen ports,
    not nginx's thousands of app ports below them). Raises OSError when the kernel refuses sock_diag."""
    import socket
    import struct
    found = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_INET_DIAG) as s:
        s.settimeout(5)
        for family, size in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
            diag_request(s, family, LISTEN, local_range=(min(ports), max(ports)) if ports else None)
            for msg in diag_replies(s):
                if msg[8:8 + size] in LOOPBACK_OR_ANY:
                    port = struct.unpack_from(">H", msg, 4)[0]
                    queued, backlog = struct.unpack_from("=II", msg, 56)
                    old = found.get(port)
                    found[port] = (queued, backlog) if old is None or queued <= backlog else old
    return found


def diag_replies(s):
    """The inet_diag_msg payloads of one sock_diag dump on netlink socket s."""
    import struct
    while True:
        data = s.recv(65536)
        if not data:
            raise OSError("sock_diag closed")
        at = 0
        while at + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, at)
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR or length < 16 + 72:
                raise OSError("sock_diag refused the request")
            yield data[at + 16:at + length]
            at += (length + 3) & ~3


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
    return {inode for _, _, _, inode in tcp_sockets(LISTEN, local=port)}


def group_listens(pgid, port):
    """Does a process of group pgid hold a socket listening on port?

    Knocking on the port is not enough: until the old process has let go of it, the
    port may answer for someone else.
    """
    return group_holds(pgid, listening_sockets(port))


def group_holds(pgid, sockets):
    """Does a process of group pgid hold one of sockets (inodes as "socket:[N]")?"""
    if not sockets:
        return False
    near = descendants_in_group(pgid)  # a few reads: the leader's children, theirs, ... still in the group
    if any_holds(near, sockets):
        return True
    return any_holds([pid for pid in group_members(pgid) if pid not in near], sockets)  # a scan of all of /proc


def any_holds(pids, sockets):
    """Does one of pids hold one of sockets (inodes as "socket:[N]")?"""
    for pid in pids:
        try:
            if sockets.intersection(list_fds(pid)):
                return True
        except OSError:
            continue
    return False


def descendants_in_group(pgid):
    """The group's leader and its descendants that are still in group pgid (from /proc/PID/task/*/children):
    where the webs' listeners are, found without a scan of every process ([] where the kernel does not say)."""
    found, todo = [], [pgid]
    while todo and len(found) < 1000:
        pid = todo.pop()
        stat = proc_stat(pid)
        if stat is None or stat[1] != pgid or stat[0] in "ZX":
            continue
        found.append(pid)
        todo.extend(children(pid) or ())
    return found
