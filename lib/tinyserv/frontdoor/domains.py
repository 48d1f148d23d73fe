"""domains, domains:add, domains:remove: the host names an app answers at on the HTTP (and HTTPS) port.

A host name belongs to one app only; nginx answers a host that no app claims with a 404 page.
With TINYSERV_DOMAIN=example.org every app also answers at APP.example.org, a name no other app
may claim. Names are checked at the door (pure: check_domain) and refused, never rewritten.
"""

from tinyserv.state import appstate
from tinyserv.frontdoor import changes as frontdoor
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import APP_NAME, check_domain

MAX_DOMAINS = 100  # per app


def default_domain(app):
    """APP.<TINYSERV_DOMAIN>, or None when it is not set."""
    base = settings.base_domain()
    return "%s.%s" % (app, base) if base else None


def owner(layout, name):
    """The app that answers at name (by domains:add or TINYSERV_DOMAIN), or None."""
    base = settings.base_domain()
    if base and name.endswith("." + base) and APP_NAME.match(name[:-len(base) - 1]) and layout.exists(
            name[:-len(base) - 1]):
        return name[:-len(base) - 1]
    for app in layout.apps():
        try:
            if name in appstate.router_settings(layout, app)["domains"]:
                return app
        except TinyservError:
            continue  # a damaged app's domains are unknown; `apps` reports it
    return None


def listing(layout, app):
    """domains: the app's own domains, its default one, and where nginx answers for them."""
    layout.require(app)
    saved = appstate.router_settings(layout, app)
    from tinyserv.frontdoor.router import covers
    https = {}
    for cert in saved["certs"]:
        for domain in saved["domains"] + ([default_domain(app)] if default_domain(app) else []):
            if covers(cert["names"], domain):
                https.setdefault(domain, cert["name"])
    return {"app": app, "default": default_domain(app), "domains": saved["domains"], "https": https,
            "http_port": settings.http_port(), "https_port": settings.https_port(),
            "front_door": frontdoor.status(layout)}


def add(layout, app, hostname):
    """domains:add HOST: the app answers at HOST on the HTTP port (and HTTPS, with a certificate)."""
    check_domain(hostname)

    def mutate(saved):
        taken = owner(layout, hostname)
        if taken == app:
            raise TinyservError("%s already answers at %s" % (app, hostname))
        if taken:
            raise TinyservError("%s belongs to the app %s: remove it there first ('tinyserv domains:remove %s -a %s')"
                                % (hostname, taken, hostname, taken))
        base = settings.base_domain()
        if base and hostname.endswith("." + base) and APP_NAME.match(hostname[:-len(base) - 1]):
            raise TinyservError("%s is the name the app %s would answer at (TINYSERV_DOMAIN=%s): pick another" % (
                hostname, hostname[:-len(base) - 1], base))
        if len(saved["domains"]) >= MAX_DOMAINS:
            raise TinyservError("%s has %d domains, the most an app may have" % (app, MAX_DOMAINS))
        return dict(saved, domains=sorted(saved["domains"] + [hostname]))
    frontdoor.change(layout, app, mutate, every_app=True)
    return listing(layout, app)


def remove(layout, app, hostname):
    """domains:remove HOST."""
    check_domain(hostname)

    def mutate(saved):
        if hostname not in saved["domains"]:
            if hostname == default_domain(app):
                raise TinyservError("%s is %s's name under TINYSERV_DOMAIN; it cannot be removed" % (hostname, app))
            raise TinyservError("%s does not answer at %s (see 'tinyserv domains')" % (app, hostname))
        return dict(saved, domains=[d for d in saved["domains"] if d != hostname])
    frontdoor.change(layout, app, mutate)
    return listing(layout, app)
