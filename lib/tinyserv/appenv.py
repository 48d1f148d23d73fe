"""The environment an app's processes and builds run with, built from scratch.

Apps started by a push, by `startup` at boot or by a config change must see the
same environment, so nothing is inherited from whoever happened to start them.
"""

import os
import pwd

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def base_env(build_dir, meta):
    """HOME, USER, LANG and a PATH with the build's own tool directories first."""
    user = pwd.getpwuid(os.getuid())
    path = [os.path.join(build_dir, p) for p in meta.get("path", [])] + [BASE_PATH]
    env = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "LANG": "C.UTF-8",
        "PATH": ":".join(path),
    }
    env.update(meta.get("env", {}))
    return env


def process_env(build_dir, meta, config, app, name, port, version):
    """Environment of one process: base, then config vars, then what tinyserv sets."""
    env = base_env(build_dir, meta)
    env.update(config)
    env.update(PORT=str(port), DYNO=name, PS=name, TINYSERV_APP=app,
               TINYSERV_RELEASE="v%d" % version)
    return env
