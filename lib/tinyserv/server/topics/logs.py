"""logs: the app's log (the work: state/logs.py; a swarm app's tasks: server/scheduler.py)."""

from tinyserv.server import scheduler


def index(layout, app, num, following, ps, raw):
    """logs [-n N] [-t] [--ps TYPE] [--raw]: the last lines of the app's log, then follow it (stream)."""
    return scheduler.show_logs(layout, app, num, following, ps, raw)
