"""`tinyserv server:install`, the laptop's side: send this version's bin/ and lib/ to the server over ssh.

No git clone on the server: the code goes as a gzipped tar on the standard input of `python3 -c
<unpack.py>`, which unpacks it into ~/.tinyserv-code/versions/<id>, makes it current and runs its
`tinyserv-remote setup`. Then `tinyserv-remote doctor`, run by name as any later command will be, shows
that ssh commands find it.
"""

import gzip
import hashlib
import io
import os
import tarfile

from tinyserv import CODE_ROOT, __version__
from tinyserv.common import unpack
from tinyserv.common.errors import TinyservError
from tinyserv.cli.transport import command_line

NOT_FOUND = 127  # the shell's exit code for a command it cannot find


def package(root=CODE_ROOT):
    """bin/ and lib/ under root as gzipped tar bytes; the same code always gives the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for part in unpack.PARTS:
            for path in sorted(files_under(os.path.join(root, part))):
                name = os.path.relpath(path, root).replace(os.sep, "/")
                info = tarfile.TarInfo(name)
                with open(path, "rb") as f:
                    data = f.read()
                info.size = len(data)
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def files_under(directory):
    """Every regular file below directory, without Python's caches."""
    if not os.path.isdir(directory):
        raise TinyservError("%s is missing: server:install sends a checkout's bin/ and lib/" % directory)
    for top, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(top, name)
            if not name.endswith(".pyc") and os.path.isfile(path) and not os.path.islink(path):
                yield path


def version_id(data):
    """The name of this code on the server: the version and a digest, so a changed tree is a new directory."""
    return "%s-%s" % (__version__, hashlib.sha256(data).hexdigest()[:12])


def unpack_command(ident, setup_args=()):
    """The remote shell command that unpacks standard input as version ident and runs its setup."""
    with open(unpack.__file__) as f:
        program = f.read()
    return command_line(["python3", "-c", program, ident, *setup_args])


def server_info(remote):
    """What the server's tinyserv says of itself ({} when it has none): its version, whether it is in root mode."""
    result = remote.run(["version"], "{}")
    remote.check_reached(result.returncode, result.stderr)
    if result.returncode != 0:
        return {}
    import json
    try:
        answer = json.loads(result.stdout)
    except ValueError:  # older versions answered text
        return {"version": result.stdout.strip().splitlines()[0]} if result.stdout.strip() else {}
    return answer if isinstance(answer, dict) else {"version": str(answer)}


def server_version(remote):
    """The version of tinyserv on the server (None when it has none)."""
    return server_info(remote).get("version")


def install(remote, say, root_user=None):
    """Install (or upgrade to) this version on remote's server; the doctor's exit code.

    root_user: root mode (`--root`, connected as root): the code goes root-owned to /opt/tinyserv, and
    root_user is the deploy user (made if missing).
    """
    if root_user is not None:
        return install_root(remote, say, root_user)
    info = server_info(remote)
    if info.get("root_mode"):
        raise TinyservError("this server runs in root mode: upgrade it as root with 'tinyserv server:install "
                            "--root root@%s'" % remote.host.rpartition("@")[2])
    before = info.get("version")
    data = package()
    ident = version_id(data)
    say("-----> %s tinyserv %s on %s%s" % ("Installing" if before is None else "Upgrading", __version__,
                                          remote.host or "this machine",
                                          "" if before is None else " (it has %s)" % before))
    send(remote, ident, data)
    say("-----> Checking the server as ssh commands see it: tinyserv-remote doctor")
    code = remote.stream(["doctor"])
    if code == NOT_FOUND:
        raise TinyservError("ssh commands on the server do not find tinyserv-remote: make bash the login shell "
                            "there (sudo chsh -s /bin/bash USER), whose ~/.bashrc has tinyserv's PATH line")
    return code


def install_root(remote, say, user):
    """server:install --root: the code root-owned in /opt/tinyserv, the deploy user, the unit; then the doctor
    as the deploy user."""
    data = package()
    ident = version_id(data)
    say("-----> Installing tinyserv %s on %s in root mode (deploy user %s)" % (__version__, remote.host, user))
    send(remote, ident, data, ["--deploy-user", user])
    say("-----> Checking the server as %s's ssh commands see it: tinyserv-remote doctor" % user)
    script = "%s/current/bin/tinyserv-remote" % unpack.ROOT_CODE_HOME
    return remote.pipe(command_line(["runuser", "-u", user, "--", script, "doctor"]), b"")


def send(remote, ident, data, setup_args=()):
    """Unpack the code on the server as version ident and run its setup; raise when that failed."""
    code = remote.pipe(unpack_command(ident, setup_args), data)
    if code == NOT_FOUND:
        raise TinyservError("the server has no python3: install it there (sudo apt install python3 git) "
                            "and run server:install again")
    if code != 0:
        raise TinyservError("installing tinyserv on the server failed (exit %d): see the lines above" % code)
