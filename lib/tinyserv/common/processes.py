"""Processes, plainly: start one in its own session, find it by its mark, stop its group, reap it.

Both sides use these: `tinyserv local` on the developer's machine as they are, and the server through
platform/procs.py, which passes root mode's ways of signalling and reading another user's processes
(a Power) and becomes the app's user in the child.
"""

import collections
import contextlib
import errno
import os
import resource
import signal
import time

from tinyserv.common.errors import TinyservError

Power = collections.namedtuple("Power", "acting read")  # acting(): a context to signal in; read(pid, name): bytes


def read_proc(pid, name):
    """The bytes of /proc/PID/name (plain descriptors: a scan of /proc reads thousands of these)."""
    fd = os.open("/proc/%d/%s" % (pid, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


PLAIN = Power(contextlib.nullcontext, read_proc)  # this process acts as itself


def proc_stat(pid):
    """(state letter, process group, start time in ticks) of pid, or None if it is gone."""
    try:
        data = read_proc(pid, "stat").decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def readable(files, timeout):
    """The ones of files (descriptor numbers, or objects with fileno()) readable, or at their end, within timeout
    seconds. poll(), not select(): a supervisor of 1,000 apps holds descriptors numbered past select()'s 1023."""
    import select
    poller, by_fd = select.poll(), {}
    for f in files:
        by_fd[f if isinstance(f, int) else f.fileno()] = f
        poller.register(f, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(None if timeout is None else int(timeout * 1000))]


def exit_fd(pid):
    """A descriptor that becomes readable when pid ends, even when it is not our child (pidfd_open, Linux 5.3);
    None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


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


def ended_child(pid, started, read_starttime=starttime):
    """Has a child of ours that waitpid does not report ended: reaped already (or its pid is another's now)?
    A zombie is still ours to reap: a leader whose other threads are still exiting is 'Z' before waitpid reports
    it (redis-server, node), and one taken for gone would stay a zombie for good."""
    now = read_starttime(pid)
    return now is None or (started is not None and now != started)


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


def signal_group(pgid, sig, power=PLAIN):
    """Send sig to a whole process group; a group that is gone is fine.

    pgid 0 or 1 is never a group of ours (killpg(0) would hit the caller's own group).
    """
    if pgid <= 1:
        return
    try:
        with power.acting():  # root mode: the app's processes are another user's
            os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


MARK = "TINYSERV_INSTANCE"


def env_value(pid, name, power=PLAIN):
    """The value of one variable in pid's environment as it was started, or None."""
    try:
        data = b"\0" + power.read(pid, "environ")
    except OSError:
        return None
    prefix = b"\0" + name.encode() + b"="
    start = data.find(prefix)
    if start < 0:
        return None
    start += len(prefix)
    end = data.find(b"\0", start)
    return data[start:None if end < 0 else end].decode("utf-8", "replace")


def marked(marks, power=PLAIN):
    """[(pid, starttime)] of live processes whose TINYSERV_INSTANCE matches one of marks.

    A mark ending in ':' matches every value it starts with (all of an app's processes);
    any other mark matches exactly (one instance). Daemons that left their process group
    (setsid, double fork) still carry the variable they were started with.
    """
    found = []
    for prefix in {m.rsplit(":", 1)[0] + ":" for m in marks}:
        for value, pids in marked_by(prefix, power).items():
            if any(value == m or (m.endswith(":") and value.startswith(m)) for m in marks):
                found.extend(pids)
    return sorted(set(found))


def marked_by(prefix, power=PLAIN):
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
        value = env_value(int(name), MARK, power)
        if value is not None and value.startswith(prefix):
            stat = proc_stat(int(name))
            if stat and stat[0] not in "ZX":
                found.setdefault(value, []).append((int(name), stat[2]))
    return found


def signal_pids(pids, sig, power=PLAIN):
    """Send sig to each (pid, starttime) that is still that process."""
    for pid, started in pids:
        if alive(pid, started):
            try:
                with power.acting():
                    os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def stop_groups(pgids, grace, term=True, marks=(), power=PLAIN):
    """Stop process groups and every process carrying one of marks; return the survivors.

    SIGTERM (unless term is False: already asked), wait up to grace seconds, SIGKILL what
    is left, wait 5 s more. Returns the pids still alive then ([] when everything ended).
    """
    strays = marked(marks, power) if marks else []

    def left():
        return [p for g in pgids for p in group_members(g)] + [p for p, s in strays if alive(p, s)]

    def send(sig):
        for pgid in pgids:
            signal_group(pgid, sig, power)
        signal_pids(strays, sig, power)
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


def stop(pgids, grace, what, term=True, marks=(), power=PLAIN):
    """stop_groups, but processes that survive SIGKILL are an error the caller must act on."""
    survivors = stop_groups(pgids, grace, term, marks, power)
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


def apply_limits(env, default_nproc=None):
    """The app's own limits, from its environment: TINYSERV_NOFILE open files and TINYSERV_NPROC processes
    (default_nproc without it; soft and hard, never above the hard limit this process has)."""
    import resource
    from tinyserv.common.settings import open_files, processes
    for kind, value in ((resource.RLIMIT_NOFILE, open_files(env)),
                        (resource.RLIMIT_NPROC, processes(env) or default_nproc)):
        if value:
            hard = resource.getrlimit(kind)[1]
            resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else min(value, hard)))


def spawn(argv, cwd, env, out_fd, in_fd=None, err_fd=None, setup=None, default_nproc=None):
    """Start argv in a new session with stdin /dev/null and stdout+stderr on out_fd; return pid.

    in_fd and err_fd: other descriptors for stdin and stderr. setup: run in the child once it
    has its session, before anything else (platform/procs becomes the app's user there).
    default_nproc: its process limit when its environment sets no TINYSERV_NPROC (apply_limits).

    A failure to start it (no memory to fork, a directory that is gone, an environment
    too big for exec) raises OSError here, in the caller; a NUL byte raises ValueError.
    """
    for key, value in env.items():
        if "\0" in key or "\0" in value or "=" in key:
            raise ValueError("the environment variable %r cannot be passed to a process" % key[:40])
    program = _plain_program(argv, env) if setup is None and default_nproc is None and not _own_limits(env) else None
    if program and _can_spawn_plainly(in_fd, out_fd, err_fd):
        return _spawn_plainly(program, argv, cwd, env, in_fd, out_fd, out_fd if err_fd is None else err_fd)
    report_r, report_w = os.pipe()  # close-on-exec: end of file means exec succeeded
    try:
        pid = os.fork()
    except BaseException:
        os.close(report_r)
        os.close(report_w)
        raise
    if pid == 0:  # child: never return into the caller's code
        _exec_child(argv, cwd, env, (in_fd, out_fd, out_fd if err_fd is None else err_fd), report_w, setup,
                    default_nproc)
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


# Python ignores SIGPIPE and SIGXFSZ, and handles the others: an app gets the default for each (as subprocess
# does with restore_signals).
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)


def _own_limits(env):
    """Does the process get limits of its own (TINYSERV_NOFILE, TINYSERV_NPROC), set in a forked child?"""
    return bool(env.get("TINYSERV_NOFILE") or env.get("TINYSERV_NPROC"))


def _plain_program(argv, env):
    """The file exec would run for argv[0], looked up in env's PATH as execvpe does (None: not found)."""
    import shutil
    return argv[0] if "/" in argv[0] else shutil.which(argv[0], path=os.pathsep.join(os.get_exec_path(env)))


def _can_spawn_plainly(*fds):
    """Can posix_spawn start it: nothing to run in the child, descriptors it can dup2 (never one onto itself),
    and one thread (the open-files limit is lowered around the call, which another thread could trip on)?"""
    import threading
    return hasattr(os, "posix_spawn") and threading.active_count() == 1 and all(fd is None or fd > 2 for fd in fds)


_inherited_checked = False


def _inherit_nothing():
    """Once per process: descriptors it was started with (above 2) become close-on-exec too, as every one it
    opens is (PEP 446), so that no child started with posix_spawn gets one of them."""
    global _inherited_checked
    if _inherited_checked:
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
    _inherited_checked = True


def _spawn_plainly(program, argv, cwd, env, in_fd, out_fd, err_fd):
    """spawn() without running Python in a forked child: posix_spawn (vfork and exec) in a new session, with the
    same descriptors, signals (glibc ignores its two internal ones, which a program cannot see) and open-files
    limit. At 1,000 apps a fork of the supervisor cost 4 ms idle and
    25 ms while the apps it had started booted (the child waits for a core); this costs a tenth of a millisecond.
    Every descriptor of ours is close-on-exec (_inherit_nothing), so the child keeps only 0, 1 and 2."""
    _inherit_nothing()
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) if in_fd is None else None
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        os.chdir(cwd)  # inherited by the child; ours again below (one thread: nobody else looks meanwhile)
        if _nofile_at_start is not None and _nofile_at_start != limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, _nofile_at_start)  # inherited; only dup2 until restored
        actions = [(os.POSIX_SPAWN_DUP2, null if in_fd is None else in_fd, 0), (os.POSIX_SPAWN_DUP2, out_fd, 1),
                   (os.POSIX_SPAWN_DUP2, err_fd, 2)]
        return os.posix_spawn(program, argv, env, file_actions=actions, setsid=True, setsigmask=(),
                               setsigdef=RESET_SIGNALS)
    except OSError as e:
        raise OSError(e.errno, "cannot start %s: %s" % (argv[0], e.strerror)) from None
    finally:
        if resource.getrlimit(resource.RLIMIT_NOFILE) != limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        os.fchdir(here)
        os.close(here)
        if null is not None:
            os.close(null)


def _exec_child(argv, cwd, env, stdio, report_w, setup=None, default_nproc=None):
    """The child's side of spawn: set up its session, user and descriptors, then exec; report failure on report_w."""
    try:
        os.setsid()
        if setup:
            setup()
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
        apply_limits(env, default_nproc)
        for sig in RESET_SIGNALS:
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


def reap(pid):
    """Exit code of our child pid if it has exited (signal N -> 128+N), else None."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
