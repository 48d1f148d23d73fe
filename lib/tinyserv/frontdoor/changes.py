"""What commands change at the front door: an app's router settings, checked by nginx before they count.

An app's domains, maintenance mode, features and certificates live in apps/<app>/router.json
(appstate.router_settings). A command changes them in one way: it makes the new settings, has
`nginx -t` check the whole config they would give (with what nginx serves now for every other app),
saves them only if nginx accepts it, asks the supervisor to apply them, and waits until nginx serves
them. A change nginx refuses fails with nginx's message and changes nothing.

The commands are served in server/topics/ (domains, certs, maintenance, features); domains.py and
certs.py here hold what the first two do.
"""

import contextlib
import copy
import json
import os

from tinyserv.state import appstate, releases, store
from tinyserv.platform import control, services
from tinyserv.frontdoor import nginx, router
from tinyserv.frontdoor.routes import site_from
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError


def require():
    """The front door's commands need nginx: refuse in one line that says how to get it."""
    if settings.nginx_binary() is None:
        raise TinyservError(settings.nginx_missing())


@contextlib.contextmanager
def locked(layout, app, every_app=False):
    """Hold the app's lock (and the global one when a change must look at every app: a domain's owner)."""
    layout.require(app)
    require()
    with contextlib.ExitStack() as stack:
        if every_app:
            stack.enter_context(store.locked(layout.global_lock))
        stack.enter_context(store.locked(layout.app_file(app, "lock")))
        yield


def change(layout, app, mutate, before_check=lambda new: None, every_app=False):
    """Apply mutate(settings) -> new settings, checked by nginx, saved, applied, live; the new settings.

    before_check(new) may put files in place that nginx must read (a certificate) and
    raise to refuse; it is the caller's job to remove them when this raises.
    """
    with locked(layout, app, every_app):
        saved = appstate.router_settings(layout, app)
        new = mutate(copy.deepcopy(saved))
        if new == saved:
            return new
        before_check(new)
        check(layout, app, new)
        appstate.save_router_settings(layout, app, new)
    control.sync(layout, app)
    try:
        wait_live(layout, app, new)
    except TinyservError as e:
        undo(layout, app, saved, new)
        raise TinyservError("%s; nothing changed" % e) from None
    return new


def undo(layout, app, saved, new):
    """A change nginx did not take in time: the app's settings as they were (unless another change came since)."""
    with locked(layout, app):
        if appstate.router_settings(layout, app) == new:
            appstate.save_router_settings(layout, app, saved)
    control.sync(layout, app)


def live_sites(layout):
    """{app: Site} of the config nginx serves now (from nginx/routes.json)."""
    routes = nginx.read_routes(nginx.Prefix(layout))
    sites = {}
    for app, fields in (routes.get("sites") or {}).items():
        try:
            sites[app] = site_from(fields)
        except (KeyError, TypeError, ValueError):
            continue  # a damaged entry: the supervisor rewrites the file at its next change
    return sites


def check(layout, app, saved):
    """Would nginx take the config with app's settings as saved? Raise with its words if not."""
    prefix = nginx.Prefix(layout).ensure()
    sites = live_sites(layout)
    old = sites.get(app)
    port = old.port if old else releases.port(layout, app)
    sites[app] = router.site_for(layout, app, port, old.primary if old else (), old.backup if old else (), saved)
    http, https = settings.http_port(), settings.https_port()
    wants_http = bool(settings.base_domain()) or bool(sites[app].domains)  # needed by this change, not before
    wants_https = any(s.certs for s in sites.values())
    held = nginx.listening_ports(services.pid(layout, nginx.SERVICE) or 0)
    for wanted, port_number, what in ((wants_http, http, "TINYSERV_HTTP_PORT"), (wants_https, https,
                                                                                  "TINYSERV_HTTPS_PORT")):
        problem = None if not wanted or port_number in held else nginx.why_not_listenable(port_number)
        if problem:
            raise TinyservError("nginx cannot serve this: %s (%s); nothing changed" % (problem, what))
    plan = nginx.Plan(tuple(sites[a] for a in sorted(sites)), http, https, router.user_directive(),
                      nginx.has_ipv6(), True, wants_https)
    text = nginx.render(plan, prefix)
    path = os.path.join(prefix.dir, "check-%d.conf" % os.getpid())
    try:
        problem = nginx.test(settings.nginx_binary(), prefix, text, path)
    finally:
        store.remove(path)
    if problem:
        raise TinyservError("nginx refused the change: %s; nothing changed" % problem)


def wait_live(layout, app, saved):
    """Wait until nginx serves app with these settings (the supervisor reloads it)."""
    expected = json.loads(json.dumps(router.site_for(layout, app, 0, (), (), saved)._asdict()))
    keys = ("domains", "maintenance", "affinity", "certs")
    router.wait_until_live(layout, app, lambda site: site is not None and all(
        site.get(k) == expected[k] for k in keys))


def status(layout):
    """The front door's state in one line, for the listings."""
    binary = settings.nginx_binary()
    if binary is None:
        return settings.nginx_missing()
    pid = services.pid(layout, nginx.SERVICE)
    return "nginx %s, %s" % (binary, "running (pid %d)" % pid if pid else "not running (see %s)"
                             % services.log_file(layout, nginx.SERVICE))

