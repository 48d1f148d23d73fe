"""The supervisor's state on disk: run/state.json written, a previous supervisor's instances adopted, broken apps.

Its state is on disk, so a new supervisor adopts the processes of one that was killed instead of
starting duplicates. A damaged file marks one app broken, said once, and tried again now and then.
"""

import os
import signal
import sys

from tinyserv.platform import boot, privileged
from tinyserv.state import appstate, releases, store
from tinyserv.common.errors import TinyservError
from tinyserv.supervise.instances import RUNNING, is_instance_mark, one_line, retired_key

BROKEN_RETRY = 5  # seconds between attempts at an app whose files could not be read


class OnDisk:
    """The Supervisor's half that reads and writes disk: saving, adopting, and apps whose files are broken."""

    def mark_broken(self, app, error):
        """Remember (and say once, in the app log and ours) why app cannot be supervised."""
        reason = one_line(error)
        if self.broken.get(app) != reason:
            self.event(app, "cannot supervise this app: %s" % reason)
            print("tinyserv supervisor: %s: %s" % (app, reason), file=sys.stderr, flush=True)
        self.broken[app] = reason
        self.dirty.add(app)

    def clear_broken(self, app):
        """The app reconciled fine: forget why it was broken (and say so in its log)."""
        if self.broken.pop(app, None) is not None:
            if not self.shutting_down:
                self.event(app, "this app's files read fine again")
            self.dirty.add(app)

    def retry_broken(self, now):
        """Every BROKEN_RETRY s, try broken apps again: someone may have repaired their files."""
        if self.broken and now >= self.broken_retry:
            self.broken_retry = now + BROKEN_RETRY
            for app in list(self.broken):
                self.guarded(app, self.reconcile, app)
            self.sweep()

    def save_dirty(self):
        """Tell the router about every app that changed, let it act, and write their state.json."""
        if self.dirty:  # what changed is looked at on the next ticks until it is steady; census() made anew
            self.active |= self.dirty
            self.counted = None
            self.expect_web_looks(self.dirty)
        for app in list(self.dirty):
            self.guarded(app, self.route, app)
        if self.router.enabled:
            try:
                changed = self.router.tick(self.sys.clock())
            except (TinyservError, OSError, ValueError) as e:
                self.note("front door: %s" % one_line(e))
                changed = False
            moved = (self.router.take_moved() | self.dirty) if changed else set(self.dirty)
            self.mark_routed(moved)
            for app in sorted(moved & set(self.router.live)) if changed else ():
                self.guarded(app, self.publish_routes, app)
        for app in list(self.dirty):
            self.dirty.discard(app)
            self.guarded(app, self.save, app)

    def save(self, app):
        """Write run/state.json: the instances, who supervises them, and why the app is broken, if it is."""
        run_dir = self.layout.app_file(app, "run")
        if not os.path.isdir(run_dir):
            return
        shown = [{k: v for k, v in i.items() if k != "reader"} for i in self.apps.get(app, {}).values()]
        try:
            store.write_json(self.layout.state_file(app), {"instances": shown, "supervisor": os.getpid(),
                                                           "broken": self.broken.get(app)}, durable=False)
        except TinyservError:
            if os.path.isdir(run_dir):
                raise  # else the app is being destroyed under us: nothing to save

    def adopt(self):
        """Take over the live instances a previous supervisor left behind; kill the ones nobody can take over."""
        table = self.sys.marked_by(self.layout.tag + ":")
        kept = set()
        for app in self.layout.apps():
            self.guarded(app, self.adopt_app, app, table, kept)
        for mark, pids in table.items():
            if is_instance_mark(mark) and mark not in kept and not self.change_runs(mark):
                self.sys.signal_pids(pids, signal.SIGKILL)  # unrecorded, or its record is unreadable
        self.keep_services(self.services.adopt)

    def change_runs(self, mark):
        """Is mark a web a boot check kept for a change (a push) that still runs? That change owns it, not us."""
        owner = boot.owner_of(mark)
        return owner is not None and self.sys.alive(*owner)

    def adopt_app(self, app, table, kept):
        """Take over one app's live instances, as its run/state.json lists them."""
        try:
            saved = appstate.supervisor_state(self.layout, app)
        except TinyservError as e:
            self.event(app, "cannot adopt this app's processes (%s); starting them afresh" % e)
            return
        for inst in saved["instances"]:
            if inst["state"] in RUNNING + ("stopping", "draining") and self.sys.alive(inst["pid"], inst["starttime"]):
                if self.root_mode and not self.its_own(app, inst, table):
                    self.event(app, "%s not adopted: pid %s is not one of this app's processes" % (
                        inst["name"], inst["pid"]))
                    continue
                self.take_over(app, inst)
                kept.add(inst.get("mark"))
            elif inst.get("mark"):
                self.sys.signal_pids(table.get(inst["mark"], []), signal.SIGKILL)

    def its_own(self, app, inst, table):
        """Root mode: is the pid the deploy user's state names the leader of a process group of the app's own
        user, carrying the app's mark? Root signals what it adopts; state.json is the deploy user's to write."""
        mark, pid = inst.get("mark") or "", inst.get("pid")
        if not isinstance(pid, int) or inst.get("pgid", pid) != pid or not mark.startswith(self.layout.app_marks(app)):
            return False
        user = privileged.find_account(self.layout, app)
        return bool(user and self.sys.leader_uid(pid) == user.uid and pid in [p for p, _ in table.get(mark, ())])

    def take_over(self, app, inst):
        """Supervise a live instance another supervisor started: its pid, pipe and mark as saved."""
        now = self.sys.clock()
        for key, default in (("command", ""), ("since", now), ("started", now), ("restarts", 0),
                             ("exit_code", None), ("next_try", None), ("grace", 30.0), ("mark", None)):
            inst.setdefault(key, default)
        if "port" not in inst:
            inst["port"] = releases.port(self.layout, app)
        inst.update(child=False)
        if inst["state"] == "stopping":
            inst["kill_at"] = now + 1
            if inst.get("strays") is None:
                self.find_strays(inst, signal.SIGTERM)
        if inst["state"] == "draining":
            inst.setdefault("drain_until", now + inst["grace"])
        self.apps.setdefault(app, {})[retired_key(inst) if inst.get("retired") else inst["name"]] = inst
        self.open_pipe(app, inst)
        self.event(app, "%s adopted by a new supervisor (pid %d)" % (inst["name"], os.getpid()))
        self.dirty.add(app)
