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


def unpack_command(ident):
    """The remote shell command that unpacks standard input as version ident and runs its setup."""
    with open(unpack.__file__) as f:
        program = f.read()
    return command_line(["python3", "-c", program, ident])


def server_version(remote):
    """The version of tinyserv on the server (None when it has none): JSON from this version, text from older."""
    result = remote.run(["version"], "{}")
    remote.check_reached(result.returncode, result.stderr)
    if result.returncode != 0:
        return None
    import json
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        return result.stdout.strip().splitlines()[0] if result.stdout.strip() else None
    return answer.get("version") if isinstance(answer, dict) else str(answer)


def install(remote, say):
    """Install (or upgrade to) this version on remote's server; the doctor's exit code."""
    before = server_version(remote)
    data = package()
    ident = version_id(data)
    say("-----> %s tinyserv %s on %s%s" % ("Installing" if before is None else "Upgrading", __version__,
                                          remote.host or "this machine",
                                          "" if before is None else " (it has %s)" % before))
    code = remote.pipe(unpack_command(ident), data)
    if code == NOT_FOUND:
        raise TinyservError("the server has no python3: install it there (sudo apt install python3 git) "
                            "and run server:install again")
    if code != 0:
        raise TinyservError("installing tinyserv on the server failed (exit %d): see the lines above" % code)
    say("-----> Checking the server as ssh commands see it: tinyserv-remote doctor")
    code = remote.stream(["doctor"])
    if code == NOT_FOUND:
        raise TinyservError("ssh commands on the server do not find tinyserv-remote: make bash the login shell "
                            "there (sudo chsh -s /bin/bash USER), whose ~/.bashrc has tinyserv's PATH line")
    return code
