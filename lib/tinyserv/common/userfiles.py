"""Files a user names to tinyserv (a .env, a public key, PEM files, a Procfile for `local`), and the JSON
tinyserv-remote reads on standard input: each read up to a stated limit and refused in one line past it,
so that `config:push -e /dev/zero` is an error, not the whole machine's memory.

A named file must be a regular file (a symlink to one is fine): a device, a FIFO or a directory is
refused before anything is read. The limits are in docs/installation.md's reference.
"""

import os
import stat

from tinyserv.common.errors import TinyservError

KiB = 1024
MiB = 1024 * KiB
MAX_ENV = 1 * MiB         # a .env file (config:push, config:pull, local -e)
MAX_PROCFILE = 1 * MiB    # a Procfile for `local` (a pushed one has the same limit: deploy/build.py)
MAX_PUBLIC_KEY = 16 * KiB  # keys:add's .pub file
MAX_STDIN = 1 * MiB       # tinyserv-remote's JSON on standard input (certs:add's PEM files are the largest)


def size_text(limit):
    """1048576 -> '1 MiB', 65536 -> '64 KiB'."""
    return "%d MiB" % (limit // MiB) if limit % MiB == 0 else "%d KiB" % (limit // KiB)


def too_large(what, limit):
    """The error for more than limit bytes of what."""
    return TinyservError("%s is larger than %s, the most tinyserv reads" % (what, size_text(limit)))


def read_bytes(path, limit, what=None):
    """The bytes of the regular file at path, at most limit of them; what names it in errors (default: path)."""
    what = what or path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once, so that it can be refused
    except OSError as e:
        raise TinyservError("cannot read %s: %s" % (what, e.strerror)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise TinyservError("cannot read %s: it is not a regular file" % what)
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise too_large(what, limit)
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise TinyservError("cannot read %s: %s" % (what, e.strerror)) from None
    if len(data) > limit:  # it grew while we read it
        raise too_large(what, limit)
    return data


def read_text(path, limit, what=None):
    """read_bytes, as UTF-8 text."""
    try:
        return read_bytes(path, limit, what).decode("utf-8")
    except UnicodeDecodeError:
        raise TinyservError("cannot read %s: it is not UTF-8 text" % (what or path)) from None


def read_stream(stream, limit, what):
    """Up to limit bytes of a binary stream (standard input), refused past it."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(what, limit)
    return data


def parse_json(text, what):
    """JSON a user wrote (app.json, package.json): one line when it is not valid or nests too deeply, never
    Python's RecursionError (a 100,000-deep list)."""
    import json
    try:
        return json.loads(text)
    except ValueError as e:
        raise TinyservError("%s is not valid JSON: %s" % (what, e)) from None
    except RecursionError:
        raise TinyservError("%s nests too deeply to be read: keep it to a few levels" % what) from None
