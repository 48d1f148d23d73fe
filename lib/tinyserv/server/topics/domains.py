"""domains, domains:add, domains:remove: the host names an app answers at (the work: frontdoor/domains.py)."""

from tinyserv.frontdoor import domains


def index(layout, app):
    """domains: the app's default domain and the ones added."""
    return domains.listing(layout, app)


def add(layout, app, hostname):
    """domains:add HOST."""
    return domains.add(layout, app, hostname)


def remove(layout, app, hostname):
    """domains:remove HOST."""
    return domains.remove(layout, app, hostname)
