"""What the server does to an app for each client command: create, destroy, processes, config, releases.

Each public function here is named by a declaration in commands.py and called by tinyserv-remote as
f(layout, app, **arguments); what it returns goes back to the client as JSON.
"""

import contextlib
import errno
import os
import socket
import subprocess
import sys

from tinyserv.state import appstate, logs, releases, store
from tinyserv.common import configvars, settings
from tinyserv.supervise import control
from tinyserv.platform import privileged, procs
from tinyserv.common.errors import TinyservError
from tinyserv.state.layout import start_port
from tinyserv.common.names import check_app_name, parse_assignments, parse_scale
from tinyserv.common.procfile import process_types


def port_free(port):
    """Is nothing listening on port, on any IPv4 or IPv6 address (a listener on ::1 only counts too)?"""
    if procs.listening_sockets(port):
        return False
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                if e.errno != errno.EADDRNOTAVAIL:  # no IPv6 on this machine
                    raise
    return True


def allocate_port(layout, first):
    """The lowest port >= first that no app holds and nothing listens on."""
    from tinyserv.addons import registry as addons
    held = addons.held_ports(layout)  # a Redis add-on's port is held while its server is stopped, too
    for app in layout.apps():
        with contextlib.suppress(TinyservError):  # a damaged app's port stays unknown; `apps` reports it
            held.add(releases.port(layout, app))
    for port in range(first, 65536):
        if port not in held and port_free(port):
            return port
    raise TinyservError("no free port at or above %d" % first)


def create(layout, name, by=None, scheduler=None):
    """Make an app: port, bare repository with its hook, release v1 (scheduler: local or swarm, default
    TINYSERV_SCHEDULER)."""
    from tinyserv.server import scheduler as schedulers
    check_app_name(name)
    scheduler = scheduler or settings.default_scheduler()
    schedulers.swarm.check_scheduler(scheduler)
    layout.ensure()
    with store.locked(layout.global_lock):
        if layout.exists(name):
            raise TinyservError("an app named %r already exists (see 'tinyserv apps')" % name)
        port = allocate_port(layout, start_port())
        try:
            for sub in ("builds", "deps", "log", "run", "data"):
                os.makedirs(layout.app_file(name, sub), mode=0o700, exist_ok=True)
            ensure_repo(layout, name)
            appstate.save_formation(layout, name, {"quantity": {}, "stopped": []})
            if scheduler != "local":
                schedulers.check_swarm_ready(layout, name)
                appstate.save_scheduler(layout, name, scheduler)
            releases.add(layout, name, "Initial release", {}, by=by, app_port=port)  # now it exists
            privileged.ensure_user(layout, name)  # root mode: its own system user
        except BaseException:
            remove_app_files(layout, name)  # nothing half made stays behind
            raise
    return info(layout, name)


def remove_app_files(layout, name):
    """Delete an app's public release file, repository and app directory, whichever exist."""
    import shutil  # here: most commands never need it
    releases.unpublish(layout, name)
    store.remove(releases.public_lock(layout, name))
    shutil.rmtree(layout.repo(name), ignore_errors=True)
    shutil.rmtree(layout.app_dir(name), ignore_errors=True)


def ensure_repo(layout, name):
    """A bare repository whose pre-receive hook deploys (safe to run twice)."""
    repo = layout.repo(name)
    if not os.path.isdir(repo):
        result = subprocess.run(["git", "init", "--bare", "--quiet", repo], capture_output=True, text=True)
        if result.returncode != 0:
            raise TinyservError("git init failed: %s" % result.stderr.strip())
    from tinyserv.deploy import push as deploy  # here and below, not at the top: `ps`, `config` ... start faster without the deploy code
    hook = os.path.join(repo, "hooks", "pre-receive")
    store.write_atomic(hook, deploy.hook_script(layout, name, [sys.executable, "-S"], control.REMOTE_SCRIPT), 0o755)


def destroy(layout, name):
    """Stop the app and everything it started, delete its add-ons with their data, then remove its repository,
    builds, releases, logs and data directory."""
    from tinyserv.addons import registry as addons
    from tinyserv.state import storage
    layout.require(name)
    with addons.changing(layout, name), store.locked(layout.global_lock), \
            store.locked(layout.app_file(name, "lock")):
        doomed = addons.check_all(layout, name)  # one that cannot be deleted keeps the whole app, untouched
        data_bytes, data_files = storage.usage(layout.data_dir(name))
        pgids = live_groups(layout, name)
        releases.unpublish(layout, name)
        supervised = bool(control.running(layout))
        if supervised:  # it stops them, with the app's own grace period
            control.request(layout, {"cmd": "sync", "app": name})
        procs.stop(pgids, grace=40, what="stopping %s" % name, term=not supervised, marks=[layout.app_marks(name)])
        if appstate.scheduler(layout, name) == "swarm":
            from tinyserv.deploy import swarm
            swarm.destroy(layout, name)  # services, their task containers, images
        addons.delete_all(layout, name, doomed)
        privileged.forget_user(layout, name)  # root mode: its user's processes and files, then the user
        remove_app_files(layout, name)
    if supervised and settings.nginx_binary() is not None:
        from tinyserv.frontdoor import router
        router.wait_until_live(layout, name, lambda site: site is None)  # nginx no longer answers for it
    return {"destroyed": name, "addons": [a["name"] for a in doomed], "data_bytes": data_bytes,
            "data_files": data_files}


def live_groups(layout, name):
    """Process groups of the app's instances whose main process still runs (none if its state is unreadable)."""
    try:
        saved = control.instances(layout, name)
    except TinyservError:
        return []  # its processes are still found by their marks
    return [i["pgid"] for i in saved if procs.alive(i["pid"], i["starttime"])]


def listing(layout):
    """What `apps` shows: every app, a damaged one with the reason instead of failing the list."""
    shown = []
    for name in layout.apps():
        try:
            shown.append(info(layout, name))
        except TinyservError as e:
            shown.append({"name": name, "state": "broken", "error": str(e)})
    return shown


def info(layout, name):
    """What apps:info shows."""
    layout.require(name)
    release = releases.current(layout, name)
    return {
        "name": name,
        "port": releases.port(layout, name),
        "repo": layout.repo(name),
        "release": "v%d" % release["version"],
        "commit": release["commit"],
        "deployed_at": release["created_at"] if release["build"] else None,
        "state": overall_state(layout, name),
        "scheduler": appstate.scheduler(layout, name),
    }


def overall_state(layout, name):
    """'not deployed', 'broken', 'up', 'starting', 'crashed', 'stopped' for the whole app."""
    release = releases.current(layout, name)
    if not release or not release["build"]:
        return "not deployed"
    if appstate.scheduler(layout, name) == "swarm":
        return "up" if release.get("swarm") else "not deployed"
    saved = appstate.supervisor_state(layout, name)
    if saved.get("broken"):
        return "broken"
    states = {i["state"] for i in saved["instances"] if i["version"] == release["version"]}
    for state in ("crashed", "starting", "stopping", "up"):
        if state in states:
            return state
    return "stopped"


def processes(layout, name):
    """The instances ps shows, with what the formation wants."""
    layout.require(name)
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.server import scheduler
        return scheduler.processes(layout, name, formation(layout, name))
    control.ensure_supervisor(layout)
    release = releases.current(layout, name)
    types = formation(layout, name)
    saved = control.instances(layout, name)
    running = {i["name"]: i for i in saved if not i.get("retired")}
    for ptype, f in types.items():  # what should exist but does not run: stopped
        for n in range(1, f["quantity"] + 1):
            running.setdefault("%s.%d" % (ptype, n), {"name": "%s.%d" % (ptype, n), "type": ptype,
                                                      "state": "stopped", "command": f["command"]})
    old = [dict(i, state="draining") for i in saved if i.get("retired")]  # old webs serving until replaced
    shown = [{k: inst.get(k) for k in ("name", "type", "state", "pid", "since", "restarts",
                                       "exit_code", "reason", "next_try", "command", "version", "port")}
             for inst in sorted(list(running.values()) + old, key=lambda i: (
                 i["type"] != "web", i["type"], number_of(i["name"]), bool(i.get("retired"))))]
    return {"formation": types, "instances": shown, "release": release["version"] if release else None,
            "broken": appstate.supervisor_state(layout, name).get("broken")}


def number_of(instance_name):
    """web.10 sorts after web.9."""
    tail = instance_name.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0


def formation(layout, name):
    """{type: {quantity, stopped, command}} for the types of the current build."""
    release = releases.current(layout, name)
    if not release or not release["build"]:
        return {}
    meta = appstate.build_meta(layout, name, release["build"])
    saved = appstate.formation(layout, name)
    return {t: {"quantity": saved["quantity"].get(t, 1), "stopped": t in saved["stopped"],
                "command": meta["procfile"][t]} for t in process_types(meta.get("procfile", {}))}


def scale(layout, name, changes):
    """ps:scale TYPE=N ...: validate against the Procfile, persist, apply."""
    layout.require(name)
    changes = parse_scale(words(changes, "ps:scale needs TYPE=N, e.g. 'tinyserv ps:scale worker=2'"))
    with store.locked(layout.app_file(name, "lock")):
        types = formation(layout, name)
        if not types:
            raise TinyservError("%s has not been deployed yet: push it first" % name)
        for ptype, count in changes.items():
            if ptype not in types:
                raise TinyservError("no %r process type in %s's Procfile (it has: %s)" % (
                    ptype, name, ", ".join(types)))
            check_count(ptype, count)
        saved = appstate.formation(layout, name)
        saved["quantity"].update(changes)
        appstate.save_formation(layout, name, saved)
    logs.append(layout.log_file(name), "tinyserv", "Scaled to " + ", ".join(
        "%s@%d" % item for item in sorted(changes.items())))
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.deploy import swarm
        swarm.scale(layout, name, {t: 0 if t in saved["stopped"] else n for t, n in changes.items()})
        return formation(layout, name)
    control.sync(layout, name)
    if "web" in changes:
        settle(layout, name)
    return formation(layout, name)


def check_count(ptype, count):
    """More than one web needs nginx in front (parse_scale has checked the limits of a type)."""
    if ptype == "web" and count > 1 and settings.nginx_binary() is None:
        raise TinyservError("web=%d needs nginx in front of the app (instances would share one port); %s" % (
            count, settings.nginx_missing()))


def settle(layout, name):
    """After a change that starts web: wait (up to the boot timeout) until it answers."""
    release = releases.current(layout, name)
    return control.wait_for_web(layout, name, release["version"], settings.boot_timeout(release["config"]))


def words(value, needed):
    """A non-empty list of text from a request; one line saying what is needed otherwise."""
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise TinyservError(needed)
    return value


def stop(layout, name, target):
    """ps:stop TYPE: the type stays stopped across deploys until ps:start."""
    set_stopped(layout, name, target, True)
    return processes(layout, name)


def start(layout, name, target):
    """ps:start TYPE."""
    set_stopped(layout, name, target, False)
    return processes(layout, name)


def set_stopped(layout, name, ptype, stopped):
    """ps:stop TYPE / ps:start TYPE: the type stays stopped across deploys until started."""
    layout.require(name)
    with store.locked(layout.app_file(name, "lock")):
        if ptype not in formation(layout, name):
            raise TinyservError("no %r process type in %s's Procfile" % (ptype, name))
        saved = appstate.formation(layout, name)
        saved["stopped"] = sorted(set(saved["stopped"]) - {ptype} | ({ptype} if stopped else set()))
        appstate.save_formation(layout, name, saved)
    logs.append(layout.log_file(name), "tinyserv", "%s %s" % ("Stopped" if stopped else "Started", ptype))
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.deploy import swarm
        swarm.scale(layout, name, {ptype: 0 if stopped else saved["quantity"].get(ptype, 1)})
        return
    control.sync(layout, name)
    if ptype == "web":
        settle(layout, name)


def restart(layout, name, target=None):
    """ps:restart [TYPE | TYPE.N] or restart: replace instances gracefully, reset backoff."""
    layout.require(name)
    if target:
        check_target(formation(layout, name), name, target)
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.deploy import swarm
        swarm.restart(layout, name, target.partition(".")[0] if target else None)
        return {"restarted": target or "all"}
    control.ensure_supervisor(layout)
    control.request(layout, {"cmd": "restart", "app": name, "target": target})
    if settings.nginx_binary() is not None and (target or "web").partition(".")[0] == "web":
        from tinyserv.deploy import boot, rollout
        result = settle(layout, name)  # behind nginx: done when the new webs serve and the old ones drain
        if not isinstance(result, boot.Up):
            raise TinyservError("the new web %s; the old one keeps serving (see 'tinyserv logs --ps web')" %
                                rollout.describe(result))
    return {"restarted": target or "all"}


def check_target(types, name, target):
    """TYPE or TYPE.N naming a process of the app's formation."""
    ptype, dot, number = target.partition(".")
    if ptype not in types:
        raise TinyservError("no %r process in %s (types: %s)" % (target, name, ", ".join(types) or "none"))
    count = types[ptype]["quantity"]
    if dot and (not number.isdigit() or not 1 <= int(number) <= count):
        raise TinyservError("no %s in %s: %s runs %d instance%s (%s)" % (
            target, name, ptype, count, "" if count == 1 else "s",
            ", ".join("%s.%d" % (ptype, n) for n in range(1, count + 1)) or "none"))


def config(layout, name):
    """The config vars of the current release."""
    layout.require(name)
    return releases.current_config(layout, name)


def set_config(layout, name, pairs, by=None):
    """config:set KEY=VALUE ..."""
    needed = "config:set needs KEY=VALUE, e.g. 'tinyserv config:set GREETING=hello'"
    return change_config(layout, name, set_vars=parse_assignments(words(pairs, needed)), by=by)


def unset_config(layout, name, keys, by=None):
    """config:unset KEY ..."""
    return change_config(layout, name, unset=words(keys, "config:unset needs a KEY, e.g. 'tinyserv config:unset "
                                                         "GREETING'"), by=by)


def change_config(layout, name, set_vars=None, unset=(), by=None):
    """config:set / config:unset: a new release with the new config, boot-checked like a push."""
    layout.require(name)
    set_vars = {} if set_vars is None else set_vars
    configvars.check_changes(set_vars, unset)
    with changing(layout, name):
        config = releases.current_config(layout, name)
        missing = [k for k in unset if k not in config]
        if missing and not set_vars and len(missing) == len(unset):
            raise TinyservError("%s is not set on %s" % (", ".join(missing), name))
        config.update(set_vars)
        for key in unset:
            config.pop(key, None)
        configvars.check_total(config)
        current = releases.current(layout, name)
        keys = ", ".join(sorted(set(set_vars) | set(unset)))
        what = "Set" if set_vars else "Remove"
        return roll(layout, name, "%s %s config vars" % (what, keys), config, current, by)


def rollback(layout, name, version=None, by=None):
    """Go back to an earlier release's build and config, without rebuilding (boot-checked like a push)."""
    layout.require(name)
    version = releases.version_number(version) if version is not None else None
    with changing(layout, name):
        history = releases.history(layout, name)
        current = history[-1]
        if version is None:
            if current["version"] < 2:
                raise TinyservError("%s has no earlier release to roll back to" % name)
            version = current["version"] - 1
        target = releases.find(layout, name, version)
        if not target["build"]:
            raise TinyservError("v%d has no code (nothing was deployed then)" % version)
        if not os.path.isdir(layout.build_dir(name, target["build"])):
            raise TinyservError("the build of v%d was pruned (TINYSERV_KEEP_BUILDS keeps the last %d)"
                                % (version, settings.keep_builds()))
        return roll(layout, name, "Rollback to v%d" % version, target["config"], target, by)


@contextlib.contextmanager
def changing(layout, name):
    """Hold the app's lock for a change, once any interrupted push has been settled."""
    from tinyserv.deploy import push as deploy
    deploy.recover(layout, name)
    with store.locked(layout.app_file(name, "lock")):
        yield


def roll(layout, name, description, config, source, by):
    """Boot-check (source's build, config), record it as a release, switch to it; report what serves."""
    from tinyserv.deploy import rollout
    checked = None
    if source["build"] and (appstate.scheduler(layout, name) == "swarm" or appstate.runs_web(
            layout, name, appstate.build_meta(layout, name, source["build"]))):
        checked = rollout.check_boot(layout, name, source["build"], config)
    try:
        with rollout.uninterrupted():
            release = releases.add(layout, name, description, config, build=source["build"],
                                   commit=source["commit"], by=by, **rollout.recorded(checked))
            rollout.switch(layout, name, release, checked=checked)
    finally:
        rollout.abandon(layout, name, checked)
    return {"release": releases.summary(release), "web": "up" if release["build"] else "not deployed"}


def history(layout, name, num=None):
    """releases [-n N]: newest first."""
    layout.require(name)
    if num is not None and num < 1:
        raise TinyservError("-n must be 1 or more, not %d" % num)
    shown = [releases.summary(r) for r in reversed(releases.history(layout, name))]
    return shown[:num] if num else shown


def release_info(layout, name, version=None):
    """releases:info [vN]: one release (the current one by default)."""
    layout.require(name)
    release = (releases.find(layout, name, releases.version_number(version)) if version
               else releases.current(layout, name))
    return releases.summary(release)


def run(layout, name, command):
    """Replace this process with the command, in the current build, with the app's config (stream)."""
    from tinyserv.platform import appenv
    layout.require(name)
    release = releases.current(layout, name)
    if not release["build"]:
        raise TinyservError("%s has not been deployed yet: push it first" % name)
    argv = ["/bin/sh", "-c", command[0]] if len(command) == 1 else command
    if not argv:
        raise TinyservError("run needs a command, e.g. 'tinyserv run bash'")
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.server import scheduler
        return scheduler.run(layout, name, argv)
    build_dir = layout.build_dir(name, release["build"])
    meta = appstate.build_meta(layout, name, release["build"])
    from tinyserv.deploy import boot
    port = boot.free_port() if settings.nginx_binary() else releases.port(layout, name)  # nginx holds the app's
    env = appenv.process_env(build_dir, meta, release["config"], name, "run.1", port,
                             release["version"], layout.mark(name, "run.%d" % os.getpid()),
                             layout.ensure_data_dir(name))
    try:
        return privileged.attach(layout, name, argv, build_dir, env)
    except (OSError, ValueError) as e:
        raise TinyservError("cannot run %s: %s" % (argv[0], getattr(e, "strerror", None) or e)) from None
