"""tinyserv: a tiny Heroku for your own server (standard library only).

The packages say which side runs what: cli/ on the developer's machine, server/ and what it uses on the
server, common/ on both (docs/architecture.md draws the whole picture).
"""

import os

__version__ = "0.1.0"

# The checkout or installed version this code is part of: <CODE_ROOT>/bin and <CODE_ROOT>/lib.
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
REMOTE_SCRIPT = os.path.join(CODE_ROOT, "bin", "tinyserv-remote")
