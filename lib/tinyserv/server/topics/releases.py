"""releases, releases:info: an app's history of releases."""

from tinyserv.state import releases
from tinyserv.common.errors import TinyservError


def index(layout, name, num=None):
    """releases [-n N]: newest first."""
    layout.require(name)
    if num is not None and num < 1:
        raise TinyservError("-n must be 1 or more, not %d" % num)
    shown = [releases.summary(r) for r in reversed(releases.history(layout, name))]
    return shown[:num] if num else shown


def info(layout, name, version=None):
    """releases:info [vN]: one release (the current one by default)."""
    layout.require(name)
    release = (releases.find(layout, name, releases.version_number(version)) if version
               else releases.current(layout, name))
    return releases.summary(release)
