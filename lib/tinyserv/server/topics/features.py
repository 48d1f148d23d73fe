"""features, features:enable, features:disable: what the front door does for an app beyond routing."""

from tinyserv.state import appstate
from tinyserv.frontdoor import changes
from tinyserv.common.names import FEATURES, check_feature

FEATURE_HELP = {"http-session-affinity": "keep each client on one web instance (a cookie, as Heroku's router sets)"}


def index(layout, app):
    """features: every feature, enabled or not."""
    layout.require(app)
    enabled = appstate.router_settings(layout, app)["features"]
    return [{"name": f, "enabled": f in enabled, "description": FEATURE_HELP[f]} for f in FEATURES]


def enable(layout, app, feature):
    """features:enable FEATURE."""
    check_feature(feature)
    changes.change(layout, app, lambda s: dict(s, features=sorted(set(s["features"]) | {feature})))
    return index(layout, app)


def disable(layout, app, feature):
    """features:disable FEATURE."""
    check_feature(feature)
    changes.change(layout, app, lambda s: dict(s, features=sorted(set(s["features"]) - {feature})))
    return index(layout, app)
