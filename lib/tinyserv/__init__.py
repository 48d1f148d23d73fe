"""tinyserv: a tiny Heroku for your own server (standard library only).

The packages say which side runs what: cli/ on the developer's machine, server/ and what it uses on the
server, common/ on both (docs/architecture.md draws the whole picture).
"""

import os
import sys

__version__ = "0.1.0"

# The checkout or installed version this code is part of: <CODE_ROOT>/bin and <CODE_ROOT>/lib.
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
REMOTE_SCRIPT = os.path.join(CODE_ROOT, "bin", "tinyserv-remote")


def cache_bytecode_per_user(environ=os.environ, euid=None, package_dir=os.path.dirname(os.path.realpath(__file__))):
    """Where this code cannot write its bytecode (installed read-only), keep it in the user's cache instead.

    Without this, every command would compile every module it imports again. Never for root: root imports only
    bytecode root wrote (root mode compiles at install), not a cache another user could have written.
    Returns the directory used, or None.
    """
    euid = os.geteuid() if euid is None else euid
    pycache = os.path.join(package_dir, "__pycache__")
    if euid == 0 or sys.dont_write_bytecode or os.access(pycache if os.path.isdir(pycache) else package_dir,
                                                          os.W_OK):
        return None
    home = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    sys.pycache_prefix = os.path.join(home, "tinyserv", "bytecode")
    return sys.pycache_prefix
