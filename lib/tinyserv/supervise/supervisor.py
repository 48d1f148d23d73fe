"""The supervisor: one small daemon per server that owns every app's processes.

It reconciles what should run (the current release, the formation) with what
runs, restarts crashed instances with backoff, and stamps their output into the
app log. Its state is on disk, so a new supervisor adopts the processes of one
that was killed instead of starting duplicates: every instance writes into a
named pipe it also holds open for reading, so its output survives the reader.
A standby supervisor waits on the lock to take over at once when this one dies.

Faults stay where they happen: a damaged file marks one app broken, a process
that cannot be spawned is one crashed instance, and one instance's output is
read in bounded slices within a budget, so it cannot starve the others.

The Supervisor is this module's reconciling and ticking, with a half per concern beside it:
switching.py (web behind the front door), stopping.py (signals, deadlines, strays), restarts.py
(crashes, memory, ps:restart, cron runs), health.py (webs that stop answering),
ondisk.py (state.json, adoption, broken apps) and output.py (pipes, budgets, app logs). The control
socket and the event loop that drive it are loop.py's.
"""

import os
import selectors
import sys
import time

from tinyserv.platform import appenv, boot, privileged, procs, services, users
from tinyserv.state import appstate, releases
from tinyserv.supervise import cron
from tinyserv.frontdoor import router, swarm
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.common.procfile import process_types
from tinyserv.supervise.health import Health
from tinyserv.supervise.instances import RUNNING, one_line, steady, unwatched
from tinyserv.supervise.ondisk import OnDisk
from tinyserv.supervise.output import PIPE_SIZE, Output
from tinyserv.supervise.restarts import Restarts
from tinyserv.supervise.stopping import Stopping
from tinyserv.supervise.switching import Switching

POLL = 0.5  # how often to look at processes when nothing is changing
BUSY_POLL = 0.05  # ... and while something is starting or stopping
ADOPTED_CHECK = 2  # seconds between looks at instances that are not our children and have no exit_fd watched
APP_FAULTS = (TinyservError, OSError, ValueError, KeyError, TypeError)  # what one app's bad data can raise


class System:
    """The real world the supervisor acts on; tests pass a fake with the same methods."""

    clock = staticmethod(time.time)
    spawn = staticmethod(procs.spawn)
    signal_group = staticmethod(procs.signal_group)
    signal_pids = staticmethod(procs.signal_pids)
    reap = staticmethod(procs.reap)
    alive = staticmethod(procs.alive)
    exit_fd = staticmethod(procs.exit_fd)
    starttime = staticmethod(procs.starttime)
    group_members = staticmethod(procs.group_members)
    children = staticmethod(procs.children)
    groups_rss = staticmethod(procs.groups_rss)
    marked_by = staticmethod(procs.marked_by)
    leader_uid = staticmethod(procs.leader_uid)
    accepts = staticmethod(boot.listening)
    listening_table = staticmethod(boot.listening_table)
    group_holds = staticmethod(procs.group_holds)
    healthy = staticmethod(boot.healthy)
    answering = staticmethod(boot.answering)
    free_port = staticmethod(boot.free_port)
    port_taken = staticmethod(lambda port: bool(procs.listening_sockets(port)))


class Desired:
    """What should run for one app: the current release and its instances."""

    def __init__(self, release, build_dir, meta, instances, grace):
        self.release = release
        self.build_dir = build_dir
        self.meta = meta
        self.instances = instances  # {"web.1": "command"}
        self.grace = grace


def desired_state(layout, app):
    """Read what should run for app from disk; None when the app no longer exists."""
    if not layout.exists(app):
        return None
    release = releases.current(layout, app)
    meta = appstate.build_meta(layout, app, release["build"]) if release and release["build"] else None
    if meta is None or appstate.scheduler(layout, app) == "swarm":  # Swarm runs it: nothing here, but its route
        return Desired(release, None, None, {}, 30.0)
    formation = appstate.formation(layout, app)
    quantity, stopped = formation["quantity"], formation["stopped"]
    instances = {}
    for ptype in process_types(meta["procfile"]):
        if ptype not in stopped:
            for n in range(1, quantity.get(ptype, 1) + 1):
                instances["%s.%d" % (ptype, n)] = meta["procfile"][ptype]
    return Desired(release, layout.build_dir(app, release["build"]), meta, instances,
                   settings.stop_timeout(release["config"]))


class Supervisor(Switching, Stopping, Restarts, OnDisk, Output, Health):
    """Owns the instances of every app; driven by Server.run() or, in tests, by tick()."""

    def __init__(self, layout, system=None, door=None):
        self.layout = layout
        self.sys = system or System()
        self.apps = {}  # app -> {name: instance dict}
        self.selector = selectors.DefaultSelector()  # epoll: no limit on descriptor numbers, unlike select()
        self.streams = {}  # fd -> Stream
        self.paused = {}  # fd -> when to read it again (over budget)
        self.budgets = {}  # (app, name) -> Budget, kept across restarts of the slot
        self.sweeps = {}  # mark -> (instance, signal): marked processes to find and signal
        self.broken = {}  # app -> why it cannot be supervised right now
        self.broken_retry = 0
        self.logs = {}
        self.dirty = set()
        self.shutting_down = False
        self.services = services.Keeper(layout, self.sys, self.note)
        self.next_memory_check = 0
        self.next_adopted_check = 0
        self.exit_fds = {}  # pid -> a descriptor readable once that adopted process ends (stopping.py)
        self.active = set()  # apps with an instance that is not steady: looked at on every tick until they are
        self.touched = set()  # apps events named since the last tick (True in it: every app)
        self.blind_children = False  # a child was started without an exit_fd: SIGCHLD means a look at every one
        self.listening = None  # {port: socket inodes} listening, for this tick's starting webs (None: ask each)
        self.counted = None  # census(), until something changes
        self.next_web_look = 0.0  # when health.py's next look at a web is due (0: see which)
        self.scheduler = cron.Scheduler(layout, self.note)  # asked what is due by the clock in self.sys
        # The front door: nginx if installed; a test with a fake system has none unless it passes a fake door.
        found = {} if system is None else {"binary": lambda: door.binary if door else None, "door": door}
        self.router = router.Router(layout, self.sys, self.services, self.note, **found)
        self.candidates = {}  # app -> a web instance that passed a boot check, to be kept as the live one
        self.root_mode = system is None and privileged.deploy_user(layout) is not None  # apps run as users of their own
        self.sites = {}  # app -> (public port, router settings, names of the web instances wanted)
        self.swarm = swarm.Watch(layout.tag, self.note)  # where swarm apps' web tasks listen (a thread, once used)

    def note(self, text):
        """A line in the supervisor's own log (its stderr)."""
        print("tinyserv supervisor: %s" % text, file=sys.stderr, flush=True)

    def keep_services(self, action):
        """Run a services.Keeper action; a damaged declaration is noted, never the end of the apps' supervision."""
        try:
            action()
        except (TinyservError, OSError, ValueError) as e:
            self.note("services: %s" % one_line(e))

    # --- one app's faults stay with that app (ondisk.py marks it broken) ---------------

    def guarded(self, app, action, *args):
        """Run action(*args) for app; a fault marks the app broken instead of stopping every app. Did it work?"""
        try:
            action(*args)
        except APP_FAULTS as e:
            self.mark_broken(app, e)
            return False
        return True

    # --- desired state -------------------------------------------------

    def known_apps(self):
        """Apps on disk and apps we still run processes for."""
        return set(self.layout.apps()) | set(self.apps)

    def sync(self, app=None, candidate=None):
        """Bring one app (or all, and the platform services) in line with what is on disk.

        candidate: a web instance a deploy boot-checked, to run as the new release's web.1.
        """
        self.router.refresh()
        self.touched.add(app or True)
        if candidate:
            self.candidates[app] = candidate
        if not app:  # services first: an app's redis-server should be up before the app connects to it
            self.keep_services(self.services.reconcile)
        for name in ([app] if app else sorted(self.known_apps())):
            self.guarded(name, self.reconcile, name)
        if candidate:
            self.drop_candidate(app)
        if not app:  # then the front door, which routes to the apps' instances (nginx is a service too)
            self.keep_services(self.router.ensure)
            self.keep_services(self.services.reconcile)
        self.sweep()

    def want(self, app):
        """What should run for app now: nothing once shutting down."""
        return None if self.shutting_down else desired_state(self.layout, app)

    def reconcile(self, app):
        """Stop what should not run, start what should and is not running.

        With the front door, a web instance of an older release (or one no longer wanted) is
        retired instead of stopped: it keeps serving until its replacement is up, then drains.
        """
        want = self.want(app)
        instances = self.apps.setdefault(app, {})
        version = want.release["version"] if want and want.release else None
        wanted = want.instances if want else {}
        public = releases.port(self.layout, app) if want else None
        for name, inst in list(instances.items()):
            if inst.get("oneoff") and want is not None:
                continue  # a cron job's run ends by itself, even after a deploy; only shutdown or destroy stop it
            if inst.get("retired"):
                if want is None or not self.router.enabled:
                    self.stop_retired(app, inst)
            elif name not in wanted or inst["version"] != version or not self.right_port(inst, public):
                if inst["state"] in RUNNING:
                    if self.router.enabled and inst["type"] == "web" and want is not None:
                        self.retire(app, name, inst)
                    else:
                        self.begin_stop(app, inst, want.grace if want else inst.get("grace", 30.0))
                elif inst["state"] != "stopping":
                    self.forget(app, name)
        for name, command in wanted.items():
            if name not in instances and not self.unretire(app, name, version, public) and not self.adopt_candidate(
                    app, name, want):
                self.start(app, name, command, want)
        if want is not None and self.router.enabled:
            self.sites[app] = (public, appstate.router_settings(self.layout, app),
                               [n for n in wanted if n.startswith("web.")])
        else:
            self.sites.pop(app, None)
        if not instances and want is None:
            self.apps.pop(app, None)
            self.close_log(app)
        for key in [k for k in self.budgets if k[0] == app and k[1] not in instances]:
            del self.budgets[key]
        self.scheduler.update(app, want.meta.get("cron") if want and want.meta else [], self.sys.clock())
        self.clear_broken(app)
        self.dirty.add(app)

    # --- one instance ----------------------------------------------------

    def start(self, app, name, command, want, carry=None):
        """Spawn one instance of the current release; one that cannot even be spawned counts as a crash."""
        port = (carry or {}).get("port") or self.port_for(app, name)
        version = want.release["version"]
        mark = self.layout.mark(app, "%s@%d" % (name, time.time_ns()))
        env = appenv.process_env(want.build_dir, want.meta, want.release["config"], app, name, port, version, mark,
                                 self.layout.data_dir(app))
        now = self.sys.clock()
        inst = {
            "name": name, "type": name.split(".")[0], "version": version, "command": command,
            "pid": 0, "pgid": 0, "starttime": None, "child": True,
            "state": "starting", "since": now, "started": now, "restarts": 0,
            "exit_code": None, "next_try": None, "fifo": None, "port": port, "grace": want.grace, "mark": mark,
            "memory_limit": settings.memory_limit(want.release["config"]), "reason": None,
        }
        if name.startswith("web.") and want.meta.get("healthcheck"):
            inst["health"] = want.meta["healthcheck"]
        inst.update(carry or {})
        self.apps.setdefault(app, {})[name] = inst
        self.dirty.add(app)
        try:
            self.launch(app, inst, want.build_dir, env)
        except (OSError, ValueError) as e:
            self.event(app, "%s could not be started: %s" % (name, one_line(e)))
            self.crashed(app, inst, now)
            return
        self.event(app, "Starting %s: %s" % (name, command))

    def launch(self, app, inst, cwd, env):
        """Make the instance's pipe and spawn its command writing into it."""
        run_dir = self.layout.app_file(app, "run")
        os.makedirs(run_dir, exist_ok=True)
        os.makedirs(env["TINYSERV_DATA_DIR"], mode=0o700, exist_ok=True)  # an app made before data dirs existed
        fifo = os.path.join(run_dir, "%s.%d.fifo" % (inst["name"], time.time_ns()))
        os.mkfifo(fifo, 0o600)
        inst["fifo"] = fifo  # from here on, forget() removes it
        inst["reader"] = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.watch(inst["reader"], app, inst["name"])
        procs.enlarge_pipe(inst["reader"], PIPE_SIZE)
        # O_RDWR: the instance is also a reader of its own pipe, so its writes never
        # hit a broken pipe while no supervisor is reading (we are being replaced).
        out = os.open(fifo, os.O_RDWR)
        try:
            pid = self.sys.spawn(["/bin/sh", "-c", inst["command"]], cwd, env, out, user=self.account(app))
        finally:
            os.close(out)
        inst.update(pid=pid, pgid=pid, starttime=self.sys.starttime(pid))
        if inst["type"] != "web":
            inst["state"] = "up"
        self.watch_exit(app, inst)

    def account(self, app):
        """Root mode: the app's own user (made if an app from before root mode has none yet); else None."""
        if not self.root_mode:
            return None
        with users.as_root():
            return privileged.make_account(self.layout, app)

    # --- an instance that is gone ----------------------------------------------

    def forget(self, app, name):
        """Drop an instance whose processes are gone; log the rest of its output, close and remove its pipe."""
        inst = self.apps.get(app, {}).pop(name, None)
        if inst is None:
            return
        self.unwatch_exit(inst.get("pid"))
        reader = inst.pop("reader", None)
        if reader is not None and reader in self.streams:
            self.flush_output(reader)
            self.unwatch(reader)
        if inst.get("fifo"):
            try:
                os.unlink(inst["fifo"])
            except OSError:
                pass
        self.dirty.add(app)

    # --- the loop ------------------------------------------------------------

    def tick(self, events=True):
        """Advance the instances that may have moved: notice exits, finish stops, restart, mark web up, drain old webs.

        events: True (look at every instance), or the apps an event named (a sync, a pipe's end, an exit_fd):
        all their instances are looked at. Otherwise only the apps with an instance that is not steady
        (self.active) are, so a tick's cost follows what changes, not the number of apps. Adopted instances
        (not our children) without an exit_fd are looked at every ADOPTED_CHECK s.
        """
        now = self.sys.clock()
        adopted = now >= self.next_adopted_check
        if adopted:
            self.next_adopted_check = now + ADOPTED_CHECK
        self.sweep()
        touched = set(self.apps) if events is True else set(events or ())
        looked_apps = touched | self.active
        look = [(app, inst) for app in looked_apps for inst in list(self.apps.get(app, {}).values())
                if app in touched or not steady(inst) or (adopted and unwatched(inst, self.exit_fds))]
        if adopted:  # the adopted instances of the other apps, whose end nothing else tells of
            look += [(app, inst) for app, inst in self.census()["adopted"]
                     if app not in looked_apps and unwatched(inst, self.exit_fds)]
        # Which of the starting webs listen: one dump of the listening sockets for all of them, not one each.
        self.listening = self.sys.listening_table([i["port"] for _, i in look if i["state"] == "starting"])
        for app, inst in look:
            self.guarded(app, self.advance, app, inst, now)
            if inst["state"] != "gone":
                self.watch_exit(app, inst)
        changed = looked_apps | {app for app, _ in look}
        self.expect_web_looks(changed)
        self.check_webs(now)  # each web's own timer (health.py): cheap when none is due
        if changed:
            self.tick_changes(now, changed)
        self.retry_broken(now)
        self.check_memory(now)
        self.keep_services(self.services.tick)
        self.run_due_jobs(now)
        self.dirty |= self.swarm.changed()  # a swarm app's tasks moved: route it again
        self.save_dirty()
        self.active = {app for app in self.active if not all(steady(i) for i in self.apps.get(app, {}).values())}

    def each_instance(self):
        """[(app, instance)] of every instance now (a list: the loop body may change the dicts)."""
        return [(app, inst) for app, instances in list(self.apps.items()) for inst in list(instances.values())]

    def take_events(self):
        """What the events since the last tick ask tick() to look at: True (everything) or a set of apps."""
        touched, self.touched = self.touched, set()
        return True if True in touched else touched

    def child_exited(self):
        """SIGCHLD: an instance that is our child ends with an exit_fd of its own (exit_seen names its app);
        only where the kernel gives none does the signal mean a look at every instance."""
        if self.blind_children:
            self.touched.add(True)

    def poll_interval(self):
        """Seconds until the next thing to look at: soon while instances start, stop or wait to restart."""
        now = self.sys.clock()
        wait = POLL
        if self.router.busy():
            return BUSY_POLL
        for app in self.active:  # an app whose instances are all steady needs no look until an event
            for inst in self.apps.get(app, {}).values():
                if inst["state"] in ("starting", "stopping", "draining") or inst.get("retired"):
                    return BUSY_POLL
                if inst["state"] == "crashed":
                    wait = min(wait, max(BUSY_POLL, inst["next_try"] - now))
        for until in self.paused.values():
            wait = min(wait, max(BUSY_POLL, until - now))
        for due in (self.services.next_due(now, BUSY_POLL), self.scheduler.next_due(now),
                    self.router.next_due(now, BUSY_POLL)):
            wait = wait if due is None else min(wait, due)
        return wait

    def shutdown(self):
        """Stop every instance of every app and start nothing any more."""
        self.shutting_down = True
        self.services.shutting_down = True
        self.sync()

    def close(self):
        """Close every pipe, log, the router's socket and the selector (tests; a real supervisor just exits)."""
        self.router.close_socket()
        for fd in list(self.streams):
            self.unwatch(fd)
        for app in list(self.logs):
            self.close_log(app)
        self.unwatch_exits()
        self.selector.close()


