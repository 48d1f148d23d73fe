"""rollback: go back to an earlier release's build and config."""

import os

from tinyserv.state import releases
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError


def index(layout, name, version=None, by=None):
    """rollback [vN]: go back to an earlier release's build and config, without rebuilding (boot-checked like a
    push)."""
    from tinyserv.deploy import push, rollout, swarm
    layout.require(name)
    version = releases.version_number(version) if version is not None else None
    with push.changing(layout, name):
        history = releases.history(layout, name)
        current = history[-1]
        if version is None:
            if current["version"] < 2:
                raise TinyservError("%s has no earlier release to rollout.roll back to" % name)
            version = current["version"] - 1
        target = releases.find(layout, name, version)
        if not target["build"]:
            raise TinyservError("v%d has no code (nothing was deployed then)" % version)
        if not os.path.isdir(layout.build_dir(name, target["build"])):
            raise TinyservError("the build of v%d was pruned (TINYSERV_KEEP_BUILDS keeps the last %d)"
                                % (version, settings.keep_builds()))
        swarm.check_rollback(layout, name, target)
        return rollout.roll(layout, name, "Rollback to v%d" % version, target["config"], target, by)
