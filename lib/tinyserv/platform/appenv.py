"""The environment an app's processes and builds run with, built from scratch.

Apps started by a push, by `startup` at boot or by a config change must see the
same environment, so nothing is inherited from whoever happened to start them.
"""

import os
import pwd

from tinyserv.platform.procs import MARK

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def base_env(build_dir, meta, mark):
    """HOME, USER, LANG, a PATH with the build's own tool directories first, and the process mark.

    TINYSERV_INSTANCE (mark) is how tinyserv finds every process a build or an instance
    started, even daemons that left its process group.
    """
    user = pwd.getpwuid(os.geteuid())  # a root-mode supervisor works as the deploy user
    path = [os.path.join(build_dir, p) for p in meta.get("path", [])] + [BASE_PATH]
    env = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "LANG": "C.UTF-8",
        "PATH": ":".join(path),
    }
    env.update(meta.get("env", {}))
    env[MARK] = mark
    return env


def process_env(build_dir, meta, config, app, name, port, version, mark, data_dir):
    """Environment of one process: base, then config vars, then what tinyserv sets.

    data_dir (TINYSERV_DATA_DIR) is the app's persistent directory: every process, the
    release phase and `run` get it; builds do not (base_env), as their output is code.
    """
    env = base_env(build_dir, meta, mark)
    env.update(config)
    env.update(PORT=str(port), DYNO=name, PS=name, TINYSERV_APP=app,
               TINYSERV_RELEASE="v%d" % version, TINYSERV_INSTANCE=mark, TINYSERV_DATA_DIR=data_dir)
    return env
