"""Putting a release in place: record it, let the supervisor run it, check that web comes up, or go back.

Deploys, config changes and rollbacks all end here, holding the app's lock, so changes
to one app never interleave. A release whose web does not come up on the app's port is
dropped again and the previous one runs: the history says what serves.

With the front door (nginx), the web that passed the boot check is handed to the supervisor
as the new release's web.1 (no second boot); nginx sends traffic to it, with the old web as a
backup until it has settled, and the old web drains once nothing routes to it any more.
"""

import contextlib
import signal

from tinyserv.state import appstate, logs, releases
from tinyserv.deploy import swarm
from tinyserv.platform import boot
from tinyserv.platform import control
from tinyserv.supervise import waiting
from tinyserv.platform import privileged
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError


def check_boot(layout, app, build_id, config, cancelled=lambda: None):
    """Boot-check web of build_id with config on a trial port; raise with its last lines if it fails.

    With the front door the web that passed keeps running (boot.Up.instance): pass the result to
    switch(), which hands it to the supervisor, or to abandon().
    """
    meta = appstate.build_meta(layout, app, build_id)
    version = releases.current(layout, app)["version"] + 1
    if swarm.scheduled(layout, app):  # a rollout of its own next to the running one: swarm.Started
        return swarm.start(layout, app, meta, config, version, watch=cancelled)
    return check_local_boot(layout, app, build_id, config, cancelled)


def check_local_boot(layout, app, build_id, config, cancelled=lambda: None):
    """check_boot() of web as a local process, whichever scheduler runs the app now (a move off the swarm)."""
    meta = appstate.build_meta(layout, app, build_id)
    version = releases.current(layout, app)["version"] + 1
    keep = settings.nginx_binary() is not None
    if keep:
        control.ensure_supervisor(layout)  # now: one starting later would not know the kept web and kill it
    result = privileged.trial(layout, app, build_id, config, version, settings.boot_timeout(config), cancelled, keep)
    if not isinstance(result, boot.Up):
        raise TinyservError("%s; the running release was not touched" % boot.describe(result, meta.get("healthcheck")),
                            details=result.lines)
    return result


def abandon(layout, app, checked):
    """Stop the web a boot check kept, unless the supervisor has it already (a change that did not happen)."""
    if isinstance(checked, swarm.Started):
        if not releases.current(layout, app).get("swarm", {}).get("rollout") == checked.rollout:
            swarm.abandon(checked)  # never recorded, or undone
        return
    if checked is not None and checked.instance and not checked.instance.get("handed_over"):
        privileged.stop_kept(layout, app, checked.instance)


def switch(layout, app, release, steps=None, checked=None):
    """Let the supervisor run release (already recorded) and wait for its web; go back if it fails.

    checked: the boot check's result; a web it kept becomes the release's web.1.
    """
    if isinstance(checked, swarm.Started):
        return swarm.switch(layout, app, release, checked)
    logs.append(layout.log_file(app), "tinyserv", "Release v%d: %s" % (release["version"], release["description"]))
    candidate = checked.instance if checked is not None and checked.instance else None
    if not release["build"]:
        abandon(layout, app, checked)
        return
    if candidate and checked.lines:
        logs.append(layout.log_file(app), "web.1", "\n".join(checked.lines))
    try:
        control.sync(layout, app, candidate=candidate and {k: v for k, v in candidate.items() if k != "handed_over"})
    except BaseException:
        abandon(layout, app, checked)
        raise
    if candidate:
        candidate["handed_over"] = True
    result = waiting.wait_for_web(layout, app, release["version"], settings.boot_timeout(release["config"]))
    if isinstance(result, boot.Up):
        return
    if steps:
        steps.detail("web failed on port %d: going back" % releases.port(layout, app))
    previous = undo(layout, app, release["version"], "web %s" % describe(result))
    raise TinyservError("web %s after the switch; v%d is serving again (see 'tinyserv logs --ps web')" % (
        describe(result), previous["version"]))


def roll(layout, app, description, config, source, by):
    """Boot-check (source's build, config), record it as a release, switch to it; report what serves.

    A release made by a command (config:set, rollback, an add-on's URL), holding push.changing().
    """
    checked = None
    if source["build"] and (appstate.scheduler(layout, app) == "swarm" or appstate.runs_web(
            layout, app, appstate.build_meta(layout, app, source["build"]))):
        checked = check_boot(layout, app, source["build"], config)
    try:
        with uninterrupted():
            release = releases.add(layout, app, description, config, build=source["build"],
                                   commit=source["commit"], by=by, **recorded(checked))
            switch(layout, app, release, checked=checked)
    finally:
        abandon(layout, app, checked)
    return {"release": releases.summary(release), "web": "up" if release["build"] else "not deployed"}


def undo(layout, app, version, why):
    """Forget release `version` if it is the newest, and let the one before it run again."""
    if releases.current(layout, app).get("swarm"):
        return swarm.undo(layout, app, version, why)
    releases.drop_last(layout, app, version)
    previous = releases.current(layout, app)
    logs.append(layout.log_file(app), "tinyserv", "Release v%d undone (%s); back to v%d" % (
        version, why, previous["version"]))
    control.sync(layout, app)
    if previous["build"]:
        waiting.wait_for_web(layout, app, previous["version"], settings.boot_timeout(previous["config"]))
    return previous


def recorded(checked):
    """What a release records of its boot check: a swarm rollout's id and image ({} for local processes)."""
    if isinstance(checked, swarm.Started):
        return {"swarm": {"rollout": checked.rollout, "image": checked.image}}
    return {}


def describe(result):
    """What went wrong on the app's port, in words."""
    if isinstance(result, boot.Crashed) and result.reason == "not answering":
        return "stopped answering"
    if isinstance(result, boot.Crashed):
        return "crashed (exit %s)" % result.exit_code
    return "did not come up within %d s" % result.seconds


@contextlib.contextmanager
def uninterrupted():
    """Ctrl-C, a hang-up or SIGTERM wait until the block is done: half a switch would leave the app down."""
    ignored = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in ignored}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
