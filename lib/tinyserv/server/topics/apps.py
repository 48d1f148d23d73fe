"""apps, apps:create, apps:destroy, apps:info: what an app is, its making and its end."""

import os

from tinyserv.state import addonstate, appstate, releases, store
from tinyserv.common import settings
from tinyserv.platform import control
from tinyserv.platform import privileged, procs
from tinyserv.deploy import appfiles, ports
from tinyserv.common.errors import TinyservError
from tinyserv.state.layout import start_port
from tinyserv.common.names import check_app_name


def index(layout):
    """What `apps` shows: every app, a damaged one with the reason instead of failing the list."""
    shown = []
    for name in layout.apps():
        try:
            shown.append(info(layout, name))
        except TinyservError as e:
            shown.append({"name": name, "state": "broken", "error": str(e)})
    return shown


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
        port = ports.allocate(layout, start_port())
        try:
            for sub in ("builds", "deps", "log", "run", "data"):
                os.makedirs(layout.app_file(name, sub), mode=0o700, exist_ok=True)
            appfiles.ensure_repo(layout, name)
            appstate.save_formation(layout, name, {"quantity": {}, "stopped": []})
            if scheduler != "local":
                schedulers.check_swarm_ready(layout, name)
                appstate.save_scheduler(layout, name, scheduler)
            releases.add(layout, name, "Initial release", {}, by=by, app_port=port)  # now it exists
            privileged.ensure_user(layout, name)  # root mode: its own system user
        except BaseException:
            appfiles.remove_app_files(layout, name)  # nothing half made stays behind
            raise
    return info(layout, name)


def destroy(layout, name):
    """Stop the app and everything it started, delete its add-ons with their data, then remove its repository,
    builds, releases, logs and data directory."""
    from tinyserv.addons import registry as addons
    from tinyserv.state import storage
    from tinyserv.server import lifecycle
    layout.require(name)
    with addonstate.changing(layout, name), store.locked(layout.global_lock), \
            store.locked(layout.app_file(name, "lock")):
        doomed = addons.check_all(layout, name)  # one that cannot be deleted keeps the whole app, untouched
        # A data directory that is a symlink (to another disk, say) loses only the link: its files are kept.
        kept = os.path.realpath(layout.data_dir(name)) if os.path.islink(layout.data_dir(name)) else None
        data_bytes, data_files = storage.usage(layout.data_dir(name)) if kept is None else (0, 0)
        pgids = lifecycle.live_groups(layout, name)
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
        appfiles.remove_app_files(layout, name)
    if supervised and settings.nginx_binary() is not None:
        from tinyserv.frontdoor import router
        router.wait_until_live(layout, name, lambda site: site is None)  # nginx no longer answers for it
    return {"destroyed": name, "addons": [a["name"] for a in doomed], "data_bytes": data_bytes,
            "data_files": data_files, "data_kept": kept}


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
        "runtime": _runtime_of(layout, name, release["build"]),
        "state": _overall_state(layout, name),
        "scheduler": appstate.scheduler(layout, name),
    }


def _runtime_of(layout, name, build_id):
    """'node 20.19.1, npm 9.2.0 (the server's)': what the build of the current release runs with, or None."""
    meta = store.read_json(layout.build_meta(name, build_id)) if build_id else None
    if not isinstance(meta, dict):
        return None
    return meta.get("runtime_version") or meta.get("runtime")


def _overall_state(layout, name):
    """'not deployed', 'broken', 'up', 'starting', 'crashed', 'stopped' for the whole app."""
    release = releases.current(layout, name)
    if not release or not release["build"]:
        return "not deployed"
    appstate.formation(layout, name)  # damaged (an empty file): the app is broken, whatever still runs
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
