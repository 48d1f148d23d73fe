"""What root relies on in root mode: code only root can write, locks where only root writes, and file operations
that never follow a symlink someone else planted.

A root process never runs, imports or trusts a file, lock or directory a non-root user can write: the
supervisor refuses to start from code that is not root's all the way up (check_code), keeps its locks and pid
file in /run/tinyserv/<tag> (place_locks; run/ under TINYSERV_ROOT is the deploy user's), and changes owner and
mode of the app's directories through descriptors opened one component at a time without following
symlinks (open_dir, ensure_dir).
"""

import os
import stat

from tinyserv.common.errors import TinyservError

LOCK_TOP = "/run/tinyserv"  # root's: /run is root's and emptied at every boot
DEPLOY_USER = "TINYSERV_DEPLOY_USER"
MODE_FILE = "root-mode"  # in run/: written by a root supervisor, so the deploy user's commands know to ask it


def unsafe_entry(path, info, root_uid=0):
    """Why a non-root user could change path (None when only root can): not root's, or group/other writable."""
    if info.st_uid != root_uid:
        return "%s belongs to uid %d, not root" % (path, info.st_uid)
    sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
    if info.st_mode & 0o022 and not (stat.S_ISLNK(info.st_mode) or sticky_dir):
        return "%s is writable by others than root (mode %o)" % (path, stat.S_IMODE(info.st_mode))
    return None


def check_code(code_root, lstat=os.lstat, walk=os.walk):
    """Refuse, in one line, code that a non-root user can write: code_root, every directory above it, and
    everything below it must be root's and writable by root alone."""
    code_root = os.path.realpath(code_root)
    paths = []
    parent = code_root
    while True:
        paths.append(parent)
        if os.path.dirname(parent) == parent:
            break
        parent = os.path.dirname(parent)
    for top, dirs, files in walk(code_root):
        paths.extend(os.path.join(top, name) for name in dirs + files)
    for path in paths:
        try:
            problem = unsafe_entry(path, lstat(path))
        except OSError as e:
            problem = "%s: %s" % (path, e.strerror)
        if problem:
            raise TinyservError("root mode runs only code that root alone can write, and %s: install root mode "
                                "with 'tinyserv server:install --root root@HOST' (code in /opt/tinyserv)" % problem)


def place_locks(layout, environ=os.environ):
    """Root mode: the supervisor's locks and pid file in /run/tinyserv/<tag>, where only root writes.

    A root process knows root mode from its environment (the unit sets TINYSERV_DEPLOY_USER), never from a
    file the deploy user could remove; the deploy user's commands know it from run/root-mode.
    """
    if environ.get(DEPLOY_USER) or os.path.exists(os.path.join(layout.run_dir, MODE_FILE)):
        top = os.path.join(LOCK_TOP, layout.tag)
        layout.supervisor_lock = os.path.join(top, "supervisor.lock")
        layout.standby_lock = os.path.join(top, "standby.lock")
        layout.supervisor_pid = os.path.join(top, "supervisor.pid")
        layout.lock_dir = top
    return layout


def ensure_lock_dir(layout):
    """As root: make /run/tinyserv/<tag> (root's, 0755) and check that nobody else could have made it."""
    for path in (LOCK_TOP, layout.lock_dir):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        problem = unsafe_entry(path, os.lstat(path))
        if problem or not stat.S_ISDIR(os.lstat(path).st_mode):
            raise TinyservError("root mode keeps its locks in %s, but %s: remove it and restart tinyserv" % (
                path, problem or "it is not a directory"))


def open_lock(path):
    """Open (creating) a lock file of root's, never through a symlink."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)


# --- directories that another user can write: one component at a time, never through a symlink ---------

def open_dir(path):
    """A descriptor of the directory path, opened from / one component at a time without following a symlink;
    raise TinyservError when a component is a symlink or not a directory."""
    if not os.path.isabs(path):
        raise TinyservError("not an absolute path: %r" % path)
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in [p for p in path.split("/") if p]:
            if name in (".", ".."):
                raise TinyservError("%s has . or .. in it" % path)
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                raise TinyservError("%s is not a directory reached without symlinks (%s: %s)" % (
                    path, name, e.strerror)) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_dir(path, uid, gid, mode):
    """Make path (its parent must exist) if missing, then give it uid:gid and mode through its descriptor:
    a symlink planted at path, or anywhere above it, is refused, never followed."""
    parent = open_dir(os.path.dirname(path))
    try:
        name = os.path.basename(path)
        try:
            os.mkdir(name, mode & 0o777, dir_fd=parent)
        except FileExistsError:
            pass
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as e:
            raise TinyservError("%s is not a directory (a symlink is never followed): %s" % (path, e.strerror)) \
                from None
    finally:
        os.close(parent)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
