"""nginx started by the Router, at once, from a config written anew and on ports it can take (a part of the Router).

nginx is the one door every app's traffic goes through, not an app in a crash loop. Whenever it is not
running (the first start, killed, crashed), the Router renders its config from tinyserv's own state (a
file broken by hand, or left from before a shutdown, never runs), leaves out each port nginx cannot take
now (said once in the supervisor's log and shown by `doctor`; tried again every APPLY_RETRY s), has
`nginx -t` check the result, writes it, and asks the Keeper to start nginx now (services.Keeper.start_now).
Only an nginx that died before it ever served waits before its next start (0.5, 1, 2 ... 30 s): whatever
made it die, that is never a tight loop.
"""

from tinyserv.frontdoor import nginx
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError

APPLY_RETRY = 2.0  # seconds before a refused config, or a port nginx could not take, is tried again
EARLY_DEATH_WAIT = 0.5  # the first wait after nginx died before it served; doubled each time, up to ...
EARLY_DEATH_WAIT_MAX = 30.0
SERVED_AFTER = 1.0  # an nginx that ran this long served, even if the supervisor did not see its workers yet
LEFTOVER_WAIT = 1.0  # seconds a new nginx waits for the workers of one that died (killed with it) to be gone


class Starts:
    """The Router's half that plans the ports, makes a checked config, and starts nginx on it."""

    def nginx_down(self):
        """Does the Keeper run no nginx now (never started, exited, crashed)?"""
        svc = self.keeper.running.get(nginx.SERVICE)
        return svc is None or svc["state"] == "crashed"

    def start_due(self, now):
        """Should nginx be started now: declared, down, not shutting down, not waiting after an early death, and
        the workers of the one that died gone (they hold its ports until the SIGKILL sent to them has acted)?"""
        return self.declared and not self.keeper.shutting_down and self.nginx_down() and now >= self.start_at \
            and not self.leftovers(now)

    def leftovers(self, now):
        """Live processes of the nginx that died, for up to LEFTOVER_WAIT s after it did."""
        svc = self.keeper.running.get(nginx.SERVICE)
        return bool(svc and svc["pid"] and now - svc["since"] < LEFTOVER_WAIT and self.sys.group_members(svc["pid"]))

    def start_nginx(self, now):
        """Write the config from what should be served now, and start nginx on it. Started?"""
        made = self.make_config(now, "nginx not started")
        if made is None:
            self.start_at = now + APPLY_RETRY
            return False
        self.install_config(*made, now)
        if self.left_out:  # a port nginx could not take now is tried again, as after a reload
            self.retry_at = now + APPLY_RETRY
        if not self.keeper.start_now(nginx.SERVICE):
            return False
        self.served, self.started_at = False, now
        if self.nginx_down():  # it could not even be spawned
            self.nginx_died(now)
        return True

    def nginx_died(self, now):
        """The nginx that ran is gone: start it again at once if it had served, else after a wait that grows."""
        served = self.served or (self.started_at is not None and now - self.started_at >= SERVED_AFTER)
        self.early_deaths = 0 if served else self.early_deaths + 1
        wait = min(EARLY_DEATH_WAIT * 2 ** (self.early_deaths - 1), EARLY_DEATH_WAIT_MAX) if self.early_deaths else 0
        self.start_at = now + wait
        if wait:
            self.say("early death", "nginx exited before it served; starting it again in %g s (its last word: %s)"
                     % (wait, self.error_tail()))

    def make_config(self, now, refused_means):
        """(plan, text) of a config nginx accepts for what should be served now; None (said once) if none."""
        try:
            plan = self.plan()
            text = nginx.render(plan, self.prefix)
        except TinyservError as e:
            self.say("config", "nginx config not made: %s" % e)
            return None
        problem = self.door.test(text)
        if problem:
            self.say("config", "nginx refused the new config (%s): %s" % (refused_means, problem))
            return None
        return plan, text

    def plan(self):
        """The Plan for the sites wanted now, leaving out ports nginx cannot take (said once, tried again)."""
        scanned = []
        self.left_out = {}

        def held(port):
            """Does nginx hold port? Known for the ports of its live config; the socket tables, read once, else."""
            if port in self.held or not self.master:
                return port in self.held
            if not scanned:
                scanned.append(self.door.listening_ports(self.master[0]))
            return port in scanned[0]

        def usable(port, what):
            problem = None if held(port) else self.door.why_not_listenable(port)
            self.note_port(port, what, problem)
            return problem is None
        sites = []
        for app in sorted(self.sites):
            site = self.sites[app]
            if site.port is not None and not usable(site.port, "%s's port %d" % (app, site.port)):
                site = site._replace(port=None)
            sites.append(site)
        http, https = settings.http_port(), settings.https_port()
        wants_https = any(s.certs for s in sites)
        # Always on the HTTP port (a host no app claims gets a 404 there), unless nginx cannot take it.
        return nginx.Plan(tuple(sites), http, https, self.user(), self.door.ipv6,
                          usable(http, "the HTTP port %d" % http),
                          wants_https and usable(https, "the HTTPS port %d" % https))

    def note_port(self, port, what, problem):
        """A port nginx cannot take is said once (and kept for doctor); one it can take again, once more."""
        topic = "port %d" % port
        if problem:
            line = "nginx cannot listen on %s: %s (left out of nginx's config; tried again every %d s)" % (
                what, problem, APPLY_RETRY)
            self.left_out[port] = line
            self.say(topic, line)
        elif self.noted.pop(topic, None) is not None:
            self.note("nginx can listen on %s again" % what)
