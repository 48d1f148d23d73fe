"""The supervisor's front-door switching: web behind nginx on internal ports, switched without a gap, then drained.

A new release's web starts on an internal port while the old one keeps serving under another
key (web.1~PID); once every new web is up and settled, nginx is told to route to it and the old
one drains: it gets SIGTERM once nginx no longer routes to it and its requests have ended.
"""

from tinyserv.state import releases
from tinyserv.frontdoor import nginx, router, swarm
from tinyserv.platform import boot
from tinyserv.common import settings
from tinyserv.supervise.instances import RUNNING, retired_key

SETTLE = boot.SETTLE  # a new web must be up this long before the old ones it replaces drain
DRAIN_AFTER = 1.0  # seconds an old web gets, once nginx no longer routes to it, before idle means done


class Switching:
    """The Supervisor's front-door half: its router, candidates and sites (what each app's site is)."""

    def right_port(self, inst, public):
        """Does the instance listen where it should: web on an internal port with the front door, else on the app's?"""
        if inst["type"] != "web" or public is None:
            return True
        return (inst["port"] != public) if self.router.enabled else (inst["port"] == public)

    def port_for(self, app, name):
        """The port a new instance gets: an internal one for web behind the front door, else the app's port."""
        if self.router.enabled and name.startswith("web."):
            return self.sys.free_port()
        return releases.port(self.layout, app)

    def retire(self, app, name, inst, replaced=False):
        """Keep an old web serving under another key until its replacement is up; then it drains.

        replaced: a restart asked for a new process, so a switch back (unretire) must not pick this one.
        """
        del self.apps[app][name]
        inst["retired"] = "replaced" if replaced else True
        self.apps[app][retired_key(inst)] = inst
        self.event(app, "%s of v%d keeps serving on port %d until its replacement is up" % (
            name, inst["version"], inst["port"]))
        self.dirty.add(app)

    def unretire(self, app, name, version, public):
        """A switch that was undone: the retired instance of the wanted release serves again (no boot). Done?"""
        if not self.router.enabled:
            return False
        instances = self.apps.get(app, {})
        found = [k for k, i in instances.items() if i.get("retired") is True and i["name"] == name
                 and i["version"] == version and i["state"] in RUNNING and self.right_port(i, public)]
        if not found:
            return False
        inst = instances.pop(found[-1])
        inst["retired"] = False
        instances[name] = inst
        self.event(app, "%s of v%d serves again" % (name, version))
        return True

    def adopt_candidate(self, app, name, want):
        """Run the web a deploy boot-checked as the new release's instance, instead of booting another. Done?"""
        cand = self.candidates.get(app)
        if not (cand and self.router.enabled and cand["name"] == name and cand["version"] == want.release["version"]
                and self.sys.alive(cand["pid"], cand["starttime"])):
            return False
        del self.candidates[app]
        now = self.sys.clock()
        inst = dict(cand, type="web", state="up", child=False, restarts=0, exit_code=None, next_try=None,
                    grace=want.grace, command=want.instances[name], reason=None,
                    memory_limit=settings.memory_limit(want.release["config"]))
        inst.setdefault("since", now)
        inst.setdefault("started", now)
        if want.meta.get("healthcheck"):
            inst["health"] = want.meta["healthcheck"]
        self.apps.setdefault(app, {})[name] = inst
        self.open_pipe(app, inst)
        self.event(app, "%s of v%d is the web that passed the boot check, on port %d" % (
            name, inst["version"], inst["port"]))
        self.dirty.add(app)
        return True

    def drop_candidate(self, app):
        """A candidate nobody took (its release was superseded, or no front door): stop it like any instance."""
        cand = self.candidates.pop(app, None)
        if any(cand and i["pid"] == cand["pid"] for i in self.apps.get(app, {}).values()):
            return  # ours already: a sync asked again after the last supervisor took it and died
        if cand and self.sys.alive(cand["pid"], cand["starttime"]):
            inst = dict(cand, type="web", state="up", child=False, retired=True, restarts=0, exit_code=None,
                        next_try=None, grace=cand.get("grace", 30.0), command=cand.get("command", ""))
            inst.setdefault("since", self.sys.clock())
            inst.setdefault("started", self.sys.clock())
            self.apps.setdefault(app, {})[retired_key(inst)] = inst
            self.open_pipe(app, inst)
            self.begin_stop(app, inst, inst["grace"])

    def stop_retired(self, app, inst):
        """An old web that must go now (shutdown, the front door gone): stop it without waiting for traffic."""
        if inst["state"] in RUNNING + ("draining",):
            self.begin_stop(app, inst, inst.get("grace", 30.0))
        elif inst["state"] not in ("stopping",):
            inst["state"] = "gone"

    def drain_due(self, app, now):
        """Old webs start draining once every new web is up and settled (or none is wanted any more)."""
        instances = self.apps.get(app, {})
        old = [i for i in instances.values() if i.get("retired") and i["state"] in RUNNING]
        if not old:
            return
        site = self.sites.get(app)
        current = [instances.get(n) for n in (site[2] if site else [])]
        if all(c and c["state"] == "up" and c.get("answered") for c in current):  # health.py looked again
            for inst in old:
                inst.update(state="draining", since=now, drain_until=now + inst.get("grace", 30.0))
                self.event(app, "%s of v%d is draining: nginx sends it no new requests" % (
                    inst["name"], inst["version"]))
            self.dirty.add(app)

    def drained(self, inst, now):
        """May a draining web get SIGTERM: nginx no longer routes to it and its requests ended (or time is up)?"""
        if now >= inst["drain_until"]:
            return True
        released = self.router.released(inst["port"])
        if released is None or now - max(released, inst["since"]) < DRAIN_AFTER:
            return False
        return self.router.door is None or self.router.door.connections_to(inst["port"]) == 0

    def route(self, app):
        """Tell the router what app's site is now: its web ports (new ones first, old ones as backup)."""
        if not self.router.enabled:
            return
        site = self.sites.get(app)
        if site is None or not self.layout.exists(app):
            self.router.update(app, None)
            return
        public, saved, _ = site
        primary, backup = swarm.upstreams(self.swarm, self.layout, app, router.web_ports(
            self.apps.get(app, {}).values(), public))
        draining = [i["port"] for i in self.apps.get(app, {}).values() if i["state"] == "draining"]
        self.router.update(app, router.site_for(self.layout, app, public, primary, backup, saved), draining)

    def mark_routed(self, apps):
        """Which web instances of apps the config nginx runs sends traffic to (ps and deploys wait for it)."""
        for app in list(apps):
            live = self.router.live_primary(app)
            for inst in self.apps.get(app, {}).values():
                if inst["type"] == "web" and not inst.get("retired"):
                    routed = inst["port"] in live or not self.router.enabled
                    if inst.get("routed") != routed:
                        inst["routed"] = routed
                        self.dirty.add(app)

    def publish_routes(self, app):
        """releases/<app>.json gets the web instances nginx sends app's traffic to, and its domains."""
        site = self.router.live.get(app)
        if site is None:
            return
        ports = set(site.primary)
        web = sorted(({"name": i["name"], "port": i["port"]} for i in self.apps.get(app, {}).values()
                      if i["type"] == "web" and not i.get("retired") and i["port"] in ports),
                     key=lambda w: (len(w["name"]), w["name"]))
        releases.publish_routes(self.layout, app, web, list(site.domains))

    def router_log(self, entries=None):
        """Write the requests nginx reported (entries, else those waiting) into their apps' logs, naming the
        instance that answered."""
        for fields in self.router.read_log() if entries is None else entries:
            app = fields["app"]
            if app not in self.apps and not (app and self.layout.exists(app)):
                continue  # also at shutdown, once the app's processes are gone: its last requests are logged
            port = nginx.upstream_port(fields)
            dyno = next((i["name"] for i in self.apps.get(app, {}).values() if port and i["port"] == port), None)
            self.write_lines(app, "router", [nginx.router_line(fields, dyno)])
