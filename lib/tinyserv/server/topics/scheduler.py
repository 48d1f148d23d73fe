"""scheduler:set: who runs an app's processes, this server or a Docker Swarm (the work: server/scheduler.py and
deploy/swarm.py)."""

from tinyserv.server import scheduler


def set_(layout, app, name, by=None):
    """scheduler:set local|swarm: a deployed app moves there (its current release, switched once it answers)."""
    return scheduler.set_scheduler(layout, app, name, by)
