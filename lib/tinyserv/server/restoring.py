"""Putting the apps of an unpacked backup in place on this server (see backup.py for the archive).

Everything is checked before anything is made: no app, repository or add-on of the archive
may exist here, and PostgreSQL and redis-server must be ready when the archive has such
add-ons. Then each app is moved in under the global lock — its directory, repository,
add-ons (a database and role with the same names and password, loaded with pg_restore; a
redis-server started from the snapshot) — and its public release file is written last. Paths
of the old TINYSERV_ROOT in links and build metadata become this root's; an add-on URL whose
host or port changed is rewritten in every release's config, so rollback keeps working. A
failure anywhere undoes every app this restore made.
"""

import os
import stat
import urllib.parse

from tinyserv.addons import registry as addons, postgres, redis
from tinyserv.deploy import appfiles, ports
from tinyserv.frontdoor import domains
from tinyserv.platform import control, services
from tinyserv.supervise import waiting
from tinyserv.state import addonstate, appstate, logs, nofollow, releases, store
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.state.layout import start_port

ADDON_PORT_FIRST = redis.FIRST_PORT


class Restore:
    """One restore: the unpacked archive in staging, its manifest, and what has been made so far."""

    def __init__(self, layout, manifest, staging):
        self.layout = layout
        self.manifest = manifest
        self.staging = staging
        self.old_root = manifest["root"]
        self.made = {}  # app -> [add-ons provisioned for it]
        self.ports = {}

    def run(self):
        """Check, then move every app in; undo everything if any step fails. {app: port}."""
        names = sorted(self.manifest["apps"])
        with store.locked(self.layout.global_lock):
            self.check(names)
            try:
                for app in names:
                    self.made[app] = []
                    self.install(app)
                control.sync(self.layout)  # starts the Redis add-ons and the apps
                for app in names:
                    self.wait_addons(app)
            except BaseException:
                for app in reversed(list(self.made)):
                    self.undo(app)
                if control.running(self.layout):
                    control.sync(self.layout)
                raise
        for app in names:
            self.report(app)
        return dict(self.ports)

    # --- before anything is made ---------------------------------------------------------------

    def check(self, names):
        """Refuse before changing anything: an existing app or add-on, or PostgreSQL / Redis not ready."""
        for app in names:
            if any(os.path.lexists(p) for p in (self.layout.public_release(app), self.layout.app_dir(app),
                                                self.layout.repo(app))):
                raise TinyservError("an app named %s already exists on this server: restore never overwrites an "
                                    "app (destroy it first, or restore on a fresh server); nothing was changed" % app)
            if not os.path.isdir(os.path.join(self.staging, "apps", app)):
                raise TinyservError("the archive has no files for %s: nothing was changed" % app)
        kinds = {a["kind"] for entry in self.manifest["apps"].values() for a in entry["addons"]}
        for kind in sorted(kinds):
            try:
                addons.provider(kind).check_available()
            except (TinyservError, KeyError) as e:
                raise TinyservError("the archive has %s add-ons, but %s; nothing was changed" % (kind, e)) from None
        for app in names:
            for addon in self.manifest["apps"][app]["addons"]:
                if os.path.exists(services.spec_file(self.layout, addon["name"])):
                    raise TinyservError("an add-on named %s already runs on this server: nothing was changed"
                                        % addon["name"])
        if "postgresql" in kinds:
            self.check_databases(names)
        self.check_domains(names)

    def check_domains(self, names):
        """No domain of the archive's apps belongs to an app of this server: a domain has one app, always."""
        for app in names:
            staged = store.load(os.path.join(self.staging, "apps", app, "router.json"), appstate.ROUTER, {})
            for domain in staged.get("domains", []):
                holder = domains.owner(self.layout, domain)
                if holder:
                    raise TinyservError("%s answers at %s in the archive, but here the app %s does: remove it there "
                                        "first ('tinyserv domains:remove %s -a %s'); nothing was changed" % (
                                            app, domain, holder, domain, holder))

    def check_databases(self, names):
        """None of the archive's database or role names exists on this server's PostgreSQL."""
        provider = addons.provider("postgresql")
        wanted = [a["database"] for app in names for a in self.staged_addons(app) if a["kind"] == "postgresql"]
        quoted = ", ".join("'%s'" % postgres.ident(n) for n in wanted)
        taken = provider.sql(provider.admin(), [
            "SELECT rolname FROM pg_roles WHERE rolname IN (%s)" % quoted,
            "SELECT datname FROM pg_database WHERE datname IN (%s)" % quoted], "checking database names").split()
        if taken:
            raise TinyservError("PostgreSQL on this server already has %s: restore never overwrites a database; "
                                "nothing was changed" % ", ".join(sorted(set(taken))))

    def staged_addons(self, app):
        """The add-ons listed in the archive's copy of app's addons.json."""
        return store.load(os.path.join(self.staging, "apps", app, "addons.json"), addonstate.ADDONS,
                          {"addons": []})["addons"]

    # --- one app ----------------------------------------------------------------------------------

    def install(self, app):
        """Move one app in: files, repository, add-ons; its public release file last (now it exists)."""
        layout = self.layout
        port = self.free_port(self.manifest["apps"][app]["port"], start_port())
        os.rename(os.path.join(self.staging, "apps", app), layout.app_dir(app))
        for sub in ("builds", "deps", "log", "run", "data"):
            os.makedirs(layout.app_file(app, sub), mode=0o700, exist_ok=True)
        self.relocate(app)
        staged_repo = os.path.join(self.staging, "repos", app + ".git")
        if os.path.isdir(staged_repo):
            os.rename(staged_repo, layout.repo(app))
        appfiles.ensure_repo(layout, app)  # its hook names this root
        for addon in addonstate.load(layout, app):
            self.install_addon(app, addon)
        history = releases.history(layout, app)
        if not history:
            raise TinyservError("the archive's %s has no releases: nothing was changed" % app)
        self.ports[app] = port
        releases.publish(layout, app, history[-1], port)
        logs.append(layout.log_file(app), "tinyserv", "Restored at v%d from a backup of %s taken %s" % (
            history[-1]["version"], self.old_root, self.manifest["created_at"]))

    def free_port(self, wanted, first):
        """wanted, if nothing holds it or listens on it; else the lowest free port from first."""
        held = addonstate.held_ports(self.layout)
        for app in self.layout.apps():
            held.add(releases.port(self.layout, app))
        return wanted if wanted not in held and ports.free(wanted) else ports.allocate(self.layout, first)

    def install_addon(self, app, addon):
        """Provision an add-on like the one backed up, with its data; rewrite its URL where it changed."""
        if addon["state"] != addonstate.READY:
            raise TinyservError("%s's add-on %s was never finished when the backup was taken" % (app, addon["name"]))
        provider = addons.provider(addon["kind"])
        old_url = addon["url"]
        password = urlparts(old_url).password
        snapshot = os.path.join(self.staging, "addons", app, addon["name"] + (
            ".pgdump" if addon["kind"] == "postgresql" else ".rdb"))
        if addon["kind"] == "postgresql":
            addon["url"] = provider.provision(self.layout, app, addon, password)
            self.made[app].append(addon)
            provider.restore(self.layout, app, addon, snapshot)
        else:
            addon["port"] = self.free_port(addon["port"], ADDON_PORT_FIRST)
            provider.prepare(self.layout, app, addon, password, snapshot if os.path.exists(snapshot) else None)
            self.made[app].append(addon)
            addon["url"] = redis.url(addon["port"], password)
        addonstate.record(self.layout, app, addon)
        if addon["url"] != old_url:
            self.rewrite_config(app, old_url, addon["url"])

    def wait_addons(self, app):
        """Raise unless each Redis add-on restored for app answers."""
        for addon in self.made.get(app, []):
            if addon["kind"] == "redis":
                addons.provider("redis").wait(self.layout, addon, urlparts(addon["url"]).password)

    def rewrite_config(self, app, old, new):
        """Every release whose config has the add-on's old URL gets the new one (same versions, no new release)."""
        path = self.layout.app_file(app, "history.json")
        history = releases.history(self.layout, app)
        for release in history:
            for key, value in release["config"].items():
                if value == old:
                    release["config"][key] = new
        store.write_json(path, {"releases": history})

    def relocate(self, app):
        """Links and build metadata that named the old root name this one (dependencies, virtualenvs)."""
        old, new = self.old_root.rstrip("/") + "/", self.layout.root.rstrip("/") + "/"
        if old == new:
            return
        builds = self.layout.app_file(app, "builds")
        for name in os.listdir(builds):
            path = os.path.join(builds, name)
            if name.endswith(".json"):
                meta = store.read_json(path)
                store.write_json(path, replace_prefix(meta, old, new), mode=0o644)
            elif os.path.isdir(path):
                for entry in os.scandir(path):
                    if entry.is_symlink() and os.readlink(entry.path).startswith(old):
                        target = new + os.readlink(entry.path)[len(old):]
                        os.unlink(entry.path)
                        os.symlink(target, entry.path)
        deps = self.layout.app_file(app, "deps")
        for key in os.listdir(deps):
            relocate_scripts(os.path.join(deps, key, "venv", "bin"), old, new)

    # --- after -----------------------------------------------------------------------------------

    def undo(self, app):
        """Remove what this restore made for app: its add-ons (database, redis-server) and its files."""
        for addon in self.made.get(app, []):
            try:
                addons.provider(addon["kind"]).deprovision(self.layout, app, addon)
            except TinyservError:
                pass  # the files go below; a database that cannot be dropped now is named in the error above
        store.remove(self.layout.public_release(app))
        appfiles.remove_app_files(self.layout, app)

    def report(self, app):
        """Wait (up to its boot timeout) for the app's web, and say how it came back."""
        release = releases.current(self.layout, app)
        if not release or not release["build"]:
            return
        result = waiting.wait_for_web(self.layout, app, release["version"], settings.boot_timeout(release["config"]))
        from tinyserv.platform.boot import Up
        state = "up" if isinstance(result, Up) else "not up yet (see 'tinyserv logs -a %s')" % app
        print("%s: v%d on port %d, %s" % (app, release["version"], self.ports[app], state), flush=True)


def urlparts(url):
    """An add-on URL split into its parts."""
    return urllib.parse.urlsplit(url)


def replace_prefix(value, old, new):
    """value (JSON data) with every text that starts with old starting with new instead."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, list):
        return [replace_prefix(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: replace_prefix(v, old, new) for k, v in value.items()}
    return value


def relocate_scripts(directory, old, new):
    """A virtualenv's scripts start with '#!<its python>': point them at the venv's new place."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        found = nofollow.open_entry(entry.path)  # opened once, never through a link: its mode from there too
        if found is None or found.fd is None or not stat.S_ISREG(found.info.st_mode):
            if found is not None and found.fd is not None:
                os.close(found.fd)
            continue
        with open(found.fd, "rb") as f:
            head = f.read(2 + len(old.encode()))
            if head != b"#!" + old.encode():
                continue
            rest = f.read()
        store.write_atomic(entry.path, b"#!" + new.encode() + rest, stat.S_IMODE(found.info.st_mode))
