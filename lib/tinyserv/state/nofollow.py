"""Files in directories another user can write (an app's build, data and home in root mode), read without
ever following a link planted there.

Checking a path and then opening it again is a race: in between, the app's user can swap in a symlink
(to a file only the deploy user may read). So every name is opened once, relative to its directory's
open descriptor, with O_NOFOLLOW; its type, size and contents come from that descriptor, and nothing
is looked up by path again.
"""

import collections
import errno
import os
import stat

from tinyserv.common.errors import TinyservError

FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a planted pipe cannot hang us
MAX_LINKS = 40  # as the kernel's own limit
MAX_DEPTH = 100  # directories held open at once by walk

# rel: its path under the walk's top; info: its fstat (a link's lstat); fd: its open descriptor (None
# for a link), valid while the caller holds the Found; link: a link's target, else None.
Found = collections.namedtuple("Found", "rel info fd link")


class Outside(TinyservError):
    """A link that leads out of the tree it is in (an absolute target, '..' above the top, a loop)."""


def open_dir(path):
    """A descriptor of the directory path, its last component not followed; None when it is missing."""
    try:
        return os.open(path, FLAGS | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TinyservError("cannot open the directory %s: %s" % (path, e.strerror)) from None


def open_entry(name, dir_fd=None):
    """name (in the directory dir_fd, or a path) opened without following it: a Found, or None when it is
    gone or is none of a file, a directory and a link (a pipe, a socket)."""
    try:
        fd = os.open(name, FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return _link(name, dir_fd)
        if e.errno in (errno.ENXIO, errno.EOPNOTSUPP):
            return None  # a socket
        raise
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
        return Found(name, info, fd, None)
    os.close(fd)
    return None


def _link(name, dir_fd):
    try:
        target = os.readlink(name, dir_fd=dir_fd)
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None  # swapped again or gone as we looked: its owner changed it, there is nothing to take
    return Found(name, info, None, target) if stat.S_ISLNK(info.st_mode) else None


def open_beneath(top_fd, relpath):
    """A descriptor of relpath under the directory top_fd; None when there is no such file.

    Links are resolved here, one component at a time, so that none leads out of the tree: an absolute
    target or a '..' above the top raises Outside. The descriptor is O_NONBLOCK (a pipe opens at once).
    """
    parts = _parts(relpath)
    dirs = [os.dup(top_fd)]  # the directories passed through: '..' goes back one, never above the top
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(dirs) == 1:
                    raise Outside("%s leads above its directory" % relpath)
                os.close(dirs.pop())
                continue
            try:
                fd = os.open(name, FLAGS, dir_fd=dirs[-1])
            except FileNotFoundError:
                return None
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if e.errno == errno.ENOTDIR:
                    return None
                links += 1
                if links > MAX_LINKS:
                    raise Outside("%s: too many levels of links" % relpath) from None
                parts[:0] = _target(name, dirs[-1], relpath)
                continue
            if not parts:
                return fd
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            dirs.append(fd)
        return os.dup(dirs[-1])
    finally:
        for fd in dirs:
            os.close(fd)


def _parts(path):
    return [p for p in path.split("/") if p not in ("", ".")]


def _target(name, dir_fd, relpath):
    """The components of the link name's target (none when it stopped being a link: look again)."""
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return [name]  # swapped back as we looked: open it again (the link count bounds this)
    if target.startswith("/"):
        raise Outside("%s leads to %s, outside its directory" % (relpath, target))
    return _parts(target)


def read_beneath(top_fd, relpath, limit):
    """(fstat, bytes) of the regular file relpath under top_fd (open_beneath); None when there is none.

    Raises TinyservError when it is not a regular file or holds more than limit bytes.
    """
    fd = open_beneath(top_fd, relpath)
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TinyservError("%s is not a regular file" % relpath)
        if info.st_size > limit:
            raise TinyservError("%s is larger than %d KiB" % (relpath, limit // 1024))
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            return info, f.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def walk(top_fd, skip=lambda rel: False, too_deep=lambda rel: None):
    """Every directory, regular file and link under the directory top_fd as a Found, depth first in name
    order, a directory's entries right after it; each opened by name in its directory's descriptor.

    skip(rel) leaves an entry out (and, for a directory, all it holds). A directory MAX_DEPTH levels
    down is given, but not entered: too_deep(rel) is told. Entries that vanish meanwhile are left out.
    """
    stack = [("", os.dup(top_fd), iter(sorted(os.listdir(top_fd))))]
    try:
        while stack:
            rel_dir, dir_fd, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(stack.pop()[1])
                continue
            rel = os.path.join(rel_dir, name)
            if skip(rel):
                continue
            found = open_entry(name, dir_fd)
            if found is None:
                continue
            found = found._replace(rel=rel)
            keep = False
            try:
                yield found
                if found.fd is not None and stat.S_ISDIR(found.info.st_mode):
                    if len(stack) >= MAX_DEPTH:
                        too_deep(rel)
                    else:
                        stack.append((rel, found.fd, iter(sorted(os.listdir(found.fd)))))
                        keep = True
            finally:
                if found.fd is not None and not keep:
                    os.close(found.fd)
    finally:
        for _, fd, _ in stack:
            os.close(fd)
