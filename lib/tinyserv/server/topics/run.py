"""run: a one-off command in the app's environment."""

import os

from tinyserv.state import appstate, releases
from tinyserv.common import settings
from tinyserv.platform import privileged
from tinyserv.common.errors import TinyservError


def index(layout, name, command):
    """Replace this process with the command, in the current build, with the app's config (stream)."""
    from tinyserv.platform import appenv
    layout.require(name)
    release = releases.current(layout, name)
    if not release["build"]:
        raise TinyservError("%s has not been deployed yet: push it first" % name)
    argv = ["/bin/sh", "-c", command[0]] if len(command) == 1 else command
    if not argv:
        raise TinyservError("run needs a command, e.g. 'tinyserv run bash'")
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.server import scheduler
        return scheduler.run(layout, name, argv)
    build_dir = layout.build_dir(name, release["build"])
    meta = appstate.build_meta(layout, name, release["build"])
    from tinyserv.platform import boot
    port = boot.free_port() if settings.nginx_binary() else releases.port(layout, name)  # nginx holds the app's
    env = appenv.process_env(build_dir, meta, release["config"], name, "run.1", port,
                             release["version"], layout.mark(name, "run.%d" % os.getpid()),
                             layout.ensure_data_dir(name))
    try:
        return privileged.attach(layout, name, argv, build_dir, env)
    except (OSError, ValueError) as e:
        raise TinyservError("cannot run %s: %s" % (argv[0], getattr(e, "strerror", None) or e)) from None
