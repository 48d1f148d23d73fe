"""The supervisor: one small daemon per server that owns every app's processes.

It reconciles what should run (the current release, the formation) with what
runs, restarts crashed instances with backoff, and stamps their output into the
app log. Its state is on disk, so a new supervisor adopts the processes of one
that was killed instead of starting duplicates: every instance writes into a
named pipe it also holds open for reading, so its output survives the reader.
"""

import json
import os
import select
import signal
import socket
import sys
import time
import traceback

from . import appenv, appstate, procs, releases, store
from .errors import TinyservError
from .logs import LogFile
from .names import number
from .procfile import process_types

POLL = 0.5  # how often to look at processes when nothing is changing
BUSY_POLL = 0.05  # ... and while something is starting or stopping
STABLE_AFTER = 60  # an instance that ran this long before crashing restarts at once
MAX_BACKOFF = 300
RUNNING = ("starting", "up")


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
    """Is it process group pgid that accepts connections on port?"""
    return procs.group_listens(pgid, port) and port_open(port)


class System:
    """The real world the supervisor acts on; tests pass a fake with the same methods."""

    clock = staticmethod(time.time)
    spawn = staticmethod(procs.spawn)
    signal_group = staticmethod(procs.signal_group)
    reap = staticmethod(procs.reap)
    alive = staticmethod(procs.alive)
    starttime = staticmethod(procs.starttime)
    group_members = staticmethod(procs.group_members)
    accepts = staticmethod(listening)


class Desired:
    """What should run for one app: the current release and its instances."""

    def __init__(self, release, build_dir, meta, instances, grace):
        self.release = release
        self.build_dir = build_dir
        self.meta = meta
        self.instances = instances  # {"web.1": "command"}
        self.grace = grace


def stop_timeout(config):
    """Grace between SIGTERM and SIGKILL (config TINYSERV_STOP_TIMEOUT, default 30 s)."""
    return number(config.get("TINYSERV_STOP_TIMEOUT"), 30.0, float, minimum=0)


def desired_state(layout, app):
    """Read what should run for app from disk; None when the app no longer exists."""
    if not layout.exists(app):
        return None
    release = releases.current(layout, app)
    meta = appstate.build_meta(layout, app, release["build"]) if release and release["build"] else None
    if meta is None:
        return Desired(release, None, None, {}, 30.0)
    formation = appstate.formation(layout, app)
    quantity, stopped = formation["quantity"], formation["stopped"]
    instances = {}
    for ptype in process_types(meta["procfile"]):
        if ptype not in stopped:
            for n in range(1, quantity.get(ptype, 1) + 1):
                instances["%s.%d" % (ptype, n)] = meta["procfile"][ptype]
    return Desired(release, layout.build_dir(app, release["build"]), meta, instances,
                   stop_timeout(release["config"]))


class Supervisor:
    """Owns the instances of every app; driven by run() or, in tests, by tick()."""

    def __init__(self, layout, system=None):
        self.layout = layout
        self.sys = system or System()
        self.apps = {}  # app -> {name: instance dict}
        self.readers = {}  # fd -> (app, name)
        self.partial = {}  # fd -> unfinished output line
        self.logs = {}
        self.dirty = set()
        self.shutting_down = False

    # --- desired state -------------------------------------------------

    def known_apps(self):
        return set(self.layout.apps()) | set(self.apps)

    def sync(self, app=None):
        """Bring one app (or all) in line with what is on disk."""
        for name in ([app] if app else sorted(self.known_apps())):
            self.reconcile(name)

    def want(self, app):
        """What should run for app now: nothing once shutting down."""
        return None if self.shutting_down else desired_state(self.layout, app)

    def reconcile(self, app):
        """Stop what should not run, start what should and is not running."""
        want = self.want(app)
        instances = self.apps.setdefault(app, {})
        version = want.release["version"] if want and want.release else None
        wanted = want.instances if want else {}
        for name, inst in list(instances.items()):
            if name not in wanted or inst["version"] != version:
                if inst["state"] in RUNNING:
                    self.begin_stop(app, inst, want.grace if want else inst.get("grace", 30.0))
                elif inst["state"] != "stopping":
                    self.forget(app, name)
        for name, command in wanted.items():
            if name not in instances:
                self.start(app, name, command, want, restarts=0)
        if not instances and want is None:
            self.apps.pop(app, None)
            self.close_log(app)
        self.dirty.add(app)

    # --- one instance ----------------------------------------------------

    def start(self, app, name, command, want, restarts):
        """Spawn one instance of the current release."""
        run_dir = self.layout.app_file(app, "run")
        os.makedirs(run_dir, exist_ok=True)
        fifo = os.path.join(run_dir, "%s.%d.fifo" % (name, time.time_ns()))
        os.mkfifo(fifo, 0o600)
        # O_RDWR: the instance is also a reader of its own pipe, so its writes never
        # hit a broken pipe while no supervisor is reading (we are being restarted).
        out = os.open(fifo, os.O_RDWR)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        port = releases.port(self.layout, app)
        version = want.release["version"]
        mark = self.layout.mark(app, "%s@%d" % (name, time.time_ns()))
        env = appenv.process_env(want.build_dir, want.meta, want.release["config"], app, name, port, version, mark)
        try:
            pid = self.sys.spawn(["/bin/sh", "-c", command], want.build_dir, env, out)
        finally:
            os.close(out)
        now = self.sys.clock()
        inst = {
            "name": name, "type": name.split(".")[0], "version": version, "command": command,
            "pid": pid, "pgid": pid, "starttime": self.sys.starttime(pid), "child": True,
            "state": "starting", "since": now, "started": now, "restarts": restarts,
            "exit_code": None, "next_try": None, "fifo": fifo, "port": port, "grace": want.grace, "mark": mark,
        }
        if inst["type"] != "web":
            inst["state"] = "up"
        self.apps.setdefault(app, {})[name] = inst
        self.readers[reader] = (app, name)
        inst["reader"] = reader
        self.event(app, "Starting %s: %s" % (name, command))
        self.dirty.add(app)

    def begin_stop(self, app, inst, grace):
        """SIGTERM the instance's group; tick() sends SIGKILL once grace has passed."""
        self.sys.signal_group(inst["pgid"], signal.SIGTERM)
        inst.update(state="stopping", since=self.sys.clock(), kill_at=self.sys.clock() + grace)
        self.event(app, "Stopping %s (SIGTERM)" % inst["name"])
        self.dirty.add(app)

    def forget(self, app, name):
        """Drop an instance whose processes are gone; close and remove its pipe."""
        inst = self.apps.get(app, {}).pop(name, None)
        if inst is None:
            return
        reader = inst.get("reader")
        if reader is not None:
            self.drain(reader)
            self.readers.pop(reader, None)
            self.partial.pop(reader, None)
            os.close(reader)
        try:
            os.unlink(inst["fifo"])
        except (OSError, TypeError):
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
        """Advance every instance: notice exits, finish stops, restart, mark web up."""
        now = self.sys.clock()
        for app, instances in list(self.apps.items()):
            for inst in list(instances.values()):
                self.advance(app, inst, now)
        for app in list(self.apps):
            if any(i["state"] == "gone" for i in self.apps[app].values()):
                for name in [n for n, i in self.apps[app].items() if i["state"] == "gone"]:
                    self.forget(app, name)
                self.reconcile(app)
        self.save_dirty()

    def advance(self, app, inst, now):
        state = inst["state"]
        if state in RUNNING and self.exited(inst):
            self.crashed(app, inst, now)
        elif state == "starting" and self.sys.accepts(inst["port"], inst["pgid"]):
            inst.update(state="up", since=now)
            self.event(app, "%s accepts connections on port %d" % (inst["name"], inst["port"]))
            self.dirty.add(app)
        elif state == "crashed" and now >= inst["next_try"]:
            self.restart_crashed(app, inst)
        elif state == "stopping":
            self.exited(inst)
            if not self.sys.group_members(inst["pgid"]):
                inst["state"] = "gone"
                self.event(app, "%s stopped" % inst["name"])
            elif now >= inst["kill_at"]:
                self.sys.signal_group(inst["pgid"], signal.SIGKILL)
                inst["kill_at"] = now + 1
                self.event(app, "%s did not stop in time: SIGKILL" % inst["name"])

    def crashed(self, app, inst, now):
        """The main process ended on its own: clean up its group, schedule a restart."""
        self.sys.signal_group(inst["pgid"], signal.SIGKILL)
        streak = 1 if now - inst["started"] >= STABLE_AFTER else inst.get("streak", 0) + 1
        delay = backoff(streak)
        inst.update(state="crashed", since=now, streak=streak, next_try=now + delay,
                    restarts=inst["restarts"] + 1)
        code = inst["exit_code"]
        how = "exited with %s" % code if code is not None else "exited"
        self.event(app, "%s %s, restarting %s" % (inst["name"], how, "in %ds" % delay if delay else "now"))
        self.dirty.add(app)
        if delay == 0:
            self.restart_crashed(app, inst)

    def restart_crashed(self, app, inst):
        """Start a crashed instance again in the same slot, keeping its counters."""
        want = self.want(app)
        if not want or inst["name"] not in want.instances or inst["version"] != want.release["version"]:
            self.forget(app, inst["name"])
            self.reconcile(app)
            return
        kept = {k: inst[k] for k in ("restarts", "streak", "exit_code")}
        self.forget(app, inst["name"])
        self.start(app, inst["name"], want.instances[inst["name"]], want, kept["restarts"])
        self.apps[app][inst["name"]].update(streak=kept["streak"], exit_code=kept["exit_code"])

    def restart(self, app, target=None):
        """ps:restart: gracefully replace matching instances; resets their backoff."""
        want = self.want(app)
        for inst in list(self.apps.get(app, {}).values()):
            if target in (None, inst["name"], inst["type"]):
                if inst["state"] in RUNNING:
                    self.begin_stop(app, inst, want.grace if want else inst.get("grace", 30.0))
                elif inst["state"] == "crashed":
                    self.forget(app, inst["name"])
        self.reconcile(app)

    # --- output ----------------------------------------------------------------

    def log(self, app):
        if app not in self.logs:
            self.logs[app] = LogFile(self.layout.log_file(app), clock=self.sys.clock)
        return self.logs[app]

    def close_log(self, app):
        log = self.logs.pop(app, None)
        if log:
            log.close()

    def event(self, app, text):
        """A platform event, in the app's log like Heroku's own lines."""
        if os.path.isdir(self.layout.app_dir(app)):
            self.log(app).write("tinyserv", text)

    def drain(self, fd):
        """Copy whatever an instance wrote into its app's log, line by line."""
        app, name = self.readers[fd]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                rest = self.partial.pop(fd, b"")
                if rest:
                    self.write_lines(app, name, rest + b"\n")
                return False
            self.write_lines(app, name, self.partial.pop(fd, b"") + chunk, fd)

    def write_lines(self, app, name, data, fd=None):
        *lines, rest = data.split(b"\n")
        if rest and fd is not None:
            self.partial[fd] = rest
        if os.path.isdir(self.layout.app_dir(app)):
            for line in lines:
                self.log(app).write(name, line.decode("utf-8", "replace"))

    # --- persistence ------------------------------------------------------------

    def save_dirty(self):
        for app in list(self.dirty):
            self.dirty.discard(app)
            if os.path.isdir(self.layout.app_file(app, "run")):
                shown = [{k: v for k, v in i.items() if k != "reader"} for i in self.apps.get(app, {}).values()]
                try:
                    store.write_json(self.layout.state_file(app), {"instances": shown, "supervisor": os.getpid()})
                except OSError:
                    pass  # the app is being destroyed under us

    def adopt(self):
        """Take over the live instances a previous supervisor left behind."""
        for app in self.layout.apps():
            try:
                saved = appstate.supervisor_state(self.layout, app)
            except TinyservError as e:
                self.event(app, "cannot adopt this app's processes: %s" % e)
                continue
            for inst in saved["instances"]:
                if inst.get("state") in RUNNING + ("stopping",) and self.sys.alive(inst["pid"], inst["starttime"]):
                    self.take_over(app, inst)
                else:
                    self.kill_leftovers(app, inst)

    def kill_leftovers(self, app, inst):
        """Kill processes an instance whose main process died left behind (by their mark)."""
        if inst.get("mark"):
            procs.signal_pids(procs.marked([inst["mark"]]), signal.SIGKILL)

    def take_over(self, app, inst):
        try:
            reader = os.open(inst["fifo"], os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            reader = None
        inst.update(child=False)
        if inst["state"] == "stopping":
            inst["kill_at"] = self.sys.clock() + 1
        self.apps.setdefault(app, {})[inst["name"]] = inst
        if reader is not None:
            inst["reader"] = reader
            self.readers[reader] = (app, inst["name"])
        self.event(app, "%s adopted by a new supervisor (pid %d)" % (inst["name"], os.getpid()))
        self.dirty.add(app)

    def poll_interval(self):
        """Seconds until the next thing to look at: soon while instances start, stop or wait to restart."""
        now = self.sys.clock()
        wait = POLL
        for instances in self.apps.values():
            for inst in instances.values():
                if inst["state"] in ("starting", "stopping"):
                    return BUSY_POLL
                if inst["state"] == "crashed":
                    wait = min(wait, max(BUSY_POLL, inst["next_try"] - now))
        return wait

    def idle(self):
        """True when shutting down and nothing runs any more."""
        return self.shutting_down and not any(self.apps.values())

    def shutdown(self):
        self.shutting_down = True
        self.sync()


class Server:
    """The supervisor's control socket and event loop."""

    def __init__(self, supervisor, sock_path):
        self.sup = supervisor
        self.sock_path = sock_path
        self.listener = None

    def handle(self, message):
        """Answer one control request."""
        cmd = message.get("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd == "sync":
            self.sup.sync(message.get("app"))
        elif cmd == "restart":
            self.sup.restart(message["app"], message.get("target"))
        elif cmd == "shutdown":
            self.sup.shutdown()
        else:
            return {"ok": False, "error": "unknown request %r" % cmd}
        self.sup.save_dirty()
        return {"ok": True, "pid": os.getpid()}

    def serve_one(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(2)
            try:
                reply = self.handle(json.loads(recv_line(conn) or "{}"))
            except (OSError, ValueError, KeyError, TinyservError) as e:
                reply = {"ok": False, "error": str(e)}
            try:
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass

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
        self.sup.adopt()
        self.sup.sync()
        self.sup.save_dirty()
        while not stop and not self.sup.idle():
            try:
                self.once(wake_r)
            except Exception:  # noqa: BLE001 - one bad app or file must not stop every app's supervision
                traceback.print_exc()
                sys.stderr.flush()
                time.sleep(POLL)
        self.close()

    def once(self, wake_r):
        """Wait for output, a request or a signal (at most POLL s), handle it, then tick."""
        fds = [self.listener, wake_r] + list(self.sup.readers)
        ready, _, _ = select.select(fds, [], [], self.sup.poll_interval())
        for fd in ready:
            if fd is self.listener:
                self.serve_one()
            elif fd == wake_r:
                _drain_pipe(wake_r)
            elif fd in self.sup.readers and not self.sup.drain(fd):
                self.close_reader(fd)
        self.sup.tick()

    def close_reader(self, fd):
        """An instance's pipe reached end of file: its processes are all gone."""
        app, name = self.sup.readers.pop(fd)
        self.sup.partial.pop(fd, None)
        os.close(fd)
        inst = self.sup.apps.get(app, {}).get(name)
        if inst is not None:
            inst.pop("reader", None)

    def listen(self):
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o600)
        self.listener.listen(16)

    def close(self):
        self.listener.close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass


def recv_line(conn):
    """One newline-terminated message from a socket (both ends of the control protocol)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _drain_pipe(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def main(layout, wait=True):
    """`tinyserv-remote supervise`: run the supervisor; one per root holds the lock.

    With wait (systemd's instance), stand by until the running one exits, then take
    over its processes; without, leave at once if one runs.
    """
    import fcntl
    layout.ensure()
    lock = os.open(layout.supervisor_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return 0
    store.write_atomic(layout.supervisor_pid, "%d\n" % os.getpid(), 0o644)
    server = Server(Supervisor(layout), layout.supervisor_sock)
    server.run()
    os.unlink(layout.supervisor_pid)
    return 0
