"""addons, addons:create, addons:destroy, addons:info: an app's add-ons (the work: addons/registry.py)."""

from tinyserv.addons import registry


def index(layout, app):
    """addons: the app's add-ons."""
    return registry.listing(layout, app)


def create(layout, app, kind, by=None):
    """addons:create KIND: provision, then a release with its URL."""
    return registry.create(layout, app, kind, by)


def destroy(layout, app, addon, by=None):
    """addons:destroy NAME: a release without its config var, then it goes with its data."""
    return registry.destroy(layout, app, addon, by)


def info(layout, app, addon):
    """addons:info NAME."""
    return registry.info(layout, app, addon)
