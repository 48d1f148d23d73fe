"""The supervisor's instances moving on (crashed, up, stopped), restarts with backoff, the memory limit, ps:restart, and
cron's one-off runs."""

import signal
import time

from tinyserv.supervise.instances import RUNNING
from tinyserv.supervise.ondisk import BROKEN_RETRY

STABLE_AFTER = 60  # an instance that ran this long before crashing restarts at once
MAX_BACKOFF = 300
KILL_WAIT = 5  # a crashed instance's leftovers get this long to die of SIGKILL before its restart goes ahead
MEMORY_CHECK = 2  # seconds between looks at the resident memory of instances whose app has a memory limit


def backoff(streak):
    """Seconds to wait before restart number `streak` of a crash loop: 0, 2, 4, 8 ... 300."""
    return 0 if streak <= 1 else min(2 ** (streak - 1), MAX_BACKOFF)


class Restarts:
    """The Supervisor's crash handling: restart with backoff, over memory, on request; cron jobs that end."""

    def advance(self, app, inst, now):
        """Move one instance on: a running one that exited crashed, a web that listens is up, a stop ends."""
        state = inst["state"]
        if inst.get("retired") and state in RUNNING + ("draining",) and self.exited(inst):
            self.sys.signal_group(inst["pgid"], signal.SIGKILL)
            self.find_strays(inst, signal.SIGKILL)
            inst["state"] = "gone"
            self.event(app, "%s of v%d exited" % (inst["name"], inst["version"]))
        elif state in RUNNING and self.exited(inst):
            inst["reason"] = None
            self.crashed(app, inst, now)
        elif state == "starting" and self.accepts(inst) and (
                not inst.get("health") or self.sys.healthy(inst["port"], inst["health"])):
            inst.update(state="up", since=now)
            self.event(app, "%s accepts connections on port %d" % (inst["name"], inst["port"]) + (
                " and answers %s" % inst["health"] if inst.get("health") else ""))
            self.dirty.add(app)
        elif state == "draining" and self.drained(inst, now):
            self.begin_stop(app, inst, inst.get("grace", 30.0))
        elif state == "stopping":
            self.advance_stop(app, inst, now)

    def accepts(self, inst):
        """Does the instance's own process group listen on its port (from the tick's table when there is one)?"""
        if self.listening is None:
            return self.sys.accepts(inst["port"], inst["pgid"])
        return self.sys.group_holds(inst["pgid"], self.listening.get(inst["port"]))

    def check_memory(self, now):
        """Every MEMORY_CHECK s: an instance over its app's TINYSERV_MEMORY_LIMIT is restarted (Heroku's R15)."""
        if now < self.next_memory_check:
            return
        self.next_memory_check = now + MEMORY_CHECK
        limited = [(app, inst) for app, inst in self.census()["limited"] if inst.get("memory_limit")
                   and inst["state"] in RUNNING and inst["pid"] and not inst.get("retired")]
        if not limited:
            return
        used_by = self.sys.groups_rss([inst["pgid"] for _, inst in limited])  # one /proc scan for all of them
        for app, inst in limited:
            used, limit = used_by.get(inst["pgid"], 0), inst["memory_limit"]
            if used > limit:
                self.event(app, "Error R15 (Memory quota exceeded): %s used %d MB, over TINYSERV_MEMORY_LIMIT="
                                "%d MB; restarting it" % (inst["name"], used // 2 ** 20, limit // 2 ** 20))
                inst.update(exit_code=None, reason="memory")
                self.crashed(app, inst, now)

    def tick_changes(self, now, apps):
        """tick()'s part for the apps whose instances changed: old webs drain, crashed ones restart, gone ones go."""
        apps = sorted(a for a in apps if a in self.apps)
        for app in apps:
            self.guarded(app, self.drain_due, app, now)
        self.sweep()
        for app in apps:
            for inst in list(self.apps.get(app, {}).values()):
                if inst["state"] == "crashed" and self.restart_due(inst, now):
                    if not self.guarded(app, self.restart_crashed, app, inst):
                        inst["next_try"] = now + BROKEN_RETRY
        for app in apps:
            if app not in self.apps:
                continue
            gone = [name for name, i in self.apps[app].items() if i["state"] == "gone"]
            for name in gone:
                self.forget(app, name)
            if gone:
                self.guarded(app, self.reconcile, app)
        self.sweep()

    def crashed(self, app, inst, now):
        """The main process ended on its own (or never started): kill what is left of it, schedule a restart."""
        if inst.get("oneoff"):
            return self.finished(app, inst, now)
        if inst["pid"]:
            self.sys.signal_group(inst["pgid"], signal.SIGKILL)
        self.find_strays(inst, signal.SIGKILL)
        streak = 1 if now - inst["started"] >= STABLE_AFTER else inst.get("streak", 0) + 1
        delay = backoff(streak)
        inst.update(state="crashed", since=now, streak=streak, next_try=now + delay,
                    restarts=inst["restarts"] + 1, kill_by=now + KILL_WAIT)
        code = inst["exit_code"]
        how = "exited with %s" % code if code is not None else "exited"
        if inst.get("reason") == "memory":
            how = "was stopped for using too much memory"
        if inst.get("reason") == "not answering":
            how = "stopped answering on port %d" % inst["port"]
        if not inst["pid"]:
            how = "could not be started"
        self.event(app, "%s %s, restarting %s" % (inst["name"], how, "in %ds" % delay if delay else "now"))
        self.dirty.add(app)

    def finished(self, app, inst, now):
        """A one-off run (a cron job) ended: kill what it left behind and let it go; it is never restarted."""
        if inst["pid"]:
            self.sys.signal_group(inst["pgid"], signal.SIGKILL)
        self.find_strays(inst, signal.SIGKILL)
        code = inst["exit_code"]
        how = "could not be started" if not inst["pid"] else (
            "exited with %s" % code if code is not None else "exited")
        self.event(app, "%s %s after %.1f s" % (inst["name"], how, now - inst["started"]))
        inst.update(state="gone", since=now)
        self.scheduler.finished(app, inst["name"], code, now)
        self.dirty.add(app)

    def run_due_jobs(self, now):
        """Start the cron jobs whose time has come (a job still running from its last turn skips this one)."""
        for app, job in self.scheduler.due(now):
            self.guarded(app, self.run_job, app, job, now)

    def run_job(self, app, job, now):
        """Run one cron job as a one-off instance named like it (scheduler.N) in the app's current release."""
        want = self.want(app)
        if want is None or want.meta is None:
            return
        if job.name in self.apps.get(app, {}):
            self.event(app, "%s is still running: its run due at %s is skipped" % (
                job.name, time.strftime("%H:%M", time.gmtime(now))))
            self.scheduler.skipped_run(app, job)
            return
        self.scheduler.started(app, job, now)
        self.start(app, job.name, job.command, want, {"oneoff": True})

    def restart_due(self, inst, now):
        """Is it time to restart a crashed instance: backoff over, and its leftovers dead (or given up on)?"""
        return now >= inst["next_try"] and (now >= inst.get("kill_by", 0) or not self.lingering(inst))

    def restart_crashed(self, app, inst):
        """Start a crashed instance again in the same slot, keeping its counters."""
        want = self.want(app)
        if not want or inst["name"] not in want.instances or inst["version"] != want.release["version"]:
            self.forget(app, inst["name"])
            self.reconcile(app)
            return
        # A web gets a fresh port (port_for): nginx routes to it only once it is seen listening there.
        kept = {k: inst.get(k) for k in ("restarts", "streak", "exit_code", "reason")}
        self.forget(app, inst["name"])
        self.start(app, inst["name"], want.instances[inst["name"]], want, kept)

    def restart(self, app, target=None):
        """ps:restart: gracefully replace matching instances; resets their backoff."""
        self.touched.add(app)
        self.guarded(app, self.replace, app, target)
        self.sweep()

    def replace(self, app, target):
        """Stop the matching running instances and drop the crashed ones; reconcile starts them anew.

        With the front door, web instances are retired instead: they serve until their replacements are up.
        """
        want = self.want(app)
        for key, inst in list(self.apps.get(app, {}).items()):
            if not inst.get("retired") and not inst.get("oneoff") and target in (None, inst["name"], inst["type"]):
                if inst["state"] in RUNNING:
                    if self.router.enabled and inst["type"] == "web" and want is not None:
                        self.retire(app, key, inst, replaced=True)
                    else:
                        self.begin_stop(app, inst, want.grace if want else inst.get("grace", 30.0))
                elif inst["state"] == "crashed":
                    self.forget(app, key)
        self.reconcile(app)
