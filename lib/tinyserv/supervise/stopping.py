"""How the supervisor stops an instance: SIGTERM to its group and its marked strays, SIGKILL at the deadline.

Daemons that left the instance's process group still carry its mark (TINYSERV_INSTANCE): one /proc
scan (sweep) finds them for every instance that stops or crashed, and the instance is gone only once
its group and those strays are.
"""

import signal


class Stopping:
    """The Supervisor's stopping half: signals, deadlines and the sweep for strays (self.sweeps)."""

    def begin_stop(self, app, inst, grace):
        """SIGTERM the instance's group and its marked strays; tick() sends SIGKILL once grace has passed."""
        self.sys.signal_group(inst["pgid"], signal.SIGTERM)
        inst.update(state="stopping", since=self.sys.clock(), kill_at=self.sys.clock() + grace, strays=None)
        self.find_strays(inst, signal.SIGTERM)
        self.event(app, "Stopping %s%s (SIGTERM)" % (inst["name"], " of v%d" % inst["version"] if inst.get("retired")
                                                     else ""))
        self.dirty.add(app)

    def advance_stop(self, app, inst, now):
        """A stopping instance is gone once its group and its marked strays are; SIGKILL both at the deadline."""
        self.exited(inst)
        if not self.sys.group_members(inst["pgid"]) and not self.lingering(inst):
            inst["state"] = "gone"
            self.event(app, "%s%s stopped" % (inst["name"], " of v%d" % inst["version"] if inst.get("retired") else ""))
        elif now >= inst["kill_at"]:
            self.sys.signal_group(inst["pgid"], signal.SIGKILL)
            self.sys.signal_pids(inst.get("strays") or [], signal.SIGKILL)
            inst["kill_at"] = now + 1
            self.event(app, "%s did not stop in time: SIGKILL" % inst["name"])

    def find_strays(self, inst, sig):
        """Have the next sweep() find the processes carrying inst's mark (daemons too) and send them sig."""
        if inst.get("mark") and inst["pid"]:
            self.sweeps[inst["mark"]] = (inst, sig)
        else:
            inst["strays"] = []

    def sweep(self):
        """One /proc scan for every instance that stops or crashed: remember its marked processes, signal them."""
        if not self.sweeps:
            return
        pending, self.sweeps = self.sweeps, {}
        table = self.sys.marked_by(self.layout.tag + ":")
        for mark, (inst, sig) in pending.items():
            inst["strays"] = table.get(mark, [])
            self.sys.signal_pids(inst["strays"], sig)

    def lingering(self, inst):
        """Is a process found by the instance's mark still alive?"""
        return any(self.sys.alive(pid, started) for pid, started in inst.get("strays") or ())

    def exited(self, inst):
        """Exit code if the instance's main process has ended (None: unknown, e.g. adopted)."""
        if inst.get("child"):
            code = self.sys.reap(inst["pid"])
            if code is not None:
                inst["exit_code"] = code
                return True
        return not self.sys.alive(inst["pid"], inst["starttime"])
