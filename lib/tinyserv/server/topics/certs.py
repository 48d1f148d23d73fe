"""certs, certs:add, certs:remove, certs:auto:*: the app's TLS certificates (the work: frontdoor/certs.py)."""

from tinyserv.frontdoor import certs


def index(layout, app):
    """certs: the app's certificates."""
    return certs.listing(layout, app)


def add(layout, app, cert, key):
    """certs:add CERT KEY: serve the app's domains over HTTPS with a certificate and its key."""
    return certs.add(layout, app, cert, key)


def remove(layout, app, name=None):
    """certs:remove [NAME]."""
    return certs.remove(layout, app, name)


def auto_enable(layout, app):
    """certs:auto:enable: get and renew certificates for the app's domains (ACME)."""
    return certs.auto_enable(layout, app)


def auto_refresh(layout, app):
    """certs:auto:refresh: renew the automatic certificate now."""
    return certs.auto_refresh(layout, app)


def auto_disable(layout, app):
    """certs:auto:disable."""
    return certs.auto_disable(layout, app)
