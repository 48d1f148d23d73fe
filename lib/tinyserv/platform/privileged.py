"""Root mode: every app runs as a system user of its own, and only the supervisor (root) may act as one.

Single-user mode (the default): everything runs as the deploy user, as it always did. Root mode: the
supervisor is started as root with TINYSERV_DEPLOY_USER naming the deploy user (`tinyserv-remote
systemd-unit --root` prints that unit). It works as the deploy user (its effective uid; its real uid
stays root) so that tinyserv's state stays the deploy user's, and takes root back only to act for an
app: start its processes as the app's user, signal them, read their /proc entries.

The deploy user's commands (ssh, git hooks) never become root: whatever runs an app's code (a build
step, the release phase, `run`, the boot check) is a request on the supervisor's socket, which checks
who asks (SO_PEERCRED: the deploy user or root) and answers it in a process of its own (forked), so a
long build never holds up the supervisor's loop. An `exec` request carries the caller's descriptors
(SCM_RIGHTS): the app's process reads and writes them directly, and lives as long as the connection.

`start`, `trial`, `stop_kept`, `claim`, `remove`, `ensure_user` and `forget_user` are the one place that
chooses: run here (single-user mode) or ask the supervisor (root mode). The supervisor's side of each
request is supervise/rootmode.py's `serve`, which runs the very same local function with the app's
account. Acting as another user (as_root, become ...) is users.py's.
"""

import json
import os
import pwd
import signal
import socket
import subprocess

from tinyserv.common import processes
from tinyserv.common.errors import TinyservError
from tinyserv.platform import rootsafe
from tinyserv.platform.rootsafe import DEPLOY_USER, MODE_FILE
from tinyserv.platform.users import Account, as_root, become

SHARED_DIRS = ("data", "home")  # the app's own directories, besides each build and dependency directory


# --- which mode ---------------------------------------------------------------------------------------

def deploy_user(layout):
    """The deploy user's name when the supervisor of layout runs as root (root mode), else None."""
    try:
        with open(os.path.join(layout.run_dir, MODE_FILE)) as f:
            return json.load(f)["deploy_user"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TinyservError("cannot read %s: %s; restart the supervisor (systemctl restart tinyserv)" % (
            os.path.join(layout.run_dir, MODE_FILE), e)) from None


def enter(layout, environ=os.environ):
    """At the supervisor's start: root mode if started as root with TINYSERV_DEPLOY_USER; say which on disk.

    In root mode this process then works as the deploy user (effective uid and gid), keeping root as its
    real uid to take back for what only root may do. Nothing changes in single-user mode.
    """
    name = environ.get(DEPLOY_USER)
    marker = os.path.join(layout.run_dir, MODE_FILE)
    if not name:
        if os.path.exists(marker):
            os.unlink(marker)  # the server went back to single-user mode
        return None
    if os.getuid() != 0:
        raise TinyservError("%s is for a supervisor started as root (root mode): unset it, or start "
                            "the supervisor as root" % DEPLOY_USER)
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise TinyservError("%s=%s: no such user on this server" % (DEPLOY_USER, name)) from None
    if user.pw_uid == 0:
        raise TinyservError("%s must name an unprivileged user, not %s" % (DEPLOY_USER, name))
    from tinyserv import CODE_ROOT
    rootsafe.check_code(CODE_ROOT)  # root runs nothing the deploy user could have written
    rootsafe.place_locks(layout, environ)
    rootsafe.ensure_lock_dir(layout)
    if os.path.exists(layout.root) and os.stat(layout.root).st_uid != user.pw_uid:
        raise TinyservError("TINYSERV_ROOT %s is not %s's: root mode keeps tinyserv's state the deploy "
                            "user's" % (layout.root, name))
    for parent in _parents(layout.root):
        if not os.stat(parent).st_mode & 0o001:
            raise TinyservError("root mode: the apps' users cannot pass through %s to reach their directories "
                                "under TINYSERV_ROOT: chmod o+x %s (nothing in it becomes readable)" % (parent, parent))
    os.initgroups(name, user.pw_gid)
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)
    layout.ensure()
    # App users pass through (never list) the root and apps/ to reach their own directories.
    for path in (layout.root, layout.apps_dir):
        os.chmod(path, 0o711)
    from tinyserv.state.store import write_json
    write_json(marker, {"deploy_user": name}, mode=0o644)
    return name


def _parents(path):
    """The directories above path, from / down."""
    parents = []
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        parents.insert(0, path)
    return parents


# --- app accounts -------------------------------------------------------------------------------------

def user_name(app):
    """The system user of app: ts-APP, shortened with a hash where that would pass Linux's 32 characters."""
    import hashlib  # here: the waiting standby supervisor imports this module, and OpenSSL weighs 4 MB
    name = "ts-" + app
    return name if len(name) <= 32 else "ts-%s-%s" % (app[:22], hashlib.sha256(app.encode()).hexdigest()[:6])


def comment(layout, app):
    """The GECOS field tinyserv writes: which root and app a user is for (another's is never touched)."""
    return "tinyserv app %s (%s)" % (app, layout.tag)


def account(layout, app):
    """The app's Account in root mode (None in single-user mode); raise when its user is missing."""
    if deploy_user(layout) is None:
        return None
    return find_account(layout, app) or _missing(app)


def _missing(app):
    raise TinyservError("the system user %s of %s is missing: run 'tinyserv-remote startup' on the server "
                        "(the supervisor makes it)" % (user_name(app), app))


def find_account(layout, app):
    """The app's user if it exists and is tinyserv's; raise if the name belongs to someone else."""
    try:
        user = pwd.getpwnam(user_name(app))
    except KeyError:
        return None
    if user.pw_gecos != comment(layout, app):
        raise TinyservError("the user %s exists but is not tinyserv's app user for %s: remove or rename it" % (
            user.pw_name, app))
    return Account(user.pw_name, user.pw_uid, user.pw_gid, layout.app_file(app, "home"))


def make_account(layout, app):
    """Create the app's system user and its directories (safe to run twice); root only. Return its Account."""
    found = find_account(layout, app)
    if found is None:
        _run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", layout.app_file(app, "home"),
              "--shell", "/usr/sbin/nologin", "--comment", comment(layout, app), user_name(app)], "useradd")
        found = find_account(layout, app)
    deployer = pwd.getpwnam(deploy_user(layout))
    # apps/<app>: the deploy user's, entered by the app's group only; builds/ and deps/ likewise. The deploy
    # user can write apps/: each directory is made and changed through a descriptor, never through a symlink.
    for sub in ("", "builds", "deps"):
        path = layout.app_file(app, sub) if sub else layout.app_dir(app)
        rootsafe.ensure_dir(path, deployer.pw_uid, found.gid, 0o750)
    for sub in SHARED_DIRS:
        give(layout.app_file(app, sub), found, deployer.pw_gid)
    return found


def drop_account(layout, app):
    """Kill every process of the app's user, delete what it owns under the app's directory, then the user."""
    found = find_account(layout, app)
    if found is None:
        return
    kill_user(found.uid)
    for sub in ("builds", "deps") + SHARED_DIRS:
        top = layout.app_file(app, sub)
        for name in os.listdir(top) if os.path.isdir(top) and not os.path.islink(top) else ():
            path = os.path.join(top, name)
            if os.lstat(path).st_uid == found.uid:
                delete(found, path)
    _run(["userdel", found.name], "userdel")


def kill_user(uid):
    """SIGKILL every process of uid until none is left (an app's user, before it is removed)."""
    import time
    for _ in range(100):
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit() and uid_of(int(n)) == uid]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def uid_of(pid):
    """The uid owning process pid (None once it is gone)."""
    try:
        return os.stat("/proc/%d" % pid).st_uid
    except OSError:
        return None


def give(path, user, group):
    """Make a directory the app's: owned by its user, group the deploy user's, setgid, no access for others."""
    rootsafe.ensure_dir(path, user.uid, group, 0o2770)


def _run(argv, what):
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise TinyservError("%s failed: %s" % (what, " ".join(result.stderr.split()) or "exit %d" % result.returncode))


def delete(user, path):
    """Delete path, which user owns: its contents as that user (it can touch nothing else), then the entry itself
    with this process's rights (a directory of the deploy user's holds it)."""
    if os.path.isdir(path) and not os.path.islink(path):
        with as_root():
            _as_user(user, ["find", path, "-mindepth", "1", "-delete"])
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _as_user(user, argv):
    """Run a trusted command (rm) as the app's user: it can only touch what the app could."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            preexec_fn=lambda: become(user))
    if result.returncode != 0:
        raise TinyservError("%s failed: %s" % (argv[0], " ".join(result.stderr.split())))


# --- run here, or ask the supervisor ----------------------------------------------------------------

class Local:
    """A process of the app started here (single-user mode): a Popen."""

    def __init__(self, proc):
        self.proc = proc
        self.pid = proc.pid

    def poll(self):
        return self.proc.poll()

    def wait(self):
        return self.proc.wait()

    def stop(self, mark):
        from tinyserv.platform import procs
        procs.stop([self.proc.pid], grace=5, what="stopping %s" % self.proc.args[0], marks=[mark])
        self.proc.wait()


class Remote:
    """A process of the app the supervisor started as the app's user: it lives as long as this connection."""

    def __init__(self, conn):
        self.conn = conn
        self.code = None
        self.pid = None

    def poll(self):
        if self.code is None and processes.readable([self.conn], 0):
            self.wait()
        return self.code

    def wait(self):
        if self.code is None:
            self.conn.settimeout(None)
            self.code = finish(self.conn, "exec")["exit"]
            self.conn.close()
        return self.code

    def stop(self, mark):
        self.conn.close()  # the supervisor stops the process, its group and its marked strays
        self.code = -1

    def signal(self, sig):
        """Pass a signal on (Ctrl-C in `tinyserv run`)."""
        try:
            self.conn.sendall(b"%d\n" % sig)
        except OSError:
            pass


def start(layout, app, argv, cwd, env, stdin=None, stdout=None, stderr=None, tty=False):
    """Start argv in a session of its own as the app: here, or by the supervisor in root mode.

    stdin/stdout/stderr: descriptors (None: /dev/null, stdout's for stderr). Returns Local or Remote.
    """
    if deploy_user(layout) is None:
        null = subprocess.DEVNULL
        return Local(subprocess.Popen(argv, cwd=cwd, env=env, stdin=null if stdin is None else stdin,
                                      stdout=null if stdout is None else stdout,
                                      stderr=(stdout if stderr is None else stderr) if stdout is not None else null,
                                      start_new_session=True))
    null = os.open(os.devnull, os.O_RDWR)
    try:
        fds = [null if stdin is None else stdin, null if stdout is None else stdout]
        fds.append(fds[1] if stderr is None else stderr)
        return Remote(ask(layout, {"cmd": "exec", "app": app, "argv": argv, "cwd": cwd, "env": env, "tty": tty},
                          fds))
    finally:
        os.close(null)


def attach(layout, app, argv, cwd, env):
    """`tinyserv run`: become argv here (exec), or have the supervisor run it as the app on our terminal.

    In root mode this process waits, passes Ctrl-C (and hang-up, SIGTERM) on, and returns its exit code.
    """
    if deploy_user(layout) is None:
        return run_here(argv, cwd, env)
    proc = start(layout, app, argv, cwd, env, stdin=0, stdout=1, stderr=2)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: proc.signal(number))
    return proc.wait()


def run_here(argv, cwd, env):
    """Run argv on our terminal and return its exit code once it ends; then stop every process it left
    behind (its mark finds daemons too), as the supervisor does with `run` in root mode and as destroy does.

    It stays in our process group, so the terminal's Ctrl-C reaches it directly: we only wait meanwhile
    (a handler, not SIG_IGN, which the command would inherit), and pass SIGTERM and hang-up on.
    """
    from tinyserv.platform import procs
    proc = subprocess.Popen(argv, cwd=cwd, env=env, preexec_fn=lambda: procs.apply_limits(env))
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, lambda number, frame: None)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: proc.send_signal(number))
    code = proc.wait()
    procs.stop_run([], env[procs.MARK], "stopping what %s left running" % argv[0])
    return code if code >= 0 else 128 - code


def trial(layout, app, build_id, config, version, timeout, cancelled, keep):
    """boot.check of a build's web: here, or by the supervisor in root mode (it can see the app's sockets)."""
    from tinyserv.state import appstate
    from tinyserv.platform import boot
    if deploy_user(layout) is None:
        return boot.check(layout, app, layout.build_dir(app, build_id), appstate.build_meta(layout, app, build_id),
                          config, version, timeout, cancelled, keep=keep)
    conn = ask(layout, {"cmd": "trial", "app": app, "build": build_id, "config": config, "version": version,
                        "timeout": timeout, "keep": keep})
    with conn:
        while not processes.readable([conn], 0.1):
            cancelled()  # raising closes the connection: the supervisor stops the trial web
        reply = finish(conn, "trial")
    kind = {"Up": boot.Up, "Crashed": boot.Crashed, "TimedOut": boot.TimedOut}[reply["result"]]
    return kind(**reply["fields"])


def stop_kept(layout, app, instance):
    """Stop a web a kept boot check left running and nobody took over: here, or by the supervisor."""
    from tinyserv.platform import boot
    if deploy_user(layout) is None:
        return boot.stop_kept(layout, instance)
    call(layout, {"cmd": "stop-kept", "app": app, "instance": instance})


def claim(layout, app, path):
    """Make a directory the deploy user just made the app's own (a build, a dependency directory): root mode only."""
    if deploy_user(layout) is not None:
        call(layout, {"cmd": "claim", "app": app, "path": path})


def remove(layout, app, path):
    """Delete a build or dependency directory, which the app's user may own (the supervisor does that in root mode)."""
    import shutil
    if deploy_user(layout) is None or not os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    call(layout, {"cmd": "remove", "app": app, "path": path})


def ensure_user(layout, app):
    """Root mode: the app's system user and directories exist (the supervisor makes them); nothing otherwise."""
    if deploy_user(layout) is not None:
        call(layout, {"cmd": "make-user", "app": app})


def forget_user(layout, app):
    """Root mode: the app's processes, files and system user are gone (the supervisor removes them)."""
    if deploy_user(layout) is not None:
        call(layout, {"cmd": "drop-user", "app": app})


# --- the protocol: one JSON line each way, descriptors passed with the request -------------------------

def ask(layout, message, fds=()):
    """Send a request (with descriptors) to the supervisor; return the connection its answer comes on."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(layout.supervisor_sock)
        socket.send_fds(conn, [(json.dumps(message) + "\n").encode()], list(fds))
    except OSError as e:
        conn.close()
        raise TinyservError("cannot reach the supervisor (%s): it runs as root in root mode; start it with "
                            "'systemctl start tinyserv' as root" % (e.strerror or e)) from None
    return conn


def call(layout, message, timeout=120):
    """A request whose answer comes soon (a user made, a directory claimed): its reply."""
    with ask(layout, message) as conn:
        conn.settimeout(timeout)
        return finish(conn, message["cmd"])


def finish(conn, what):
    """Read the supervisor's answer; raise its refusal as one line."""
    try:
        reply = json.loads(read_line(conn) or "{}")
    except (OSError, ValueError) as e:
        raise TinyservError("the supervisor did not answer %s: %s" % (what, e)) from None
    if not reply.get("ok"):
        raise TinyservError("the supervisor refused %s: %s" % (what, reply.get("error") or "it went away"))
    return reply


def read_line(conn):
    """One newline-terminated message from a socket (the supervisor's answers, to control.py and to us)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


