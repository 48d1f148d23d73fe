"""Release history: every deploy, config change and rollback makes vN.

apps/<app>/history.json is the source of truth; releases/<app>.json is its public
projection (the current release plus the app's port) for other tools to read.
Callers hold the app's lock around any change.
"""

import os
import time

from tinyserv.state import store
from tinyserv.common.errors import TinyservError
from tinyserv.state.store import mapping_of

RELEASE = {"version": int, "description": str, "config": mapping_of(str), "build": (str, None),
           "commit": (str, None), "by": str, "created_at": str, "?ref": (str, None),
           "?swarm": {"rollout": str, "image": str}}
HISTORY = {"releases": [RELEASE]}
PUBLIC = {"port": int}


def now_iso(clock=time.time):
    """UTC time as 2026-11-28T05:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def history(layout, app):
    """All releases of app, oldest first."""
    return store.load(layout.app_file(app, "history.json"), HISTORY, {"releases": []})["releases"]


def current(layout, app):
    """The newest release (the one that should be running), or None."""
    releases = history(layout, app)
    return releases[-1] if releases else None


def current_config(layout, app):
    """The config vars of the current release."""
    release = current(layout, app)
    return dict(release["config"]) if release else {}


def find(layout, app, version):
    """The release with this version number, or raise."""
    for release in history(layout, app):
        if release["version"] == version:
            return release
    raise TinyservError("%s has no release v%d (see 'tinyserv releases')" % (app, version))


def version_number(text):
    """'v3' or '3' -> 3."""
    digits = text[1:] if isinstance(text, str) and text.startswith("v") else text
    if not isinstance(digits, str) or not digits.isdigit() or not digits.isascii():
        raise TinyservError("%r is not a release version like v3" % (text,))
    return int(digits)


def port(layout, app):
    """The app's port, from its public release file."""
    return store.load(layout.public_release(app), PUBLIC)["port"]


def add(layout, app, description, config, build=None, commit=None, by=None, app_port=None, ref=None, swarm=None):
    """Append a release and publish it; returns the new release (ref: the branch a deploy came from; swarm:
    the rollout and image that run it on a Docker Swarm)."""
    releases = history(layout, app)
    release = {
        "version": releases[-1]["version"] + 1 if releases else 1,
        "description": description,
        "config": dict(config),
        "build": build,
        "commit": commit,
        "by": by or os.environ.get("USER") or "tinyserv",
        "created_at": now_iso(),
    }
    if ref:
        release["ref"] = ref
    if swarm:
        release["swarm"] = dict(swarm)
    save(layout, app, releases + [release], app_port)
    return release


def save(layout, app, releases, app_port=None):
    """Write the history, then its public projection."""
    store.write_json(layout.app_file(app, "history.json"), {"releases": releases})
    publish(layout, app, releases[-1], port(layout, app) if app_port is None else app_port)


def rerun(layout, app, swarm):
    """The current release, run from now on by another swarm rollout (a restart: no new release)."""
    releases = history(layout, app)
    releases[-1]["swarm"] = dict(swarm)
    save(layout, app, releases)


ROUTED = ("web", "domains")  # what the supervisor adds behind the front door: internal web ports, domains


def publish(layout, app, release, app_port):
    """Write releases/<app>.json: what other tools (a proxy generator) read."""
    public = {key: release[key] for key in ("version", "description", "build", "commit", "created_at")}
    public.update(app=app, port=app_port)
    if release.get("swarm"):  # where its tasks are: services labelled tinyserv.rollout=<rollout>
        public["swarm"] = dict(release["swarm"])
    with store.locked(public_lock(layout, app)):
        try:
            old = store.read_json(layout.public_release(app), {}) or {}
        except TinyservError:
            old = {}  # damaged: rewritten whole
        public.update({key: old[key] for key in ROUTED if isinstance(old, dict) and key in old})
        store.write_json(layout.public_release(app), public, mode=0o644)


def publish_routes(layout, app, web, domains):
    """Add to releases/<app>.json what a proxy of one's own needs: the web instances' ports and the domains."""
    with store.locked(public_lock(layout, app)):
        try:
            public = store.read_json(layout.public_release(app), None)
        except TinyservError:
            return
        if not isinstance(public, dict) or (public.get("web"), public.get("domains")) == (web, domains):
            return  # gone (the app was destroyed: never bring it back), or nothing new
        public.update(web=web, domains=domains)
        store.write_json(layout.public_release(app), public, mode=0o644)


def unpublish(layout, app):
    """Remove releases/<app>.json (the app stops existing), never racing publish_routes."""
    with store.locked(public_lock(layout, app)):
        store.remove(layout.public_release(app))


def public_lock(layout, app):
    return os.path.join(layout.releases_dir, ".%s.lock" % app)


def drop_last(layout, app, version):
    """Forget release `version` if it is the newest (a switch that failed)."""
    releases = history(layout, app)
    if releases and releases[-1]["version"] == version:
        save(layout, app, releases[:-1])


def summary(release):
    """The release without its config values (what `releases --json` shows)."""
    shown = {k: v for k, v in release.items() if k != "config"}
    shown["config_keys"] = sorted(release.get("config", {}))
    return shown
