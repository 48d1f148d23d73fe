"""The commands whose answer depends on who runs the app: scheduler:set, and ps, logs and run for swarm apps.

Local apps' ps, logs and run are in apps.py and state/logs.py; a swarm app's come from the engine
(`docker service ps`, `docker service logs`, `docker run` of the release's image), shaped like
the local ones so the client prints both the same way.
"""

import os
import sys
import time

from tinyserv.state import appstate, logs, releases, store
from tinyserv.platform import docker
from tinyserv.deploy import swarm
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError


def set_scheduler(layout, app, name, by=None):
    """scheduler:set local|swarm: who runs the app's processes; a deployed app moves (a deploy of its current
    release on the other side, switched once it answers: deploy/moving.py)."""
    from tinyserv.deploy import moving
    layout.require(app)
    swarm.check_scheduler(name)
    with store.locked(layout.app_file(app, "lock")):
        if appstate.scheduler(layout, app) == name:
            return {"app": app, "scheduler": name, "changed": False}
        if name == "swarm":
            check_swarm_ready(layout, app)
        release = releases.current(layout, app)
        if not (release and release["build"]):
            appstate.save_scheduler(layout, app, name)
            logs.append(layout.log_file(app), "tinyserv", "Scheduler set to %s" % name)
            return {"app": app, "scheduler": name, "changed": True}
    moved = moving.move(layout, app, name, by)
    return {"app": app, "scheduler": name, "changed": True, "release": moved["release"]}


def check_swarm_ready(layout, app):
    """What a swarm app needs before its first push: the front door, no data directory in use."""
    if settings.nginx_binary() is None:
        raise TinyservError("a swarm app is reached through nginx, the front door: %s" % settings.nginx_missing())
    swarm.refuse_data(layout, app)


# --- ps ---------------------------------------------------------------------------------------------

def processes(layout, app, types):
    """ps of a swarm app: its current rollout's tasks, with node, state and age."""
    release = releases.current(layout, app)
    services = swarm.current_services(layout, app)
    by_service = {name: ptype for ptype, name in services.items()}
    now = time.time()
    shown = []
    for ptype, slot, task in slots(swarm.tasks(list(services.values())), by_service, types):
        age = docker.age_seconds(task.age)
        shown.append({"name": "%s.%s" % (ptype, slot), "type": ptype, "state": task.state, "node": task.node,
                      "since": now - age if age is not None else None, "age": task.age, "error": task.error,
                      "port": task.ports[0] if task.ports else None, "version": release["version"],
                      "command": types.get(ptype, {}).get("command")})
    shown.sort(key=lambda i: (i["type"] != "web", i["type"], int(i["name"].rpartition(".")[2] or 0)))
    return {"formation": types, "instances": shown, "release": release["version"], "broken": None,
            "scheduler": "swarm"}


def slots(tasks, by_service, types):
    """[(type, slot, task)] to show: each slot's newest task that should run, or, for a slot the formation wants
    whose last task ended and whose replacement the engine has not made yet (a task that failed to start waits
    out the restart delay), that ended task, with its error. tasks: newest first per slot (swarm.tasks)."""
    seen = set()
    for task in tasks:
        service, _, slot = task.name.rpartition(".")
        ptype = by_service.get(service)
        if ptype is None or (service, slot) in seen:
            continue
        seen.add((service, slot))
        wanted = types.get(ptype, {})
        if task.desired == "running" or (slot.isdigit() and not wanted.get("stopped")
                                         and int(slot) <= wanted.get("quantity", 0)):
            yield ptype, slot, task


# --- logs -------------------------------------------------------------------------------------------

def show_logs(layout, app, num, following, ps, raw=False):
    """logs: the app's log (tinyserv's lines and nginx's), and for a swarm app its tasks' lines, merged;
    escaped as logs.show escapes them, unless raw."""
    if not swarm.scheduled(layout, app):
        return logs.show(layout, app, num, following, ps, raw)
    if num < 0:
        raise TinyservError("-n must be 0 or more, not %d" % num)
    services = swarm.current_services(layout, app)
    lines = logs.tail(layout.log_file(app), num, ps)
    for ptype, service in sorted(services.items()):
        if ps and ps.split(".")[0] != ptype:
            continue
        out = docker.run(["service", "logs", "--timestamps", "--no-task-ids", "--tail", str(num), service],
                         check=False)
        lines += [line for line in task_lines(out, ptype) if logs.matches(line, ps)]
    lines.sort(key=lambda line: line[:20])
    out = sys.stdout if raw else logs.Escaping(sys.stdout)
    out.writelines(lines[-num:] if num > 0 else [])
    out.flush()
    if following:
        follow(services, ps, out)


def task_lines(text, ptype):
    """`docker service logs --timestamps --no-task-ids` lines -> the local format: 'TIME web.1: text'."""
    found = []
    for line in text.splitlines():
        head, sep, rest = line.partition(" | ")
        if not sep:
            continue
        words = head.split()
        if len(words) < 2:
            continue
        stamp, task = words[0], words[1]
        slot = task.split("@")[0].rpartition(".")[2]
        found.append("%sZ %s.%s: %s\n" % (stamp[:19], ptype, slot, rest))
    return found


def follow(services, ps, out):
    """Follow the tasks' logs into out until the client goes away."""
    import subprocess
    procs = []
    for ptype, service in sorted(services.items()):
        if ps and ps.split(".")[0] != ptype:
            continue
        procs.append((ptype, subprocess.Popen(["docker", "service", "logs", "--follow", "--timestamps",
                                               "--no-task-ids", "--tail", "0", service],
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    try:
        import selectors
        with selectors.DefaultSelector() as sel:
            for ptype, proc in procs:
                sel.register(proc.stdout, selectors.EVENT_READ, ptype)
            while procs and not logs.stdin_closed():
                for key, _ in sel.select(1.0):
                    line = key.fileobj.readline()
                    if line:
                        out.writelines(task_lines(line, key.data))
                        out.flush()
    finally:
        for _, proc in procs:
            proc.kill()


# --- run --------------------------------------------------------------------------------------------

def run_words(image, env, argv, tty):
    """`docker run` arguments of a one-off container of the release's image with its config."""
    return ["run", "--rm", "-i", *(["-t"] if tty else []), "--add-host", docker.HOST_GATEWAY, *swarm.env_words(env),
            image, *argv]


def run(layout, app, argv):
    """run on a swarm app: a container of the current release's image, on this node, attached to the terminal."""
    release = releases.current(layout, app)
    if not (release.get("swarm") or {}).get("image"):
        raise TinyservError("%s has not been deployed to the swarm yet: push it first" % app)
    env = swarm.task_env(app, release["config"], release["version"], "run.1")
    words = run_words(release["swarm"]["image"], env, argv, os.isatty(0) and os.isatty(1))
    sys.stdout.flush()
    try:
        os.execvpe("docker", ["docker", *words], swarm.client_env(env))
    except OSError as e:
        raise TinyservError("cannot run docker: %s" % e.strerror) from None
