"""Moving a deployed app between schedulers: a deploy of its current release on the other side.

The current release's commit is built for the other side (an image for the swarm, a build directory
for local processes), started next to what serves and boot-checked there; only then is the scheduler
changed and a release recorded ("Move to the swarm"), and the front door switches once the new side
answers: the old side's web stays nginx's backup until then. The old side goes last: the supervisor
drains and stops the local processes once the swarm's tasks are routed; the swarm's services are
removed once nginx routes to the local web. A move that fails anywhere before its switch leaves the
app as it was; one whose switch fails is undone (scheduler and release both).
"""

import collections
import os

from tinyserv.state import appstate, logs, releases, store
from tinyserv.deploy import build, push, rollout, swarm
from tinyserv.platform import boot, control
from tinyserv.supervise import waiting
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError

SHOWN = 15  # lines of the build's output an error carries


class Steps:
    """A move's progress: steps go to the app's log, the last lines of output are kept for an error."""

    def __init__(self, layout, app):
        self.layout, self.app = layout, app
        self.lines = collections.deque(maxlen=SHOWN)

    def step(self, text):
        logs.append(self.layout.log_file(self.app), "tinyserv", text)

    def detail(self, text):
        self.lines.append(text)


def move(layout, app, name, by=None):
    """Deploy app's current release on scheduler name and switch to it; the old side stops afterwards."""
    push.recover(layout, app)
    with store.locked(layout.app_file(app, "deploy.lock")):
        current = releases.current(layout, app)
        commit, ref = push.deployed(releases.history(layout, app))
        steps = Steps(layout, app)
        steps.step("Moving %s to the %s scheduler: building %s" % (app, name, commit[:7]))
        try:
            if name == "swarm":
                return to_swarm(layout, app, current, commit, ref, steps, by)
            return to_local(layout, app, current, commit, ref, steps, by)
        except TinyservError as e:
            raise TinyservError("moving %s to the %s scheduler failed: %s; %s" % (
                app, name, e, "it still runs as before"), details=list(e.details) or list(steps.lines)) from None


def to_swarm(layout, app, current, commit, ref, steps, by):
    """local -> swarm: an image of the commit, a rollout boot-checked, then the switch; local processes drain."""
    config = current["config"]
    meta = swarm.build(layout, app, commit, steps, config, lambda: None, dict(os.environ))
    try:
        started = swarm.start(layout, app, meta, config, current["version"] + 1, steps)
    except BaseException:
        build.remove(layout, app, meta["id"])
        swarm.remove_image(meta["image"])
        raise
    try:
        with store.locked(layout.app_file(app, "lock")), rollout.uninterrupted():
            appstate.save_scheduler(layout, app, "swarm")
            release = releases.add(layout, app, "Move to the swarm (%s)" % commit[:7], config, build=meta["id"],
                                   commit=commit, by=by, ref=ref, swarm=rollout.recorded(started)["swarm"])
            try:
                swarm.switch(layout, app, release, started)
            except BaseException:
                go_back(layout, app, release["version"], "local")
                raise
    finally:
        rollout.abandon(layout, app, started)  # only when it was not recorded, or undone
    return summary(layout, app, release)


def to_local(layout, app, current, commit, ref, steps, by):
    """swarm -> local: the commit built as a push builds it, web boot-checked, the switch; then the services go."""
    config = current["config"]
    meta = build.Builder(layout, app, steps, config).build(commit, dict(os.environ))
    checked = None
    try:
        if appstate.runs_web(layout, app, meta):
            checked = rollout.check_local_boot(layout, app, meta["id"], config)
        with store.locked(layout.app_file(app, "lock")), rollout.uninterrupted():
            appstate.save_scheduler(layout, app, "local")
            release = releases.add(layout, app, "Move to local processes (%s)" % commit[:7], config,
                                   build=meta["id"], commit=commit, by=by, ref=ref)
            try:
                switch_local(layout, app, release, checked)
            except BaseException:
                go_back(layout, app, release["version"], "swarm")
                raise
    except BaseException:
        rollout.abandon(layout, app, checked)
        if releases.current(layout, app)["build"] != meta["id"]:
            build.remove(layout, app, meta["id"])
        raise
    swarm.retire_others(layout, app, None)  # nginx routes to the local web by now: no rollout is kept
    swarm.remove_images(layout, app)
    return summary(layout, app, release)


def switch_local(layout, app, release, checked):
    """Hand the checked web to the supervisor and wait until nginx routes to it (the tasks are its backup)."""
    logs.append(layout.log_file(app), "tinyserv", "Release v%d: %s" % (release["version"], release["description"]))
    candidate = checked.instance if checked is not None and checked.instance else None
    control.sync(layout, app, candidate=candidate and {k: v for k, v in candidate.items() if k != "handed_over"})
    if candidate:
        candidate["handed_over"] = True
    result = waiting.wait_for_web(layout, app, release["version"], settings.boot_timeout(release["config"]))
    if not isinstance(result, boot.Up):
        raise TinyservError("web %s after the switch" % rollout.describe(result))


def go_back(layout, app, version, scheduler):
    """Undo a move whose switch failed: the release it recorded goes, the old scheduler runs the app again."""
    releases.drop_last(layout, app, version)
    appstate.save_scheduler(layout, app, scheduler)
    logs.append(layout.log_file(app), "tinyserv", "The move was undone: back to v%d on the %s scheduler" % (
        releases.current(layout, app)["version"], scheduler))
    control.sync(layout, app)


def summary(layout, app, release):
    logs.append(layout.log_file(app), "tinyserv", "Moved to the %s scheduler as v%d" % (
        appstate.scheduler(layout, app), release["version"]))
    return {"release": releases.summary(release), "moved": True}
