"""Where a swarm app's web tasks listen, for the front door: the published ports nginx sends traffic to.

A task's host port is the engine's choice and changes when Swarm replaces a task (a crash, a
restart), so the supervisor keeps one Watch: a thread that reads this node's task containers
(`docker ps`, by the labels deploy/swarm.py puts on them) and, on a swarm of several nodes, the
other nodes' running web tasks (`docker inspect` of the services' tasks: their node's address and
published port), at start, whenever the engine reports a tinyserv container of this node starting
or dying (`docker events`), and every REFRESH seconds besides (what moves on other nodes is seen
then). The
supervisor asks changed() at each tick and routes the apps whose ports moved: the current
rollout's tasks are nginx's primary upstreams, other rollouts' tasks still running its backups
(the old release serves until the new one takes over, and while it drains).

This node's tasks are upstreams on 127.0.0.1 (ints: their ports), another node's "ADDRESS:PORT".
"""

import os
import selectors
import subprocess
import threading

from tinyserv.platform import docker
from tinyserv.frontdoor import nginx
from tinyserv.common.errors import TinyservError

REFRESH = 5.0  # seconds between reads when the engine reports nothing


def web_ports(found, rollout):
    """(primary, backup) published ports of an app's web tasks: found is {rollout: ports}; this node's ports are
    ints, other nodes' "ADDRESS:PORT"."""
    primary = sorted(found.get(rollout, ()), key=nginx.upstream_order) if rollout else []
    backup = sorted({p for r, ports in found.items() if r != rollout for p in ports} - set(primary),
                    key=nginx.upstream_order)
    return primary, backup


def snapshot(containers):
    """{app: {rollout: (ports)}} of the web task containers."""
    found = {}
    for c in containers:
        if c.type == "web" and c.ports:
            ports = found.setdefault(c.app, {}).setdefault(c.rollout, ())
            found[c.app][c.rollout] = tuple(sorted(set(ports) | set(c.ports), key=nginx.upstream_order))
    return found


class Watch:
    """The supervisor's view of the swarm apps' web tasks, kept fresh by a thread of its own."""

    def __init__(self, tag, note, read=None, events=None):
        self.tag = tag
        self.note = note
        self.read = read or self.read_engine
        self.events = events or self.engine_events
        self.lock = threading.Lock()
        self.found = {}
        self.moved = set()
        self.thread = None
        self.stopping = threading.Event()

    def ensure(self):
        """Start the thread (once: the first time a swarm app is routed)."""
        if self.thread is None:
            self.refresh()
            self.thread = threading.Thread(target=self.loop, name="swarm-watch", daemon=True)
            self.thread.start()

    def ports(self, app, rollout):
        """(primary, backup) ports of app's web tasks."""
        self.ensure()
        with self.lock:
            return web_ports(self.found.get(app, {}), rollout)

    def changed(self):
        """The apps whose tasks moved since the last call."""
        with self.lock:
            moved, self.moved = self.moved, set()
        return moved

    def refresh(self):
        """Read the task containers now; remember which apps' ports changed."""
        try:
            found = snapshot(self.read())
        except TinyservError as e:
            self.note("swarm: %s" % e)
            return
        with self.lock:
            for app in set(found) | set(self.found):
                if found.get(app) != self.found.get(app):
                    self.moved.add(app)
            self.found = found

    def loop(self):
        while not self.stopping.is_set():
            try:
                for _ in self.events(REFRESH):
                    self.refresh()
            except Exception as e:  # noqa: BLE001 - the watch must outlive an engine that went away
                self.note("swarm: %s" % e)
                self.stopping.wait(REFRESH)
            self.refresh()

    def read_engine(self):
        """This node's web task containers (`docker ps`: their IPv4 ports), then the other nodes' web tasks."""
        found = docker.labels(self.tag, ptype="web")
        words = ["ps", *docker.label_filters(found), "--format", docker.PS_FORMAT]
        return docker.parse_containers(docker.run(words, timeout=30)) + docker.remote_tasks(found)

    def engine_events(self, quiet):
        """Yield once per start or death of a tinyserv container of this root; return after quiet seconds of none."""
        argv = ["docker", "events", "--filter", "type=container", "--filter", "event=start", "--filter",
                "event=die", *docker.label_filters(docker.labels(self.tag)), "--format", "{{.Status}}"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while not self.stopping.is_set():
                    if not sel.select(quiet):
                        return
                    if not os.read(proc.stdout.fileno(), 4096):
                        return
                    yield True
        finally:
            proc.kill()
            proc.wait()


def upstreams(watch, layout, app, local):
    """(primary, backup) of app: its swarm tasks when Swarm runs it (local webs that still serve as backup),
    else local's, with tasks of a swarm rollout that still serve as backup (the app moved off the swarm)."""
    from tinyserv.state import appstate, releases
    if appstate.scheduler(layout, app) == "swarm":
        rollout = (releases.current(layout, app).get("swarm") or {}).get("rollout")
        primary, backup = watch.ports(app, rollout)
        if rollout and not primary:  # recorded before the watch saw its tasks (an engine event it missed): look
            watch.refresh()
            primary, backup = watch.ports(app, rollout)
        backup = sorted(set(backup) | set(local[0]) | set(local[1]), key=nginx.upstream_order)
        return (primary, backup) if primary else (backup, [])  # none seen: what still runs serves, not a 503
    if watch.thread is None:
        return local
    _, tasks = watch.ports(app, None)
    return local[0], sorted(set(local[1]) | set(tasks)) if local[0] else local[1] + tasks
