"""maintenance, maintenance:on, maintenance:off: nginx answers every request with a 503 page; processes keep running."""

from tinyserv.state import appstate
from tinyserv.frontdoor import changes


def index(layout, app):
    """maintenance: is the app in maintenance mode?"""
    layout.require(app)
    return {"maintenance": appstate.router_settings(layout, app)["maintenance"]}


def on(layout, app):
    """maintenance:on: nginx answers 503 with a short page; the app's processes keep running."""
    return _set(layout, app, True)


def off(layout, app):
    """maintenance:off: nginx serves the app again."""
    return _set(layout, app, False)


def _set(layout, app, on):
    new = changes.change(layout, app, lambda s: dict(s, maintenance=on))
    return {"maintenance": new["maintenance"]}
