"""An app's state files besides its releases, each read through one loader that checks its shape.

  apps/<app>/formation.json     {"quantity": {type: N}, "stopped": [type]}
  apps/<app>/builds/<id>.json   what a build made: Procfile, runtime, PATH and env additions
  apps/<app>/run/state.json     the supervisor's view of the app's instances
  apps/<app>/scheduler.json     {"scheduler": "local" | "swarm"}: who runs its processes (local when absent)
"""

from tinyserv.state import store
from tinyserv.common.procfile import process_types
from tinyserv.state.store import mapping_of


FORMATION = {"quantity": mapping_of(int), "stopped": [str]}
BUILD = {"id": str, "commit": str, "procfile": mapping_of(str), "path": [str], "env": mapping_of(str),
         "?runtime": str, "?image": str, "?deps": str, "?cron": [{"command": str, "schedule": str}], "?healthcheck": str}
INSTANCE = {"name": str, "type": str, "version": int, "pid": int, "pgid": int, "starttime": (int, None),
            "state": str, "?fifo": (str, None), "?mark": str}
STATE = {"instances": [INSTANCE], "?broken": (str, None)}


SCHEDULER = {"scheduler": str}


def scheduler(layout, app):
    """Who runs the app's processes: 'local' (this machine's supervisor) or 'swarm' (deploy/swarm.py)."""
    return store.load(layout.app_file(app, "scheduler.json"), SCHEDULER, {"scheduler": "local"})["scheduler"]


def save_scheduler(layout, app, name):
    store.write_json(layout.app_file(app, "scheduler.json"), {"scheduler": name}, 0o644)


def formation(layout, app):
    """The saved formation (instance counts and stopped types); empty when there is none."""
    return store.load(layout.app_file(app, "formation.json"), FORMATION, {"quantity": {}, "stopped": []})


def save_formation(layout, app, saved):
    store.write_json(layout.app_file(app, "formation.json"), saved, 0o644)


def ensure_formation(layout, app, procfile):
    """Give every process type in the Procfile an instance count (1 unless scaled)."""
    saved = formation(layout, app)
    for ptype in process_types(procfile):
        saved["quantity"].setdefault(ptype, 1)
    save_formation(layout, app, saved)


def runs_web(layout, app, meta):
    """Will the formation run at least one web instance of a build with this Procfile?"""
    if "web" not in process_types(meta["procfile"]):
        return False
    saved = formation(layout, app)
    return "web" not in saved["stopped"] and saved["quantity"].get("web", 1) > 0


def wants_web(layout, app):
    """Does the app's current release run at least one web instance?"""
    from tinyserv.state import releases
    release = releases.current(layout, app) if layout.exists(app) else None
    return bool(release and release["build"] and runs_web(layout, app, build_meta(layout, app, release["build"])))


def build_meta(layout, app, build_id):
    """What the build build_id made (its Procfile, runtime, PATH and environment additions)."""
    return store.load(layout.build_meta(app, build_id), BUILD)


def supervisor_state(layout, app):
    """The supervisor's last word on app: {"instances": [...], "broken": reason or None}."""
    return store.load(layout.state_file(app), STATE, {"instances": []})


def instances(layout, app):
    """The supervisor's last word on app's instances (list of dicts)."""
    return supervisor_state(layout, app)["instances"]


# apps/<app>/router.json: what the front door does for the app besides its web instances.
CERT = {"name": str, "names": [str], "expires": str, "?auto": bool, "?sha256": str}
ROUTER = {"?domains": [str], "?maintenance": bool, "?features": [str], "?certs": [CERT], "?acme": bool}


def router_settings(layout, app):
    """The app's domains, maintenance mode, features, certificates and ACME choice (defaults filled in)."""
    saved = store.load(layout.app_file(app, "router.json"), ROUTER, {})
    return {"domains": saved.get("domains", []), "maintenance": saved.get("maintenance", False),
            "features": saved.get("features", []), "certs": saved.get("certs", []), "acme": saved.get("acme", False)}


def save_router_settings(layout, app, settings):
    store.write_json(layout.app_file(app, "router.json"), settings, 0o644)


def cert_file(layout, app, name, kind):
    """apps/<app>/certs/<name>.crt or .key: a certificate chain and its key, as nginx reads them."""
    return layout.app_file(app, "certs", "%s.%s" % (name, kind))
