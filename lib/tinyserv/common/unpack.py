"""On the server, before tinyserv is there: unpack one version of tinyserv's code and make it the current one.

`tinyserv server:install` sends this file's text as the program of `python3 -c`, with the code as a gzipped
tar on standard input, so it imports nothing of tinyserv (and only what Python 3.9 has). The code lives in

  ~/.tinyserv-code/versions/<id>/   bin/ and lib/ of one version, complete before it is used, never changed
  ~/.tinyserv-code/current          a symlink to versions/<id>: the version `tinyserv-remote` on PATH runs

`current` is switched with a rename, so a command that starts during an upgrade runs one version or the
other, never a mix. The newest KEEP versions stay: the previous one may still run the old supervisor.

Run as root (`server:install --root`, root mode), the code goes to /opt/tinyserv instead: the same layout, every
directory and file root's and writable by root alone, compiled by root, so that the root supervisor never runs
or imports a byte a non-root user could have written.
"""

import compileall
import os
import re
import shutil
import sys
import tarfile
import tempfile

CODE_HOME = ".tinyserv-code"  # under the server user's home directory
ROOT_CODE_HOME = "/opt/tinyserv"  # root mode's: root-owned, outside every other user's reach
UNIT_PATH = "/etc/systemd/system/tinyserv.service"
KEEP = 3
MIN_PYTHON = (3, 9)
IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,80}\Z")
PARTS = ("bin", "lib")


class UnpackError(Exception):
    """The code cannot be unpacked; the message says why (main prints it as tinyserv's one line)."""


def code_home(home=None):
    """~/.tinyserv-code, where every version's code lives (root mode's is ROOT_CODE_HOME)."""
    return os.path.join(home or os.path.expanduser("~"), CODE_HOME)


def installed_script(real_script, home=None):
    """The path that always runs the current version (…/current/bin/tinyserv-remote) when real_script is a
    version's own copy under code_home() or root mode's /opt/tinyserv; else real_script (a checkout)."""
    for top in (code_home(home), ROOT_CODE_HOME):
        versions = os.path.join(os.path.realpath(top), "versions") + os.sep
        if os.path.realpath(real_script).startswith(versions):
            return os.path.join(top, "current", "bin", os.path.basename(real_script))
    return real_script


def root_mode_unit(path=UNIT_PATH):
    """Does this server's systemd unit run tinyserv in root mode (its supervisor as root)?"""
    try:
        with open(path) as f:
            return "\nEnvironment=TINYSERV_DEPLOY_USER=" in f.read()
    except OSError:
        return False


def ensure_root_home(home):
    """/opt/tinyserv and its versions/: root's, 0755, real directories (never a symlink someone left there)."""
    for path in (os.path.dirname(home), home, os.path.join(home, "versions")):
        os.makedirs(path, mode=0o755, exist_ok=True)
        info = os.lstat(path)
        if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != 0 or info.st_mode & 0o022:
            raise UnpackError("%s must be a directory of root's that only root may write "
                              "(chown root:root %s; chmod 755 %s)" % (path, path, path))


def unpack(stream, ident, home):
    """Put the version `ident` from the tar on stream into home/versions/ident (once); return that path."""
    if not IDENT.match(ident):
        raise UnpackError("%r is not a version name" % ident)
    versions = os.path.join(home, "versions")
    os.makedirs(versions, mode=0o755, exist_ok=True)
    target = os.path.join(versions, ident)
    if os.path.isdir(target):
        os.utime(target)  # complete already (renamed into place only when it was); now the newest
        return target
    incoming = tempfile.mkdtemp(prefix=".incoming-", dir=versions)
    try:
        extract(stream, incoming)
        for part in PARTS:
            if not os.path.isdir(os.path.join(incoming, part)):
                raise UnpackError("the code sent has no %s/ directory" % part)
        pin_python(os.path.join(incoming, "bin"), sys.executable)
        # Compiled now, once: every later command starts without compiling (and a directory of its
        # own is writable, unlike a shared checkout).
        compileall.compile_dir(os.path.join(incoming, "lib"), quiet=1)
        os.chmod(incoming, 0o755)
        os.rename(incoming, target)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return target


def extract(stream, dest):
    """Write the regular files and directories of a gzipped tar stream under dest; refuse anything else."""
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for member in tar:
                path = safe_path(dest, member.name)
                if member.isdir():
                    os.makedirs(path, mode=0o755, exist_ok=True)
                elif member.isfile():
                    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                    with open(path, "wb") as out:
                        shutil.copyfileobj(tar.extractfile(member), out)
                    os.chmod(path, 0o755 if member.mode & 0o111 else 0o644)
                else:
                    raise UnpackError("%r in the code sent is neither a file nor a directory" % member.name)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UnpackError("the code sent could not be unpacked: %s" % e) from None


def pin_python(bin_dir, python):
    """Start the launchers with this Python directly, without site (`#!/usr/bin/python3 -S`): no `env` to run
    and no site-packages to scan at every command (tinyserv needs only the standard library)."""
    if not os.path.isabs(python) or any(c.isspace() for c in python):
        return
    for name in os.listdir(bin_dir):
        path = os.path.join(bin_dir, name)
        with open(path, "rb") as f:
            text = f.read()
        if text.startswith(b"#!/usr/bin/env python3\n"):
            with open(path, "wb") as f:
                f.write(b"#!" + python.encode() + b" -S\n" + text[len(b"#!/usr/bin/env python3\n"):])


def safe_path(dest, name):
    """dest/name, for a name inside bin/ or lib/ (no absolute paths, no '..')."""
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or parts[0] not in PARTS:
        raise UnpackError("%r in the code sent is outside bin/ and lib/" % name)
    return os.path.join(dest, *[p for p in parts if p not in ("", ".")])


def switch(home, ident):
    """Make `current` point at versions/ident, atomically (a new symlink renamed over the old one)."""
    link = os.path.join(home, "current")
    fresh = link + ".new"
    if os.path.lexists(fresh):
        os.unlink(fresh)
    os.symlink(os.path.join("versions", ident), fresh)
    os.replace(fresh, link)


def current(home):
    """The id `current` points at (None before the first install)."""
    try:
        return os.path.basename(os.readlink(os.path.join(home, "current")))
    except OSError:
        return None


def prune(home, keep=KEEP):
    """Delete all but the newest `keep` versions (never the current one) and unfinished unpackings."""
    versions = os.path.join(home, "versions")
    names = [n for n in os.listdir(versions) if not n.startswith(".")]
    names.sort(key=lambda n: os.stat(os.path.join(versions, n)).st_mtime, reverse=True)
    for name in names[keep:]:
        if name != current(home):
            shutil.rmtree(os.path.join(versions, name), ignore_errors=True)
    for name in os.listdir(versions):
        if name.startswith(".incoming-"):
            shutil.rmtree(os.path.join(versions, name), ignore_errors=True)


def main(argv):
    """python3 -c <this file> ID [setup arguments]: unpack stdin's code as ID, switch to it, run its setup."""
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write("tinyserv: the server's python3 is %d.%d; tinyserv needs %d.%d or later "
                         "(sudo apt install python3)\n" % (sys.version_info[:2] + MIN_PYTHON))
        return 3
    root_install = "--deploy-user" in argv[2:]
    home = ROOT_CODE_HOME if root_install else code_home()
    if root_install and os.geteuid() != 0:
        sys.stderr.write("tinyserv: server:install --root connects as root: name root@HOST\n")
        return 4
    if not root_install and os.geteuid() != 0 and root_mode_unit():
        sys.stderr.write("tinyserv: this server runs in root mode: upgrade it as root, with "
                         "'tinyserv server:install --root root@HOST'\n")
        return 4
    try:
        if os.geteuid() == 0:
            os.umask(0o022)
            ensure_root_home(home)
        unpack(sys.stdin.buffer, argv[1], home)
        switch(home, argv[1])
        prune(home)
    except (UnpackError, OSError) as e:
        sys.stderr.write("tinyserv: cannot install tinyserv's code in %s: %s\n" % (home, e))
        return 1
    script = os.path.join(home, "current", "bin", "tinyserv-remote")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, script, "setup", *argv[2:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
