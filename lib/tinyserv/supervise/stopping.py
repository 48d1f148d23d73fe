"""How the supervisor stops an instance: SIGTERM to its group and its marked strays, SIGKILL at the deadline.

Daemons that left the instance's process group still carry its mark (TINYSERV_INSTANCE): one /proc
scan (sweep) finds them for every instance that stops or crashed, and the instance is gone only once
its group and those strays are.
"""

import os
import selectors
import signal

from tinyserv.platform import procs

EXIT = "exit"  # the selector's tag of an instance's exit_fd: (EXIT, app)


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

    def watch_exit(self, app, inst):
        """Have the instance's end wake the loop (its exit_fd in the selector, naming app): no look at it until then,
        for a child as for an adopted one (not our child: no SIGCHLD; else a look every ADOPTED_CHECK s). No watch
        when the kernel gives no exit_fd, or when the pid is no longer the instance's (it ended, or was reused):
        the next look sees that."""
        pid = inst.get("pid")
        if not pid or pid in self.exit_fds:
            return
        fd = self.sys.exit_fd(pid)
        # Still the instance's process (looked at after the descriptor is open)? A child is until reaped (a zombie
        # too: its pidfd turns readable once waitpid can report it); an adopted one while it lives. Else the pid may
        # be another process's by now.
        child = inst.get("child")
        ours = not procs.ended_child(pid, inst.get("starttime"), self.sys.starttime) if child else self.sys.alive(
            pid, inst.get("starttime"))
        if fd is None:
            self.blind_children = self.blind_children or bool(child and ours)  # no pidfd for a live child
            return
        if not ours:
            os.close(fd)
            self.touched.add(app)  # ended already (its SIGCHLD may have come): the next tick looks
            return
        self.exit_fds[pid] = fd
        self.selector.register(fd, selectors.EVENT_READ, (EXIT, app))

    def exit_seen(self, fd):
        """A watched process ended (its exit_fd is readable): stop watching it; the next tick looks at its app."""
        app = self.selector.get_key(fd).data[1]
        for pid in [pid for pid, watched in self.exit_fds.items() if watched == fd]:
            self.unwatch_exit(pid)
        self.touched.add(app)

    def unwatch_exit(self, pid):
        """Close pid's exit_fd, if it has one (before the pid can be another instance's)."""
        fd = self.exit_fds.pop(pid, None)
        if fd is not None:
            self.selector.unregister(fd)
            os.close(fd)

    def unwatch_exits(self):
        for pid in list(self.exit_fds):
            self.unwatch_exit(pid)

    def idle(self):
        """True when shutting down and nothing runs any more."""
        return self.shutting_down and not any(self.apps.values()) and self.services.idle()

    def lingering(self, inst):
        """Is a process found by the instance's mark still alive?"""
        return any(self.sys.alive(pid, started) for pid, started in inst.get("strays") or ())

    def exited(self, inst):
        """Has the instance's main process ended (its exit code in inst["exit_code"] when it was our child)?"""
        if inst.get("child"):
            code = self.sys.reap(inst["pid"])
            if code is not None:
                inst["exit_code"] = code
                return True
            return procs.ended_child(inst["pid"], inst["starttime"], self.sys.starttime)
        if inst["pid"] in self.exit_fds:
            return False  # its exit_fd wakes the loop when it ends (exit_seen stops watching it first): no /proc read
        return not self.sys.alive(inst["pid"], inst["starttime"])
