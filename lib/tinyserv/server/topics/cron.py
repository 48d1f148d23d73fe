"""cron: the app's scheduled jobs (the supervisor runs them: supervise/cron.py)."""

from tinyserv.supervise import cron


def index(layout, app):
    """cron: the current build's jobs, with when they last ran and run next."""
    return cron.listing(layout, app)
