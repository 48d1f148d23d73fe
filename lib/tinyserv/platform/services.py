"""Platform services: programs tinyserv keeps running for the whole server, not for one app.

nginx in front of every app, a redis-server per add-on: a feature declares a service by writing
services/<name>.json (declare()), and the supervisor keeps it running — starts it, restarts it
with backoff when it dies, adopts it after a restart of its own, restarts it when its declaration
changes, stops it when the declaration goes away and at shutdown. A service writes its own logs;
what it prints goes to services/<name>.log. Its state is in run/services.json.

A service declared with owner_starts (nginx) is started only when its owner asks (start_now): the
Router writes nginx's config from tinyserv's state before every start and checks its ports, so a
dead nginx comes back at once on a config that works, never on a stale or broken one in backoff.
"""

import os
import signal as signals

from tinyserv.state import store
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_app_name
from tinyserv.state.store import mapping_of

SPEC = {"argv": [str], "cwd": str, "env": mapping_of(str), "?grace": (int, float), "?stop_signal": int,
        "?keep_capabilities": bool, "?owner_starts": bool}
SAVED = {"services": mapping_of({"pid": int, "starttime": (int, None), "spec": dict})}
MAX_BACKOFF = 60


def services_dir(layout):
    return os.path.join(layout.root, "services")


def spec_file(layout, name):
    return os.path.join(services_dir(layout), check_app_name(name) + ".json")


def log_file(layout, name):
    return os.path.join(services_dir(layout), check_app_name(name) + ".log")


def mark(layout, name):
    """TINYSERV_INSTANCE of a service's processes: '_services' is no app's name, so no app's sweep matches it."""
    return "%s:_services:%s" % (layout.tag, check_app_name(name))


def state_file(layout):
    return os.path.join(layout.run_dir, "services.json")


def declare(layout, name, argv, cwd, env, grace=10, stop_signal=signals.SIGTERM, keep_capabilities=False,
            owner_starts=False):
    """Ask for service name to run argv (in cwd, with exactly env); the supervisor acts on its next sync.

    keep_capabilities: the service keeps what the supervisor may bind (ports below 1024, see the
    systemd unit); app processes and other services never get it. owner_starts: the Keeper never
    starts it by itself (nor restarts it after a crash); its owner calls Keeper.start_now.
    """
    os.makedirs(services_dir(layout), mode=0o700, exist_ok=True)
    spec = {"argv": list(argv), "cwd": cwd, "env": dict(env), "grace": grace, "stop_signal": int(stop_signal)}
    if keep_capabilities:
        spec["keep_capabilities"] = True
    if owner_starts:
        spec["owner_starts"] = True
    try:
        unchanged = store.read_json(spec_file(layout, name), None) == spec  # then no write (a change restarts it)
    except TinyservError:
        unchanged = False  # a damaged declaration is written anew
    if not unchanged:
        store.write_json(spec_file(layout, name), spec)


def withdraw(layout, name):
    """The service should no longer run (the supervisor stops it on its next sync)."""
    store.remove(spec_file(layout, name))


def declared(layout):
    """{name: spec} of every declared service (a damaged declaration is an error naming its file)."""
    try:
        names = sorted(n[:-5] for n in os.listdir(services_dir(layout)) if n.endswith(".json"))
    except FileNotFoundError:
        return {}
    return {name: store.load(spec_file(layout, name), SPEC) for name in names}


def process(layout, name):
    """(pid, starttime) of the running service name, as the supervisor last saved it (None when it is not running)."""
    from tinyserv.platform import procs
    saved = store.load(state_file(layout), SAVED, {"services": {}})["services"].get(name)
    return (saved["pid"], saved["starttime"]) if saved and procs.alive(saved["pid"], saved["starttime"]) else None


def listed(layout, name, pid):
    """Does the supervisor's saved state still list pid as service name's (until it has reaped and let go of it)?"""
    saved = store.load(state_file(layout), SAVED, {"services": {}})["services"].get(name)
    return bool(saved and saved["pid"] == pid)


def pid(layout, name):
    """The pid of the running service name, as the supervisor last saved it (None when it is not running)."""
    running = process(layout, name)
    return running[0] if running else None


def send(layout, name, sig):
    """Send sig to the running service (nginx reloads on SIGHUP); raise when it does not run."""
    target = pid(layout, name)
    if target is None:
        raise TinyservError("the %s service is not running (see %s)" % (name, log_file(layout, name)))
    try:
        os.kill(target, sig)
    except ProcessLookupError:
        raise TinyservError("the %s service has just stopped (see %s)" % (name, log_file(layout, name))) from None


class Keeper:
    """The supervisor's side: what runs for each declared service. system is the supervisor's System."""

    def __init__(self, layout, system, note):
        self.layout = layout
        self.sys = system
        self.note = note  # note(text): a line for the supervisor's own log
        self.running = {}  # name -> {"pid", "starttime", "spec", "state", "since", "streak", "next_try", "kill_at"}
        self.wanted = {}
        self.shutting_down = False

    def reconcile(self):
        """Read the declarations; stop what is no longer wanted (or declared differently), start what is missing."""
        self.wanted = {} if self.shutting_down else declared(self.layout)
        for name, svc in list(self.running.items()):
            if svc["state"] == "up" and self.wanted.get(name) != svc["spec"]:
                self.stop(name, svc)
        self.start_missing()
        self.save()

    def start_missing(self):
        for name, spec in self.wanted.items():
            if name not in self.running and not spec.get("owner_starts"):
                self.start(name, spec)

    def start_now(self, name):
        """An owner_starts service, started now unless it runs or is not wanted (shutdown). Started?"""
        svc = self.running.get(name)
        if name not in self.wanted or (svc and svc["state"] != "crashed"):
            return False
        self.running.pop(name, None)
        self.start(name, self.wanted[name], svc["streak"] if svc else 0)
        self.save()
        return True

    def start(self, name, spec, streak=0):
        """Spawn the service with its output going to its log file."""
        now = self.sys.clock()
        try:
            out = os.open(log_file(self.layout, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                env = dict(spec["env"], TINYSERV_INSTANCE=mark(self.layout, name))
                keep = {"keep_caps": True} if spec.get("keep_capabilities") else {}
                child = self.sys.spawn(spec["argv"], spec["cwd"], env, out, **keep)
            finally:
                os.close(out)
        except (OSError, ValueError) as e:
            self.note("service %s could not be started: %s" % (name, e))
            self.running[name] = {"pid": 0, "starttime": None, "spec": spec, "state": "crashed", "since": now,
                                  "streak": streak + 1, "next_try": None if spec.get("owner_starts") else
                                  now + backoff(streak + 1)}
            return
        self.running[name] = {"pid": child, "starttime": self.sys.starttime(child), "spec": spec, "state": "up",
                              "since": now, "streak": streak, "child": True}
        self.note("service %s started (pid %d): %s" % (name, child, " ".join(spec["argv"])))

    def stop(self, name, svc):
        """Ask the service to stop (its stop signal to its group); tick() kills it after its grace."""
        self.sys.signal_group(svc["pid"], svc["spec"].get("stop_signal", signals.SIGTERM))
        svc.update(state="stopping", kill_at=self.sys.clock() + svc["spec"].get("grace", 10))
        self.note("service %s stopping" % name)

    def exited(self, svc):
        """Has the service's main process ended (our child: once reaped, never while a zombie)?"""
        if svc.get("child"):
            from tinyserv.platform.procs import ended_child
            return self.sys.reap(svc["pid"]) is not None or ended_child(svc["pid"], svc["starttime"],
                                                                         self.sys.starttime)
        return not self.sys.alive(svc["pid"], svc["starttime"])

    def tick(self):
        """Notice deaths, finish stops, restart what is due."""
        now = self.sys.clock()
        changed = False
        for name, svc in list(self.running.items()):
            if svc["state"] == "up" and self.exited(svc):
                self.sys.signal_group(svc["pid"], signals.SIGKILL)
                streak = 1 if now - svc["since"] >= 60 else svc["streak"] + 1
                owned = svc["spec"].get("owner_starts")
                svc.update(state="crashed", streak=streak, next_try=None if owned else now + backoff(streak),
                           since=now)
                self.note("service %s exited; %s" % (name, "its owner starts it again" if owned else
                                                     "restarting in %d s" % backoff(streak)))
                changed = True
            elif svc["state"] == "stopping":
                if self.exited(svc) and not self.sys.group_members(svc["pid"]):
                    del self.running[name]
                    self.note("service %s stopped" % name)
                    changed = True
                elif now >= svc["kill_at"]:
                    self.sys.signal_group(svc["pid"], signals.SIGKILL)
                    svc["kill_at"] = now + 1
            elif svc["state"] == "crashed" and svc["next_try"] is None and name not in self.wanted:
                del self.running[name]  # its owner starts it no more (shutdown, or withdrawn)
                changed = True
            elif svc["state"] == "crashed" and svc["next_try"] is not None and now >= svc["next_try"]:
                del self.running[name]
                if name in self.wanted:
                    self.start(name, self.wanted[name], svc["streak"])
                changed = True
        if changed:
            self.start_missing()
            self.save()

    def next_due(self, now, busy):
        """Seconds until a service needs looking at (busy: the supervisor's short interval)."""
        waits = [busy if s["state"] == "stopping" else max(busy, s["next_try"] - now)
                 for s in self.running.values() if s["state"] == "stopping" or (
                     s["state"] == "crashed" and s["next_try"] is not None)]
        return min(waits) if waits else None

    def idle(self):
        return not self.running

    def shutdown(self):
        self.shutting_down = True
        self.reconcile()

    def save(self):
        """run/services.json: what runs, for services.pid() and for the next supervisor to adopt."""
        shown = {n: {"pid": s["pid"], "starttime": s["starttime"], "spec": s["spec"]}
                 for n, s in self.running.items() if s["state"] in ("up", "stopping")}
        store.write_json(state_file(self.layout), {"services": shown})

    def adopt(self):
        """Take over the services a previous supervisor left running (checked by pid and start time)."""
        try:
            saved = store.load(state_file(self.layout), SAVED, {"services": {}})["services"]
        except TinyservError as e:
            self.note("cannot adopt services: %s" % e)
            return
        now = self.sys.clock()
        for name, svc in saved.items():
            if self.sys.alive(svc["pid"], svc["starttime"]):
                self.running[name] = dict(svc, state="up", since=now, streak=0)
                self.note("service %s adopted (pid %d)" % (name, svc["pid"]))


def backoff(streak):
    """Seconds before restart number streak of a service that keeps dying: 0, 1, 2, 4 ... 60."""
    return 0 if streak <= 1 else min(2 ** (streak - 2), MAX_BACKOFF)
