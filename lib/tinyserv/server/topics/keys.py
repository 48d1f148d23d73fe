"""keys, keys:add, keys:remove: deploy keys, which may push and run these commands (the work: server/keys.py)."""

from tinyserv.server import keys


def index(layout):
    """keys: every deploy key."""
    return keys.listing(layout)


def add(layout, name, key, apps=None, push_only=False):
    """keys:add NAME: a deploy key, limited to some apps or to pushing if asked."""
    return keys.add(layout, name, key, apps, push_only)


def remove(layout, name):
    """keys:remove NAME: it can no longer log in."""
    return keys.remove(layout, name)
