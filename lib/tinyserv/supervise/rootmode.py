"""Root mode, the supervisor's side: who may ask, and the answer to each request of the deploy user's.

The deploy user's commands never become root: what runs an app's code (a build step, the release
phase, `run`, the boot check) is a request on the supervisor's socket (platform/privileged.py sends
it). Here the supervisor checks who asks (SO_PEERCRED: the deploy user or root) and answers in a
process of its own (forked by the control socket's Server), running the very same local function
with the app's account.
"""

import json
import os
import pwd
import signal
import socket
import struct

from tinyserv.common import processes
from tinyserv.common.errors import TinyservError
from tinyserv.platform.privileged import account, deploy_user, delete, drop_account, give, make_account, uid_of
from tinyserv.platform.users import as_root

MAX_FDS = 3


# --- who asks, and what ------------------------------------------------------------------------------

def receive(conn, limit=1024 * 1024):
    """One request line and the descriptors sent with it (the supervisor's side)."""
    data, fds = b"", []
    while not data.endswith(b"\n") and len(data) < limit:
        chunk, got, _, _ = socket.recv_fds(conn, 65536, MAX_FDS)
        fds.extend(got)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace"), fds


def peer_uid(conn):
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    return peer_credentials(conn)[1]


def peer_credentials(conn):
    """(pid, uid, gid) of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def refusal(uid, owner=None):
    """Why a peer may not talk to the supervisor (None when it may): only root and the supervisor's own user."""
    owner = os.geteuid() if owner is None else owner
    if uid in (0, owner):
        return None
    return "uid %d may not use tinyserv's supervisor: only %s and root may" % (uid, _name(owner))


def _name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid %d" % uid


# --- the answers: each runs in a helper process the Server forked ---------------------------------------

REQUESTS = ("exec", "trial", "stop-kept", "claim", "remove", "make-user", "drop-user")


def serve(layout, conn, message, fds):
    """The supervisor's side of one request, in a process of its own (forked): answer, then exit.

    It works as the supervisor does, as the deploy user, and takes root only for what needs it.
    """
    reply = {"ok": True}
    try:
        reply.update(HANDLERS[message["cmd"]](layout, conn, message, fds) or {})
    except (TinyservError, OSError, ValueError, KeyError, TypeError) as e:
        reply = {"ok": False, "error": " ".join(str(e).split()) or type(e).__name__}
    finally:
        _close(fds)  # a refused request's too: the caller sees end of file
    try:
        conn.sendall((json.dumps(reply) + "\n").encode())
    except OSError:
        pass


def _app(layout, message):
    app = message.get("app")
    if not isinstance(app, str):
        raise TinyservError("no app named in the request")
    layout.require(app)
    return app


def _inside(layout, app, path, *tops):
    """path, if it is a real directory entry inside one of the app's directories tops; else refuse."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise TinyservError("not a path: %r" % (path,))
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if not any(os.path.dirname(real) == os.path.realpath(layout.app_file(app, top)) for top in tops) \
            or os.path.basename(real) in ("", ".", ".."):
        raise TinyservError("%s is not one of %s's %s" % (path, app, " or ".join(tops)))
    return real


def _exec(layout, conn, message, fds):
    from tinyserv.platform import procs
    app = _app(layout, message)
    user = account(layout, app)
    argv, env, cwd = message.get("argv"), message.get("env"), message.get("cwd")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise TinyservError("exec needs a command (a list of text)")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise TinyservError("exec needs an environment (text to text)")
    if not isinstance(cwd, str) or not os.path.realpath(cwd).startswith(os.path.realpath(layout.app_dir(app)) + "/"):
        raise TinyservError("exec runs only inside %s's directory, not in %r" % (app, cwd))
    if len(fds) != 3:
        raise TinyservError("exec needs standard input, output and error passed with the request")
    mark = env.get(procs.MARK, "")
    if not mark.startswith(layout.app_marks(app)):
        raise TinyservError("exec needs %s=%s..." % (procs.MARK, layout.app_marks(app)))
    pid = procs.spawn(argv, cwd, env, fds[1], user=user, in_fd=fds[0], err_fd=fds[2])
    _close(fds)  # now only the process holds them: their end of file is its end
    code = watch(conn, pid)
    procs.stop_run([pid], mark, "stopping %s" % argv[0], term=code is None)
    if code is None:
        raise TinyservError("the caller went away")
    return {"exit": code}


def _close(fds):
    while fds:
        os.close(fds.pop())


def watch(conn, pid):
    """Wait for our child pid to end (its exit code) while the caller stays; None once the caller has gone.

    A line the caller sends is a signal number to pass on (Ctrl-C in `tinyserv run`).
    """
    from tinyserv.platform import procs
    try:
        exited = os.pidfd_open(pid)
    except (AttributeError, OSError):
        exited = None
    try:
        while True:
            code = procs.reap(pid)
            if code is not None:
                return code
            ready = processes.readable([conn] + ([exited] if exited is not None else []), 0.05)
            if conn in ready:
                data = conn.recv(64)
                if not data:
                    return None
                for line in data.split():
                    if line.isdigit() and int(line) in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
                        procs.signal_group(pid, int(line))
    finally:
        if exited is not None:
            os.close(exited)


def _trial(layout, conn, message, fds):
    from tinyserv.state import appstate
    from tinyserv.platform import boot
    app = _app(layout, message)
    build_id = message["build"]
    build_dir = _inside(layout, app, layout.build_dir(app, build_id), "builds")

    def cancelled():
        if processes.readable([conn], 0) and not conn.recv(64):
            raise TinyservError("the caller went away")
    result = boot.check(layout, app, build_dir, appstate.build_meta(layout, app, build_id), message["config"],
                        int(message["version"]), float(message["timeout"]), cancelled, keep=bool(message["keep"]),
                        user=account(layout, app), owner=peer_credentials(conn)[0])  # the change, not this helper
    return {"result": type(result).__name__, "fields": result._asdict()}


def _stop_kept(layout, conn, message, fds):
    from tinyserv.platform import boot
    app = _app(layout, message)
    instance = message["instance"]
    user = account(layout, app)
    pid = int(instance["pid"])
    if not str(instance.get("mark", "")).startswith(layout.app_marks(app)) or int(instance["pgid"]) != pid \
            or uid_of(pid) not in (user.uid if user else os.geteuid(), None):
        raise TinyservError("process %d is not one of %s's" % (pid, app))
    boot.stop_kept(layout, instance)


def _claim(layout, conn, message, fds):
    app = _app(layout, message)
    path = _inside(layout, app, message.get("path"), "builds", "deps")
    info = os.lstat(path)
    deployer = pwd.getpwnam(deploy_user(layout))
    if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != deployer.pw_uid:
        raise TinyservError("%s is not a directory the deploy user made" % path)
    with as_root():
        give(path, account(layout, app), deployer.pw_gid)


def _remove(layout, conn, message, fds):
    app = _app(layout, message)
    path = _inside(layout, app, message.get("path"), "builds", "deps")
    user = account(layout, app)
    if os.path.lexists(path) and os.lstat(path).st_uid == user.uid:
        delete(user, path)
    else:
        import shutil
        shutil.rmtree(path, ignore_errors=True)  # a directory the deploy user made and never handed over


def _make_user(layout, conn, message, fds):
    with as_root():
        make_account(layout, _app(layout, message))


def _drop_user(layout, conn, message, fds):
    app = message.get("app")
    from tinyserv.common.names import check_app_name
    check_app_name(app)
    if layout.exists(app):
        raise TinyservError("%s still exists: destroy it first" % app)
    with as_root():
        drop_account(layout, app)


HANDLERS = {"exec": _exec, "trial": _trial, "stop-kept": _stop_kept, "claim": _claim, "remove": _remove,
            "make-user": _make_user, "drop-user": _drop_user}
