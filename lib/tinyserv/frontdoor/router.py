"""The front door as the supervisor keeps it: what nginx should serve, applied only once nginx accepts it.

The supervisor tells the Router what each app's site is (its port, the internal ports of its web
instances, its domains ...). The Router renders the whole config, has `nginx -t` check it, installs it
and reloads nginx with SIGHUP; it counts a config as live once nginx has started a worker process
that read it. Until then the instances the previous config sent traffic to are still routed: the
supervisor stops an old instance only once no live config routes to it (released()).

A config nginx refuses never replaces the working one; a port nginx cannot take (another program
holds an app's port, port 80 without the capability) is left out, said once, and tried again.
nginx routes only to web instances the supervisor has seen listening in their own process group
("up"): one that starts, or has crashed, gets no request, and its port none either.

Beside it, each a part of the Router: starts.py (nginx started at once from a config written anew,
and the ports it can take), routes.py (routes.json, saved and adopted), routerlog.py (the socket nginx
logs requests to, bound before nginx starts) and renewal.py (certs:renew twice a day).
"""

import os
import signal
import time

from tinyserv.state import appstate
from tinyserv.frontdoor import nginx
from tinyserv.platform import services
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.frontdoor.renewal import Renewal
from tinyserv.frontdoor.routerlog import RouterLog
from tinyserv.frontdoor.routes import Routes
from tinyserv.frontdoor.starts import APPLY_RETRY, Starts

RELOAD_TIMEOUT = 10.0  # seconds nginx gets to start a worker with a new config before the reload counts as failed
RELEASED_KEPT = 3600  # seconds a port's release time is remembered
DROP_WAIT = 1.0  # seconds a change that only drops draining backups waits for another change to reload with


class Door:
    """The real nginx and the real network; unit tests pass a fake with the same methods."""

    def __init__(self, binary, prefix):
        self.binary = binary
        self.prefix = prefix
        self.ipv6 = nginx.has_ipv6()

    def test(self, text, check=True):
        return nginx.test(self.binary, self.prefix, text, check=check)

    def install(self):
        nginx.install(self.prefix)

    def listening_ports(self, pid):
        return nginx.listening_ports(pid)

    def why_not_listenable(self, port):
        return nginx.why_not_listenable(port)

    def connections_to(self, port):
        return nginx.connections_to(port)

    def service(self):
        return nginx.service_spec(self.binary, self.prefix)

    def serving(self, pid):
        return nginx.worker_accepts(pid)


def user_directive():
    """nginx's `user` line: only as root, where nginx would otherwise run its workers as nobody."""
    if os.geteuid() != 0:
        return None
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


class Router(Starts, Renewal, Routes, RouterLog):
    """Keeps nginx serving what the supervisor says, one checked config at a time."""

    def __init__(self, layout, system, keeper, note, door=None, binary=lambda: settings.nginx_binary()):
        self.layout = layout
        self.sys = system
        self.keeper = keeper
        self.note = note
        self.prefix = nginx.Prefix(layout)
        self.find_binary = binary
        self.door = door
        self.binary = None
        self.sites = {}  # app -> nginx.Site wanted now (port: the app's public port)
        self.written = None  # {"generation", "text", "sites"} of the config nginx.conf holds
        self.accepted = None  # nginx.shape() of the last config `nginx -t` accepted
        self.live = {}  # app -> Site of the config nginx runs (confirmed)
        self.moved = set()  # apps whose live site changed since the supervisor last took them (take_moved)
        self.live_at = 0.0
        self.released_at = {}  # port -> when the last config routing to it stopped being live
        self.generation = 0
        self.pending = None  # a reload nginx has not confirmed yet
        self.master = None  # (pid, starttime) of nginx's master, as the Keeper runs it
        self.workers = set()
        self.held = set()  # ports this master listens on: those of the last config it confirmed
        self.ready = False
        self.dirty = False
        self.drop_at = None  # when the changes that only drop draining backups are applied, if nothing else is
        self.dropping = {}  # app -> ports of draining webs whose drop from the backups waits for drop_at
        self.retry_at = 0.0
        self.noted = {}  # topic -> the last thing said about it (say each thing once)
        self.socket = None
        self.declared = False
        self.renew_at = 0.0
        self.renewing = None  # pid of the certs:renew we started, until it is reaped
        self.start_at = 0.0  # when nginx may be started next (starts.py)
        self.started_at = None
        self.served = False  # has the nginx started last served (started its workers)?
        self.early_deaths = 0
        self.left_out = {}  # port -> why nginx's config leaves it out now

    user = staticmethod(user_directive)

    @property
    def enabled(self):
        return self.binary is not None

    def refresh(self):
        """Is nginx installed (or switched off) now? Cheap; the supervisor asks at every sync."""
        binary = self.find_binary()
        if binary != self.binary:
            self.binary = binary
            if binary:
                self.door = self.door if self.door and getattr(self.door, "binary", binary) == binary else Door(
                    binary, self.prefix)
            self.say("mode", "front door: nginx %s" % binary if binary else "front door: none (%s)"
                     % settings.nginx_missing())
            self.dirty = True
        return self.enabled

    def say(self, topic, text):
        """Note text in the supervisor's log unless it was the last thing said about topic."""
        if self.noted.get(topic) != text:
            self.noted[topic] = text
            self.note(text)

    # --- what should be served -------------------------------------------------------------------

    def ensure(self):
        """On a full sync: nginx declared as a service with a config it accepts, or withdrawn without nginx."""
        if not self.enabled:
            if os.path.exists(services.spec_file(self.layout, nginx.SERVICE)):
                services.withdraw(self.layout, nginx.SERVICE)
            self.close_socket()
            return
        self.prefix.ensure()
        self.open_socket()  # before nginx starts (tick): no router line of the first requests is lost
        if self.written is None and not self.nginx_down():
            self.adopt_routes()  # an nginx a previous supervisor started runs on
        self.declare()

    def declare(self):
        """nginx as a platform service the Router starts (tick), each time on a config written anew."""
        spec = self.door.service()
        services.declare(self.layout, nginx.SERVICE, grace=10, stop_signal=signal.SIGQUIT,
                         keep_capabilities=True, owner_starts=True, **spec)
        self.declared = True

    def update(self, app, site, draining=()):
        """The site app should have now (None: serve nothing for it).

        draining: ports of old webs that still run but take no new requests. A change that only drops some of
        those from the backups waits up to DROP_WAIT s for another change to reload nginx with (the old web
        stops only once no config routes to it): one reload per deploy instead of two, where a reload of
        nginx's config for 1,000 apps takes a tenth of a second.
        """
        if not self.enabled:
            return
        if self.dropping.get(app, set()) - set(draining):
            self.dirty = True  # a web whose drop waits no longer drains (it ended, or is being stopped): at once
        if site is None:
            if self.sites.pop(app, None) is not None:
                self.dirty = True
        elif self.sites.get(app) != site:
            old, self.sites[app] = self.sites.get(app), site
            if old is not None and drops_only(old, site, draining):
                self.dropping.setdefault(app, set()).update(set(old.backup) - set(site.backup))
                self.drop_at = self.drop_at or self.sys.clock() + DROP_WAIT
            else:
                self.dirty = True

    # --- applying it -----------------------------------------------------------------------------

    def tick(self, now):
        """Follow nginx's master, confirm a reload, apply what changed; True when the live config changed."""
        if not self.enabled:
            return False
        changed = self.follow_master(now)
        self.renew(now)
        if self.start_due(now):
            return self.start_nginx(now) or changed
        if self.pending:
            changed = self.check_reload(now) or changed
        elif (self.dirty or (self.retry_at and now >= self.retry_at) or (self.drop_at and now >= self.drop_at)) \
                and now >= self.retry_at:
            changed = self.apply(now) or changed
        return changed

    def follow_master(self, now):
        """Notice a new nginx master (started or restarted by the Keeper) and when it is ready to serve."""
        svc = self.keeper.running.get(nginx.SERVICE)
        master = (svc["pid"], svc["starttime"]) if svc and svc["state"] == "up" else None
        if master != self.master:
            if self.master is not None:
                self.nginx_died(now)
            self.master, self.ready, self.workers, self.held = master, False, set(), set()
            self.pending = None
            if master is None and self.written:
                return self.confirm(self.written, now)  # nothing serves: nothing routes anywhere old
        if self.master and not self.ready:
            workers = self.worker_pids()
            if workers:
                self.ready, self.workers, self.served = True, workers, True
                if self.written and self.written.get("at", 0) > svc.get("since", 0):
                    self.reload(now)  # written after nginx started: it may have read the one before
                elif self.written:
                    return self.confirm(self.written, now)
        return False

    def worker_pids(self):
        """nginx's worker processes: the rest of its master's process group."""
        pid = self.master[0]
        found = self.sys.children(pid)  # cheap: checked every few milliseconds while a reload is pending
        return {p for p in (self.sys.group_members(pid) if found is None else found) if p != pid}

    def apply(self, now):
        """Render, check with nginx -t, install and reload; a refused config changes nothing. True if live now."""
        self.dirty, self.drop_at, self.dropping = False, None, {}  # every site as wanted now, dropped backups too
        self.retry_at = 0.0
        try:
            plan = self.plan()
            text = nginx.render(plan, self.prefix)
        except TinyservError as e:
            self.say("config", "nginx config not made: %s" % e)
            self.retry_at = now + APPLY_RETRY
            return False
        if self.left_out:
            self.retry_at = now + APPLY_RETRY
        if self.written and text == self.written["text"]:
            return self.same_text(plan, now)
        shape = nginx.shape(text)
        problem = self.door.test(text, check=shape != self.accepted)  # a switch: only ports differ, no nginx -t
        if problem:
            self.say("config", "nginx refused the new config (the running one stays): %s" % problem)
            self.retry_at = now + APPLY_RETRY
            return False
        self.accepted = shape
        self.install_config(plan, text, now)
        if self.master and self.ready:
            self.reload(now)
            return False
        if self.master is None:
            return self.confirm(self.written, now)
        return False  # nginx is starting: follow_master reloads it once it is ready

    def install_config(self, plan, text, now):
        """Make text (checked) the config nginx reads, and remember what it serves."""
        self.say("config", "nginx config accepted")
        self.door.install()
        self.generation += 1
        listens = {s.port for s in plan.sites if s.port is not None}
        listens |= {plan.http_port} if plan.listen_http else set()
        listens |= {plan.https_port} if plan.listen_https else set()
        self.written = {"generation": self.generation, "text": text, "at": now,
                        "sites": {s.app: s for s in plan.sites}, "listens": listens}

    def same_text(self, plan, now):
        """The config's text is what nginx runs, its sites' instances not (an app in maintenance mode, whose
        config names none): nginx serves the new sites as it is, no reload. True if live now."""
        sites = {s.app: s for s in plan.sites}
        if sites == self.written["sites"]:
            return False
        self.written = dict(self.written, sites=sites)
        if self.master and not self.ready:
            return False  # follow_master confirms it once nginx is ready
        return self.confirm(self.written, now)

    def reload(self, now):
        """SIGHUP nginx's master; the reload is confirmed when a worker it did not have before appears."""
        self.sys.signal_pids([self.master], signal.SIGHUP)
        self.pending = {"written": self.written, "before": set(self.workers), "deadline": now + RELOAD_TIMEOUT}

    def check_reload(self, now):
        """Has nginx started a worker with the new config, and have the old ones stopped taking connections?"""
        workers = self.worker_pids()
        old = workers & self.pending["before"]
        if workers - self.pending["before"] and not any(self.door.serving(pid) for pid in old):
            written, self.pending = self.pending["written"], None
            self.workers = workers
            return self.confirm(written, now)
        if now >= self.pending["deadline"]:
            self.say("config", "nginx did not take the new config within %d s (the old one still serves): %s" % (
                RELOAD_TIMEOUT, self.error_tail()))
            self.pending, self.written = None, None  # written again, and nginx signalled again, on the retry
            self.dirty, self.retry_at = True, now + APPLY_RETRY
        return False

    def confirm(self, written, now):
        """written is what nginx serves now: remember which ports stopped being routed, and when."""
        before = self.routed_ports(self.live)
        old, self.live, self.live_at = self.live, dict(written["sites"]), now
        self.moved |= {app for app in set(old) | set(self.live) if old.get(app) != self.live.get(app)}
        self.held = set(written.get("listens", ())) if self.master else set()
        still = self.routed_ports(self.live) | self.routed_ports(self.written["sites"] if self.written else {})
        for port in before - still:
            self.released_at[port] = now
        for port in [p for p, t in self.released_at.items() if now - t > RELEASED_KEPT or p in still]:
            del self.released_at[port]
        self.save_routes(written["generation"], now)
        return True

    @staticmethod
    def routed_ports(sites):
        return {p for s in sites.values() for p in tuple(s.primary) + tuple(s.backup)}

    def take_moved(self):
        """The apps whose live site changed since the last call (at 1,000 apps, a switch touches one)."""
        moved, self.moved = self.moved, set()
        return moved

    def released(self, port):
        """Since when no config nginx runs or is about to run routes to port (None: one still does)."""
        if not self.enabled:
            return 0.0
        written = self.written["sites"] if self.written else {}
        if port in self.routed_ports(self.live) or port in self.routed_ports(written):
            return None
        return self.released_at.get(port, 0.0)

    def live_primary(self, app):
        """The ports the live config sends app's traffic to (not its backups)."""
        site = self.live.get(app)
        return set(site.primary) if site else set()

    def busy(self):
        """Is a reload waiting for nginx (the supervisor looks again soon)?"""
        return bool(self.pending) or (self.enabled and self.master is not None and not self.ready)

    def next_due(self, now, busy):
        """Seconds until nginx, down, is to be started (busy: the supervisor's short interval while it waits for
        a dead one's workers); None while it runs, or is not wanted."""
        if not (self.declared and not self.keeper.shutting_down and self.nginx_down()):
            return None
        return max(busy, self.start_at - now)

    def error_tail(self):
        """The last line of nginx's error log (where a failed reload says why)."""
        try:
            with open(self.prefix.error_log, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "see %s" % self.prefix.error_log
        return lines[-1].strip() if lines else "see %s" % self.prefix.error_log

def drops_only(old, new, draining):
    """Does Site new differ from old only by backups it no longer has, all of them in draining?"""
    dropped = set(old.backup) - set(new.backup)
    return bool(dropped) and dropped <= set(draining) and new == old._replace(
        backup=tuple(p for p in old.backup if p not in dropped))


def web_ports(instances, public):
    """(primary, backup) internal ports of an app's web instances (supervisor's instance dicts).

    Only webs the supervisor has seen listening in their own process group ("up") get traffic: one
    that is starting, or has crashed, is not in nginx's upstream, so a port it held (or was given)
    never carries the app's requests to another program that took it. Once one new web is up, the
    new ones take the traffic, with the old ones that still serve as backup until they drain; before
    that, the old ones serve alone. Draining ones get nothing.
    """
    webs = [i for i in instances if i["type"] == "web" and i["port"] != public and i["state"] == "up"]
    current = [i["port"] for i in webs if not i.get("retired")]
    old = [i["port"] for i in webs if i.get("retired")]
    if not current:
        return old, []
    return current, old


def site_for(layout, app, port, primary, backup, saved):
    """An app's Site from its web ports and its router settings (appstate.router_settings)."""
    domains = list(saved["domains"])
    try:
        base = settings.base_domain()
    except TinyservError:
        base = None  # the supervisor serves the rest; commands that need it say what is wrong
    if base:
        domains.append("%s.%s" % (app, base))
    certs = []
    for cert in saved["certs"]:
        covered = tuple(d for d in domains if covers(cert["names"], d))
        if covered:
            certs.append((appstate.cert_file(layout, app, cert["name"], "crt"),
                          appstate.cert_file(layout, app, cert["name"], "key"), covered, cert.get("sha256", "")))
    return nginx.Site(app=app, port=port, primary=tuple(sorted(primary, key=nginx.upstream_order)),
                      backup=tuple(sorted(backup, key=nginx.upstream_order)),
                      domains=tuple(sorted(set(domains))), maintenance=saved["maintenance"],
                      affinity="http-session-affinity" in saved["features"], certs=tuple(certs))


def covers(names, host):
    """Does a certificate for names (which may hold *.example.org) cover host?"""
    for name in names:
        if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
            return True
    return False


def wait_until_live(layout, app, check, timeout=15):
    """For a command: wait until the live config's site for app passes check(site fields); raise after timeout."""
    prefix = nginx.Prefix(layout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        site = (nginx.read_routes(prefix).get("sites") or {}).get(app)
        if check(site):
            return site
        time.sleep(0.05)
    raise TinyservError("nginx did not take the change within %d s; see %s and %s" % (
        timeout, prefix.error_log, os.path.join(layout.run_dir, "supervisor.log")))
