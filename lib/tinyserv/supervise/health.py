"""The supervisor's watch on web instances that run but may have stopped answering.

A web counts as up once it accepts connections; one that then closes its listener (or whose
app.json health check starts failing) still runs, and nginx answers 502 for it. So each web is
looked at again on a timer of its own: once SETTLE s after it came up — a switch keeps the old web
until that look passes, so a web that fails it is switched back — then every CHECK_EVERY s. A look
is one connection to its port (or GET of its health check path), never a scan of the socket tables;
a web that fails FAILURES looks in a row is restarted, and the app log says so.
"""

from tinyserv.platform import boot

SETTLE = boot.SETTLE  # a web must still answer this long after it first did
CHECK_EVERY = 5  # seconds between looks at a web that answers
RECHECK_EVERY = 2  # ... and at one that did not answer the last look
FAILURES = 3  # looks in a row without an answer after which a web is restarted
NOT_ANSWERING = "not answering"  # the reason of a web restarted for it (ps, wait_for_web)


class Health:
    """The Supervisor's looks at its web instances: answered (first confirmed), silent_since, failures."""

    def census(self):
        """The instances the timers look at, listed once per change instead of walking every instance per tick
        (idle cost independent of the number of apps): "webs" (health.py), "limited" (a memory limit), "adopted"
        (not our children). Made again at the first tick after anything changed; users check each one again."""
        if self.counted is None:
            self.counted = {"webs": [], "limited": [], "adopted": []}
            for app, inst in self.each_instance():
                if inst["type"] == "web" and not inst.get("retired") and not inst.get("oneoff"):
                    self.counted["webs"].append((app, inst))
                if inst.get("memory_limit"):
                    self.counted["limited"].append((app, inst))
                if not inst.get("child"):
                    self.counted["adopted"].append((app, inst))
        return self.counted

    def expect_web_looks(self, apps):
        """Bring check_webs' next look forward to the looks due at the webs of apps (which changed)."""
        for app in apps:
            for inst in self.apps.get(app, {}).values():
                if inst["type"] == "web" and inst["state"] == "up" and not inst.get("retired"):
                    self.next_web_look = min(self.next_web_look, next_look(inst))

    def check_webs(self, now):
        """Look at every running web whose look is due: one dump of the listening sockets for all of those
        without a health check path (boot.answering), a GET each for the others."""
        if now < self.next_web_look:
            return
        webs = [(app, inst) for app, inst in self.census()["webs"]
                if inst["state"] == "up" and not inst.get("retired")]
        due = [(app, inst) for app, inst in webs if now >= next_look(inst)]
        if due:
            answering = self.sys.answering([inst["port"] for _, inst in due if not inst.get("health")])
            for app, inst in due:
                self.guarded(app, self.look_at, app, inst, now, answering)
        self.next_web_look = min((next_look(inst) for _, inst in webs), default=float("inf"))

    def look_at(self, app, inst, now, answering):
        """One look at a web: note that it answers, or that it does not (and restart it when that lasts)."""
        port, health = inst["port"], inst.get("health")
        if self.sys.healthy(port, health) if health else port in answering:
            if inst.get("silent_since") is not None:
                self.event(app, "%s answers again on port %d" % (inst["name"], inst["port"]))
            if not inst.get("answered") or inst.get("silent_since") is not None:
                inst.update(answered=now, silent_since=None, failures=0)
                self.dirty.add(app)
            inst["next_look"] = now - now % CHECK_EVERY + CHECK_EVERY  # on the same beat as the others: one dump
            return
        failures = inst.get("failures", 0) + 1
        inst.update(failures=failures, silent_since=inst.get("silent_since") or now, next_look=now + RECHECK_EVERY)
        self.dirty.add(app)
        what = "GET %s" % inst["health"] if inst.get("health") else "connections"
        if not inst.get("answered"):  # a switch waits on this look, with the old web kept: fail it now
            self.event(app, "%s no longer answers %s on port %d %.1f s after it first did" % (
                inst["name"], what, inst["port"], now - inst["since"]))
        elif failures < FAILURES:
            self.event(app, "%s does not answer %s on port %d (%d of %d looks before a restart)" % (
                inst["name"], what, inst["port"], failures, FAILURES))
            return
        inst.update(exit_code=None, reason=NOT_ANSWERING)
        self.crashed(app, inst, now)


def next_look(inst):
    """When a web that is up is looked at next: SETTLE s after it came up, then on its timer."""
    return inst.get("next_look", inst["since"] + SETTLE)
