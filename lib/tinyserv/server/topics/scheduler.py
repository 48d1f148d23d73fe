"""scheduler:set: who runs an app's processes, this server or a Docker Swarm (the work: server/scheduler.py and
deploy/swarm.py)."""

from tinyserv.server import scheduler


def set_(layout, app, name):
    """scheduler:set local|swarm: from the app's next deploy on."""
    return scheduler.set_scheduler(layout, app, name)
