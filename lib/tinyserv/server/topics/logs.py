"""logs: the app's log (the work: state/logs.py)."""

from tinyserv.state import logs


def index(layout, app, num, following, ps):
    """logs [-n N] [-t] [--ps TYPE]: the last lines of the app's log, then follow it (stream)."""
    return logs.show(layout, app, num, following, ps)
