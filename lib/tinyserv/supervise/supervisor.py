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
"""

import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time

from tinyserv.platform import appenv, privileged, procs
from tinyserv.state import appstate, releases, store
from tinyserv.deploy import boot
from tinyserv.supervise import cron, services
from tinyserv.frontdoor import nginx, router, swarm
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.state.logs import Lines, LogFile
from tinyserv.common.procfile import process_types

POLL = 0.5  # how often to look at processes when nothing is changing
BUSY_POLL = 0.05  # ... and while something is starting or stopping
STABLE_AFTER = 60  # an instance that ran this long before crashing restarts at once
MAX_BACKOFF = 300
KILL_WAIT = 5  # a crashed instance's leftovers get this long to die of SIGKILL before its restart goes ahead
RUNNING = ("starting", "up")
SETTLE = boot.SETTLE  # a new web must be up this long before the old ones it replaces drain
DRAIN_AFTER = 1.0  # seconds an old web gets, once nginx no longer routes to it, before idle means done

# One instance's output: read in slices, within a budget, so it can neither starve the
# loop nor burn the CPU. Over budget, its pipe is not read until the window ends: the
# pipe fills and the instance's writes wait (backpressure), nothing is dropped.
READ_CHUNK = 64 * 1024  # at most this much is read from one instance per turn of the loop
OUTPUT_BUDGET = 1024 * 1024  # what one instance may log per window: its bytes, plus LINE_COST per line
BUDGET_WINDOW = 1.0  # seconds
LINE_COST = 32  # a line costs about its stamp and name more in the log ("2026-11-28T05:00:00Z web.1: ")
NOTICE_EVERY = 60  # at most one throttling notice per instance per minute
PIPE_SIZE = 1024 * 1024  # what an instance can write while no supervisor reads (best effort, see procs)
FLUSH_READS = 2 * PIPE_SIZE // READ_CHUNK  # reads of a dead instance's pipe before the rest is dropped

BROKEN_RETRY = 5  # seconds between attempts at an app whose files could not be read
STANDBY_CHECK = 3  # seconds between checks that a standby supervisor waits
MEMORY_CHECK = 2  # seconds between looks at the resident memory of instances whose app has a memory limit
APP_FAULTS = (TinyservError, OSError, ValueError, KeyError, TypeError)  # what one app's bad data can raise

from tinyserv import REMOTE_SCRIPT  # noqa: E402


def backoff(streak):
    """Seconds to wait before restart number `streak` of a crash loop: 0, 2, 4, 8 ... 300."""
    return 0 if streak <= 1 else min(2 ** (streak - 1), MAX_BACKOFF)


def port_open(port, host="127.0.0.1"):
    """Does something accept TCP connections on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def listening(port, pgid):
    """Is it process group pgid that accepts connections on port?

    Knocking first: it costs a refused connection, where reading the socket tables costs
    milliseconds on a busy server, and the boot check asks every 10 ms.
    """
    return port_open(port) and procs.group_listens(pgid, port)


def retired_key(inst):
    """Where an old web waits while its replacement runs under its name: web.1~PID."""
    return "%s~%d" % (inst["name"], inst["pid"])


def one_line(error):
    """An exception as one line of text, for a log line or state.json."""
    return " ".join(str(error).split()) or type(error).__name__


def is_instance_mark(mark):
    """Does a TINYSERV_INSTANCE value belong to an instance (web.1@...), not a build or a one-off run?"""
    return "@" in mark.rsplit(":", 1)[-1]


class System:
    """The real world the supervisor acts on; tests pass a fake with the same methods."""

    clock = staticmethod(time.time)
    spawn = staticmethod(procs.spawn)
    signal_group = staticmethod(procs.signal_group)
    signal_pids = staticmethod(procs.signal_pids)
    reap = staticmethod(procs.reap)
    alive = staticmethod(procs.alive)
    starttime = staticmethod(procs.starttime)
    group_members = staticmethod(procs.group_members)
    group_rss = staticmethod(procs.group_rss)
    marked_by = staticmethod(procs.marked_by)
    accepts = staticmethod(listening)
    healthy = staticmethod(boot.healthy)
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


class Budget:
    """How much output one instance slot may still log in the current window; the clock is passed in."""

    def __init__(self, per_window=OUTPUT_BUDGET, window=BUDGET_WINDOW):
        self.per_window = per_window
        self.window = window
        self.started = None
        self.left = per_window
        self.noticed = None  # when the last throttling notice was logged

    def allowance(self, now):
        """Bytes that may be read now; 0 while over budget, until resumes()."""
        if self.started is None or now >= self.started + self.window:
            self.started, self.left = now, self.per_window
        return max(0, self.left)

    def spend(self, cost):
        """Charge what was just logged."""
        self.left -= cost

    def resumes(self):
        """When the current window ends."""
        return self.started + self.window

    def notice_due(self, now):
        """True at most once per NOTICE_EVERY seconds: time to tell the app log about throttling."""
        if self.noticed is not None and now - self.noticed < NOTICE_EVERY:
            return False
        self.noticed = now
        return True


class Stream:
    """One instance's pipe as the supervisor reads it: whose it is, its unfinished line, its budget."""

    def __init__(self, app, name, budget):
        self.app = app
        self.name = name
        self.lines = Lines()
        self.budget = budget


class Supervisor:
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

    # --- one app's faults stay with that app ---------------------------------------

    def guarded(self, app, action, *args):
        """Run action(*args) for app; a fault marks the app broken instead of stopping every app. Did it work?"""
        try:
            action(*args)
        except APP_FAULTS as e:
            self.mark_broken(app, e)
            return False
        return True

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

    # --- desired state -------------------------------------------------

    def known_apps(self):
        """Apps on disk and apps we still run processes for."""
        return set(self.layout.apps()) | set(self.apps)

    def sync(self, app=None, candidate=None):
        """Bring one app (or all, and the platform services) in line with what is on disk.

        candidate: a web instance a deploy boot-checked, to run as the new release's web.1.
        """
        self.router.refresh()
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

    def account(self, app):
        """Root mode: the app's own user (made if an app from before root mode has none yet); else None."""
        if not self.root_mode:
            return None
        with privileged.as_root():
            return privileged.make_account(self.layout, app)

    def begin_stop(self, app, inst, grace):
        """SIGTERM the instance's group and its marked strays; tick() sends SIGKILL once grace has passed."""
        self.sys.signal_group(inst["pgid"], signal.SIGTERM)
        inst.update(state="stopping", since=self.sys.clock(), kill_at=self.sys.clock() + grace, strays=None)
        self.find_strays(inst, signal.SIGTERM)
        self.event(app, "Stopping %s%s (SIGTERM)" % (inst["name"], " of v%d" % inst["version"] if inst.get("retired")
                                                     else ""))
        self.dirty.add(app)

    # --- web behind the front door: internal ports, switching without a gap, draining ---------------

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
        if cand and self.sys.alive(cand["pid"], cand["starttime"]):
            inst = dict(cand, type="web", state="up", child=False, retired=True, restarts=0, exit_code=None,
                        next_try=None, grace=cand.get("grace", 30.0), command=cand.get("command", ""))
            inst.setdefault("since", self.sys.clock())
            inst.setdefault("started", self.sys.clock())
            self.apps.setdefault(app, {})[retired_key(inst)] = inst
            self.open_pipe(app, inst)
            self.begin_stop(app, inst, inst["grace"])

    def open_pipe(self, app, inst):
        """Start reading the pipe of an instance started by someone else (a boot check, a previous supervisor)."""
        try:
            reader = os.open(inst["fifo"], os.O_RDONLY | os.O_NONBLOCK) if inst.get("fifo") else None
        except OSError:
            reader = None
        if reader is not None:
            inst["reader"] = reader
            self.watch(reader, app, inst["name"])

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
        if all(c and c["state"] == "up" and now - c["since"] >= SETTLE for c in current):
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
        self.router.update(app, router.site_for(self.layout, app, public, primary, backup, saved))

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

    def router_log(self):
        """Write the requests nginx reported into their apps' logs, naming the instance that answered."""
        for fields in self.router.read_log():
            app = fields["app"]
            if app not in self.apps:
                continue
            port = nginx.upstream_port(fields)
            dyno = next((i["name"] for i in self.apps[app].values() if port and i["port"] == port), None)
            self.write_lines(app, "router", [nginx.router_line(fields, dyno)])

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

    def forget(self, app, name):
        """Drop an instance whose processes are gone; log the rest of its output, close and remove its pipe."""
        inst = self.apps.get(app, {}).pop(name, None)
        if inst is None:
            return
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

    def exited(self, inst):
        """Exit code if the instance's main process has ended (None: unknown, e.g. adopted)."""
        if inst.get("child"):
            code = self.sys.reap(inst["pid"])
            if code is not None:
                inst["exit_code"] = code
                return True
        return not self.sys.alive(inst["pid"], inst["starttime"])

    # --- the loop ------------------------------------------------------------

    def tick(self):
        """Advance every instance: notice exits, finish stops, restart, mark web up, drain old webs."""
        now = self.sys.clock()
        self.sweep()
        for app, inst in self.each_instance():
            self.guarded(app, self.advance, app, inst, now)
        for app in list(self.apps):
            self.guarded(app, self.drain_due, app, now)
        self.sweep()
        for app, inst in self.each_instance():
            if inst["state"] == "crashed" and self.restart_due(inst, now):
                if not self.guarded(app, self.restart_crashed, app, inst):
                    inst["next_try"] = now + BROKEN_RETRY
        for app in list(self.apps):
            gone = [name for name, i in self.apps[app].items() if i["state"] == "gone"]
            for name in gone:
                self.forget(app, name)
            if gone:
                self.guarded(app, self.reconcile, app)
        self.sweep()
        self.retry_broken(now)
        self.check_memory(now)
        self.keep_services(self.services.tick)
        self.run_due_jobs(now)
        self.dirty |= self.swarm.changed()  # a swarm app's tasks moved: route it again
        self.save_dirty()

    def each_instance(self):
        """[(app, instance)] of every instance now (a list: the loop body may change the dicts)."""
        return [(app, inst) for app, instances in list(self.apps.items()) for inst in list(instances.values())]

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
        elif state == "starting" and self.sys.accepts(inst["port"], inst["pgid"]) and (
                not inst.get("health") or self.sys.healthy(inst["port"], inst["health"])):
            inst.update(state="up", since=now)
            self.event(app, "%s accepts connections on port %d" % (inst["name"], inst["port"]) + (
                " and answers %s" % inst["health"] if inst.get("health") else ""))
            self.dirty.add(app)
        elif state == "draining" and self.drained(inst, now):
            self.begin_stop(app, inst, inst.get("grace", 30.0))
        elif state == "stopping":
            self.advance_stop(app, inst, now)

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

    def check_memory(self, now):
        """Every MEMORY_CHECK s: an instance over its app's TINYSERV_MEMORY_LIMIT is restarted (Heroku's R15)."""
        if now < self.next_memory_check:
            return
        self.next_memory_check = now + MEMORY_CHECK
        for app, inst in self.each_instance():
            limit = inst.get("memory_limit")
            if limit and inst["state"] in RUNNING and inst["pid"] and not inst.get("retired"):
                used = self.sys.group_rss(inst["pgid"])
                if used > limit:
                    self.event(app, "Error R15 (Memory quota exceeded): %s used %d MB, over TINYSERV_MEMORY_LIMIT="
                                    "%d MB; restarting it" % (inst["name"], used // 2 ** 20, limit // 2 ** 20))
                    inst.update(exit_code=None, reason="memory")
                    self.crashed(app, inst, now)

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
        kept = {k: inst.get(k) for k in ("restarts", "streak", "exit_code", "reason")}
        if self.router.enabled and inst["type"] == "web" and self.right_port(inst, releases.port(self.layout, app)) \
                and not self.sys.port_taken(inst["port"]):
            kept["port"] = inst["port"]  # the same port: nginx's upstream needs no change for a crash
        self.forget(app, inst["name"])
        self.start(app, inst["name"], want.instances[inst["name"]], want, kept)

    def restart(self, app, target=None):
        """ps:restart: gracefully replace matching instances; resets their backoff."""
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

    # --- output ----------------------------------------------------------------

    def log(self, app):
        """The app's open log file."""
        if app not in self.logs:
            self.logs[app] = LogFile(self.layout.log_file(app), clock=self.sys.clock)
        return self.logs[app]

    def close_log(self, app):
        """Close the app's log file (it is opened again on the next line)."""
        log = self.logs.pop(app, None)
        if log:
            log.close()

    def event(self, app, text):
        """A platform event, in the app's log like Heroku's own lines."""
        self.write_lines(app, "tinyserv", [text])

    def write_lines(self, app, source, texts):
        """Append lines to app's log; a log that cannot be written (disk full, app removed) loses them."""
        if not texts:
            return
        try:
            if os.path.isdir(self.layout.app_dir(app)):
                self.log(app).write_lines(source, texts)
        except (OSError, TinyservError):
            self.close_log(app)

    def watch(self, fd, app, name):
        """Start reading an instance's pipe in the loop."""
        self.streams[fd] = Stream(app, name, self.budgets.setdefault((app, name), Budget()))
        self.selector.register(fd, selectors.EVENT_READ)

    def unwatch(self, fd):
        """Stop reading a pipe and close it."""
        self.streams.pop(fd, None)
        if self.paused.pop(fd, None) is None:
            self.selector.unregister(fd)
        os.close(fd)

    def close_output(self, fd):
        """An instance's pipe reached end of file: its processes are all gone."""
        stream = self.streams.get(fd)
        self.unwatch(fd)
        for inst in self.apps.get(stream.app, {}).values() if stream else ():
            if inst.get("reader") == fd:  # an old web waiting under web.1~PID reads under its name too
                del inst["reader"]

    def read_output(self, fd):
        """Log at most READ_CHUNK bytes of an instance's output, within its budget; False at end of file."""
        stream = self.streams[fd]
        now = self.sys.clock()
        allowed = min(READ_CHUNK, stream.budget.allowance(now))
        if allowed > 0:
            chunk = read_some(fd, allowed)
            if chunk == b"":
                self.write_lines(stream.app, stream.name, stream.lines.flush())
                return False
            if chunk:
                self.log_output(stream, chunk)
        if stream.budget.allowance(now) <= 0:
            self.throttle(fd, stream, now)
        return True

    def log_output(self, stream, chunk):
        """Turn bytes into stamped lines in the app log and charge them to the budget."""
        lines = stream.lines.feed(chunk)
        self.write_lines(stream.app, stream.name, lines)
        stream.budget.spend(len(chunk) + LINE_COST * len(lines))

    def throttle(self, fd, stream, now):
        """Over budget: leave the pipe unread until the window ends; say so in the app log now and then."""
        if fd not in self.paused:
            self.selector.unregister(fd)
        self.paused[fd] = stream.budget.resumes()
        if stream.budget.notice_due(now):
            self.event(stream.app, "Error L10 (output rate limit): %s logs more than %d KiB/s; its output is "
                       "read at that rate, so its writes wait" % (stream.name, OUTPUT_BUDGET // 1024))

    def resume_due(self, now):
        """Read again the pipes whose budget window has ended."""
        for fd, until in list(self.paused.items()):
            if now >= until:
                del self.paused[fd]
                self.selector.register(fd, selectors.EVENT_READ)

    def flush_output(self, fd):
        """Before a pipe is closed: log what is left in it within the budget, drop and count the rest."""
        stream = self.streams[fd]
        now = self.sys.clock()
        dropped = 0
        for _ in range(FLUSH_READS):
            chunk = read_some(fd, READ_CHUNK)
            if not chunk:
                break
            if stream.budget.allowance(now) > 0:
                self.log_output(stream, chunk)
            else:
                dropped += len(chunk)
        self.write_lines(stream.app, stream.name, stream.lines.flush())
        if dropped:
            self.event(stream.app, "Error L10 (output buffer overflow): %d bytes of %s's output dropped" % (
                dropped, stream.name))

    # --- persistence ------------------------------------------------------------

    def save_dirty(self):
        """Tell the router about every app that changed, let it act, and write their state.json."""
        for app in list(self.dirty):
            self.guarded(app, self.route, app)
        if self.router.enabled:
            try:
                changed = self.router.tick(self.sys.clock())
            except (TinyservError, OSError, ValueError) as e:
                self.note("front door: %s" % one_line(e))
                changed = False
            self.mark_routed(self.apps if changed else list(self.dirty))
            if changed:
                for app in list(self.router.live):
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
                                                           "broken": self.broken.get(app)})
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
            if is_instance_mark(mark) and mark not in kept:
                self.sys.signal_pids(pids, signal.SIGKILL)  # unrecorded, or its record is unreadable
        self.keep_services(self.services.adopt)

    def adopt_app(self, app, table, kept):
        """Take over one app's live instances, as its run/state.json lists them."""
        try:
            saved = appstate.supervisor_state(self.layout, app)
        except TinyservError as e:
            self.event(app, "cannot adopt this app's processes (%s); starting them afresh" % e)
            return
        for inst in saved["instances"]:
            if inst["state"] in RUNNING + ("stopping", "draining") and self.sys.alive(inst["pid"], inst["starttime"]):
                self.take_over(app, inst)
                kept.add(inst.get("mark"))
            elif inst.get("mark"):
                self.sys.signal_pids(table.get(inst["mark"], []), signal.SIGKILL)

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

    def poll_interval(self):
        """Seconds until the next thing to look at: soon while instances start, stop or wait to restart."""
        now = self.sys.clock()
        wait = POLL
        if self.router.busy():
            return BUSY_POLL
        for instances in self.apps.values():
            for inst in instances.values():
                if inst["state"] in ("starting", "stopping", "draining") or inst.get("retired"):
                    return BUSY_POLL
                if inst["state"] == "crashed":
                    wait = min(wait, max(BUSY_POLL, inst["next_try"] - now))
        for until in self.paused.values():
            wait = min(wait, max(BUSY_POLL, until - now))
        for due in (self.services.next_due(now, BUSY_POLL), self.scheduler.next_due(now)):
            wait = wait if due is None else min(wait, due)
        return wait

    def idle(self):
        """True when shutting down and nothing runs any more."""
        return self.shutting_down and not any(self.apps.values()) and self.services.idle()

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
        self.selector.close()


def read_some(fd, size):
    """Up to size bytes from a non-blocking pipe: b'' at end of file, None when nothing waits."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


LISTENER, WAKE, ROUTER_LOG = "listener", "wake", "router"  # selector tags of the server's own descriptors


class Server:
    """The supervisor's control socket and event loop."""

    def __init__(self, supervisor, sock_path, layout=None):
        self.sup = supervisor
        self.sock_path = sock_path
        self.layout = layout  # with a layout, keep a standby supervisor waiting
        self.listener = None
        self.next_tick = 0
        self.next_check = 0
        self.standby = None  # pid of the standby we started, until we reap it
        self.helpers = set()  # pids of the processes answering privileged requests (privileged.serve)
        self.peer_uid = privileged.peer_uid  # who is at the other end of a connection (tests pass a fake)
        self.router_log = None  # the router's log socket, once watched

    def handle(self, message):
        """Answer one control request."""
        cmd = message.get("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd == "sync":
            self.sup.sync(message.get("app"), message.get("candidate"))
        elif cmd == "restart":
            self.sup.restart(message["app"], message.get("target"))
        elif cmd == "shutdown":
            self.sup.shutdown()
        else:
            return {"ok": False, "error": "unknown request %r" % cmd}
        self.sup.save_dirty()
        problem = self.sup.broken.get(message.get("app")) if message.get("app") else None
        if problem:
            return {"ok": False, "error": problem, "pid": os.getpid()}
        return {"ok": True, "pid": os.getpid()}

    def serve_one(self):
        """Accept one control connection and answer its request; one that runs an app's code gets a process."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return  # the client gave up before we got to it
        fds = []
        with conn:
            conn.settimeout(2)
            try:
                text, fds = privileged.receive(conn)
                refused = privileged.refusal(self.peer_uid(conn))
                if refused:
                    raise TinyservError(refused)
                message = json.loads(text or "{}")
                if message.get("cmd") in privileged.REQUESTS:
                    return self.fork_helper(conn, message, fds)
                reply = self.handle(message)
            except (OSError, ValueError, KeyError, TypeError, AttributeError, TinyservError) as e:
                reply = {"ok": False, "error": str(e)}
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass

    def fork_helper(self, conn, message, fds):
        """Answer a request that runs an app's code (a build step, run, a boot check) in a process of its own."""
        pid = os.fork()
        if pid:
            self.helpers.add(pid)
            return
        try:  # the child: never back into the loop, keep nothing of the supervisor's open (its lock least of all)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            keep = sorted({conn.fileno(), 0, 1, 2, *fds})
            for low, high in zip(keep, keep[1:] + [65536]):
                os.closerange(low + 1, high)
            conn.settimeout(None)
            privileged.serve(self.sup.layout, conn, message, fds)
        except BaseException:  # noqa: BLE001 - a helper reports in the supervisor's log, and ends
            import traceback
            traceback.print_exc()
        finally:
            os._exit(0)

    def reap_helpers(self):
        """Collect the helpers that have answered."""
        for pid in list(self.helpers):
            if procs.reap(pid) is not None:
                self.helpers.discard(pid)

    def run(self):
        """Loop until a shutdown request has stopped everything (or SIGTERM)."""
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.listen()
        self.sup.selector.register(wake_r, selectors.EVENT_READ, WAKE)
        self.sup.adopt()
        self.sup.sync()
        self.sup.save_dirty()
        while not stop and not self.sup.idle():
            try:
                self.once()
            except Exception:  # noqa: BLE001 - last resort: a bug must not end every app's supervision
                import traceback  # only here: `tinyserv-remote ps` imports this module too
                traceback.print_exc()
                sys.stderr.flush()
                time.sleep(POLL)
        self.close()

    def once(self):
        """Wait for output, a request or a signal (until the next tick is due), handle them, tick when due."""
        now = self.sup.sys.clock()
        due = min(self.next_tick, self.next_check) if self.layout else self.next_tick
        events = self.sup.selector.select(max(0.0, due - now))
        urgent = False
        # Output first: a request handled below may close pipes whose numbers are in events.
        for key, _ in events:
            if key.data is None and key.fd in self.sup.streams and not self.sup.read_output(key.fd):
                self.sup.close_output(key.fd)
                urgent = True  # every process of an instance is gone
        for key, _ in events:
            if key.data == LISTENER:
                self.serve_one()
                urgent = True
            elif key.data == WAKE:
                _drain_pipe(key.fd)
                self.reap_helpers()
                urgent = True  # SIGCHLD: one of our children exited
            elif key.data == ROUTER_LOG:
                self.sup.router_log()
        now = self.sup.sys.clock()
        self.sup.resume_due(now)
        if urgent or now >= self.next_tick:
            self.sup.tick()
            self.next_tick = self.sup.sys.clock() + self.sup.poll_interval()
        if self.layout and now >= self.next_check:
            self.next_check = now + STANDBY_CHECK
            self.keep_standby()
        self.watch_router_log()

    def watch_router_log(self):
        """Read the router's log socket in the loop (it is opened, or closed, by a full sync)."""
        sock = self.sup.router.socket
        if sock is not self.router_log:
            if self.router_log is not None:
                try:
                    self.sup.selector.unregister(self.router_log)
                except (KeyError, ValueError):
                    pass
            if sock is not None:
                self.sup.selector.register(sock, selectors.EVENT_READ, ROUTER_LOG)
            self.router_log = sock

    def keep_standby(self):
        """Make sure a standby supervisor waits to take over if this one dies (cheap when one does)."""
        if self.standby is not None and procs.reap(self.standby) is not None:
            self.standby = None
        if self.sup.shutting_down or store.lock_held(self.layout.standby_lock):
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_", procs.MARK))}
        try:
            out = os.open(self.layout.supervisor_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # Never our caller's output: a git hook's pipe held by the standby would keep `git push` waiting.
                with privileged.as_root():  # in root mode, a standby that can take over as root
                    self.standby = procs.spawn([sys.executable, "-S", REMOTE_SCRIPT, "supervise", "--standby"],
                                               self.layout.root, env, out, keep_caps=True)
            finally:
                os.close(out)
        except (OSError, ValueError) as e:
            print("tinyserv supervisor: cannot start a standby: %s" % e, file=sys.stderr, flush=True)

    def listen(self):
        """Bind the control socket (0600) and watch it in the loop."""
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sup.selector.register(self.listener, selectors.EVENT_READ, LISTENER)

    def close(self):
        """Stop listening and remove the socket."""
        self.sup.router.close_socket()
        self.sup.selector.unregister(self.listener)
        self.listener.close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass


def _drain_pipe(fd):
    """Empty the signal wakeup pipe."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def main(layout, wait=True, lock=None):
    """`tinyserv-remote supervise`: run the supervisor; one per root holds the lock.

    With wait (systemd's instance), stand by until the running one exits, then take
    over its processes; without, leave at once if one runs. A standby passes in the
    lock it already holds.
    """
    layout.ensure()
    if lock is None:
        lock = os.open(layout.supervisor_lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return 0
        if os.path.exists(layout.shutdown_marker) and wait:
            return 0  # tinyserv was shut down while we waited: the last supervisor went away on purpose
    procs.raise_fd_limit()  # thousands of instances mean thousands of pipes
    store.write_atomic(layout.supervisor_pid, "%d\n" % os.getpid(), 0o644)
    server = Server(Supervisor(layout), layout.supervisor_sock, layout)
    server.run()
    store.remove(layout.supervisor_pid)
    return 0
