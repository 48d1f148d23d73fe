"""Add-ons: a PostgreSQL database or a Redis server of an app's own, with Heroku's verbs.

apps/<app>/addons.json lists an app's add-ons (state/addonstate.py). Creating one
provisions it (postgres.py, redis.py), then sets its URL as a config var in a new release
(DATABASE_URL, REDIS_URL), boot-checked like any config change, so rollback keeps working;
if any step fails, what the earlier steps made is undone and nothing is left behind.
Destroying one makes a release without its config var, then deletes it with its data.
"""

import contextlib
import secrets

from tinyserv.common import configvars
from tinyserv.addons import postgres, redis
from tinyserv.state import addonstate, releases, store
from tinyserv.deploy import ports, push, rollout
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import addon_kind


def providers():
    """{kind: provider}: what provisions each kind of add-on."""
    return {"postgresql": postgres.Provider(), "redis": redis.Provider()}


def provider(kind, registry=None):
    """What provisions add-ons of kind (registry: {kind: provider}, tests pass fakes)."""
    return (registry or providers())[kind]


def view(addon):
    """An add-on as the client sees it: everything but its URL (the secret is in the config var)."""
    shown = {k: v for k, v in addon.items() if k != "url"}
    shown["plan"] = {"postgresql": "PostgreSQL database on this server",
                     "redis": "redis-server on 127.0.0.1:%s" % addon.get("port")}.get(addon["kind"], "")
    return shown


# --- the commands ---------------------------------------------------------------------------------


def listing(layout, app):
    """addons: the app's add-ons."""
    layout.require(app)
    return [view(a) for a in addonstate.load(layout, app)]


def info(layout, app, addon):
    """addons:info NAME."""
    layout.require(app)
    return view(addonstate.find(layout, app, addon))


def create(layout, app, kind, by=None, registry=None):
    """addons:create KIND: provision, then a release with its URL; undo everything if a step fails."""
    layout.require(app)
    kind = addon_kind(kind)
    chosen = provider(kind, registry)
    chosen.check_available()  # refused here, in one line, before anything is made
    with rollout.uninterrupted(), addonstate.changing(layout, app):  # half an add-on would outlive a Ctrl-C
        addon = reserve(layout, app, kind, chosen)
        provisioned = False
        try:
            addon["url"] = chosen.provision(layout, app, addon)  # undoes its own steps when it fails
            provisioned = True
            addonstate.record(layout, app, addon)
            attach(layout, app, addon, by)
        except BaseException:
            if provisioned:  # never before: a database of the same name that was there already is not ours
                with contextlib.suppress(TinyservError):
                    chosen.deprovision(layout, app, addon)
            addonstate.forget(layout, app, addon["name"])
            raise
        addon["state"] = addonstate.READY
        addonstate.record(layout, app, addon)
    return view(addon)


def reserve(layout, app, kind, chosen):
    """Name the new add-on (and give a Redis one its port) and write it down, under the global lock."""
    with store.locked(layout.global_lock):
        taken = {a["name"] for other in layout.apps() for a in _quiet_load(layout, other)}
        name = "%s-%s" % (kind, secrets.token_hex(4))
        while name in taken:
            name = "%s-%s" % (kind, secrets.token_hex(4))
        config = releases.current_config(layout, app)
        var = chosen.var if chosen.var not in config else "%s_URL" % name.upper().replace("-", "_")
        addon = {"name": name, "kind": kind, "var": var, "url": "", "state": addonstate.CREATING,
                 "created_at": releases.now_iso()}
        if kind == "redis":
            addon["port"] = ports.allocate(layout, redis.FIRST_PORT)
        else:
            addon["database"] = chosen.names(app, name.rsplit("-", 1)[1])
        addonstate.record(layout, app, addon)
    return addon


def _quiet_load(layout, app):
    try:
        return addonstate.load(layout, app)
    except TinyservError:
        return []


def attach(layout, app, addon, by):
    """A release whose config has the add-on's URL (boot-checked like config:set)."""
    with push.changing(layout, app):
        config = releases.current_config(layout, app)
        config[addon["var"]] = configvars.check_value(addon["var"], addon["url"])
        configvars.check_total(config)
        return rollout.roll(layout, app, "Attach %s as %s" % (addon["name"], addon["var"]), config,
                         releases.current(layout, app), by)


def detach(layout, app, addon, by):
    """A release without the add-on's config var, if the current config still has its URL."""
    with push.changing(layout, app):
        config = releases.current_config(layout, app)
        if config.get(addon["var"]) != addon["url"] or not addon["url"]:
            return None
        del config[addon["var"]]
        return rollout.roll(layout, app, "Detach %s (%s)" % (addon["name"], addon["var"]), config,
                         releases.current(layout, app), by)


def destroy(layout, app, addon, by=None, registry=None):
    """addons:destroy NAME: a release without its config var, then its database or server and data go."""
    layout.require(app)
    name = addon
    with rollout.uninterrupted(), addonstate.changing(layout, app):
        addon = addonstate.find(layout, app, name)
        chosen = provider(addon["kind"], registry)
        chosen.check_available()  # it must be possible to delete it before the release without it is made
        detach(layout, app, addon, by)
        chosen.deprovision(layout, app, addon)
        addonstate.forget(layout, app, name)
    return {"destroyed": name, "var": addon["var"]}


def check_all(layout, app, registry=None):
    """For apps:destroy: the app's add-ons, once each has been checked to be deletable now."""
    addons = addonstate.load(layout, app)
    for addon in addons:
        try:
            provider(addon["kind"], registry).check_available()
        except TinyservError as e:
            raise TinyservError("cannot delete %s's add-on %s, so nothing was destroyed: %s" % (
                app, addon["name"], e)) from None
    return addons


def delete_all(layout, app, addons, registry=None):
    """For apps:destroy: delete these add-ons and their data (no releases: the app goes too)."""
    for addon in addons:
        provider(addon["kind"], registry).deprovision(layout, app, addon)
        addonstate.forget(layout, app, addon["name"])
