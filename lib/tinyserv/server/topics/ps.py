"""ps, ps:scale, ps:restart, ps:stop, ps:start (and restart, ps:restart's alias): an app's processes."""

from tinyserv.state import appstate, logs, releases, store
from tinyserv.common import settings
from tinyserv.platform import control
from tinyserv.supervise import waiting
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import nonempty_words, parse_scale
from tinyserv.common.procfile import process_types


def index(layout, name):
    """ps: the instances, with what the formation wants."""
    layout.require(name)
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.server import scheduler
        return scheduler.processes(layout, name, _formation(layout, name))
    control.ensure_supervisor(layout)
    release = releases.current(layout, name)
    types = _formation(layout, name)
    saved = waiting.instances(layout, name)
    running = {i["name"]: i for i in saved if not i.get("retired")}
    for ptype, f in types.items():  # what should exist but does not run: stopped
        for n in range(1, f["quantity"] + 1):
            running.setdefault("%s.%d" % (ptype, n), {"name": "%s.%d" % (ptype, n), "type": ptype,
                                                      "state": "stopped", "command": f["command"]})
    old = [dict(i, state="draining") for i in saved if i.get("retired")]  # old webs serving until replaced
    shown = [{k: inst.get(k) for k in ("name", "type", "state", "pid", "since", "restarts", "exit_code", "reason",
                                       "next_try", "command", "version", "port", "silent_since")}
             for inst in sorted(list(running.values()) + old, key=lambda i: (
                 i["type"] != "web", i["type"], _number_of(i["name"]), bool(i.get("retired"))))]
    return {"formation": types, "instances": shown, "release": release["version"] if release else None,
            "broken": appstate.supervisor_state(layout, name).get("broken")}


def _number_of(instance_name):
    """web.10 sorts after web.9."""
    tail = instance_name.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0


def _formation(layout, name):
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
    changes = parse_scale(nonempty_words(changes, "ps:scale needs TYPE=N, e.g. 'tinyserv ps:scale worker=2'"))
    with store.locked(layout.app_file(name, "lock")):
        types = _formation(layout, name)
        if not types:
            raise TinyservError("%s has not been deployed yet: push it first" % name)
        for ptype, count in changes.items():
            if ptype not in types:
                raise TinyservError("no %r process type in %s's Procfile (it has: %s)" % (
                    ptype, name, ", ".join(types)))
            _check_count(ptype, count)
        saved = appstate.formation(layout, name)
        saved["quantity"].update(changes)
        appstate.save_formation(layout, name, saved)
    logs.append(layout.log_file(name), "tinyserv", "Scaled to " + ", ".join(
        "%s@%d" % item for item in sorted(changes.items())))
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.deploy import swarm
        swarm.scale(layout, name, {t: 0 if t in saved["stopped"] else n for t, n in changes.items()})
        return _formation(layout, name)
    control.sync(layout, name)
    if "web" in changes:
        _settle(layout, name)
    return _formation(layout, name)


def _check_count(ptype, count):
    """More than one web needs nginx in front (parse_scale has checked the limits of a type)."""
    if ptype == "web" and count > 1 and settings.nginx_binary() is None:
        raise TinyservError("web=%d needs nginx in front of the app (instances would share one port); %s" % (
            count, settings.nginx_missing()))


def _settle(layout, name):
    """After a change that starts web: wait (up to the boot timeout) until it answers."""
    release = releases.current(layout, name)
    return waiting.wait_for_web(layout, name, release["version"], settings.boot_timeout(release["config"]))


def stop(layout, name, target):
    """ps:stop TYPE: the type stays stopped across deploys until ps:start."""
    _set_stopped(layout, name, target, True)
    return index(layout, name)


def start(layout, name, target):
    """ps:start TYPE."""
    _set_stopped(layout, name, target, False)
    return index(layout, name)


def _set_stopped(layout, name, ptype, stopped):
    """ps:stop TYPE / ps:start TYPE: the type stays stopped across deploys until started."""
    layout.require(name)
    with store.locked(layout.app_file(name, "lock")):
        if ptype not in _formation(layout, name):
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
        _settle(layout, name)


def restart(layout, name, target=None):
    """ps:restart [TYPE | TYPE.N] or restart: replace instances gracefully, reset backoff."""
    layout.require(name)
    if target:
        _check_target(_formation(layout, name), name, target)
    if appstate.scheduler(layout, name) == "swarm":
        from tinyserv.deploy import push, swarm
        with push.changing(layout, name):
            swarm.restart(layout, name, target.partition(".")[0] if target else None)
        return {"restarted": target or "all"}
    control.ensure_supervisor(layout)
    control.request(layout, {"cmd": "restart", "app": name, "target": target})
    if settings.nginx_binary() is not None and (target or "web").partition(".")[0] == "web":
        from tinyserv.platform import boot
        from tinyserv.deploy import rollout
        result = _settle(layout, name)  # behind nginx: done when the new webs serve and the old ones drain
        if not isinstance(result, boot.Up):
            raise TinyservError("the new web %s; the old one keeps serving (see 'tinyserv logs --ps web')" %
                                rollout.describe(result))
    return {"restarted": target or "all"}


def _check_target(types, name, target):
    """TYPE or TYPE.N naming a process of the app's formation."""
    ptype, dot, number = target.partition(".")
    if ptype not in types:
        raise TinyservError("no %r process in %s (types: %s)" % (target, name, ", ".join(types) or "none"))
    count = types[ptype]["quantity"]
    if dot and (not number.isdigit() or not 1 <= int(number) <= count):
        raise TinyservError("no %s in %s: %s runs %d instance%s (%s)" % (
            target, name, ptype, count, "" if count == 1 else "s",
            ", ".join("%s.%d" % (ptype, n) for n in range(1, count + 1)) or "none"))
