"""What the server does for each client command: apps, config, formation, releases."""

import errno
import os
import shutil
import socket
import subprocess
import sys

from . import appstate, control, deploy, logs, procs, releases, store
from .errors import TinyservError
from .layout import start_port
from .names import check_app_name, check_config_key
from .procfile import process_types


def port_free(port):
    """Is nothing listening on port (any address)?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise


def allocate_port(layout, first):
    """The lowest port >= first that no app holds and nothing listens on."""
    held = {releases.port(layout, app) for app in layout.apps()}
    for port in range(first, 65536):
        if port not in held and port_free(port):
            return port
    raise TinyservError("no free port at or above %d" % first)


def create(layout, name, by=None):
    """Make an app: port, bare repository with its hook, release v1."""
    check_app_name(name)
    layout.ensure()
    with store.locked(layout.global_lock):
        if layout.exists(name):
            raise TinyservError("an app named %r already exists (see 'tinyserv apps')" % name)
        port = allocate_port(layout, start_port())
        try:
            for sub in ("builds", "deps", "log", "run"):
                os.makedirs(layout.app_file(name, sub), mode=0o700, exist_ok=True)
            ensure_repo(layout, name)
            appstate.save_formation(layout, name, {"quantity": {}, "stopped": []})
            releases.add(layout, name, "Initial release", {}, by=by, app_port=port)  # last: now it exists
        except BaseException:
            remove_app_files(layout, name)  # nothing half made stays behind
            raise
    return info(layout, name)


def remove_app_files(layout, name):
    """Delete an app's public release file, repository and app directory, whichever exist."""
    store.remove(layout.public_release(name))
    shutil.rmtree(layout.repo(name), ignore_errors=True)
    shutil.rmtree(layout.app_dir(name), ignore_errors=True)


def ensure_repo(layout, name):
    """A bare repository whose pre-receive hook deploys (safe to run twice)."""
    repo = layout.repo(name)
    if not os.path.isdir(repo):
        result = subprocess.run(["git", "init", "--bare", "--quiet", repo], capture_output=True, text=True)
        if result.returncode != 0:
            raise TinyservError("git init failed: %s" % result.stderr.strip())
    hook = os.path.join(repo, "hooks", "pre-receive")
    store.write_atomic(hook, deploy.hook_script(layout, name, sys.executable, control.REMOTE_SCRIPT), 0o755)


def destroy(layout, name):
    """Stop the app, then remove its repository, builds, releases and logs."""
    layout.require(name)
    with store.locked(layout.global_lock), store.locked(layout.app_file(name, "lock")):
        pgids = live_groups(layout, name)
        store.remove(layout.public_release(name))
        supervised = bool(control.running(layout))
        if supervised:  # it stops them, with the app's own grace period
            control.request(layout, {"cmd": "sync", "app": name})
        procs.stop_groups(pgids, grace=40, term=not supervised)
        remove_app_files(layout, name)


def live_groups(layout, name):
    """Process groups of the app's instances whose main process still runs."""
    return [i["pgid"] for i in control.instances(layout, name) if procs.alive(i["pid"], i["starttime"])]


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
    }


def overall_state(layout, name):
    """'not deployed', 'up', 'starting', 'crashed', 'stopped' for the whole app."""
    release = releases.current(layout, name)
    if not release or not release["build"]:
        return "not deployed"
    states = {i["state"] for i in control.instances(layout, name) if i["version"] == release["version"]}
    for state in ("crashed", "starting", "stopping", "up"):
        if state in states:
            return state
    return "stopped"


def processes(layout, name):
    """The instances ps shows, with what the formation wants."""
    layout.require(name)
    release = releases.current(layout, name)
    types = formation(layout, name)
    running = {i["name"]: i for i in control.instances(layout, name)}
    for ptype, f in types.items():  # what should exist but does not run: stopped
        for n in range(1, f["quantity"] + 1):
            running.setdefault("%s.%d" % (ptype, n), {"name": "%s.%d" % (ptype, n), "type": ptype,
                                                      "state": "stopped", "command": f["command"]})
    shown = [{k: inst.get(k) for k in ("name", "type", "state", "pid", "since", "restarts",
                                       "exit_code", "next_try", "command", "version")}
             for inst in sorted(running.values(), key=lambda i: (i["type"] != "web", i["name"]))]
    return {"formation": types, "instances": shown, "release": release["version"] if release else None}


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
    if not isinstance(changes, dict) or not changes or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in changes.values()):
        raise TinyservError("ps:scale needs TYPE=N pairs with N a whole number, 0 or more")
    with store.locked(layout.app_file(name, "lock")):
        types = formation(layout, name)
        if not types:
            raise TinyservError("%s has not been deployed yet: push it first" % name)
        for ptype, count in changes.items():
            if ptype not in types:
                raise TinyservError("no %r process type in %s's Procfile (it has: %s)" % (
                    ptype, name, ", ".join(types)))
            if ptype == "web" and count > 1:
                raise TinyservError("web cannot run more than 1 instance until tinyserv has its "
                                    "reverse proxy (instances would share one port)")
        saved = appstate.formation(layout, name)
        saved["quantity"].update(changes)
        appstate.save_formation(layout, name, saved)
    logs.append(layout.log_file(name), "tinyserv", "Scaled to " + ", ".join(
        "%s@%d" % item for item in sorted(changes.items())))
    control.sync(layout, name)
    if changes.get("web"):
        settle(layout, name)
    return formation(layout, name)


def settle(layout, name):
    """After a change that starts web: wait (up to the boot timeout) until it answers."""
    release = releases.current(layout, name)
    return control.wait_for_web(layout, name, release["version"], deploy.boot_timeout(release["config"]))


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
    control.sync(layout, name)
    if ptype == "web" and not stopped:
        settle(layout, name)


def restart(layout, name, target=None):
    """ps:restart [TYPE | TYPE.N] or restart: replace instances gracefully, reset backoff."""
    layout.require(name)
    types = formation(layout, name)
    if target and target.split(".")[0] not in types:
        raise TinyservError("no %r process in %s (types: %s)" % (target, name, ", ".join(types) or "none"))
    control.ensure_supervisor(layout)
    control.request(layout, {"cmd": "restart", "app": name, "target": target})


def change_config(layout, name, set_vars=None, unset=(), by=None):
    """config:set / config:unset: a new release with the new config, then a restart."""
    layout.require(name)
    if not isinstance(set_vars or {}, dict) or not isinstance(unset, (list, tuple)):
        raise TinyservError("config changes must be a JSON object of vars or a list of keys")
    for key in list(set_vars or {}) + list(unset):
        check_config_key(key)
    if not all(isinstance(v, str) for v in (set_vars or {}).values()):
        raise TinyservError("config values must be text")
    if not set_vars and not unset:
        raise TinyservError("no config vars given")
    with store.locked(layout.app_file(name, "lock")):
        config = releases.current_config(layout, name)
        missing = [k for k in unset if k not in config]
        if missing and not set_vars and len(missing) == len(unset):
            raise TinyservError("%s is not set on %s" % (", ".join(missing), name))
        config.update(set_vars or {})
        for key in unset:
            config.pop(key, None)
        current = releases.current(layout, name)
        keys = ", ".join(sorted(set(set_vars or {}) | set(unset)))
        what = "Set" if set_vars else "Remove"
        release = releases.add(layout, name, "%s %s config vars" % (what, keys), config,
                               build=current["build"], commit=current["commit"], by=by)
    return apply_release(layout, name, release)


def rollback(layout, name, version=None, by=None):
    """Go back to an earlier release's build and config, without rebuilding."""
    layout.require(name)
    with store.locked(layout.app_file(name, "lock")):
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
                                % (version, deploy.keep_builds()))
        release = releases.add(layout, name, "Rollback to v%d" % version, target["config"],
                               build=target["build"], commit=target["commit"], by=by)
    return apply_release(layout, name, release)


def apply_release(layout, name, release):
    """Let the supervisor run the new release; report whether web came up."""
    logs.append(layout.log_file(name), "tinyserv", "Release v%d: %s" % (release["version"], release["description"]))
    result = {"release": releases.summary(release), "web": "not deployed"}
    if release["build"]:
        control.sync(layout, name)
        failed = settle(layout, name)
        result["web"] = "up" if not failed else ("timeout" if failed == "timeout" else "crashed")
    return result


def history(layout, name, count=None):
    layout.require(name)
    shown = [releases.summary(r) for r in reversed(releases.history(layout, name))]
    return shown[:count] if count else shown
