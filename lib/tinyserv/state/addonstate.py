"""An app's add-on list: apps/<app>/addons.json (0600: it holds their URLs), read and written here.

The commands that change add-ons are in addons/registry.py and addons/postgres.py; this is the record
they share, and what the rest of the server reads (a port held by a Redis add-on, a backup's list).
"""

import contextlib

from tinyserv.state import store
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import APP_NAME

ADDON = {"name": str, "kind": str, "var": str, "url": str, "created_at": str, "state": str,
         "?port": int, "?database": str}
ADDONS = {"addons": [ADDON]}
CREATING, READY = "creating", "created"



def addons_file(layout, app):
    """apps/<app>/addons.json."""
    return layout.app_file(app, "addons.json")


def load(layout, app):
    """The app's add-ons, oldest first (none when it never had one)."""
    return store.load(addons_file(layout, app), ADDONS, {"addons": []})["addons"]


def save(layout, app, addons):
    """Write the app's add-on list (none: no file, as before its first add-on)."""
    if addons:
        store.write_json(addons_file(layout, app), {"addons": addons}, mode=0o600)
    else:
        store.remove(addons_file(layout, app))


def record(layout, app, addon):
    """Write addon into the app's list (replacing the entry of the same name)."""
    save(layout, app, [a for a in load(layout, app) if a["name"] != addon["name"]] + [addon])


def forget(layout, app, name):
    """Drop the add-on called name from the app's list."""
    save(layout, app, [a for a in load(layout, app) if a["name"] != name])


@contextlib.contextmanager
def changing(layout, app):
    """Hold the app's add-on lock: one add-on change at a time per app."""
    with store.locked(layout.app_file(app, "addons.lock")):
        yield


def find(layout, app, name):
    """The add-on called name of app, or one line saying which there are."""
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise TinyservError("%r is not an add-on name like redis-1a2b3c4d (see 'tinyserv addons')" % (name,))
    for addon in load(layout, app):
        if addon["name"] == name:
            return addon
    names = ", ".join(a["name"] for a in load(layout, app)) or "none"
    raise TinyservError("%s has no add-on named %s (it has: %s)" % (app, name, names))


def held_ports(layout):
    """Ports of every app's add-ons (an app whose add-on list cannot be read holds none we know of)."""
    held = set()
    for app in layout.apps():
        with contextlib.suppress(TinyservError):
            held |= {a["port"] for a in load(layout, app) if "port" in a}
    return held
