"""Putting a release in place: record it, let the supervisor run it, check that web comes up, or go back.

Deploys, config changes and rollbacks all end here, holding the app's lock, so changes
to one app never interleave. A release whose web does not come up on the app's port is
dropped again and the previous one runs: the history says what serves.
"""

import contextlib
import signal

from . import appstate, boot, control, logs, releases, settings
from .errors import TinyservError
from .procfile import process_types


def runs_web(layout, app, meta):
    """Will the formation run at least one web instance of a build with this Procfile?"""
    if "web" not in process_types(meta["procfile"]):
        return False
    saved = appstate.formation(layout, app)
    return "web" not in saved["stopped"] and saved["quantity"].get("web", 1) > 0


def check_boot(layout, app, build_id, config, cancelled=lambda: None):
    """Boot-check web of build_id with config on a trial port; raise with its last lines if it fails."""
    meta = appstate.build_meta(layout, app, build_id)
    version = releases.current(layout, app)["version"] + 1
    result = boot.check(layout, app, layout.build_dir(app, build_id), meta, config, version,
                        settings.boot_timeout(config), cancelled)
    if not isinstance(result, boot.Up):
        raise TinyservError("%s; the running release was not touched" % boot.describe(result),
                            details=result.lines)
    return result


def switch(layout, app, release, steps=None):
    """Let the supervisor run release (already recorded) and wait for its web; go back if it fails."""
    logs.append(layout.log_file(app), "tinyserv", "Release v%d: %s" % (release["version"], release["description"]))
    if not release["build"]:
        return
    control.sync(layout, app)
    result = control.wait_for_web(layout, app, release["version"], settings.boot_timeout(release["config"]))
    if isinstance(result, boot.Up):
        return
    if steps:
        steps.detail("web failed on port %d: going back" % releases.port(layout, app))
    previous = undo(layout, app, release["version"], "web %s" % describe(result))
    raise TinyservError("web %s after the switch; v%d is serving again (see 'tinyserv logs --ps web')" % (
        describe(result), previous["version"]))


def undo(layout, app, version, why):
    """Forget release `version` if it is the newest, and let the one before it run again."""
    releases.drop_last(layout, app, version)
    previous = releases.current(layout, app)
    logs.append(layout.log_file(app), "tinyserv", "Release v%d undone (%s); back to v%d" % (
        version, why, previous["version"]))
    control.sync(layout, app)
    if previous["build"]:
        control.wait_for_web(layout, app, previous["version"], settings.boot_timeout(previous["config"]))
    return previous


def describe(result):
    """What went wrong on the app's port, in words."""
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
